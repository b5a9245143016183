//! The provider catalog, proven on each vendor's own error shapes.
//!
//! Every built-in provider file is loaded from `providers/` and fed fixture responses
//! reconstructed from `../shared/reference/providers.md` (status line, headers, body or
//! SSE transcript, under `tests/fixtures/providers/PROVIDER/CASE.http`). The table below
//! says, for each, the outcome, the deciding rule, the retry hint and the token usage
//! the real classifier must produce. Then: model globs never overlap, requests render
//! as each vendor expects, `validate` accepts every file, `providers` lists them all
//! with their source, and a user file replaces a built-in one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use find_workers_limit::classify::{parse_sse, BucketReading, Classifier, ResponseData, Usage};
use find_workers_limit::config::load_provider;
use find_workers_limit::config::provider::{BucketKind, Outcome, Provider};
use find_workers_limit::config::registry::Registry;
use find_workers_limit::template::{self, Vars};

use Outcome::{Fatal, RateLimited, Success, Transient};

const BIN: &str = env!("CARGO_BIN_EXE_find-workers-limit");

/// The files this catalog ships, beside the lead's openai, anthropic and simulated.
const CATALOG: &[&str] = &[
    "azure-openai",
    "gemini",
    "gemini-openai",
    "mistral",
    "groq",
    "together",
    "fireworks",
    "deepseek",
    "openrouter",
    "xai",
    "cohere",
    "vllm",
    "ollama",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn provider(name: &str) -> Provider {
    let path = root().join("providers").join(format!("{name}.yaml"));
    load_provider(&path).unwrap_or_else(|e| panic!("{e}"))
}

// ------------------------------------------------------------------ the fixture table

/// One fixture and what the classifier must make of it.
struct Row {
    provider: &'static str,
    fixture: &'static str,
    outcome: Outcome,
    rule: &'static str,
    hint: Option<Duration>,
    usage: Usage,
}

const fn row(
    provider: &'static str,
    fixture: &'static str,
    outcome: Outcome,
    rule: &'static str,
    hint: Option<Duration>,
    usage: Usage,
) -> Row {
    Row {
        provider,
        fixture,
        outcome,
        rule,
        hint,
        usage,
    }
}

const fn tok(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
    }
}

const fn in_only(input: u64) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: None,
    }
}

const NO_USAGE: Usage = Usage {
    input_tokens: None,
    output_tokens: None,
};

const fn s(secs: u64) -> Option<Duration> {
    Some(Duration::from_secs(secs))
}

const fn ms(millis: u64) -> Option<Duration> {
    Some(Duration::from_millis(millis))
}

