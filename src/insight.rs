//! What the account advertises in its rate-limit headers, and what that implies.
//!
//! Vendors send limit / remaining / reset headers per kind of limit (requests, tokens,
//! input and output tokens). With the latency and tokens per prompt the probe measured,
//! each limit implies a worker count: a worker sends one prompt per `latency` seconds,
//! so `limit per minute × latency / 60 / units per prompt` workers use the whole limit.
//! The kind with the smallest implied count is the one that binds first; when a step was
//! rate limited, the exhausted bucket of that step names the limit that stopped it, and
//! with no exhausted bucket the likely culprit is a concurrency limit, which vendors do
//! not advertise. Pure: no I/O, tested on numbers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::classify::BucketReading;
use crate::config::provider::BucketKind;

/// Measured load per prompt, over the answered prompts of the probe.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// Mean latency of an answered prompt, in seconds.
    pub mean_latency_s: f64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
}

/// One advertised limit and the worker count it implies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advertised {
    pub kind: String,
    /// The limit as advertised, per its window.
    pub limit: f64,
    pub window_seconds: u32,
    /// The limit per minute.
    pub per_minute: f64,
    /// What one prompt uses of it (1 request, or its tokens).
    pub per_prompt: f64,
    /// Workers that would use the whole limit at the measured latency.
    pub implied_workers: f64,
}

/// The insight written to the result's `insights.advertised_limits`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitsInsight {
    pub limits: Vec<Advertised>,
    /// The smallest implied worker count, floored: what the headers alone suggest.
    pub implied_workers: Option<u32>,
    /// The kind with the smallest implied count.
    pub tightest: Option<String>,
    /// For each rate-limited step (by worker count): `requests`, `tokens`,
    /// `input_tokens`, `output_tokens` (an exhausted bucket), or `concurrency` (none was).
    pub binding_when_limited: BTreeMap<u32, String>,
    pub load: LoadView,
}

/// [`Load`] as written to the result file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadView {
    pub mean_latency_ms: f64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
}

fn per_prompt(kind: BucketKind, load: &Load) -> f64 {
    match kind {
        BucketKind::Requests => 1.0,
        BucketKind::Tokens => load.mean_input_tokens + load.mean_output_tokens,
        BucketKind::InputTokens => load.mean_input_tokens,
        BucketKind::OutputTokens => load.mean_output_tokens,
    }
}

/// The largest limit seen per kind, from every reading of the probe (a limit may be
/// lowered temporarily by the vendor; the largest is what the account is granted).
fn largest_limits(readings: &[BucketReading]) -> BTreeMap<BucketKind, (f64, u32)> {
    let mut out: BTreeMap<BucketKind, (f64, u32)> = BTreeMap::new();
    for r in readings {
        if let Some(limit) = r.limit.filter(|l| l.is_finite() && *l > 0.0) {
            let e = out
                .entry(r.kind)
                .or_insert((limit, r.window_seconds.max(1)));
            if limit > e.0 {
                *e = (limit, r.window_seconds.max(1));
            }
        }
    }
    out
}

/// The kind of limit a rate-limited step ran into, from its last bucket readings.
pub fn binding_kind(readings: &[BucketReading]) -> String {
    readings
        .iter()
        .filter(|r| r.remaining.is_some_and(|x| x <= 0.0))
        .map(|r| r.kind.to_string())
        .next()
        .unwrap_or_else(|| "concurrency".into())
}

/// Builds the insight; `None` when no limit was advertised and no step was limited.
pub fn limits_insight(
    readings: &[BucketReading],
    load: Load,
    limited_steps: &[(u32, Vec<BucketReading>)],
) -> Option<LimitsInsight> {
    let mut limits = Vec::new();
    for (kind, (limit, window)) in largest_limits(readings) {
        let per_minute = limit * 60.0 / f64::from(window);
        let pp = per_prompt(kind, &load);
        if pp <= 0.0 || load.mean_latency_s <= 0.0 {
            continue;
        }
        limits.push(Advertised {
            kind: kind.to_string(),
            limit,
            window_seconds: window,
            per_minute,
            per_prompt: pp,
            implied_workers: per_minute / pp * load.mean_latency_s / 60.0,
        });
    }
    let binding_when_limited: BTreeMap<u32, String> = limited_steps
        .iter()
        .map(|(w, readings)| (*w, binding_kind(readings)))
        .collect();
    if limits.is_empty() && binding_when_limited.is_empty() {
        return None;
    }
    let tightest = limits
        .iter()
        .min_by(|a, b| a.implied_workers.total_cmp(&b.implied_workers));
    Some(LimitsInsight {
        implied_workers: tightest.map(|t| t.implied_workers.floor().max(0.0) as u32),
        tightest: tightest.map(|t| t.kind.clone()),
        limits,
        binding_when_limited,
        load: LoadView {
            mean_latency_ms: load.mean_latency_s * 1000.0,
            mean_input_tokens: load.mean_input_tokens,
            mean_output_tokens: load.mean_output_tokens,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(kind: BucketKind, limit: f64, remaining: f64, window: u32) -> BucketReading {
        BucketReading {
            kind,
            window_seconds: window,
            limit: Some(limit),
            remaining: Some(remaining),
            reset: None,
        }
    }

    #[test]
    fn each_limit_implies_workers_and_the_smallest_binds() {
        let load = Load {
            mean_latency_s: 2.0,
            mean_input_tokens: 100.0,
            mean_output_tokens: 400.0,
        };
        let readings = vec![
            reading(BucketKind::Requests, 500.0, 480.0, 60),
            reading(BucketKind::Tokens, 30_000.0, 100.0, 60),
            // A per-day request limit (Groq): 14400 a day is 10 a minute.
            reading(BucketKind::Requests, 400.0, 0.0, 60),
        ];
        let limited = vec![
            (27, vec![reading(BucketKind::Tokens, 30_000.0, 0.0, 60)]),
            (21, vec![]),
        ];
        let got = limits_insight(&readings, load, &limited).unwrap();
        // requests: 500/min × 2 s / 60 = 16.67; tokens: 30000/500 = 60/min × 2 / 60 = 2.
        assert_eq!(got.limits.len(), 2);
        assert_eq!(got.limits[0].kind, "requests");
        assert!((got.limits[0].implied_workers - 500.0 * 2.0 / 60.0).abs() < 1e-9);
        assert_eq!(got.limits[1].kind, "tokens");
        assert!((got.limits[1].implied_workers - 2.0).abs() < 1e-9);
        assert_eq!(got.implied_workers, Some(2));
        assert_eq!(got.tightest.as_deref(), Some("tokens"));
        assert_eq!(
            got.binding_when_limited,
            BTreeMap::from([(21, "concurrency".to_string()), (27, "tokens".to_string())])
        );
    }

    #[test]
    fn per_day_windows_scale_to_a_minute() {
        let load = Load {
            mean_latency_s: 6.0,
            mean_input_tokens: 1.0,
            mean_output_tokens: 1.0,
        };
        let got = limits_insight(
            &[reading(BucketKind::Requests, 14_400.0, 1.0, 86_400)],
            load,
            &[],
        )
        .unwrap();
        assert!((got.limits[0].per_minute - 10.0).abs() < 1e-9);
        assert_eq!(got.implied_workers, Some(1));
    }

    #[test]
    fn nothing_advertised_and_nothing_limited_is_no_insight() {
        assert_eq!(limits_insight(&[], Load::default(), &[]), None);
    }
}
