//! [`SimulatorSettings`] (all optional, as typed by a user) resolved into the checked
//! configuration the server runs with. Defaults live here and only here.

use std::time::Duration;

use crate::config::scenario::{Flavor, SimulatorSettings};

/// Default time to first token, simulated milliseconds.
pub const DEFAULT_TTFT_MS: u64 = 100;
/// Default generation speed: a 64-token reply takes 0.32 s after the first token, so a
/// request lasts about 0.4 s — long enough for concurrency limits to bite in a demo,
/// short enough for the demo to finish fast.
pub const DEFAULT_TOKENS_PER_SECOND: u32 = 200;
/// Default typical reply length in tokens.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 64;
/// Default length of a stalled request, real milliseconds (longer than any sane client
/// timeout, so the client's timeout is what ends it).
pub const DEFAULT_STALL_MS: u64 = 600_000;
/// The longest reply the simulator writes; the reply text is precomputed up to this.
pub const MAX_OUTPUT_TOKENS: u32 = 1_000_000;
/// A concurrency 429 says "retry in one simulated second": a slot frees as soon as any
/// request in flight finishes, so the wait is short.
pub const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// The checked settings of one simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub flavor: Flavor,
    pub max_concurrency: Option<u32>,
    pub rpm: Option<u32>,
    /// Capacity of the requests bucket (default: `rpm`).
    pub rpm_burst: Option<u32>,
    pub tpm: Option<u32>,
    pub input_tpm: Option<u32>,
    pub output_tpm: Option<u32>,
    pub ttft_ms: u64,
    /// 0: the reply is generated instantly after the first token.
    pub tokens_per_second: u32,
    pub output_tokens: u32,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    pub fault_quota_exhausted: bool,
    pub fault_bad_key: bool,
    pub fault_unknown_model: bool,
    pub fault_html_429: bool,
    pub fault_5xx_rate: f64,
    pub fault_overloaded_rate: f64,
    pub fault_midstream_error_rate: f64,
    pub fault_midstream_rate_limit_rate: f64,
    pub fault_truncate_rate: f64,
    pub fault_stall_rate: f64,
    pub stall: Duration,
}

