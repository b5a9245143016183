//! The retry-hint / time parsers on arbitrary text, in every format. Properties: no
//! panic, and no value is ever longer than `MAX_HINT` (so `Instant + hint` never
//! overflows downstream).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use find_workers_limit::classify::{parse_http_date, parse_rfc3339, parse_time_value, MAX_HINT};
use find_workers_limit::config::provider::TimeFormat;
use libfuzzer_sys::fuzz_target;

const FORMATS: [TimeFormat; 6] = [
    TimeFormat::Seconds,
    TimeFormat::Milliseconds,
    TimeFormat::RetryAfter,
    TimeFormat::Duration,
    TimeFormat::Rfc3339,
    TimeFormat::EpochSeconds,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // A fixed clock, and a response date that is sometimes far in the past or future.
    let now = UNIX_EPOCH + Duration::from_secs(1_785_000_000);
    let date = match selector >> 4 {
        0 => None,
        1 => Some(UNIX_EPOCH),
        2 => Some(now + Duration::from_secs(1 << 40)),
        _ => Some(now),
    };
    for format in FORMATS {
        if let Some(d) = parse_time_value(&text, format, date, now) {
            assert!(d <= MAX_HINT, "{format:?} {text:?} -> {d:?}");
        }
    }
    let _ = parse_http_date(&text);
    let _ = parse_rfc3339(&text);
});
