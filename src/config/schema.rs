//! The JSON Schemas of provider, scenario and result files.
//!
//! They are generated from the Rust types with schemars and committed under `schemas/`.
//! The program validates with the committed files (embedded at build time), and the test
//! `schemas_match_the_code` fails when they drift from the types.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde_json::Value;

use super::locate::{escape_segment, Locator};
use super::Problem;

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    Provider,
    Scenario,
    Result,
}

impl SchemaKind {
    /// File name under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Provider => "provider.schema.json",
            SchemaKind::Scenario => "scenario.schema.json",
            SchemaKind::Result => "result.schema.json",
        }
    }

    /// The committed schema, as embedded in the binary.
    pub fn committed(self) -> &'static str {
        match self {
            SchemaKind::Provider => include_str!("../../schemas/provider.schema.json"),
            SchemaKind::Scenario => include_str!("../../schemas/scenario.schema.json"),
            SchemaKind::Result => include_str!("../../schemas/result.schema.json"),
        }
    }

    /// The schema generated from the current types (pretty JSON, trailing newline).
    pub fn generate(self) -> String {
        let schema = match self {
            SchemaKind::Provider => schemars::schema_for!(super::Provider),
            SchemaKind::Scenario => schemars::schema_for!(super::Scenario),
            SchemaKind::Result => schemars::schema_for!(crate::report::ProbeResult),
        };
        let mut text = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
        text.push('\n');
        text
    }

    fn validator(self) -> &'static Validator {
        static CELLS: [OnceLock<Validator>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        CELLS[self as usize].get_or_init(|| {
            let schema: Value = serde_json::from_str(self.committed())
                .expect("the committed schema is JSON (checked by tests)");
            jsonschema::options()
                .build(&schema)
                .expect("the committed schema compiles (checked by tests)")
        })
    }
}

/// Every schema violation of `value`, each with the line of the node concerned.
pub fn check(kind: SchemaKind, value: &Value, locator: &Locator) -> Vec<Problem> {
    let mut problems: Vec<Problem> = Vec::new();
    for error in kind.validator().iter_errors(value) {
        let pointer = error.instance_path.as_str().to_string();
        match &error.kind {
            // Name each unexpected key on its own line, where it is written.
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    let at = format!("{pointer}/{}", escape_segment(key));
                    problems.push(Problem {
                        line: locator.line(&at),
                        pointer: at,
                        message: format!("unknown field `{key}`{}", suggestion(kind, key)),
                    });
                }
            }
            ValidationErrorKind::AnyOf
                if error.instance.is_number() && is_status_path(&pointer) =>
            {
                problems.push(Problem {
                    line: locator.line(&pointer),
                    message: format!("{} is not an HTTP status (100 to 599)", error.instance),
                    pointer,
                })
            }
            _ => problems.push(Problem {
                line: locator.line(&pointer),
                pointer,
                message: plain_message(&error.to_string()),
            }),
        }
    }
    problems.sort_by_key(|p| p.line.unwrap_or(0));
    problems.dedup();
    problems
}

fn is_status_path(pointer: &str) -> bool {
    let mut segs = pointer.rsplit('/');
    let last = segs.next().unwrap_or("");
    last == "status" || (last.bytes().all(|b| b.is_ascii_digit()) && segs.next() == Some("status"))
}

/// Shortens jsonschema's messages, which quote whole sub-documents, to one line.
fn plain_message(message: &str) -> String {
    let one_line = message.replace('\n', " ");
    if one_line.chars().count() > 200 {
        let cut: String = one_line.chars().take(200).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// "did you mean" for a typo'd key, from the keys the schema knows anywhere.
fn suggestion(kind: SchemaKind, key: &str) -> String {
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    out.extend(props.keys().cloned());
                }
                map.values().for_each(|v| collect(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let schema: Value = match serde_json::from_str(kind.committed()) {
        Ok(v) => v,
        Err(_) => return String::new(),
    };
    let mut known = Vec::new();
    collect(&schema, &mut known);
    known
        .into_iter()
        .map(|k| (edit_distance(&k, key), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
