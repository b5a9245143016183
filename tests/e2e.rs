//! The whole binary against real servers on 127.0.0.1: the simulator, and nginx as a rate
//! limiter nobody here wrote. Exact step sequences and recommended counts.

mod common;

use std::process::{Child, Command};

use common::*;
use find_workers_limit::config::scenario::SimulatorSettings;

fn concurrency_cap(n: u32) -> SimulatorSettings {
    SimulatorSettings {
        max_concurrency: Some(n),
        ttft_ms: Some(50),
        tokens_per_second: Some(1000),
        output_tokens: Some(100),
        ..Default::default()
    }
}

fn step_list(v: &[(u64, &str)]) -> Vec<(u64, String)> {
    v.iter().map(|(w, s)| (*w, s.to_string())).collect()
}

#[test]
fn openai_flavor_cap_24_recommends_21() {
    let sim = Sim::start(concurrency_cap(24));
    let dir = tempfile::tempdir().unwrap();
    let base = sim.openai_base_url();
    let out = run_in(
        dir.path(),
        &[
            "--model",
            "gpt-4o",
            "--provider",
            "openai",
            "--base-url",
            &base,
            "--output-file",
            "result.json",
            "--min-output-tokens",
            "50",
        ],
        &[("OPENAI_API_KEY", "sk-test-e2e")],
    );
    assert_eq!(stdout(&out), "21\n", "stderr:\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    let result = read_result(&dir.path().join("result.json"));
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
    let out = run_in(
        dir.path(),
        &[
            "--model",
            "claude-sonnet-4",
            "--provider",
            "anthropic",
            "--base-url",
            &base,
            "--output-file",
            "r.json",
            "--min-output-tokens",
            "50",
        ],
        &[("ANTHROPIC_API_KEY", "sk-ant-test-e2e")],
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

/// nginx on 127.0.0.1 with `limit_conn 10` and `limit_conn_status 429`, proxying to `upstream`.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn limit_conn(limit: u32, upstream_port: u16) -> Nginx {
        let nginx = require_binary("nginx");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               limit_conn_zone $binary_remote_addr zone=perip:1m;\n\
               upstream sim {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    limit_conn perip {limit};\n    limit_conn_status 429;\n\
                 location / {{ proxy_pass http://sim; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .args([
                "-p",
                &d.to_string(),
                "-c",
                &format!("{d}/nginx.conf"),
                "-g",
                // One process (no master/worker split), so killing the child leaves
                // nothing behind holding the test's pipes.
                "daemon off; master_process off;",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts");
        // Owned from here on: Drop kills and reaps it whatever happens below.
        let server = Nginx {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(server._dir.path().join("error.log")).unwrap_or_default()
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let nginx = Nginx::limit_conn(10, sim.port());
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}/v1", nginx.port);
    let out = run_in(
        dir.path(),
        &[
            "--model",
            "gpt-4o",
            "--provider",
            "openai",
            "--base-url",
            &base,
            "--output-file",
            "r.json",
            "--cooldown",
            "1s",
            "--min-output-tokens",
            "50",
        ],
        &[("OPENAI_API_KEY", "sk-test-nginx")],
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
