//! Hostile responses against every built-in provider's rules: an arbitrary status,
//! headers and body (plain or SSE) must classify, give usage, a retry hint and buckets
//! without a panic.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use find_workers_limit::classify::{parse_sse, Classifier, ResponseData, MAX_HINT};
use find_workers_limit::config::registry::Registry;
use libfuzzer_sys::fuzz_target;

fn classifiers() -> &'static Vec<Classifier> {
    static C: OnceLock<Vec<Classifier>> = OnceLock::new();
    C.get_or_init(|| {
        let reg = Registry::builtin().expect("built-in providers load");
        reg.entries()
            .iter()
            .map(|e| Classifier::new(&e.provider).expect("rules compile"))
            .collect()
    })
}

/// Header names the built-in providers read: a fuzzed header gets one of these names.
const NAMES: &[&str] = &[
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-reset",
    "x-ratelimit-reset",
    "x-ratelimitbysize-remaining-month",
    "content-type",
    "date",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = 100 + u16::from_le_bytes([data[0], data[1]]) % 500;
    let header_count = (data[2] % 4) as usize;
    let mut rest = &data[3..];
    let mut headers = http::HeaderMap::new();
    for _ in 0..header_count {
        // name selector, length, value bytes
        let [sel, len, tail @ ..] = rest else { break };
        let len = (*len as usize).min(tail.len());
        let (value, after) = tail.split_at(len);
        if let Ok(v) = http::HeaderValue::from_bytes(value) {
            headers.append(NAMES[*sel as usize % NAMES.len()], v);
        }
        rest = after;
    }
    let body = bytes::Bytes::copy_from_slice(rest);
    let resp = ResponseData {
        status: Some(status),
        headers,
        events: parse_sse(&body),
        body,
        transport_error: None,
        received_at: Some(UNIX_EPOCH + Duration::from_secs(1_785_000_000)),
    };
    for c in classifiers() {
        let _ = c.classify(&resp);
        let _ = c.usage(&resp);
        let _ = c.inspect(&resp);
        if let Some(h) = c.retry_hint(&resp) {
            assert!(h <= MAX_HINT);
        }
        let _ = c.buckets(&resp);
        let _ = c.rate_limit_headers(&resp);
    }
});
