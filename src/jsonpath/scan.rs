//! A JSON reader for [`PathSet::parse`](super::PathSet::parse): it walks the document
//! once, checks its syntax, and hands only the values the paths reach to `serde_json`.
//! Skipping is most of the work on a response body (the paths read a few numbers of a
//! document of hundreds of bytes), and a skip here costs a fraction of serde_json's
//! (which is general: it dispatches every value through the `Deserializer` interface).
//!
//! What it accepts is what `serde_json::from_slice::<Value>` accepts — RFC 8259 JSON,
//! nesting at most 127 deep, strings without raw control characters or lone surrogate
//! escapes — except one thing: a number no path reaches is checked for syntax, not for
//! range (`1e400` is accepted there). Valid UTF-8 is checked by the caller.

use serde_json::Value;

use super::{walk, JsonPath, Node};

/// serde_json's limit: a 128th level of nesting is refused.
const MAX_DEPTH: usize = 127;

/// Why a document was refused, with the byte offset.
#[derive(Debug)]
pub(super) struct Refused {
    pub at: usize,
    pub what: &'static str,
}

type Result<T> = std::result::Result<T, Refused>;

/// Of eight bytes (little-endian), a mask whose lowest set bit is the high bit of the
/// first byte that is `"`, `\` or a control character (0 when none is). Bits above the
/// first may be false alarms (borrows), so only the lowest is used.
#[inline(always)]
fn special(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    zero_byte(x ^ (ONES * u64::from(b'"'))) | zero_byte(x ^ (ONES * u64::from(b'\\'))) | below_space
}

pub(super) struct Scanner<'a> {
    b: &'a [u8],
    paths: &'a [JsonPath],
}

// Every reader takes the index of what it reads and returns the index after it: the
// index stays in a register, and a document is mostly skipped, where a cursor in memory
// (or a call per value) costs more than the reading itself.

