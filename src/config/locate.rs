//! Maps JSON pointers of a YAML document to the line where each node is written, so that
//! every problem found on the JSON value can name the line a person must edit.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of every node of a YAML document, keyed by JSON pointer.
#[derive(Debug, Default)]
pub struct Locator {
    lines: HashMap<String, usize>,
}

impl Locator {
    /// Reads `text`; a document that does not parse yields an empty locator (the parse
    /// error itself is reported by the loader, with its own line).
    pub fn new(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, false);
        Locator {
            lines: builder.lines,
        }
    }

    /// The line of the node at `pointer`, or of its nearest ancestor that has one.
    pub fn line(&self, pointer: &str) -> Option<usize> {
        let mut p = pointer;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            if p.is_empty() {
                return None;
            }
            p = &p[..p.rfind('/').unwrap_or(0)];
        }
    }
}

enum Frame {
    Map {
        pointer: String,
        key: Option<String>,
    },
    Seq {
        pointer: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    lines: HashMap<String, usize>,
    stack: Vec<Frame>,
}

/// Escapes one JSON-pointer segment (RFC 6901).
pub fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Builder {
    /// Decides the pointer of the node that starts now. Returns `None` for a mapping
    /// key (which is recorded as the line of the value it names).
    fn node_pointer(&mut self, key_text: Option<&str>, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { pointer, next }) => {
                let p = format!("{pointer}/{next}");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { pointer, key }) => match key.take() {
                None => {
                    // This node is a key: remember it, and its line as the value's line.
                    let k = key_text.unwrap_or("?").to_string();
                    let p = format!("{pointer}/{}", escape_segment(&k));
                    self.lines.entry(p).or_insert(line);
                    *key = Some(k);
                    None
                }
                Some(k) => Some(format!("{pointer}/{}", escape_segment(&k))),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(p) = self.node_pointer(Some(&text), line) {
                    self.lines.entry(p).or_insert(line);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.node_pointer(None, line) {
                    self.lines.entry(p).or_insert(line);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                // A collection used as a mapping key has no pointer; give it a dummy one.
                let pointer = self.node_pointer(None, line).unwrap_or_else(|| "/?".into());
                self.lines.entry(pointer.clone()).or_insert(line);
                self.stack.push(if is_map {
                    Frame::Map { pointer, key: None }
                } else {
                    Frame::Seq { pointer, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_nested_nodes() {
        let text = "name: x\nclassify:\n  - status: 429\n    outcome: rate_limited\n  - outcome: success\nrequest:\n  body: {a: [1, 2]}\n";
        let loc = Locator::new(text);
        assert_eq!(loc.line("/name"), Some(1));
        assert_eq!(loc.line("/classify"), Some(2));
        assert_eq!(loc.line("/classify/0/status"), Some(3));
        assert_eq!(loc.line("/classify/0/outcome"), Some(4));
        assert_eq!(loc.line("/classify/1/outcome"), Some(5));
        assert_eq!(loc.line("/request/body/a/1"), Some(7));
        assert_eq!(loc.line("/classify/7/nothing"), Some(2));
    }
}
