//! The field cases of `shared/cases/responses.md` (R1–R14), each with its exact expected
//! value, classified by the real provider files `providers/openai.yaml` and
//! `providers/anthropic.yaml`; then the provider files checked against the reference
//! (`shared/reference/providers.md` §2, §4, §16).

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use find_workers_limit::classify::{
    parse_sse, BucketReading, Classified, Classifier, ResponseData, Usage,
};
use find_workers_limit::config::load_provider;
use find_workers_limit::config::provider::{BucketKind, Outcome, Provider};
use http::{HeaderMap, HeaderName, HeaderValue};

fn provider(name: &str) -> Provider {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("providers")
        .join(format!("{name}.yaml"));
    load_provider(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn classifier(name: &str) -> Classifier {
    Classifier::new(&provider(name)).unwrap()
}

/// The moment the responses of these cases arrive (their `date`, when they have one).
const DATE: &str = "Sat, 25 Jul 2026 12:04:30 GMT";

fn received_at() -> SystemTime {
    httpdate::parse_http_date(DATE).unwrap()
}

fn response(status: u16, headers: &[(&str, &str)], body: &str) -> ResponseData {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    ResponseData {
        status: Some(status),
        headers: map,
        body: Bytes::copy_from_slice(body.as_bytes()),
        events: Vec::new(),
        transport_error: None,
        received_at: Some(received_at()),
    }
}

/// A 200 `text/event-stream` response, its events parsed as the engine parses them.
fn stream(body: &str) -> ResponseData {
    let mut r = response(200, &[("content-type", "text/event-stream")], body);
    r.events = parse_sse(body.as_bytes());
    r
}

fn decided(outcome: Outcome, rule: &str, message: Option<&str>) -> Classified {
    Classified {
        outcome,
        rule: rule.into(),
        message: message.map(str::to_string),
    }
}

const BOTH: [&str; 2] = ["openai", "anthropic"];

const OPENAI_429: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o on requests per min (RPM): Limit 500, Used 500, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
const ANTHROPIC_429: &str = r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your account's rate limit. Please try again later."},"request_id":"req_011C"}"#;

fn rate_limit_body(vendor: &str) -> &'static str {
    if vendor == "openai" {
        OPENAI_429
    } else {
        ANTHROPIC_429
    }
}

/// A 429 decided by the vendor's plain `rate limited` rule, its body kept as a snippet.
fn rate_limited(body: &str) -> Classified {
    decided(
        Outcome::RateLimited,
        "rate limited",
        Some(&format!("HTTP 429 (rate limited): {body}")),
    )
}

#[test]
fn r01_http_date_retry_after() {
    for vendor in BOTH {
        let c = classifier(vendor);
        let body = rate_limit_body(vendor);
        let r = response(
            429,
            &[
                ("retry-after", "Sat, 25 Jul 2026 12:05:00 GMT"),
                ("date", DATE),
            ],
            body,
        );
        assert_eq!(c.classify(&r), rate_limited(body), "{vendor}");
        assert_eq!(c.retry_hint(&r), Some(Duration::from_secs(30)), "{vendor}");

        // Relative to the response's date, not to when it was read: an hour late, still 30 s.
        let mut late = r.clone();
        late.received_at = Some(received_at() + Duration::from_secs(3600));
        assert_eq!(
            c.retry_hint(&late),
            Some(Duration::from_secs(30)),
            "{vendor} late"
        );

        // No `date` header: relative to when the response arrived.
        let r = response(
            429,
            &[("retry-after", "Sat, 25 Jul 2026 12:05:00 GMT")],
            body,
        );
        assert_eq!(
            c.retry_hint(&r),
            Some(Duration::from_secs(30)),
            "{vendor} no date"
        );

        // A date in the past means 0.
        let r = response(
            429,
            &[
                ("retry-after", "Sat, 25 Jul 2026 12:04:00 GMT"),
                ("date", DATE),
            ],
            body,
        );
        assert_eq!(c.retry_hint(&r), Some(Duration::ZERO), "{vendor} past");
    }
}

#[test]
fn r02_fractional_retry_after() {
    for vendor in BOTH {
        let c = classifier(vendor);
        let body = rate_limit_body(vendor);
        let r = response(429, &[("retry-after", "0.503")], body);
        assert_eq!(c.classify(&r), rate_limited(body), "{vendor}");
        assert_eq!(
            c.retry_hint(&r),
            Some(Duration::from_millis(503)),
            "{vendor}"
        );
    }
    // OpenAI reads `retry-after-ms` first, fractions too.
    let c = classifier("openai");
    let r = response(
        429,
        &[("retry-after-ms", "503.5"), ("retry-after", "2")],
        OPENAI_429,
    );
    assert_eq!(c.retry_hint(&r), Some(Duration::from_micros(503_500)));
}

#[test]
fn r03_invalid_retry_after_is_ignored() {
    for vendor in BOTH {
        let c = classifier(vendor);
        let body = rate_limit_body(vendor);
        for bad in ["-5", "NaN", "soon"] {
            let r = response(429, &[("retry-after", bad)], body);
            assert_eq!(c.classify(&r), rate_limited(body), "{vendor} {bad}");
            // No hint: the probe uses its default cooldown.
            assert_eq!(c.retry_hint(&r), None, "{vendor} {bad}");
        }
    }
    // An invalid first source falls through to the next valid one.
    let c = classifier("openai");
    let r = response(
        429,
        &[
            ("retry-after-ms", "NaN"),
            ("retry-after", "-5"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1.5s"),
        ],
        OPENAI_429,
    );
    assert_eq!(c.retry_hint(&r), Some(Duration::from_millis(1500)));
    let r = response(
        429,
        &[("retry-after-ms", "soon"), ("retry-after", "2")],
        OPENAI_429,
    );
    assert_eq!(c.retry_hint(&r), Some(Duration::from_secs(2)));
}

#[test]
fn r04_exhausted_bucket_reset_without_retry_after() {
    let c = classifier("anthropic");
    let headers = [
        ("date", DATE),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2026-07-25T12:04:42Z"),
        // Not exhausted: its later reset does not count.
        ("anthropic-ratelimit-tokens-limit", "80000"),
        ("anthropic-ratelimit-tokens-remaining", "28000"),
        ("anthropic-ratelimit-tokens-reset", "2026-07-25T12:05:30Z"),
    ];
    let r = response(429, &headers, ANTHROPIC_429);
    assert_eq!(c.classify(&r), rate_limited(ANTHROPIC_429));
    assert_eq!(c.retry_hint(&r), Some(Duration::from_secs(12)));
    assert_eq!(
        c.buckets(&r),
        vec![
            BucketReading {
                kind: BucketKind::Requests,
                window_seconds: 60,
                limit: Some(50.0),
                remaining: Some(0.0),
                reset: Some(Duration::from_secs(12))
            },
            BucketReading {
                kind: BucketKind::Tokens,
                window_seconds: 60,
                limit: Some(80000.0),
                remaining: Some(28000.0),
                reset: Some(Duration::from_secs(60))
            },
        ]
    );
    // Two exhausted buckets: the longest reset.
    let mut both = headers.to_vec();
    both[5] = ("anthropic-ratelimit-tokens-remaining", "0");
    let r = response(429, &both, ANTHROPIC_429);
    assert_eq!(c.retry_hint(&r), Some(Duration::from_secs(60)));
    // A valid retry-after wins over the buckets.
    let mut with_hint = headers.to_vec();
    with_hint.push(("retry-after", "3"));
    assert_eq!(
        c.retry_hint(&response(429, &with_hint, ANTHROPIC_429)),
        Some(Duration::from_secs(3))
    );
}

#[test]
fn r05_go_duration_resets() {
    let c = classifier("openai");
    for (value, expected) in [
        ("17ms", Duration::from_millis(17)),
        ("6m0s", Duration::from_secs(360)),
        ("1.5s", Duration::from_millis(1500)),
        ("23h47m36.648s", Duration::from_millis(85_656_648)),
        ("1ms", Duration::from_millis(1)),
    ] {
        let r = response(
            200,
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", value),
            ],
            "",
        );
        assert_eq!(
            c.buckets(&r),
            vec![BucketReading {
                kind: BucketKind::Requests,
                window_seconds: 60,
                limit: None,
                remaining: Some(0.0),
                reset: Some(expected)
            }],
            "{value}"
        );
        // The exhausted bucket's reset is the retry hint when there is no retry-after.
        assert_eq!(c.retry_hint(&r), Some(expected), "{value}");
    }
    // The reference's full header set, for the report.
    let headers = [
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "497"),
        ("x-ratelimit-reset-requests", "360ms"),
        ("x-ratelimit-limit-tokens", "30000"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "1.2s"),
        ("retry-after", "2"),
        ("x-request-id", "req_1"),
    ];
    let r = response(429, &headers, OPENAI_429);
    let expected: std::collections::BTreeMap<String, String> = headers[..7]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(c.rate_limit_headers(&r), expected);
    assert_eq!(c.retry_hint(&r), Some(Duration::from_secs(2)));
    let without_retry_after = response(429, &headers[..6], OPENAI_429);
    assert_eq!(
        c.retry_hint(&without_retry_after),
        Some(Duration::from_millis(1200))
    );
}

