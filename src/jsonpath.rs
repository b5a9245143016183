//! The small JSON path language of provider files: `error.code`, `[0].error.status`,
//! `error.details[*].quotaId`. A leading `$` or `$.` is allowed and ignored.
//!
//! [`PathSet`] parses a document keeping only what a set of paths can reach: a response
//! body is parsed on every response, and building the whole tree (every key and string
//! allocated) cost more than the rest of the engine's work per response together.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
    Any,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    /// Parses a path; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let mut rest = text.trim();
        rest = rest.strip_prefix('$').unwrap_or(rest);
        rest = rest.strip_prefix('.').unwrap_or(rest);
        let mut segments = Vec::new();
        let mut chars = rest.char_indices().peekable();
        let mut key = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '.' => {
                    if key.is_empty()
                        && !matches!(segments.last(), Some(Segment::Index(_) | Segment::Any))
                    {
                        return Err(format!("empty name at character {} of `{text}`", i + 1));
                    }
                    if !key.is_empty() {
                        segments.push(Segment::Key(std::mem::take(&mut key)));
                    }
                }
                '[' => {
                    if !key.is_empty() {
                        segments.push(Segment::Key(std::mem::take(&mut key)));
                    }
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some((_, ']')) => break,
                            Some((_, ch)) => inner.push(ch),
                            None => return Err(format!("unclosed `[` in `{text}`")),
                        }
                    }
                    let inner = inner.trim();
                    if inner == "*" {
                        segments.push(Segment::Any);
                    } else {
                        let index = inner.parse::<usize>().map_err(|_| {
                            format!("`[{inner}]` in `{text}` is neither an index nor `[*]`")
                        })?;
                        segments.push(Segment::Index(index));
                    }
                }
                ']' => return Err(format!("unexpected `]` in `{text}`")),
                c => key.push(c),
            }
        }
        if !key.is_empty() {
            segments.push(Segment::Key(key));
        } else if rest.ends_with('.') {
            return Err(format!("`{text}` ends with `.`"));
        }
        if segments.is_empty() {
            return Err("empty path".into());
        }
        Ok(JsonPath { segments })
    }

    /// Every value the path reaches (several where `[*]` fans out), in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        self.find_map(root, |v| {
            out.push(v);
            None::<()>
        });
        out
    }

    /// The first `Some` that `f` returns for the values the path reaches, in document
    /// order, without collecting them (this runs on every response).
    pub fn find_map<'a, T>(
        &self,
        root: &'a Value,
        mut f: impl FnMut(&'a Value) -> Option<T>,
    ) -> Option<T> {
        fn walk<'a, T>(
            segments: &[Segment],
            v: &'a Value,
            f: &mut dyn FnMut(&'a Value) -> Option<T>,
        ) -> Option<T> {
            let Some((seg, rest)) = segments.split_first() else {
                return f(v);
            };
            match (seg, v) {
                (Segment::Key(k), Value::Object(map)) => walk(rest, map.get(k)?, f),
                (Segment::Index(i), Value::Array(items)) => walk(rest, items.get(*i)?, f),
                (Segment::Any, Value::Array(items)) => items.iter().find_map(|c| walk(rest, c, f)),
                (Segment::Any, Value::Object(map)) => map.values().find_map(|c| walk(rest, c, f)),
                _ => None,
            }
        }
        walk(&self.segments, root, &mut f)
    }

    /// The first non-null value the path reaches.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.find_map(root, |v| (!v.is_null()).then_some(v))
    }
}

/// Several paths as one tree, to parse a document once for all of them.
///
/// [`PathSet::parse`] returns a *pruned* document: every path of the set finds in it
/// exactly what it finds in the whole document ([`JsonPath::find`]); what no path can
/// reach is checked for syntax but not built (object members are left out, array
/// elements before a needed index stand as `null`, scalars off every path are `null`).
/// A path that ends at a value keeps that value whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathSet {
    root: Node,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Node {
    /// A path ends here: the value is kept whole.
    whole: bool,
    keys: Vec<(String, Node)>,
    indices: Vec<(usize, Node)>,
    /// `[*]`: every element or member. Merged into `keys` and `indices` by
    /// [`Node::settle`], so a parse never has to merge two children.
    any: Option<Box<Node>>,
}

