//! One request, start to finish. The order of the checks is the contract the tests and
//! the docs rely on:
//!
//! 1. Route: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic), as
//!    the flavor allows; `GET /stats`, `POST /stats/reset`; anything else is a 404 in the
//!    vendor's shape. Only the two API endpoints count in the stats.
//! 2. Read and parse the body: a bad body is a 400 in the vendor's shape (counted in
//!    `requests` only).
//! 3. Account faults, as a real API checks the key and the account before it meters:
//!    bad key (401), unknown model (404), quota exhausted (429 that waiting won't fix).
//! 4. Rate limits: the concurrency gate, then the per-minute buckets (requests, tokens,
//!    input tokens, output tokens). A refused request consumes nothing.
//! 5. Rate faults, each on its own deterministic schedule ([`Every`]) counting the
//!    requests that reach it: 5xx, then overloaded, then stall (the request hangs for
//!    `stall_ms` holding its slot, then is answered normally), then — streams only —
//!    mid-stream rate limit, mid-stream error, and finally truncation (any reply).
//! 6. The reply: plain after the whole latency, or streamed as the tokens come.
//!
//! Stats: `ok` counts clean replies, `rate_limited` every 429 from a limit (and the
//! mid-stream rate limit), `faults` every injected fault (a request counts once).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited as LimitedBody};
use hyper::body::Incoming;

use super::body::SimBody;
use super::config::{SimConfig, CONCURRENCY_RETRY};
use super::limits::{Buckets, Charge, Counters, Every, Views};
use super::wire::{self, Failure, Limited, MidStream, Parsed, Reply, Text, Vendor};

/// Request bodies larger than this get a 413 (a chat request is a few kilobytes).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Everything the connections share.
#[derive(Debug)]
pub struct State {
    pub cfg: SimConfig,
    pub counters: Arc<Counters>,
    buckets: Buckets,
    text: Text,
    ids: AtomicU64,
    fault_5xx: Every,
    fault_overloaded: Every,
    fault_stall: Every,
    fault_midstream_rate_limit: Every,
    fault_midstream_error: Every,
    fault_truncate: Every,
}

impl State {
    pub fn new(cfg: SimConfig) -> State {
        State {
            buckets: Buckets::new(&cfg, Instant::now()),
            text: Text::new(cfg.output_tokens),
            counters: Arc::new(Counters::default()),
            ids: AtomicU64::new(0),
            fault_5xx: Every::new(cfg.fault_5xx_rate),
            fault_overloaded: Every::new(cfg.fault_overloaded_rate),
            fault_stall: Every::new(cfg.fault_stall_rate),
            fault_midstream_rate_limit: Every::new(cfg.fault_midstream_rate_limit_rate),
            fault_midstream_error: Every::new(cfg.fault_midstream_error_rate),
            fault_truncate: Every::new(cfg.fault_truncate_rate),
            cfg,
        }
    }

    /// Zeroes the stats and restarts the fault schedules, so a test that resets sees
    /// the same sequence of faults as a fresh server. The buckets keep their level: they
    /// model the account, which a stats reset does not touch.
    pub fn reset(&self) {
        self.counters.reset();
        for e in [
            &self.fault_5xx,
            &self.fault_overloaded,
            &self.fault_stall,
            &self.fault_midstream_rate_limit,
            &self.fault_midstream_error,
            &self.fault_truncate,
        ] {
            e.reset();
        }
    }

    /// `req_…`: 24 hex digits from a counter, scrambled so ids don't look sequential.
    fn next_id(&self) -> u64 {
        let n = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (n << 7)
    }
}

/// The hyper service function.
pub async fn serve(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path();
    let resp = match (&method, path) {
        (&Method::POST, "/v1/chat/completions") if st.cfg.serves_openai() => {
            api(&st, Vendor::OpenAi, req).await
        }
        (&Method::POST, "/v1/messages") if st.cfg.serves_anthropic() => {
            api(&st, Vendor::Anthropic, req).await
        }
        (&Method::GET, "/stats") => stats(&st),
        (&Method::POST, "/stats/reset") => {
            st.reset();
            stats(&st)
        }
        _ => {
            // The vendor's 404 shape: the flavor's, or for `both` the one the client's
            // headers point at (Anthropic clients send anthropic-version / x-api-key).
            let anthropic = !st.cfg.serves_openai()
                || (st.cfg.serves_anthropic()
                    && (req.headers().contains_key("anthropic-version")
                        || req.headers().contains_key("x-api-key")));
            let vendor = if anthropic {
                Vendor::Anthropic
            } else {
                Vendor::OpenAi
            };
            let rid = request_id(st.next_id());
            let reply = vendor.failure(
                Failure::NoRoute {
                    method: method.as_str(),
                    path,
                },
                &rid,
            );
            error_response(vendor, reply.status, reply.body, &rid)
        }
    };
    Ok(resp)
}

