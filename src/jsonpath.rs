//! The small JSON path language of provider files: `error.code`, `[0].error.status`,
//! `error.details[*].quotaId`. A leading `$` or `$.` is allowed and ignored.

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

    /// Every value the path reaches (several where `[*]` fans out).
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for seg in &self.segments {
            let mut next = Vec::new();
            for v in current {
                match (seg, v) {
                    (Segment::Key(k), Value::Object(map)) => next.extend(map.get(k)),
                    (Segment::Index(i), Value::Array(items)) => next.extend(items.get(*i)),
                    (Segment::Any, Value::Array(items)) => next.extend(items.iter()),
                    (Segment::Any, Value::Object(map)) => next.extend(map.values()),
                    _ => {}
                }
            }
            current = next;
        }
        current
    }

    /// The first non-null value the path reaches.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.find(root).into_iter().find(|v| !v.is_null())
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
