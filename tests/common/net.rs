//! Servers and engine configs for the tests: engine configs built from the real provider
//! files, a verbose-line collector, throwaway nginx (TLS or `limit_conn`) and tinyproxy
//! instances on 127.0.0.1 that die with the test, and a canned raw server.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use find_workers_limit::classify::Classifier;
use find_workers_limit::config;
use find_workers_limit::engine::{EngineConfig, LogSink, ProxySettings};
use find_workers_limit::template::{self, Vars};

use super::{free_port, require_binary};

/// An engine config for `provider` (`openai` or `anthropic`, read from `providers/`)
/// against `base_url`, with fast retries (base 5 ms, cap 40 ms), short timeouts, no
/// proxy and no verbose output.
pub fn engine_config(provider: &str, base_url: &str, stream: bool, key: &str) -> EngineConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("providers")
        .join(format!("{provider}.yaml"));
    let p = config::load_provider(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = if provider == "anthropic" {
        "claude-sonnet-4"
    } else {
        "gpt-4o"
    };
    let vars = Vars {
        model: model.into(),
        prompt: "Write a detailed 500-word essay about the history of computing".into(),
        max_tokens: 50,
        api_key: key.into(),
        base_url: base_url.into(),
        stream,
        env: BTreeMap::new(),
    };
    let request = template::render_request(&p, &vars).expect("request renders");
    let classifier = Classifier::new(&p).expect("classifier compiles");
    let mut cfg = EngineConfig::new(request, Arc::new(classifier), stream);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.request_timeout = Duration::from_secs(5);
    cfg.retry_base_delay = Duration::from_millis(5);
    cfg.retry_max_delay = Duration::from_millis(40);
    cfg.proxy = ProxySettings::none();
    cfg.log = LogSink::new(|_| {});
    cfg
}

/// Verbose lines, collected.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn sink(&self) -> LogSink {
        let lines = self.0.clone();
        LogSink::new(move |l| lines.lock().expect("lines").push(l.to_string()))
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("lines").clone()
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `port` accepts connections; panics with `log` after 10 s.
fn wait_listening(port: u16, what: &str, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{what} did not listen on {port}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A throwaway CA and a server certificate for 127.0.0.1 / localhost, made with the
/// `openssl` command line.
pub struct Certs {
    pub ca_pem: PathBuf,
    pub server_pem: PathBuf,
    pub server_key: PathBuf,
}

pub fn make_certs(dir: &Path) -> Certs {
    let openssl = require_binary("openssl");
    let p = |name: &str| dir.join(name);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new(&openssl)
        .args(["req", "-x509"])
        .args(ec)
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem"))
        .args(["-days", "2", "-subj", "/CN=find-workers-limit test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new(&openssl)
        .arg("req")
        .args(ec)
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr"))
        .args(["-subj", "/CN=127.0.0.1"]));
    std::fs::write(
        p("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    run(Command::new(&openssl)
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-CAcreateserial")
        .arg("-out")
        .arg(p("server.pem"))
        .arg("-extfile")
        .arg(p("server.ext")));
    Certs {
        ca_pem: p("ca.pem"),
        server_pem: p("server.pem"),
        server_key: p("server.key"),
    }
}

/// What nginx does in front of the upstream.
pub enum NginxMode {
    /// Terminates TLS with a throwaway CA's certificate (`Nginx::ca_pem`).
    Tls,
    /// Plain http, at most this many requests in flight per client (`limit_conn`), the
    /// excess answered with nginx's own HTML 429 page.
    LimitConn(u32),
}

/// nginx on 127.0.0.1 proxying to a plain-http upstream, as one process (no
/// master/worker split) so that killing it on drop leaves nothing behind.
pub struct Nginx {
    child: Child,
    pub port: u16,
    /// The CA that signed the server certificate (`NginxMode::Tls`).
    pub ca_pem: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(upstream_port: u16, mode: NginxMode) -> Nginx {
        let nginx = require_binary("nginx");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let d = dir.path().display();
        let (listen, extra, ca_pem) = match mode {
            NginxMode::Tls => {
                let certs = make_certs(dir.path());
                (
                    format!("listen 127.0.0.1:{port} ssl;"),
                    format!(
                        "ssl_certificate {};\n  ssl_certificate_key {};",
                        certs.server_pem.display(),
                        certs.server_key.display()
                    ),
                    certs.ca_pem,
                )
            }
            NginxMode::LimitConn(n) => (
                format!("listen 127.0.0.1:{port};"),
                format!("limit_conn perip {n};\n  limit_conn_status 429;"),
                PathBuf::new(),
            ),
        };
        let conf = format!(
            "worker_processes 1;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               limit_conn_zone $binary_remote_addr zone=perip:1m;\n\
               upstream sim {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n\
               server {{\n\
                 {listen}\n  {extra}\n\
                 location / {{ proxy_pass http://sim; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }}\n\
               }}\n\
             }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let mut child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-g")
            // One process (no master/worker split), so killing the child leaves nothing.
            .arg(format!(
                "daemon off; master_process off; pid {d}/nginx.pid;"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        wait_listening(port, "nginx", &mut child, &dir.path().join("error.log"));
        Nginx {
            child,
            port,
            ca_pem,
            dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tinyproxy on 127.0.0.1, allowing CONNECT to one port, logging into its temp dir.
/// Killed on drop.
pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    pub fn start(connect_port: u16) -> Tinyproxy {
        let tinyproxy = require_binary("tinyproxy");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nConnectPort {connect_port}\n\
             LogFile \"{}\"\nLogLevel Info\nMaxClients 64\n",
            log.display()
        );
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let mut child = Command::new(tinyproxy)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        wait_listening(port, "tinyproxy", &mut child, &log);
        Tinyproxy {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 server on 127.0.0.1 that answers with fixed bytes (status line,
/// headers and body, written verbatim) and counts requests. For what the simulator does
/// not serve: oversized bodies, redirects, an answer that changes after the first.
pub struct Canned {
    pub addr: std::net::SocketAddr,
    pub requests: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Canned {
    /// Every request gets `response`.
    pub async fn start(response: Vec<u8>) -> Canned {
        Canned::sequence(vec![response], Duration::ZERO).await
    }

    /// The n-th request (from 0) gets `responses[n]`, the last one for every request
    /// after; each answer is written `delay` after its request arrived.
    pub async fn sequence(responses: Vec<Vec<u8>>, delay: Duration) -> Canned {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        assert!(!responses.is_empty());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = requests.clone();
        let responses = Arc::new(responses);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = counter.clone();
                let responses = responses.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: the head, then content-length bytes of body.
                        let head_end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + len);
                        let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
                        let response = &responses[n.min(responses.len() - 1)];
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        if sock.write_all(response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Canned {
            addr,
            requests,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A complete response with a JSON body and a content-length.
pub fn json_response(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}
