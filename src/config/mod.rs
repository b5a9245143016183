//! Loading configuration files: read → YAML → JSON value → JSON-Schema check against the
//! committed schema → typed struct (unknown fields rejected) → cross-field checks.
//!
//! Every problem of a file is collected, each with the file, the path inside the
//! document and the line where it is written, so a person fixes them all in one go.

pub mod keys;
pub mod locate;
pub mod provider;
pub mod registry;
pub mod scenario;
pub mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use provider::Provider;
pub use scenario::Scenario;
pub use schema::SchemaKind;

use locate::Locator;

/// Config files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON pointer of the offending node (`""` for the whole document).
    pub pointer: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// Everything wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// A single problem that concerns the whole file (unreadable, not UTF-8, ...).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                pointer: String::new(),
                line: None,
                message: message.into(),
            }],
        }
    }
}

/// A JSON pointer as a person reads it: `/classify/0/status` → `classify[0].status`.
pub fn display_path(pointer: &str) -> String {
    if pointer.is_empty() {
        return "(top level)".into();
    }
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let file = self.file.display();
            match p.line {
                Some(line) => write!(
                    f,
                    "{file}:{line}: {}: {}",
                    display_path(&p.pointer),
                    p.message
                )?,
                None => write!(f, "{file}: {}: {}", display_path(&p.pointer), p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads a config file as text, refusing what cannot be a config file.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read: {}", io_reason(&e))))?;
    if meta.is_dir() {
        return Err(ConfigError::whole_file(path, "is a directory, not a file"));
    }
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(ConfigError::whole_file(
            path,
            format!(
                "is {} bytes; config files are limited to {MAX_FILE_BYTES} bytes",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read: {}", io_reason(&e))))?;
    String::from_utf8(bytes).map_err(|e| {
        ConfigError::whole_file(
            path,
            format!(
                "is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// An I/O error's reason without Rust's `(os error N)` noise.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// Parses YAML text and checks it against the schema of `kind`. Returns the JSON value
/// and the locator for later problems.
fn parse_and_validate(
    file: &Path,
    text: &str,
    kind: SchemaKind,
    extra: fn(&Value) -> Vec<(String, String)>,
) -> Result<(Value, Locator), ConfigError> {
    parse_and_check(file, text, Some(kind), extra)
}

/// [`parse_and_validate`], with the JSON-Schema step only when `schema` is given.
fn parse_and_check(
    file: &Path,
    text: &str,
    schema: Option<SchemaKind>,
    extra: fn(&Value) -> Vec<(String, String)>,
) -> Result<(Value, Locator), ConfigError> {
    let err = |problems| ConfigError {
        file: file.to_path_buf(),
        problems,
    };
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ConfigError::whole_file(
            file,
            "is empty: expected a YAML mapping",
        ));
    }
    let value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            let mut message = e.to_string();
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            return Err(err(vec![Problem {
                pointer: String::new(),
                line,
                message: format!("invalid YAML: {message}"),
            }]));
        }
    };
    let locator = Locator::new(text);
    if !value.is_object() {
        return Err(err(vec![Problem {
            pointer: String::new(),
            line: Some(1),
            message: format!("expected a YAML mapping, found {}", kind_of(&value)),
        }]));
    }
    let mut problems = match schema {
        Some(kind) => schema::check(kind, &value, &locator),
        None => Vec::new(),
    };
    problems.extend(extra(&value).into_iter().map(|(pointer, message)| Problem {
        line: locator.line(&pointer),
        pointer,
        message,
    }));
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        return Err(err(problems));
    }
    Ok((value, locator))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Turns a schema-valid JSON value into `T`. The schema is generated from `T`, so a
/// failure here is rare; it is still reported, never unwrapped.
fn typed<T: DeserializeOwned>(file: &Path, value: Value) -> Result<T, ConfigError> {
    serde_json::from_value(value).map_err(|e| ConfigError::whole_file(file, e.to_string()))
}

/// Attaches lines to pointer-only problems.
fn located(
    file: &Path,
    locator: &Locator,
    problems: Vec<(String, String)>,
) -> Result<(), ConfigError> {
    if problems.is_empty() {
        return Ok(());
    }
    let mut problems: Vec<Problem> = problems
        .into_iter()
        .map(|(pointer, message)| Problem {
            line: locator.line(&pointer),
            pointer,
            message,
        })
        .collect();
    problems.sort_by_key(|p| p.line.unwrap_or(0));
    Err(ConfigError {
        file: file.to_path_buf(),
        problems,
    })
}

/// Loads a provider from YAML text (`file` names it in messages).
pub fn parse_provider(file: &Path, text: &str) -> Result<Provider, ConfigError> {
    let (value, locator) = parse_and_validate(
        file,
        text,
        SchemaKind::Provider,
        crate::template::template_problems,
    )?;
    let provider: Provider = typed(file, value)?;
    located(file, &locator, provider::check(&provider))?;
    Ok(provider)
}

/// Loads a built-in provider: as [`parse_provider`] (typed with unknown fields refused,
/// cross-checks), without the JSON-Schema step. The embedded text is the committed file,
/// which `tests/providers.rs` validates against the schema; compiling the provider
/// validator (jsonschema 0.26 keeps about 20 MB of heap for it, for the life of the
/// process) is then left to runs that load a user's provider file. This was the largest
/// item of a probe's peak RSS (BENCHMARKS.md).
pub fn parse_builtin_provider(file: &Path, text: &str) -> Result<Provider, ConfigError> {
    let (value, locator) = parse_and_check(file, text, None, crate::template::template_problems)?;
    let provider: Provider = typed(file, value)?;
    located(file, &locator, provider::check(&provider))?;
    Ok(provider)
}

/// Loads a scenario from YAML text.
pub fn parse_scenario(file: &Path, text: &str) -> Result<Scenario, ConfigError> {
    let (value, locator) = parse_and_validate(file, text, SchemaKind::Scenario, |_| Vec::new())?;
    let scenario: Scenario = typed(file, value)?;
    located(file, &locator, scenario::check(&scenario))?;
    Ok(scenario)
}

/// Reads and loads a provider file.
pub fn load_provider(path: &Path) -> Result<Provider, ConfigError> {
    parse_provider(path, &read_text(path)?)
}

/// Reads and loads a scenario file.
pub fn load_scenario(path: &Path) -> Result<Scenario, ConfigError> {
    parse_scenario(path, &read_text(path)?)
}

/// What kind of file a path holds, from the schema line or, failing that, its content.
pub fn detect_kind(text: &str) -> Option<SchemaKind> {
    for line in text.lines().take(5) {
        if line.contains("yaml-language-server") && line.contains("$schema") {
            for kind in [
                SchemaKind::Provider,
                SchemaKind::Scenario,
                SchemaKind::Result,
            ] {
                if line.contains(kind.file_name()) {
                    return Some(kind);
                }
            }
        }
    }
    let value: Value = serde_yaml::from_str(text).ok()?;
    let obj = value.as_object()?;
    if obj.contains_key("classify") || obj.contains_key("request") {
        Some(SchemaKind::Provider)
    } else {
        Some(SchemaKind::Scenario)
    }
}

/// `find-workers-limit validate FILE`: loads the file as the kind it declares.
pub fn validate_file(path: &Path) -> Result<SchemaKind, ConfigError> {
    let text = read_text(path)?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let kind = if is_json {
        Some(SchemaKind::Result)
    } else {
        detect_kind(&text)
    };
    match kind.unwrap_or(SchemaKind::Scenario) {
        SchemaKind::Provider => parse_provider(path, &text).map(|_| SchemaKind::Provider),
        SchemaKind::Scenario => parse_scenario(path, &text).map(|_| SchemaKind::Scenario),
        SchemaKind::Result => {
            let value: Value = serde_json::from_str(&text)
                .or_else(|_| serde_yaml::from_str(&text))
                .map_err(|e| ConfigError::whole_file(path, format!("invalid JSON: {e}")))?;
            let problems = schema::check(SchemaKind::Result, &value, &Locator::default());
            if problems.is_empty() {
                Ok(SchemaKind::Result)
            } else {
                Err(ConfigError {
                    file: path.to_path_buf(),
                    problems,
                })
            }
        }
    }
}
