//! The two vendors' wire formats: request parsing, reply bodies (plain and SSE), error
//! bodies and rate-limit headers. Shapes follow ../shared/reference/providers.md §2
//! (OpenAI) and §4 (Anthropic); the official Python SDKs parse them (tests/sdk_clients.py).
//!
//! Reply bodies are written with `format!` around a precomputed text that needs no JSON
//! escaping; only the model name (client input) goes through serde_json. That keeps the
//! hot path to a handful of allocations per request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::limits::{Kind, Refusal, View};
use super::timefmt::{go_duration, retry_after_secs, rfc3339};

/// Which API a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    OpenAi,
    Anthropic,
}

/// The organization named in rate-limit messages.
const ORG: &str = "org-simulator";

// ---------------------------------------------------------------------------------------
// Requests

/// What the simulator needs from a request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The model, as a JSON string literal (quoted and escaped), ready to embed.
    pub model_json: String,
    pub model: String,
    /// Input tokens, counted as ⌈characters / 4⌉ of the message and system text (at
    /// least 1): the rule of thumb the vendors themselves quote for English text. The
    /// same count feeds the usage fields and the token buckets, so they agree.
    pub input_tokens: u64,
    /// `max_tokens` (or OpenAI's `max_completion_tokens`, which wins when both are given).
    pub max_tokens: Option<u64>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`: a final usage chunk before `[DONE]`.
    pub include_usage: bool,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    model: Option<serde_json::Value>,
    #[serde(default)]
    messages: Option<Vec<RawMessage>>,
    #[serde(default)]
    system: Option<serde_json::Value>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    content: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Parses a request body; `Err` is the message of the vendor's 400.
pub fn parse(vendor: Vendor, body: &[u8]) -> Result<Parsed, String> {
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| match (vendor, e.classify()) {
        (Vendor::OpenAi, serde_json::error::Category::Data) => format!("Invalid request body: {e}"),
        (Vendor::OpenAi, _) => "We could not parse the JSON body of your request. (HINT: This likely means you aren't \
using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
            .to_string(),
        (Vendor::Anthropic, serde_json::error::Category::Data) => format!("Invalid request body: {e}"),
        (Vendor::Anthropic, _) => format!("There was an error parsing the body: {e}"),
    })?;
    let model = match raw.model {
        Some(serde_json::Value::String(m)) if !m.is_empty() => m,
        _ => {
            return Err(match vendor {
                Vendor::OpenAi => "you must provide a model parameter".to_string(),
                Vendor::Anthropic => "model: Field required".to_string(),
            })
        }
    };
    let Some(messages) = raw.messages else {
        return Err(match vendor {
            Vendor::OpenAi => "Missing required parameter: 'messages'.".to_string(),
            Vendor::Anthropic => "messages: Field required".to_string(),
        });
    };
    let max_tokens = match vendor {
        Vendor::OpenAi => raw.max_completion_tokens.or(raw.max_tokens),
        Vendor::Anthropic => match raw.max_tokens {
            Some(m) => Some(m),
            None => return Err("max_tokens: Field required".to_string()),
        },
    };
    if max_tokens == Some(0) {
        return Err(match vendor {
            Vendor::OpenAi => "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead."
                .to_string(),
            Vendor::Anthropic => "max_tokens: Input should be greater than or equal to 1".to_string(),
        });
    }
    let mut chars = raw.system.as_ref().map_or(0, text_chars);
    for m in &messages {
        chars += m.content.as_ref().map_or(0, text_chars);
    }
    let model_json = serde_json::to_string(&model).unwrap_or_else(|_| "\"\"".to_string());
    Ok(Parsed {
        model_json,
        model,
        input_tokens: chars.div_ceil(4).max(1),
        max_tokens,
        stream: raw.stream.unwrap_or(false),
        include_usage: raw
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

/// Characters of text in a `content` (or `system`) value: a string, or an array of
/// blocks whose `text` fields count.
fn text_chars(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::String(s) => s.chars().count() as u64,
        serde_json::Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(|t| t.as_str()))
            .map(|t| t.chars().count() as u64)
            .sum(),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------
// Reply text

/// The reply text, precomputed once per server up to the longest reply it can write, with
/// the byte offset where each token ends. A reply of n tokens is a prefix slice: no text is
/// generated per request. Plain ASCII words without quotes or backslashes, so it embeds in
/// JSON as is.
#[derive(Debug)]
pub struct Text {
    text: String,
    /// `ends[i]`: byte length of the first `i` tokens (`ends[0] = 0`).
    ends: Vec<usize>,
}

const ESSAY: &str = "The history of computing begins with counting aids such as the abacus, continues with the \
mechanical calculators of Pascal and Leibniz, and takes a decisive turn with Charles Babbage and his design for \
the Analytical Engine, for which Ada Lovelace wrote what many call the first program. In the twentieth century \
Alan Turing described a universal machine, and wartime projects built electronic computers from relays and \
vacuum tubes. The transistor and then the integrated circuit made machines smaller, faster and cheaper, until \
the microprocessor put a whole computer on one chip and brought computing into homes and pockets. Networks \
joined these machines together, and the web turned the network into a place where people read, write, trade \
and talk.";

impl Text {
    pub fn new(max_tokens: u32) -> Text {
        let words: Vec<&str> = ESSAY.split_whitespace().collect();
        let mut text = String::new();
        let mut ends = Vec::with_capacity(max_tokens as usize + 1);
        ends.push(0);
        for i in 0..max_tokens as usize {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(words[i % words.len()]);
            ends.push(text.len());
        }
        Text { text, ends }
    }

    /// Tokens `from..to` (clamped to what was precomputed).
    pub fn tokens(&self, from: u32, to: u32) -> &str {
        let last = self.ends.len() - 1;
        let (from, to) = ((from as usize).min(last), (to as usize).min(last));
        &self.text[self.ends[from]..self.ends[to.max(from)]]
    }
}

// ---------------------------------------------------------------------------------------
// Replies

/// One successful reply, as the vendor formats it.
#[derive(Debug)]
pub struct Reply<'a> {
    pub vendor: Vendor,
    pub parsed: &'a Parsed,
    /// `chatcmpl-…` or `msg_…`.
    pub id: &'a str,
    pub output_tokens: u32,
    /// The reply was cut by the request's max_tokens (`length` / `max_tokens`), rather
    /// than ending naturally (`stop` / `end_turn`).
    pub capped: bool,
}

/// An error that a stream reports after its 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MidStream {
    Overloaded,
    RateLimit,
}

/// The events of a streamed reply, grouped by when they are due.
#[derive(Debug, Default)]
pub struct StreamPlan {
    /// Sent at the first token: the opening events.
    pub head: String,
    /// Content events, one per chunk of tokens; `(last token index + 1, event)`.
    pub deltas: Vec<(u32, String)>,
    /// The closing events (or the error event of a fault).
    pub tail: String,
    /// The tail is due when this many tokens are generated: with the last content, or for
    /// a fault when the next content would have come.
    pub tail_at: u32,
}

/// A stream is cut into about this many content events, so that a long reply is not
/// thousands of tiny writes.
const STREAM_CHUNKS: u32 = 10;

impl Reply<'_> {
    fn created() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The whole plain (non-streamed) JSON body.
    pub fn plain(&self, text: &Text) -> String {
        let p = self.parsed;
        let content = text.tokens(0, self.output_tokens);
        let (input, output) = (p.input_tokens, u64::from(self.output_tokens));
        match self.vendor {
            Vendor::OpenAi => format!(
                r#"{{"id":"{id}","object":"chat.completion","created":{created},"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"{finish}"}}],"usage":{{"prompt_tokens":{input},"completion_tokens":{output},"total_tokens":{total},"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":null}}"#,
                id = self.id,
                created = Self::created(),
                model = p.model_json,
                finish = if self.capped { "length" } else { "stop" },
                total = input + output,
            ),
            Vendor::Anthropic => format!(
                r#"{{"id":"{id}","type":"message","role":"assistant","model":{model},"content":[{{"type":"text","text":"{content}"}}],"stop_reason":"{stop}","stop_sequence":null,"usage":{{"input_tokens":{input},"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":{output},"service_tier":"standard"}}}}"#,
                id = self.id,
                model = p.model_json,
                stop = if self.capped {
                    "max_tokens"
                } else {
                    "end_turn"
                },
            ),
        }
    }

    /// The SSE events of a streamed reply. With `fault`, the stream sends two content
    /// events, then the error event, and ends (no closing events, no `[DONE]`).
    pub fn stream(&self, text: &Text, fault: Option<MidStream>) -> StreamPlan {
        let n = self.output_tokens;
        let chunks = n.min(STREAM_CHUNKS);
        let mut plan = StreamPlan::default();
        let chunk_end =
            |i: u32| (u64::from(i + 1) * u64::from(n) / u64::from(chunks.max(1))) as u32;
        let mut sent = 0;
        for i in 0..chunks {
            if fault.is_some() && i == 2 {
                break;
            }
            let end = chunk_end(i);
            plan.deltas.push((end, self.delta(text.tokens(sent, end))));
            sent = end;
        }
        plan.tail_at = if fault.is_some() {
            chunk_end(2.min(chunks.saturating_sub(1)))
        } else {
            n
        };
        match self.vendor {
            Vendor::OpenAi => {
                let prefix = self.openai_chunk_prefix();
                let usage_null = if self.parsed.include_usage {
                    r#","usage":null"#
                } else {
                    ""
                };
                plan.head = format!(
                    "data: {prefix}[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}]{usage_null}}}\n\n"
                );
                if let Some(f) = fault {
                    plan.tail = openai_stream_error(f, &self.parsed.model);
                    return plan;
                }
                let finish = if self.capped { "length" } else { "stop" };
                plan.tail = format!(
                    "data: {prefix}[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"{finish}\"}}]{usage_null}}}\n\n"
                );
                if self.parsed.include_usage {
                    let (input, output) = (self.parsed.input_tokens, u64::from(n));
                    plan.tail.push_str(&format!(
                        "data: {prefix}[],\"usage\":{{\"prompt_tokens\":{input},\"completion_tokens\":{output},\"total_tokens\":{total},\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n",
                        total = input + output
                    ));
                }
                plan.tail.push_str("data: [DONE]\n\n");
            }
            Vendor::Anthropic => {
                plan.head = format!(
                    "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"{id}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":{model},\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{input},\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1,\"service_tier\":\"standard\"}}}}}}\n\n\
event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
event: ping\ndata: {{\"type\":\"ping\"}}\n\n",
                    id = self.id,
                    model = self.parsed.model_json,
                    input = self.parsed.input_tokens,
                );
                if let Some(f) = fault {
                    plan.tail = anthropic_stream_error(f);
                    return plan;
                }
                plan.tail = format!(
                    "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{n}}}}}\n\n\
event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
                    stop = if self.capped { "max_tokens" } else { "end_turn" },
                );
            }
        }
        plan
    }

    /// `{"id":…,"object":"chat.completion.chunk",…,"choices":` — the common start of
    /// every OpenAI chunk.
    fn openai_chunk_prefix(&self) -> String {
        format!(
            r#"{{"id":"{}","object":"chat.completion.chunk","created":{},"model":{},"service_tier":"default","system_fingerprint":null,"choices":"#,
            self.id,
            Self::created(),
            self.parsed.model_json
        )
    }

    fn delta(&self, chunk: &str) -> String {
        match self.vendor {
            Vendor::OpenAi => format!(
                "data: {}[{{\"index\":0,\"delta\":{{\"content\":\"{chunk}\"}},\"logprobs\":null,\"finish_reason\":null}}]{}}}\n\n",
                self.openai_chunk_prefix(),
                if self.parsed.include_usage { r#","usage":null"# } else { "" }
            ),
            Vendor::Anthropic => format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{chunk}\"}}}}\n\n"
            ),
        }
    }
}

fn openai_stream_error(f: MidStream, model: &str) -> String {
    let inner = match f {
        MidStream::Overloaded => OpenAiErrorInner {
            message: "The server is overloaded or not ready yet.",
            kind: "server_error",
            param: None,
            code: Some("server_is_overloaded"),
        },
        MidStream::RateLimit => {
            let msg = format!(
                "Rate limit reached for {model} in organization {ORG} on requests per min (RPM) while streaming. Please try again in 1s."
            );
            return format!(
                "data: {}\n\n",
                json(&OpenAiError {
                    error: OpenAiErrorInner {
                        message: &msg,
                        kind: "requests",
                        param: None,
                        code: Some("rate_limit_exceeded")
                    }
                })
            );
        }
    };
    format!("data: {}\n\n", json(&OpenAiError { error: inner }))
}

fn anthropic_stream_error(f: MidStream) -> String {
    let (kind, message) = match f {
        MidStream::Overloaded => ("overloaded_error", "Overloaded"),
        MidStream::RateLimit => (
            "rate_limit_error",
            "This request would exceed your account's rate limit. Please try again later.",
        ),
    };
    format!(
        "event: error\ndata: {}\n\n",
        json(&AnthropicStreamError {
            kind: "error",
            error: AnthropicErrorInner {
                kind,
                message,
                details: None
            }
        })
    )
}

// ---------------------------------------------------------------------------------------
// Errors

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorInner<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    error: AnthropicErrorInner<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
struct AnthropicStreamError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    error: AnthropicErrorInner<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorInner<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<AnthropicDetails<'a>>,
}

#[derive(Serialize)]
struct AnthropicDetails<'a> {
    error_code: &'a str,
}

fn json<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs of strings cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// An error answer of one vendor: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub status: u16,
    pub body: Bytes,
}

/// The errors the simulator answers, apart from rate limits (see [`rate_limited`]).
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// 400: the body is not a valid request.
    BadRequest(&'a str),
    /// 413: the body is larger than the simulator reads.
    TooLarge,
    /// 404: no such endpoint.
    NoRoute { method: &'a str, path: &'a str },
    /// 401: fault `bad_key`.
    BadKey,
    /// 404: fault `unknown_model`.
    UnknownModel(&'a str),
    /// 429 that waiting will not fix: fault `quota_exhausted`.
    Quota,
    /// 500: fault `5xx_rate`.
    ServerError,
    /// 529 (Anthropic) / 503 (OpenAI): fault `overloaded_rate`.
    Overloaded,
}

impl Vendor {
    /// The status and vendor body of `f`.
    pub fn failure(self, f: Failure<'_>, request_id: &str) -> ErrorReply {
        match self {
            Vendor::OpenAi => {
                let (status, message, kind, code): (u16, String, &str, Option<&str>) = match f {
                    Failure::BadRequest(m) => (400, m.to_string(), "invalid_request_error", None),
                    Failure::TooLarge => (413, "The request body is too large.".into(), "invalid_request_error", None),
                    Failure::NoRoute { method, path } => {
                        (404, format!("Invalid URL ({method} {path})"), "invalid_request_error", None)
                    }
                    Failure::BadKey => (
                        401,
                        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
                            .into(),
                        "invalid_request_error",
                        Some("invalid_api_key"),
                    ),
                    Failure::UnknownModel(m) => (
                        404,
                        format!("The model `{m}` does not exist or you do not have access to it."),
                        "invalid_request_error",
                        Some("model_not_found"),
                    ),
                    Failure::Quota => (
                        429,
                        "You exceeded your current quota, please check your plan and billing details. For more information \
on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
                            .into(),
                        "insufficient_quota",
                        Some("insufficient_quota"),
                    ),
                    Failure::ServerError => (
                        500,
                        "The server had an error while processing your request. Sorry about that!".into(),
                        "server_error",
                        None,
                    ),
                    Failure::Overloaded => (
                        503,
                        "The server is overloaded or not ready yet.".into(),
                        "service_unavailable_error",
                        Some("server_is_overloaded"),
                    ),
                };
                let body = json(&OpenAiError {
                    error: OpenAiErrorInner {
                        message: &message,
                        kind,
                        param: None,
                        code,
                    },
                });
                ErrorReply {
                    status,
                    body: Bytes::from(body),
                }
            }
            Vendor::Anthropic => {
                let mut details = None;
                let (status, kind, message): (u16, &str, String) = match f {
                    Failure::BadRequest(m) => (400, "invalid_request_error", m.to_string()),
                    Failure::TooLarge => (
                        413,
                        "request_too_large",
                        "Request exceeds the maximum allowed number of bytes.".into(),
                    ),
                    Failure::NoRoute { .. } => (404, "not_found_error", "Not Found".into()),
                    Failure::BadKey => (401, "authentication_error", "invalid x-api-key".into()),
                    Failure::UnknownModel(m) => (404, "not_found_error", format!("model: {m}")),
                    Failure::Quota => {
                        details = Some(AnthropicDetails {
                            error_code: "enforced_spend_limit_reached",
                        });
                        (
                            429,
                            "rate_limit_error",
                            "You have reached your API usage limits: your organization has crossed its monthly API usage \
threshold. You will regain access at 00:00 UTC on the 1st of next month."
                                .into(),
                        )
                    }
                    Failure::ServerError => (500, "api_error", "Internal server error".into()),
                    Failure::Overloaded => (529, "overloaded_error", "Overloaded".into()),
                };
                let body = json(&AnthropicError {
                    kind: "error",
                    error: AnthropicErrorInner {
                        kind,
                        message: &message,
                        details,
                    },
                    request_id,
                });
                ErrorReply {
                    status,
                    body: Bytes::from(body),
                }
            }
        }
    }

    /// Adds the vendor's request id header.
    pub fn request_id_header(self, headers: &mut HeaderMap, request_id: &str) {
        let name = match self {
            Vendor::OpenAi => HeaderName::from_static("x-request-id"),
            Vendor::Anthropic => HeaderName::from_static("request-id"),
        };
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert(name, v);
        }
    }

    /// The rate-limit headers of every configured limit. OpenAI has no input/output
    /// token limits, so those are Anthropic-only.
    pub fn limit_headers<'v>(self, headers: &mut HeaderMap, views: impl Iterator<Item = &'v View>) {
        let now = SystemTime::now();
        for v in views {
            let names: [&'static str; 3] = match (self, v.kind) {
                (Vendor::OpenAi, Kind::Requests) => [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ],
                (Vendor::OpenAi, Kind::Tokens) => [
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ],
                (Vendor::OpenAi, Kind::InputTokens | Kind::OutputTokens) => continue,
                (Vendor::Anthropic, Kind::Requests) => [
                    "anthropic-ratelimit-requests-limit",
                    "anthropic-ratelimit-requests-remaining",
                    "anthropic-ratelimit-requests-reset",
                ],
                (Vendor::Anthropic, Kind::Tokens) => [
                    "anthropic-ratelimit-tokens-limit",
                    "anthropic-ratelimit-tokens-remaining",
                    "anthropic-ratelimit-tokens-reset",
                ],
                (Vendor::Anthropic, Kind::InputTokens) => [
                    "anthropic-ratelimit-input-tokens-limit",
                    "anthropic-ratelimit-input-tokens-remaining",
                    "anthropic-ratelimit-input-tokens-reset",
                ],
                (Vendor::Anthropic, Kind::OutputTokens) => [
                    "anthropic-ratelimit-output-tokens-limit",
                    "anthropic-ratelimit-output-tokens-remaining",
                    "anthropic-ratelimit-output-tokens-reset",
                ],
            };
            let reset = match self {
                Vendor::OpenAi => go_duration(v.reset),
                Vendor::Anthropic => rfc3339(now + v.reset),
            };
            headers.insert(
                HeaderName::from_static(names[0]),
                HeaderValue::from(v.limit),
            );
            headers.insert(
                HeaderName::from_static(names[1]),
                HeaderValue::from(v.remaining),
            );
            if let Ok(r) = HeaderValue::from_str(&reset) {
                headers.insert(HeaderName::from_static(names[2]), r);
            }
        }
    }
}

/// A rate limit that refused a request.
#[derive(Debug, Clone, Copy)]
pub enum Limited {
    /// `limit` requests were in flight.
    Concurrency {
        limit: u32,
        in_flight: u64,
        retry: Duration,
    },
    /// A per-minute bucket was short.
    Bucket(Refusal),
}

impl Limited {
    /// Real time until a retry can succeed; `None` when it never can.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            Limited::Concurrency { retry, .. } => Some(*retry),
            Limited::Bucket(r) => r.wait,
        }
    }
}

/// The vendor's 429 body for `l` (headers are added by the caller from the views).
pub fn rate_limited(vendor: Vendor, l: &Limited, model: &str, request_id: &str) -> Bytes {
    let (what_openai, what_anthropic, kind, limit, used, requested) = match l {
        Limited::Concurrency {
            limit, in_flight, ..
        } => (
            "concurrent requests",
            "concurrent requests",
            "requests",
            u64::from(*limit),
            *in_flight,
            1,
        ),
        Limited::Bucket(r) => {
            let (o, a, k) = match r.kind {
                Kind::Requests => ("requests per min (RPM)", "requests per minute", "requests"),
                Kind::Tokens => ("tokens per min (TPM)", "tokens per minute", "tokens"),
                Kind::InputTokens => (
                    "input tokens per min (ITPM)",
                    "input tokens per minute",
                    "tokens",
                ),
                Kind::OutputTokens => (
                    "output tokens per min (OTPM)",
                    "output tokens per minute",
                    "tokens",
                ),
            };
            (o, a, k, r.limit, r.used, r.requested)
        }
    };
    match vendor {
        Vendor::OpenAi => {
            let message = match l.wait() {
                Some(w) => format!(
                    "Rate limit reached for {model} in organization {ORG} on {what_openai}: Limit {limit}, Used {used}, \
Requested {requested}. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                    go_duration(w)
                ),
                None => format!(
                    "Request too large for {model} in organization {ORG} on {what_openai}: Limit {limit}, Requested \
{requested}. The input or output tokens must be reduced in order to run successfully. Visit \
https://platform.openai.com/account/rate-limits to learn more."
                ),
            };
            Bytes::from(json(&OpenAiError {
                error: OpenAiErrorInner {
                    message: &message,
                    kind,
                    param: None,
                    code: Some("rate_limit_exceeded"),
                },
            }))
        }
        Vendor::Anthropic => {
            let message = format!(
                "This request would exceed the rate limit for your organization ({ORG}) of {limit} {what_anthropic}. \
For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. \
Please reduce the prompt length or the maximum tokens requested, or try again later."
            );
            Bytes::from(json(&AnthropicError {
                kind: "error",
                error: AnthropicErrorInner {
                    kind: "rate_limit_error",
                    message: &message,
                    details: None,
                },
                request_id,
            }))
        }
    }
}

/// The `retry-after` header (whole seconds, at least 1).
pub fn retry_after_header(headers: &mut HeaderMap, wait: Duration) {
    headers.insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs(wait)),
    );
}

/// nginx's default 429 page, as a gateway in front of an API sends it
/// (`limit_req_status 429`): HTML, no vendor headers, no retry hint.
pub const NGINX_429: &str = "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n\
<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

pub fn json_content_type(headers: &mut HeaderMap) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
}

pub fn sse_content_type(headers: &mut HeaderMap) {
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_prefixes_are_whole_tokens() {
        let t = Text::new(5);
        assert_eq!(t.tokens(0, 3), "The history of");
        assert_eq!(t.tokens(3, 5), " computing begins");
        assert_eq!(t.tokens(0, 0), "");
        assert_eq!(t.tokens(4, 99), " begins");
        assert!(
            !ESSAY.contains('"') && !ESSAY.contains('\\'),
            "the essay must embed in JSON unescaped"
        );
    }

    #[test]
    fn parse_counts_input_and_caps() {
        let p = parse(
            Vendor::OpenAi,
            br#"{"model":"m","messages":[{"role":"user","content":"12345678"},{"role":"user","content":[{"type":"text","text":"1"}]}],"max_tokens":5,"max_completion_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .expect("valid");
        assert_eq!(
            (p.input_tokens, p.max_tokens, p.stream, p.include_usage),
            (3, Some(7), true, true)
        );
        assert_eq!(p.model_json, "\"m\"");
        let e = parse(Vendor::Anthropic, br#"{"model":"m","messages":[]}"#)
            .expect_err("max_tokens required");
        assert_eq!(e, "max_tokens: Field required");
        let e = parse(Vendor::OpenAi, b"{not json").expect_err("syntax");
        assert!(e.starts_with("We could not parse the JSON body"), "{e}");
        let e = parse(
            Vendor::OpenAi,
            br#"{"model":"m","messages":[],"max_tokens":"x"}"#,
        )
        .expect_err("type");
        assert!(e.starts_with("Invalid request body: invalid type"), "{e}");
    }
}
