//! find-workers-limit: discovers how many concurrent workers an LLM API account can run
//! against one model before it is rate limited, and recommends the highest count that
//! never was.
//!
//! # Layout
//! Data flows one way: files → validated config → rendered request → engine steps →
//! planner decisions → report.
//!
//! - [`cli`]: the command-line flags (raw).
//! - [`config`]: YAML loading — read, JSON-Schema check, typed structs, cross-checks —
//!   for providers, scenarios and keys; the provider registry; the schemas.
//! - [`settings`]: flags + scenario resolved into the checked settings of one probe.
//! - [`template`]: renders a provider's request template (minijinja).
//! - [`jsonpath`]: the small JSON path language of provider rules.
//! - [`classify`]: a response → an outcome, by the provider's ordered rules; retry hints.
//! - [`engine`]: the hyper client; one step = N prompts on exactly W workers.
//! - [`planner`]: the pure state machine from step history to the next step or verdict.
//! - [`probe`]: the loop joining planner and engine; cooldowns; Ctrl-C.
//! - [`report`]: the result JSON, the human summary.
//! - [`simulate`]: the built-in simulated provider, for demos, tests and benchmarks.
//! - [`commands`]: one function per subcommand; [`exit`]: the exit codes.

/// `eprintln!` that never panics: a stderr that cannot be written (`2>/dev/full`, a log
/// pipe that went away) must not stop a probe or lose its result file. What is said there
/// is lost; the count on stdout, the result file and the exit code are not.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// [`note!`] without the newline.
#[macro_export]
macro_rules! note_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod chart;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod exit;
pub mod insight;
pub mod jsonpath;
pub mod planner;
pub mod probe;
pub mod progress;
pub mod report;
pub mod settings;
pub mod simulate;
pub mod template;

pub use error::Error;

/// Runs a parsed command line. Prints the result; returns the error that ends the run.
pub fn run(cli: cli::Cli) -> Result<(), Error> {
    commands::dispatch(cli)
}

/// jemalloc, as oha uses: a request allocates about ten small blocks (hyper's response
/// channel and buffers, the header map), and glibc's malloc and free cost twice as much
/// per block (4 % of the engine's requests per second at 256 workers; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Freed pages go back to the system at once instead of after 10 s: a probe's steps
/// free every connection's buffers before the next, bigger step allocates its own, and
/// kept pages would add up (69.5 MiB at 2,000 workers with the defaults, 51.5 with this).
/// `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 34] = b"dirty_decay_ms:0,muzzy_decay_ms:0\0";
