//! Time values as vendors write them in headers and bodies: retry hints and bucket
//! resets. Every parser here is total: a value it cannot read is `None`, never a panic,
//! never a negative or non-finite wait.
//!
//! Decimal numbers are parsed exactly (integer nanoseconds), not through `f64`, so
//! `0.503` seconds is exactly 503 ms and `23h47m36.648s` exactly 85656.648 s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::provider::TimeFormat;

/// The longest wait any value can mean. Larger values are clamped to it instead of
/// rejected: a vendor saying "come back in 10^30 seconds" is saying "not today", and the
/// probe must see a huge wait to stop; a clamped value keeps `Instant + hint` from
/// overflowing anywhere downstream. (100 years; any `--max-cooldown` is far below.)
pub const MAX_HINT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Reads one time value and returns how long from the response it points to.
///
/// - `seconds`: `2`, `0.503` (a decimal number, no sign, no exponent).
/// - `milliseconds`: `1500`, `12.5`.
/// - `retry_after`: seconds as above, or an HTTP date (`Sat, 25 Jul 2026 12:05:00 GMT`).
/// - `duration`: Go / protobuf durations: `17ms`, `6m0s`, `1.5s`, `23h47m36.648s`,
///   `2m59.56s`, `900ms`, `1h`, `0s`, `250us`, `250µs`, `10ns`. `m` is minutes only
///   when not followed by `s`. A bare number is read as seconds (Azure sends integer
///   seconds under OpenAI's header names).
/// - `rfc3339`: an absolute time (`2026-07-25T12:04:42Z`, fractions and `+02:00`
///   offsets allowed).
/// - `epoch_seconds`: an absolute Unix time in seconds.
///
/// Absolute values (HTTP dates, RFC 3339, epoch) are taken relative to
/// `response_date` (the response's own `date` header: the server's clock against the
/// server's clock) when given, else to `now`. A time in the past means zero.
/// Negative, non-finite and unreadable values are `None`.
pub fn parse_time_value(
    value: &str,
    format: TimeFormat,
    response_date: Option<SystemTime>,
    now: SystemTime,
) -> Option<Duration> {
    let value = value.trim();
    let reference = response_date.unwrap_or(now);
    let d = match format {
        TimeFormat::Seconds => from_nanos(decimal_nanos(value, NANOS_PER_SEC)?),
        TimeFormat::Milliseconds => from_nanos(decimal_nanos(value, 1_000_000)?),
        TimeFormat::RetryAfter => match decimal_nanos(value, NANOS_PER_SEC) {
            Some(n) => from_nanos(n),
            None => until(httpdate::parse_http_date(value).ok()?, reference),
        },
        TimeFormat::Duration => from_nanos(go_duration_nanos(value)?),
        TimeFormat::Rfc3339 => until(parse_rfc3339(value)?, reference),
        TimeFormat::EpochSeconds => {
            let since_epoch = from_nanos(decimal_nanos(value, NANOS_PER_SEC)?);
            if since_epoch == MAX_HINT {
                // Beyond the year 2070: as absurd as any other huge value.
                return Some(MAX_HINT);
            }
            until(UNIX_EPOCH.checked_add(since_epoch)?, reference)
        }
    };
    Some(d)
}

/// Parses an HTTP date (the `date` header).
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(value.trim()).ok()
}

/// `target - reference`, zero when the target is already past, clamped to [`MAX_HINT`].
fn until(target: SystemTime, reference: SystemTime) -> Duration {
    target
        .duration_since(reference)
        .unwrap_or(Duration::ZERO)
        .min(MAX_HINT)
}

/// Integer nanoseconds to a duration, clamped to [`MAX_HINT`].
fn from_nanos(nanos: u128) -> Duration {
    let secs = nanos / NANOS_PER_SEC;
    if secs >= MAX_HINT.as_secs() as u128 {
        return MAX_HINT;
    }
    Duration::new(secs as u64, (nanos % NANOS_PER_SEC) as u32)
}