impl<'a> Scanner<'a> {
    pub(super) fn new(b: &'a [u8], paths: &'a [JsonPath]) -> Scanner<'a> {
        Scanner { b, paths }
    }

    /// The whole document: one value, then only whitespace.
    pub(super) fn document(&self, root: &Node, hits: &mut Vec<(usize, Value)>) -> Result<()> {
        let i = self.value(root, ws(self.b, 0), 0, hits)?;
        let i = ws(self.b, i);
        if i != self.b.len() {
            return refused(i, "trailing characters");
        }
        Ok(())
    }

    /// The value at `i` (after whitespace), `depth` containers deep, whose place in the
    /// paths is `node`: built when a path ends here, else walked for the paths that go
    /// on below, else skipped.
    fn value(
        &self,
        node: &Node,
        i: usize,
        depth: usize,
        hits: &mut Vec<(usize, Value)>,
    ) -> Result<usize> {
        if !node.ends.is_empty() {
            return self.build(node, i, depth, hits);
        }
        match self.b.get(i) {
            Some(b'{') if !node.keys.is_empty() || node.any.is_some() => {
                self.object(node, i, depth, hits)
            }
            Some(b'[') if !node.indices.is_empty() || node.any.is_some() => {
                self.array(node, i, depth, hits)
            }
            _ => skip(self.b, i, depth),
        }
    }

    /// A value a path ends at: checked, then built by serde_json (a token count directly).
    fn build(
        &self,
        node: &Node,
        i: usize,
        depth: usize,
        hits: &mut Vec<(usize, Value)>,
    ) -> Result<usize> {
        let end = skip(self.b, i, depth)?;
        let value = leaf(&self.b[i..end]).map_err(|_| Refused {
            at: i,
            what: "a value serde_json refuses",
        })?;
        for &(id, depth) in &node.below {
            walk(&self.paths[id].segments[depth..], &value, &mut |v| {
                hits.push((id, v.clone()));
                None::<()>
            });
        }
        let (last, rest) = node.ends.split_last().expect("ends is not empty");
        for &id in rest {
            hits.push((id, value.clone()));
        }
        hits.push((*last, value));
        Ok(end)
    }

    /// The object at `i`, whose members are looked up in `node`.
    fn object(
        &self,
        node: &Node,
        i: usize,
        depth: usize,
        hits: &mut Vec<(usize, Value)>,
    ) -> Result<usize> {
        let b = self.b;
        self.members(i, depth, b'}', "expected `,` or `}`", |i, _| {
            if b.get(i) != Some(&b'"') {
                return refused(i, "expected a key");
            }
            let (end, escaped) = string(b, i)?;
            let child = if escaped {
                node.key(&unescaped(&b[i..end]).map_err(|_| Refused {
                    at: i,
                    what: "invalid string",
                })?)
            } else {
                node.key(&b[i + 1..end - 1])
            };
            let colon = ws(b, end);
            if b.get(colon) != Some(&b':') {
                return refused(colon, "expected `:`");
            }
            let at = ws(b, colon + 1);
            match child {
                Some(child) => self.value(child, at, depth + 1, hits),
                None => skip(b, at, depth + 1),
            }
        })
    }

    /// The array at `i`, whose elements are looked up in `node`.
    fn array(
        &self,
        node: &Node,
        i: usize,
        depth: usize,
        hits: &mut Vec<(usize, Value)>,
    ) -> Result<usize> {
        self.members(i, depth, b']', "expected `,` or `]`", |i, n| {
            match node.index(n) {
                Some(child) => self.value(child, i, depth + 1, hits),
                None => skip(self.b, i, depth + 1),
            }
        })
    }

    /// The object or array whose opening bracket is at `i`, `depth` containers deep:
    /// `member(i, n)` reads its `n`th member at `i` (after whitespace) and returns the
    /// index after it; `close` is the closing bracket, `what` the refusal when neither a
    /// `,` nor `close` follows a member.
    #[inline(always)]
    fn members(
        &self,
        i: usize,
        depth: usize,
        close: u8,
        what: &'static str,
        mut member: impl FnMut(usize, usize) -> Result<usize>,
    ) -> Result<usize> {
        if depth >= MAX_DEPTH {
            return refused(i, "nested too deep");
        }
        let b = self.b;
        let mut i = ws(b, i + 1);
        if b.get(i) == Some(&close) {
            return Ok(i + 1);
        }
        let mut n = 0usize;
        loop {
            i = ws(b, member(i, n)?);
            n += 1;
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(&c) if c == close => return Ok(i + 1),
                _ => return refused(i, what),
            }
        }
    }
}

/// An escaped key, unescaped. The caller checked that the document is UTF-8, so equal
/// bytes are equal names.
#[cold]
fn unescaped(quoted: &[u8]) -> serde_json::Result<Vec<u8>> {
    serde_json::from_slice::<String>(quoted).map(String::into_bytes)
}

/// A value a path reached, built: a token count (digits only, at most 19: it fits a
/// `u64`) directly, anything else by serde_json.
fn leaf(b: &[u8]) -> serde_json::Result<Value> {
    if (1..=19).contains(&b.len())
        && b.iter().all(u8::is_ascii_digit)
        && (b[0] != b'0' || b.len() == 1)
    {
        let n = b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        return Ok(Value::from(n));
    }
    serde_json::from_slice(b)
}

fn refused<T>(at: usize, what: &'static str) -> Result<T> {
    Err(Refused { at, what })
}

/// Past whitespace. Bodies seldom have any: the first test (above a space) ends most calls.
#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c > b' ' || !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// Any value at `i` (after whitespace), checked and not built, `depth` containers deep.
#[inline(always)]
fn skip(b: &[u8], i: usize, depth: usize) -> Result<usize> {
    match b.get(i) {
        Some(b'{' | b'[') => skip_container(b, i, depth),
        _ => scalar(b, i),
    }
}

/// A string, number, `true`, `false` or `null` at `i`, checked.
#[inline(always)]
fn scalar(b: &[u8], i: usize) -> Result<usize> {
    match b.get(i) {
        Some(b'"') => Ok(string(b, i)?.0),
        Some(b't') => literal(b, i, b"true"),
        Some(b'f') => literal(b, i, b"false"),
        Some(b'n') => literal(b, i, b"null"),
        Some(b'-' | b'0'..=b'9') => number(b, i),
        _ => refused(i, "expected a value"),
    }
}

