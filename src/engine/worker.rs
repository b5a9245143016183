//! One step: W worker tasks, each with its own connection, pulling prompt indices from a
//! shared counter; one attempt = connect if needed, send, read the whole body, classify.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::connect::{error_chain, human};
use super::{Engine, PromptRecord, StepResult, StepSpec};
use crate::classify::{BucketReading, Classified, ResponseData};
use crate::config::provider::Outcome;

type Sender = SendRequest<super::RequestBody>;

/// A request body up to this size is copied into hyper's write buffer (which starts at
/// 8 KiB) and leaves with its head in one write(2).
const SMALL_BODY: usize = 4096;

/// Of a body cut at the cap, the bytes kept to classify it and quote it.
const CUT_BODY_KEPT: usize = 64 * 1024;

/// What the workers of one step share.
struct Step {
    engine: Engine,
    spec: StepSpec,
    started: Instant,
    /// The next prompt index to take.
    next: AtomicU64,
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    /// Set by a fatal outcome or by the caller's cancel: no new request after it.
    stop: Stop,
    /// Opened once the first request of an unverified engine was answered (see the
    /// module docs of `engine`); open from the start otherwise.
    gate: CancellationToken,
    fatal: OnceLock<String>,
    /// A prompt of this step was rate limited: the step has failed, so a `min_duration`
    /// no longer keeps workers taking prompts (more would only hammer the limit).
    limited: AtomicBool,
}

/// What one worker measured; merged with the others' at the end of the step.
#[derive(Default)]
struct WorkerOut {
    records: Vec<(u64, PromptRecord)>,
    retry_hint: Option<Duration>,
    /// This worker's last response that carried rate-limit headers, and when. Only its
    /// status, headers and arrival are kept; they are read into headers and buckets once,
    /// at the end of the step, not on every response.
    /// Boxed: the worker's future (one per connection, thousands at once) stays small.
    readings: Option<Box<(Instant, ResponseData)>>,
    /// This worker's last rate-limited response that carried them, and when.
    limited: Option<Box<(Instant, ResponseData)>>,
}

pub(super) async fn run_step(
    engine: &Engine,
    spec: StepSpec,
    cancel: CancellationToken,
) -> StepResult {
    let started_at = SystemTime::now();
    let gate = CancellationToken::new();
    if engine.verified() {
        gate.cancel();
    }
    let step = Arc::new(Step {
        engine: engine.clone(),
        spec,
        started: Instant::now(),
        next: AtomicU64::new(0),
        in_flight: AtomicU32::new(0),
        max_in_flight: AtomicU32::new(0),
        stop: Stop::new(spec.workers),
        gate,
        fatal: OnceLock::new(),
        limited: AtomicBool::new(false),
    });

    if cancel.is_cancelled() {
        step.stop.set();
    }
    let mut set = JoinSet::new();
    for w in 0..spec.workers {
        set.spawn(worker(step.clone(), w));
    }
    let mut outs = Vec::with_capacity(spec.workers as usize);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled(), if !step.stop.is_set() => step.stop.set(),
            joined = set.join_next() => match joined {
                // A worker that panicked loses its records; the step still reports the rest.
                Some(Ok(out)) => outs.push(out),
                Some(Err(_)) => {}
                None => break,
            },
        }
    }

    // One list of all records in prompt order: each record moves into the slot of its
    // index (the indices come from the step's counter, so a gap is only a prompt that a
    // stop cut short) and each worker's list is freed at once; the gaps are then closed
    // in place. No sort moves the records (they are large) again and again, and the peak
    // stays near one copy of them, which matters at thousands of workers.
    let end = outs
        .iter()
        .flat_map(|o| &o.records)
        .map(|(i, _)| *i as usize + 1)
        .max()
        .unwrap_or(0);
    let mut slots: Vec<Option<PromptRecord>> = Vec::with_capacity(end);
    slots.resize_with(end, || None);
    let mut retry_hint = None;
    let mut readings: Option<Box<(Instant, ResponseData)>> = None;
    let mut limited: Option<Box<(Instant, ResponseData)>> = None;
    for out in outs {
        for (i, record) in out.records {
            slots[i as usize] = Some(record);
        }
        retry_hint = retry_hint.max(out.retry_hint);
        if let Some(r) = out.readings {
            if readings.as_ref().is_none_or(|cur| r.0 > cur.0) {
                readings = Some(r);
            }
        }
        if let Some(r) = out.limited {
            if limited.as_ref().is_none_or(|cur| r.0 > cur.0) {
                limited = Some(r);
            }
        }
    }
    // `filter_map` (unlike `flatten`) collects into the same allocation.
    #[allow(clippy::filter_map_identity)]
    let prompts: Vec<PromptRecord> = slots.into_iter().filter_map(|slot| slot).collect();
    let classifier = &engine.config().classifier;
    let (rate_limit_headers, buckets) = readings
        .map(|seen| {
            (
                classifier.rate_limit_headers(&seen.1),
                classifier.buckets(&seen.1),
            )
        })
        .unwrap_or_default();
    let rate_limited_buckets: Vec<BucketReading> = limited
        .map(|seen| classifier.buckets(&seen.1))
        .unwrap_or_default();
    StepResult {
        spec,
        started_at,
        duration: step.started.elapsed(),
        prompts,
        fatal: step.fatal.get().cloned(),
        interrupted: cancel.is_cancelled(),
        retry_hint,
        rate_limit_headers,
        buckets,
        rate_limited_buckets,
        max_in_flight: step.max_in_flight.load(Ordering::Relaxed),
    }
}

