//! The load engine: one step = N prompts through exactly W concurrent workers, each
//! response classified by the provider's rules. The engine decides nothing about what to
//! test next (that is the planner's job) and has no policy beyond one step.
//!
//! CONTRACT (filled in by the engine work; the types are the interface the probe uses).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::classify::{BucketReading, Classifier};
use crate::config::provider::Outcome;
use crate::template::RenderedRequest;

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
}

/// What one step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSpec {
    /// Concurrent workers: exactly this many requests in flight, never more.
    pub workers: u32,
    /// Prompts to send (each retried up to `max_retries` on transient outcomes).
    pub prompts: u32,
    /// When set, workers keep taking prompts until at least this long has passed
    /// (and at least `prompts` were sent).
    pub min_duration: Option<Duration>,
}

/// The fate of one prompt, after its retries.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRecord {
    /// Final outcome: success, rate_limited, fatal, or transient (= failed after retries).
    pub outcome: Outcome,
    /// The rule that decided the final attempt.
    pub rule: String,
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

/// The engine: a hyper client and the configuration. Cheap to share.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
}

impl Engine {
    /// Builds the client (TLS roots, `--ca-cert`, proxy from the environment).
    pub fn new(config: EngineConfig) -> Result<Engine, String> {
        Ok(Engine { config })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Runs one step. Returns when every prompt is done, a fatal outcome was seen, or
    /// `cancel` fired.
    pub async fn run_step(&self, _spec: StepSpec, _cancel: CancellationToken) -> StepResult {
        unimplemented!("run_step")
    }
}
