//! The result file is written atomically (temporary file + rename): a failed write
//! leaves no partial file and no temporary file, and an existing result is replaced
//! whole, never rewritten in place.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use find_workers_limit::config::scenario::SimulatorSettings;

fn probe(sim: &Sim, dir: &Path, output: &str, max_workers: &str) -> std::process::Output {
    let base = sim.openai_base_url();
    run_in(
        dir,
        &[
            "--model",
            "sim-gpt",
            "--provider",
            "simulated",
            "--base-url",
            &base,
            "--max-workers",
            max_workers,
            "--min-output-tokens",
            "10",
            "--output-file",
            output,
        ],
        &[],
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn sim() -> Sim {
    Sim::start(SimulatorSettings {
        ttft_ms: Some(10),
        tokens_per_second: Some(0),
        output_tokens: Some(20),
        ..Default::default()
    })
}

#[test]
fn a_failed_write_leaves_no_partial_file() {
    // Slow replies, so the path can be taken while the step runs: the probe checks the
    // path before it sends anything, so the write fails only if it changes meanwhile.
    let sim = Sim::start(SimulatorSettings {
        ttft_ms: Some(1500),
        tokens_per_second: Some(0),
        output_tokens: Some(20),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let base = sim.openai_base_url();
    let mut running = spawn_in(dir.path(), &three_workers(&base, "result.json"), &[]);
    running.wait_for_line(
        |l| l.starts_with("step 1: 3 workers"),
        std::time::Duration::from_secs(20),
    );
    // The path is taken by a directory: the rename fails after the text was written.
    std::fs::create_dir(dir.path().join("result.json")).unwrap();
    let status = running
        .wait_timeout(std::time::Duration::from_secs(30))
        .expect("the probe ends");
    let err = running.stderr_so_far();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().last().unwrap(),
        "error: result.json: cannot write the result file: Is a directory"
    );
    assert_eq!(names(dir.path()), ["result.json"]);
    assert!(dir.path().join("result.json").is_dir());
    assert_eq!(
        std::fs::read_dir(dir.path().join("result.json"))
            .unwrap()
            .count(),
        0
    );

    // A directory that does not exist: refused before anything is sent; nothing created.
    let before = sim.stats().requests;
    let out = probe(&sim, dir.path(), "missing/result.json", "3");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).lines().last().unwrap(),
        "error: missing/result.json: cannot write the result file: no directory missing"
    );
    assert_eq!(sim.stats().requests, before);
    assert_eq!(names(dir.path()), ["result.json"]);
}

#[test]
fn an_existing_result_is_replaced_whole() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let out = probe(&sim, dir.path(), "result.json", "3");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let path = dir.path().join("result.json");
    let first = std::fs::read(&path).unwrap();
    assert_eq!(read_result(&path)["recommended_workers"], 3);
    // A second name for the old file: an in-place rewrite would change it too.
    std::fs::hard_link(&path, dir.path().join("old.json")).unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();

    let out = probe(&sim, dir.path(), "result.json", "6");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read_result(&path)["recommended_workers"], 6);
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
    // The old document is untouched, byte for byte, under its other name.
    assert_eq!(std::fs::read(dir.path().join("old.json")).unwrap(), first);
    assert_eq!(names(dir.path()), ["old.json", "result.json"]);
}

/// A stderr that cannot be written (`2>/dev/full`; a log pipe that went away) loses the
/// progress lines, not the probe: the count, the result file and exit 0 as usual.
#[test]
fn a_full_stderr_loses_the_progress_lines_not_the_result() {
    let sim = Sim::start(SimulatorSettings {
        ttft_ms: Some(10),
        tokens_per_second: Some(0),
        output_tokens: Some(20),
        ..Default::default()
    });
    let base = sim.openai_base_url();
    for verbose in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = three_workers(&base, "r.json");
        if verbose {
            args.push("--verbose");
        }
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let p = spawn_with(
            dir.path(),
            &args,
            &[],
            std::process::Stdio::piped(),
            std::process::Stdio::from(full),
        );
        let (status, out, _) = p.finish(std::time::Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "verbose {verbose}");
        assert_eq!(out, "3\n", "verbose {verbose}");
        let r = read_result(&dir.path().join("r.json"));
        assert_eq!(r["recommended_workers"], 3, "verbose {verbose}");
    }
}

/// A probe of the simulated provider at `base` up to 3 workers, its result in `output`.
fn three_workers<'a>(base: &'a str, output: &'a str) -> Vec<&'a str> {
    vec![
        "--model",
        "sim-gpt",
        "--provider",
        "simulated",
        "--base-url",
        base,
        "--max-workers",
        "3",
        "--min-output-tokens",
        "10",
        "--output-file",
        output,
    ]
}