/// Opens the gate when the canary worker ends, whatever the reason, so that no worker
/// waits forever.
struct OpenOnDrop<'a>(&'a CancellationToken);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn worker(step: Arc<Step>, w: u32) -> WorkerOut {
    let mut out = WorkerOut {
        records: Vec::with_capacity(step.spec.prompts.div_ceil(step.spec.workers.max(1)) as usize),
        ..WorkerOut::default()
    };
    let mut conn: Option<Sender> = None;
    // Due at once: the first attempt moves it to its own deadline (see `Deadline`).
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let canary = w == 0 && !step.gate.is_cancelled();
    let _open = canary.then(|| OpenOnDrop(&step.gate));
    if w != 0 {
        tokio::select! {
            biased;
            _ = step.stop.wait(w) => return out,
            _ = step.gate.cancelled() => {}
        }
    }
    let mut first = canary;
    loop {
        if step.stop.is_set() {
            break;
        }
        let i = step.next.fetch_add(1, Ordering::Relaxed);
        if step.spec.max_prompts.is_some_and(|max| i >= u64::from(max)) {
            break;
        }
        if i >= u64::from(step.spec.prompts) {
            match step.spec.min_duration {
                Some(min)
                    if step.started.elapsed() < min && !step.limited.load(Ordering::Relaxed) => {}
                _ => break,
            }
        }
        run_prompt(&step, w, i, &mut conn, timer.as_mut(), &mut out, first).await;
        if first {
            // The canary's prompt is over (and was not fatal, or `stop` fired): let the
            // others in.
            step.gate.cancel();
            first = false;
        }
    }
    out
}

/// The step's stop as the workers watch it: a flag read before every request and one
/// waker slot per worker. A `CancellationToken` locks a mutex on every check and
/// registers a waiter on every wait, and the workers check and wait once per request.
struct Stop {
    flag: AtomicBool,
    wakers: Box<[AtomicWaker]>,
}

impl Stop {
    fn new(workers: u32) -> Stop {
        Stop {
            flag: AtomicBool::new(false),
            wakers: (0..workers).map(|_| AtomicWaker::new()).collect(),
        }
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        for waker in &self.wakers {
            waker.wake();
        }
    }

