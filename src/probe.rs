//! The probe loop: the one place that joins the planner and the engine. Ask the planner
//! for the next step, check it against the spend caps, wait out the cooldown after a
//! rate-limited step, run the step, record it; on Ctrl-C stop and keep what was measured.

use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::provider::Outcome;
use crate::engine::{Engine, OpenFiles, StepResult, StepSpec};
use crate::planner::{self, Decision, Spend, StepOutcome, Verdict};
use crate::progress::Progress;
use crate::report::{self, ProbeResult, ResultSettings, RunRecord, Totals};
use crate::settings::ProbeSettings;
use crate::Error;

/// What a probe produced: the result document (always, even when it ended in error) and
/// the error that ended it, if one did.
pub struct ProbeOutcome {
    pub result: ProbeResult,
    pub error: Option<Error>,
}

/// RFC 3339 UTC time with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Estimated cost in US dollars of these tokens, when the provider has prices.
fn cost(settings: &ProbeSettings, input: u64, output: u64) -> Option<f64> {
    settings
        .provider
        .pricing
        .as_ref()
        .map(|p| report::cost_usd(p, input, output))
}

/// A rough input-token count of the prompt (4 characters a token), for worst cases.
pub fn estimated_input_tokens(settings: &ProbeSettings) -> u64 {
    (settings.prompt.chars().count() as u64).div_ceil(4).max(1)
}

/// The most a step of `prompts` prompts could spend.
pub fn worst_case_spend(settings: &ProbeSettings, prompts: u32) -> Spend {
    let prices = settings
        .provider
        .pricing
        .as_ref()
        .map(|p| (p.input_per_million, p.output_per_million));
    Spend::worst_case(
        prompts,
        estimated_input_tokens(settings),
        settings.max_tokens,
        prices,
    )
}

/// With `--step-duration` a step sends as many prompts as the duration takes: the most
/// it may send without breaking a spend cap (never below its planned `prompts`, which
/// the cap check before the step already allowed).
fn step_budget(settings: &ProbeSettings, totals: &Totals, prompts: u32) -> u32 {
    let caps = settings.caps;
    let mut budget = u64::from(u32::MAX);
    if let Some(max) = caps.max_prompts {
        budget = budget.min(max.saturating_sub(totals.prompts));
    }
    if let Some(max) = caps.max_output_tokens {
        budget = budget
            .min(max.saturating_sub(totals.output_tokens) / u64::from(settings.max_tokens.max(1)));
    }
    if let (Some(max), Some(p)) = (caps.max_cost_usd, settings.provider.pricing.as_ref()) {
        let per_prompt = report::cost_usd(
            p,
            estimated_input_tokens(settings),
            u64::from(settings.max_tokens),
        );
        let left = max - totals.cost_usd.unwrap_or(0.0);
        if per_prompt > 0.0 {
            budget = budget.min((left / per_prompt).floor().max(0.0) as u64);
        }
    }
    (budget.min(u64::from(u32::MAX)) as u32).max(prompts)
}

