//! The providers a run can use: the built-in files embedded from `providers/`, then
//! `./providers/` of the working directory, then each `--providers-dir` in order. A later
//! file with the same `name` replaces an earlier one.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, Provider};

include!(concat!(env!("OUT_DIR"), "/builtin_providers.rs"));

/// Where a provider came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Embedded at build time from `providers/FILE`.
    BuiltIn(&'static str),
    /// Loaded at run time from this file.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn(name) => write!(f, "built-in (providers/{name})"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A loaded provider and its origin.
#[derive(Debug, Clone)]
pub struct Entry {
    pub provider: Provider,
    pub source: Source,
    /// The source this one replaced, if it replaced one.
    pub replaced: Option<Source>,
}

/// Errors choosing a provider.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChoiceError {
    #[error("unknown provider `{name}`; loaded: {known}")]
    Unknown { name: String, known: String },
    #[error("no provider serves model `{model}`; give --provider (loaded: {known})")]
    NoMatch { model: String, known: String },
    #[error("model `{model}` matches several providers: {candidates}; choose one with --provider")]
    Ambiguous { model: String, candidates: String },
}

/// All loaded providers.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// The built-in providers only.
    pub fn builtin() -> Result<Registry, Vec<ConfigError>> {
        let mut reg = Registry::default();
        let mut errors = Vec::new();
        for (name, text) in BUILTIN_PROVIDERS {
            match super::parse_builtin_provider(&Path::new("providers").join(name), text) {
                Ok(p) => reg.insert(p, Source::BuiltIn(name)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(reg)
        } else {
            Err(errors)
        }
    }

    /// Built-ins, then `./providers/` (when `include_cwd` and it exists), then `dirs`.
    /// Every broken file is reported, not only the first.
    pub fn load(dirs: &[PathBuf], include_cwd: bool) -> Result<Registry, Vec<ConfigError>> {
        let mut reg = Registry::builtin()?;
        let mut errors = Vec::new();
        let mut all_dirs = Vec::new();
        let cwd = PathBuf::from("providers");
        if include_cwd && cwd.is_dir() {
            all_dirs.push(cwd);
        }
        all_dirs.extend(dirs.iter().cloned());
        for dir in &all_dirs {
            let listing = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) => {
                    errors.push(ConfigError::whole_file(
                        dir,
                        format!("cannot read providers directory: {}", super::io_reason(&e)),
                    ));
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = listing
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            files.sort();
            for f in files {
                // A built-in file itself (the working directory's providers/ in this very
                // checkout): skipped before it is parsed and schema-checked again, which
                // would compile the provider validator for nothing (about 20 MB of heap
                // that jsonschema 0.26 keeps: the largest item of a probe's peak RSS, see
                // BENCHMARKS.md).
                let fname = f.file_name();
                let builtin_copy = BUILTIN_PROVIDERS.iter().any(|(n, t)| {
                    fname.is_some_and(|fname| fname == *n)
                        && reg
                            .entries
                            .iter()
                            .any(|e| matches!(e.source, Source::BuiltIn(b) if b == *n))
                        && std::fs::read_to_string(&f).is_ok_and(|s| s == *t)
                });
                if builtin_copy {
                    continue;
                }
                match super::load_provider(&f) {
                    Ok(p) => {
                        // The working directory's providers/ in this very checkout holds
                        // the built-in files themselves: loading them again is no override.
                        let same_as_builtin = reg.entries.iter().any(|e| {
                            matches!(e.source, Source::BuiltIn(n) if e.provider.name == p.name && f.file_name().is_some_and(|fname| fname == n))
                                && BUILTIN_PROVIDERS.iter().any(|(n, t)| f.file_name().is_some_and(|fname| fname == *n) && std::fs::read_to_string(&f).is_ok_and(|s| s == *t))
                        });
                        if !same_as_builtin {
                            reg.insert(p, Source::File(f));
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            Ok(reg)
        } else {
            Err(errors)
        }
    }

    fn insert(&mut self, provider: Provider, source: Source) {
        if let Some(existing) = self
            .entries
            .iter_mut()
            .find(|e| e.provider.name == provider.name)
        {
            let replaced = Some(existing.source.clone());
            *existing = Entry {
                provider,
                source,
                replaced,
            };
        } else {
            self.entries.push(Entry {
                provider,
                source,
                replaced: None,
            });
        }
    }

    /// Every provider, sorted by name.
    pub fn entries(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.entries.iter().collect();
        v.sort_by(|a, b| a.provider.name.cmp(&b.provider.name));
        v
    }

    fn names(&self) -> String {
        self.entries()
            .iter()
            .map(|e| e.provider.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Result<&Entry, ChoiceError> {
        self.entries
            .iter()
            .find(|e| e.provider.name == name)
            .ok_or_else(|| ChoiceError::Unknown {
                name: name.to_string(),
                known: self.names(),
            })
    }

    /// The one provider whose `models` globs match `model`.
    pub fn for_model(&self, model: &str) -> Result<&Entry, ChoiceError> {
        let matching: Vec<&Entry> = self
            .entries()
            .into_iter()
            .filter(|e| {
                e.provider.models.iter().any(|g| {
                    globset::Glob::new(g)
                        .map(|g| g.compile_matcher().is_match(model))
                        .unwrap_or(false)
                })
            })
            .collect();
        match matching.as_slice() {
            [one] => Ok(one),
            [] => Err(ChoiceError::NoMatch {
                model: model.to_string(),
                known: self.names(),
            }),
            many => Err(ChoiceError::Ambiguous {
                model: model.to_string(),
                candidates: many
                    .iter()
                    .map(|e| format!("{} ({})", e.provider.name, e.source))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// `--provider` if given, else the choice by model.
    pub fn choose(&self, provider: Option<&str>, model: &str) -> Result<&Entry, ChoiceError> {
        match provider {
            Some(name) => self.get(name),
            None => self.for_model(model),
        }
    }
}