    /// Ready once the stop is set; worker `w` waits on its own slot.
    fn wait(&self, w: u32) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_set() {
                return Poll::Ready(());
            }
            self.wakers[w as usize].register(cx.waker());
            // Set between the check and the registration: its wake may have been missed.
            if self.is_set() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// Counts a request in flight while alive.
struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicU32, max: &AtomicU32) -> InFlight<'a> {
        let now = counter.fetch_add(1, Ordering::AcqRel) + 1;
        max.fetch_max(now, Ordering::AcqRel);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One response, or the failure to get one.
struct Attempt {
    resp: ResponseData,
    ttft: Option<Duration>,
    latency: Duration,
}

/// Sends one prompt, with retries of transient outcomes. Records it unless the step was
/// stopped before it finished.
async fn run_prompt(
    step: &Step,
    w: u32,
    i: u64,
    conn: &mut Option<Sender>,
    mut timer: Pin<&mut Sleep>,
    out: &mut WorkerOut,
    canary: bool,
) {
    let engine = &step.engine;
    let cfg = engine.config();
    let classifier = &cfg.classifier;
    let mut retries = 0u32;
    loop {
        if step.stop.is_set() {
            return;
        }
        let mut attempt = {
            let _in_flight = InFlight::new(&step.in_flight, &step.max_in_flight);
            tokio::select! {
                biased;
                _ = step.stop.wait(w) => {
                    // Dropping the request closes its connection.
                    *conn = None;
                    return;
                }
                a = send(engine, conn, timer.as_mut()) => a,
            }
        };
        let resp = &attempt.resp;
        // Outcome, usage and hint from one parse of the body.
        let inspection = classifier.inspect(resp);
        let c = inspection.classified;
        let hint = inspection.retry_hint;
        // Only a refusal has a hint (see `inspect`).
        out.retry_hint = out.retry_hint.max(hint);
        if resp.status.is_some() && classifier.has_rate_limit_headers(&resp.headers) {
            // Nothing after this reads the headers: they are moved, not copied.
            let seen = Box::new((
                Instant::now(),
                ResponseData {
                    status: resp.status,
                    received_at: resp.received_at,
                    headers: std::mem::take(&mut attempt.resp.headers),
                    ..ResponseData::default()
                },
            ));
            if c.outcome == Outcome::RateLimited {
                out.limited = Some(seen.clone());
            }
            out.readings = Some(seen);
        }
        let resp = &attempt.resp;
        if canary && matches!(c.outcome, Outcome::Success | Outcome::RateLimited) {
            engine.set_verified();
            step.gate.cancel();
        }

        let retry = c.outcome == Outcome::Transient && retries < cfg.max_retries;
        let delay =
            retry.then(|| backoff(cfg.retry_base_delay, cfg.retry_max_delay, retries, hint));
        if cfg.verbose {
            log_attempt(engine, w, i, retries, &attempt, &c, delay);
        }
        if let Some(delay) = delay {
            retries += 1;
            tokio::select! {
                biased;
                _ = step.stop.wait(w) => return,
                _ = tokio::time::sleep(delay) => continue,
            }
        }

        let usage = if c.outcome == Outcome::Success {
            inspection.usage
        } else {
            Default::default()
        };
        let error = describe_failure(engine, &c, resp);
        if c.outcome == Outcome::RateLimited {
            step.limited.store(true, Ordering::Relaxed);
        }
        if c.outcome == Outcome::Fatal {
            let message = error.clone().unwrap_or_else(|| c.rule.to_string());
            let _ = step.fatal.set(message);
            step.stop.set();
        }
        engine.config().on_prompt.call(c.outcome);
        out.records.push((
            i,
            PromptRecord {
                outcome: c.outcome,
                rule: c.rule,
                status: resp.status,
                latency: attempt.latency,
                ttft: attempt.ttft,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                retries,
                error,
            },
        ));
        return;
    }
}

