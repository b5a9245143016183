//! Command-line flags (clap derive). These are raw: `settings.rs` resolves them, with the
//! scenario file, into the checked settings the rest of the program uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::scenario::SimulatorSettings;
use crate::config::SchemaKind;

/// Finds how many concurrent workers an LLM API account sustains for a model before it
/// is rate limited, and prints that number.
#[derive(Debug, Parser)]
#[command(
    name = "find-workers-limit",
    version,
    args_conflicts_with_subcommands = true
)]
#[command(
    after_help = "Exit codes: 0 found, 1 internal error, 2 usage, 3 invalid config, 4 rate limited even at 1 worker, \
5 fatal provider error, 6 stopped by a cap or cooldown limit, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a named scenario (`scenarios/NAME.yaml`) or a scenario file; flags override it.
    Run {
        /// Scenario name or path.
        scenario: String,
        #[command(flatten)]
        probe: ProbeArgs,
    },
    /// Dry run: print the step sequence and the worst-case prompts, tokens and cost,
    /// sending nothing.
    Plan {
        /// Scenario name or path (optional; `--model` alone is enough).
        scenario: Option<String>,
        /// Also print the exact request the probe would send (secrets redacted).
        #[arg(long)]
        show_request: bool,
        #[command(flatten)]
        probe: ProbeArgs,
    },
    /// Serve the simulated OpenAI / Anthropic provider on 127.0.0.1.
    Simulate {
        /// Port to listen on (0: any free port; the address is printed).
        #[arg(long, default_value_t = 8089)]
        port: u16,
        #[command(flatten)]
        settings: SimulatorSettings,
    },
    /// Check provider and scenario files against their schemas; non-zero exit on any error.
    Validate {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a JSON Schema.
    Schema {
        #[arg(value_enum)]
        kind: SchemaKind,
    },
    /// List the loaded providers and where each comes from.
    Providers {
        /// Extra directories of provider files (repeatable).
        #[arg(long = "providers-dir", value_name = "DIR")]
        providers_dir: Vec<PathBuf>,
    },
}

/// Flags of a probe. Every one overrides the scenario file's value.
#[derive(Debug, Clone, Default, Args)]
pub struct ProbeArgs {
    /// Model to probe (required unless the scenario gives it).
    #[arg(long)]
    pub model: Option<String>,
    /// Provider name; picked from --model by the providers' globs when omitted.
    #[arg(long)]
    pub provider: Option<String>,
    /// Base URL, replacing the provider's (e.g. http://127.0.0.1:8089/v1).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Extra directories of provider files (repeatable).
    #[arg(long = "providers-dir", value_name = "DIR")]
    pub providers_dir: Vec<PathBuf>,
    /// Dotenv file with API keys [default: .env].
    #[arg(long, value_name = "FILE")]
    pub keys_file: Option<PathBuf>,
    /// Highest worker count tried [default: 100].
    #[arg(long, value_name = "N")]
    pub max_workers: Option<u32>,
    /// File holding the prompt [default: a built-in essay prompt].
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Write the result JSON here.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Warn when a step's mean output is below this many tokens [default: 500].
    #[arg(long, value_name = "N")]
    pub min_output_tokens: Option<u32>,
    /// max_tokens sent per request [default: 2 × min-output-tokens].
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Stream responses (SSE) and measure time to first token.
    #[arg(long)]
    pub stream: bool,
    /// One line per request on stderr (auth headers redacted).
    #[arg(long, short)]
    pub verbose: bool,
    /// Longest cooldown the probe accepts; a longer retry hint ends it [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_cooldown: Option<Duration>,
    /// Cooldown after a rate-limited step when no retry hint was seen [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub cooldown: Option<Duration>,
    /// Total time limit of one request [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Connect time limit [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Retries of transient failures per prompt [default: 3].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Extra PEM CA certificate to trust (private CA, TLS inspection).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Keep each step's workers busy at least this long (e.g. 60s, one rate-limit window).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub step_duration: Option<Duration>,
    /// After the ramp, bisect between the recommendation and the lowest failing count.
    #[arg(long)]
    pub refine: bool,
    /// Never start a step that could take the probe past this many prompts.
    #[arg(long, value_name = "N")]
    pub max_prompts: Option<u64>,
    /// Never start a step that could take the probe past this many output tokens.
    #[arg(long, value_name = "N")]
    pub max_output_tokens: Option<u64>,
    /// Never start a step that could take the estimated cost past this (US dollars;
    /// needs pricing in the provider file).
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Draw the steps as an SVG chart.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
}

/// Parses `60s`, `1m30s`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if (0.0..1e9).contains(&secs) {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("`{s}` is not a duration (use e.g. 60s, 500ms, 2m)"));
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("`{s}` is not a duration (use e.g. 60s, 500ms, 2m)"))
}
