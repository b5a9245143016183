//! The load engine: one step = N prompts through exactly W concurrent workers, each
//! response classified by the provider's rules. The engine decides nothing about what to
//! test next (that is the planner's job) and has no policy beyond one step.
//!
//! # Design
//! - **One HTTP/1.1 connection per worker**, not a shared pool. A step is W workers, each
//!   a task that owns one keep-alive connection ([`hyper::client::conn::http1`]) and pulls
//!   prompt indices from a shared atomic counter. This is what oha does, and for the same
//!   reasons: concurrency is exactly W by construction (one worker, one connection, one
//!   request at a time), there is no pool lock on the hot path (hyper-util's legacy
//!   `Client` checks connections in and out of a mutex-guarded pool on every request),
//!   and a broken connection is simply reopened by its worker. The route (direct, CONNECT
//!   tunnel through a proxy, plain-http proxy) and TLS are decided once in
//!   [`Engine::new`] (see `connect.rs`), since every request goes to the same URL.
//! - The request is rendered once: method, URI, headers and body bytes are prepared in
//!   [`Engine::new`] and cloned per request (the body is a refcounted [`Bytes`]).
//! - Each worker keeps its own records and readings; they are merged once at the end of
//!   the step, so workers share nothing but a few atomics.
//! - **First request alone.** Until one response of this engine was accepted (success
//!   or rate limited), the first worker sends the step's first prompt alone and the
//!   others wait for it. A bad key or an exhausted quota then costs exactly one request,
//!   not W of them. After that, steps start all workers at once.

mod connect;
mod worker;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONTENT_LENGTH, HOST, PROXY_AUTHORIZATION, USER_AGENT,
};
use http::{HeaderMap, Uri};
use tokio_util::sync::CancellationToken;

use crate::classify::{BucketReading, Classifier};
use crate::config::provider::{Method, Outcome};
use crate::template::RenderedRequest;

pub use connect::ProxySettings;

/// How the engine sends requests. Built once per probe.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The request sent for every prompt (identical bytes each time).
    pub request: RenderedRequest,
    pub classifier: Arc<Classifier>,
    /// Whether the request asks for a stream (SSE).
    pub stream: bool,
    pub connect_timeout: Duration,
    /// Total time for one attempt, body included.
    pub request_timeout: Duration,
    /// Retries of transient outcomes per prompt (default 3).
    pub max_retries: u32,
    /// First backoff; doubled per retry, full jitter.
    pub retry_base_delay: Duration,
    /// Cap of one backoff or honoured retry hint between retries.
    pub retry_max_delay: Duration,
    /// Bodies larger than this are cut and the attempt counts as a transport failure.
    pub max_body_bytes: usize,
    /// Extra CA certificate (PEM) to trust besides the system roots.
    pub ca_cert: Option<PathBuf>,
    /// One line per request on stderr, auth redacted.
    pub verbose: bool,
    /// The proxy to go through; the CLI passes [`ProxySettings::from_env`].
    pub proxy: ProxySettings,
    /// Where verbose lines go (default: stderr).
    pub log: LogSink,
    /// Called with the final outcome of every prompt as it finishes (progress display).
    pub on_prompt: PromptHook,
}

/// A callback for each finished prompt; the default does nothing.
#[derive(Clone, Default)]
pub struct PromptHook(Option<Arc<dyn Fn(Outcome) + Send + Sync>>);

impl PromptHook {
    pub fn new(f: impl Fn(Outcome) + Send + Sync + 'static) -> PromptHook {
        PromptHook(Some(Arc::new(f)))
    }

    pub fn call(&self, outcome: Outcome) {
        if let Some(f) = &self.0 {
            f(outcome)
        }
    }
}

impl fmt::Debug for PromptHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "PromptHook(set)"
        } else {
            "PromptHook(none)"
        })
    }
}