fn request_id(n: u64) -> String {
    format!("req_{n:024x}")
}

fn stats(st: &State) -> Response<SimBody> {
    let body = serde_json::to_vec(&st.counters.snapshot()).unwrap_or_default();
    let mut resp = Response::new(SimBody::full(body));
    wire::json_content_type(resp.headers_mut());
    resp
}

fn error_response(vendor: Vendor, status: u16, body: Bytes, rid: &str) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    wire::json_content_type(resp.headers_mut());
    vendor.request_id_header(resp.headers_mut(), rid);
    resp
}

async fn api(st: &State, vendor: Vendor, req: Request<Incoming>) -> Response<SimBody> {
    let arrival = Instant::now();
    let cfg = &st.cfg;
    let counters = &st.counters;
    Counters::bump(&counters.requests);
    let rid = request_id(st.next_id());
    let fail = |f: Failure<'_>| {
        let reply = vendor.failure(f, &rid);
        error_response(vendor, reply.status, reply.body, &rid)
    };

    // 2. Body.
    let bytes = match LimitedBody::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return fail(Failure::TooLarge),
        Err(_) => return fail(Failure::BadRequest("The request body could not be read.")),
    };
    let parsed = match wire::parse(vendor, &bytes) {
        Ok(p) => p,
        Err(msg) => return fail(Failure::BadRequest(&msg)),
    };

    // 3. Account faults.
    let account_fault = if cfg.fault_bad_key {
        Some(Failure::BadKey)
    } else if cfg.fault_unknown_model {
        Some(Failure::UnknownModel(&parsed.model))
    } else if cfg.fault_quota_exhausted {
        Some(Failure::Quota)
    } else {
        None
    };
    if let Some(f) = account_fault {
        Counters::bump(&counters.faults);
        return fail(f);
    }

    // 4. Rate limits.
    let wanted = parsed.max_tokens.unwrap_or(u64::from(cfg.output_tokens));
    let output_tokens = wanted.min(u64::from(cfg.output_tokens)) as u32;
    let capped = parsed
        .max_tokens
        .is_some_and(|m| m < u64::from(cfg.output_tokens));
    let slot = match counters.try_enter(cfg.max_concurrency) {
        Ok(slot) => slot,
        Err(in_flight) => {
            let limit = cfg.max_concurrency.unwrap_or(0);
            let retry = cfg.real(CONCURRENCY_RETRY);
            // Vendors advertise per-minute limits, never a concurrency limit: the
            // headers show only the configured buckets, so a client reading them is not
            // told a per-minute limit of `max_concurrency`.
            let views = st.buckets.views(Instant::now());
            return limited(
                st,
                vendor,
                &parsed,
                Limited::Concurrency {
                    limit,
                    in_flight,
                    retry,
                },
                &views,
                &rid,
            );
        }
    };
    let charge = Charge {
        input: parsed.input_tokens,
        output: wanted,
    };
    let views = match st.buckets.admit(Instant::now(), charge) {
        Ok(v) => v,
        Err(refusal) => {
            drop(slot);
            return limited(
                st,
                vendor,
                &parsed,
                Limited::Bucket(*refusal),
                &refusal.views,
                &rid,
            );
        }
    };

    // 5. Rate faults.
    if st.fault_5xx.hit() {
        Counters::bump(&counters.faults);
        return fail(Failure::ServerError);
    }
    if st.fault_overloaded.hit() {
        Counters::bump(&counters.faults);
        return fail(Failure::Overloaded);
    }
    let stalled = st.fault_stall.hit();
    if stalled {
        Counters::bump(&counters.faults);
        tokio::time::sleep(cfg.stall).await;
    }
    let mid = if !parsed.stream {
        None
    } else if st.fault_midstream_rate_limit.hit() {
        Some(MidStream::RateLimit)
    } else if st.fault_midstream_error.hit() {
        Some(MidStream::Overloaded)
    } else {
        None
    };
    let truncate = st.fault_truncate.hit();
    if !stalled {
        // A stalled request was counted as a fault already; count each request once.
        match (mid, truncate) {
            (Some(MidStream::RateLimit), _) => Counters::bump(&counters.rate_limited),
            (Some(MidStream::Overloaded), _) | (None, true) => Counters::bump(&counters.faults),
            (None, false) => Counters::bump(&counters.ok),
        }
    }

    // 6. The reply.
    let id = match vendor {
        Vendor::OpenAi => format!("chatcmpl-sim{:x}", st.next_id()),
        Vendor::Anthropic => format!("msg_sim{:x}", st.next_id()),
    };
    let reply = Reply {
        vendor,
        parsed: &parsed,
        id: &id,
        output_tokens,
        capped,
    };
    let mut resp = if parsed.stream {
        streamed(arrival, cfg, &reply, &st.text, mid, truncate)
    } else {
        let latency = cfg.ttft() + cfg.generation(output_tokens);
        // The latency counts from the request's arrival, so reading and checking the
        // request does not add to it; the clock is precise to tens of microseconds
        // (tokio's timer would add 1–3 ms: see `clock.rs`).
        if !latency.is_zero() {
            super::clock::sleep_until(arrival + latency).await;
        }
        let body = reply.plain(&st.text);
        if truncate {
            // Declare the whole length, send half, then close the connection.
            let full = body.len();
            let mut resp = Response::new(SimBody::timeline(
                Instant::now(),
                vec![(Duration::ZERO, Bytes::from(body).slice(..full / 2))],
                true,
            ));
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(full));
            wire::json_content_type(resp.headers_mut());
            resp
        } else {
            let mut resp = Response::new(SimBody::full(body));
            wire::json_content_type(resp.headers_mut());
            resp
        }
    };
    vendor.request_id_header(resp.headers_mut(), &rid);
    vendor.limit_headers(resp.headers_mut(), views.iter());
    resp.map(|b| b.holding(slot))
}