const NONE: Option<Duration> = None;

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // --- openai (§2)
    row("openai", "success",                   Success,     "success",            NONE,        tok(12, 5)),
    row("openai", "stream_success",            Success,     "success",            NONE,        tok(12, 5)),
    row("openai", "rate_limit_tpm",            RateLimited, "rate limited",       s(2),        NO_USAGE),
    // No retry-after: the exhausted token bucket's reset (Go duration) is the hint.
    row("openai", "rate_limit_no_retry_after", RateLimited, "rate limited",       s(360),      NO_USAGE),
    row("openai", "quota_exhausted",           Fatal,       "quota exhausted",    NONE,        NO_USAGE),
    row("openai", "request_too_large",         Fatal,       "request too large",  NONE,        NO_USAGE),
    row("openai", "overloaded",                Transient,   "overloaded",         NONE,        NO_USAGE),
    row("openai", "bad_key",                   Fatal,       "bad key",            NONE,        NO_USAGE),
    row("openai", "unknown_model",             Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("openai", "stream_error",              Transient,   "stream error",       NONE,        NO_USAGE),
    // --- anthropic (§4)
    row("anthropic", "success",                Success,     "success",            NONE,        tok(12, 6)),
    // message_start carries input_tokens, message_delta the cumulative output_tokens.
    row("anthropic", "stream_success",         Success,     "success",            NONE,        tok(12, 6)),
    row("anthropic", "rate_limit",             RateLimited, "rate limited",       s(12),       NO_USAGE),
    row("anthropic", "spend_limit",            Fatal,       "spend limit",        NONE,        NO_USAGE),
    row("anthropic", "overloaded",             Transient,   "overloaded",         NONE,        NO_USAGE),
    row("anthropic", "bad_key",                Fatal,       "bad key",            NONE,        NO_USAGE),
    row("anthropic", "request_too_large",      Fatal,       "request too large",  NONE,        NO_USAGE),
    // Cut after message_start: its usage (12 in, 1 out) is what was reported.
    row("anthropic", "stream_error",           Transient,   "stream overloaded",  NONE,        tok(12, 1)),
    // --- azure-openai (§3)
    row("azure-openai", "success",             Success,     "success",            NONE,        tok(12, 5)),
    row("azure-openai", "stream_success",      Success,     "success",            NONE,        tok(12, 5)),
    // retry-after-ms wins over retry-after and the message.
    row("azure-openai", "rate_limit",          RateLimited, "rate limited",       ms(6000),    NO_USAGE),
    // Only the message says when: "Try again in 2 seconds."
    row("azure-openai", "rate_limit_message_only", RateLimited, "rate limited",   s(2),        NO_USAGE),
    // x-rate-limit-reset-tokens (hyphenated), integer seconds, no retry-after.
    row("azure-openai", "rate_limit_hyphenated_reset", RateLimited, "rate limited", s(55),     NO_USAGE),
    // "Please retry after 86400 seconds": no quota left; fewer workers will not help.
    row("azure-openai", "quota_86400",         Fatal,       "quota exhausted",    s(86400),    NO_USAGE),
    row("azure-openai", "capacity",            Transient,   "capacity",           s(20),       NO_USAGE),
    row("azure-openai", "content_filter",      Fatal,       "content filter",     NONE,        NO_USAGE),
    row("azure-openai", "bad_key",             Fatal,       "bad key",            NONE,        NO_USAGE),
    row("azure-openai", "unknown_deployment",  Fatal,       "unknown deployment", NONE,        NO_USAGE),
    row("azure-openai", "server_error",        Transient,   "server error",       NONE,        NO_USAGE),
    row("azure-openai", "stream_error",        Transient,   "stream error",       NONE,        NO_USAGE),
    // --- gemini native (§5)
    row("gemini", "success",                   Success,     "success",            NONE,        tok(8, 12)),
    // Thinking model, small budget: MAX_TOKENS, no text, only thoughtsTokenCount.
    row("gemini", "success_thoughts_only",     Success,     "success",            NONE,        tok(8, 16)),
    row("gemini", "stream_success",            Success,     "success",            NONE,        tok(8, 12)),
    // RetryInfo.retryDelay "33s" in the body wins over the message's "33.4s".
    row("gemini", "rate_limit_per_minute",     RateLimited, "rate limited",       s(33),       NO_USAGE),
    row("gemini", "per_day",                   Fatal,       "per-day quota",      s(33),       NO_USAGE),
    // PerDay and PerMinute violations together: PerDay wins.
    row("gemini", "per_day_and_per_minute",    Fatal,       "per-day quota",      s(47),       NO_USAGE),
    row("gemini", "long_retry_delay",          Fatal,       "long quota wait",    s(1800),     NO_USAGE),
    row("gemini", "bare_429",                  RateLimited, "rate limited",       NONE,        NO_USAGE),
    row("gemini", "message_retry_ms",          RateLimited, "rate limited",       ms(900),     NO_USAGE),
    row("gemini", "v1_error_info",             RateLimited, "rate limited",       NONE,        NO_USAGE),
    row("gemini", "overloaded",                Transient,   "overloaded",         NONE,        NO_USAGE),
    // A bad key is a 400.
    row("gemini", "bad_key",                   Fatal,       "bad key",            NONE,        NO_USAGE),
    row("gemini", "bad_key_not_found",         Fatal,       "bad key",            NONE,        NO_USAGE),
    row("gemini", "failed_precondition",       Fatal,       "billing required",   NONE,        NO_USAGE),
    row("gemini", "bad_request",               Fatal,       "bad request",        NONE,        NO_USAGE),
    row("gemini", "unknown_model",             Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("gemini", "stream_error",              Transient,   "stream error",       NONE,        in_only(8)),
    row("gemini", "stream_rate_limit",         RateLimited, "stream rate limit",  NONE,        NO_USAGE),
    // --- gemini-openai (§6): error bodies are a JSON array
    row("gemini-openai", "success",            Success,     "success",            NONE,        tok(8, 12)),
    row("gemini-openai", "stream_success",     Success,     "success",            NONE,        tok(8, 12)),
    row("gemini-openai", "rate_limit",         RateLimited, "rate limited",       NONE,        NO_USAGE),
    row("gemini-openai", "rate_limit_with_retry_info", RateLimited, "rate limited", s(33),     NO_USAGE),
    row("gemini-openai", "per_day",            Fatal,       "per-day quota",      s(33),       NO_USAGE),
    row("gemini-openai", "bad_key",            Fatal,       "bad key",            NONE,        NO_USAGE),
    row("gemini-openai", "overloaded",         Transient,   "overloaded",         NONE,        NO_USAGE),
    row("gemini-openai", "unknown_model",      Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("gemini-openai", "stream_error",       Transient,   "stream error",       NONE,        NO_USAGE),
    // --- mistral (§7): flat error bodies, no `error` wrapper
    row("mistral", "success",                  Success,     "success",            NONE,        tok(10, 7)),
    // Usage in the last chunk by default (stream_options is refused).
    row("mistral", "stream_success",           Success,     "success",            NONE,        tok(10, 7)),
    row("mistral", "rate_limit",               RateLimited, "rate limited",       s(1),        NO_USAGE),
    row("mistral", "rate_limit_old_body",      RateLimited, "rate limited",       NONE,        NO_USAGE),
    row("mistral", "monthly_limit",            Fatal,       "monthly limit",      NONE,        NO_USAGE),
    row("mistral", "capacity",                 Transient,   "capacity",           NONE,        NO_USAGE),
    row("mistral", "stream_options_rejected",  Fatal,       "bad request",        NONE,        NO_USAGE),
    row("mistral", "payment_required",         Fatal,       "payment required",   NONE,        NO_USAGE),
    row("mistral", "bad_key",                  Fatal,       "bad key",            NONE,        NO_USAGE),
    row("mistral", "unknown_model",            Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("mistral", "stream_error",             Transient,   "stream error",       NONE,        NO_USAGE),
    // --- groq (§8)
    row("groq", "success",                     Success,     "success",            NONE,        tok(18, 9)),
    // x_groq.usage in the final chunk, without stream_options.
    row("groq", "stream_success",              Success,     "success",            NONE,        tok(18, 9)),
    row("groq", "rate_limit_tpm",              RateLimited, "rate limited",       s(12),       NO_USAGE),
    // No retry-after header: "Please try again in 11.455s." in the message.
    row("groq", "rate_limit_body_hint",        RateLimited, "rate limited",       ms(11455),   NO_USAGE),
    row("groq", "per_day_tpd",                 Fatal,       "per-day limit",      ms(578016),  NO_USAGE),
    // 413 with the same code as a rate limit: one request above the whole TPM limit.
    row("groq", "request_too_large",           Fatal,       "request too large",  NONE,        NO_USAGE),
    row("groq", "capacity_exceeded",           Transient,   "capacity exceeded",  NONE,        NO_USAGE),
    row("groq", "bad_key",                     Fatal,       "bad key",            NONE,        NO_USAGE),
    row("groq", "unknown_model",               Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("groq", "stream_rate_limit",           RateLimited, "stream rate limit",  ms(11455),   NO_USAGE),
    row("groq", "stream_error",                Transient,   "stream error",       NONE,        NO_USAGE),
    // --- together (§9)
    row("together", "success",                 Success,     "success",            NONE,        tok(14, 6)),
    row("together", "stream_success",          Success,     "success",            NONE,        tok(14, 6)),
    // type "credit_limit" on a per-minute limit: still a rate limit.
    row("together", "rate_limit_credit_limit_type", RateLimited, "rate limited",  s(2),        NO_USAGE),
    row("together", "rate_limit_model",        RateLimited, "rate limited",       NONE,        NO_USAGE),
    // 503 for bursts at or below the dynamic rate: fewer workers fix it.
    row("together", "burst_503",               RateLimited, "burst limit",        NONE,        NO_USAGE),
    row("together", "legacy_400_rate_limit",   RateLimited, "rate limited (legacy 400)", NONE, NO_USAGE),
    row("together", "spend_limit",             Fatal,       "spend limit",        NONE,        NO_USAGE),
    // 403 is Together's status for a prompt beyond the context length.
    row("together", "context_too_long",        Fatal,       "request too large",  NONE,        NO_USAGE),
    row("together", "bad_key",                 Fatal,       "bad key",            NONE,        NO_USAGE),
    row("together", "unknown_model",           Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("together", "server_error",            Transient,   "server error",       NONE,        NO_USAGE),
    row("together", "stream_error",            Transient,   "stream error",       NONE,        NO_USAGE),
    // --- fireworks (§10)
    row("fireworks", "success",                Success,     "success",            NONE,        tok(11, 4)),
    row("fireworks", "stream_success",         Success,     "success",            NONE,        tok(11, 4)),
    // `error` is a string here.
    row("fireworks", "rate_limit",             RateLimited, "rate limited",       NONE,        NO_USAGE),
    row("fireworks", "overloaded",             Transient,   "overloaded",         NONE,        NO_USAGE),
    row("fireworks", "payment_required",       Fatal,       "payment required",   NONE,        NO_USAGE),
    row("fireworks", "account_suspended",      Fatal,       "account suspended",  NONE,        NO_USAGE),
    row("fireworks", "bad_key",                Fatal,       "bad key",            NONE,        NO_USAGE),
    row("fireworks", "unknown_model",          Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("fireworks", "timeout",                Transient,   "timeout",            NONE,        NO_USAGE),
    row("fireworks", "stream_error",           Transient,   "stream error",       NONE,        NO_USAGE),
    // --- deepseek (§11)
    // Held open under load: blank lines before the JSON body.
    row("deepseek", "success_after_keepalive_lines", Success, "success",          NONE,        tok(9, 10)),
    // `: keep-alive` comments before the first chunk.
    row("deepseek", "stream_success",          Success,     "success",            NONE,        tok(9, 10)),
    // code "invalid_request_error" on a 402: the status decides.
    row("deepseek", "insufficient_balance",    Fatal,       "insufficient balance", NONE,      NO_USAGE),
    row("deepseek", "rate_limit",              RateLimited, "rate limited",       NONE,        NO_USAGE),
    row("deepseek", "overloaded",              Transient,   "overloaded",         NONE,        NO_USAGE),
    row("deepseek", "bad_key",                 Fatal,       "bad key",            NONE,        NO_USAGE),
    row("deepseek", "invalid_parameters",      Fatal,       "bad request",        NONE,        NO_USAGE),
    row("deepseek", "stream_error",            Transient,   "stream error",       NONE,        NO_USAGE),
    // --- openrouter (§12)
    row("openrouter", "success",               Success,     "success",            NONE,        tok(13, 8)),
    // `: OPENROUTER PROCESSING` comments are skipped.
    row("openrouter", "stream_success",        Success,     "success",            NONE,        tok(13, 8)),
    row("openrouter", "stream_error",          Transient,   "stream error",       NONE,        NO_USAGE),
    // An error inside an HTTP 200 is not a success.
    row("openrouter", "error_in_200",          Transient,   "error in 200",       NONE,        NO_USAGE),
    row("openrouter", "upstream_rate_limit",   Transient,   "upstream rate limit", NONE,       NO_USAGE),
    row("openrouter", "free_daily_cap",        Fatal,       "free daily cap",     NONE,        NO_USAGE),
    row("openrouter", "free_daily_cap_string_code", Fatal,  "free daily cap",     NONE,        NO_USAGE),
    row("openrouter", "rate_limit",            RateLimited, "rate limited",       s(3),        NO_USAGE),
    row("openrouter", "no_credits",            Fatal,       "no credits",         NONE,        NO_USAGE),
    row("openrouter", "in_flight_budget",      RateLimited, "in-flight budget",   s(2),        NO_USAGE),
    row("openrouter", "bad_key",               Fatal,       "bad key",            NONE,        NO_USAGE),
    row("openrouter", "moderation",            Fatal,       "moderation",         NONE,        NO_USAGE),
    row("openrouter", "no_provider",           Transient,   "upstream unavailable", s(5),      NO_USAGE),
    // --- xai (§14): {"code": "<gRPC phrase>", "error": "<text>"}
    row("xai", "success",                      Success,     "success",            NONE,        tok(15, 7)),
    row("xai", "stream_success",               Success,     "success",            NONE,        tok(15, 7)),
    row("xai", "rate_limit",                   RateLimited, "rate limited",       NONE,        NO_USAGE),
    row("xai", "credits_exhausted",            Fatal,       "credits exhausted",  NONE,        NO_USAGE),
    // A bad key is a 400.
    row("xai", "bad_key",                      Fatal,       "bad key",            NONE,        NO_USAGE),
    row("xai", "bad_request",                  Fatal,       "bad request",        NONE,        NO_USAGE),
    row("xai", "unknown_model",                Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("xai", "server_error",                 Transient,   "server error",       NONE,        NO_USAGE),
    row("xai", "stream_error",                 Transient,   "stream error",       NONE,        NO_USAGE),
    // --- cohere (§13): {"id", "message"}
    // usage.tokens (processed) before usage.billed_units.
    row("cohere", "success",                   Success,     "success",            NONE,        tok(71, 10)),
    row("cohere", "stream_success",            Success,     "success",            NONE,        tok(71, 10)),
    row("cohere", "stream_error",              Transient,   "stream error",       NONE,        NO_USAGE),
    row("cohere", "stream_timeout",            Transient,   "stream error",       NONE,        NO_USAGE),
    // x-ratelimit-reset in epoch seconds, 30 s after the response's date.
    row("cohere", "rate_limit_trial_minute",   RateLimited, "rate limited",       s(30),       NO_USAGE),
    row("cohere", "trial_monthly_cap",         Fatal,       "trial monthly cap",  NONE,        NO_USAGE),
    // 498 is Cohere's invalid token.
    row("cohere", "bad_key",                   Fatal,       "bad key",            NONE,        NO_USAGE),
    row("cohere", "unknown_model",             Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("cohere", "client_closed",             Transient,   "client closed",      NONE,        NO_USAGE),
    row("cohere", "unavailable",               Transient,   "server error",       NONE,        NO_USAGE),
    // --- vllm (§15)
    row("vllm", "success",                     Success,     "success",            NONE,        tok(20, 16)),
    row("vllm", "stream_success",              Success,     "success",            NONE,        tok(20, 16)),
    row("vllm", "stream_error",                Transient,   "stream error",       NONE,        NO_USAGE),
    row("vllm", "stream_finish_error",         Transient,   "stream error",       NONE,        NO_USAGE),
    row("vllm", "context_too_long",            Fatal,       "request too large",  NONE,        NO_USAGE),
    row("vllm", "bad_request_flat",            Fatal,       "bad request",        NONE,        NO_USAGE),
    row("vllm", "unknown_model",               Fatal,       "unknown model",      NONE,        NO_USAGE),
    row("vllm", "bad_key",                     Fatal,       "bad key",            NONE,        NO_USAGE),
    // vLLM has no rate limit of its own; a gateway in front of it answers 429 in HTML.
    row("vllm", "gateway_429_html",            RateLimited, "rate limited",       s(1),        NO_USAGE),
    row("vllm", "server_error",                Transient,   "server error",       NONE,        NO_USAGE),
    // --- ollama (§15)
    row("ollama", "success",                   Success,     "success",            NONE,        tok(26, 9)),
    row("ollama", "stream_success",            Success,     "success",            NONE,        tok(26, 9)),
    // The queue is full: the one 503 that fewer workers fix.
    row("ollama", "queue_full",                RateLimited, "queue full",         NONE,        NO_USAGE),
    row("ollama", "model_not_pulled",          Fatal,       "model not pulled",   NONE,        NO_USAGE),
    row("ollama", "bad_request",               Fatal,       "bad request",        NONE,        NO_USAGE),
    row("ollama", "server_error",              Transient,   "server error",       NONE,        NO_USAGE),
    row("ollama", "stream_error",              Transient,   "stream error",       NONE,        NO_USAGE),
];

/// The fixed clock of fixtures that carry no `date` header.
fn fixture_clock() -> SystemTime {
    httpdate::parse_http_date("Sat, 25 Jul 2026 12:00:00 GMT").unwrap()
}

fn fixture_path(provider: &str, fixture: &str) -> PathBuf {
    root()
        .join("tests/fixtures/providers")
        .join(provider)
        .join(format!("{fixture}.http"))
}

/// Reads a `.http` fixture: a status line, headers, a blank line, then the body bytes
/// exactly as sent. A `text/event-stream` body is also parsed into SSE events.
fn fixture(provider: &str, fixture: &str) -> ResponseData {
    let path = fixture_path(provider, fixture);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let split = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or_else(|| panic!("{}: no blank line after the headers", path.display()));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let body = Bytes::copy_from_slice(&raw[split + 2..]);
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}: bad status line", path.display()));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{}: bad header line `{line}`", path.display()));
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let is_sse = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let events = if is_sse { parse_sse(&body) } else { Vec::new() };
    let received_at = headers
        .get("date")
        .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
        .unwrap_or_else(fixture_clock);
    ResponseData {
        status: Some(status),
        headers,
        body,
        events,
        transport_error: None,
        received_at: Some(received_at),
    }
}

fn classifiers() -> BTreeMap<&'static str, Classifier> {
    let mut map = BTreeMap::new();
    for r in ROWS {
        map.entry(r.provider).or_insert_with(|| {
            Classifier::new(&provider(r.provider)).unwrap_or_else(|e| panic!("{e}"))
        });
    }
    map
}

#[test]
fn every_fixture_is_classified_as_the_reference_says() {
    let classifiers = classifiers();
    let mut failures = Vec::new();
    for r in ROWS {
        let c = &classifiers[r.provider];
        let resp = fixture(r.provider, r.fixture);
        let got = c.classify(&resp);
        let at = format!("{}/{}", r.provider, r.fixture);
        if (got.outcome, got.rule.as_ref()) != (r.outcome, r.rule) {
            failures.push(format!(
                "{at}: classified {} by rule `{}`, expected {} by rule `{}`",
                got.outcome, got.rule, r.outcome, r.rule
            ));
        }
        if r.outcome == Fatal && got.message.as_deref().unwrap_or("").is_empty() {
            failures.push(format!("{at}: a fatal outcome without a message"));
        }
        let hint = c.retry_hint(&resp);
        if hint != r.hint {
            failures.push(format!("{at}: retry hint {hint:?}, expected {:?}", r.hint));
        }
        let usage = c.usage(&resp);
        if usage != r.usage {
            failures.push(format!("{at}: usage {usage:?}, expected {:?}", r.usage));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// What the issue asks every vendor to show, where the vendor has the case.
#[test]
fn every_provider_has_the_cases_the_issue_asks_for() {
    let mut names: Vec<&str> = CATALOG.to_vec();
    names.extend(["openai", "anthropic"]);
    for name in names {
        let rows: Vec<&Row> = ROWS.iter().filter(|r| r.provider == name).collect();
        let has = |f: &dyn Fn(&Row) -> bool| rows.iter().any(|r| f(r));
        assert!(
            has(&|r| r.outcome == Success && !r.fixture.starts_with("stream")),
            "{name}: plain success"
        );
        assert!(
            has(&|r| r.outcome == Success && r.fixture.starts_with("stream")),
            "{name}: streamed success"
        );
        assert!(
            has(&|r| r.outcome != Success && r.fixture.starts_with("stream")),
            "{name}: mid-stream error"
        );
        assert!(has(&|r| r.outcome == RateLimited), "{name}: rate limit");
        // Ollama takes no key.
        if name != "ollama" {
            assert!(has(&|r| r.rule == "bad key"), "{name}: bad key");
        }
        assert!(
            has(&|r| r.outcome == Transient && !r.fixture.starts_with("stream")),
            "{name}: overload / server error"
        );
    }
}

/// Every fixture file is in the table, and every row has its file.
#[test]
fn fixtures_and_table_match() {
    let dir = root().join("tests/fixtures/providers");
    let mut on_disk = Vec::new();
    for p in std::fs::read_dir(&dir).unwrap() {
        let p = p.unwrap().path();
        for f in std::fs::read_dir(&p).unwrap() {
            let f = f.unwrap().path();
            on_disk.push(format!(
                "{}/{}",
                p.file_name().unwrap().to_string_lossy(),
                f.file_stem().unwrap().to_string_lossy()
            ));
        }
    }
    on_disk.sort();
    let mut in_table: Vec<String> = ROWS
        .iter()
        .map(|r| format!("{}/{}", r.provider, r.fixture))
        .collect();
    in_table.sort();
    assert_eq!(on_disk, in_table);
}

// ------------------------------------------------------------------ rate-limit buckets

fn bucket(
    kind: BucketKind,
    window_seconds: u32,
    limit: Option<f64>,
    remaining: Option<f64>,
    reset: Option<Duration>,
) -> BucketReading {
    BucketReading {
        kind,
        window_seconds,
        limit,
        remaining,
        reset,
    }
}

/// The vendors' headers, read with their real units.
#[test]
fn rate_limit_headers_are_read_in_each_vendors_units() {
    use BucketKind::{InputTokens, OutputTokens, Requests, Tokens};
    let cases: Vec<(&str, &str, Vec<BucketReading>)> = vec![
        // Groq: *-requests are per DAY, *-tokens per minute; Go durations.
        (
            "groq",
            "success",
            vec![
                bucket(Requests, 86400, Some(14400.0), Some(14370.0), ms(179_560)),
                bucket(Tokens, 60, Some(18000.0), Some(17997.0), ms(7660)),
            ],
        ),
        // Azure: OpenAI's names, integer seconds.
        (
            "azure-openai",
            "success",
            vec![
                bucket(Requests, 60, Some(100.0), Some(99.0), s(10)),
                bucket(Tokens, 60, Some(30000.0), Some(29000.0), s(59)),
            ],
        ),
        // Anthropic: RFC 3339, relative to the response's date (12:34:48 → 12:35:00).
        (
            "anthropic",
            "rate_limit",
            vec![
                bucket(Requests, 60, Some(50.0), Some(0.0), s(12)),
                bucket(InputTokens, 60, None, Some(28000.0), None),
                bucket(OutputTokens, 60, None, Some(8000.0), None),
            ],
        ),
        // Cohere: x-ratelimit-reset in epoch seconds.
        (
            "cohere",
            "rate_limit_trial_minute",
            vec![bucket(Requests, 60, None, None, s(30))],
        ),
        // Mistral: per-minute request and token headers, no reset.
        (
            "mistral",
            "success",
            vec![
                bucket(Requests, 60, Some(720.0), Some(719.0), None),
                bucket(Tokens, 60, Some(5_000_000.0), Some(4_999_911.0), None),
            ],
        ),
        (
            "mistral",
            "monthly_limit",
            vec![
                bucket(Tokens, 60, Some(500_000.0), Some(500_000.0), None),
                bucket(Tokens, 2_592_000, Some(1_000_000_000.0), Some(0.0), None),
            ],
        ),
        // Together: per-second request and token limits (unit unconfirmed).
        (
            "together",
            "success",
            vec![
                bucket(Requests, 1, Some(10.0), Some(9.0), s(1)),
                bucket(Tokens, 1, Some(200_000.0), Some(199_900.0), None),
            ],
        ),
        // Fireworks: the effective prompt / generated limits only.
        (
            "fireworks",
            "success",
            vec![
                bucket(InputTokens, 1, Some(6000.0), None, None),
                bucket(OutputTokens, 1, Some(1200.0), None, None),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (p, f, expected) in cases {
        let c = Classifier::new(&provider(p)).unwrap();
        // Buckets whose headers are all absent say nothing; they may or may not be listed.
        let got: Vec<BucketReading> = c
            .buckets(&fixture(p, f))
            .into_iter()
            .filter(|b| b.limit.is_some() || b.remaining.is_some() || b.reset.is_some())
            .collect();
        if got != expected {
            failures.push(format!(
                "{p}/{f}:\n  got      {got:?}\n  expected {expected:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ------------------------------------------------------------------ the files themselves

/// A 429 or 402 that stops the probe must tell the user that fewer workers will not
/// help; every fatal rule has a message.
#[test]
fn fatal_look_alikes_say_that_lowering_concurrency_will_not_help() {
    let mut names: Vec<&str> = CATALOG.to_vec();
    names.extend(["openai", "anthropic"]);
    for name in names {
        let p = provider(name);
        for (i, rule) in p.classify.iter().enumerate() {
            if rule.outcome != Fatal {
                continue;
            }
            let at = format!(
                "{name}: classify[{i}] `{}`",
                rule.name.as_deref().unwrap_or("")
            );
            let message = rule
                .message
                .as_deref()
                .unwrap_or_else(|| panic!("{at}: no message"));
            let statuses: Vec<u16> = rule
                .status
                .iter()
                .flat_map(|s| s.iter().map(|s| s.0))
                .collect();
            if statuses.iter().any(|s| [402, 429].contains(s)) {
                assert!(
                    message.contains("lowering concurrency will not help"),
                    "{at}: {message}"
                );
            }
        }
    }
}

/// Typical model names from the reference, and the one provider each picks (None: the
/// user must give --provider). No name may match two built-in providers.
#[test]
fn model_globs_of_built_in_providers_never_overlap() {
    let reg = Registry::builtin().unwrap();
    #[rustfmt::skip]
    let names: &[(&str, Option<&str>)] = &[
        ("gpt-4o", Some("openai")),
        ("gpt-4.1-mini", Some("openai")),
        ("o3-mini", Some("openai")),
        ("o4-mini", Some("openai")),
        ("claude-sonnet-4-5", Some("anthropic")),
        ("claude-3-5-haiku-latest", Some("anthropic")),
        ("gemini-2.5-flash", Some("gemini")),
        ("gemini-2.0-flash", Some("gemini")),
        ("mistral-small-latest", Some("mistral")),
        ("codestral-latest", Some("mistral")),
        ("llama-3.3-70b-versatile", Some("groq")),
        ("llama-3.1-8b-instant", Some("groq")),
        ("deepseek-chat", Some("deepseek")),
        ("deepseek-reasoner", Some("deepseek")),
        ("grok-4", Some("xai")),
        ("command-a-03-2025", Some("cohere")),
        ("sim-fast", Some("simulated")),
        // OpenRouter names are VENDOR/MODEL.
        ("openai/gpt-4o", Some("openrouter")),
        ("anthropic/claude-sonnet-4.5", Some("openrouter")),
        ("google/gemini-2.5-flash", Some("openrouter")),
        ("deepseek/deepseek-chat-v3-0324:free", Some("openrouter")),
        // Slashed names of other hosts go to OpenRouter too: Together, Fireworks and
        // Groq users of these models pass --provider.
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", Some("openrouter")),
        ("deepseek-ai/DeepSeek-V3", Some("openrouter")),
        ("accounts/fireworks/models/llama-v3p1-8b-instruct", Some("openrouter")),
        // Azure deployment names, local servers' names: --provider.
        ("my-gpt4o-deployment", None),
        ("llama3.2", None),
        ("qwen2.5:7b", None),
        ("deepseek-r1:7b", None),
        ("mistral", None),
    ];
    let mut failures = Vec::new();
    for (model, expected) in names {
        let got = reg.for_model(model).map(|e| e.provider.name.as_str());
        match (got, expected) {
            (Ok(g), Some(e)) if g == *e => {}
            (Err(find_workers_limit::config::registry::ChoiceError::NoMatch { .. }), None) => {}
            (got, _) => failures.push(format!("{model}: {got:?}, expected {expected:?}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Only Azure reads a variable of the environment in its templates (its endpoint).
#[test]
fn only_azure_needs_an_environment_variable() {
    for name in CATALOG {
        let env: Vec<String> = template::env_names(&provider(name)).into_iter().collect();
        let expected: Vec<&str> = if *name == "azure-openai" {
            vec!["AZURE_OPENAI_ENDPOINT"]
        } else {
            vec![]
        };
        assert_eq!(env, expected, "{name}");
    }
}

/// Each provider's request as the vendor expects it, plain and streamed.
#[test]
fn requests_render_as_each_vendor_expects() {
    fn render(name: &str, model: &str, stream: bool) -> (String, Vec<(String, String)>, Value) {
        let p = provider(name);
        let mut vars = Vars {
            model: model.into(),
            prompt: "hi".into(),
            max_tokens: 16,
            api_key: "KEY".into(),
            base_url: String::new(),
            stream,
            env: BTreeMap::from([(
                "AZURE_OPENAI_ENDPOINT".to_string(),
                "https://res.openai.azure.com".to_string(),
            )]),
        };
        vars.base_url = template::render_str(&p.base_url, &vars).unwrap();
        let r = template::render_request(&p, &vars).unwrap();
        (r.url.clone(), r.headers.clone(), r.body.clone())
    }
    let bearer = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = vec![
            ("Authorization".into(), "Bearer KEY".into()),
            ("Content-Type".into(), "application/json".into()),
        ];
        h.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        h
    };
    let chat = |model: &str, max_field: &str| -> Value {
        let mut b = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        b[max_field] = json!(16);
        b
    };
    let with = |mut b: Value, extra: Value| -> Value {
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let usage_opt = json!({"stream": true, "stream_options": {"include_usage": true}});
    let stream_only = json!({"stream": true});

    // Azure: deployment in the path, fixed api-version, api-key header, no `model`.
    let (url, headers, body) = render("azure-openai", "my-deployment", false);
    assert_eq!(
        url,
        "https://res.openai.azure.com/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        headers,
        vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("api-key".to_string(), "KEY".to_string()),
        ]
    );
    let azure_body =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 16});
    assert_eq!(body, azure_body);
    assert_eq!(
        render("azure-openai", "my-deployment", true).2,
        with(azure_body, usage_opt.clone())
    );

    // Gemini native: the method in the path switches with streaming; x-goog-api-key.
    let (url, headers, body) = render("gemini", "gemini-2.5-flash", false);
    assert_eq!(
        url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        headers,
        vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("x-goog-api-key".to_string(), "KEY".to_string()),
        ]
    );
    let gemini_body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 16}});
    assert_eq!(body, gemini_body);
    let (url, _, body) = render("gemini", "gemini-2.5-flash", true);
    assert_eq!(
        url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        body, gemini_body,
        "streaming is chosen by the path, not the body"
    );

    // Cohere v2 chat.
    let (url, headers, body) = render("cohere", "command-a-03-2025", true);
    assert_eq!(url, "https://api.cohere.com/v2/chat");
    assert_eq!(headers, bearer(&[]));
    assert_eq!(
        body,
        with(chat("command-a-03-2025", "max_tokens"), stream_only.clone())
    );

    // Ollama: no key, no Authorization header.
    let (url, headers, _) = render("ollama", "llama3.2", false);
    assert_eq!(url, "http://localhost:11434/v1/chat/completions");
    assert_eq!(
        headers,
        vec![("Content-Type".to_string(), "application/json".to_string())]
    );

    // The OpenAI-compatible ones: URL, the max-tokens field, what streaming adds.
    #[rustfmt::skip]
    let table: &[(&str, &str, &str, &str, &Value)] = &[
        ("gemini-openai", "gemini-2.5-flash", "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions", "max_tokens", &usage_opt),
        // Mistral refuses stream_options (422): usage comes by default.
        ("mistral", "mistral-small-latest", "https://api.mistral.ai/v1/chat/completions", "max_tokens", &stream_only),
        // Groq sends x_groq.usage without being asked.
        ("groq", "llama-3.3-70b-versatile", "https://api.groq.com/openai/v1/chat/completions", "max_completion_tokens", &stream_only),
        ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "https://api.together.xyz/v1/chat/completions", "max_tokens", &stream_only),
        ("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct", "https://api.fireworks.ai/inference/v1/chat/completions", "max_tokens", &stream_only),
        ("deepseek", "deepseek-chat", "https://api.deepseek.com/chat/completions", "max_tokens", &usage_opt),
        ("openrouter", "openai/gpt-4o", "https://openrouter.ai/api/v1/chat/completions", "max_tokens", &usage_opt),
        ("xai", "grok-4", "https://api.x.ai/v1/chat/completions", "max_tokens", &stream_only),
        ("vllm", "Qwen/Qwen2.5-7B-Instruct", "http://localhost:8000/v1/chat/completions", "max_tokens", &usage_opt),
        ("ollama", "llama3.2", "http://localhost:11434/v1/chat/completions", "max_tokens", &usage_opt),
    ];
    for (name, model, expected_url, max_field, stream_extra) in table {
        let (url, headers, body) = render(name, model, false);
        assert_eq!(&url, expected_url, "{name}");
        if *name != "ollama" {
            assert_eq!(headers, bearer(&[]), "{name}");
        }
        assert_eq!(body, chat(model, max_field), "{name}");
        let (url, _, body) = render(name, model, true);
        assert_eq!(&url, expected_url, "{name} streamed");
        assert_eq!(
            body,
            with(chat(model, max_field), (*stream_extra).clone()),
            "{name} streamed"
        );
    }
}

// ------------------------------------------------------------------ the binary

fn bin(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap()
}

#[test]
fn validate_accepts_every_built_in_file() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("providers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .map(|f| format!("providers/{f}"))
        .collect();
    files.sort();
    for name in CATALOG {
        assert!(
            files.contains(&format!("providers/{name}.yaml")),
            "{name}.yaml is missing"
        );
    }
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = bin(&args, root());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let expected: String = files
        .iter()
        .map(|f| format!("ok: {f} (provider)\n"))
        .collect();
    assert_eq!(stderr, expected);
}

/// `providers` lists every built-in file with its source, one exact line each under a
/// header; the model globs last, so a long list does not push the other columns.
const PROVIDERS_LISTING: &str = "\
provider       key                   file                                     models
anthropic      ANTHROPIC_API_KEY     built-in (providers/anthropic.yaml)      claude-*
azure-openai   AZURE_OPENAI_API_KEY  built-in (providers/azure-openai.yaml)   (none: chosen with --provider)
cohere         CO_API_KEY            built-in (providers/cohere.yaml)         command-*
deepseek       DEEPSEEK_API_KEY      built-in (providers/deepseek.yaml)       deepseek-chat*, deepseek-reasoner*
fireworks      FIREWORKS_API_KEY     built-in (providers/fireworks.yaml)      (none: chosen with --provider)
gemini         GEMINI_API_KEY        built-in (providers/gemini.yaml)         gemini-*
gemini-openai  GEMINI_API_KEY        built-in (providers/gemini-openai.yaml)  (none: chosen with --provider)
groq           GROQ_API_KEY          built-in (providers/groq.yaml)           llama-*-versatile, llama-*-instant
mistral        MISTRAL_API_KEY       built-in (providers/mistral.yaml)        mistral-*, open-mistral-*, open-mixtral-*, codestral-*, ministral-*, pixtral-*, magistral-*, devstral-*
ollama         (no key)              built-in (providers/ollama.yaml)         (none: chosen with --provider)
openai         OPENAI_API_KEY        built-in (providers/openai.yaml)         gpt-*, o1*, o3*, o4*, chatgpt-*
openrouter     OPENROUTER_API_KEY    built-in (providers/openrouter.yaml)     */*
simulated      SIMULATED_API_KEY     built-in (providers/simulated.yaml)      sim-*
together       TOGETHER_API_KEY      built-in (providers/together.yaml)       (none: chosen with --provider)
vllm           VLLM_API_KEY          built-in (providers/vllm.yaml)           (none: chosen with --provider)
xai            XAI_API_KEY           built-in (providers/xai.yaml)            grok-*
";

#[test]
fn providers_lists_every_built_in_file_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin(&["providers"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), PROVIDERS_LISTING);
    // Every shipped file is in the listing.
    for e in std::fs::read_dir(root().join("providers")).unwrap() {
        let f = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            PROVIDERS_LISTING.contains(&format!("built-in (providers/{f})")),
            "{f}"
        );
    }
}

/// A user file with a built-in's name, in a --providers-dir, replaces it, and says so.
#[test]
fn a_user_file_in_providers_dir_replaces_the_built_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("my-groq.yaml");
    let text = std::fs::read_to_string(root().join("providers/groq.yaml"))
        .unwrap()
        .replace(
            "models: [\"llama-*-versatile\", \"llama-*-instant\"]",
            "models: [\"my-llama-*\"]",
        );
    std::fs::write(&mine, text).unwrap();
    let out = bin(
        &["providers", "--providers-dir", dir.path().to_str().unwrap()],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let groq_line = stdout.lines().find(|l| l.starts_with("groq ")).unwrap();
    // The file column is as wide as its widest entry, this one.
    assert_eq!(
        groq_line,
        format!(
            "groq           GROQ_API_KEY          {} (replaces built-in (providers/groq.yaml))  my-llama-*",
            mine.display()
        )
    );
    assert_eq!(stdout.lines().count(), PROVIDERS_LISTING.lines().count());
}