impl EngineConfig {
    /// The defaults of the design (retries 3, backoff 500 ms to 8 s, connect 10 s,
    /// request 300 s, body cap 16 MiB, proxy from the environment, log to stderr).
    pub fn new(
        request: RenderedRequest,
        classifier: Arc<Classifier>,
        stream: bool,
    ) -> EngineConfig {
        EngineConfig {
            request,
            classifier,
            stream,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(8),
            max_body_bytes: 16 * 1024 * 1024,
            ca_cert: None,
            verbose: false,
            proxy: ProxySettings::from_env(),
            log: LogSink::stderr(),
            on_prompt: PromptHook::default(),
        }
    }
}

/// Where verbose lines are written: one call per line, without the newline.
#[derive(Clone)]
pub struct LogSink(Arc<dyn Fn(&str) + Send + Sync>);

impl LogSink {
    /// Standard error (write errors are ignored: a closed stderr must not fail a probe).
    pub fn stderr() -> LogSink {
        LogSink(Arc::new(|line: &str| {
            use std::io::Write;
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }))
    }

    /// Any function, e.g. one that collects lines in a test.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> LogSink {
        LogSink(Arc::new(f))
    }

    pub fn write(&self, line: &str) {
        (self.0)(line)
    }
}

impl Default for LogSink {
    fn default() -> LogSink {
        LogSink::stderr()
    }
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogSink")
    }
}

/// What one step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSpec {
    /// Concurrent workers: exactly this many requests in flight, never more.
    pub workers: u32,
    /// Prompts to send (each retried up to `max_retries` on transient outcomes).
    pub prompts: u32,
    /// When set, workers keep taking prompts until at least this long has passed
    /// (and at least `prompts` were sent) — unless a prompt was rate limited: the step
    /// has failed then, and it ends once `prompts` were sent.
    pub min_duration: Option<Duration>,
    /// A hard ceiling on the prompts this step sends, whatever `min_duration` says (the
    /// probe's spend caps). `None`: no ceiling beyond `prompts` and `min_duration`.
    pub max_prompts: Option<u32>,
}

/// The fate of one prompt, after its retries.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRecord {
    /// Final outcome: success, rate_limited, fatal, or transient (= failed after retries).
    pub outcome: Outcome,
    /// The rule that decided the final attempt.
    pub rule: Arc<str>,
    /// Status of the final attempt (`None`: no response).
    pub status: Option<u16>,
    /// Latency of the final attempt.
    pub latency: Duration,
    /// Time to first SSE event of the final attempt, when streaming.
    pub ttft: Option<Duration>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Retries spent on this prompt.
    pub retries: u32,
    /// The rule's message, a transport error, or a short raw snippet of an unexpected body.
    pub error: Option<String>,
}

/// Everything measured in one step.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub spec: StepSpec,
    pub started_at: SystemTime,
    pub duration: Duration,
    /// One record per prompt that finished (or was cut by a fatal outcome / Ctrl-C).
    pub prompts: Vec<PromptRecord>,
    /// Set when a fatal outcome stopped the step: the rule's message. No request was
    /// started after it was seen.
    pub fatal: Option<String>,
    /// Cancelled (Ctrl-C) before it finished.
    pub interrupted: bool,
    /// The longest retry hint seen in the step.
    pub retry_hint: Option<Duration>,
    /// Rate-limit headers of the step's last response.
    pub rate_limit_headers: BTreeMap<String, String>,
    /// Buckets as the last response that had them reported them.
    pub buckets: Vec<BucketReading>,
    /// Buckets as the last rate-limited response reported them: which limit refused.
    pub rate_limited_buckets: Vec<BucketReading>,
    /// The most requests that were in flight at once (never above `spec.workers`).
    pub max_in_flight: u32,
}

