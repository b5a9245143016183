//! A response → an [`Outcome`], by the provider's ordered `classify` rules; plus the
//! facts the probe needs from a response: retry hint, token usage, rate-limit buckets.
//!
//! Nothing here guesses from prose: only the provider file's rules decide.
//!
//! # How a response is decided
//! - No response at all (`status` is `None`): `transient`, rule `network`, the
//!   transport error as the message.
//! - Otherwise the rules are tried in file order and the first whose every condition
//!   holds decides. `status` and `header` look at the status line and headers; `json`
//!   at the plain body parsed as JSON (a body that is not JSON matches no `json`
//!   condition, not even `exists: false`); `body_regex` at the raw body; `sse` at the
//!   events of a stream (any one event must fit).
//! - No rule matched: `transient` (`unmatched 5xx`) for a 5xx status, else `fatal`
//!   (`unmatched`) with the status and a body snippet in the message.
//! - A response that arrived but was cut (`transport_error` set together with a
//!   `status`: a truncated body, a stream reset, a stall): what did arrive is real
//!   evidence (a 429 status line, an error event inside the stream), so the rules are
//!   tried, but never a `success` rule: an incomplete answer is not an answer. When no
//!   other rule matches it is a `network` failure.
//!
//! # Cost
//! Classification runs on every response, thousands a second: regexes, JSON paths and
//! header names are compiled once in [`Classifier::new`], checks run cheapest first
//! (status, headers, events, then body), and the body is parsed as JSON at most once per
//! response, and only when a rule that reaches it needs it. [`Classifier::inspect`]
//! shares that one parse between the outcome, the usage and the retry hint.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, DATE};
use http::HeaderMap;
use serde_json::Value;

use crate::config::provider::{BucketKind, HeaderMatch, JsonMatch, Outcome, Provider, TimeFormat};
use crate::jsonpath::{JsonPath, Parsed, PathSet, SetPath};

mod hints;
mod sse;

pub use hints::{parse_http_date, parse_rfc3339, parse_time_value, MAX_HINT};
pub use sse::{parse_sse, SseParser};

/// Longest body snippet kept in messages, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// One SSE event of a streamed response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SseEvent {
    /// The `event:` name, if one was given.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
    /// `data` parsed as JSON, when it is a JSON object or array (`[DONE]` is not): the
    /// whole of it from [`parse_sse`], what the provider's paths read from
    /// [`Classifier::parse_sse`].
    pub json: Option<Parsed>,
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
    /// Name of the rule that decided (or `"unmatched 5xx"`, `"network"`, ...); shared
    /// with the rule (every response gets one: a clone is a count, not a copy).
    pub rule: Arc<str>,
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

/// The outcome, usage and retry hint of one response, from one parse of its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub classified: Classified,
    pub usage: Usage,
    pub retry_hint: Option<Duration>,
}

/// A provider's rules, compiled once (regexes, paths) and shared by every worker.
#[derive(Debug)]
pub struct Classifier {
    provider: String,
    rules: Vec<CompiledRule>,
    /// For each status a rule names, the rules that can match it (that name it or no
    /// status), in file order; sorted by status. A 200 is tried against a handful of
    /// rules instead of all of them.
    rules_by_status: Vec<(u16, Box<[usize]>)>,
    /// The rules that can match any other status: those that name none.
    rules_for_other_statuses: Box<[usize]>,
    hints: Vec<CompiledHint>,
    buckets: Vec<CompiledBucket>,
    usage: UsageFinder,
    stream_usage: UsageFinder,
    stream_done: Option<String>,
    /// Every header named by the buckets and retry hints, in file order, no repeats.
    listed_headers: Vec<HeaderName>,
    /// Bit n set: some listed name is n bytes long (bit 63: 63 or longer). Most
    /// response headers are ruled out by their length alone.
    listed_lengths: u64,
    /// Every path read in a plain body (rules, usage, hints): a body is parsed only as
    /// far as they reach.
    body_paths: PathSet,
    /// Every path read in an event of a stream (rules' `sse`, stream usage).
    event_paths: Arc<PathSet>,
}