/// A step's record for the result file.
pub fn run_record(settings: &ProbeSettings, step: &StepResult, cooldown: Duration) -> RunRecord {
    let lat: Vec<f64> = step
        .prompts
        .iter()
        .filter(|p| p.outcome == Outcome::Success)
        .map(|p| p.latency.as_secs_f64() * 1000.0)
        .collect();
    let ttft: Vec<f64> = step
        .prompts
        .iter()
        .filter(|p| p.outcome == Outcome::Success)
        .filter_map(|p| p.ttft.map(|t| t.as_secs_f64() * 1000.0))
        .collect();
    let input: u64 = step.prompts.iter().filter_map(|p| p.input_tokens).sum();
    let output: u64 = step.prompts.iter().filter_map(|p| p.output_tokens).sum();
    let success = step.success();
    let status = if step.interrupted {
        "interrupted"
    } else if step.fatal.is_some() {
        "fatal"
    } else if step.rate_limited() > 0 {
        "rate_limited"
    } else {
        "passed"
    };
    let mut outcomes_by_rule = std::collections::BTreeMap::new();
    for p in &step.prompts {
        *outcomes_by_rule.entry(p.rule.to_string()).or_insert(0u32) += 1;
    }
    let mut warnings = Vec::new();
    if success > 0 {
        let mean = output as f64 / f64::from(success);
        if mean < f64::from(settings.min_output_tokens) {
            warnings.push(format!(
                "mean output {mean:.0} tokens is below --min-output-tokens {}: the load was lighter than asked",
                settings.min_output_tokens
            ));
        }
    }
    let failed = step.failed();
    if failed > 0 && step.fatal.is_none() {
        warnings.push(format!(
            "{failed} prompt(s) failed after {}",
            crate::report::count(u64::from(settings.max_retries), "retry", "retries")
        ));
    }
    let error = step.fatal.clone().or_else(|| {
        step.prompts
            .iter()
            .rev()
            .find(|p| p.outcome == Outcome::Transient || p.outcome == Outcome::RateLimited)
            .and_then(|p| p.error.clone())
    });
    let secs = step.duration.as_secs_f64();
    RunRecord {
        workers: step.spec.workers,
        prompts: step.prompts.len() as u32,
        success,
        rate_limited: step.rate_limited(),
        failed,
        status: status.into(),
        duration_ms: step.duration.as_millis() as u64,
        timestamp: rfc3339(step.started_at),
        error,
        retries: step.prompts.iter().map(|p| p.retries).sum(),
        latency_ms: report::percentiles(&lat),
        ttft_ms: report::percentiles(&ttft),
        input_tokens: input,
        output_tokens: output,
        throughput_rps: if secs > 0.0 {
            f64::from(success) / secs
        } else {
            0.0
        },
        retry_hint_ms: step.retry_hint.map(|d| d.as_millis() as u64),
        cooldown_ms: cooldown.as_millis() as u64,
        rate_limit_headers: step.rate_limit_headers.clone(),
        outcomes_by_rule,
        cost_usd: cost(settings, input, output),
        warnings,
    }
}

/// Sleeps `d` unless cancelled first; true when it slept the whole time.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

