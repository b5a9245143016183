//! Harness shared by the black-box tests: a simulator on its own runtime thread, the
//! binary's path, and a run helper that captures stdout, stderr and the exit code.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use find_workers_limit::config::scenario::SimulatorSettings;
use find_workers_limit::simulate::{SimServer, Stats};

pub const BIN: &str = env!("CARGO_BIN_EXE_find-workers-limit");

/// A simulator on 127.0.0.1 (ephemeral port), served by its own tokio runtime so that
/// synchronous tests can run the binary against it.
pub struct Sim {
    runtime: tokio::runtime::Runtime,
    server: Option<SimServer>,
}

impl Sim {
    pub fn start(settings: SimulatorSettings) -> Sim {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime
            .block_on(SimServer::start(settings, ([127, 0, 0, 1], 0).into()))
            .expect("simulator starts");
        Sim {
            runtime,
            server: Some(server),
        }
    }

    fn server(&self) -> &SimServer {
        self.server.as_ref().expect("running")
    }

    pub fn port(&self) -> u16 {
        self.server().addr.port()
    }

    pub fn openai_base_url(&self) -> String {
        self.server().openai_base_url()
    }

    pub fn anthropic_base_url(&self) -> String {
        self.server().anthropic_base_url()
    }

    pub fn stats(&self) -> Stats {
        self.server().stats()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.runtime.block_on(s.shutdown());
        }
    }
}

/// Runs the binary in `dir` with `args` and extra environment variables. The process
/// environment's vendor keys are removed so a developer's real key never reaches a test.
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for k in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `workers` of each run in a result file, and the statuses.
pub fn steps_of(result: &serde_json::Value) -> Vec<(u64, String)> {
    result["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["workers"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Reads a result file and checks it against the committed result schema.
pub fn read_result(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/result.schema.json")).unwrap();
    let validator = jsonschema::options().build(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "result file does not match the schema:\n{}",
        errors.join("\n")
    );
    value
}

/// Finds a free TCP port on 127.0.0.1 (bind :0, read it back, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Path of a Debian binary, or a failing test that says how to get it.
pub fn require_binary(name: &str) -> String {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run tests/run, which installs the Debian packages the tests need");
}
