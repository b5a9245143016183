//! The simulator's bookkeeping: lock-free counters, the exact concurrency gate, the
//! token buckets of the per-minute limits and the deterministic fault schedules.
//!
//! Hot-path rule: with no per-minute limit configured a request touches only atomics.
//! The buckets sit behind one mutex, taken once per request and only when a bucket
//! exists, so that a request is charged to every bucket or to none (a 429 consumes
//! nothing, which keeps the arithmetic of tests and probes exact).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::SimConfig;
use super::Stats;

/// The counters behind [`Stats`]. Relaxed atomics: each is an independent tally.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub ok: AtomicU64,
    pub rate_limited: AtomicU64,
    pub faults: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the tallies. `in_flight` is live state, not a tally, so it stays, and
    /// `max_in_flight` restarts from it (zero when the server is idle).
    pub fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.ok.store(0, Ordering::Relaxed);
        self.rate_limited.store(0, Ordering::Relaxed);
        self.faults.store(0, Ordering::Relaxed);
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes an in-flight slot unless `limit` are taken already. Compare-and-swap, so
    /// that with a limit of 5 exactly 5 of any number of simultaneous arrivals get in.
    pub fn try_enter(self: &Arc<Self>, limit: Option<u32>) -> Result<InFlight, u64> {
        let mut cur = self.in_flight.load(Ordering::Relaxed);
        loop {
            if let Some(limit) = limit {
                if cur >= u64::from(limit) {
                    return Err(cur);
                }
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.max_in_flight.fetch_max(cur + 1, Ordering::Relaxed);
        Ok(InFlight(Some(Arc::clone(self))))
    }
}

/// One admitted request's slot; freed on drop, or earlier by [`InFlight::release`] when
/// the last byte of the response is handed to the connection.
#[derive(Debug)]
pub struct InFlight(Option<Arc<Counters>>);

impl InFlight {
    pub fn release(&mut self) {
        if let Some(c) = self.0.take() {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// A deterministic "fraction of requests": the k-th request that reaches the check
/// (k = 1, 2, …) is hit iff ⌊k·rate⌋ > ⌊(k−1)·rate⌋. Rate 0.5 hits every 2nd request,
/// 0.25 every 4th, 1 every one, 0.3 the 4th, 7th, 10th (3 in every 10). Tests can assert
/// exact counts, which a random draw would not allow. Computed in parts per million so
/// that no float rounding moves a hit.
#[derive(Debug)]
pub struct Every {
    ppm: u64,
    seen: AtomicU64,
}

impl Every {
    pub fn new(rate: f64) -> Every {
        Every {
            ppm: (rate * 1_000_000.0).round() as u64,
            seen: AtomicU64::new(0),
        }
    }

    /// Counts one request reaching the check; true when this one is hit.
    pub fn hit(&self) -> bool {
        if self.ppm == 0 {
            return false;
        }
        let k = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        (k * self.ppm) / 1_000_000 > ((k - 1) * self.ppm) / 1_000_000
    }

    pub fn reset(&self) {
        self.seen.store(0, Ordering::Relaxed);
    }
}

/// Which limit a bucket or a refusal is about; names the vendor headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests per minute.
    Requests,
    /// Input + output tokens per minute.
    Tokens,
    InputTokens,
    OutputTokens,
}

/// What a response's rate-limit headers say about one limit, in real time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub kind: Kind,
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again (or, for the concurrency limit, the retry hint).
    pub reset: Duration,
}

/// Up to four views, one per configured limit; an array, not a Vec, to keep the hot
/// path free of allocations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Views {
    items: [Option<View>; 4],
}

impl Views {
    pub fn push(&mut self, v: View) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(v);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &View> {
        self.items.iter().flatten()
    }
}

/// A token bucket with continuous refill, as the vendors describe theirs: capacity
/// `capacity`, refilled at `per_minute / 60` tokens per simulated second, which is
/// `per_minute / 60 × time_scale` per real second. It starts full.
#[derive(Debug)]
struct Bucket {
    per_minute: u64,
    capacity: f64,
    /// Tokens per real second.
    rate: f64,
    level: f64,
    last: Instant,
}

impl Bucket {
    fn new(per_minute: u32, capacity: u32, time_scale: f64, now: Instant) -> Bucket {
        Bucket {
            per_minute: u64::from(per_minute),
            capacity: f64::from(capacity),
            rate: f64::from(per_minute) / 60.0 * time_scale,
            level: f64::from(capacity),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + dt * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Real time until `n` tokens are in the bucket.
    fn wait_for(&self, n: f64) -> Duration {
        secs((n - self.level) / self.rate)
    }

    fn view(&self, kind: Kind) -> View {
        View {
            kind,
            limit: self.per_minute,
            remaining: self.level.max(0.0).floor() as u64,
            reset: secs((self.capacity - self.level) / self.rate),
        }
    }
}

/// Non-negative seconds as a Duration, capped at a day (a bucket that can never refill
/// enough still yields a finite hint).
fn secs(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(s.min(86_400.0))
    }
}

/// Why a request was refused by a per-minute limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    pub kind: Kind,
    pub limit: u64,
    /// Tokens (or requests) used in the current window, as the vendors word it.
    pub used: u64,
    pub requested: u64,
    /// Real time until the request would fit; `None` when it never can (larger than the
    /// bucket itself: OpenAI's "Request too large").
    pub wait: Option<Duration>,
    /// The headers of every configured limit at the moment of refusal.
    pub views: Views,
}

/// The charge of one request against the per-minute limits.
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    pub input: u64,
    /// The output the request may produce (its max_tokens, or the typical length when
    /// it gives none). OpenAI counts the requested maximum, not what is generated, and
    /// so does the simulator — for the output-tokens bucket too, where Anthropic
    /// estimates from max_tokens at admission; the simulator never corrects it later.
    pub output: u64,
}