const QUOTA_MESSAGE: &str = "OpenAI quota exhausted (insufficient_quota / billing or spend limit): the account has no quota left; lowering concurrency will not help";

#[test]
fn r06_insufficient_quota_is_fatal() {
    let c = classifier("openai");
    let legacy = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    let verdict = c.classify(&response(429, &[], legacy));
    assert_eq!(
        verdict,
        decided(Outcome::Fatal, "quota exhausted", Some(QUOTA_MESSAGE))
    );
    let message = verdict.message.unwrap();
    assert!(
        message.contains("quota exhausted")
            && message.contains("lowering concurrency will not help"),
        "{message}"
    );
    // The current codes, with or without the legacy type.
    for code in [
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    ] {
        for kind in ["insufficient_quota", "billing"] {
            let body = format!(
                r#"{{"error":{{"message":"…","type":"{kind}","param":null,"code":"{code}"}}}}"#
            );
            assert_eq!(
                c.classify(&response(429, &[], &body)),
                decided(Outcome::Fatal, "quota exhausted", Some(QUOTA_MESSAGE)),
                "{code} {kind}"
            );
        }
    }
    let only_type =
        r#"{"error":{"message":"…","type":"insufficient_quota","param":null,"code":null}}"#;
    assert_eq!(
        c.classify(&response(429, &[], only_type)).outcome,
        Outcome::Fatal
    );
}

