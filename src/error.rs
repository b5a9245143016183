//! Errors of a run of the tool. A failed request is never one of these: it is data in a
//! step result. These are the reasons a whole command ends.

use crate::config::keys::KeysError;
use crate::config::registry::ChoiceError;
use crate::config::ConfigError;
use crate::exit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or arguments.
    #[error("{0}")]
    Usage(String),
    /// One or more invalid files; each problem on its own line.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    #[error("{0}")]
    Keys(#[from] KeysError),
    #[error("{0}")]
    Choice(#[from] ChoiceError),
    /// "Model rate limited even with 1 worker".
    #[error("{0}")]
    RateLimitedAtOne(String),
    /// The provider said something that fewer workers will not fix.
    #[error("{0}")]
    ProviderFatal(String),
    /// Stopped by a spend cap, an over-long cooldown or the open-file limit.
    #[error("{0}")]
    StoppedEarly(String),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// The tool itself failed (cannot write the result file, cannot bind a port).
    #[error("{0}")]
    Internal(String),
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(vec![e])
    }
}

impl Error {
    /// The exit code of this error (see `exit.rs` and the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Config(_) | Error::Keys(_) | Error::Choice(_) => exit::CONFIG,
            Error::RateLimitedAtOne(_) => exit::RATE_LIMITED_AT_ONE,
            Error::ProviderFatal(_) => exit::PROVIDER_FATAL,
            Error::StoppedEarly(_) => exit::STOPPED_EARLY,
            Error::Interrupted => exit::INTERRUPTED,
            Error::Internal(_) => exit::INTERNAL,
        }
    }
}
