//! A response → an [`Outcome`], by the provider's ordered `classify` rules; plus the
//! facts the probe needs from a response: retry hint, token usage, rate-limit buckets.
//!
//! Nothing here guesses from prose: only the provider file's rules decide. A response
//! no rule matches is `transient` when its status is 5xx, else `fatal`.
//!
//! CONTRACT (filled in by the classify work; signatures are fixed, bodies are not).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;

use crate::config::provider::{BucketKind, Outcome, Provider};

/// One SSE event of a streamed response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SseEvent {
    /// The `event:` name, if one was given.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
    /// `data` parsed as JSON, when it is JSON.
    pub json: Option<serde_json::Value>,
}

/// What the engine saw of one response (or of its failure to arrive).
#[derive(Debug, Clone, Default)]
pub struct ResponseData {
    /// HTTP status; `None` when no response arrived (network error, timeout).
    pub status: Option<u16>,
    pub headers: HeaderMap,
    /// The body as received (capped by the engine).
    pub body: Bytes,
    /// For `text/event-stream` responses: the events, in order.
    pub events: Vec<SseEvent>,
    /// Transport failure: connect error, reset, timeout, truncated body, body too large.
    pub transport_error: Option<String>,
    /// When the response was received (for relative `date` computations).
    pub received_at: Option<SystemTime>,
}

/// The decision about one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub outcome: Outcome,
    /// Name of the rule that decided (or `"unmatched 5xx"`, `"network"`, ...).
    pub rule: String,
    /// The rule's message, for fatal outcomes and reports.
    pub message: Option<String>,
}

/// One rate-limit bucket as read from the headers of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketReading {
    pub kind: BucketKind,
    pub window_seconds: u32,
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    /// Time until the bucket resets, relative to the response.
    pub reset: Option<Duration>,
}

/// Token usage reported by the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// A provider's rules, compiled once (regexes, paths) and shared by every worker.
#[derive(Debug)]
pub struct Classifier {
    _provider: Provider,
}

impl Classifier {
    /// Compiles the provider's rules. Fails only on what validation already rejects.
    pub fn new(provider: &Provider) -> Result<Classifier, String> {
        Ok(Classifier {
            _provider: provider.clone(),
        })
    }

    /// The outcome of one response.
    pub fn classify(&self, _resp: &ResponseData) -> Classified {
        unimplemented!("classify")
    }

    /// The retry hint of a response: the first valid `retry_hints` source, else the
    /// latest reset of an exhausted bucket (remaining 0). Never negative.
    pub fn retry_hint(&self, _resp: &ResponseData) -> Option<Duration> {
        unimplemented!("retry_hint")
    }

    /// Token usage (plain body or SSE events).
    pub fn usage(&self, _resp: &ResponseData) -> Usage {
        unimplemented!("usage")
    }

    /// The provider's rate-limit buckets as this response reports them.
    pub fn buckets(&self, _resp: &ResponseData) -> Vec<BucketReading> {
        unimplemented!("buckets")
    }

    /// The response's rate-limit and retry headers (the names the provider file lists),
    /// for the report.
    pub fn rate_limit_headers(&self, _resp: &ResponseData) -> BTreeMap<String, String> {
        unimplemented!("rate_limit_headers")
    }
}