#[test]
fn r07_bad_request_echoing_429_is_fatal() {
    let body = r#"{"error":{"message":"Invalid prompt: token ids [9906, 429, 1234] are out of range (rate limit 429?)","type":"invalid_request_error","param":"messages","code":null}}"#;
    assert_eq!(
        classifier("openai").classify(&response(400, &[], body)),
        decided(Outcome::Fatal, "bad request", Some("OpenAI refused the request as invalid (400): check the model, prompt and max_tokens"))
    );
    let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.0.content: token ids [9906, 429, 1234] rate_limit_error"}}"#;
    assert_eq!(
        classifier("anthropic").classify(&response(400, &[], body)),
        decided(Outcome::Fatal, "bad request", Some("Anthropic refused the request as invalid (400; a user-set spend limit also answers 400)"))
    );
}

const WORDS: &str = "I can generate a separate, accurate answer. Words like rate limit, 429, error, overloaded_error, Overloaded and rate_limit_error are only text.";

#[test]
fn r08_success_is_not_guessed_from_words() {
    let openai = format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{WORDS}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}}}"#
    );
    let anthropic = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","content":[{{"type":"text","text":"{WORDS}"}}],"stop_reason":"end_turn","usage":{{"input_tokens":12,"output_tokens":30}}}}"#
    );
    for (vendor, body) in [("openai", openai), ("anthropic", anthropic)] {
        let c = classifier(vendor);
        let r = response(200, &[("content-type", "application/json")], &body);
        assert_eq!(
            c.classify(&r),
            decided(Outcome::Success, "success", None),
            "{vendor}"
        );
        assert_eq!(
            c.usage(&r),
            Usage {
                input_tokens: Some(12),
                output_tokens: Some(30)
            },
            "{vendor}"
        );
        assert_eq!(c.retry_hint(&r), None, "{vendor}");
    }
    // The same words streamed.
    let openai = stream(&format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{WORDS}\"}}}}],\"usage\":null}}\n\n\
         data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":30}}}}\n\n\
         data: [DONE]\n\n"
    ));
    let anthropic = stream(&format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":12,\"output_tokens\":1}}}}}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{WORDS}\"}}}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":30}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    ));
    for (vendor, r) in [("openai", openai), ("anthropic", anthropic)] {
        let c = classifier(vendor);
        assert_eq!(
            c.classify(&r),
            decided(Outcome::Success, "success", None),
            "{vendor} stream"
        );
        assert_eq!(
            c.usage(&r),
            Usage {
                input_tokens: Some(12),
                output_tokens: Some(30)
            },
            "{vendor} stream"
        );
    }
}