/// The object or array at `i`, checked and not built. One loop keeps the open
/// containers on a bit stack (1 = object) instead of a call per value.
fn skip_container(b: &[u8], mut i: usize, depth: usize) -> Result<usize> {
    let mut objects: u128 = 0;
    let mut open = 0usize;
    loop {
        // A value.
        i = ws(b, i);
        match b.get(i) {
            Some(&c @ (b'{' | b'[')) => {
                if depth + open >= MAX_DEPTH {
                    return refused(i, "nested too deep");
                }
                let object = c == b'{';
                i = ws(b, i + 1);
                // `{` + 2 is `}`, `[` + 2 is `]`.
                if b.get(i) == Some(&(c + 2)) {
                    i += 1;
                } else {
                    open += 1;
                    objects = objects << 1 | u128::from(object);
                    if object {
                        i = member_key(b, i)?;
                    }
                    continue;
                }
            }
            _ => i = scalar(b, i)?,
        }
        // After a value: close the containers that end here, then on to the next member
        // of the innermost one that goes on.
        loop {
            if open == 0 {
                return Ok(i);
            }
            i = ws(b, i);
            let object = objects & 1 == 1;
            match (b.get(i), object) {
                (Some(b','), false) => {
                    i += 1;
                    break;
                }
                (Some(b','), true) => {
                    i = member_key(b, ws(b, i + 1))?;
                    break;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    i += 1;
                    objects >>= 1;
                    open -= 1;
                }
                (_, true) => return refused(i, "expected `,` or `}`"),
                (_, false) => return refused(i, "expected `,` or `]`"),
            }
        }
    }
}

/// A skipped member's key at `i` and its `:`.
#[inline(always)]
fn member_key(b: &[u8], i: usize) -> Result<usize> {
    if b.get(i) != Some(&b'"') {
        return refused(i, "expected a key");
    }
    let i = ws(b, string(b, i)?.0);
    if b.get(i) != Some(&b':') {
        return refused(i, "expected `:`");
    }
    Ok(i + 1)
}

#[inline(always)]
fn literal(b: &[u8], i: usize, word: &'static [u8]) -> Result<usize> {
    if b[i..].starts_with(word) {
        Ok(i + word.len())
    } else {
        refused(i, "expected a value")
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
#[inline(always)]
fn number(b: &[u8], mut i: usize) -> Result<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i),
        _ => return refused(i, "invalid number"),
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !matches!(b.get(i), Some(b'0'..=b'9')) {
            return refused(i, "invalid number");
        }
        i = digits(b, i);
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        if !matches!(b.get(i), Some(b'0'..=b'9')) {
            return refused(i, "invalid number");
        }
        i = digits(b, i);
    }
    Ok(i)
}

#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

/// The string whose `"` is at `i`: the index after its closing `"`, and whether it has
/// escapes.
#[inline(always)]
fn string(b: &[u8], mut i: usize) -> Result<(usize, bool)> {
    i += 1;
    let mut escaped = false;
    loop {
        i = plain(b, i);
        match b.get(i) {
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                i = escape(b, i + 1)?;
            }
            Some(_) => return refused(i, "control character in a string"),
            None => return refused(i, "unterminated string"),
        }
    }
}

