//! The scenario file: one named probe (`scenarios/NAME.yaml`).
//!
//! Every field is optional in the file; what is left out takes the default documented
//! on the field, and command-line flags override what the file says.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The built-in prompt, from the seed spec.
pub const DEFAULT_PROMPT: &str = "Write a detailed 500-word essay about the history of computing";

/// One probe: which provider and model, what to send, how to ramp and when to stop.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports; defaults to the file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One line saying what the scenario is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Provider name (see `find-workers-limit providers`). Picked from `model` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model name sent to the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Overrides the provider's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The prompt sent with every request (default: the built-in essay prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A file holding the prompt, relative to the scenario file. Exclusive with `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_file: Option<PathBuf>,
    /// A step whose mean output is below this many tokens records a warning that the
    /// load was lighter than asked (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_output_tokens: Option<u32>,
    /// The `max_tokens` sent with each request (default: twice `min_output_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stream responses (SSE), measuring time to first token (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// How the concurrency ramp grows and shrinks.
    #[serde(default)]
    pub planner: PlannerSettings,
    /// Retries of transient failures.
    #[serde(default)]
    pub retries: RetrySettings,
    /// Per-request time limits.
    #[serde(default)]
    pub timeouts: TimeoutSettings,
    /// The wait after a rate-limited step.
    #[serde(default)]
    pub cooldown: CooldownSettings,
    /// Where the result JSON is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<PathBuf>,
    /// When given, the binary starts its own simulated provider on 127.0.0.1 with these
    /// settings and probes it (no key, no network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<SimulatorSettings>,
}

/// Settings of the concurrency ramp (DESIGN.md, "The planner").
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannerSettings {
    /// First worker count (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u32>,
    /// How many times the count doubles before growth slows (default 2: 3, 6, 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doubling_steps: Option<u32>,
    /// Growth factor after the doublings, rounded half to even (default 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<f64>,
    /// Scale-back factor after a rate-limited step, floored (default 0.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<f64>,
    /// The highest worker count tried (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<u32>,
    /// Prompts per worker in a step (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts_per_worker: Option<u32>,
    /// The fewest prompts a step sends (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_prompts: Option<u32>,
}

/// Retries of transient failures (network errors, 5xx, overload).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Retries per prompt before it counts as failed (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// First backoff in milliseconds, doubled per retry, with full jitter (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_delay_ms: Option<u64>,
    /// The longest backoff or honoured retry hint between retries, in ms (default 8000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
}

/// Per-request time limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSettings {
    /// Connect timeout in milliseconds (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    /// Total time for one request, body included, in milliseconds (default 300000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ms: Option<u64>,
}

/// The wait after a rate-limited step, so the next step starts on a refilled bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CooldownSettings {
    /// Wait used when no retry hint was seen, in milliseconds (default 60000: one
    /// per-minute window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ms: Option<u64>,
    /// A hint longer than this ends the probe: the account is blocked for longer than a
    /// probe should wait (default 300000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
}

/// Which wire format(s) the simulator speaks: `openai` (chat completions at
/// `/v1/chat/completions`), `anthropic` (messages at `/v1/messages`) or `both`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    Openai,
    Anthropic,
    #[default]
    Both,
}

