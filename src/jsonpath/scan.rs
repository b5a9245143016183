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

use std::borrow::Cow;

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
    i: usize,
    depth: usize,
    paths: &'a [JsonPath],
}

impl<'a> Scanner<'a> {
    pub(super) fn new(b: &'a [u8], paths: &'a [JsonPath]) -> Scanner<'a> {
        Scanner {
            b,
            i: 0,
            depth: 0,
            paths,
        }
    }

    /// The whole document: one value, then only whitespace.
    pub(super) fn document(&mut self, root: &Node, hits: &mut Vec<(usize, Value)>) -> Result<()> {
        self.value(root, hits)?;
        self.ws();
        if self.i != self.b.len() {
            return self.refuse("trailing characters");
        }
        Ok(())
    }

    fn refuse<T>(&self, what: &'static str) -> Result<T> {
        Err(Refused { at: self.i, what })
    }

    fn ws(&mut self) {
        self.i = ws(self.b, self.i);
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.refuse(what)
        }
    }

    /// The value at `node`: built when a path ends here, else walked for the paths that
    /// go on below, else skipped.
    fn value(&mut self, node: &Node, hits: &mut Vec<(usize, Value)>) -> Result<()> {
        self.ws();
        if !node.ends.is_empty() {
            let start = self.i;
            self.skip()?;
            let value = leaf(&self.b[start..self.i]).map_err(|_| Refused {
                at: start,
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
            return Ok(());
        }
        match self.peek() {
            Some(b'{') if !node.keys.is_empty() || node.any.is_some() => {
                self.container(b'}', |s, first| {
                    if !first {
                        s.expect(b',', "expected `,` or `}`")?;
                    }
                    s.ws();
                    let key = s.key()?;
                    s.expect(b':', "expected `:`")?;
                    match node.key(&key) {
                        Some(child) => s.value(child, hits),
                        None => s.skip(),
                    }
                })
            }
            Some(b'[') if !node.indices.is_empty() || node.any.is_some() => {
                let mut i = 0usize;
                self.container(b']', |s, first| {
                    if !first {
                        s.expect(b',', "expected `,` or `]`")?;
                    }
                    let r = match node.index(i) {
                        Some(child) => s.value(child, hits),
                        None => s.skip(),
                    };
                    i += 1;
                    r
                })
            }
            _ => self.skip(),
        }
    }

    /// `{ ... }` or `[ ... ]` at the cursor, calling `item` for each member (`first` is
    /// true for the first one).
    fn container(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self, bool) -> Result<()>,
    ) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.refuse("nested too deep");
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
        } else {
            let mut first = true;
            loop {
                item(self, first)?;
                first = false;
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    break;
                }
                if self.peek() != Some(b',') {
                    return self.refuse("expected `,` or a closing bracket");
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// Any value, checked and not built.
    fn skip(&mut self) -> Result<()> {
        self.i = skip(self.b, self.i, self.depth)?;
        Ok(())
    }

    /// An object key's bytes, unescaped (borrowed when it has no escapes). The caller
    /// checked that the document is UTF-8, so equal bytes are equal names.
    fn key(&mut self) -> Result<Cow<'a, [u8]>> {
        if self.peek() != Some(b'"') {
            return self.refuse("expected a key");
        }
        let start = self.i;
        let (end, escaped) = string(self.b, start)?;
        self.i = end;
        if !escaped {
            return Ok(Cow::Borrowed(&self.b[start + 1..end - 1]));
        }
        serde_json::from_slice::<String>(&self.b[start..end])
            .map(|k| Cow::Owned(k.into_bytes()))
            .map_err(|_| Refused {
                at: start,
                what: "invalid string",
            })
    }
}

// The skipping half works on a byte slice and an index held in a register, returning the
// index after what it read: most of a body is skipped, and a cursor in memory (or a call
// per value) costs more than the reading itself.

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

#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// Any value at `i` (after whitespace), checked and not built. One loop keeps the open
/// containers on a bit stack (1 = object) instead of a call per value; `depth` is how
/// deep `i` already is.
fn skip(b: &[u8], mut i: usize, depth: usize) -> Result<usize> {
    let mut objects: u128 = 0;
    let mut open = 0usize;
    loop {
        // A value.
        i = ws(b, i);
        match b.get(i) {
            Some(b'"') => i = string(b, i)?.0,
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
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            _ => return refused(i, "expected a value"),
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

fn literal(b: &[u8], i: usize, word: &'static [u8]) -> Result<usize> {
    if b[i..].starts_with(word) {
        Ok(i + word.len())
    } else {
        refused(i, "expected a value")
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
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
        // The plain run: everything but `"`, `\` and control characters, eight bytes at
        // a time while it lasts, then byte by byte up to what ends it.
        while let Some(word) = b.get(i..i + 8) {
            let found = special(u64::from_le_bytes(word.try_into().expect("8 bytes")));
            if found != 0 {
                i += (found.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        while let Some(&c) = b.get(i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                break;
            }
            i += 1;
        }
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
    use super::special;

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
}