/// Full jitter: uniform in [0, min(max, base × 2^n)]; a retry hint replaces it, capped.
fn backoff(base: Duration, max: Duration, n: u32, hint: Option<Duration>) -> Duration {
    if let Some(h) = hint {
        return h.min(max);
    }
    let ceiling = base.saturating_mul(1u32 << n.min(20)).min(max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
}

/// The text a failed prompt is recorded with: the rule's message, the transport error,
/// or the start of an unexpected body. Always redacted.
fn describe_failure(engine: &Engine, c: &Classified, resp: &ResponseData) -> Option<String> {
    if c.outcome == Outcome::Success {
        return resp
            .transport_error
            .as_ref()
            .map(|e| engine.config().request.redact(e));
    }
    let req = &engine.config().request;
    if let Some(m) = &c.message {
        return Some(req.redact(m));
    }
    if let Some(e) = &resp.transport_error {
        return Some(req.redact(e));
    }
    let status = resp
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "no response".into());
    let snippet = snippet(engine, &resp.body);
    Some(if snippet.is_empty() {
        format!("HTTP {status} ({})", c.rule)
    } else {
        format!("HTTP {status} ({}): {snippet}", c.rule)
    })
}

/// The first 200 characters of a body on one line, redacted before it is cut (so a cut
/// can never leave part of a key visible).
fn snippet(engine: &Engine, body: &[u8]) -> String {
    const MAX: usize = 200;
    let head = &body[..body.len().min(4096)];
    let text = engine
        .config()
        .request
        .redact(&String::from_utf8_lossy(head));
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

fn log_attempt(
    engine: &Engine,
    w: u32,
    i: u64,
    retries: u32,
    a: &Attempt,
    c: &Classified,
    delay: Option<Duration>,
) {
    let status = a
        .resp
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "no response".into());
    let mut line = format!(
        "[w={} p={} try={}] {} -> {status} {} (rule \"{}\") {}ms",
        w + 1,
        i + 1,
        retries + 1,
        engine.inner.display,
        c.outcome,
        c.rule,
        a.latency.as_millis()
    );
    if let Some(ttft) = a.ttft {
        line.push_str(&format!(" ttft {}ms", ttft.as_millis()));
    }
    if let Some(e) = &a.resp.transport_error {
        line.push_str(": ");
        line.push_str(e);
    }
    if let Some(d) = delay {
        line.push_str(&format!("; retry in {}", human(d)));
    }
    let line = engine.config().request.redact(&line);
    engine.config().log.write(&line);
}