impl StepResult {
    pub fn count(&self, outcome: Outcome) -> u32 {
        self.prompts.iter().filter(|p| p.outcome == outcome).count() as u32
    }
    pub fn success(&self) -> u32 {
        self.count(Outcome::Success)
    }
    pub fn rate_limited(&self) -> u32 {
        self.count(Outcome::RateLimited)
    }
    /// Prompts that failed after all retries (transient) or fatally.
    pub fn failed(&self) -> u32 {
        self.count(Outcome::Transient) + self.count(Outcome::Fatal)
    }
}

/// Descriptors a process keeps besides its connections (standard streams, the runtime's
/// epoll and wake-up descriptors, files it reads and writes).
const OTHER_DESCRIPTORS: u64 = 64;

/// The open-file limit (`ulimit -n`) of this process, as [`reserve_descriptors`] left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    /// The limit in force (the soft limit).
    pub limit: u64,
    /// The most the process may raise it to (the hard limit).
    pub hard: u64,
}

impl OpenFiles {
    /// Descriptors needed to hold `connections` sockets at once, and the others.
    pub fn needed(connections: u64) -> u64 {
        connections.saturating_add(OTHER_DESCRIPTORS)
    }

    /// The most connections that fit under the limit at once.
    pub fn connections(&self) -> u64 {
        self.limit.saturating_sub(OTHER_DESCRIPTORS)
    }

    /// Whether `connections` sockets (and the others) fit under the limit at once.
    pub fn fits(&self, connections: u64) -> bool {
        Self::needed(connections) <= self.limit
    }
}

/// "1024 (ulimit -n; hard limit 4096)".
impl fmt::Display for OpenFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // RLIM_INFINITY: u64::MAX on Linux, i64::MAX on macOS and the BSDs.
        let show = |n: u64| {
            if n >= i64::MAX as u64 {
                "unlimited".to_string()
            } else {
                n.to_string()
            }
        };
        write!(
            f,
            "{} (ulimit -n; hard limit {})",
            show(self.limit),
            show(self.hard)
        )
    }
}

/// Makes room for `connections` sockets (and a few other descriptors) at once: raises the
/// open-file limit toward its hard limit if it is lower than that, then grows this
/// process's table of descriptors. Call it before the runtime starts its threads. Returns
/// the limit in force, or `None` where there is none to know.
///
/// The limit: a connection the process cannot open fails with "too many open files", and
/// an in-process server that cannot accept leaves its client waiting for its timeout;
/// neither measures the account. The soft limit is often 1,024 while the hard limit is
/// far higher, so it is raised (as Go's runtime does for every program); where even the
/// hard limit is too low, the caller learns it and can say so.
///
/// The table: the kernel doubles it as descriptors are opened, and in a process with more
/// than one thread each doubling waits for an RCU grace period (`synchronize_rcu` in
/// `expand_fdtable`). A step opens all its connections at once, so the first steps to
/// reach 128, 256, 512, … connections stalled while the table grew: 15 ms of a
/// 2,560-request step at 256 workers (54 → 39 ms with the table grown first, oha 40 ms).
/// With one thread the growth waits for nothing, and the table never shrinks.
pub fn reserve_descriptors(connections: u64) -> Option<OpenFiles> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        let wanted = OpenFiles::needed(connections);
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit only reads the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        let files = OpenFiles {
            limit: limit.rlim_cur,
            hard: limit.rlim_max,
        };
        let highest = wanted.min(files.limit).saturating_sub(1);
        if let (Ok(highest), Ok(null)) = (
            libc::c_int::try_from(highest),
            std::fs::File::open("/dev/null"),
        ) {
            // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own to the lowest free
            // number at or above `highest` (growing the table to hold it); the copy is
            // closed at once.
            unsafe {
                let copy = libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest);
                if copy >= 0 {
                    libc::close(copy);
                }
            }
        }
        Some(files)
    }
    #[cfg(not(unix))]
    {
        let _ = connections;
        None
    }
}