/// The simulated provider's limits, latency and injected faults. The same names serve
/// the `simulate` command's flags (`--max-concurrency`) and the scenario's `simulator:`
/// block (`max_concurrency`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSettings {
    /// Wire format(s) served (default both).
    #[arg(long, value_enum)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<Flavor>,
    /// Most requests in flight at once; more get a 429 at once (default: no limit).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Requests per (simulated) minute, token bucket with continuous refill.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Requests a full bucket lets through at once before the per-minute rate applies
    /// (default: the rpm itself, one minute's worth).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_burst: Option<u32>,
    /// Tokens per minute, charged input + the request's max_tokens when admitted (as
    /// OpenAI counts), not the tokens generated.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// Input tokens per minute (Anthropic-style separate limit).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tpm: Option<u32>,
    /// Output tokens per minute (Anthropic-style separate limit).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tpm: Option<u32>,
    /// Time to first token in (simulated) milliseconds (default 100).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    /// Output tokens generated per (simulated) second; 0 means instantly (default 200).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<u32>,
    /// Typical response length in tokens; a request's `max_tokens` caps it (default 64).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u32>,
    /// How many simulated seconds pass in one real second (60: a minute in a second;
    /// default 1). Latency and the per-minute refill are scaled; retry hints are real time.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<f64>,
    /// Answer every request with OpenAI's `insufficient_quota` 429 (Anthropic endpoint:
    /// 429 `enforced_spend_limit_reached`), without a retry hint.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_quota_exhausted: Option<bool>,
    /// Answer every request with 401 (bad key).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_bad_key: Option<bool>,
    /// Answer every request with 404 (unknown model).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_unknown_model: Option<bool>,
    /// Fraction (0 to 1) of requests answered with a 500. Fault rates are deterministic:
    /// 0.5 hits every 2nd request that reaches the check, 0.25 every 4th.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_5xx_rate: Option<f64>,
    /// Fraction of requests answered with Anthropic's 529 `overloaded_error` (OpenAI
    /// endpoint: 503 `server_is_overloaded`).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_overloaded_rate: Option<f64>,
    /// Rate limits are answered with a gateway's HTML 429 page instead of the vendor body.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_html_429: Option<bool>,
    /// Fraction of streamed responses that send an error event after some content.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_midstream_error_rate: Option<f64>,
    /// Fraction of streamed responses that send a rate-limit error event after some
    /// content (a limit enforced after the 200 was sent).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_midstream_rate_limit_rate: Option<f64>,
    /// Fraction of responses whose body is cut short (connection closed mid-body).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_truncate_rate: Option<f64>,
    /// Fraction of requests that stall (no answer) for `stall_ms`, holding their
    /// concurrency slot, then are answered normally.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_stall_rate: Option<f64>,
    /// How long a stalled request hangs, in real milliseconds (default 600000).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_ms: Option<u64>,
}

/// Cross-field checks that a schema cannot express: `(JSON pointer, message)` each.
pub fn check(s: &Scenario) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if s.prompt.is_some() && s.prompt_file.is_some() {
        problems.push((
            "/prompt_file".into(),
            "give `prompt` or `prompt_file`, not both".into(),
        ));
    }
    if let Some(prompt) = &s.prompt {
        if prompt.trim().is_empty() {
            problems.push(("/prompt".into(), "is empty".into()));
        }
    }
    let pl = &s.planner;
    let positive = [
        ("start", pl.start),
        ("max_workers", pl.max_workers),
        ("prompts_per_worker", pl.prompts_per_worker),
        ("min_prompts", pl.min_prompts),
    ];
    for (field, v) in positive {
        if v == Some(0) {
            problems.push((format!("/planner/{field}"), "must be at least 1".into()));
        }
    }
    if let (Some(start), Some(max)) = (pl.start, pl.max_workers) {
        if start > max {
            problems.push((
                "/planner/start".into(),
                format!("{start} is above max_workers {max}"),
            ));
        }
    }
    if let Some(g) = pl.growth {
        if !(g.is_finite() && g > 1.0) {
            problems.push((
                "/planner/growth".into(),
                format!("{g} must be above 1, or the ramp never grows"),
            ));
        }
    }
    if let Some(b) = pl.backoff {
        if !(b.is_finite() && b > 0.0 && b < 1.0) {
            problems.push((
                "/planner/backoff".into(),
                format!("{b} must be between 0 and 1 (exclusive)"),
            ));
        }
    }
    if s.max_tokens == Some(0) {
        problems.push(("/max_tokens".into(), "must be at least 1".into()));
    }
    if s.timeouts.request_ms == Some(0) || s.timeouts.connect_ms == Some(0) {
        let field = if s.timeouts.request_ms == Some(0) {
            "request_ms"
        } else {
            "connect_ms"
        };
        problems.push((format!("/timeouts/{field}"), "must be at least 1".into()));
    }
    if let Some(sim) = &s.simulator {
        for (field, v) in [
            ("fault_5xx_rate", sim.fault_5xx_rate),
            ("fault_overloaded_rate", sim.fault_overloaded_rate),
            ("fault_midstream_error_rate", sim.fault_midstream_error_rate),
            (
                "fault_midstream_rate_limit_rate",
                sim.fault_midstream_rate_limit_rate,
            ),
            ("fault_truncate_rate", sim.fault_truncate_rate),
            ("fault_stall_rate", sim.fault_stall_rate),
        ] {
            if let Some(r) = v {
                if !(0.0..=1.0).contains(&r) {
                    problems.push((
                        format!("/simulator/{field}"),
                        format!("{r} is not a fraction from 0 to 1"),
                    ));
                }
            }
        }
        if let Some(t) = sim.time_scale {
            if !(t.is_finite() && t > 0.0) {
                problems.push((
                    "/simulator/time_scale".into(),
                    format!("{t} must be above 0"),
                ));
            }
        }
    }
    problems
}