impl PathSet {
    /// The set of these paths.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a JsonPath>) -> PathSet {
        let mut root = Node::default();
        for path in paths {
            let mut node = &mut root;
            for seg in &path.segments {
                node = match seg {
                    Segment::Key(k) => {
                        let at = match node.keys.iter().position(|(name, _)| name == k) {
                            Some(at) => at,
                            None => {
                                node.keys.push((k.clone(), Node::default()));
                                node.keys.len() - 1
                            }
                        };
                        &mut node.keys[at].1
                    }
                    Segment::Index(i) => {
                        let at = match node.indices.iter().position(|(n, _)| n == i) {
                            Some(at) => at,
                            None => {
                                node.indices.push((*i, Node::default()));
                                node.indices.len() - 1
                            }
                        };
                        &mut node.indices[at].1
                    }
                    Segment::Any => node.any.get_or_insert_with(Box::default),
                };
            }
            node.whole = true;
        }
        root.settle();
        PathSet { root }
    }

    /// Keeps the whole document: a plain parse.
    pub fn everything() -> PathSet {
        PathSet {
            root: Node {
                whole: true,
                ..Node::default()
            },
        }
    }

    /// No path at all.
    pub fn is_empty(&self) -> bool {
        *self == PathSet::default()
    }

    /// Parses a whole JSON document (trailing whitespace only, valid UTF-8 throughout,
    /// as `serde_json::from_slice` requires), keeping what the paths reach.
    pub fn parse(&self, bytes: &[u8]) -> Result<Value, serde_json::Error> {
        if self.root.whole {
            return serde_json::from_slice(bytes);
        }
        // A skipped string is not checked for UTF-8 by the parser; checking the whole
        // document keeps "is this JSON" the same as for a full parse (ASCII first: it
        // is the common case and much cheaper to check).
        if !bytes.is_ascii() {
            if let Err(e) = std::str::from_utf8(bytes) {
                return Err(serde::de::Error::custom(format!("invalid UTF-8: {e}")));
            }
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = Pruned(&self.root).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

impl Node {
    /// Pushes every `[*]` subtree into the named siblings it also applies to,
    /// recursively; a node kept whole needs no children.
    fn settle(&mut self) {
        if self.whole {
            self.keys.clear();
            self.indices.clear();
            self.any = None;
            return;
        }
        let named = self
            .keys
            .iter_mut()
            .map(|(_, n)| n)
            .chain(self.indices.iter_mut().map(|(_, n)| n));
        for child in named {
            if let Some(any) = &self.any {
                child.merge(any);
            }
            child.settle();
        }
        if let Some(any) = &mut self.any {
            any.settle();
        }
    }

    fn merge(&mut self, other: &Node) {
        self.whole |= other.whole;
        for (k, theirs) in &other.keys {
            match self.keys.iter_mut().find(|(name, _)| name == k) {
                Some((_, mine)) => mine.merge(theirs),
                None => self.keys.push((k.clone(), theirs.clone())),
            }
        }
        for (i, theirs) in &other.indices {
            match self.indices.iter_mut().find(|(n, _)| n == i) {
                Some((_, mine)) => mine.merge(theirs),
                None => self.indices.push((*i, theirs.clone())),
            }
        }
        match (&mut self.any, &other.any) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.any = Some(theirs.clone()),
            _ => {}
        }
    }

    fn key(&self, key: &str) -> Option<&Node> {
        self.keys
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, n)| n)
            .or(self.any.as_deref())
    }

    fn index(&self, i: usize) -> Option<&Node> {
        self.indices
            .iter()
            .find(|(n, _)| *n == i)
            .map(|(_, n)| n)
            .or(self.any.as_deref())
    }

    /// Past this index no element is needed (unless `[*]`).
    fn last_index(&self) -> Option<usize> {
        self.indices.iter().map(|(i, _)| *i).max()
    }
}