/// The end of the plain run at `i` inside a string: the index of the first `"`, `\` or
/// control character (`b.len()` when there is none).
#[inline(always)]
fn plain(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // Sixteen bytes at a time; the last sixteen bytes of the document are read whole
        // and the ones before `i` shifted out, so no byte is ever read one by one.
        if b.len() >= 16 {
            while i + 16 <= b.len() {
                let m = special16(b, i);
                if m != 0 {
                    return i + m.trailing_zeros() as usize;
                }
                i += 16;
            }
            if i >= b.len() {
                return b.len();
            }
            let last = b.len() - 16;
            let m = special16(b, last) >> (i - last);
            return if m != 0 {
                i + m.trailing_zeros() as usize
            } else {
                b.len()
            };
        }
    }
    while let Some(word) = b.get(i..i + 8) {
        let found = special(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Of the sixteen bytes at `b[at..]`, a mask with bit k set when byte k is `"`, `\` or a
/// control character.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn special16(b: &[u8], at: usize) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let bytes: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    // SAFETY: SSE2 is part of every x86_64 CPU, and the load reads the 16 bytes of
    // `bytes` (unaligned loads are allowed).
    unsafe {
        let x = _mm_loadu_si128(bytes.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        // x < 0x20 (unsigned) exactly when min(x, 0x1f) == x.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

/// After a `\`: one escape; a surrogate must come in a pair, as serde_json requires.
#[cold]
fn escape(b: &[u8], i: usize) -> Result<usize> {
    match b.get(i) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
        Some(b'u') => {
            let (i, unit) = hex4(b, i + 1)?;
            match unit {
                0xD800..=0xDBFF => {
                    if b[i..].starts_with(b"\\u") {
                        let (end, low) = hex4(b, i + 2)?;
                        if (0xDC00..=0xDFFF).contains(&low) {
                            return Ok(end);
                        }
                    }
                    refused(i, "lone leading surrogate")
                }
                0xDC00..=0xDFFF => refused(i, "lone trailing surrogate"),
                _ => Ok(i),
            }
        }
        _ => refused(i, "invalid escape"),
    }
}

fn hex4(b: &[u8], i: usize) -> Result<(usize, u16)> {
    let Some(digits) = b.get(i..i + 4) else {
        return refused(i, "invalid \\u escape");
    };
    let mut n = 0u16;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return refused(i, "invalid \\u escape"),
        };
        n = n * 16 + u16::from(v);
    }
    Ok((i + 4, n))
}

#[cfg(test)]
mod tests {
    use super::{plain, special};

    fn first_special(bytes: [u8; 8]) -> Option<usize> {
        bytes
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
    }

    #[test]
    fn eight_bytes_at_a_time_find_the_first_special_byte() {
        let found = |bytes: [u8; 8]| {
            let m = special(u64::from_le_bytes(bytes));
            (m != 0).then(|| (m.trailing_zeros() / 8) as usize)
        };
        for c in 0..=255u8 {
            for at in 0..8 {
                for filler in [b'a', 0x7f, 0xff, 0x20, 0x21, b'#', b'['] {
                    let mut bytes = [filler; 8];
                    bytes[at] = c;
                    assert_eq!(found(bytes), first_special(bytes), "{bytes:?}");
                    // A second special byte after the first never hides it.
                    if at + 1 < 8 {
                        bytes[at + 1] = b'"';
                        assert_eq!(found(bytes), first_special(bytes), "{bytes:?}");
                    }
                }
            }
        }
    }

    /// The run ends at the first special byte at or after the start, wherever the start
    /// and that byte are: in the sixteen-byte blocks, in the document's last sixteen
    /// bytes (read whole, the bytes before the start shifted out), or in a document
    /// shorter than sixteen bytes.
    #[test]
    fn a_plain_run_ends_at_the_first_special_byte() {
        let reference = |b: &[u8], i: usize| {
            b[i..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .map_or(b.len(), |p| i + p)
        };
        for len in 0..=48 {
            for start in 0..=len {
                // No special byte; one at each place; one before the start (must not
                // count) with one after it; two in a row.
                let mut docs = vec![vec![b'a'; len]];
                for at in 0..len {
                    for c in [b'"', b'\\', 0x00, 0x1f] {
                        let mut d = vec![b'a'; len];
                        d[at] = c;
                        docs.push(d.clone());
                        if at + 1 < len {
                            d[at + 1] = b'"';
                            docs.push(d);
                        }
                    }
                }
                for d in &docs {
                    assert_eq!(plain(d, start), reference(d, start), "{d:?} from {start}");
                }
            }
        }
        // Bytes that are not special: the space, DEL, high bytes.
        let d = [0x20u8, 0x7f, 0x80, 0xff, b'a', 0x21, 0xc3, 0xa9].repeat(5);
        for start in 0..=d.len() {
            assert_eq!(plain(&d, start), d.len());
        }
    }
}
