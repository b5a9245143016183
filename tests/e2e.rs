//! The whole binary against real servers on 127.0.0.1: the simulator, and nginx as a rate
//! limiter nobody here wrote. Exact step sequences and recommended counts.

mod common;

use common::net::{Nginx, NginxMode};
use common::*;
use find_workers_limit::config::scenario::SimulatorSettings;

fn step_list(v: &[(u64, &str)]) -> Vec<(u64, String)> {
    v.iter().map(|(w, s)| (*w, s.to_string())).collect()
}

#[test]
fn openai_flavor_cap_24_recommends_21() {
    let CapProbe { sim, dir, out } = probe_openai_at_cap(24, &[]);
    assert_eq!(stdout(&out), "21\n", "stderr:\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    let result = read_result(&dir.path().join("r.json"));
    assert_eq!(
        steps_of(&result),
        step_list(&[
            (3, "passed"),
            (6, "passed"),
            (12, "passed"),
            (18, "passed"),
            (27, "rate_limited"),
            (21, "passed")
        ])
    );
    assert_eq!(result["model"], "gpt-4o");
    assert_eq!(result["recommended_workers"], 21);
    assert_eq!(result["max_tested"], 27);
    // The spec's run shape: these keys on every run.
    for run in result["runs"].as_array().unwrap() {
        for key in [
            "workers",
            "prompts",
            "success",
            "rate_limited",
            "status",
            "duration_ms",
            "timestamp",
            "error",
        ] {
            assert!(run.get(key).is_some(), "run lacks `{key}`: {run}");
        }
    }
    let prompts: Vec<u64> = result["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prompts"].as_u64().unwrap())
        .collect();
    assert_eq!(prompts, vec![6, 12, 24, 36, 54, 42]);
    assert_eq!(sim.stats().max_in_flight, 24);
}

#[test]
fn anthropic_flavor_cap_24_recommends_21() {
    let sim = Sim::start(concurrency_cap(24));
    let dir = tempfile::tempdir().unwrap();
    let base = sim.anthropic_base_url();
    let out = probe_at(
        dir.path(),
        "anthropic",
        "claude-sonnet-4",
        &base,
        ("ANTHROPIC_API_KEY", "sk-ant-test-e2e"),
        &[],
    );
    assert_eq!(stdout(&out), "21\n", "stderr:\n{}", stderr(&out));
    let result = read_result(&dir.path().join("r.json"));
    assert_eq!(
        steps_of(&result),
        step_list(&[
            (3, "passed"),
            (6, "passed"),
            (12, "passed"),
            (18, "passed"),
            (27, "rate_limited"),
            (21, "passed")
        ])
    );
}

#[test]
fn nginx_limit_conn_10_recommends_9() {
    // The simulator itself has no limit; nginx allows 10 requests in flight.
    let sim = Sim::start(SimulatorSettings {
        ttft_ms: Some(150),
        tokens_per_second: Some(1000),
        output_tokens: Some(100),
        ..Default::default()
    });
    let nginx = Nginx::start(sim.port(), NginxMode::LimitConn(10));
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}/v1", nginx.port);
    let out = probe_at(
        dir.path(),
        "openai",
        "gpt-4o",
        &base,
        ("OPENAI_API_KEY", "sk-test-nginx"),
        &["--cooldown", "1s"],
    );
    // Planner rules for a true limit of 10: 3, 6 pass; 12 fails; floor(12 × 0.8) = 9 > 6 → 9 passes.
    assert_eq!(stdout(&out), "9\n", "stderr:\n{}", stderr(&out));
    let result = read_result(&dir.path().join("r.json"));
    assert_eq!(
        steps_of(&result),
        step_list(&[
            (3, "passed"),
            (6, "passed"),
            (12, "rate_limited"),
            (9, "passed")
        ])
    );
    // nginx answered the excess with its own HTML 429 page, which the status rule caught.
    assert_eq!(
        result["runs"][2]["outcomes_by_rule"]["rate limited"]
            .as_u64()
            .unwrap(),
        result["runs"][2]["rate_limited"].as_u64().unwrap()
    );
}

#[test]
fn demo_scenario_runs_with_no_key_and_no_network() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = std::time::Instant::now();
    let out = run_in(root, &["run", "demo"], &[]);
    assert_eq!(stdout(&out), "21\n", "stderr:\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        started.elapsed().as_secs() < 30,
        "demo took {:?}",
        started.elapsed()
    );
}

/// An account that takes one request at a time: the probe scales back 3 → 2 → 1 and says
/// so in words ("1 worker", not "1 workers").
#[test]
fn a_cap_of_1_recommends_1_and_says_1_worker() {
    let CapProbe { sim, dir, out } = probe_openai_at_cap(1, &[]);
    assert_eq!(stdout(&out), "1\n", "stderr:\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    let result = read_result(&dir.path().join("r.json"));
    assert_eq!(
        steps_of(&result),
        step_list(&[(3, "rate_limited"), (2, "rate_limited"), (1, "passed")])
    );
    assert_eq!(sim.stats().max_in_flight, 1);
    // The progress lines, without the steps' durations. The 429s come back at once, so a
    // step's rate-limited workers use its prompts up while the one slot is busy.
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.strip_prefix("step ")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                || l.starts_with("cooling down ")
        })
        .map(|l| l.split(" in ").next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "step 1: 3 workers, 6 prompts",
            "step 1: 3 workers: rate limited (2 ok, 4 rate limited, 0 failed)",
            "cooling down 1.0s (retry hint 1.0s) before 2 workers",
            "step 2: 2 workers, 6 prompts",
            "step 2: 2 workers: rate limited (1 ok, 5 rate limited, 0 failed)",
            "cooling down 1.0s (retry hint 1.0s) before 1 worker",
            "step 3: 1 worker, 6 prompts",
            "step 3: 1 worker: passed (6 ok, 0 rate limited, 0 failed)",
        ],
        "{err}"
    );
}
