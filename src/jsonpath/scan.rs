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
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
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
            let value: Value =
                serde_json::from_slice(&self.b[start..self.i]).map_err(|_| Refused {
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
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => self.container(b'}', |s, first| {
                if !first {
                    s.expect(b',', "expected `,` or `}`")?;
                }
                s.ws();
                if s.peek() != Some(b'"') {
                    return s.refuse("expected a key");
                }
                s.string()?;
                s.expect(b':', "expected `:`")?;
                s.skip()
            }),
            Some(b'[') => self.container(b']', |s, first| {
                if !first {
                    s.expect(b',', "expected `,` or `]`")?;
                }
                s.skip()
            }),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.refuse("expected a value"),
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.refuse("expected a value")
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.refuse("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.refuse("invalid number");
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.refuse("invalid number");
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// An object key's bytes, unescaped (borrowed when it has no escapes). The caller
    /// checked that the document is UTF-8, so equal bytes are equal names.
    fn key(&mut self) -> Result<Cow<'a, [u8]>> {
        if self.peek() != Some(b'"') {
            return self.refuse("expected a key");
        }
        let start = self.i;
        let escaped = self.string()?;
        if !escaped {
            return Ok(Cow::Borrowed(&self.b[start + 1..self.i - 1]));
        }
        serde_json::from_slice::<String>(&self.b[start..self.i])
            .map(|k| Cow::Owned(k.into_bytes()))
            .map_err(|_| Refused {
                at: start,
                what: "invalid string",
            })
    }

    /// A string at the cursor (on its `"`); true when it has escapes.
    fn string(&mut self) -> Result<bool> {
        self.i += 1;
        let mut escaped = false;
        loop {
            // The plain run: everything but `"`, `\` and control characters, eight
            // bytes at a time while it lasts, then byte by byte up to what ends it.
            while let Some(word) = self.b.get(self.i..self.i + 8) {
                let found = special(u64::from_le_bytes(word.try_into().expect("8 bytes")));
                if found != 0 {
                    self.i += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                self.i += 8;
            }
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.i += 1;
                    self.escape()?;
                }
                Some(_) => return self.refuse("control character in a string"),
                None => return self.refuse("unterminated string"),
            }
        }
    }

    /// After a `\`: one escape; a surrogate must come in a pair, as serde_json requires.
    fn escape(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                self.i += 1;
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        if self.b[self.i..].starts_with(b"\\u") {
                            self.i += 2;
                            if (0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                return Ok(());
                            }
                        }
                        self.refuse("lone leading surrogate")
                    }
                    0xDC00..=0xDFFF => self.refuse("lone trailing surrogate"),
                    _ => Ok(()),
                }
            }
            _ => self.refuse("invalid escape"),
        }
    }

    fn hex4(&mut self) -> Result<u16> {
        let Some(digits) = self.b.get(self.i..self.i + 4) else {
            return self.refuse("invalid \\u escape");
        };
        let mut n = 0u16;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.refuse("invalid \\u escape"),
            };
            n = n * 16 + u16::from(v);
        }
        self.i += 4;
        Ok(n)
    }
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