/// Runs the whole probe against `engine`. `files`: the open-file limit, if one is known;
/// a step whose connections would not fit under it is not run.
pub async fn run(
    settings: &ProbeSettings,
    files: Option<OpenFiles>,
    engine: &Engine,
    cancel: &CancellationToken,
    observer: &Progress,
) -> ProbeOutcome {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let mut history: Vec<StepOutcome> = Vec::new();
    let mut runs: Vec<RunRecord> = Vec::new();
    let mut totals = Totals::default();
    let mut last_hint: Option<Duration> = None;
    let mut verdict: Option<Verdict> = None;
    // With --refine: the spec ramp's own verdict, kept for the result file.
    let mut spec_verdict: Option<Verdict> = None;
    let mut spec_runs = 0;
    // For the advertised-limits insight.
    let mut readings = Vec::new();
    let mut limited_steps = Vec::new();
    let mut load_sum = (0.0f64, 0u64, 0u64, 0u64); // latency s, input, output, answered
    let caps = settings.caps;
    let mut error: Option<Error> = None;
    let mut outcome = "found";
    let mut interrupted = false;

    loop {
        let decision = match spec_verdict {
            Some(v) => planner::next_refined(&settings.planner, &history, v),
            None => planner::next(&settings.planner, &history),
        };
        let (workers, prompts) = match decision {
            Decision::Done(v) if settings.refine && spec_verdict.is_none() => {
                spec_verdict = Some(v);
                spec_runs = runs.len();
                continue;
            }
            Decision::Done(v) => {
                verdict = Some(v);
                break;
            }
            Decision::Run { workers, prompts } => (workers, prompts),
        };

        // A connection that cannot be opened is a failed prompt, not a rate limit: the
        // step would pass with fewer workers than it claims.
        let connections = u64::from(workers) * settings.descriptors_per_worker();
        if let Some(f) = files.filter(|f| !f.fits(connections)) {
            outcome = "open_file_limit";
            let needed = OpenFiles::needed(connections);
            error = Some(Error::StoppedEarly(format!(
                "the step at {} needs {needed} open files, more than the open-file limit of {f}: raise the limit to {needed} or lower --max-workers; stopping{}",
                crate::report::workers(workers),
                proven_note(&history)
            )));
            break;
        }

        let spent = Spend {
            prompts: totals.prompts,
            output_tokens: totals.output_tokens,
            cost_usd: totals
                .cost_usd
                .or(settings.provider.pricing.as_ref().map(|_| 0.0)),
        };
        if let Err(why) = caps.check(spent, worst_case_spend(settings, prompts)) {
            outcome = "spend_cap";
            error = Some(Error::StoppedEarly(format!(
                "spend cap: {why}; stopping{}",
                proven_note(&history)
            )));
            break;
        }

        // After a rate-limited step the bucket is empty: wait before the next step.
        if let Some(prev) = history.last() {
            if !prev.passed {
                let (wait, reason) = match last_hint {
                    Some(h) => (h, format!("retry hint {:.1}s", h.as_secs_f64())),
                    None => (
                        settings.cooldown,
                        "no retry hint; default cooldown".to_string(),
                    ),
                };
                if wait > settings.max_cooldown {
                    outcome = "cooldown_too_long";
                    error = Some(Error::StoppedEarly(format!(
                        "the provider asks to wait {} before retrying, longer than --max-cooldown {}: the account is blocked for longer than a probe should wait{}",
                        humantime::format_duration(Duration::from_secs(wait.as_secs())),
                        humantime::format_duration(settings.max_cooldown),
                        proven_note(&history)
                    )));
                    break;
                }
                if let Some(r) = runs.last_mut() {
                    r.cooldown_ms = wait.as_millis() as u64;
                }
                observer.cooldown(wait, &reason, workers);
                let started = std::time::Instant::now();
                if !sleep_or_cancel(wait, cancel).await {
                    // Cut short: the record says how long it really waited.
                    if let Some(r) = runs.last_mut() {
                        r.cooldown_ms = started.elapsed().as_millis() as u64;
                    }
                    interrupted = true;
                    break;
                }
            }
        }

        observer.step_started(runs.len(), workers, prompts);
        let spec = StepSpec {
            workers,
            prompts,
            min_duration: settings.step_duration,
            max_prompts: settings
                .step_duration
                .map(|_| step_budget(settings, &totals, prompts)),
        };
        let step = engine.run_step(spec, cancel.child_token()).await;
        let record = run_record(settings, &step, Duration::ZERO);
        readings.extend(step.buckets.iter().cloned());
        if step.rate_limited() > 0 {
            limited_steps.push((workers, step.rate_limited_buckets.clone()));
        }
        for p in step
            .prompts
            .iter()
            .filter(|p| p.outcome == Outcome::Success)
        {
            load_sum.0 += p.latency.as_secs_f64();
            load_sum.1 += p.input_tokens.unwrap_or(0);
            load_sum.2 += p.output_tokens.unwrap_or(0);
            load_sum.3 += 1;
        }
        observer.step_finished(runs.len(), &record);
        totals.steps += 1;
        totals.prompts += u64::from(record.prompts);
        totals.success += u64::from(record.success);
        totals.rate_limited += u64::from(record.rate_limited);
        totals.failed += u64::from(record.failed);
        totals.input_tokens += record.input_tokens;
        totals.output_tokens += record.output_tokens;
        totals.cost_usd = cost(settings, totals.input_tokens, totals.output_tokens);
        runs.push(record);

        if step.interrupted || cancel.is_cancelled() {
            interrupted = true;
            break;
        }
        if let Some(msg) = &step.fatal {
            outcome = "fatal";
            error = Some(Error::ProviderFatal(msg.clone()));
            break;
        }
        if step.success() == 0 && step.rate_limited() == 0 {
            let last = step
                .prompts
                .iter()
                .rev()
                .find_map(|p| p.error.clone())
                .unwrap_or_else(|| "no answer".into());
            outcome = "fatal";
            error = Some(Error::ProviderFatal(format!(
                "every prompt of the step at {} failed after {} (last: {last}); nothing can be measured",
                crate::report::workers(workers),
                crate::report::count(u64::from(settings.max_retries), "retry", "retries")
            )));
            break;
        }
        last_hint = step.retry_hint;
        history.push(StepOutcome {
            workers,
            passed: step.rate_limited() == 0,
        });
    }

    if interrupted {
        outcome = "interrupted";
        error = Some(Error::Interrupted);
    }
    let mut cap_reached = false;
    let recommended = match verdict {
        Some(Verdict::Recommend {
            workers,
            cap_reached: c,
        }) => {
            cap_reached = c;
            if c {
                outcome = "cap_reached";
            }
            Some(workers)
        }
        Some(Verdict::RateLimitedAtOne) => {
            outcome = "rate_limited_at_minimum";
            error = Some(Error::RateLimitedAtOne(
                "Model rate limited even with 1 worker".into(),
            ));
            None
        }
        None => match outcome {
            "spend_cap" | "cooldown_too_long" | "open_file_limit" | "interrupted" => {
                planner::proven(&history)
            }
            _ => None,
        },
    };
    let result = ProbeResult {
        schema_version: 1,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        model: settings.model.clone(),
        provider: settings.provider.name.clone(),
        endpoint: engine_endpoint(engine),
        recommended_workers: recommended,
        // A step counts as tested when it ran to its verdict (passed or rate limited),
        // not when a fatal answer or Ctrl-C cut it short.
        max_tested: runs
            .iter()
            .filter(|r| r.status == "passed" || r.status == "rate_limited")
            .map(|r| r.workers)
            .max()
            .unwrap_or(0),
        outcome: outcome.into(),
        error: error.as_ref().map(|e| e.to_string()),
        cap_reached,
        interrupted,
        started_at: rfc3339(started_at),
        duration_ms: started.elapsed().as_millis() as u64,
        settings: ResultSettings {
            max_workers: settings.planner.max_workers,
            min_output_tokens: settings.min_output_tokens,
            max_tokens: settings.max_tokens,
            stream: settings.stream,
            max_retries: settings.max_retries,
            prompt_chars: settings.prompt.chars().count(),
        },
        insights: refine_insight(spec_verdict, spec_runs, &runs)
            .into_iter()
            .chain(limits_insight_entry(&readings, load_sum, &limited_steps))
            .collect(),
        runs,
        totals,
    };
    ProbeOutcome { result, error }
}