/// A streamed reply: the opening events at the first token, content events as their
/// tokens are generated, the closing events with the last content. A truncated stream
/// is cut after two content events by dropping the connection.
fn streamed(
    arrival: Instant,
    cfg: &SimConfig,
    reply: &Reply<'_>,
    text: &Text,
    mid: Option<MidStream>,
    truncate: bool,
) -> Response<SimBody> {
    let plan = reply.stream(text, mid);
    let ttft = cfg.ttft();
    let mut chunks: Vec<(Duration, Bytes)> = Vec::with_capacity(plan.deltas.len() + 2);
    let mut push = |at: Duration, s: String| match chunks.last_mut() {
        // Events due at the same instant go out in one write.
        Some((last_at, last)) if *last_at == at => {
            let mut joined = Vec::with_capacity(last.len() + s.len());
            joined.extend_from_slice(last);
            joined.extend_from_slice(s.as_bytes());
            *last = Bytes::from(joined);
        }
        _ => chunks.push((at, Bytes::from(s))),
    };
    push(ttft, plan.head);
    let mut at = ttft;
    let deltas = plan.deltas.len();
    for (i, (end, event)) in plan.deltas.into_iter().enumerate() {
        at = ttft + cfg.generation(end);
        push(at, event);
        if truncate && i == 1 && deltas > 2 {
            return sse(SimBody::timeline(arrival, chunks, true));
        }
    }
    at = at.max(ttft + cfg.generation(plan.tail_at));
    push(at, plan.tail);
    sse(SimBody::timeline(arrival, chunks, truncate))
}

fn sse(body: SimBody) -> Response<SimBody> {
    let mut resp = Response::new(body);
    wire::sse_content_type(resp.headers_mut());
    resp
}

/// A 429 from a rate limit: the vendor's body and headers, or with `fault_html_429` the
/// bare HTML page of a gateway.
fn limited(
    st: &State,
    vendor: Vendor,
    parsed: &Parsed,
    l: Limited,
    views: &Views,
    rid: &str,
) -> Response<SimBody> {
    Counters::bump(&st.counters.rate_limited);
    if st.cfg.fault_html_429 {
        let mut resp = Response::new(SimBody::full(wire::NGINX_429));
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        resp.headers_mut()
            .insert(http::header::SERVER, HeaderValue::from_static("nginx"));
        return resp;
    }
    let body = wire::rate_limited(vendor, &l, &parsed.model, rid);
    let mut resp = error_response(vendor, 429, body, rid);
    vendor.limit_headers(resp.headers_mut(), views.iter());
    if let Some(wait) = l.wait() {
        wire::retry_after_header(resp.headers_mut(), wait);
    }
    resp
}