/// The engine: the connector, the prepared request and the configuration. Cheap to
/// share (clones share one state).
#[derive(Clone)]
pub struct Engine {
    config: EngineConfig,
    inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("proxy", &self.inner.connector.proxy_label)
            .finish_non_exhaustive()
    }
}

/// What every worker shares for the life of the engine.
struct Inner {
    connector: connect::Connector,
    prepared: Prepared,
    /// `POST https://host/path`, redacted, for verbose lines.
    display: String,
    /// A response of this engine was accepted (success or rate limited): steps no
    /// longer send their first request alone.
    verified: AtomicBool,
    /// What the response heads so far say about the read buffer new connections need.
    heads: HeadSizes,
}

/// The read buffer a connection gets. hyper's default starts at 8 KiB, and a kept-alive
/// connection holds two of them while a response is being classified (hyper reserves a
/// fresh one for its idle read while the response still shares the old): 16 KiB per
/// worker, 32 MB at 2,000 workers, for heads of a few hundred bytes to 2 KB. Once a
/// response head has been seen and it is at most half of [`HeadSizes::SMALL`], new
/// connections read into buffers of that exact size. A head that does not fit (hyper:
/// "message head is too large") switches every new connection back to the default for
/// the rest of the engine's life; its request failed as a transport error and is retried
/// on a new connection like any other.
#[derive(Default)]
struct HeadSizes {
    /// The largest head seen, in bytes (an estimate from above); 0 before the first.
    largest: AtomicUsize,
    /// A head did not fit a small buffer: no more small buffers.
    too_large: AtomicBool,
}

impl HeadSizes {
    const SMALL: usize = 4096;

    /// The exact read buffer size for a new connection; `None` for hyper's default.
    fn read_buffer(&self) -> Option<usize> {
        let largest = self.largest.load(Ordering::Relaxed);
        let small =
            largest != 0 && largest <= Self::SMALL / 2 && !self.too_large.load(Ordering::Relaxed);
        small.then_some(Self::SMALL)
    }

    /// Turns the small buffers off for good if they are on (the head that did not fit
    /// was read into one); true if it did.
    fn turn_off_small(&self) -> bool {
        let was_on = self.read_buffer().is_some();
        if was_on {
            self.too_large.store(true, Ordering::Relaxed);
        }
        was_on
    }

    /// Notes a response head: the status line and every header line, at their longest.
    /// Once the small buffers are off for good there is nothing left to decide.
    fn note(&self, headers: &HeaderMap) {
        const STATUS_LINE: usize = 64;
        if self.too_large.load(Ordering::Relaxed)
            || self.largest.load(Ordering::Relaxed) > Self::SMALL / 2
        {
            return;
        }
        let size = STATUS_LINE
            + headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>()
            + 2;
        if size > self.largest.load(Ordering::Relaxed) {
            self.largest.fetch_max(size, Ordering::Relaxed);
        }
    }
}

/// The request as hyper needs it, built once.
struct Prepared {
    method: http::Method,
    /// Origin form (`/v1/chat/completions`), or absolute form for a plain-http proxy.
    uri: Uri,
    headers: HeaderMap,
    body: Arc<Bytes>,
}