/// With `--refine`: the spec ramp's answer beside the refined one, and what refining cost.
fn refine_insight(
    spec: Option<Verdict>,
    spec_runs: usize,
    runs: &[RunRecord],
) -> Option<(String, serde_json::Value)> {
    let spec = spec?;
    let spec_workers = match spec {
        Verdict::Recommend { workers, .. } => Some(workers),
        Verdict::RateLimitedAtOne => None,
    };
    let extra = &runs[spec_runs.min(runs.len())..];
    Some((
        "refine".into(),
        serde_json::json!({
            "spec_recommended_workers": spec_workers,
            "spec_steps": spec_runs,
            "refine_steps": extra.len(),
            "refine_prompts": extra.iter().map(|r| u64::from(r.prompts)).sum::<u64>(),
            "tested": extra.iter().map(|r| serde_json::json!({"workers": r.workers, "status": r.status})).collect::<Vec<_>>(),
        }),
    ))
}

/// The advertised limits and the worker counts they imply, as a result-file entry.
fn limits_insight_entry(
    readings: &[crate::classify::BucketReading],
    (latency_s, input, output, answered): (f64, u64, u64, u64),
    limited: &[(u32, Vec<crate::classify::BucketReading>)],
) -> Option<(String, serde_json::Value)> {
    let n = answered.max(1) as f64;
    let load = crate::insight::Load {
        mean_latency_s: latency_s / n,
        mean_input_tokens: input as f64 / n,
        mean_output_tokens: output as f64 / n,
    };
    let insight = crate::insight::limits_insight(readings, load, limited)?;
    Some((
        "advertised_limits".into(),
        serde_json::to_value(insight).ok()?,
    ))
}

fn proven_note(history: &[StepOutcome]) -> String {
    match planner::proven(history) {
        Some(w) => format!("; proven so far: {}", crate::report::workers(w)),
        None => "; nothing proven yet".into(),
    }
}

/// The URL requests go to, without query (which might carry a key).
fn engine_endpoint(engine: &Engine) -> String {
    let url = &engine.config().request.url;
    let url = url.split('?').next().unwrap_or(url);
    engine.config().request.redact(url)
}