/// The per-minute buckets of one simulator.
#[derive(Debug)]
pub struct Buckets {
    inner: Option<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    input: Option<Bucket>,
    output: Option<Bucket>,
}

impl Buckets {
    pub fn new(cfg: &SimConfig, now: Instant) -> Buckets {
        let ts = cfg.time_scale;
        let inner = Inner {
            requests: cfg
                .rpm
                .map(|r| Bucket::new(r, cfg.rpm_burst.unwrap_or(r), ts, now)),
            tokens: cfg.tpm.map(|t| Bucket::new(t, t, ts, now)),
            input: cfg.input_tpm.map(|t| Bucket::new(t, t, ts, now)),
            output: cfg.output_tpm.map(|t| Bucket::new(t, t, ts, now)),
        };
        let any = inner.requests.is_some()
            || inner.tokens.is_some()
            || inner.input.is_some()
            || inner.output.is_some();
        Buckets {
            inner: any.then(|| Mutex::new(inner)),
        }
    }

    pub fn has_requests_bucket(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|m| lock(m).requests.is_some())
    }

    /// The headers' views now, charging nothing (for a request the concurrency gate
    /// refused before it reached the buckets).
    pub fn views(&self, now: Instant) -> Views {
        let mut views = Views::default();
        if let Some(m) = &self.inner {
            let mut g = lock(m);
            g.refill(now);
            g.push_views(&mut views);
        }
        views
    }

    /// Charges the request to every bucket, or refuses it and charges nothing (the
    /// refusal is boxed: it is the rare path, and keeps the result small).
    /// Returns the headers' views after the charge.
    pub fn admit(&self, now: Instant, charge: Charge) -> Result<Views, Box<Refusal>> {
        let Some(m) = &self.inner else {
            return Ok(Views::default());
        };
        let mut g = lock(m);
        let inner = &mut *g;
        let checks: [(Kind, &mut Option<Bucket>, u64); 4] = [
            (Kind::Requests, &mut inner.requests, 1),
            (
                Kind::Tokens,
                &mut inner.tokens,
                charge.input + charge.output,
            ),
            (Kind::InputTokens, &mut inner.input, charge.input),
            (Kind::OutputTokens, &mut inner.output, charge.output),
        ];
        let mut refusal: Option<(Kind, u64, u64, u64, Option<Duration>)> = None;
        for (kind, bucket, n) in checks {
            let Some(b) = bucket.as_mut() else { continue };
            b.refill(now);
            if refusal.is_some() {
                continue;
            }
            let need = n as f64;
            let used = (b.capacity - b.level).max(0.0).round() as u64;
            if need > b.capacity {
                refusal = Some((kind, b.per_minute, used, n, None));
            } else if b.level < need {
                refusal = Some((kind, b.per_minute, used, n, Some(b.wait_for(need))));
            }
        }
        if refusal.is_none() {
            for (b, n) in [
                (&mut inner.requests, 1),
                (&mut inner.tokens, charge.input + charge.output),
                (&mut inner.input, charge.input),
                (&mut inner.output, charge.output),
            ] {
                if let Some(b) = b.as_mut() {
                    b.level -= n as f64;
                }
            }
        }
        let mut views = Views::default();
        inner.push_views(&mut views);
        match refusal {
            None => Ok(views),
            Some((kind, limit, used, requested, wait)) => Err(Box::new(Refusal {
                kind,
                limit,
                used,
                requested,
                wait,
                views,
            })),
        }
    }
}