/// One attempt: (re)connect if needed, send, read the whole body; all within the
/// request timeout. Never fails: a failure is a `ResponseData` with `transport_error`.
async fn send(engine: &Engine, conn: &mut Option<Sender>, timer: Pin<&mut Sleep>) -> Attempt {
    let cfg = engine.config();
    let start = Instant::now();
    let mut deadline = Deadline::new(timer, start, cfg.request_timeout);
    let timed_out = || format!("request timed out after {}", human(cfg.request_timeout));
    let failed = |e: String, start: Instant| Attempt {
        resp: ResponseData {
            transport_error: Some(e),
            ..Default::default()
        },
        ttft: None,
        latency: start.elapsed(),
    };

    // A kept-alive connection the server closed in the meantime is replaced once,
    // transparently, when the request provably never left (hyper hands it back).
    let mut reused = conn.is_some();
    let response = loop {
        if conn.as_ref().is_none_or(|s| s.is_closed()) {
            reused = false;
            let opened = tokio::select! {
                biased;
                r = open(engine) => r,
                _ = &mut deadline => Err(timed_out()),
            };
            match opened {
                Ok(s) => *conn = Some(s),
                Err(e) => {
                    *conn = None;
                    return failed(e, start);
                }
            }
        }
        let Some(sender) = conn.as_mut() else {
            return failed("no connection".into(), start);
        };
        let sent = tokio::select! {
            biased;
            r = async {
                sender.ready().await.map_err(|e| (e, true))?;
                sender.try_send_request(engine.inner.prepared.request()).await.map_err(|mut e| {
                    let unsent = e.take_message().is_some();
                    (e.into_error(), unsent)
                })
            } => r,
            _ = &mut deadline => {
                *conn = None;
                return failed(timed_out(), start);
            }
        };
        match sent {
            Ok(resp) => break resp,
            Err((e, unsent)) => {
                *conn = None;
                if reused && unsent {
                    continue;
                }
                let mut why = format!("request failed: {}", error_chain(&e));
                if e.is_parse_too_large() {
                    why.extend(engine.head_too_large());
                }
                return failed(why, start);
            }
        }
    };

    let received_at = SystemTime::now();
    let (parts, mut body) = response.into_parts();
    engine.note_head(&parts.headers);
    let streamed = cfg.stream && is_event_stream(&parts.headers);
    let cap = cfg.max_body_bytes;
    let mut buf = BodyBuf::default();
    let mut ttft = None;
    let mut transport_error = None;
    // A body announced larger than the cap is not read at all.
    let announced = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > cap as u64) {
        transport_error = Some(format!("response body exceeds {cap} bytes"));
    }
    while transport_error.is_none() {
        tokio::select! {
            biased;
            frame = body.frame() => match frame {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        if streamed && ttft.is_none() {
                            ttft = Some(start.elapsed());
                        }
                        if buf.len() + data.len() > cap {
                            transport_error = Some(format!("response body exceeds {cap} bytes"));
                            buf.keep_head(CUT_BODY_KEPT);
                            break;
                        }
                        buf.push(data);
                    }
                }
                Some(Err(e)) => {
                    transport_error = Some(format!("response body cut short: {}", error_chain(&e)));
                    break;
                }
            },
            _ = &mut deadline => {
                transport_error = Some(timed_out());
                break;
            }
        }
    }
    if transport_error.is_some() {
        // The connection is mid-message: it cannot carry another request.
        *conn = None;
    }
    let body = buf.finish();
    let events = if streamed {
        cfg.classifier.parse_sse(&body)
    } else {
        Vec::new()
    };
    Attempt {
        resp: ResponseData {
            status: Some(parts.status.as_u16()),
            headers: parts.headers,
            body,
            events,
            transport_error,
            received_at: Some(received_at),
        },
        ttft,
        latency: start.elapsed(),
    }
}

/// One attempt's request timeout, on a timer its worker keeps from one attempt to the
/// next. A timer armed per request costs a wheel insertion and a removal, each under the
/// time driver's lock; the kept timer stays where it is while it is due no later than
/// this deadline, and when it fires early it is moved here. So it is moved about once per
/// timeout period, and a request that times out still ends at its own deadline.
struct Deadline<'a> {
    timer: Pin<&'a mut Sleep>,
    at: tokio::time::Instant,
}

impl<'a> Deadline<'a> {
    fn new(mut timer: Pin<&'a mut Sleep>, start: Instant, timeout: Duration) -> Deadline<'a> {
        // A timeout beyond 30 years never fires, and is 30 years, as tokio's `sleep` takes
        // it: a deadline at the very end of the clock overflows inside tokio's timer.
        let at = tokio::time::Instant::from_std(start)
            + timeout.min(Duration::from_secs(30 * 365 * 86_400));
        if timer.deadline() > at {
            timer.as_mut().reset(at);
        }
        Deadline { timer, at }
    }
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.timer.as_mut().poll(cx));
            let at = self.at;
            if self.timer.deadline() >= at {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(at);
        }
    }
}

/// A new connection and its HTTP/1.1 handshake; the connection task is spawned and ends
/// when the worker drops the sender.
async fn open(engine: &Engine) -> Result<Sender, String> {
    let io = engine.inner.connector.connect().await?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .read_buf_exact_size(engine.read_buffer())
        // A small body is copied behind the head and sent with one write(2); a large one
        // is sent from where it is (writev), so that no connection's write buffer grows
        // to the size of the prompt.
        .writev(engine.inner.prepared.body.len() > SMALL_BODY)
        .handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {}", error_chain(&e)))?;
    tokio::spawn(async move {
        // Its errors reach the request that was in flight; nothing to add here.
        let _ = connection.await;
    });
    Ok(sender)
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        let t = b"text/event-stream";
        v.len() >= t.len() && v[..t.len()].eq_ignore_ascii_case(t)
    })
}