/// Cap on what the exact arithmetic carries (far above [`MAX_HINT`], far below
/// `u128::MAX`): larger values saturate here, then clamp in [`from_nanos`].
const NANOS_CAP: u128 = 1 << 100;

/// A plain decimal number (`12`, `0.503`, `.5`, `7.`) times `unit` nanoseconds, exactly
/// (digits below a nanosecond are dropped). No sign, exponent, `inf` or `NaN`.
fn decimal_nanos(text: &str, unit: u128) -> Option<u128> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut whole: u128 = 0;
    for b in int.bytes() {
        whole = (whole * 10 + u128::from(b - b'0')).min(NANOS_CAP);
    }
    let mut nanos = whole.saturating_mul(unit).min(NANOS_CAP);
    // The fraction: digit k (1-based) is worth unit / 10^k.
    let mut place = unit;
    for b in frac.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        nanos += u128::from(b - b'0') * place;
    }
    Some(nanos.min(NANOS_CAP))
}

/// A Go duration (`time.ParseDuration`) or protobuf duration, in nanoseconds. A bare
/// number is seconds. Signs are rejected (no negative waits).
fn go_duration_nanos(text: &str) -> Option<u128> {
    if text.is_empty() {
        return None;
    }
    if let Some(n) = decimal_nanos(text, NANOS_PER_SEC) {
        return Some(n);
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let (number, after) = rest.split_at(number_len);
        // Longest unit first, so that `ms` is never read as minutes.
        let (unit, len) = [
            ("ns", 1u128),
            ("us", 1_000),
            ("µs", 1_000),
            ("μs", 1_000),
            ("ms", 1_000_000),
            ("s", NANOS_PER_SEC),
            ("m", 60 * NANOS_PER_SEC),
            ("h", 3600 * NANOS_PER_SEC),
        ]
        .iter()
        .find(|(name, _)| after.starts_with(name))
        .map(|(name, unit)| (*unit, name.len()))?;
        total = total
            .saturating_add(decimal_nanos(number, unit)?)
            .min(NANOS_CAP);
        rest = &after[len..];
    }
    Some(total)
}

