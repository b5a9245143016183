//! The provider file: how to talk to one vendor.
//!
//! These types are the YAML language of `providers/*.yaml`. The JSON Schema in
//! `schemas/provider.schema.json` is generated from them (doc comments become the
//! `description`s an editor shows on hover), and every file is validated against it
//! before it is deserialized here.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One vendor's API: endpoint, auth, request template, usage paths and the rules that
/// sort every response into success, rate limited, transient or fatal.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Unique name, used with `--provider` and in scenario files (e.g. `openai`).
    pub name: String,
    /// One line for `find-workers-limit providers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Glob patterns of model names this provider serves (e.g. `gpt-*`). Used to pick the
    /// provider from `--model` when no `--provider` is given.
    #[serde(default)]
    pub models: Vec<String>,
    /// The base URL as the vendor's own SDK and docs name it (e.g.
    /// `https://api.openai.com/v1`); `request.path` is appended. Overridable with
    /// `--base-url`. May use `{{ env.NAME }}`.
    pub base_url: String,
    /// Which key the provider needs and whether it may travel over plain http.
    #[serde(default)]
    pub auth: Auth,
    /// The request sent for every prompt.
    pub request: RequestSpec,
    /// Where token usage lives in responses.
    #[serde(default)]
    pub response: ResponseSpec,
    /// Ordered rules; the first that matches decides the outcome. A response no rule
    /// matches is `transient` when its status is 5xx, else `fatal`.
    pub classify: Vec<Rule>,
    /// The vendor's rate-limit headers and retry hints, read for the cooldown and report.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Prices in US dollars per million tokens, for cost estimates. Leave empty when
    /// unknown: no estimate is better than an invented one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
}

/// How the API key is found and sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Variable holding the key, looked up in the environment and the keys file
    /// (e.g. `OPENAI_API_KEY`). Omit for servers that need no key (local vLLM, Ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// When true, a missing key is not an error and `api_key` renders as empty.
    #[serde(default)]
    pub optional: bool,
    /// Allow sending the key over plain http to a host that is not loopback. Off by
    /// default: a key is never sent in clear text by accident.
    #[serde(default)]
    pub allow_plain_http: bool,
}

/// HTTP methods a request may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Post,
    Put,
    Get,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Get => "GET",
        })
    }
}

/// The request template. Strings are minijinja templates over `model`, `prompt`,
/// `max_tokens`, `api_key`, `base_url`, `stream` and `env.NAME`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// HTTP method (default POST).
    #[serde(default)]
    pub method: Method,
    /// Path and query appended to the base URL (e.g. `/chat/completions`).
    pub path: String,
    /// Request headers; values are templates (e.g. `Bearer {{ api_key }}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The JSON body as a YAML tree. String leaves are templates; a leaf that is exactly
    /// one `{{ expr }}` keeps the value's type (a number stays a number).
    pub body: serde_json::Value,
    /// Merged over `body` (key by key, recursively) when the probe streams, e.g.
    /// `{stream: true, stream_options: {include_usage: true}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_body: Option<serde_json::Value>,
}

/// Where usage lives in plain and streamed responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// JSON paths in a plain (non-streamed) response body.
    #[serde(default)]
    pub usage: UsagePaths,
    /// JSON paths looked up in every SSE `data:` event of a streamed response; the last
    /// value found wins (usage in streams is cumulative).
    #[serde(default)]
    pub stream_usage: UsagePaths,
    /// The `data:` payload that ends a stream (OpenAI `[DONE]`); it is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_done: Option<String>,
}

/// JSON paths of token counts, tried in order; the first that holds a number is used.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsagePaths {
    /// Paths of the input (prompt) token count, e.g. `usage.prompt_tokens`.
    #[serde(default)]
    pub input_tokens: Vec<String>,
    /// Paths of the output (completion) token count, e.g. `usage.completion_tokens`.
    #[serde(default)]
    pub output_tokens: Vec<String>,
}

