//! API keys: from the process environment and a dotenv file (`--keys-file`, default
//! `.env`). Keys are held as [`Secret`], whose `Debug` and `Display` never show them.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A key. Printing it shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Every value handed out by [`Keys::get`], so that the last line of defence (the panic
/// hook) can redact them from a message it did not write.
static HANDED_OUT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn remember(value: &str) {
    if let Ok(mut known) = HANDED_OUT.lock() {
        if !known.iter().any(|k| k == value) {
            known.push(value.to_string());
        }
    }
}

/// `text` with every key or keys-file value read so far replaced by `***`. Never blocks
/// (a panic while the list is locked leaves the text as it is).
pub fn redact_known(text: &str) -> String {
    let mut out = text.to_string();
    if let Ok(known) = HANDED_OUT.try_lock() {
        for k in known.iter().filter(|k| !k.is_empty()) {
            out = out.replace(k.as_str(), "***");
        }
    }
    out
}

/// The default keys file, in the working directory.
pub const DEFAULT_KEYS_FILE: &str = ".env";

/// Errors about keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    #[error("{file}: cannot read keys file: {reason}")]
    Unreadable { file: PathBuf, reason: String },
    #[error("{file}:{line}: not a KEY=value line")]
    Syntax { file: PathBuf, line: usize },
    #[error("missing API key: set {name} in the environment or in {looked_in}")]
    Missing { name: String, looked_in: String },
}

/// Variables from the keys file and the environment.
#[derive(Debug, Default)]
pub struct Keys {
    file: Option<PathBuf>,
    explicit: bool,
    from_file: HashMap<String, Secret>,
    readable_by_others: bool,
}

/// True when group or others may read the file (Unix permissions).
fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o044 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

impl Keys {
    /// Loads `explicit` (an error if missing) or the default `.env` (quietly skipped if
    /// missing).
    pub fn load(explicit: Option<&Path>) -> Result<Keys, KeysError> {
        let (path, is_explicit) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_KEYS_FILE), false),
        };
        let mut keys = Keys {
            file: Some(path.clone()),
            explicit: is_explicit,
            from_file: HashMap::new(),
            readable_by_others: false,
        };
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !is_explicit => return Ok(keys),
            Err(e) => {
                return Err(KeysError::Unreadable {
                    file: path,
                    reason: crate::config::io_reason(&e),
                })
            }
            Ok(m) if m.is_dir() => {
                return Err(KeysError::Unreadable {
                    file: path,
                    reason: "is a directory, not a file".into(),
                })
            }
            Ok(_) => {}
        }
        let text = std::fs::read(&path).map_err(|e| KeysError::Unreadable {
            file: path.clone(),
            reason: crate::config::io_reason(&e),
        })?;
        let text = String::from_utf8(text).map_err(|_| KeysError::Unreadable {
            file: path.clone(),
            reason: "is not UTF-8 text".into(),
        })?;
        keys.from_file = parse_dotenv(&path, &text)?;
        keys.readable_by_others = readable_by_others(&path);
        Ok(keys)
    }

    /// Keys given directly (tests, embedding).
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Keys {
        Keys {
            file: None,
            explicit: true,
            from_file: pairs.into_iter().map(|(k, v)| (k, Secret(v))).collect(),
            readable_by_others: false,
        }
    }

    /// The value of `name`. An explicitly named file wins over the environment; the
    /// environment wins over the default `.env`. Empty values count as missing.
    pub fn get(&self, name: &str) -> Option<Secret> {
        let env = std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret);
        let file = self
            .from_file
            .get(name)
            .filter(|v| !v.0.is_empty())
            .cloned();
        let value = if self.explicit {
            file.or(env)
        } else {
            env.or(file)
        };
        if let Some(v) = &value {
            remember(v.expose());
        }
        value
    }

    /// Like [`Keys::get`], with an error naming the variable and where it was looked for.
    pub fn require(&self, name: &str) -> Result<Secret, KeysError> {
        self.get(name).ok_or_else(|| KeysError::Missing {
            name: name.to_string(),
            looked_in: match &self.file {
                Some(f) => format!("{} (keys file)", f.display()),
                None => "the given keys".into(),
            },
        })
    }

    /// A warning when the keys file holds keys and others may read it.
    pub fn warning(&self) -> Option<String> {
        (self.readable_by_others && !self.from_file.is_empty()).then(|| {
            format!(
                "warning: keys file {} is readable by other users; restrict it with: chmod 600 {}",
                self.file
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_KEYS_FILE))
                    .display(),
                self.file
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_KEYS_FILE))
                    .display()
            )
        })
    }

    /// The keys file in use, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// Parses dotenv text: `KEY=value`, `export KEY=value`, quotes, `#` comments.
fn parse_dotenv(path: &Path, text: &str) -> Result<HashMap<String, Secret>, KeysError> {
    let mut out = HashMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((k, v)) => {
                out.insert(k, Secret(v));
            }
            Err(e) => {
                let line = match &e {
                    dotenvy::Error::LineParse(l, _) => text
                        .lines()
                        .position(|t| t.trim() == l.trim() || l.starts_with(t.trim()))
                        .map(|i| i + 1)
                        .unwrap_or(0),
                    _ => 0,
                };
                return Err(KeysError::Syntax {
                    file: path.to_path_buf(),
                    line,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_forms_are_read() {
        let text = "# comment\nexport A_KEY=one\nB_KEY=\"two words\"\nC_KEY='three'  # trailing\n\nD_KEY=four\n";
        let m = parse_dotenv(Path::new(".env"), text).unwrap();
        assert_eq!(m["A_KEY"].expose(), "one");
        assert_eq!(m["B_KEY"].expose(), "two words");
        assert_eq!(m["C_KEY"].expose(), "three");
        assert_eq!(m["D_KEY"].expose(), "four");
        assert_eq!(format!("{:?} {}", m["A_KEY"], m["A_KEY"]), "*** ***");
    }

    #[test]
    fn bad_line_is_named() {
        let err = parse_dotenv(Path::new("k.env"), "A=1\nthis is not a pair\n").unwrap_err();
        assert_eq!(
            err,
            KeysError::Syntax {
                file: "k.env".into(),
                line: 2
            }
        );
    }

    #[test]
    fn explicit_missing_file_is_an_error_default_is_not() {
        let err = Keys::load(Some(Path::new("/nonexistent/keys.env"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/keys.env: cannot read keys file: no such file"
        );
        let k = Keys::from_pairs([("X_TEST_KEY_ABSENT".to_string(), String::new())]);
        assert_eq!(
            k.require("X_TEST_KEY_ABSENT").unwrap_err().to_string(),
            "missing API key: set X_TEST_KEY_ABSENT in the environment or in the given keys"
        );
    }
}