impl Classifier {
    /// Compiles the provider's rules. Fails only on what validation already rejects.
    pub fn new(provider: &Provider) -> Result<Classifier, String> {
        let mut body_paths = PathSet::default();
        let mut event_paths = PathSet::default();
        let rules = provider
            .classify
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                CompiledRule::new(i, rule, &mut body_paths, &mut event_paths)
                    .map_err(|e| format!("classify rule {}: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hints = provider
            .rate_limits
            .retry_hints
            .iter()
            .map(|hint| {
                let from = match (&hint.header, &hint.json, &hint.body_regex) {
                    (Some(h), None, None) => HintFrom::Header(header_name(h)?),
                    (None, Some(p), None) => {
                        HintFrom::Json(body_paths.insert(&JsonPath::parse(p)?))
                    }
                    (None, None, Some(re)) => {
                        let re = compile_regex(re)?;
                        if re.captures_len() < 2 {
                            return Err(
                                "`body_regex` needs a capture group `( )` around the value"
                                    .to_string(),
                            );
                        }
                        HintFrom::BodyRegex(re)
                    }
                    _ => {
                        return Err("give exactly one of `header`, `json`, `body_regex`".to_string())
                    }
                };
                Ok(CompiledHint {
                    from,
                    format: hint.format,
                })
            })
            .enumerate()
            .map(|(i, r)| r.map_err(|e: String| format!("retry hint {}: {e}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        let buckets = provider
            .rate_limits
            .buckets
            .iter()
            .map(|b| {
                let name = |h: &Option<String>| h.as_deref().map(header_name).transpose();
                Ok(CompiledBucket {
                    kind: b.kind,
                    window_seconds: b.window_seconds,
                    limit: name(&b.limit)?,
                    remaining: name(&b.remaining)?,
                    reset: name(&b.reset)?,
                    reset_format: b.reset_format,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut listed_headers: Vec<HeaderName> = Vec::new();
        let named = hints
            .iter()
            .filter_map(|h| match &h.from {
                HintFrom::Header(name) => Some(name),
                _ => None,
            })
            .chain(
                buckets
                    .iter()
                    .flat_map(|b| [&b.limit, &b.remaining, &b.reset].into_iter().flatten()),
            );
        for name in named {
            if !listed_headers.contains(name) {
                listed_headers.push(name.clone());
            }
        }
        let usage = UsageFinder::new(
            &provider.response.usage.input_tokens,
            &provider.response.usage.output_tokens,
            &mut body_paths,
        )?;
        let stream_usage = UsageFinder::new(
            &provider.response.stream_usage.input_tokens,
            &provider.response.stream_usage.output_tokens,
            &mut event_paths,
        )?;
        let event_paths = Arc::new(event_paths);
        let can_match = |status: Option<u16>| -> Box<[usize]> {
            (0..rules.len())
                .filter(|&i| {
                    let named = &rules[i].statuses;
                    named.is_empty() || status.is_some_and(|s| named.contains(&s))
                })
                .collect()
        };
        let mut statuses: Vec<u16> = rules.iter().flat_map(|r| r.statuses.clone()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        let rules_by_status = statuses
            .into_iter()
            .map(|s| (s, can_match(Some(s))))
            .collect();
        let rules_for_other_statuses = can_match(None);
        Ok(Classifier {
            provider: provider.name.clone(),
            rules,
            rules_by_status,
            rules_for_other_statuses,
            hints,
            buckets,
            usage,
            stream_usage,
            stream_done: provider.response.stream_done.clone(),
            listed_lengths: listed_headers
                .iter()
                .fold(0, |bits, n| bits | length_bit(n)),
            listed_headers,
            body_paths,
            event_paths,
        })
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Whether this event is the provider's end-of-stream marker (`response.stream_done`,
    /// OpenAI `[DONE]`).
    pub fn is_stream_done(&self, event: &SseEvent) -> bool {
        self.stream_done
            .as_deref()
            .is_some_and(|done| event.data.trim() == done)
    }

    /// The events of a `text/event-stream` body, each event's JSON parsed as far as
    /// this provider's rules and stream usage read it.
    pub fn parse_sse(&self, body: &[u8]) -> Vec<SseEvent> {
        SseParser::keeping(Arc::clone(&self.event_paths)).parse(body)
    }

    /// The outcome of one response.
    pub fn classify(&self, resp: &ResponseData) -> Classified {
        self.classify_body(&self.body(resp))
    }

    /// The retry hint of a response: the first valid `retry_hints` source, else the
    /// latest reset of an exhausted bucket (remaining 0). Never negative.
    pub fn retry_hint(&self, resp: &ResponseData) -> Option<Duration> {
        self.retry_hint_body(&self.body(resp))
    }

    /// Token usage (plain body or SSE events).
    pub fn usage(&self, resp: &ResponseData) -> Usage {
        self.usage_body(&self.body(resp))
    }

    /// Outcome, usage and retry hint together, parsing the body at most once. The
    /// retry hint is looked for only in a response that is not a success (the reset
    /// time a successful answer reports is not an instruction to wait).
    pub fn inspect(&self, resp: &ResponseData) -> Inspection {
        let body = self.body(resp);
        let classified = self.classify_body(&body);
        let retry_hint = if classified.outcome == Outcome::Success {
            None
        } else {
            self.retry_hint_body(&body)
        };
        Inspection {
            classified,
            usage: self.usage_body(&body),
            retry_hint,
        }
    }

    /// Whether the response carries any header that the provider's buckets or retry
    /// hints name. Compares the response's names with the listed ones instead of
    /// looking each listed name up (no hashing; this runs on every response).
    pub fn has_rate_limit_headers(&self, headers: &HeaderMap) -> bool {
        headers
            .keys()
            .any(|k| self.listed_lengths & length_bit(k) != 0 && self.listed_headers.contains(k))
    }

    /// The provider's rate-limit buckets as this response reports them (buckets with
    /// none of their headers present are left out).
    pub fn buckets(&self, resp: &ResponseData) -> Vec<BucketReading> {
        let (date, now) = clocks(resp);
        self.buckets_at(resp, date, now)
    }

    /// The response's rate-limit and retry headers (the names the provider file lists),
    /// for the report.
    pub fn rate_limit_headers(&self, resp: &ResponseData) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for name in &self.listed_headers {
            let values: Vec<Cow<str>> = resp
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect();
            if !values.is_empty() {
                out.insert(name.as_str().to_string(), values.join(", "));
            }
        }
        out
    }

    fn body<'a>(&'a self, resp: &'a ResponseData) -> Body<'a> {
        Body {
            resp,
            paths: &self.body_paths,
            json: OnceCell::new(),
        }
    }

    fn classify_body(&self, body: &Body) -> Classified {
        let resp = body.resp;
        let Some(status) = resp.status else {
            return network(resp);
        };
        let incomplete = resp.transport_error.is_some();
        let candidates = match self
            .rules_by_status
            .binary_search_by_key(&status, |(s, _)| *s)
        {
            Ok(at) => &self.rules_by_status[at].1,
            Err(_) => &self.rules_for_other_statuses,
        };
        for rule in candidates.iter().map(|&i| &self.rules[i]) {
            if incomplete && rule.outcome == Outcome::Success {
                continue;
            }
            if let Some(evidence) = rule.matches(status, body) {
                let message = match (&rule.message, rule.outcome) {
                    (Some(m), _) => Some(m.clone()),
                    (None, Outcome::Success) => None,
                    (None, _) => Some(with_snippet(
                        format!("HTTP {status} ({})", rule.name),
                        evidence.snippet(resp),
                    )),
                };
                return Classified {
                    outcome: rule.outcome,
                    rule: rule.name.clone(),
                    message,
                };
            }
        }
        if incomplete {
            return network(resp);
        }
        let what = format!(
            "HTTP {status} matched no classify rule of provider {}",
            self.provider
        );
        let snippet = Evidence::Body.snippet(resp);
        let message = Some(format!(
            "{what}; body: {}",
            if snippet.is_empty() {
                "(empty)"
            } else {
                &snippet
            }
        ));
        if (500..600).contains(&status) {
            Classified {
                outcome: Outcome::Transient,
                rule: "unmatched 5xx".into(),
                message,
            }
        } else {
            Classified {
                outcome: Outcome::Fatal,
                rule: "unmatched".into(),
                message,
            }
        }
    }

    fn retry_hint_body(&self, body: &Body) -> Option<Duration> {
        let resp = body.resp;
        let (date, now) = clocks(resp);
        for hint in &self.hints {
            let found = match &hint.from {
                HintFrom::Header(name) => resp
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
                    .find_map(|v| parse_time_value(v, hint.format, date, now)),
                HintFrom::Json(path) => body.json().and_then(|root| {
                    root.find_map(path, |v| {
                        parse_time_value(&value_text(v), hint.format, date, now)
                    })
                }),
                HintFrom::BodyRegex(re) => re
                    .captures(&resp.body)
                    .and_then(|c| c.get(1))
                    .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
                    .and_then(|v| parse_time_value(v, hint.format, date, now)),
            };
            if found.is_some() {
                return found;
            }
        }
        self.buckets_at(resp, date, now)
            .into_iter()
            .filter(|b| b.remaining == Some(0.0))
            .filter_map(|b| b.reset)
            .max()
    }

    fn usage_body(&self, body: &Body) -> Usage {
        let resp = body.resp;
        if !resp.events.is_empty() {
            // Usage in streams is cumulative: the last event that carries it wins.
            let mut usage = Usage::default();
            for json in resp.events.iter().filter_map(|e| e.json.as_ref()) {
                if let Some(n) = first_count(&self.stream_usage.input, json) {
                    usage.input_tokens = Some(n);
                }
                if let Some(n) = first_count(&self.stream_usage.output, json) {
                    usage.output_tokens = Some(n);
                }
            }
            return usage;
        }
        match body.json() {
            Some(json) => Usage {
                input_tokens: first_count(&self.usage.input, json),
                output_tokens: first_count(&self.usage.output, json),
            },
            None => Usage::default(),
        }
    }

    fn buckets_at(
        &self,
        resp: &ResponseData,
        date: Option<SystemTime>,
        now: SystemTime,
    ) -> Vec<BucketReading> {
        let text = |name: &Option<HeaderName>| {
            name.as_ref()
                .and_then(|n| resp.headers.get(n))
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        };
        let number = |name: &Option<HeaderName>| {
            text(name)
                .and_then(|t| t.trim().parse::<f64>().ok())
                .filter(|n| n.is_finite())
        };
        self.buckets
            .iter()
            .filter(|b| {
                [&b.limit, &b.remaining, &b.reset]
                    .iter()
                    .any(|n| n.as_ref().is_some_and(|n| resp.headers.contains_key(n)))
            })
            .map(|b| BucketReading {
                kind: b.kind,
                window_seconds: b.window_seconds,
                limit: number(&b.limit),
                remaining: number(&b.remaining),
                reset: text(&b.reset).and_then(|t| parse_time_value(t, b.reset_format, date, now)),
            })
            .collect()
    }
}

/// A short, single-line, valid UTF-8 excerpt of a body (at most [`SNIPPET_CHARS`]
/// characters; whitespace runs and control characters become one space), for messages
/// and reports. Empty for an empty body.
pub fn snippet(bytes: &[u8]) -> String {
    // Never convert more than a few times what is kept.
    let cut = bytes.len().min(SNIPPET_CHARS * 8);
    let mut text = String::from_utf8_lossy(&bytes[..cut]);
    if cut < bytes.len() && text.ends_with('\u{fffd}') {
        // A character split by the cut, not a bad byte.
        text.to_mut().pop();
    }
    let mut out = String::with_capacity(SNIPPET_CHARS + 4);
    let mut chars = 0;
    let mut pending_space = false;
    let mut truncated = cut < bytes.len();
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = 1 + usize::from(pending_space);
        if chars + needed > SNIPPET_CHARS - 1 {
            truncated = true;
            break;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    if truncated {
        out.push('…');
    }
    out
}

fn with_snippet(prefix: String, snippet: String) -> String {
    if snippet.is_empty() {
        prefix
    } else {
        format!("{prefix}: {snippet}")
    }
}

fn network(resp: &ResponseData) -> Classified {
    Classified {
        outcome: Outcome::Transient,
        rule: "network".into(),
        message: Some(
            resp.transport_error
                .clone()
                .unwrap_or_else(|| "no response".into()),
        ),
    }
}

/// The response's own `date` (the server's clock) and the local time it arrived.
fn clocks(resp: &ResponseData) -> (Option<SystemTime>, SystemTime) {
    let date = resp
        .headers
        .get(DATE)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(parse_http_date);
    (date, resp.received_at.unwrap_or_else(SystemTime::now))
}

/// The response body, parsed as JSON on first need, at most once, and only as far as
/// the classifier's paths reach.
struct Body<'a> {
    resp: &'a ResponseData,
    paths: &'a PathSet,
    json: OnceCell<Option<Parsed>>,
}

impl Body<'_> {
    fn json(&self) -> Option<&Parsed> {
        self.json
            .get_or_init(|| parse_json_body(&self.resp.body, self.paths))
            .as_ref()
    }
}

/// A header name's length as one bit of a `u64` (lengths from 63 on share the last).
fn length_bit(name: &HeaderName) -> u64 {
    1 << name.as_str().len().min(63)
}

/// A body as JSON when it is a JSON object or array (leading whitespace and a BOM are
/// tolerated: DeepSeek pads with blank lines). Anything else, HTML included, is `None`
/// without running the JSON parser.
fn parse_json_body(bytes: &[u8], paths: &PathSet) -> Option<Parsed> {
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(bytes);
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    match bytes[start] {
        b'{' | b'[' => paths.parse(&bytes[start..]).ok(),
        _ => None,
    }
}

#[derive(Debug)]
struct CompiledRule {
    name: Arc<str>,
    statuses: Vec<u16>,
    headers: Vec<CompiledHeader>,
    json: Vec<CompiledJson>,
    body_regex: Option<regex::bytes::Regex>,
    sse: Option<CompiledSse>,
    outcome: Outcome,
    message: Option<String>,
}

/// What a rule matched on, for the message snippet.
enum Evidence<'a> {
    Body,
    Event(&'a SseEvent),
}

impl Evidence<'_> {
    fn snippet(&self, resp: &ResponseData) -> String {
        match self {
            Evidence::Body => snippet(&resp.body),
            Evidence::Event(e) => snippet(e.data.as_bytes()),
        }
    }
}

impl CompiledRule {
    fn new(
        index: usize,
        rule: &crate::config::provider::Rule,
        body_paths: &mut PathSet,
        event_paths: &mut PathSet,
    ) -> Result<CompiledRule, String> {
        Ok(CompiledRule {
            name: rule
                .name
                .clone()
                .unwrap_or_else(|| format!("rule #{}", index + 1))
                .into(),
            statuses: rule
                .status
                .iter()
                .flat_map(|s| s.iter())
                .map(|s| s.0)
                .collect(),
            headers: rule
                .header
                .iter()
                .flat_map(|h| h.iter())
                .map(CompiledHeader::new)
                .collect::<Result<_, _>>()?,
            json: rule
                .json
                .iter()
                .flat_map(|m| m.iter())
                .map(|m| CompiledJson::new(m, body_paths))
                .collect::<Result<_, _>>()?,
            body_regex: rule.body_regex.as_deref().map(compile_regex).transpose()?,
            sse: rule
                .sse
                .as_ref()
                .map(|s| {
                    Ok::<_, String>(CompiledSse {
                        event: s.event.clone(),
                        json: s
                            .json
                            .as_ref()
                            .map(|m| CompiledJson::new(m, event_paths))
                            .transpose()?,
                    })
                })
                .transpose()?,
            outcome: rule.outcome,
            message: rule.message.clone(),
        })
    }

    /// Every condition, cheapest first; the body is parsed only if a `json` condition
    /// is reached.
    fn matches<'a>(&self, status: u16, body: &Body<'a>) -> Option<Evidence<'a>> {
        let resp = body.resp;
        if !self.statuses.is_empty() && !self.statuses.contains(&status) {
            return None;
        }
        if !self.headers.iter().all(|h| h.matches(&resp.headers)) {
            return None;
        }
        let mut evidence = Evidence::Body;
        if let Some(sse) = &self.sse {
            evidence = Evidence::Event(resp.events.iter().find(|e| sse.matches(e))?);
        }
        if !self.json.is_empty() {
            let root = body.json()?;
            if !self.json.iter().all(|m| m.matches(root)) {
                return None;
            }
        }
        if let Some(re) = &self.body_regex {
            if !re.is_match(&resp.body) {
                return None;
            }
        }
        Some(evidence)
    }
}

#[derive(Debug)]
struct CompiledHeader {
    name: HeaderName,
    test: HeaderTest,
}

#[derive(Debug)]
enum HeaderTest {
    Present(bool),
    Equals(String),
    Regex(regex::bytes::Regex),
}

impl CompiledHeader {
    fn new(m: &HeaderMatch) -> Result<CompiledHeader, String> {
        let test = match (&m.present, &m.equals, &m.regex) {
            (_, Some(v), _) => HeaderTest::Equals(v.clone()),
            (_, _, Some(re)) => HeaderTest::Regex(compile_regex(re)?),
            (present, None, None) => HeaderTest::Present(present.unwrap_or(true)),
        };
        Ok(CompiledHeader {
            name: header_name(&m.name)?,
            test,
        })
    }

    /// With several values of one header, any may fit.
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        match &self.test {
            HeaderTest::Present(present) => values.next().is_some() == *present,
            HeaderTest::Equals(want) => values.any(|v| {
                v.as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(want.trim().as_bytes())
            }),
            HeaderTest::Regex(re) => values.any(|v| re.is_match(v.as_bytes())),
        }
    }
}

#[derive(Debug)]
struct CompiledJson {
    path: SetPath,
    test: JsonTest,
}

#[derive(Debug)]
enum JsonTest {
    Exists(bool),
    Equals(Value),
    OneOf(Vec<Value>),
    Regex(regex::Regex),
}

impl CompiledJson {
    fn new(m: &JsonMatch, paths: &mut PathSet) -> Result<CompiledJson, String> {
        let test = match (&m.exists, &m.equals, &m.one_of, &m.regex) {
            (_, Some(v), _, _) => JsonTest::Equals(v.clone()),
            (_, _, Some(vs), _) => JsonTest::OneOf(vs.clone()),
            (_, _, _, Some(re)) => {
                JsonTest::Regex(regex::Regex::new(re).map_err(|e| one_line(&e))?)
            }
            (exists, None, None, None) => JsonTest::Exists(exists.unwrap_or(true)),
        };
        Ok(CompiledJson {
            path: paths.insert(&JsonPath::parse(&m.path)?),
            test,
        })
    }

    /// Where `[*]` reaches several values, any may fit. Null counts as absent.
    fn matches(&self, root: &Parsed) -> bool {
        let fits = |v: &Value| match &self.test {
            JsonTest::Exists(_) => true,
            JsonTest::Equals(want) => json_eq(v, want),
            JsonTest::OneOf(wants) => wants.iter().any(|w| json_eq(v, w)),
            JsonTest::Regex(re) => re.is_match(&value_text(v)),
        };
        let found = root
            .find_map(&self.path, |v| (!v.is_null() && fits(v)).then_some(()))
            .is_some();
        match &self.test {
            JsonTest::Exists(exists) => found == *exists,
            _ => found,
        }
    }
}

#[derive(Debug)]
struct CompiledSse {
    event: Option<String>,
    json: Option<CompiledJson>,
}

impl CompiledSse {
    fn matches(&self, e: &SseEvent) -> bool {
        if let Some(name) = &self.event {
            if e.event.as_deref() != Some(name.as_str()) {
                return false;
            }
        }
        match &self.json {
            Some(m) => e.json.as_ref().is_some_and(|root| m.matches(root)),
            None => true,
        }
    }
}

#[derive(Debug)]
struct CompiledHint {
    from: HintFrom,
    format: TimeFormat,
}

#[derive(Debug)]
enum HintFrom {
    Header(HeaderName),
    Json(SetPath),
    BodyRegex(regex::bytes::Regex),
}

#[derive(Debug)]
struct CompiledBucket {
    kind: BucketKind,
    window_seconds: u32,
    limit: Option<HeaderName>,
    remaining: Option<HeaderName>,
    reset: Option<HeaderName>,
    reset_format: TimeFormat,
}

#[derive(Debug)]
struct UsageFinder {
    input: Vec<SetPath>,
    output: Vec<SetPath>,
}

impl UsageFinder {
    fn new(input: &[String], output: &[String], set: &mut PathSet) -> Result<UsageFinder, String> {
        let mut parse = |paths: &[String]| {
            paths
                .iter()
                .map(|p| Ok(set.insert(&JsonPath::parse(p)?)))
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(UsageFinder {
            input: parse(input)?,
            output: parse(output)?,
        })
    }
}

/// The first path (in order) that holds a token count.
fn first_count(paths: &[SetPath], root: &Parsed) -> Option<u64> {
    paths.iter().find_map(|p| root.find_map(p, count))
}

/// A non-negative integer, also when written as an integral float (`12.0`).
fn count(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// JSON equality where numbers compare by value (`429` equals `429.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    a == b || (a.is_number() && b.is_number() && a.as_f64() == b.as_f64())
}

/// A JSON value as text: strings as they are, anything else as JSON.
fn value_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("`{name}` is not a header name"))
}

fn compile_regex(re: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::Regex::new(re).map_err(|e| one_line(&e))
}

fn one_line(e: &regex::Error) -> String {
    format!(
        "invalid regular expression: {}",
        e.to_string().replace('\n', " ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// A provider that exercises every kind of condition and hint source.
    const PROVIDER: &str = r#"
name: test
base_url: http://127.0.0.1:1
request: {path: /x, body: {prompt: "{{ prompt }}"}}
response:
  usage:
    input_tokens: [usage.input, usage.prompt_tokens]
    output_tokens: [usage.output]
  stream_usage:
    input_tokens: [usage.input]
    output_tokens: [usage.output]
  stream_done: "[DONE]"
classify:
  - name: stream quota
    sse: {event: error, json: {path: "errors[*].code", equals: 429}}
    outcome: fatal
  - name: blocked by header
    header: [{name: X-Blocked, equals: YES}, {name: x-region, regex: "^eu-"}]
    outcome: fatal
    message: blocked
  - name: no error object
    status: 202
    json: {path: error, exists: false}
    outcome: success
  - status: 418
    outcome: fatal
  - name: gateway page
    status: 429
    body_regex: "(?i)<html"
    header: {name: x-upstream, present: false}
    outcome: rate_limited
  - name: limited
    status: 429
    outcome: rate_limited
  - name: numeric code
    json: {path: error.code, one_of: [503, "busy"]}
    outcome: transient
  - name: success
    status: 200
    outcome: success
rate_limits:
  retry_hints:
    - {json: "error.details[*].retryDelay", format: duration}
    - {body_regex: "retry after (\\d+) seconds", format: seconds}
    - {header: x-reset-at, format: epoch_seconds}
  buckets:
    - {kind: requests, window_seconds: 86400, limit: x-limit, remaining: x-remaining, reset: x-reset, reset_format: seconds}
"#;

    fn classifier() -> Classifier {
        let p = crate::config::parse_provider(std::path::Path::new("test.yaml"), PROVIDER).unwrap();
        Classifier::new(&p).unwrap()
    }

    fn at() -> SystemTime {
        httpdate::parse_http_date("Sat, 25 Jul 2026 12:04:30 GMT").unwrap()
    }

    fn resp(status: u16, headers: &[(&str, &[u8])], body: &[u8]) -> ResponseData {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        ResponseData {
            status: Some(status),
            headers: map,
            body: Bytes::copy_from_slice(body),
            events: Vec::new(),
            transport_error: None,
            received_at: Some(at()),
        }
    }

    fn verdict(c: &Classifier, r: &ResponseData) -> (Outcome, String, Option<String>) {
        let v = c.classify(r);
        (v.outcome, v.rule.to_string(), v.message)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn one_classifier_is_shared_by_every_worker() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Classifier>();
    }

    #[test]
    fn no_response_is_a_transient_network_failure() {
        let c = classifier();
        let mut r = ResponseData {
            transport_error: some("connect: connection refused"),
            ..ResponseData::default()
        };
        assert_eq!(
            verdict(&c, &r),
            (
                Outcome::Transient,
                "network".into(),
                some("connect: connection refused")
            )
        );
        r.transport_error = None;
        assert_eq!(
            verdict(&c, &r),
            (Outcome::Transient, "network".into(), some("no response"))
        );
    }

    #[test]
    fn a_cut_response_never_counts_as_success() {
        let c = classifier();
        let mut r = resp(200, &[], b"{\"choices\":[{\"text\":\"hel");
        r.transport_error = some("body truncated after 23 bytes");
        assert_eq!(
            verdict(&c, &r),
            (
                Outcome::Transient,
                "network".into(),
                some("body truncated after 23 bytes")
            )
        );
        // The status line that did arrive still decides.
        let mut r = resp(429, &[], b"{\"error\":");
        r.transport_error = some("connection reset");
        assert_eq!(
            verdict(&c, &r),
            (
                Outcome::RateLimited,
                "limited".into(),
                some("HTTP 429 (limited): {\"error\":")
            )
        );
    }

    #[test]
    fn conditions_are_anded_and_the_first_rule_wins() {
        let c = classifier();
        // Both header conditions, case-insensitive equality.
        let r = resp(200, &[("x-blocked", b"yes"), ("x-region", b"eu-west")], b"");
        assert_eq!(
            verdict(&c, &r),
            (Outcome::Fatal, "blocked by header".into(), some("blocked"))
        );
        let r = resp(200, &[("x-blocked", b"yes"), ("x-region", b"us-east")], b"");
        assert_eq!(verdict(&c, &r).1, "success");
        // `present: false` and a body regex.
        let page = b"<HTML><body>429 Too Many Requests</body></HTML>";
        assert_eq!(verdict(&c, &resp(429, &[], page)).1, "gateway page");
        assert_eq!(
            verdict(&c, &resp(429, &[("x-upstream", b"1")], page)).1,
            "limited"
        );
    }

    #[test]
    fn json_conditions_need_a_json_body() {
        let c = classifier();
        assert_eq!(
            verdict(&c, &resp(202, &[], b" \n{\"ok\":true}")),
            (Outcome::Success, "no error object".into(), None)
        );
        assert_eq!(
            verdict(&c, &resp(202, &[], b"{\"error\":null}")).1,
            "no error object"
        );
        // `exists: false` does not match a body that is not JSON at all.
        assert_eq!(verdict(&c, &resp(202, &[], b"accepted")).1, "unmatched");
        assert_eq!(
            verdict(&c, &resp(202, &[], b"{\"error\":{}}")).1,
            "unmatched"
        );
        // Numbers compare by value; `one_of` mixes types.
        assert_eq!(
            verdict(&c, &resp(400, &[], b"{\"error\":{\"code\":503.0}}")).1,
            "numeric code"
        );
        assert_eq!(
            verdict(&c, &resp(400, &[], b"{\"error\":{\"code\":\"busy\"}}")).1,
            "numeric code"
        );
        assert_eq!(
            verdict(&c, &resp(400, &[], b"{\"error\":{\"code\":\"503\"}}")).1,
            "unmatched"
        );
    }

    #[test]
    fn sse_conditions_look_at_any_event() {
        let c = classifier();
        let body = b"data: {\"x\":1}\n\nevent: error\ndata: {\"errors\":[{\"code\":1},{\"code\":429}]}\n\ndata: [DONE]\n\n";
        let mut r = resp(200, &[], body);
        r.events = parse_sse(body);
        assert_eq!(
            verdict(&c, &r),
            (
                Outcome::Fatal,
                "stream quota".into(),
                some("HTTP 200 (stream quota): {\"errors\":[{\"code\":1},{\"code\":429}]}")
            )
        );
        assert!(c.is_stream_done(&r.events[2]));
        assert!(!c.is_stream_done(&r.events[0]));
        // Same JSON under another event name: no match.
        let body = b"event: message\ndata: {\"errors\":[{\"code\":429}]}\n\n";
        r.events = parse_sse(body);
        assert_eq!(verdict(&c, &r).1, "success");
    }

    #[test]
    fn unmatched_and_unnamed_rules_explain_themselves() {
        let c = classifier();
        assert_eq!(
            verdict(&c, &resp(418, &[], b"I'm a\n\tteapot")),
            (
                Outcome::Fatal,
                "rule #4".into(),
                some("HTTP 418 (rule #4): I'm a teapot")
            )
        );
        assert_eq!(
            verdict(&c, &resp(451, &[], b"")),
            (
                Outcome::Fatal,
                "unmatched".into(),
                some("HTTP 451 matched no classify rule of provider test; body: (empty)")
            )
        );
        assert_eq!(
            verdict(&c, &resp(502, &[], b"<html>Bad Gateway</html>")),
            (Outcome::Transient, "unmatched 5xx".into(), some("HTTP 502 matched no classify rule of provider test; body: <html>Bad Gateway</html>"))
        );
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let c = classifier();
        let mut noise = Vec::new();
        for i in 0..3000u32 {
            noise.push((i.wrapping_mul(2_654_435_761) >> 11) as u8);
        }
        let mut r = resp(
            429,
            &[
                ("x-region", b"\xff\xfe"),
                ("x-remaining", b"\xff"),
                ("x-reset", b"\xc3\x28"),
                ("retry-after", b"\xff"),
            ],
            &noise,
        );
        r.events = parse_sse(&noise);
        let v = c.classify(&r);
        assert_eq!(
            (v.outcome, v.rule.as_ref()),
            (Outcome::RateLimited, "limited")
        );
        let message = v.message.unwrap();
        assert!(
            message.chars().count() <= "HTTP 429 (limited): ".len() + SNIPPET_CHARS,
            "{message}"
        );
        assert!(!message.contains('\n'));
        let _ = c.retry_hint(&r);
        let _ = c.usage(&r);
        assert_eq!(
            c.buckets(&r),
            vec![BucketReading {
                kind: BucketKind::Requests,
                window_seconds: 86400,
                limit: None,
                remaining: None,
                reset: None
            }]
        );
        assert_eq!(
            c.rate_limit_headers(&r),
            BTreeMap::from([
                ("x-remaining".to_string(), "\u{fffd}".to_string()),
                ("x-reset".to_string(), "\u{fffd}(".to_string())
            ])
        );
    }

    #[test]
    fn retry_hints_from_json_body_regex_and_epoch_headers() {
        let c = classifier();
        // Gemini-style RetryInfo in the body: the first valid element.
        let body = br#"{"error":{"details":[{"retryDelay":"soon"},{"retryDelay":"47s"}]}}"#;
        assert_eq!(
            c.retry_hint(&resp(429, &[], body)),
            Some(Duration::from_secs(47))
        );
        // Azure-style text.
        let body = b"{\"error\":{\"code\":\"429\",\"message\":\"Please retry after 6 seconds.\"}}";
        assert_eq!(
            c.retry_hint(&resp(429, &[], body)),
            Some(Duration::from_secs(6))
        );
        // Epoch seconds, relative to the response's date.
        let epoch = (at()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 20)
            .to_string();
        let r = resp(
            429,
            &[
                ("x-reset-at", epoch.as_bytes()),
                ("date", b"Sat, 25 Jul 2026 12:04:30 GMT"),
            ],
            b"",
        );
        assert_eq!(c.retry_hint(&r), Some(Duration::from_secs(20)));
        // Nothing valid, no exhausted bucket: no hint. Remaining 1 is not exhausted.
        let r = resp(
            429,
            &[("x-remaining", b"1"), ("x-reset", b"30")],
            b"Too many requests",
        );
        assert_eq!(c.retry_hint(&r), None);
        let r = resp(
            429,
            &[("x-remaining", b"0"), ("x-reset", b"30")],
            b"Too many requests",
        );
        assert_eq!(c.retry_hint(&r), Some(Duration::from_secs(30)));
    }

    #[test]
    fn usage_from_bodies_and_streams() {
        let c = classifier();
        let u = |input, output| Usage {
            input_tokens: input,
            output_tokens: output,
        };
        // The first path that holds a count; integral floats count; negatives and text do not.
        assert_eq!(
            c.usage(&resp(
                200,
                &[],
                br#"{"usage":{"input":null,"prompt_tokens":7,"output":12.0}}"#
            )),
            u(Some(7), Some(12))
        );
        assert_eq!(
            c.usage(&resp(
                200,
                &[],
                br#"{"usage":{"input":-3,"prompt_tokens":"7","output":1.5}}"#
            )),
            u(None, None)
        );
        assert_eq!(c.usage(&resp(200, &[], b"not json")), u(None, None));
        // Streams: the last event that carries a count wins.
        let body = b"data: {\"usage\":{\"input\":5,\"output\":1}}\n\ndata: {\"usage\":null}\n\ndata: {\"usage\":{\"output\":9}}\n\ndata: [DONE]\n\n";
        let mut r = resp(200, &[], body);
        r.events = parse_sse(body);
        assert_eq!(c.usage(&r), u(Some(5), Some(9)));
        // The classifier's own event parse keeps what the stream usage reads.
        r.events = c.parse_sse(body);
        assert_eq!(c.usage(&r), u(Some(5), Some(9)));
        // `inspect` agrees with the separate calls.
        assert_eq!(
            c.inspect(&r),
            Inspection {
                classified: c.classify(&r),
                usage: c.usage(&r),
                retry_hint: c.retry_hint(&r)
            }
        );
    }

    #[test]
    fn only_a_refusal_has_a_retry_hint() {
        let c = classifier();
        let headers: &[(&str, &[u8])] = &[("x-remaining", b"0"), ("x-reset", b"30")];
        let refused = resp(429, headers, b"Too many requests");
        assert_eq!(c.inspect(&refused).classified.outcome, Outcome::RateLimited);
        assert_eq!(
            c.inspect(&refused).retry_hint,
            Some(Duration::from_secs(30))
        );
        let answered = resp(200, headers, br#"{"usage":{"input":1,"output":2}}"#);
        assert_eq!(c.inspect(&answered).classified.outcome, Outcome::Success);
        assert_eq!(c.inspect(&answered).retry_hint, None);
        assert_eq!(c.retry_hint(&answered), Some(Duration::from_secs(30)));
        assert!(c.has_rate_limit_headers(&answered.headers));
        assert!(!c.has_rate_limit_headers(&resp(200, &[("x-other", b"0")], b"").headers));
    }

    #[test]
    fn rate_limit_headers_are_told_by_name_not_by_length() {
        // Names are first sorted by length; lengths from 63 on share one slot.
        let long = format!("x-{}", "a".repeat(68));
        let other_long = format!("x-{}", "b".repeat(68));
        let yaml = PROVIDER.replace("x-reset-at", &long);
        let p = crate::config::parse_provider(std::path::Path::new("test.yaml"), &yaml).unwrap();
        let c = Classifier::new(&p).unwrap();
        let has = |name: &str| c.has_rate_limit_headers(&resp(200, &[(name, b"1")], b"").headers);
        assert!(has(&long));
        assert!(!has(&other_long));
        assert!(has("X-Remaining"));
        assert!(has("x-reset"));
        assert!(!has("x-other"));
        assert!(!has("x-remaining-2"));
        assert!(!has("content-type"));
    }

    #[test]
    fn rate_limit_headers_keep_every_value() {
        let c = classifier();
        let r = resp(
            200,
            &[
                ("x-limit", b"100"),
                ("x-remaining", b"1"),
                ("x-remaining", b"2"),
                ("x-other", b"z"),
            ],
            b"",
        );
        assert_eq!(
            c.rate_limit_headers(&r),
            BTreeMap::from([
                ("x-limit".to_string(), "100".to_string()),
                ("x-remaining".to_string(), "1, 2".to_string())
            ])
        );
        assert_eq!(c.buckets(&resp(200, &[], b"")), vec![]);
    }

    #[test]
    fn snippets_are_short_single_line_utf8() {
        assert_eq!(snippet(b""), "");
        assert_eq!(snippet(b"  \r\n a \t\n b \n"), "a b");
        assert_eq!(snippet(b"caf\xc3\xa9 \xff ok"), "café \u{fffd} ok");
        let long = "é".repeat(1000);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), SNIPPET_CHARS);
        assert_eq!(s, format!("{}…", "é".repeat(SNIPPET_CHARS - 1)));
        let exact = "x".repeat(SNIPPET_CHARS - 1);
        assert_eq!(snippet(exact.as_bytes()), exact);
    }
}
