//! The human summary printed to stderr when a probe ends: one row per step, then the
//! answer and what it rests on. Plain text with aligned columns, so it reads the same in
//! a terminal, a CI log or a pasted issue.

use std::fmt::Write as _;

use super::{ProbeResult, RunRecord};

/// The summary of `result`: a table of the steps, then the recommendation (or the error),
/// the highest count tested, whether the cap was reached, the totals and every warning.
/// Each line ends with a newline.
pub fn summary_table(result: &ProbeResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} via {} ({})",
        result.model, result.provider, result.endpoint
    );
    if result.runs.is_empty() {
        out.push_str("no steps were run\n");
    } else {
        out.push_str(&steps_table(&result.runs));
    }
    out.push('\n');

    match result.recommended_workers {
        Some(workers) => {
            let _ = writeln!(out, "recommended workers: {workers}");
        }
        None => out.push_str("recommended workers: none\n"),
    }
    // The error itself is the command's last line (`error: …`, printed by `main`); the
    // summary only says how the probe ended, so the message is not printed twice.
    if result.error.is_some() {
        let _ = writeln!(out, "ended: {}", result.outcome.replace('_', " "));
    }
    let _ = writeln!(out, "max tested: {}", result.max_tested);
    if result.cap_reached {
        let _ = writeln!(
            out,
            "max-workers reached: yes ({} passed; the account may sustain more: raise --max-workers)",
            workers(result.settings.max_workers)
        );
    } else {
        out.push_str("max-workers reached: no\n");
    }
    if result.interrupted {
        out.push_str("interrupted: yes (the steps above are what was measured before it was stopped: Ctrl-C or SIGTERM)\n");
    }

    let t = &result.totals;
    let _ = write!(
        out,
        "totals: {}, {} prompts ({} ok, {} rate limited, {} failed), {} input + {} output tokens",
        count(u64::from(t.steps), "step", "steps"),
        thousands(t.prompts),
        thousands(t.success),
        thousands(t.rate_limited),
        thousands(t.failed),
        thousands(t.input_tokens),
        thousands(t.output_tokens),
    );
    if let Some(cost) = t.cost_usd {
        let _ = write!(out, ", estimated cost ${cost:.4}");
    }
    let _ = writeln!(out, ", {}", format_duration_ms(result.duration_ms));

    for (index, run) in result.runs.iter().enumerate() {
        for warning in &run.warnings {
            let _ = writeln!(
                out,
                "warning: step {} ({}): {warning}",
                index + 1,
                workers(run.workers)
            );
        }
    }
    out
}

/// Columns of the steps table: header, and whether values are right-aligned (numbers)
/// or left-aligned (words).
const COLUMNS: [(&str, Align); 11] = [
    ("step", Align::Right),
    ("workers", Align::Right),
    ("prompts", Align::Right),
    ("ok", Align::Right),
    ("429", Align::Right),
    ("failed", Align::Right),
    ("status", Align::Left),
    ("p50", Align::Right),
    ("p95", Align::Right),
    ("tokens out", Align::Right),
    ("duration", Align::Right),
];

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Align {
    Left,
    Right,
}

fn steps_table(runs: &[RunRecord]) -> String {
    let headers: Vec<(&str, Align)> = COLUMNS
        .iter()
        .copied()
        .chain([("cooldown", Align::Right)])
        .collect();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .enumerate()
        .map(|(index, run)| {
            let latency = |pick: fn(&super::Percentiles) -> f64| {
                run.latency_ms
                    .as_ref()
                    .map_or("-".to_string(), |p| latency(pick(p)))
            };
            vec![
                (index + 1).to_string(),
                run.workers.to_string(),
                run.prompts.to_string(),
                run.success.to_string(),
                run.rate_limited.to_string(),
                run.failed.to_string(),
                run.status.replace('_', " "),
                latency(|p| p.p50),
                latency(|p| p.p95),
                thousands(run.output_tokens),
                format_duration_ms(run.duration_ms),
                if run.cooldown_ms == 0 {
                    "-".to_string()
                } else {
                    format_duration_ms(run.cooldown_ms)
                },
            ]
        })
        .collect();

    table(&headers, &rows)
}