/// A request's body: the prepared bytes, shared. A pointer wide (hyper's `Full<Bytes>` is
/// four): hyper's client keeps the first block of its dispatch channel, 32 request slots,
/// for the life of each connection, so this saves ~0.75 KB per connection, 1.5 MB at
/// 2,000 workers.
pub(crate) struct RequestBody(Option<Arc<Bytes>>);

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let data = self.0.take().filter(|b| !b.is_empty());
        std::task::Poll::Ready(data.map(|b| Ok(hyper::body::Frame::data(Bytes::clone(&b)))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_empty())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

impl Prepared {
    fn request(&self) -> http::Request<RequestBody> {
        let mut req = http::Request::new(RequestBody(Some(Arc::clone(&self.body))));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Header names whose values are credentials: marked sensitive (the same list
/// verbose output and `plan` redact).
use crate::template::SECRET_HEADERS;

impl Engine {
    /// Builds the client (TLS roots, `--ca-cert`, proxy from the environment).
    pub fn new(config: EngineConfig) -> Result<Engine, String> {
        let req = &config.request;
        let target: Uri = req
            .url
            .parse()
            .map_err(|e| format!("invalid URL {}: {e}", req.redact(&req.url)))?;
        match target.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(format!(
                    "URL {} must start with http:// or https://",
                    req.redact(&req.url)
                ))
            }
        }
        let authority = target
            .authority()
            .ok_or_else(|| format!("URL {} has no host", req.redact(&req.url)))?
            .clone();
        let ca_pem = match &config.ca_cert {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read CA certificate {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let (connector, route) = connect::Connector::new(
            &target,
            &config.proxy,
            ca_pem.as_deref(),
            config.connect_timeout,
        )?;

        let uri = if route.absolute_form {
            target.clone()
        } else {
            let pq = target.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            pq.parse::<Uri>()
                .map_err(|e| format!("invalid URL path {}: {e}", req.redact(pq)))?
        };

        let mut headers = HeaderMap::with_capacity(req.headers.len() + 3);
        for (name, value) in &req.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name `{name}`"))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| format!("header `{name}` has a value that is not valid in HTTP"))?;
            if SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                v.set_sensitive(true);
            }
            headers.append(n, v);
        }
        if !headers.contains_key(HOST) {
            // Without userinfo: only host[:port].
            let host = authority
                .as_str()
                .rsplit('@')
                .next()
                .unwrap_or(authority.as_str());
            let v = HeaderValue::from_str(host)
                .map_err(|_| "the URL's host is not a valid header value".to_string())?;
            headers.insert(HOST, v);
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("find-workers-limit/", env!("CARGO_PKG_VERSION"))),
            );
        }
        if let Some(auth) = route.proxy_auth {
            headers.insert(PROXY_AUTHORIZATION, auth);
        }

        let method = match req.method {
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Get => http::Method::GET,
        };
        let body = match req.method {
            Method::Get => Bytes::new(),
            _ => req.body_bytes.clone(),
        };
        if !body.is_empty() && !headers.contains_key(CONTENT_LENGTH) {
            // Set once here rather than inserted by hyper into every request's copy of
            // the headers (which grows that map's allocation per request).
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let display = format!("{} {}", req.method, req.redact(&req.url));
        Ok(Engine {
            inner: Arc::new(Inner {
                connector,
                prepared: Prepared {
                    method,
                    uri,
                    headers,
                    body: Arc::new(body),
                },
                display,
                verified: AtomicBool::new(false),
                heads: HeadSizes::default(),
            }),
            config,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Runs one step. Returns when every prompt is done, a fatal outcome was seen, or
    /// `cancel` fired.
    pub async fn run_step(&self, spec: StepSpec, cancel: CancellationToken) -> StepResult {
        worker::run_step(self, spec, cancel).await
    }

    fn verified(&self) -> bool {
        self.inner.verified.load(Ordering::Acquire)
    }

    fn set_verified(&self) {
        self.inner.verified.store(true, Ordering::Release)
    }

    /// The exact read buffer size for a new connection (`None`: hyper's default).
    fn read_buffer(&self) -> Option<usize> {
        self.inner.heads.read_buffer()
    }

    fn note_head(&self, headers: &HeaderMap) {
        self.inner.heads.note(headers)
    }

    /// A response head was too large for hyper's read buffer: new connections get
    /// hyper's default from now on. The note to add to the error when a small buffer was
    /// in use, `None` otherwise.
    fn head_too_large(&self) -> Option<String> {
        self.inner.heads.turn_off_small().then(|| {
            format!(
                " (larger than the {} KiB read buffer that earlier heads fitted; new \
                 connections read into hyper's growing buffer)",
                HeadSizes::SMALL / 1024
            )
        })
    }
}