/// An RFC 3339 time: `2026-07-25T12:04:42Z`, `2026-07-25T12:04:42.5Z`,
/// `2026-07-25T14:04:42+02:00`, lower-case `t`/`z` too.
pub fn parse_rfc3339(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    if !value.is_ascii() {
        return None;
    }
    let upper = value.to_ascii_uppercase();
    let b = upper.as_bytes();
    // A numeric offset other than +00:00, which humantime does not read.
    if b.len() >= 25 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' {
        let (local, offset) = upper.split_at(upper.len() - 6);
        let hours: u64 = offset[1..3].parse().ok()?;
        let minutes: u64 = offset[4..6].parse().ok()?;
        if hours > 23 || minutes > 59 || !offset[1..3].bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let shift = Duration::from_secs(hours * 3600 + minutes * 60);
        let local = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
        // Local time = UTC + offset, so UTC = local - offset.
        return if offset.starts_with('+') {
            local.checked_sub(shift)
        } else {
            local.checked_add(shift)
        };
    }
    humantime::parse_rfc3339(&upper).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }
    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }
    fn at(text: &str) -> SystemTime {
        httpdate::parse_http_date(text).unwrap()
    }
    /// A fixed "now" for tests that must not depend on the clock.
    fn now() -> SystemTime {
        at("Sat, 25 Jul 2026 12:04:30 GMT")
    }
    fn parse(value: &str, format: TimeFormat) -> Option<Duration> {
        parse_time_value(value, format, None, now())
    }

    #[test]
    fn seconds_accept_integers_and_fractions_exactly() {
        assert_eq!(parse("2", TimeFormat::Seconds), Some(secs(2)));
        assert_eq!(parse("0.503", TimeFormat::Seconds), Some(ms(503)));
        assert_eq!(parse(" 30 ", TimeFormat::Seconds), Some(secs(30)));
        assert_eq!(parse("0", TimeFormat::Seconds), Some(Duration::ZERO));
        assert_eq!(parse(".5", TimeFormat::Seconds), Some(ms(500)));
        assert_eq!(parse("86400", TimeFormat::Seconds), Some(secs(86400)));
        assert_eq!(
            parse("1.0000000019", TimeFormat::Seconds),
            Some(Duration::new(1, 1))
        );
    }

    #[test]
    fn invalid_numbers_are_none_never_negative() {
        for bad in [
            "-5", "NaN", "nan", "inf", "-inf", "soon", "", " ", "1e3", "+5", "5s", "1.2.3", ".",
            "0x10", "٣",
        ] {
            assert_eq!(parse(bad, TimeFormat::Seconds), None, "seconds {bad:?}");
            assert_eq!(parse(bad, TimeFormat::Milliseconds), None, "ms {bad:?}");
            assert_eq!(parse(bad, TimeFormat::EpochSeconds), None, "epoch {bad:?}");
        }
        for bad in ["-5", "NaN", "soon", "", "-1.5s", "5x", "ms", "1.2.3s", "s"] {
            assert_eq!(parse(bad, TimeFormat::Duration), None, "duration {bad:?}");
        }
    }

    #[test]
    fn absurd_values_are_clamped_not_overflowed() {
        assert_eq!(
            parse(
                "99999999999999999999999999999999999999999",
                TimeFormat::Seconds
            ),
            Some(MAX_HINT)
        );
        assert_eq!(
            parse("99999999999999999999999h", TimeFormat::Duration),
            Some(MAX_HINT)
        );
        assert_eq!(
            parse("18446744073709551616", TimeFormat::EpochSeconds),
            Some(MAX_HINT)
        );
    }

    #[test]
    fn milliseconds() {
        assert_eq!(parse("1500", TimeFormat::Milliseconds), Some(ms(1500)));
        assert_eq!(
            parse("12.5", TimeFormat::Milliseconds),
            Some(Duration::from_micros(12_500))
        );
        assert_eq!(parse("6000", TimeFormat::Milliseconds), Some(secs(6)));
    }

    // R1, R2, R3.
    #[test]
    fn retry_after_seconds_and_http_dates() {
        let date = Some(at("Sat, 25 Jul 2026 12:04:30 GMT"));
        let later = at("Sat, 25 Jul 2026 13:00:00 GMT");
        let f = TimeFormat::RetryAfter;
        // R1: relative to the response's date, not to the clock.
        assert_eq!(
            parse_time_value("Sat, 25 Jul 2026 12:05:00 GMT", f, date, later),
            Some(secs(30))
        );
        // No date header: relative to now.
        assert_eq!(
            parse_time_value("Sat, 25 Jul 2026 12:05:00 GMT", f, None, now()),
            Some(secs(30))
        );
        // A date in the past means zero.
        assert_eq!(
            parse_time_value("Sat, 25 Jul 2026 12:00:00 GMT", f, date, now()),
            Some(Duration::ZERO)
        );
        // The other two HTTP date forms.
        assert_eq!(
            parse_time_value("Saturday, 25-Jul-26 12:05:00 GMT", f, date, now()),
            Some(secs(30))
        );
        assert_eq!(
            parse_time_value("Sat Jul 25 12:05:00 2026", f, date, now()),
            Some(secs(30))
        );
        // R2.
        assert_eq!(parse("0.503", f), Some(ms(503)));
        assert_eq!(parse("12", f), Some(secs(12)));
        // R3.
        assert_eq!(parse("-5", f), None);
        assert_eq!(parse("NaN", f), None);
        assert_eq!(parse("soon", f), None);
        assert_eq!(parse("Sat, 32 Jul 2026 12:05:00 GMT", f), None);
    }

    // R5 and the other samples of the reference.
    #[test]
    fn go_durations() {
        let d = |s| parse(s, TimeFormat::Duration);
        assert_eq!(d("17ms"), Some(ms(17)));
        assert_eq!(d("6m0s"), Some(secs(360)));
        assert_eq!(d("1.5s"), Some(ms(1500)));
        assert_eq!(d("23h47m36.648s"), Some(ms(85_656_648)));
        assert_eq!(d("1ms"), Some(ms(1)));
        assert_eq!(d("2m59.56s"), Some(ms(179_560)));
        assert_eq!(d("9m38.016s"), Some(ms(578_016)));
        assert_eq!(d("900ms"), Some(ms(900)));
        assert_eq!(d("33s"), Some(secs(33)));
        assert_eq!(d("53.016342224s"), Some(Duration::new(53, 16_342_224)));
        assert_eq!(d("1h"), Some(secs(3600)));
        assert_eq!(d("0s"), Some(Duration::ZERO));
        assert_eq!(d("0"), Some(Duration::ZERO));
        assert_eq!(d("360ms"), Some(ms(360)));
        assert_eq!(d("1m"), Some(secs(60)));
        assert_eq!(d("1.5m"), Some(secs(90)));
        assert_eq!(d("250us"), Some(Duration::from_micros(250)));
        assert_eq!(d("250µs"), Some(Duration::from_micros(250)));
        assert_eq!(d("250μs"), Some(Duration::from_micros(250)));
        assert_eq!(d("10ns"), Some(Duration::from_nanos(10)));
        assert_eq!(d("1m1ms"), Some(ms(60_001)));
        // Azure: integer seconds under the same header names.
        assert_eq!(d("55"), Some(secs(55)));
    }

    #[test]
    fn rfc3339_is_relative_to_the_response_date() {
        let date = Some(at("Sat, 25 Jul 2026 12:04:30 GMT"));
        let f = TimeFormat::Rfc3339;
        let clock = at("Sat, 25 Jul 2026 18:00:00 GMT");
        assert_eq!(
            parse_time_value("2026-07-25T12:04:42Z", f, date, clock),
            Some(secs(12))
        );
        assert_eq!(
            parse_time_value("2026-07-25T12:04:42.250Z", f, date, clock),
            Some(ms(12_250))
        );
        assert_eq!(
            parse_time_value("2026-07-25t12:04:42z", f, date, clock),
            Some(secs(12))
        );
        assert_eq!(
            parse_time_value("2026-07-25T14:04:42+02:00", f, date, clock),
            Some(secs(12))
        );
        // 12:04:42 at UTC-2 is 14:04:42 UTC.
        assert_eq!(
            parse_time_value("2026-07-25T12:04:42-02:00", f, date, clock),
            Some(secs(7_200 + 12))
        );
        assert_eq!(
            parse_time_value("2026-07-25T12:04:42+00:00", f, date, clock),
            Some(secs(12))
        );
        // No date header: relative to now.
        assert_eq!(
            parse_time_value("2026-07-25T12:04:42Z", f, None, now()),
            Some(secs(12))
        );
        // Past: zero.
        assert_eq!(
            parse_time_value("2026-07-25T12:00:00Z", f, date, clock),
            Some(Duration::ZERO)
        );
        for bad in [
            "soon",
            "2026-07-25",
            "2026-13-25T12:04:42Z",
            "2026-07-25T12:04:42+2:00",
            "2026-07-25T12:04:42+ab:00",
            "２０２６-07-25T12:04:42Z",
        ] {
            assert_eq!(parse_time_value(bad, f, date, clock), None, "{bad:?}");
        }
    }

    #[test]
    fn epoch_seconds_are_absolute() {
        let date = Some(at("Sat, 25 Jul 2026 12:04:30 GMT"));
        let base = now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let f = TimeFormat::EpochSeconds;
        assert_eq!(
            parse_time_value(&(base + 12).to_string(), f, date, now()),
            Some(secs(12))
        );
        assert_eq!(
            parse_time_value(&format!("{}.5", base + 12), f, None, now()),
            Some(ms(12_500))
        );
        assert_eq!(
            parse_time_value(&(base - 100).to_string(), f, date, now()),
            Some(Duration::ZERO)
        );
    }
}