/// What a response means for the probe: `success` (answered); `rate_limited` (the
/// account's limit refused it: fewer workers would help); `transient` (a passing fault —
/// network, 5xx, overload — retried with backoff, never scaled back); `fatal` (stops the
/// probe at once with the rule's message: bad key, quota, unknown model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    RateLimited,
    Transient,
    Fatal,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Success => "success",
            Outcome::RateLimited => "rate_limited",
            Outcome::Transient => "transient",
            Outcome::Fatal => "fatal",
        })
    }
}

/// One classification rule. Every condition given must hold (they are ANDed); a rule
/// with no condition matches everything.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A short name shown in reports and verbose output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP status, or a list of them, e.g. `429` or `[500, 502, 503]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OneOrMany<Status>>,
    /// Header condition(s) on the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<OneOrMany<HeaderMatch>>,
    /// Condition(s) on the JSON body (a plain response; not a stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<OneOrMany<JsonMatch>>,
    /// A regular expression searched in the raw body (a plain response, or the whole
    /// stream). Prefer `json`: a regex over prose is a guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    /// Matches when any SSE event of a streamed response fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<SseMatch>,
    /// The outcome when the rule matches.
    pub outcome: Outcome,
    /// For fatal rules: the message the probe stops with. Also shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An HTTP status code (100 to 599).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Status(pub u16);

impl JsonSchema for Status {
    fn schema_name() -> String {
        "Status".into()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        use schemars::schema::{InstanceType, NumberValidation, SchemaObject};
        SchemaObject {
            instance_type: Some(InstanceType::Integer.into()),
            number: Some(Box::new(NumberValidation {
                minimum: Some(100.0),
                maximum: Some(599.0),
                ..Default::default()
            })),
            metadata: Some(Box::new(schemars::schema::Metadata {
                description: Some("An HTTP status code (100 to 599).".into()),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

/// A header condition. Exactly one of `present`, `equals` or `regex` is expected; with
/// none, the header must be present.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// `true`: the header must be present; `false`: it must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// The header's value must equal this (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The header's value must match this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A condition on a JSON document. Paths are dotted with indexes:
/// `error.code`, `[0].error.status`, `error.details[*].quotaId` (`[*]`: any element).
/// With no test given, the path must exist and not be null.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonMatch {
    /// Where to look.
    pub path: String,
    /// `true`: a non-null value must be there; `false`: nothing (or null) may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// The value must equal this exactly (strings, numbers, booleans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// The value must equal one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// The value, as text, must match this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A condition on the events of a streamed (SSE) response.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseMatch {
    /// The SSE `event:` name that must be given (e.g. Anthropic `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Condition on the event's JSON `data:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonMatch>,
}

/// The vendor's rate-limit signals.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Where a retry hint may be found, in order; the first valid one wins. When none is
    /// valid, the reset time of an exhausted bucket (remaining 0) is used.
    #[serde(default)]
    pub retry_hints: Vec<HintSource>,
    /// The limit / remaining / reset header triples, one per kind of limit.
    #[serde(default)]
    pub buckets: Vec<Bucket>,
}

/// One place a retry hint may be read from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HintSource {
    /// A response header (e.g. `retry-after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A JSON path in the body (e.g. Gemini `error.details[*].retryDelay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    /// A regex searched in the body whose first capture group holds the value
    /// (e.g. Azure `retry after (\d+) seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    /// How the value is written.
    pub format: TimeFormat,
}

/// How a time value is written: `seconds` (fractions allowed: `2`, `0.503`);
/// `milliseconds`; `retry_after` (seconds, or an HTTP date taken relative to the
/// response's `date`); `duration` (Go / protobuf: `20ms`, `1.5s`, `6m0s`,
/// `23h47m36.648s`); `rfc3339` (an absolute time, relative to the response's `date`);
/// `epoch_seconds` (absolute Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    Seconds,
    Milliseconds,
    RetryAfter,
    Duration,
    Rfc3339,
    EpochSeconds,
}

/// A kind of limit the vendor reports in headers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BucketKind {
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
}

impl fmt::Display for BucketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BucketKind::Requests => "requests",
            BucketKind::Tokens => "tokens",
            BucketKind::InputTokens => "input_tokens",
            BucketKind::OutputTokens => "output_tokens",
        })
    }
}

