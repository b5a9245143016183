//! Exit codes, in one place. `main` maps the result of [`crate::run`] to one of these;
//! nothing else calls `process::exit`.

/// A recommendation was found and printed.
pub const FOUND: u8 = 0;
/// An unexpected failure of the tool itself (an output file that cannot be written).
pub const INTERNAL: u8 = 1;
/// The command line is wrong (clap's own code for usage errors).
pub const USAGE: u8 = 2;
/// A provider, scenario or keys file is invalid, or a key is missing.
pub const CONFIG: u8 = 3;
/// The model was rate limited even with 1 worker.
pub const RATE_LIMITED_AT_ONE: u8 = 4;
/// The provider answered with a fatal error (bad key, quota exhausted, unknown model).
pub const PROVIDER_FATAL: u8 = 5;
/// The probe stopped early, by a spend cap, a retry hint longer than --max-cooldown or
/// the open-file limit;
/// stdout holds the count proven so far, if any.
pub const STOPPED_EARLY: u8 = 6;
/// Interrupted by Ctrl-C; the result file holds what was measured.
pub const INTERRUPTED: u8 = 130;
