//! The result of a probe: the JSON written to `--output-file` (its schema is
//! `schemas/result.schema.json`), the human summary on stderr, and the exit status.
//!
//! These are view structs, built from the planner's history and the engine's step
//! results at the end of a probe; nothing else is serialized to the result file.
//!
//! - [`percentiles`], [`cost_usd`], [`step_cost`], [`worst_case_cost`]: numbers derived
//!   from measurements (`stats.rs`);
//! - [`summary_table`]: the human summary on stderr (`summary.rs`);
//! - [`write_result_atomically`]: the result file, never half written (`write.rs`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod stats;
pub(crate) mod summary;
mod write;

pub use stats::{cost_usd, percentiles, step_cost, worst_case_cost};
pub use summary::{count, format_duration_ms, summary_table, workers};
pub use write::{write_atomically, write_result_atomically};

/// The result file. A superset of the seed spec's (`model`, `recommended_workers`,
/// `max_tested`, `runs`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeResult {
    /// Version of this document's layout.
    pub schema_version: u32,
    /// The tool's version.
    pub tool_version: String,
    /// Model probed.
    pub model: String,
    /// Provider file used (its `name`).
    pub provider: String,
    /// Where the requests went (scheme, host, port and path; never a key).
    pub endpoint: String,
    /// The highest worker count that passed and never hit a rate limit; null when none
    /// could be proven.
    pub recommended_workers: Option<u32>,
    /// The highest worker count a step was run with.
    pub max_tested: u32,
    /// How the probe ended: `found`, `cap_reached`, `rate_limited_at_minimum`, `fatal`,
    /// `cooldown_too_long`, `spend_cap`, `open_file_limit`, `interrupted`.
    pub outcome: String,
    /// The error that ended the probe, if one did.
    pub error: Option<String>,
    /// The last step passed at `max_workers`: the account may sustain more.
    pub cap_reached: bool,
    /// The probe was stopped by Ctrl-C; `runs` holds what was measured until then.
    pub interrupted: bool,
    /// When the probe started (RFC 3339, UTC).
    pub started_at: String,
    /// Wall time of the whole probe, cooldowns included, in milliseconds.
    pub duration_ms: u64,
    /// The settings the probe ran with.
    pub settings: ResultSettings,
    /// One entry per step, in the order they ran.
    pub runs: Vec<RunRecord>,
    /// Sums over all steps.
    pub totals: Totals,
    /// Extra findings beyond the spec's ramp (advertised limits, refinement), when made.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub insights: BTreeMap<String, serde_json::Value>,
}

/// The settings a probe ran with.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultSettings {
    pub max_workers: u32,
    pub min_output_tokens: u32,
    pub max_tokens: u32,
    pub stream: bool,
    pub max_retries: u32,
    pub prompt_chars: usize,
}

/// One step of the probe.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Concurrent workers in this step.
    pub workers: u32,
    /// Prompts sent (each counted once, however often it was retried).
    pub prompts: u32,
    /// Prompts answered.
    pub success: u32,
    /// Prompts refused by a rate limit.
    pub rate_limited: u32,
    /// Prompts that failed for other reasons after all retries.
    pub failed: u32,
    /// `passed`, `rate_limited`, `fatal` or `interrupted`.
    pub status: String,
    /// Wall time of the step in milliseconds.
    pub duration_ms: u64,
    /// When the step started (RFC 3339, UTC).
    pub timestamp: String,
    /// What went wrong in the step, if anything did.
    pub error: Option<String>,
    /// Retries of transient failures in this step.
    pub retries: u32,
    /// Latency of answered prompts, in milliseconds.
    pub latency_ms: Option<Percentiles>,
    /// Time to first token of streamed answers, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<Percentiles>,
    /// Input tokens reported by the API.
    pub input_tokens: u64,
    /// Output tokens reported by the API.
    pub output_tokens: u64,
    /// Answered prompts per second over the step.
    pub throughput_rps: f64,
    /// Longest retry hint seen in the step, in milliseconds.
    pub retry_hint_ms: Option<u64>,
    /// The wait after this step before the next one, in milliseconds.
    pub cooldown_ms: u64,
    /// Rate-limit headers of the step's last response, by name.
    #[serde(default)]
    pub rate_limit_headers: BTreeMap<String, String>,
    /// Counts of outcomes by the name of the rule that decided them.
    #[serde(default)]
    pub outcomes_by_rule: BTreeMap<String, u32>,
    /// Estimated cost of the step in US dollars, when the provider has pricing.
    pub cost_usd: Option<f64>,
    /// Notes such as "mean output 120 tokens is below --min-output-tokens 500".
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Sums over all steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub steps: u32,
    pub prompts: u64,
    pub success: u64,
    pub rate_limited: u64,
    pub failed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Estimated cost in US dollars, when the provider has pricing.
    pub cost_usd: Option<f64>,
}

#[cfg(test)]
mod tests {
    use crate::config::SchemaKind;

    /// The result file a probe writes is valid against the committed schema that
    /// `find-workers-limit schema result` prints and editors use.
    #[test]
    fn a_result_validates_against_the_committed_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(SchemaKind::Result.committed()).unwrap();
        let validator = jsonschema::options().build(&schema).unwrap();

        let mut result = super::summary::tests::sample();
        result.runs[0].ttft_ms = super::percentiles(&[120.0, 150.0]);
        result.runs[0]
            .rate_limit_headers
            .insert("x-ratelimit-remaining-requests".into(), "499".into());
        result.runs[0].outcomes_by_rule.insert("success".into(), 6);
        result.insights.insert(
            "refined".into(),
            serde_json::json!({ "recommended_workers": 10 }),
        );
        let value = serde_json::to_value(&result).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");

        // And the schema is not vacuous: a wrong type and an unknown field are caught.
        let mut broken = value.clone();
        broken["recommended_workers"] = serde_json::json!("nine");
        broken["runs"][0]["surprise"] = serde_json::json!(1);
        assert_eq!(validator.iter_errors(&broken).count(), 2);
    }
}
