//! Ctrl-C, as SIGINT to the real binary: during a step, during a cooldown and during the
//! first request. Each time the probe ends with exit 130 and a result file (schema-valid)
//! holding the completed runs and `interrupted: true`. A second SIGINT ends the process
//! at once, even when finishing after the first one is stuck. SIGTERM is taken the same way.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::*;
use find_workers_limit::config::scenario::SimulatorSettings;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn probe_args<'a>(base: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--model",
        "sim-gpt",
        "--provider",
        "simulated",
        "--base-url",
        base,
        "--min-output-tokens",
        "10",
        "--output-file",
        "result.json",
    ];
    v.extend_from_slice(extra);
    v
}

fn runs(result: &serde_json::Value) -> Vec<(u64, String, u64)> {
    result["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["workers"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                r["success"].as_u64().unwrap(),
            )
        })
        .collect()
}

const NOTICE: &str = "interrupted: finishing the result file (Ctrl-C again to quit at once)";

#[test]
fn ctrl_c_during_a_step_keeps_the_completed_steps() {
    signal_during_a_step_keeps_the_completed_steps(libc::SIGINT, NOTICE);
}

/// SIGTERM is what `kill`, a batch scheduler or a container runtime sends: the probe
/// finishes its result file the same way.
#[test]
fn sigterm_during_a_step_keeps_the_completed_steps() {
    signal_during_a_step_keeps_the_completed_steps(
        libc::SIGTERM,
        "terminated: finishing the result file (a second signal quits at once)",
    );
}

fn signal_during_a_step_keeps_the_completed_steps(sig: i32, notice: &str) {
    // No limit; each answer takes 400 ms: step 1 (3 workers, 6 prompts) takes two rounds,
    // and step 2 is still running when the signal comes.
    let sim = Sim::start(SimulatorSettings {
        ttft_ms: Some(400),
        tokens_per_second: Some(0),
        output_tokens: Some(20),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let base = sim.openai_base_url();
    let p = spawn_in(dir.path(), &probe_args(&base, &[]), &[]);
    p.wait_for_line(|l| l == "step 2: 6 workers, 12 prompts", SECS(30));
    let sent = Instant::now();
    p.signal(sig);
    let (status, out, err) = p.finish(SECS(20));
    assert_eq!(status.code(), Some(130), "stderr:\n{err}");
    assert!(sent.elapsed() < SECS(5), "took {:?}", sent.elapsed());
    assert!(err.contains(&format!("\n{notice}\n")), "{err}");
    assert!(
        err.contains("\ninterrupted: yes (the steps above are what was measured before it was stopped: Ctrl-C or SIGTERM)\n"),
        "{err}"
    );
    assert!(err.contains("result written to result.json"), "{err}");
    let r = read_result(&dir.path().join("result.json"));
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["outcome"], "interrupted");
    assert_eq!(r["error"], "interrupted");
    let got = runs(&r);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], (3, "passed".into(), 6));
    assert_eq!((got[1].0, got[1].1.as_str()), (6, "interrupted"));
    // Step 2 was cut: fewer than its 12 prompts were recorded.
    assert!(r["runs"][1]["prompts"].as_u64().unwrap() < 12);
    // What was proven before the signal is still the answer on stdout.
    assert_eq!(r["recommended_workers"], 3);
    assert_eq!(out, "3\n");
}

/// A simulator allowing 8 requests a minute (burst 8): step 1 (3 workers, 6 prompts)
/// passes, step 2 (6 workers) is rate limited with a `retry-after` of several seconds,
/// and the probe cools down before trying 4 workers.
fn cooldown_sim() -> Sim {
    Sim::start(SimulatorSettings {
        rpm: Some(8),
        rpm_burst: Some(8),
        ttft_ms: Some(50),
        tokens_per_second: Some(0),
        output_tokens: Some(20),
        ..Default::default()
    })
}

/// "cooling down 7.0s (retry hint 7.0s) before 4 workers", with a wait of 4 s or more.
fn is_cooling(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("cooling down ") else {
        return false;
    };
    let secs: f64 = rest.split('s').next().unwrap().parse().unwrap();
    assert!(secs >= 4.0, "{line}");
    assert!(line.ends_with("before 4 workers"), "{line}");
    true
}

fn assert_cooldown_result(dir: &std::path::Path) {
    let r = read_result(&dir.join("result.json"));
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["outcome"], "interrupted");
    let got = runs(&r);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], (3, "passed".into(), 6));
    assert_eq!((got[1].0, got[1].1.as_str()), (6, "rate_limited"));
    assert_eq!(r["recommended_workers"], 3);
}

#[test]
fn ctrl_c_during_a_cooldown_ends_the_wait_at_once() {
    let sim = cooldown_sim();
    let dir = tempfile::tempdir().unwrap();
    let base = sim.openai_base_url();
    let p = spawn_in(dir.path(), &probe_args(&base, &["--cooldown", "60s"]), &[]);
    p.wait_for_line(is_cooling, SECS(30));
    let sent = Instant::now();
    p.signal(libc::SIGINT);
    let (status, out, err) = p.finish(SECS(20));
    assert_eq!(status.code(), Some(130), "stderr:\n{err}");
    // Not the whole cooldown (4 s or more).
    assert!(sent.elapsed() < SECS(3), "took {:?}", sent.elapsed());
    assert!(err.contains(NOTICE), "{err}");
    assert_cooldown_result(dir.path());
    // The record says how long the cooldown lasted, not how long it was to last.
    let r = read_result(&dir.path().join("result.json"));
    let waited = r["runs"][1]["cooldown_ms"].as_u64().unwrap();
    // (The signal follows the "cooling down" line within a millisecond or so: 0 is fair.)
    assert!(waited < 3000, "cooldown_ms {waited}");
    assert_eq!(out, "3\n");
}

