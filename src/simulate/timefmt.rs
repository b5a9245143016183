//! The two reset formats the vendors put in their rate-limit headers: OpenAI's Go-style
//! durations (`1s`, `6m0s`, `20ms`) and Anthropic's RFC 3339 instants
//! (`2025-02-24T22:25:32Z`). Written here rather than pulled from a date crate because
//! the simulator needs exactly these two shapes and nothing else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats `d` the way Go's `time.Duration.String()` does, at millisecond precision
/// (rounded up, so a client that waits the printed time finds the bucket refilled):
/// `0s`, `20ms`, `1s`, `1.5s`, `6m0s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let ms = ceil_millis(d);
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let secs = (ms / 1000) % 60;
    let frac = ms % 1000;
    let mut out = String::with_capacity(16);
    if hours > 0 {
        out.push_str(&format!("{hours}h{minutes}m"));
    } else if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{secs}s"));
    } else {
        let frac = format!("{frac:03}");
        out.push_str(&format!("{secs}.{}s", frac.trim_end_matches('0')));
    }
    out
}

/// Whole milliseconds in `d`, rounded up.
fn ceil_millis(d: Duration) -> u64 {
    let ms = d.as_millis();
    let ms = if !d.subsec_nanos().is_multiple_of(1_000_000) {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `retry-after` seconds: whole seconds, rounded up and at least 1, so that a client that
/// reads it as an integer (many do) never retries before the limit allows it.
pub fn retry_after_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// `t` as an RFC 3339 UTC instant at second precision, rounded up to the next second
/// (`2025-02-24T22:25:32Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_match_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(20), "20ms"),
            (Duration::from_micros(19_001), "20ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(2_560), "2.56s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(179_560), "2m59.56s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3661), "1h1m1s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(17)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2025-02-24T22:25:32Z, the example in Anthropic's docs.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_740_435_932)),
            "2025-02-24T22:25:32Z"
        );
        // Leap day, and rounding up a fraction of a second.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_399_500)),
            "2000-02-29T00:00:00Z"
        );
    }
}