impl SimConfig {
    /// Applies the defaults and checks every value; the error names the option.
    pub fn resolve(s: &SimulatorSettings) -> Result<SimConfig, String> {
        let mut problems = Vec::new();
        let time_scale = s.time_scale.unwrap_or(1.0);
        if !(time_scale.is_finite() && time_scale > 0.0) {
            problems.push(format!("time_scale {time_scale} must be above 0"));
        }
        for (name, v) in [
            ("rpm", s.rpm),
            ("rpm_burst", s.rpm_burst),
            ("tpm", s.tpm),
            ("input_tpm", s.input_tpm),
            ("output_tpm", s.output_tpm),
        ] {
            if v == Some(0) {
                problems.push(format!(
                    "{name} 0 would refuse every request; leave it out for no limit (max_concurrency 0 refuses everything)"
                ));
            }
        }
        if s.rpm_burst.is_some() && s.rpm.is_none() {
            problems.push("rpm_burst needs rpm".to_string());
        }
        let output_tokens = s.output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS);
        if output_tokens > MAX_OUTPUT_TOKENS {
            problems.push(format!("output_tokens {output_tokens} is above the simulator's maximum {MAX_OUTPUT_TOKENS}"));
        }
        let mut rate = |name: &str, v: Option<f64>| -> f64 {
            let r = v.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&r) {
                problems.push(format!("{name} {r} is not a fraction from 0 to 1"));
            }
            r
        };
        let fault_5xx_rate = rate("fault_5xx_rate", s.fault_5xx_rate);
        let fault_overloaded_rate = rate("fault_overloaded_rate", s.fault_overloaded_rate);
        let fault_midstream_error_rate =
            rate("fault_midstream_error_rate", s.fault_midstream_error_rate);
        let fault_midstream_rate_limit_rate = rate(
            "fault_midstream_rate_limit_rate",
            s.fault_midstream_rate_limit_rate,
        );
        let fault_truncate_rate = rate("fault_truncate_rate", s.fault_truncate_rate);
        let fault_stall_rate = rate("fault_stall_rate", s.fault_stall_rate);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(SimConfig {
            flavor: s.flavor.unwrap_or_default(),
            max_concurrency: s.max_concurrency,
            rpm: s.rpm,
            rpm_burst: s.rpm_burst,
            tpm: s.tpm,
            input_tpm: s.input_tpm,
            output_tpm: s.output_tpm,
            ttft_ms: s.ttft_ms.unwrap_or(DEFAULT_TTFT_MS),
            tokens_per_second: s.tokens_per_second.unwrap_or(DEFAULT_TOKENS_PER_SECOND),
            output_tokens,
            time_scale,
            fault_quota_exhausted: s.fault_quota_exhausted.unwrap_or(false),
            fault_bad_key: s.fault_bad_key.unwrap_or(false),
            fault_unknown_model: s.fault_unknown_model.unwrap_or(false),
            fault_html_429: s.fault_html_429.unwrap_or(false),
            fault_5xx_rate,
            fault_overloaded_rate,
            fault_midstream_error_rate,
            fault_midstream_rate_limit_rate,
            fault_truncate_rate,
            fault_stall_rate,
            stall: Duration::from_millis(s.stall_ms.unwrap_or(DEFAULT_STALL_MS)),
        })
    }

    /// A simulated duration as real time (divided by the time scale).
    pub fn real(&self, simulated: Duration) -> Duration {
        Duration::from_secs_f64(simulated.as_secs_f64() / self.time_scale)
    }

    /// Real time from the request's arrival to its first token.
    pub fn ttft(&self) -> Duration {
        self.real(Duration::from_millis(self.ttft_ms))
    }

    /// Real time to generate `tokens` after the first token.
    pub fn generation(&self, tokens: u32) -> Duration {
        if self.tokens_per_second == 0 {
            return Duration::ZERO;
        }
        self.real(Duration::from_secs_f64(
            f64::from(tokens) / f64::from(self.tokens_per_second),
        ))
    }

    pub fn serves_openai(&self) -> bool {
        self.flavor != Flavor::Anthropic
    }

    pub fn serves_anthropic(&self) -> bool {
        self.flavor != Flavor::Openai
    }

    /// One line for the `simulate` command's banner.
    pub fn describe(&self) -> String {
        fn opt(v: Option<u32>) -> String {
            v.map_or_else(|| "none".to_string(), |v| v.to_string())
        }
        let mut line = format!(
            "flavor {:?}, max_concurrency {}, rpm {}{}, tpm {}, input_tpm {}, output_tpm {}, ttft {} ms, {} tokens/s, {} output tokens, time scale {}",
            self.flavor,
            opt(self.max_concurrency),
            opt(self.rpm),
            self.rpm_burst.map(|b| format!(" (burst {b})")).unwrap_or_default(),
            opt(self.tpm),
            opt(self.input_tpm),
            opt(self.output_tpm),
            self.ttft_ms,
            self.tokens_per_second,
            self.output_tokens,
            self.time_scale
        )
        .to_lowercase();
        let faults: Vec<String> = [
            ("quota exhausted", self.fault_quota_exhausted),
            ("bad key", self.fault_bad_key),
            ("unknown model", self.fault_unknown_model),
            ("html 429", self.fault_html_429),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n.to_string())
        .chain(
            [
                ("5xx", self.fault_5xx_rate),
                ("overloaded", self.fault_overloaded_rate),
                ("mid-stream error", self.fault_midstream_error_rate),
                (
                    "mid-stream rate limit",
                    self.fault_midstream_rate_limit_rate,
                ),
                ("truncate", self.fault_truncate_rate),
                ("stall", self.fault_stall_rate),
            ]
            .iter()
            .filter(|(_, r)| *r > 0.0)
            .map(|(n, r)| format!("{n} {r}")),
        )
        .collect();
        if !faults.is_empty() {
            line.push_str(&format!("; faults: {}", faults.join(", ")));
        }
        line
    }
}
