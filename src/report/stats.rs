//! Numbers derived from a step's measurements: latency percentiles and cost estimates.

use hdrhistogram::Histogram;

use crate::config::provider::Pricing;

use super::{Percentiles, RunRecord};

/// Significant decimal digits the latency histogram keeps: every value is stored within
/// 0.1% of what was measured (±0.2 ms at 200 ms), far finer than the noise of an API
/// call, in a few kilobytes however long the step runs.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latency percentiles (p50, p90, p95, p99 by nearest rank, and the maximum) of
/// `latencies_ms`, in milliseconds; `None` when there is no finite value.
///
/// Values are recorded in whole microseconds in an HDR histogram, the structure load
/// testers use so that percentiles stay cheap and mergeable. A percentile is reported as
/// the middle of its histogram bucket, or as the exact smallest or largest value seen when
/// its bucket holds that value (so p99 of a small sample is its maximum, not a value just
/// below it). Values below 2.048 ms are exact to the microsecond, larger ones within 0.1%.
/// The maximum is exact.
pub fn percentiles(latencies_ms: &[f64]) -> Option<Percentiles> {
    let micros: Vec<u64> = latencies_ms
        .iter()
        .filter(|v| v.is_finite())
        .map(|&ms| (ms.max(0.0) * 1000.0).round() as u64)
        .collect();
    let (&min, &max) = (micros.iter().min()?, micros.iter().max()?);
    let mut histogram = Histogram::<u64>::new(SIGNIFICANT_DIGITS)
        .expect("3 significant digits is a valid histogram");
    for &us in &micros {
        histogram
            .record(us)
            .expect("an auto-resizing histogram records any u64 below 2^62");
    }
    let at = |quantile: f64| {
        let bucket = histogram.value_at_quantile(quantile);
        let us = if histogram.equivalent(bucket, max) {
            max
        } else if histogram.equivalent(bucket, min) {
            min
        } else {
            histogram.median_equivalent(bucket)
        };
        us as f64 / 1000.0
    };
    Some(Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p95: at(0.95),
        p99: at(0.99),
        max: max as f64 / 1000.0,
    })
}

/// Estimated cost in US dollars of `input_tokens` and `output_tokens` at `pricing`
/// (US dollars per million tokens each way).
pub fn cost_usd(pricing: &Pricing, input_tokens: u64, output_tokens: u64) -> f64 {
    (input_tokens as f64 * pricing.input_per_million
        + output_tokens as f64 * pricing.output_per_million)
        / 1e6
}

/// Estimated cost of one step from the tokens the API reported for it; `None` without
/// pricing.
pub fn step_cost(pricing: Option<&Pricing>, run: &RunRecord) -> Option<f64> {
    pricing.map(|p| cost_usd(p, run.input_tokens, run.output_tokens))
}

/// The most `prompts` prompts can cost: each `input_tokens` long and answered with the
/// full `max_tokens`. What `plan` and the spend cap use before anything was measured.
pub fn worst_case_cost(pricing: &Pricing, prompts: u64, input_tokens: u64, max_tokens: u32) -> f64 {
    cost_usd(
        pricing,
        prompts * input_tokens,
        prompts * u64::from(max_tokens),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_values_no_percentiles() {
        assert_eq!(percentiles(&[]), None);
        assert_eq!(percentiles(&[f64::NAN, f64::INFINITY]), None);
    }

    #[test]
    fn small_latencies_are_exact_to_the_microsecond() {
        // Nearest rank: p50 of 10 values is the 5th, p90 the 9th, p95 and p99 the 10th.
        let ms = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0];
        let p = percentiles(&ms).unwrap();
        assert_eq!(
            p,
            Percentiles {
                p50: 1.4,
                p90: 1.8,
                p95: 2.0,
                p99: 2.0,
                max: 2.0
            }
        );
        // The order of the input does not matter.
        let mut reversed = ms;
        reversed.reverse();
        assert_eq!(percentiles(&reversed), Some(p));
    }

    #[test]
    fn one_value_is_every_percentile() {
        let p = percentiles(&[1234.567]).unwrap();
        assert_eq!(
            p,
            Percentiles {
                p50: 1234.567,
                p90: 1234.567,
                p95: 1234.567,
                p99: 1234.567,
                max: 1234.567
            }
        );
    }

    #[test]
    fn large_latencies_are_the_middle_of_their_bucket() {
        // 200 000 µs lies in a bucket 128 µs wide starting at 199 936: its middle is
        // 200 000 exactly. 300 000 µs lies in a bucket 256 µs wide whose middle is
        // 299 904, but that bucket holds the maximum, which is reported instead.
        // 1 234 567 µs lies in a bucket 1024 µs wide starting at 1 233 920 (1205 × 1024):
        // its middle is 1 234 432, 0.01% off.
        let p = percentiles(&[100.0, 200.0, 300.0]).unwrap();
        assert_eq!((p.p50, p.p90, p.max), (200.0, 300.0, 300.0));
        let p = percentiles(&[1000.0, 1234.567, 1500.0]).unwrap();
        assert_eq!(p.p50, 1234.432);
        assert_eq!(
            (p.p99, p.max),
            (1500.0, 1500.0),
            "the bucket of the largest value seen"
        );
        let p = percentiles(&[250.0, 250.1, 600.0]).unwrap();
        assert_eq!(
            p.p50, 250.0,
            "250 100 µs shares the bucket of the smallest value, 250 000"
        );
    }

    #[test]
    fn costs_use_prices_per_million_tokens() {
        let pricing = Pricing {
            input_per_million: 2.5,
            output_per_million: 10.0,
        };
        assert_eq!(cost_usd(&pricing, 1_000_000, 0), 2.5);
        assert_eq!(cost_usd(&pricing, 2_000, 30_000), 0.305);
        assert_eq!(worst_case_cost(&pricing, 10, 200, 1000), 0.105);
    }
}
