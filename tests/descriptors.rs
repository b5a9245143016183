//! The table of file descriptors is grown before the runtime starts its threads: in a
//! process with more than one thread, each time the kernel doubles the table it waits for
//! an RCU grace period, and a step that opened hundreds of connections at once stalled
//! there (15 ms of a 2,560-request step at 256 workers). `FDSize` in `/proc/PID/status` is
//! the table's size; it only ever grows.
//!
//! The open-file limit: a soft limit below what the largest step needs is raised toward
//! the hard limit; where even that is too low, a probe stops before the first step whose
//! connections would not fit, instead of running it with connections that fail to open.

mod common;

use std::time::Duration;

use common::*;

/// The table's size in `/proc/PID/status`.
fn fd_table(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .expect("FDSize in /proc/PID/status")
        .trim()
        .parse()
        .unwrap()
}

/// This test's open-file limit, which the binary inherits.
fn open_file_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

/// The table that holds descriptor `wanted - 1`, within the hard open-file limit the
/// binary inherits from this test (it raises its soft limit up to that): the kernel sizes
/// tables in powers of two.
fn table_for(wanted: u64) -> u64 {
    wanted.min(open_file_limit().rlim_max).next_power_of_two()
}

/// `simulate` makes room for 4,032 connections and 64 other descriptors before it
/// listens.
#[test]
fn simulate_grows_its_descriptor_table_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn_in(dir.path(), &["simulate", "--port", "0"], &[]);
    p.wait_for_line(
        |l| l.starts_with("stats: GET http://127.0.0.1:"),
        Duration::from_secs(30),
    );
    assert_eq!(fd_table(p.pid()), table_for(4096));
    p.signal(libc::SIGINT);
    let (status, _, err) = p.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{err}");
}

/// A probe makes room for its largest step's connections, twice over when the
/// simulator runs in the same process (its side of each connection is a descriptor too),
/// and 64 other descriptors: 2 × 1,000 + 64 → a table of 4,096.
#[test]
fn a_probe_grows_its_descriptor_table_for_its_largest_step() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slow.yaml"),
        "name: slow\nprovider: simulated\nmodel: sim-gpt\nmin_output_tokens: 10\n\
         max_tokens: 20\nsimulator:\n  ttft_ms: 60000\n",
    )
    .unwrap();
    let p = spawn_in(
        dir.path(),
        &["run", "slow.yaml", "--max-workers", "1000"],
        &[],
    );
    p.wait_for_line(
        |l| l.contains("simulator listening on"),
        Duration::from_secs(30),
    );
    assert_eq!(fd_table(p.pid()), table_for(2064));
    p.signal(libc::SIGINT);
    p.finish(Duration::from_secs(10));
}

/// `cmd` with the open-file limit set to `soft` (and `hard`, if given) before the binary
/// starts.
fn with_open_files(
    mut cmd: std::process::Command,
    soft: u64,
    hard: Option<u64>,
) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard.unwrap_or(open_file_limit().rlim_max),
    };
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// `run demo` (a cap of 24 in flight; the answer is 21) under [`with_open_files`].
fn demo_with_open_files(
    dir: &std::path::Path,
    soft: u64,
    hard: Option<u64>,
) -> std::process::Output {
    let cmd = command_in(dir, &["run", "demo", "--output-file", "r.json"], &[]);
    with_open_files(cmd, soft, hard)
        .output()
        .expect("the binary runs")
}

/// `simulate` under a hard limit of 100 says first how many connections it can hold (100
/// less 64 for other descriptors), and serves.
#[test]
fn simulate_says_how_many_connections_its_open_file_limit_allows() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let cmd = command_in(dir.path(), &["simulate", "--port", "0"], &[]);
    let mut child = with_open_files(cmd, 100, Some(100))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok);
    let second = lines.next().and_then(Result::ok);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        first.as_deref(),
        Some(
            "warning: the open-file limit is 100 (ulimit -n; hard limit 100): this simulator \
             holds at most 36 connections at once; more wait in the listen queue until one \
             closes"
        )
    );
    let second = second.unwrap_or_default();
    assert!(second.contains("http://127.0.0.1:"), "{second}");
}

/// A soft limit of 50 under a higher hard limit is raised to what the probe needs: the
/// step at 27 workers (54 sockets with the in-process simulator, 118 descriptors with the
/// margin for others) runs, and the answer is the one without a limit.
#[test]
fn a_low_soft_open_file_limit_is_raised_for_the_probe() {
    let limit = open_file_limit();
    assert!(
        limit.rlim_max >= 264,
        "this test needs a hard open-file limit of at least 264, not {}",
        limit.rlim_max
    );
    let dir = tempfile::tempdir().unwrap();
    let out = demo_with_open_files(dir.path(), 50, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "21\n");
    assert!(
        !stderr(&out).contains("open-file limit"),
        "{}",
        stderr(&out)
    );
}

/// Where even the hard limit is too low, the probe does not run a step whose connections
/// would not fit (they would fail to open and the step would pass with fewer workers than
/// it claims, or the simulator could not accept them and the step would hang until the
/// timeout): it says so at the start, stops before the step at 27 workers with what
/// steps 3, 6, 12 and 18 proved, and exits 6.
#[test]
fn a_probe_stops_before_a_step_beyond_the_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo_with_open_files(dir.path(), 100, Some(100));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert_eq!(stdout(&out), "18\n");
    assert_eq!(
        err.lines().next(),
        Some(
            "warning: the open-file limit is 100 (ulimit -n; hard limit 100): room for 18 \
             workers at once, not the 100 of --max-workers; the probe stops before a larger step"
        )
    );
    let error = "the step at 27 workers needs 118 open files, more than the open-file limit \
                 of 100 (ulimit -n; hard limit 100): raise the limit to 118 or lower \
                 --max-workers; stopping; proven so far: 18 workers";
    assert_eq!(err.lines().last(), Some(format!("error: {error}").as_str()));
    let result = read_result(&dir.path().join("r.json"));
    assert_eq!(result["outcome"], "open_file_limit");
    assert_eq!(result["recommended_workers"], 18);
    assert_eq!(result["error"], error);
    assert_eq!(
        steps_of(&result),
        [3, 6, 12, 18].map(|w| (w, "passed".to_string()))
    );
}