#[test]
fn r09_anthropic_529_overloaded_is_transient() {
    let c = classifier("anthropic");
    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
    let r = response(529, &[], body);
    assert_eq!(
        c.classify(&r),
        decided(
            Outcome::Transient,
            "overloaded",
            Some(&format!("HTTP 529 (overloaded): {body}"))
        )
    );
    // The `api_error` + "Overloaded" form, at any status.
    let body =
        r#"{"type":"error","error":{"details":null,"type":"api_error","message":"Overloaded"}}"#;
    for status in [500, 200] {
        let r = response(status, &[], body);
        assert_eq!(
            c.classify(&r),
            decided(
                Outcome::Transient,
                "overloaded",
                Some(&format!("HTTP {status} (overloaded): {body}"))
            ),
            "{status}"
        );
    }
}

const ANTHROPIC_DELTAS: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n";

const OPENAI_DELTAS: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n\
: keep-alive\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}}],\"usage\":null}\n\n";

#[test]
fn r10_rate_limit_error_inside_a_200_stream() {
    let c = classifier("anthropic");
    let error = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}}"#;
    let r = stream(&format!(
        "{ANTHROPIC_DELTAS}event: error\ndata: {error}\n\n"
    ));
    assert_eq!(r.events.len(), 6);
    assert_eq!(
        c.classify(&r),
        decided(
            Outcome::RateLimited,
            "stream rate limit",
            Some(&format!("HTTP 200 (stream rate limit): {error}"))
        )
    );
    assert_eq!(
        c.usage(&r),
        Usage {
            input_tokens: Some(12),
            output_tokens: Some(1)
        }
    );

    let c = classifier("openai");
    for error in [
        r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","param":null,"code":null}}"#,
        r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        r#"{"error":{"message":"Too fast","type":"rate_limit_error","param":null,"code":"slow_down"}}"#,
    ] {
        let r = stream(&format!("{OPENAI_DELTAS}data: {error}\n\n"));
        assert_eq!(r.events.len(), 3);
        assert_eq!(
            c.classify(&r),
            decided(
                Outcome::RateLimited,
                "stream rate limit",
                Some(&format!("HTTP 200 (stream rate limit): {error}"))
            ),
            "{error}"
        );
    }
    // The stream was cut right after the error event: still rate limited, not a network error.
    let mut cut = stream(&format!(
        "{ANTHROPIC_DELTAS}event: error\ndata: {}",
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}}"#
    ));
    cut.transport_error = Some("connection reset".into());
    assert_eq!(
        classifier("anthropic").classify(&cut).outcome,
        Outcome::RateLimited
    );
}

#[test]
fn r11_overloaded_error_inside_a_200_stream() {
    let error = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let r = stream(&format!(
        "{ANTHROPIC_DELTAS}event: error\ndata: {error}\n\n"
    ));
    assert_eq!(
        classifier("anthropic").classify(&r),
        decided(
            Outcome::Transient,
            "stream overloaded",
            Some(&format!("HTTP 200 (stream overloaded): {error}"))
        )
    );
    let error = r#"{"error":{"message":"The server is overloaded","type":"service_unavailable_error","param":null,"code":"server_is_overloaded"}}"#;
    let r = stream(&format!("{OPENAI_DELTAS}data: {error}\n\n"));
    assert_eq!(
        classifier("openai").classify(&r),
        decided(
            Outcome::Transient,
            "stream overloaded",
            Some(&format!("HTTP 200 (stream overloaded): {error}"))
        )
    );
}