/// Headers of one rate-limit bucket.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// What the bucket counts.
    pub kind: BucketKind,
    /// The window the limit applies to, in seconds (60 for per-minute limits, 86400
    /// for per-day ones such as Groq's request headers).
    #[serde(default = "default_window")]
    pub window_seconds: u32,
    /// Header with the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Header with what remains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<String>,
    /// Header with the reset time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<String>,
    /// How the reset header is written.
    #[serde(default = "default_reset_format")]
    pub reset_format: TimeFormat,
}

fn default_window() -> u32 {
    60
}

fn default_reset_format() -> TimeFormat {
    TimeFormat::Duration
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Price of one million input tokens, in US dollars.
    pub input_per_million: f64,
    /// Price of one million output tokens, in US dollars.
    pub output_per_million: f64,
}

/// A single value or a list of them (`status: 429` or `status: [500, 503]`).
#[derive(Debug, Clone, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> OneOrMany<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T: Serialize> Serialize for OneOrMany<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let items = match value {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(serde::de::Error::custom))
            .collect::<Result<Vec<T>, _>>()
            .map(OneOrMany)
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> String {
        format!("OneOrMany_{}", T::schema_name())
    }

    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        use schemars::schema::{InstanceType, SchemaObject, SubschemaValidation};
        let one = gen.subschema_for::<T>();
        let many = SchemaObject {
            instance_type: Some(InstanceType::Array.into()),
            array: Some(Box::new(schemars::schema::ArrayValidation {
                items: Some(one.clone().into()),
                min_items: Some(1),
                ..Default::default()
            })),
            ..Default::default()
        };
        SchemaObject {
            subschemas: Some(Box::new(SubschemaValidation {
                any_of: Some(vec![one, many.into()]),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

/// Cross-field checks that a schema cannot express. Returns `(JSON pointer, message)`
/// for every problem.
pub fn check(p: &Provider) -> Vec<(String, String)> {
    use crate::jsonpath::JsonPath;
    let mut problems = Vec::new();
    let regex = |at: String, re: &str, problems: &mut Vec<(String, String)>| {
        if let Err(e) = regex::Regex::new(re) {
            problems.push((at, regex_problem(re, &e)));
        }
    };
    let path = |at: String, text: &str, problems: &mut Vec<(String, String)>| {
        if let Err(e) = JsonPath::parse(text) {
            problems.push((at, format!("invalid JSON path: {e}")));
        }
    };
    for (i, pattern) in p.models.iter().enumerate() {
        if let Err(e) = globset::Glob::new(pattern) {
            problems.push((format!("/models/{i}"), format!("invalid glob pattern: {e}")));
        }
    }
    if let Some(key) = &p.auth.key_env {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            problems.push((
                "/auth/key_env".into(),
                format!("`{key}` is not a variable name (letters, digits, _)"),
            ));
        }
    }
    if !p.classify.iter().any(|r| r.outcome == Outcome::Success) {
        problems.push((
            "/classify".into(),
            "no rule has `outcome: success`, so no answer could ever count".into(),
        ));
    }
    for (i, rule) in p.classify.iter().enumerate() {
        let at = format!("/classify/{i}");
        for (j, h) in rule.header.iter().flat_map(|h| h.iter()).enumerate() {
            let hat = if rule.header.as_ref().map(|h| h.0.len()) == Some(1) {
                format!("{at}/header")
            } else {
                format!("{at}/header/{j}")
            };
            let tests = [h.present.is_some(), h.equals.is_some(), h.regex.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if tests > 1 {
                problems.push((
                    hat.clone(),
                    "give one of `present`, `equals`, `regex`".into(),
                ));
            }
            if let Some(re) = &h.regex {
                regex(format!("{hat}/regex"), re, &mut problems);
            }
        }
        for (j, m) in rule.json.iter().flat_map(|m| m.iter()).enumerate() {
            let jat = if rule.json.as_ref().map(|m| m.0.len()) == Some(1) {
                format!("{at}/json")
            } else {
                format!("{at}/json/{j}")
            };
            check_json_match(m, &jat, &mut problems);
        }
        if let Some(re) = &rule.body_regex {
            regex(format!("{at}/body_regex"), re, &mut problems);
        }
        if let Some(sse) = &rule.sse {
            if sse.event.is_none() && sse.json.is_none() {
                problems.push((format!("{at}/sse"), "give `event`, `json` or both".into()));
            }
            if let Some(m) = &sse.json {
                check_json_match(m, &format!("{at}/sse/json"), &mut problems);
            }
        }
        if rule.status.is_none()
            && rule.header.is_none()
            && rule.json.is_none()
            && rule.body_regex.is_none()
            && rule.sse.is_none()
            && i + 1 < p.classify.len()
        {
            problems.push((at.clone(), format!("has no condition, so it matches everything and the {} rule(s) after it never apply", p.classify.len() - i - 1)));
        }
    }
    for (i, hint) in p.rate_limits.retry_hints.iter().enumerate() {
        let at = format!("/rate_limits/retry_hints/{i}");
        let sources = [
            hint.header.is_some(),
            hint.json.is_some(),
            hint.body_regex.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            problems.push((
                at.clone(),
                "give exactly one of `header`, `json`, `body_regex`".into(),
            ));
        }
        if let Some(p2) = &hint.json {
            path(format!("{at}/json"), p2, &mut problems);
        }
        if let Some(re) = &hint.body_regex {
            match regex::Regex::new(re) {
                Ok(r) if r.captures_len() < 2 => problems.push((
                    format!("{at}/body_regex"),
                    "needs a capture group `( )` around the value".into(),
                )),
                Ok(_) => {}
                Err(_) => regex(format!("{at}/body_regex"), re, &mut problems),
            }
        }
    }
    for (i, paths) in [
        ("usage", &p.response.usage),
        ("stream_usage", &p.response.stream_usage),
    ] {
        for (field, list) in [
            ("input_tokens", &paths.input_tokens),
            ("output_tokens", &paths.output_tokens),
        ] {
            for (j, text) in list.iter().enumerate() {
                path(format!("/response/{i}/{field}/{j}"), text, &mut problems);
            }
        }
    }
    if let Some(pr) = &p.pricing {
        for (field, v) in [
            ("input_per_million", pr.input_per_million),
            ("output_per_million", pr.output_per_million),
        ] {
            if !v.is_finite() || v < 0.0 {
                problems.push((
                    format!("/pricing/{field}"),
                    format!("{v} is not a price (a number, 0 or more)"),
                ));
            }
        }
    }
    problems
}

fn check_json_match(m: &JsonMatch, at: &str, problems: &mut Vec<(String, String)>) {
    if let Err(e) = crate::jsonpath::JsonPath::parse(&m.path) {
        problems.push((format!("{at}/path"), format!("invalid JSON path: {e}")));
    }
    let tests = [
        m.exists.is_some(),
        m.equals.is_some(),
        m.one_of.is_some(),
        m.regex.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if tests > 1 {
        problems.push((
            at.to_string(),
            "give one of `exists`, `equals`, `one_of`, `regex`".into(),
        ));
    }
    if let Some(re) = &m.regex {
        if let Err(e) = regex::Regex::new(re) {
            problems.push((format!("{at}/regex"), regex_problem(re, &e)));
        }
    }
}

/// `invalid regular expression `(x`: unclosed group` — the regex crate's last line,
/// which names the fault, without its multi-line picture.
fn regex_problem(re: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let reason = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let reason = reason.strip_prefix("error: ").unwrap_or(reason);
    format!("invalid regular expression `{re}`: {reason}")
}
