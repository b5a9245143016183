//! Harness shared by the black-box tests: a simulator on its own runtime thread, the
//! binary's path, and a run helper that captures stdout, stderr and the exit code.
#![allow(dead_code)]

pub mod net;

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

/// A simulated account that allows `n` requests in flight, with ~150 ms replies.
pub fn concurrency_cap(n: u32) -> SimulatorSettings {
    SimulatorSettings {
        max_concurrency: Some(n),
        ttft_ms: Some(50),
        tokens_per_second: Some(1000),
        output_tokens: Some(100),
        ..Default::default()
    }
}

/// Runs the binary in `dir` with `args` and extra environment variables. The process
/// environment's vendor keys are removed so a developer's real key never reaches a test.
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command_in(dir, args, env)
        .output()
        .expect("the binary runs")
}

/// The command [`run_in`] runs, for tests that spawn it themselves.
pub fn command_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
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
    cmd
}

/// Runs a probe of `model` through `provider` at `base` with `key` (variable, value) set,
/// writing `r.json` and accepting 50-token answers, plus `extra` flags.
pub fn probe_at(
    dir: &Path,
    provider: &str,
    model: &str,
    base: &str,
    key: (&str, &str),
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "--model",
        model,
        "--provider",
        provider,
        "--base-url",
        base,
        "--output-file",
        "r.json",
        "--min-output-tokens",
        "50",
    ];
    args.extend_from_slice(extra);
    let env: Vec<(&str, &str)> = if key.0.is_empty() { vec![] } else { vec![key] };
    run_in(dir, &args, &env)
}

/// A probe of `gpt-4o` through the built-in openai file against a simulator that takes
/// `cap` requests at a time ([`concurrency_cap`]); the result file is `r.json` in `dir`.
pub struct CapProbe {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub out: Output,
}

pub fn probe_openai_at_cap(cap: u32, extra: &[&str]) -> CapProbe {
    let sim = Sim::start(concurrency_cap(cap));
    let dir = tempfile::tempdir().unwrap();
    let base = sim.openai_base_url();
    let out = probe_at(
        dir.path(),
        "openai",
        "gpt-4o",
        &base,
        ("OPENAI_API_KEY", "sk-test-cap"),
        extra,
    );
    CapProbe { sim, dir, out }
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

/// The binary running in the background, its stderr read line by line as it comes (so a
/// test can wait for a state, e.g. "cooling down"), its stdout collected.
pub struct Running {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// Starts the binary in `dir`; stdout and stderr piped.
pub fn spawn_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    spawn_with_stdout(dir, args, env, std::process::Stdio::piped())
}

/// [`spawn_in`] with a given stdout (e.g. a pipe nobody reads).
pub fn spawn_with_stdout(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdout: std::process::Stdio,
) -> Running {
    spawn_with(dir, args, env, stdout, std::process::Stdio::piped())
}

/// [`spawn_in`] with a given stdout and stderr; stderr is read line by line only when
/// it is `Stdio::piped()`.
pub fn spawn_with(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> Running {
    use std::io::{BufRead, Read};
    let mut child = command_in(dir, args, env)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("the binary starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let all = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = all.clone();
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
    }
    let stdout = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        })
    });
    Running {
        child,
        lines: rx,
        stderr: all,
        stdout,
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line for which `pred` holds; panics after `timeout` (or when
    /// stderr closes) with everything the binary printed.
    pub fn wait_for_line(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: std::time::Duration,
    ) -> String {
        let until = std::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no such line within {timeout:?}; stderr so far:\n{}",
                    self.stderr_so_far()
                ),
            }
        }
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal (`libc::SIGINT`, ...).
    pub fn signal(&self, sig: i32) {
        let rc = unsafe { libc::kill(self.pid() as i32, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Peak resident memory so far in KiB (`VmHWM` of /proc/PID/status), while the
    /// process lives.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Exit status within `timeout`, or `None` (the process is then still running).
    pub fn wait_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits for the exit (killing the process after `timeout`, which fails the test);
    /// returns the status, stdout and the whole stderr.
    pub fn finish(
        mut self,
        timeout: std::time::Duration,
    ) -> (std::process::ExitStatus, String, String) {
        let status = match self.wait_timeout(timeout) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the binary did not end within {timeout:?}; stderr:\n{}",
                    self.stderr_so_far()
                );
            }
        };
        let out = self
            .stdout
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        // Give the stderr reader a moment to drain what the process wrote last.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self
            .lines
            .recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
        {}
        (
            status,
            String::from_utf8_lossy(&out).into_owned(),
            self.stderr_so_far(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