#[test]
fn ctrl_c_during_the_first_request_writes_an_empty_interrupted_step() {
    // The first answer would take ten minutes.
    let sim = Sim::start(SimulatorSettings {
        ttft_ms: Some(600_000),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let base = sim.openai_base_url();
    let p = spawn_in(dir.path(), &probe_args(&base, &[]), &[]);
    p.wait_for_line(|l| l == "step 1: 3 workers, 6 prompts", SECS(30));
    // The first request (sent alone) is in flight at the simulator.
    let until = Instant::now() + SECS(10);
    while sim.stats().in_flight != 1 {
        assert!(Instant::now() < until, "no request arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.signal(libc::SIGINT);
    let sent = Instant::now();
    let (status, out, err) = p.finish(SECS(20));
    assert_eq!(status.code(), Some(130), "stderr:\n{err}");
    assert!(sent.elapsed() < SECS(5), "took {:?}", sent.elapsed());
    assert_eq!(out, "");
    let r = read_result(&dir.path().join("result.json"));
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["recommended_workers"], serde_json::Value::Null);
    assert_eq!(runs(&r), vec![(3, "interrupted".to_string(), 0)]);
    assert_eq!(r["runs"][0]["prompts"], 0);
    assert_eq!(r["totals"]["prompts"], 0);
    assert!(err.contains("\ntotals: 1 step, 0 prompts ("), "{err}");
    // The simulator saw exactly the one request, and it was closed by the client.
    assert_eq!(sim.stats().requests, 1);
}

/// A pipe already full, nobody reading it: whoever writes to its other end blocks, like
/// a probe piped into a stuck consumer. Returns (read end, kept open; write end).
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    unsafe {
        let flags = libc::fcntl(fds[1], libc::F_GETFL);
        libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
        let chunk = [b'x'; 4096];
        while libc::write(fds[1], chunk.as_ptr().cast(), chunk.len()) > 0 {}
        // Byte by byte, to the last free byte.
        while libc::write(fds[1], chunk.as_ptr().cast(), 1) > 0 {}
        libc::fcntl(fds[1], libc::F_SETFL, flags);
    }
    (r, w)
}

#[test]
fn a_second_signal_quits_at_once_when_finishing_is_stuck() {
    let sim = cooldown_sim();
    let dir = tempfile::tempdir().unwrap();
    let base = sim.openai_base_url();
    let (_keep_reader, writer) = full_pipe();
    let mut p = spawn_with_stdout(
        dir.path(),
        &probe_args(&base, &["--cooldown", "60s"]),
        &[],
        std::process::Stdio::from(writer),
    );
    p.wait_for_line(is_cooling, SECS(30));
    p.signal(libc::SIGINT);
    // The first Ctrl-C writes the result file, then blocks printing the count to the
    // full stdout.
    p.wait_for_line(|l| l == "result written to result.json", SECS(10));
    assert_cooldown_result(dir.path());
    assert_eq!(p.wait_timeout(Duration::from_millis(500)), None);
    // The second signal may be either kind: here a SIGTERM after the Ctrl-C.
    p.signal(libc::SIGTERM);
    let sent = Instant::now();
    let status = p.wait_timeout(SECS(1));
    assert!(
        status.is_some(),
        "still running 1 s after the second Ctrl-C; stderr:\n{}",
        p.stderr_so_far()
    );
    assert_eq!(status.unwrap().code(), Some(130));
    assert!(sent.elapsed() <= SECS(1));
    // The file written before is whole and untouched.
    assert_cooldown_result(dir.path());
}

#[test]
fn a_second_ctrl_c_quits_at_once_when_stderr_is_stuck() {
    // stderr is a full pipe nobody reads (a paused pager): the probe blocks on its
    // first progress line, and so would anything that prints on Ctrl-C.
    let sim = Sim::start(SimulatorSettings::default());
    let dir = tempfile::tempdir().unwrap();
    let base = sim.openai_base_url();
    let (_keep_out, out_w) = full_pipe();
    let (_keep_err, err_w) = full_pipe();
    let mut p = spawn_with(
        dir.path(),
        &probe_args(&base, &[]),
        &[],
        std::process::Stdio::from(out_w),
        std::process::Stdio::from(err_w),
    );
    // Up and stuck: it never gets to send a request.
    assert_eq!(p.wait_timeout(SECS(2)), None);
    assert_eq!(sim.stats().requests, 0);
    p.signal(libc::SIGINT);
    assert_eq!(p.wait_timeout(Duration::from_millis(500)), None);
    p.signal(libc::SIGINT);
    let status = p.wait_timeout(SECS(1));
    assert!(
        status.is_some(),
        "still running 1 s after the second Ctrl-C"
    );
    assert_eq!(status.unwrap().code(), Some(130));
}

/// `simulate` runs until stopped: Ctrl-C or SIGTERM ends it with its counts and exit 0.
#[test]
fn simulate_stops_on_ctrl_c_or_sigterm_with_its_counts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let p = spawn_in(dir.path(), &["simulate", "--port", "0"], &[]);
        p.wait_for_line(|l| l.starts_with("stats: GET http://127.0.0.1:"), SECS(30));
        p.signal(sig);
        let (status, out, err) = p.finish(SECS(10));
        assert_eq!(status.code(), Some(0), "signal {sig}; stderr:\n{err}");
        assert_eq!(out, "");
        assert!(
            err.ends_with(
                "\nserved 0 requests: 0 ok, 0 rate limited, 0 faults; at most 0 in flight\n"
            ),
            "signal {sig}; stderr:\n{err}"
        );
    }
}
