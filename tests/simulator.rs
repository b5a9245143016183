//! The simulated provider from the client's side: real sockets on 127.0.0.1 (port 0),
//! hyper-util's legacy client, exact statuses, bodies, headers and server-side counts.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use find_workers_limit::config::scenario::{Flavor, SimulatorSettings};
use find_workers_limit::simulate::{SimServer, Stats};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn start(settings: SimulatorSettings) -> SimServer {
    SimServer::start(settings, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts")
}

/// Settings with no latency unless a test asks for it.
fn instant() -> SimulatorSettings {
    SimulatorSettings {
        ttft_ms: Some(0),
        tokens_per_second: Some(0),
        ..Default::default()
    }
}

/// One answer: status, headers, and the body (or the error that cut it).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    body_error: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    /// Header names starting with `prefix`, sorted.
    fn names_with(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .headers
            .keys()
            .map(|k| k.as_str().to_string())
            .filter(|k| k.starts_with(prefix))
            .collect();
        v.sort();
        v
    }
}

async fn send(
    c: &HttpClient,
    method: Method,
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = c.request(req).await.expect("response head");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    let mut body_error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    bytes.extend_from_slice(&d);
                }
            }
            Err(e) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    Answer {
        status,
        headers,
        body: Bytes::from(bytes),
        body_error,
    }
}

fn openai_body(max_tokens: Option<u64>, stream: bool) -> String {
    let mut b = json!({
        "model": "sim-model",
        "messages": [{"role": "user", "content": "Write an essay about computing."}],
    });
    if let Some(m) = max_tokens {
        b["max_completion_tokens"] = json!(m);
    }
    if stream {
        b["stream"] = json!(true);
        b["stream_options"] = json!({"include_usage": true});
    }
    b.to_string()
}

fn anthropic_body(max_tokens: u64, stream: bool) -> String {
    json!({
        "model": "claude-sim",
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": "Write an essay about computing."}],
    })
    .to_string()
}

async fn openai(c: &HttpClient, sim: &SimServer, body: &str) -> Answer {
    let url = format!("{}/chat/completions", sim.openai_base_url());
    send(
        c,
        Method::POST,
        &url,
        body,
        &[
            ("authorization", "Bearer sk-test"),
            ("content-type", "application/json"),
        ],
    )
    .await
}

async fn anthropic(c: &HttpClient, sim: &SimServer, body: &str) -> Answer {
    let url = format!("{}/v1/messages", sim.anthropic_base_url());
    send(
        c,
        Method::POST,
        &url,
        body,
        &[
            ("x-api-key", "sk-ant-test"),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
        ],
    )
    .await
}

/// `n` requests at once; the answers in completion order.
async fn concurrently<F, Fut>(n: usize, f: F) -> Vec<Answer>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(f())).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

fn statuses(answers: &[Answer]) -> (usize, usize) {
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let limited = answers.iter().filter(|a| a.status == 429).count();
    assert_eq!(ok + limited, answers.len(), "only 200 and 429 expected");
    (ok, limited)
}

/// 300 ms per request, so that requests sent together overlap.
fn concurrency_5(flavor: Flavor) -> SimulatorSettings {
    SimulatorSettings {
        flavor: Some(flavor),
        max_concurrency: Some(5),
        ttft_ms: Some(300),
        tokens_per_second: Some(0),
        ..Default::default()
    }
}

fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && s.chars().filter(|c| c.is_ascii_digit()).count() == 14
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_max_concurrency_5_passes_5_and_refuses_the_rest() {
    let sim = start(concurrency_5(Flavor::Openai)).await;
    let c = client();
    let body = openai_body(None, false);

    let five = concurrently(5, || {
        let (c, url, body) = (c.clone(), sim.openai_base_url(), body.clone());
        async move {
            send(
                &c,
                Method::POST,
                &format!("{url}/chat/completions"),
                &body,
                &[],
            )
            .await
        }
    })
    .await;
    assert_eq!(statuses(&five), (5, 0));
    for a in &five {
        // Vendors never advertise a concurrency limit: with no rpm or tpm configured
        // there are no rate-limit headers at all.
        assert_eq!(a.names_with("x-ratelimit-"), Vec::<String>::new());
        assert!(a.header("date").is_some());
    }

    let ten = concurrently(10, || {
        let (c, url, body) = (c.clone(), sim.openai_base_url(), body.clone());
        async move {
            send(
                &c,
                Method::POST,
                &format!("{url}/chat/completions"),
                &body,
                &[],
            )
            .await
        }
    })
    .await;
    assert_eq!(statuses(&ten), (5, 5));
    for a in ten.iter().filter(|a| a.status == 429) {
        assert_eq!(
            a.json(),
            json!({"error": {
                "message": "Rate limit reached for sim-model in organization org-simulator on concurrent requests: \
            Limit 5, Used 5, Requested 1. Please try again in 1s. Visit https://platform.openai.com/account/rate-limits to learn more.",
                "type": "requests",
                "param": null,
                "code": "rate_limit_exceeded",
            }})
        );
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert_eq!(a.header("retry-after"), Some("1"));
        assert_eq!(a.names_with("x-ratelimit-"), Vec::<String>::new());
        assert!(a
            .header("x-request-id")
            .is_some_and(|id| id.starts_with("req_")));
        assert!(a.header("date").is_some());
    }
    assert_eq!(
        sim.stats(),
        Stats {
            requests: 15,
            ok: 10,
            rate_limited: 5,
            faults: 0,
            max_in_flight: 5,
            in_flight: 0
        }
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_max_concurrency_5_passes_5_and_refuses_the_rest() {
    let sim = start(concurrency_5(Flavor::Anthropic)).await;
    let c = client();
    let body = anthropic_body(1000, false);
    let url = format!("{}/v1/messages", sim.anthropic_base_url());

    let five = concurrently(5, || {
        let (c, url, body) = (c.clone(), url.clone(), body.clone());
        async move {
            send(
                &c,
                Method::POST,
                &url,
                &body,
                &[("anthropic-version", "2023-06-01")],
            )
            .await
        }
    })
    .await;
    assert_eq!(statuses(&five), (5, 0));

    let ten = concurrently(10, || {
        let (c, url, body) = (c.clone(), url.clone(), body.clone());
        async move {
            send(
                &c,
                Method::POST,
                &url,
                &body,
                &[("anthropic-version", "2023-06-01")],
            )
            .await
        }
    })
    .await;
    assert_eq!(statuses(&ten), (5, 5));
    for a in ten.iter().filter(|a| a.status == 429) {
        let rid = a
            .header("request-id")
            .expect("request-id header")
            .to_string();
        assert!(rid.starts_with("req_"), "{rid}");
        assert_eq!(
            a.json(),
            json!({
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "message": "This request would exceed the rate limit for your organization (org-simulator) of 5 \
            concurrent requests. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers \
            for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.",
                },
                "request_id": rid,
            })
        );
        assert_eq!(a.header("retry-after"), Some("1"));
        assert_eq!(a.names_with("anthropic-ratelimit-"), Vec::<String>::new());
        assert!(a.header("date").is_some());
    }
    assert_eq!(
        sim.stats(),
        Stats {
            requests: 15,
            ok: 10,
            rate_limited: 5,
            faults: 0,
            max_in_flight: 5,
            in_flight: 0
        }
    );
    sim.shutdown().await;
}

/// Sends one request every `period` for `total`, one at a time; returns (ok, refused,
/// seconds from the first send to the last).
async fn paced(sim: &SimServer, period: Duration, total: Duration) -> (u64, u64, f64, Vec<Answer>) {
    let c = client();
    let body = openai_body(Some(10), false);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let t0 = Instant::now();
    let mut last = t0;
    let (mut ok, mut refused) = (0, 0);
    let mut refusals = Vec::new();
    while t0.elapsed() < total {
        tick.tick().await;
        last = Instant::now();
        let a = openai(&c, sim, &body).await;
        match a.status {
            200 => ok += 1,
            429 => {
                refused += 1;
                if refusals.len() < 3 {
                    refusals.push(a);
                }
            }
            s => panic!("unexpected status {s}"),
        }
    }
    (ok, refused, last.duration_since(t0).as_secs_f64(), refusals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_with_time_scale_refuses_a_rate_above_the_limit_and_not_one_below() {
    // 60 rpm at time scale 60: 60 requests per real second, burst 5.
    let settings = SimulatorSettings {
        rpm: Some(60),
        rpm_burst: Some(5),
        time_scale: Some(60.0),
        ..instant()
    };

    // Below: 25 requests per second for 2 s.
    let sim = start(settings.clone()).await;
    let (ok, refused, _, _) = paced(&sim, Duration::from_millis(40), Duration::from_secs(2)).await;
    assert_eq!(refused, 0, "{ok} passed");
    assert!(ok >= 40, "{ok}");
    sim.shutdown().await;

    // Above: 200 requests per second for 2 s. What passes is the burst plus the refill
    // over the elapsed time.
    let sim = start(settings).await;
    let (ok, refused, secs, refusals) =
        paced(&sim, Duration::from_millis(5), Duration::from_secs(2)).await;
    assert!(refused > 0);
    let expected = 5.0 + 60.0 * secs;
    assert!(
        (ok as f64 - expected).abs() <= 3.0,
        "ok {ok}, expected {expected:.1} over {secs:.3} s"
    );
    let a = &refusals[0];
    let err = &a.json()["error"];
    assert_eq!(err["type"], "requests");
    assert_eq!(err["code"], "rate_limit_exceeded");
    let msg = err["message"].as_str().expect("message");
    assert!(
        msg.starts_with("Rate limit reached for sim-model in organization org-simulator on requests per min (RPM): Limit 60, Used "),
        "{msg}"
    );
    assert!(msg.contains(", Requested 1. Please try again in "), "{msg}");
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(a.header("x-ratelimit-limit-requests"), Some("60"));
    assert_eq!(a.header("x-ratelimit-remaining-requests"), Some("0"));
    // Refilling one request takes 1/60 s; the reset is at most that, in ms.
    let reset = a.header("x-ratelimit-reset-requests").expect("reset");
    let ms: u64 = reset
        .strip_suffix("ms")
        .and_then(|v| v.parse().ok())
        .expect("a ms duration");
    assert!((1..=84).contains(&ms), "{reset}");
    let stats = sim.stats();
    assert_eq!((stats.ok, stats.rate_limited), (ok, refused));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_charges_input_plus_requested_output() {
    let sim = start(SimulatorSettings {
        tpm: Some(1000),
        ..instant()
    })
    .await;
    let c = client();
    // "Write an essay about computing." is 31 characters: 8 input tokens; + 300 requested.
    let body = openai_body(Some(300), false);
    let first = openai(&c, &sim, &body).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.json()["usage"],
        json!({
            "prompt_tokens": 8, "completion_tokens": 64, "total_tokens": 72,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        })
    );
    assert_eq!(first.header("x-ratelimit-limit-tokens"), Some("1000"));
    assert_eq!(first.header("x-ratelimit-remaining-tokens"), Some("692"));
    assert_eq!(
        first.names_with("x-ratelimit-"),
        vec![
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens"
        ]
    );
    assert_eq!(openai(&c, &sim, &body).await.status, 200);
    assert_eq!(openai(&c, &sim, &body).await.status, 200);
    let refused = openai(&c, &sim, &body).await;
    assert_eq!(refused.status, 429);
    let msg = refused.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    // Used is 924 less what refilled since (16.7 tokens/s), so only its start is exact.
    assert!(
        msg.starts_with("Rate limit reached for sim-model in organization org-simulator on tokens per min (TPM): Limit 1000, Used 92"),
        "{msg}"
    );
    assert!(
        msg.contains(", Requested 308. Please try again in "),
        "{msg}"
    );
    assert_eq!(refused.json()["error"]["type"], "tokens");
    // Larger than the whole bucket: waiting will not help, so no retry hint.
    let huge = openai(&c, &sim, &openai_body(Some(5000), false)).await;
    assert_eq!(huge.status, 429);
    assert_eq!(
        huge.json(),
        json!({"error": {
            "message": "Request too large for sim-model in organization org-simulator on tokens per min (TPM): Limit 1000, \
Requested 5008. The input or output tokens must be reduced in order to run successfully. Visit \
https://platform.openai.com/account/rate-limits to learn more.",
            "type": "tokens", "param": null, "code": "rate_limit_exceeded"}})
    );
    assert_eq!(huge.header("retry-after"), None);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_input_and_output_token_buckets() {
    let sim = start(SimulatorSettings {
        input_tpm: Some(100),
        output_tpm: Some(50),
        ..instant()
    })
    .await;
    let c = client();
    let body = anthropic_body(20, false);
    let a = anthropic(&c, &sim, &body).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.names_with("anthropic-ratelimit-"),
        vec![
            "anthropic-ratelimit-input-tokens-limit",
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-input-tokens-reset",
            "anthropic-ratelimit-output-tokens-limit",
            "anthropic-ratelimit-output-tokens-remaining",
            "anthropic-ratelimit-output-tokens-reset",
        ]
    );
    assert_eq!(
        a.header("anthropic-ratelimit-input-tokens-remaining"),
        Some("92")
    );
    assert_eq!(
        a.header("anthropic-ratelimit-output-tokens-remaining"),
        Some("30")
    );
    assert!(is_rfc3339(
        a.header("anthropic-ratelimit-output-tokens-reset")
            .expect("reset")
    ));
    assert_eq!(
        a.json()["usage"],
        json!({"input_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 20, "service_tier": "standard"})
    );
    assert_eq!(a.json()["stop_reason"], "max_tokens");
    assert_eq!(anthropic(&c, &sim, &body).await.status, 200);
    let refused = anthropic(&c, &sim, &body).await;
    assert_eq!(refused.status, 429);
    let msg = refused.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert!(msg.starts_with("This request would exceed the rate limit for your organization (org-simulator) of 50 output tokens per minute."), "{msg}");
    assert_eq!(
        refused.header("anthropic-ratelimit-output-tokens-remaining"),
        Some("10")
    );
    // Output tokens refill at 50/60 per second: 10 → 20 takes 12 s.
    assert_eq!(refused.header("retry-after"), Some("12"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_endpoint_and_reset() {
    let sim = start(SimulatorSettings {
        max_concurrency: Some(2),
        ttft_ms: Some(200),
        tokens_per_second: Some(0),
        ..Default::default()
    })
    .await;
    let c = client();
    let answers = concurrently(4, || {
        let (c, url, body) = (c.clone(), sim.openai_base_url(), openai_body(None, false));
        async move {
            send(
                &c,
                Method::POST,
                &format!("{url}/chat/completions"),
                &body,
                &[],
            )
            .await
        }
    })
    .await;
    assert_eq!(statuses(&answers), (2, 2));
    let stats_url = format!("http://{}/stats", sim.addr);
    let a = send(&c, Method::GET, &stats_url, "", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        a.json(),
        json!({"requests": 4, "ok": 2, "rate_limited": 2, "faults": 0, "max_in_flight": 2, "in_flight": 0})
    );
    let reset = send(&c, Method::POST, &format!("{stats_url}/reset"), "", &[]).await;
    assert_eq!(
        reset.json(),
        json!({"requests": 0, "ok": 0, "rate_limited": 0, "faults": 0, "max_in_flight": 0, "in_flight": 0})
    );
    assert_eq!(sim.stats(), Stats::default());
    // Stats requests are not API requests.
    assert_eq!(sim.stats().requests, 0);
    openai(&c, &sim, &openai_body(None, false)).await;
    sim.reset_stats();
    assert_eq!(sim.stats(), Stats::default());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_replies_follow_the_latency_and_the_max_tokens_cap() {
    // 100 ms to the first token, 64 tokens at 200/s: 0.42 s.
    let sim = start(SimulatorSettings::default()).await;
    let c = client();
    let t0 = Instant::now();
    let a = openai(&c, &sim, &openai_body(Some(1000), false)).await;
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(420), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "sim-model");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["usage"]["completion_tokens"], 64);
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert_eq!(content.split(' ').count(), 64);
    assert!(content.starts_with("The history of computing"));
    // No limits configured: no rate-limit headers.
    assert!(a.names_with("x-ratelimit-").is_empty());

    let capped = openai(&c, &sim, &openai_body(Some(5), false)).await.json();
    assert_eq!(
        capped["choices"][0]["message"]["content"],
        "The history of computing begins"
    );
    assert_eq!(capped["choices"][0]["finish_reason"], "length");
    assert_eq!(capped["usage"]["completion_tokens"], 5);

    let msg = anthropic(&c, &sim, &anthropic_body(3, false)).await.json();
    let id = msg["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("msg_"));
    assert_eq!(
        msg,
        json!({"id": id, "type": "message", "role": "assistant", "model": "claude-sim",
            "content": [{"type": "text", "text": "The history of"}],
            "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 3, "service_tier": "standard"}})
    );
    sim.shutdown().await;
}

/// `(event name, data JSON)` of each SSE event; `[DONE]` becomes `Value::Null`.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = if d == "[DONE]" {
                        Value::Null
                    } else {
                        serde_json::from_str(d).expect("event JSON")
                    };
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_with_usage_chunk_and_done() {
    let sim = start(SimulatorSettings {
        ttft_ms: Some(200),
        tokens_per_second: Some(100),
        output_tokens: Some(20),
        ..Default::default()
    })
    .await;
    let c = client();
    let t0 = Instant::now();
    let a = openai(&c, &sim, &openai_body(Some(1000), true)).await;
    let took = t0.elapsed();
    // 200 ms + 20 tokens at 100/s.
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(a.text().ends_with("data: [DONE]\n\n"));
    let events = sse_events(a.text());
    // role chunk, 10 content chunks, finish chunk, usage chunk, [DONE].
    assert_eq!(events.len(), 14);
    assert_eq!(events[0].1["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[0].1["object"], "chat.completion.chunk");
    let content: String = events[1..11]
        .iter()
        .map(|(_, d)| {
            d["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content")
                .to_string()
        })
        .collect();
    assert_eq!(content.split(' ').count(), 20);
    assert!(events[..12]
        .iter()
        .all(|(_, d)| d["usage"].is_null() && d.get("usage").is_some()));
    assert_eq!(events[11].1["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[12].1["choices"], json!([]));
    assert_eq!(events[12].1["usage"]["prompt_tokens"], 8);
    assert_eq!(events[12].1["usage"]["completion_tokens"], 20);
    assert_eq!(events[12].1["usage"]["total_tokens"], 28);
    assert_eq!(events[13].1, Value::Null);

    // Without include_usage: no usage chunk, no usage fields.
    let body =
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true})
            .to_string();
    let events = sse_events(openai(&c, &sim, &body).await.text());
    assert_eq!(events.len(), 13);
    assert!(events.iter().all(|(_, d)| d.get("usage").is_none()));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_event_sequence() {
    let sim = start(SimulatorSettings {
        ttft_ms: Some(50),
        tokens_per_second: Some(400),
        output_tokens: Some(30),
        ..Default::default()
    })
    .await;
    let c = client();
    let a = anthropic(&c, &sim, &anthropic_body(1000, true)).await;
    assert_eq!(a.status, 200);
    let events = sse_events(a.text());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(std::iter::repeat_n("content_block_delta", 10));
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, want);
    for (n, d) in &events {
        assert_eq!(d["type"], n.as_str());
    }
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 8);
    assert_eq!(events[0].1["message"]["model"], "claude-sim");
    let text: String = events[3..13]
        .iter()
        .map(|(_, d)| d["delta"]["text"].as_str().expect("text").to_string())
        .collect();
    assert_eq!(text.split(' ').count(), 30);
    assert_eq!(
        events[14].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 30}})
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_faults_have_the_vendor_bodies() {
    let c = client();
    // Quota exhausted.
    let sim = start(SimulatorSettings {
        fault_quota_exhausted: Some(true),
        ..instant()
    })
    .await;
    let a = openai(&c, &sim, &openai_body(None, false)).await;
    assert_eq!(a.status, 429);
    assert_eq!(
        a.json(),
        json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details. For more \
information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}})
    );
    assert_eq!(a.header("retry-after"), None);
    let a = anthropic(&c, &sim, &anthropic_body(10, false)).await;
    assert_eq!(a.status, 429);
    let v = a.json();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(
        v["error"]["details"],
        json!({"error_code": "enforced_spend_limit_reached"})
    );
    assert_eq!(a.header("retry-after"), None);
    assert_eq!(
        sim.stats(),
        Stats {
            requests: 2,
            faults: 2,
            ..Default::default()
        }
    );
    sim.shutdown().await;

    // Bad key.
    let sim = start(SimulatorSettings {
        fault_bad_key: Some(true),
        ..instant()
    })
    .await;
    let a = openai(&c, &sim, &openai_body(None, false)).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.json(),
        json!({"error": {"message": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
    );
    let a = anthropic(&c, &sim, &anthropic_body(10, false)).await;
    assert_eq!(a.status, 401);
    let rid = a.header("request-id").expect("request-id").to_string();
    assert_eq!(
        a.json(),
        json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}, "request_id": rid})
    );
    sim.shutdown().await;

    // Unknown model.
    let sim = start(SimulatorSettings {
        fault_unknown_model: Some(true),
        ..instant()
    })
    .await;
    let a = openai(&c, &sim, &openai_body(None, false)).await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.json(),
        json!({"error": {"message": "The model `sim-model` does not exist or you do not have access to it.",
            "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
    );
    let a = anthropic(&c, &sim, &anthropic_body(10, false)).await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.json()["error"],
        json!({"type": "not_found_error", "message": "model: claude-sim"})
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_overload_at_exact_rates() {
    let c = client();
    let sim = start(SimulatorSettings {
        fault_5xx_rate: Some(0.5),
        ..instant()
    })
    .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(openai(&c, &sim, &openai_body(None, false)).await);
    }
    assert_eq!(
        got.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![200, 500, 200, 500]
    );
    assert_eq!(
        got[1].json(),
        json!({"error": {"message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error", "param": null, "code": null}})
    );
    let a = anthropic(&c, &sim, &anthropic_body(10, false)).await;
    assert_eq!(a.status, 200);
    let a = anthropic(&c, &sim, &anthropic_body(10, false)).await;
    assert_eq!(a.status, 500);
    assert_eq!(
        a.json()["error"],
        json!({"type": "api_error", "message": "Internal server error"})
    );
    assert_eq!(
        sim.stats(),
        Stats {
            requests: 6,
            ok: 3,
            faults: 3,
            max_in_flight: 1,
            ..Default::default()
        }
    );
    // A reset restarts the schedule.
    sim.reset_stats();
    assert_eq!(
        openai(&c, &sim, &openai_body(None, false)).await.status,
        200
    );
    assert_eq!(
        openai(&c, &sim, &openai_body(None, false)).await.status,
        500
    );
    sim.shutdown().await;

    let sim = start(SimulatorSettings {
        fault_overloaded_rate: Some(1.0),
        ..instant()
    })
    .await;
    let a = anthropic(&c, &sim, &anthropic_body(10, false)).await;
    assert_eq!(a.status, 529);
    let rid = a.header("request-id").expect("request-id").to_string();
    assert_eq!(
        a.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": rid})
    );
    let a = openai(&c, &sim, &openai_body(None, false)).await;
    assert_eq!(a.status, 503);
    assert_eq!(
        a.json(),
        json!({"error": {"message": "The server is overloaded or not ready yet.",
            "type": "service_unavailable_error", "param": null, "code": "server_is_overloaded"}})
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_429_from_a_gateway() {
    let sim = start(SimulatorSettings {
        max_concurrency: Some(0),
        fault_html_429: Some(true),
        ..instant()
    })
    .await;
    let c = client();
    for a in [
        openai(&c, &sim, &openai_body(None, false)).await,
        anthropic(&c, &sim, &anthropic_body(5, false)).await,
    ] {
        assert_eq!(a.status, 429);
        assert_eq!(a.header("content-type"), Some("text/html"));
        assert_eq!(
            a.text(),
            "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n<center><h1>429 Too Many \
Requests</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        assert_eq!(a.header("retry-after"), None);
        assert!(
            a.names_with("x-ratelimit-").is_empty()
                && a.names_with("anthropic-ratelimit-").is_empty()
        );
    }
    assert_eq!(sim.stats().rate_limited, 2);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_errors_after_two_deltas() {
    let c = client();
    let sim = start(SimulatorSettings {
        fault_midstream_error_rate: Some(1.0),
        ..instant()
    })
    .await;
    let a = openai(&c, &sim, &openai_body(None, true)).await;
    assert_eq!(a.status, 200);
    let events = sse_events(a.text());
    assert_eq!(events.len(), 4, "{}", a.text());
    assert!(events[1].1["choices"][0]["delta"]["content"].is_string());
    assert!(events[2].1["choices"][0]["delta"]["content"].is_string());
    assert_eq!(
        events[3].1,
        json!({"error": {"message": "The server is overloaded or not ready yet.", "type": "server_error", "param": null, "code": "server_is_overloaded"}})
    );
    let a = anthropic(&c, &sim, &anthropic_body(100, true)).await;
    assert_eq!(a.status, 200);
    assert!(a.text().ends_with(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    ));
    let names: Vec<String> = sse_events(a.text()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );
    // Plain requests are not hit by a stream fault.
    assert_eq!(
        openai(&c, &sim, &openai_body(None, false)).await.status,
        200
    );
    assert_eq!(
        sim.stats(),
        Stats {
            requests: 3,
            ok: 1,
            faults: 2,
            max_in_flight: 1,
            ..Default::default()
        }
    );
    sim.shutdown().await;

    let sim = start(SimulatorSettings {
        fault_midstream_rate_limit_rate: Some(1.0),
        ..instant()
    })
    .await;
    let events = sse_events(openai(&c, &sim, &openai_body(None, true)).await.text());
    assert_eq!(events[3].1["error"]["code"], "rate_limit_exceeded");
    assert_eq!(events[3].1["error"]["type"], "requests");
    let events = sse_events(anthropic(&c, &sim, &anthropic_body(100, true)).await.text());
    assert_eq!(events[5].0, "error");
    assert_eq!(
        events[5].1,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "This request would exceed your account's rate limit. Please try again later."}})
    );
    assert_eq!(sim.stats().rate_limited, 2);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_close_the_connection_early() {
    let sim = start(SimulatorSettings {
        fault_truncate_rate: Some(1.0),
        ..instant()
    })
    .await;
    let c = client();
    let a = openai(&c, &sim, &openai_body(None, false)).await;
    assert_eq!(a.status, 200);
    let declared: usize = a
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    assert_eq!(a.body.len(), declared / 2);
    assert!(
        a.body_error.is_some(),
        "the client must see the body cut short"
    );
    let s = anthropic(&c, &sim, &anthropic_body(100, true)).await;
    assert_eq!(s.status, 200);
    assert!(
        s.body_error.is_some(),
        "the stream must end without its terminating chunk"
    );
    let names: Vec<String> = sse_events(s.text()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta"
        ]
    );
    assert_eq!(
        sim.stats(),
        Stats {
            requests: 2,
            faults: 2,
            max_in_flight: 1,
            ..Default::default()
        }
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_hold_the_request_then_answer() {
    let sim = start(SimulatorSettings {
        fault_stall_rate: Some(0.5),
        stall_ms: Some(400),
        ..instant()
    })
    .await;
    let c = client();
    let t0 = Instant::now();
    assert_eq!(
        openai(&c, &sim, &openai_body(None, false)).await.status,
        200
    );
    assert!(t0.elapsed() < Duration::from_millis(300));
    // The 2nd request stalls: a client with a 150 ms timeout gives up.
    let url = format!("{}/chat/completions", sim.openai_base_url());
    let gave_up = tokio::time::timeout(
        Duration::from_millis(150),
        send(&c, Method::POST, &url, &openai_body(None, false), &[]),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the stalled request must not answer within 150 ms"
    );
    assert_eq!(sim.stats().faults, 1);
    // Let the abandoned stall run out, so that it overlaps nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The 4th stalls too; a patient client gets its answer after the stall.
    assert_eq!(
        openai(&c, &sim, &openai_body(None, false)).await.status,
        200
    );
    let t0 = Instant::now();
    assert_eq!(
        openai(&c, &sim, &openai_body(None, false)).await.status,
        200
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        sim.stats(),
        Stats {
            requests: 4,
            ok: 2,
            faults: 2,
            max_in_flight: 1,
            ..Default::default()
        }
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_unknown_paths_in_vendor_shape() {
    let sim = start(instant()).await;
    let c = client();
    let a = openai(&c, &sim, "{not json").await;
    assert_eq!(a.status, 400);
    let v = a.json();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .starts_with("We could not parse the JSON body"));
    let a = anthropic(&c, &sim, r#"{"model":"m","messages":[]}"#).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json()["error"],
        json!({"type": "invalid_request_error", "message": "max_tokens: Field required"})
    );
    let a = openai(&c, &sim, r#"{"messages":[]}"#).await;
    assert_eq!(
        a.json()["error"]["message"],
        "you must provide a model parameter"
    );
    let a = openai(&c, &sim, r#"{"model":"m","messages":"x"}"#).await;
    assert_eq!(a.status, 400);
    let a = send(
        &c,
        Method::GET,
        &format!("{}/v1/nothing", sim.anthropic_base_url()),
        "",
        &[],
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.json(),
        json!({"error": {"message": "Invalid URL (GET /v1/nothing)", "type": "invalid_request_error", "param": null, "code": null}})
    );
    let a = send(
        &c,
        Method::GET,
        &format!("{}/v1/nothing", sim.anthropic_base_url()),
        "",
        &[("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!(
        a.json()["error"],
        json!({"type": "not_found_error", "message": "Not Found"})
    );
    assert_eq!(
        sim.stats(),
        Stats {
            requests: 4,
            ..Default::default()
        }
    );
    sim.shutdown().await;

    // A flavor serves only its own endpoint.
    let sim = start(SimulatorSettings {
        flavor: Some(Flavor::Openai),
        ..instant()
    })
    .await;
    let a = anthropic(&c, &sim, &anthropic_body(10, false)).await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.json()["error"]["message"],
        "Invalid URL (POST /v1/messages)"
    );
    sim.shutdown().await;
    let sim = start(SimulatorSettings {
        flavor: Some(Flavor::Anthropic),
        ..instant()
    })
    .await;
    let a = openai(&c, &sim, &openai_body(None, false)).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["type"], "not_found_error");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_settings_and_shutdown() {
    let err = SimServer::start(
        SimulatorSettings {
            fault_5xx_rate: Some(1.5),
            ..Default::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "fault_5xx_rate 1.5 is not a fraction from 0 to 1"
    );

    let sim = start(instant()).await;
    assert_eq!(
        sim.openai_base_url(),
        format!("http://127.0.0.1:{}/v1", sim.addr.port())
    );
    assert_eq!(
        sim.anthropic_base_url(),
        format!("http://127.0.0.1:{}", sim.addr.port())
    );
    let addr = sim.addr;
    sim.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

/// The official Python SDKs (tests/sdk_clients.py) against three simulators: one that
/// serves, one that answers 429 to everything, one that fails streams after two events.
/// `tests/run` creates the venv and exports FWL_SDK_PYTHON; without it this test fails
/// rather than silently proving nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_complete_requests_and_raise_their_own_errors() {
    let python = std::env::var("FWL_SDK_PYTHON").unwrap_or_else(|_| {
        panic!(
            "FWL_SDK_PYTHON is not set: run `tests/run` (it creates target/sdk-venv with the openai and \
anthropic SDKs and exports FWL_SDK_PYTHON), or set it to a python that has both SDKs"
        )
    });
    let fast = SimulatorSettings {
        ttft_ms: Some(20),
        tokens_per_second: Some(1000),
        ..Default::default()
    };
    let ok = start(fast.clone()).await;
    let limited = start(SimulatorSettings {
        max_concurrency: Some(0),
        ..fast.clone()
    })
    .await;
    let midstream = start(SimulatorSettings {
        fault_midstream_error_rate: Some(1.0),
        ..fast
    })
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk_clients.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(ok.anthropic_base_url())
        .arg(limited.anthropic_base_url())
        .arg(midstream.anthropic_base_url())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK checks failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all SDK checks passed"), "{stdout}");
    // 4 served, 2 refused, 2 failed mid-stream: the server saw exactly the SDKs' requests
    // (max_retries=0, so no retries).
    assert_eq!((ok.stats().requests, ok.stats().ok), (4, 4));
    assert_eq!(
        (limited.stats().requests, limited.stats().rate_limited),
        (2, 2)
    );
    assert_eq!(
        (midstream.stats().requests, midstream.stats().faults),
        (2, 2)
    );
    for s in [ok, limited, midstream] {
        s.shutdown().await;
    }
}

/// A step opens all its connections at once (2,000 at the top of a probe), and a
/// connection that finds the listen queue full has its SYN dropped and waits a second
/// for the retry: one such worker held a whole step up by a second. Nothing accepts while
/// the runtime is stopped here, so every connection below must wait in the queue, which
/// is as long as the kernel allows (`net.core.somaxconn`, 4096 by default since Linux 5.4):
/// with the 128 of a plain `bind` the 130th connect timed out. 500 connections stay well
/// within the common limit of 1,024 open files.
#[test]
fn a_burst_of_connections_waits_in_the_listen_queue() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(start(instant()));
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    let n = somaxconn.min(500);
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        match std::net::TcpStream::connect_timeout(&sim.addr, Duration::from_millis(500)) {
            Ok(s) => open.push(s),
            Err(e) => panic!("connection {} of {n} (somaxconn {somaxconn}): {e}", i + 1),
        }
    }
    assert_eq!(open.len(), n);
    drop(open);
    rt.block_on(sim.shutdown());
}
