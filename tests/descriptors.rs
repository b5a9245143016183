//! The table of file descriptors is grown before the runtime starts its threads: in a
//! process with more than one thread, each time the kernel doubles the table it waits for
//! an RCU grace period, and a step that opened hundreds of connections at once stalled
//! there (15 ms of a 2,560-request step at 256 workers). `FDSize` in `/proc/PID/status` is
//! the table's size; it only ever grows.

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

/// The table that holds descriptor `wanted - 1`, within the open-file limit the binary
/// inherits from this test: the kernel sizes tables in powers of two.
fn table_for(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    wanted.min(limit.rlim_cur).next_power_of_two()
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