/// Rows under their headers, each column as wide as its widest cell, two spaces apart;
/// no trailing spaces.
pub(crate) fn table(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(col, (header, _))| {
            rows.iter()
                .map(|row| row[col].chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (col, cell) in cells.iter().enumerate() {
            if col > 0 {
                text.push_str("  ");
            }
            let width = widths[col];
            match headers[col].1 {
                Align::Right => {
                    let _ = write!(text, "{cell:>width$}");
                }
                Align::Left => {
                    let _ = write!(text, "{cell:<width$}");
                }
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|(h, _)| *h).collect());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// A latency in milliseconds: "850ms" below a second, else "1.23s".
fn latency(ms: f64) -> String {
    if ms < 999.5 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// A count and its noun: "1 step", "3 steps".
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A worker count as words: "1 worker", "18 workers".
pub fn workers(n: u32) -> String {
    count(u64::from(n), "worker", "workers")
}

/// A wall time in milliseconds: "850ms", "2.3s", "1m05s".
pub fn format_duration_ms(ms: u64) -> String {
    // Integer rounding (half up), so 2.35 s is "2.4s" whatever f64 makes of it, and
    // 59.96 s becomes "1m00s" rather than "60.0s".
    let tenths = (ms + 50) / 100;
    if ms < 1000 {
        format!("{ms}ms")
    } else if tenths < 600 {
        format!("{}.{}s", tenths / 10, tenths % 10)
    } else {
        let secs = (ms + 500) / 1000;
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::{Percentiles, ResultSettings, Totals};

    pub(crate) fn run(
        workers: u32,
        success: u32,
        rate_limited: u32,
        p50: f64,
        output_tokens: u64,
        duration_ms: u64,
    ) -> RunRecord {
        RunRecord {
            workers,
            prompts: success + rate_limited,
            success,
            rate_limited,
            failed: 0,
            status: if rate_limited > 0 {
                "rate_limited"
            } else {
                "passed"
            }
            .into(),
            duration_ms,
            timestamp: "2025-01-02T03:04:05.000Z".into(),
            error: None,
            retries: 0,
            latency_ms: Some(Percentiles {
                p50,
                p90: p50 * 1.2,
                p95: p50 * 1.25,
                p99: p50 * 1.3,
                max: p50 * 1.4,
            }),
            ttft_ms: None,
            input_tokens: u64::from(success) * 20,
            output_tokens,
            throughput_rps: 1.0,
            retry_hint_ms: None,
            cooldown_ms: 0,
            rate_limit_headers: BTreeMap::new(),
            outcomes_by_rule: BTreeMap::new(),
            cost_usd: None,
            warnings: Vec::new(),
        }
    }

    /// The probe of an account limited to 10 concurrent requests: 3, 6, 12 (fails), 9.
    pub(crate) fn sample() -> ProbeResult {
        let mut runs = vec![
            run(3, 6, 0, 800.0, 3_000, 2_400),
            run(6, 12, 0, 1_204.4, 6_120, 2_650),
            run(12, 20, 4, 1_350.0, 10_000, 3_149),
            run(9, 18, 0, 1_190.0, 9_000, 61_499),
        ];
        runs[2].cooldown_ms = 12_000;
        runs[2].retry_hint_ms = Some(12_000);
        runs[3].failed = 1;
        runs[3].prompts += 1;
        runs[3]
            .warnings
            .push("1 prompt(s) failed after 3 retries".into());
        let totals = Totals {
            steps: 4,
            prompts: 61,
            success: 56,
            rate_limited: 4,
            failed: 1,
            input_tokens: 1_120,
            output_tokens: 28_120,
            cost_usd: Some(0.2840),
        };
        ProbeResult {
            schema_version: 1,
            tool_version: "0.1.0".into(),
            model: "gpt-4o".into(),
            provider: "openai".into(),
            endpoint: "http://127.0.0.1:8080/v1/chat/completions".into(),
            recommended_workers: Some(9),
            max_tested: 12,
            outcome: "found".into(),
            error: None,
            cap_reached: false,
            interrupted: false,
            started_at: "2025-01-02T03:04:00.000Z".into(),
            duration_ms: 83_712,
            settings: ResultSettings {
                max_workers: 100,
                min_output_tokens: 500,
                max_tokens: 600,
                stream: false,
                max_retries: 3,
                prompt_chars: 62,
            },
            runs,
            totals,
            insights: BTreeMap::new(),
        }
    }

    #[test]
    fn the_summary_of_a_small_probe() {
        let expected = "\
gpt-4o via openai (http://127.0.0.1:8080/v1/chat/completions)
step  workers  prompts  ok  429  failed  status          p50    p95  tokens out  duration  cooldown
   1        3        6   6    0       0  passed        800ms  1.00s       3,000      2.4s         -
   2        6       12  12    0       0  passed        1.20s  1.51s       6,120      2.7s         -
   3       12       24  20    4       0  rate limited  1.35s  1.69s      10,000      3.1s     12.0s
   4        9       19  18    0       1  passed        1.19s  1.49s       9,000     1m01s         -

recommended workers: 9
max tested: 12
max-workers reached: no
totals: 4 steps, 61 prompts (56 ok, 4 rate limited, 1 failed), 1,120 input + 28,120 output tokens, estimated cost $0.2840, 1m24s
warning: step 4 (9 workers): 1 prompt(s) failed after 3 retries
";
        assert_eq!(summary_table(&sample()), expected);
    }

    #[test]
    fn the_summary_of_a_probe_that_ended_in_error() {
        let mut result = sample();
        result.runs = vec![
            run(3, 0, 6, 500.0, 0, 900),
            run(2, 0, 6, 400.0, 0, 800),
            run(1, 0, 6, 300.0, 0, 700),
        ];
        result.runs[0].latency_ms = None;
        result.recommended_workers = None;
        result.max_tested = 3;
        result.outcome = "rate_limited_at_minimum".into();
        result.error = Some("Model rate limited even with 1 worker".into());
        result.totals = Totals {
            steps: 3,
            prompts: 18,
            rate_limited: 18,
            ..Totals::default()
        };
        result.duration_ms = 2_400;
        let expected = "\
gpt-4o via openai (http://127.0.0.1:8080/v1/chat/completions)
step  workers  prompts  ok  429  failed  status          p50    p95  tokens out  duration  cooldown
   1        3        6   0    6       0  rate limited      -      -           0     900ms         -
   2        2        6   0    6       0  rate limited  400ms  500ms           0     800ms         -
   3        1        6   0    6       0  rate limited  300ms  375ms           0     700ms         -

recommended workers: none
ended: rate limited at minimum
max tested: 3
max-workers reached: no
totals: 3 steps, 18 prompts (0 ok, 18 rate limited, 0 failed), 0 input + 0 output tokens, 2.4s
";
        assert_eq!(summary_table(&result), expected);
    }

    #[test]
    fn cap_reached_interrupted_and_no_steps() {
        let mut result = sample();
        result.runs.clear();
        result.cap_reached = true;
        result.interrupted = true;
        result.totals = Totals::default();
        let text = summary_table(&result);
        assert!(text.contains("\nno steps were run\n"), "{text}");
        assert!(text.contains("\nmax-workers reached: yes (100 workers passed; the account may sustain more: raise --max-workers)\n"), "{text}");
        assert!(
            text.contains(
                "\ninterrupted: yes (the steps above are what was measured before it was stopped: Ctrl-C or SIGTERM)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn numbers_and_durations_read_easily() {
        assert_eq!(
            [0, 999, 1_000, 12_345, 1_234_567].map(thousands),
            ["0", "999", "1,000", "12,345", "1,234,567"]
        );
        assert_eq!(
            [0, 999, 1_000, 2_349, 59_949, 59_950, 61_499, 3_600_000].map(format_duration_ms),
            ["0ms", "999ms", "1.0s", "2.3s", "59.9s", "1m00s", "1m01s", "60m00s"]
        );
        assert_eq!(
            [0.4, 812.0, 999.4, 999.6, 1_204.4, 61_000.0].map(latency),
            ["0ms", "812ms", "999ms", "1.00s", "1.20s", "61.00s"]
        );
    }
}