#[test]
fn r12_plain_text_429_with_a_json_content_type() {
    for vendor in BOTH {
        let r = response(
            429,
            &[("content-type", "application/json")],
            "Too many requests",
        );
        assert_eq!(
            classifier(vendor).classify(&r),
            decided(
                Outcome::RateLimited,
                "rate limited",
                Some("HTTP 429 (rate limited): Too many requests")
            ),
            "{vendor}"
        );
        assert_eq!(classifier(vendor).usage(&r), Usage::default());
    }
}

#[test]
fn r13_html_429_from_a_gateway() {
    let nginx = "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    for vendor in BOTH {
        let r = response(
            429,
            &[("content-type", "text/html"), ("server", "nginx")],
            nginx,
        );
        assert_eq!(
            classifier(vendor).classify(&r),
            decided(
                Outcome::RateLimited,
                "rate limited",
                Some("HTTP 429 (rate limited): <html> <head><title>429 Too Many Requests</title></head> <body> <center><h1>429 Too Many Requests</h1></center> <hr><center>nginx</center> </body> </html>")
            ),
            "{vendor}"
        );
    }
}

#[test]
fn r14_hostile_prompt_is_sent_byte_for_byte() {
    use find_workers_limit::template::{render_request, Vars};
    let prompt = "Say \"hello world\"\\\n\t{{ not a template }} 🦀";
    for (vendor, pointer) in [
        ("openai", "/messages/0/content"),
        ("anthropic", "/messages/0/content"),
    ] {
        for stream in [false, true] {
            let vars = Vars {
                model: "some-model".into(),
                prompt: prompt.into(),
                max_tokens: 64,
                api_key: "sk-test".into(),
                base_url: "http://127.0.0.1:1".into(),
                stream,
                env: Default::default(),
            };
            let request = render_request(&provider(vendor), &vars).unwrap();
            let parsed: serde_json::Value = serde_json::from_slice(&request.body_bytes).unwrap();
            assert_eq!(
                parsed.pointer(pointer).and_then(|v| v.as_str()),
                Some(prompt),
                "{vendor}"
            );
            assert_eq!(
                serde_json::to_vec(&parsed).unwrap(),
                request.body_bytes.to_vec(),
                "{vendor}: not byte for byte"
            );
            let escaped = serde_json::to_string(prompt).unwrap();
            assert!(
                String::from_utf8(request.body_bytes.to_vec())
                    .unwrap()
                    .contains(&escaped),
                "{vendor}"
            );
        }
    }
}

/// The provider files against the reference: (status, body, outcome, rule).
fn check_table(vendor: &str, table: &[(u16, &str, Outcome, &str)]) {
    let c = classifier(vendor);
    for (status, body, outcome, rule) in table {
        let got = c.classify(&response(*status, &[], body));
        assert_eq!(
            (got.outcome, got.rule.as_ref()),
            (*outcome, *rule),
            "{vendor} {status} {body}"
        );
        if *outcome == Outcome::Fatal {
            assert!(
                got.message.is_some_and(|m| !m.is_empty()),
                "{vendor} {status}: a fatal outcome needs a message"
            );
        }
    }
}

#[test]
fn openai_rules_follow_the_reference() {
    use Outcome::*;
    check_table(
        "openai",
        &[
            (429, OPENAI_429, RateLimited, "rate limited"),
            (
                429,
                r#"{"error":{"message":"Too fast","type":"rate_limit_error","param":null,"code":"slow_down"}}"#,
                RateLimited,
                "rate limited",
            ),
            (
                429,
                r#"{"error":{"message":"You exceeded your current quota…","type":"insufficient_quota","param":null,"code":"credit_balance_exhausted"}}"#,
                Fatal,
                "quota exhausted",
            ),
            (
                429,
                r#"{"error":{"message":"Request too large for gpt-4o in organization org-X on tokens per min (TPM): Limit 30000, Requested 31538.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
                Fatal,
                "request too large",
            ),
            (
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-4o on requests per day (RPD): Limit 10000, Used 10000","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                Fatal,
                "per-day limit",
            ),
            (
                503,
                r#"{"error":{"message":"…","type":"service_unavailable_error","param":null,"code":"server_is_overloaded"}}"#,
                Transient,
                "overloaded",
            ),
            (
                503,
                "The engine is currently overloaded, please try again later",
                Transient,
                "overloaded",
            ),
            (500, "", Transient, "overloaded"),
            (501, "", Transient, "unmatched 5xx"),
            (408, "", Transient, "timeout or conflict"),
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided: sk-…","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
                Fatal,
                "bad key",
            ),
            (
                403,
                r#"{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported"}}"#,
                Fatal,
                "bad key",
            ),
            (
                404,
                r#"{"error":{"message":"The model `gpt-9` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
                Fatal,
                "unknown model",
            ),
            (418, "I'm a teapot", Fatal, "unmatched"),
            (200, r#"{"choices":[]}"#, Success, "success"),
        ],
    );
    // An `event: error` without an `error` key still is an error, not a success.
    let r = stream(&format!(
        "{OPENAI_DELTAS}event: error\ndata: {{\"type\":\"error\",\"code\":\"server_error\"}}\n\n"
    ));
    assert_eq!(
        classifier("openai").classify(&r).rule.as_ref(),
        "stream error"
    );
}