/// Deserializes the value at one node of a [`PathSet`].
struct Pruned<'n>(&'n Node);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            Value::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    // No path continues through a scalar: it is not built.
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let node = self.0;
        let needed = node
            .any
            .is_some()
            .then_some(usize::MAX)
            .or(node.last_index());
        let mut items = Vec::new();
        let mut i = 0usize;
        loop {
            let more = match node.index(i) {
                Some(child) => match seq.next_element_seed(Pruned(child))? {
                    Some(v) => {
                        items.push(v);
                        true
                    }
                    None => false,
                },
                None => {
                    let more = seq.next_element::<IgnoredAny>()?.is_some();
                    if more && needed.is_some_and(|last| i < last) {
                        items.push(Value::Null);
                    }
                    more
                }
            };
            if !more {
                break;
            }
            i += 1;
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.0.key(&key) {
                Some(child) => {
                    let v = map.next_value_seed(Pruned(child))?;
                    out.insert(key.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// An object key, borrowed from the document when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_the_values_vendors_use() {
        let doc = json!({"error": {"code": "x", "details": [{"quotaId": "PerDay"}, {"retryDelay": "47s"}]}});
        assert_eq!(
            JsonPath::parse("error.code").unwrap().first(&doc),
            Some(&json!("x"))
        );
        assert_eq!(
            JsonPath::parse("$.error.code").unwrap().first(&doc),
            Some(&json!("x"))
        );
        assert_eq!(
            JsonPath::parse("error.details[*].retryDelay")
                .unwrap()
                .first(&doc),
            Some(&json!("47s"))
        );
        assert_eq!(
            JsonPath::parse("error.details[0].quotaId")
                .unwrap()
                .find(&doc),
            vec![&json!("PerDay")]
        );
        let arr = json!([{"error": {"status": "RESOURCE_EXHAUSTED"}}]);
        assert_eq!(
            JsonPath::parse("[0].error.status").unwrap().first(&arr),
            Some(&json!("RESOURCE_EXHAUSTED"))
        );
        assert!(JsonPath::parse("error.missing")
            .unwrap()
            .first(&doc)
            .is_none());
    }

    /// Every path of the set finds in the pruned document what it finds in the whole.
    fn same_finds(paths: &[&str], doc: &str) {
        let parsed: Vec<JsonPath> = paths.iter().map(|p| JsonPath::parse(p).unwrap()).collect();
        let set = PathSet::new(&parsed);
        let whole: Value = serde_json::from_str(doc).unwrap();
        let pruned = set.parse(doc.as_bytes()).unwrap();
        for (text, path) in paths.iter().zip(&parsed) {
            assert_eq!(
                path.find(&pruned),
                path.find(&whole),
                "path {text} in {doc}"
            );
        }
    }

    #[test]
    fn a_pruned_parse_finds_what_a_whole_parse_finds() {
        let doc = r#"{"id":"x","choices":[{"message":{"content":"hi"}}],
            "usage":{"prompt_tokens":12,"completion_tokens":8.0,"details":{"a":[1,2]}},
            "error":{"code":null,"details":[{"quotaId":"PerDay"},{"retryDelay":"47s"},7,"s"]},
            "dup":1,"dup":{"k":2},"esc\u0061ped":{"v":true}}"#;
        let paths = [
            "usage.prompt_tokens",
            "usage.completion_tokens",
            "usage.details",
            "error.code",
            "error.details[*].retryDelay",
            "error.details[1].retryDelay",
            "error.details[0]",
            "error.details[3]",
            "error.details[9]",
            "choices[0].message.content",
            "dup.k",
            "escaped.v",
            "id.nested",
            "missing.path",
            "[0]",
        ];
        same_finds(&paths, doc);
        for one in paths {
            same_finds(&[one], doc);
        }
        same_finds(&["[*]", "[1].a"], r#"[{"a":1},{"a":[2,3]},null,"x"]"#);
        same_finds(
            &["[1].a", "[*].b"],
            r#"[{"a":1,"b":2},{"a":[2,3],"b":{"c":4}}]"#,
        );
        same_finds(
            &["error.*", "error.code"],
            r#"{"error":{"code":1,"type":"t"}}"#,
        );
        same_finds(&["[*][*].x"], r#"[[{"x":1},{"y":2}],[{"x":3}]]"#);
    }

    #[test]
    fn a_pruned_parse_builds_only_what_the_paths_reach() {
        let set = PathSet::new(&[
            JsonPath::parse("usage.completion_tokens").unwrap(),
            JsonPath::parse("error.details[1].retryDelay").unwrap(),
        ]);
        let doc = r#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":8},
            "error":{"details":[{"quotaId":"PerDay"},{"retryDelay":"47s","other":1},{"z":0}]}}"#;
        assert_eq!(
            set.parse(doc.as_bytes()).unwrap(),
            json!({"usage": {"completion_tokens": 8},
                   "error": {"details": [null, {"retryDelay": "47s"}]}})
        );
        assert_eq!(
            PathSet::everything().parse(doc.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(doc).unwrap()
        );
        assert!(PathSet::new(&[]).is_empty());
        assert!(!set.is_empty());
    }

    #[test]
    fn a_pruned_parse_rejects_what_a_whole_parse_rejects() {
        let set = PathSet::new(&[JsonPath::parse("a").unwrap()]);
        for bad in [
            &b"{\"a\":1} x"[..],
            b"{\"a\":1",
            b"{\"b\":\"\xff\",\"a\":1}",
            b"{\"b\":[1,],\"a\":1}",
            b"{\"b\":01,\"a\":1}",
            b"",
        ] {
            assert!(serde_json::from_slice::<Value>(bad).is_err());
            assert!(
                set.parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(set.parse(b" {\"a\":1} \n").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn bad_paths_are_rejected_with_a_reason() {
        assert_eq!(JsonPath::parse("").unwrap_err(), "empty path");
        assert_eq!(
            JsonPath::parse("a..b").unwrap_err(),
            "empty name at character 3 of `a..b`"
        );
        assert_eq!(
            JsonPath::parse("a[x]").unwrap_err(),
            "`[x]` in `a[x]` is neither an index nor `[*]`"
        );
        assert_eq!(JsonPath::parse("a[0").unwrap_err(), "unclosed `[` in `a[0`");
    }
}