/// Body chunks as they arrive, joined once at the end (a single chunk is not copied).
/// Nothing is copied while the body comes in, so a body cut at the cap holds the cap
/// and no more (a growing contiguous buffer would briefly hold half as much again while
/// it doubles). The first chunk is held apart: most bodies are one chunk, and then no
/// list is allocated.
#[derive(Default)]
struct BodyBuf {
    first: Bytes,
    rest: Vec<Bytes>,
    len: usize,
}

impl BodyBuf {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, data: Bytes) {
        self.len += data.len();
        if self.first.is_empty() && self.rest.is_empty() {
            self.first = data;
        } else {
            self.rest.push(data);
        }
    }

    #[cfg(test)]
    fn chunks(&self) -> usize {
        usize::from(!self.first.is_empty()) + self.rest.len()
    }

    /// Keeps only the first `max` bytes (enough to classify and quote a cut body) and
    /// frees the rest now.
    fn keep_head(&mut self, max: usize) {
        let mut kept = 0;
        let mut n = 0usize;
        for c in std::iter::once(&mut self.first).chain(&mut self.rest) {
            if kept >= max {
                break;
            }
            if kept + c.len() > max {
                c.truncate(max - kept);
            }
            kept += c.len();
            n += 1;
        }
        self.rest.truncate(n.saturating_sub(1));
        self.rest.shrink_to_fit();
        if n == 0 {
            self.first = Bytes::new();
        }
        self.len = kept;
    }

    fn finish(self) -> Bytes {
        if self.rest.is_empty() {
            return self.first;
        }
        let mut b = BytesMut::with_capacity(self.len);
        b.extend_from_slice(&self.first);
        for c in &self.rest {
            b.extend_from_slice(c);
        }
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_below_the_doubling_ceiling() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for n in 0..8 {
            let ceiling = (base * 2u32.pow(n)).min(max);
            for _ in 0..200 {
                assert!(backoff(base, max, n, None) <= ceiling);
            }
        }
        assert_eq!(
            backoff(base, max, 0, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(backoff(base, max, 0, Some(Duration::from_secs(60))), max);
        assert_eq!(backoff(Duration::ZERO, max, 3, None), Duration::ZERO);
    }

    #[test]
    fn body_buffer_keeps_one_chunk_uncopied_and_joins_many() {
        let mut b = BodyBuf::default();
        b.push(Bytes::from_static(b"abc"));
        assert_eq!(b.len(), 3);
        assert_eq!(b.finish(), Bytes::from_static(b"abc"));
        let mut b = BodyBuf::default();
        for part in ["a", "bc", "def"] {
            b.push(Bytes::from(part));
        }
        assert_eq!(b.len(), 6);
        assert_eq!(b.finish(), Bytes::from_static(b"abcdef"));
    }

    #[test]
    fn a_cut_body_keeps_only_its_head() {
        let mut b = BodyBuf::default();
        for part in ["abc", "defg", "hij"] {
            b.push(Bytes::from(part));
        }
        b.keep_head(5);
        assert_eq!(b.len(), 5);
        assert_eq!(b.chunks(), 2);
        assert_eq!(b.finish(), Bytes::from_static(b"abcde"));
        let mut b = BodyBuf::default();
        b.push(Bytes::from("abc"));
        b.keep_head(10);
        assert_eq!(b.finish(), Bytes::from_static(b"abc"));
        let mut b = BodyBuf::default();
        for part in ["abc", "def"] {
            b.push(Bytes::from(part));
        }
        b.keep_head(2);
        assert_eq!((b.len(), b.chunks()), (2, 1));
        assert_eq!(b.finish(), Bytes::from_static(b"ab"));
    }

    #[test]
    fn event_stream_content_type_is_case_insensitive() {
        let mut h = http::HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            "Text/Event-Stream; charset=utf-8".parse().unwrap(),
        );
        assert!(is_event_stream(&h));
        h.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_event_stream(&h));
    }
}