#[test]
fn anthropic_rules_follow_the_reference() {
    use Outcome::*;
    check_table(
        "anthropic",
        &[
            (429, ANTHROPIC_429, RateLimited, "rate limited"),
            (
                429,
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"You have reached your API usage limits…","details":{"error_code":"enforced_spend_limit_reached"}},"request_id":"req_1"}"#,
                Fatal,
                "spend limit",
            ),
            (
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                Transient,
                "overloaded",
            ),
            (
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
                Transient,
                "server error",
            ),
            (
                504,
                r#"{"type":"error","error":{"type":"timeout_error","message":"Request timeout"}}"#,
                Transient,
                "server error",
            ),
            (
                409,
                r#"{"type":"error","error":{"type":"conflict_error","message":"Conflict"}}"#,
                Transient,
                "timeout or conflict",
            ),
            (
                402,
                r#"{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low"}}"#,
                Fatal,
                "billing",
            ),
            (
                401,
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
                Fatal,
                "bad key",
            ),
            (
                403,
                r#"{"type":"error","error":{"type":"permission_error","message":"…"}}"#,
                Fatal,
                "bad key",
            ),
            (
                404,
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-9"}}"#,
                Fatal,
                "unknown model",
            ),
            (
                413,
                r#"{"type":"error","error":{"type":"request_too_large","message":"…"}}"#,
                Fatal,
                "request too large",
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified workspace API usage limits."}}"#,
                Fatal,
                "bad request",
            ),
            (
                200,
                r#"{"type":"message","content":[]}"#,
                Success,
                "success",
            ),
        ],
    );
    // A stream error event of an unknown type is transient, not a success.
    let r = stream(&format!("{ANTHROPIC_DELTAS}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"new_error\"}}}}\n\n"));
    assert_eq!(
        classifier("anthropic").classify(&r),
        decided(
            Outcome::Transient,
            "stream error",
            Some(r#"HTTP 200 (stream error): {"type":"error","error":{"type":"new_error"}}"#)
        )
    );
}

#[test]
fn simulated_provider_keeps_step_with_openai() {
    let openai = provider("openai");
    let simulated = provider("simulated");
    let rules = |p: &Provider| {
        p.classify
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.outcome,
                    serde_json::to_value(&r.status).unwrap(),
                    serde_json::to_value(&r.json).unwrap(),
                    serde_json::to_value(&r.sse).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(rules(&openai), rules(&simulated));
}

/// From the newcomer trial: a base URL without `/v1` answers 404 for the path, which is
/// not an unknown model; the message must point at the base URL.
#[test]
fn openai_404_for_a_wrong_path_names_the_base_url_not_the_model() {
    let body = r#"{"error":{"message":"Invalid URL (POST /chat/completions)","type":"invalid_request_error","param":null,"code":null}}"#;
    assert_eq!(
        classifier("openai").classify(&response(404, &[], body)),
        decided(
            Outcome::Fatal,
            "not found",
            Some("OpenAI answered 404 Not Found for the request path: check --base-url (OpenAI's ends in /v1, e.g. https://api.openai.com/v1)")
        )
    );
    let body = r#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
    assert_eq!(
        classifier("openai").classify(&response(404, &[], body)),
        decided(
            Outcome::Fatal,
            "unknown model",
            Some("OpenAI does not know this model (404 model_not_found): check --model")
        )
    );
}