impl Inner {
    fn refill(&mut self, now: Instant) {
        for b in [
            &mut self.requests,
            &mut self.tokens,
            &mut self.input,
            &mut self.output,
        ]
        .into_iter()
        .flatten()
        {
            b.refill(now);
        }
    }

    fn push_views(&self, views: &mut Views) {
        for (kind, b) in [
            (Kind::Requests, &self.requests),
            (Kind::Tokens, &self.tokens),
            (Kind::InputTokens, &self.input),
            (Kind::OutputTokens, &self.output),
        ] {
            if let Some(b) = b {
                views.push(b.view(kind));
            }
        }
    }
}

/// The buckets' state stays consistent even if a holder panicked (it cannot: no code
/// under the lock panics), so a poisoned lock is simply taken over.
fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::scenario::SimulatorSettings;

    fn cfg(s: SimulatorSettings) -> SimConfig {
        SimConfig::resolve(&s).expect("valid settings")
    }

    #[test]
    fn every_hits_exact_fractions() {
        let hits = |rate: f64, n: usize| -> Vec<usize> {
            let e = Every::new(rate);
            (1..=n).filter(|_| e.hit()).collect()
        };
        assert_eq!(hits(0.5, 6), vec![2, 4, 6]);
        assert_eq!(hits(0.25, 8), vec![4, 8]);
        assert_eq!(hits(1.0, 3), vec![1, 2, 3]);
        assert_eq!(hits(0.0, 5), Vec::<usize>::new());
        assert_eq!(hits(0.3, 10), vec![4, 7, 10]);
    }

    #[test]
    fn concurrency_gate_is_exact() {
        let c = Arc::new(Counters::default());
        let held: Vec<_> = (0..5)
            .map(|_| c.try_enter(Some(5)).expect("room"))
            .collect();
        assert_eq!(c.try_enter(Some(5)).err(), Some(5));
        drop(held);
        assert_eq!(c.snapshot().in_flight, 0);
        assert_eq!(c.snapshot().max_in_flight, 5);
        let mut one = c.try_enter(Some(5)).expect("room");
        one.release();
        one.release();
        drop(one);
        assert_eq!(c.snapshot().in_flight, 0);
    }

    #[test]
    fn rpm_bucket_refills_continuously_with_time_scale() {
        let t0 = Instant::now();
        // 60 rpm at time scale 60 refills 60 requests per real second; burst 2.
        let b = Buckets::new(
            &cfg(SimulatorSettings {
                rpm: Some(60),
                rpm_burst: Some(2),
                time_scale: Some(60.0),
                ..Default::default()
            }),
            t0,
        );
        let charge = Charge {
            input: 10,
            output: 10,
        };
        let v = b.admit(t0, charge).expect("first");
        assert_eq!(
            v.iter().next().map(|v| (v.limit, v.remaining)),
            Some((60, 1))
        );
        b.admit(t0, charge).expect("second, burst 2");
        let r = b.admit(t0, charge).expect_err("bucket empty");
        assert_eq!(
            (r.kind, r.limit, r.used, r.requested),
            (Kind::Requests, 60, 2, 1)
        );
        // One request refills every 1/60 s.
        let wait = r.wait.expect("finite");
        assert!((wait.as_secs_f64() - 1.0 / 60.0).abs() < 1e-6, "{wait:?}");
        b.admit(t0 + Duration::from_millis(17), charge)
            .expect("refilled");
    }

    #[test]
    fn token_buckets_charge_all_or_nothing() {
        let t0 = Instant::now();
        let b = Buckets::new(
            &cfg(SimulatorSettings {
                tpm: Some(1000),
                output_tpm: Some(150),
                ..Default::default()
            }),
            t0,
        );
        b.admit(
            t0,
            Charge {
                input: 100,
                output: 100,
            },
        )
        .expect("fits");
        let r = b
            .admit(
                t0,
                Charge {
                    input: 100,
                    output: 100,
                },
            )
            .expect_err("output bucket short");
        assert_eq!(
            (r.kind, r.used, r.requested),
            (Kind::OutputTokens, 100, 100)
        );
        // Nothing was charged by the refusal: the tokens bucket still has 800.
        let views: Vec<_> = r.views.iter().map(|v| (v.kind, v.remaining)).collect();
        assert_eq!(views, vec![(Kind::Tokens, 800), (Kind::OutputTokens, 50)]);
        let big = b
            .admit(
                t0,
                Charge {
                    input: 2000,
                    output: 1,
                },
            )
            .expect_err("larger than the bucket");
        assert_eq!(
            (big.kind, big.requested, big.wait),
            (Kind::Tokens, 2001, None)
        );
    }
}
