//! The engine against the simulator on 127.0.0.1: one test per outcome, with the exact
//! request counts the simulator saw. Configs come from the real `providers/*.yaml`.

mod common;

use std::time::{Duration, Instant};

use common::net::{engine_config, json_response, Canned, Lines};
use find_workers_limit::classify::BucketReading;
use find_workers_limit::config::provider::{BucketKind, Outcome};
use find_workers_limit::config::scenario::SimulatorSettings;
use find_workers_limit::engine::{Engine, EngineConfig, StepResult, StepSpec};
use find_workers_limit::simulate::SimServer;
use tokio_util::sync::CancellationToken;

/// The prompt of `engine_config` is 63 characters: the simulator counts 16 input tokens.
const INPUT_TOKENS: u64 = 16;
const OUTPUT_TOKENS: u32 = 30;
const KEY: &str = "sk-test-SECRET-123";

/// Instant replies of 30 tokens, no limits: faults are added per test.
fn fast() -> SimulatorSettings {
    SimulatorSettings {
        ttft_ms: Some(0),
        tokens_per_second: Some(0),
        output_tokens: Some(OUTPUT_TOKENS),
        ..Default::default()
    }
}

async fn sim(settings: SimulatorSettings) -> SimServer {
    SimServer::start(settings, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts")
}

fn openai(sim: &SimServer, stream: bool) -> EngineConfig {
    engine_config("openai", &sim.openai_base_url(), stream, KEY)
}

fn anthropic(sim: &SimServer, stream: bool) -> EngineConfig {
    engine_config("anthropic", &sim.anthropic_base_url(), stream, KEY)
}

async fn step(cfg: EngineConfig, workers: u32, prompts: u32) -> StepResult {
    let engine = Engine::new(cfg).expect("engine");
    engine
        .run_step(
            StepSpec {
                workers,
                prompts,
                min_duration: None,
                max_prompts: None,
            },
            CancellationToken::new(),
        )
        .await
}

fn outcomes(r: &StepResult) -> Vec<Outcome> {
    r.prompts.iter().map(|p| p.outcome).collect()
}

fn retries(r: &StepResult) -> Vec<u32> {
    r.prompts.iter().map(|p| p.retries).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_counts_exact_usage() {
    let sim = sim(fast()).await;
    let r = step(openai(&sim, false), 3, 6).await;
    assert_eq!(r.success(), 6);
    assert_eq!(r.prompts.len(), 6);
    for p in &r.prompts {
        assert_eq!(
            (p.outcome, p.rule.as_ref(), p.status),
            (Outcome::Success, "success", Some(200))
        );
        assert_eq!(
            (p.input_tokens, p.output_tokens),
            (Some(INPUT_TOKENS), Some(u64::from(OUTPUT_TOKENS)))
        );
        assert_eq!((p.retries, p.ttft, p.error.as_deref()), (0, None, None));
    }
    assert_eq!((r.fatal.as_deref(), r.interrupted), (None, false));
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.ok), (6, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_success_counts_usage_from_events_and_measures_ttft() {
    let sim = sim(SimulatorSettings {
        ttft_ms: Some(50),
        ..fast()
    })
    .await;
    for cfg in [openai(&sim, true), anthropic(&sim, true)] {
        let r = step(cfg, 2, 4).await;
        assert_eq!(r.success(), 4);
        for p in &r.prompts {
            assert_eq!(
                (p.input_tokens, p.output_tokens),
                (Some(INPUT_TOKENS), Some(u64::from(OUTPUT_TOKENS)))
            );
            let ttft = p.ttft.expect("a stream has a time to first chunk");
            assert!(ttft <= p.latency, "{ttft:?} > {:?}", p.latency);
        }
    }
    assert_eq!(sim.stats().requests, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_is_counted_as_rate_limited_and_not_retried() {
    // 5 requests a minute, all in the bucket at start: exactly 5 pass, 5 are refused.
    let sim = sim(SimulatorSettings {
        rpm: Some(5),
        ..fast()
    })
    .await;
    let r = step(openai(&sim, false), 1, 10).await;
    use Outcome::{RateLimited as L, Success as S};
    assert_eq!(outcomes(&r), vec![S, S, S, S, S, L, L, L, L, L]);
    assert_eq!(retries(&r), vec![0; 10]);
    let limited = &r.prompts[9];
    assert_eq!(
        (limited.status, limited.rule.as_ref()),
        (Some(429), "rate limited")
    );
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.ok, stats.rate_limited), (10, 5, 5));
    // The last response's headers and buckets; and the step's longest retry hint
    // (whatever the simulator's headers say; the classifier's tests pin the parsing).
    assert_eq!(r.rate_limit_headers["x-ratelimit-limit-requests"], "5");
    assert_eq!(r.rate_limit_headers["x-ratelimit-remaining-requests"], "0");
    let requests: Vec<&BucketReading> = r
        .buckets
        .iter()
        .filter(|b| b.kind == BucketKind::Requests)
        .collect();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].limit, requests[0].remaining),
        (Some(5.0), Some(0.0))
    );
    let hint = r.retry_hint.expect("a 429 with a retry hint");
    assert!(
        hint > Duration::ZERO && hint <= Duration::from_secs(60),
        "{hint:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_429_from_a_gateway_is_rate_limited() {
    let sim = sim(SimulatorSettings {
        rpm: Some(2),
        fault_html_429: Some(true),
        ..fast()
    })
    .await;
    let r = step(openai(&sim, false), 1, 4).await;
    use Outcome::{RateLimited as L, Success as S};
    assert_eq!(outcomes(&r), vec![S, S, L, L]);
    assert_eq!(r.prompts[3].status, Some(429));
    assert!(r.prompts[3]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("429 Too Many Requests"));
    assert_eq!(sim.stats().requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_quota_stops_the_step_with_the_quota_message() {
    let sim = sim(SimulatorSettings {
        fault_quota_exhausted: Some(true),
        ..fast()
    })
    .await;
    let r = step(openai(&sim, false), 4, 8).await;
    let fatal = r.fatal.as_deref().expect("fatal");
    assert!(fatal.starts_with("OpenAI quota exhausted"), "{fatal}");
    assert!(
        fatal.contains("lowering concurrency will not help"),
        "{fatal}"
    );
    assert_eq!(outcomes(&r), vec![Outcome::Fatal]);
    assert_eq!(r.prompts[0].status, Some(429));
    assert_eq!(sim.stats().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_stops_after_exactly_one_request_even_with_8_workers() {
    let sim = sim(SimulatorSettings {
        fault_bad_key: Some(true),
        ..fast()
    })
    .await;
    let r = step(openai(&sim, false), 8, 16).await;
    assert_eq!(
        r.fatal.as_deref(),
        Some("OpenAI refused the API key (401/403): check OPENAI_API_KEY")
    );
    assert_eq!(outcomes(&r), vec![Outcome::Fatal]);
    assert_eq!((r.prompts[0].status, r.prompts[0].retries), (Some(401), 0));
    assert_eq!(sim.stats().requests, 1);
    assert!(!r.interrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_starts_after_a_fatal_answer() {
    // The first answer is a success, so the other workers start at once; every later
    // answer is a 401, 100 ms after its request. At most 4 requests can be in flight
    // when the first 401 arrives; none of the 40 prompts may start after it.
    let ok = r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let bad = r#"{"error":{"message":"Incorrect API key provided"}}"#;
    let srv = Canned::sequence(
        vec![
            json_response("200 OK", "", ok),
            json_response("401 Unauthorized", "", bad),
        ],
        Duration::from_millis(100),
    )
    .await;
    let r = step(engine_config("openai", &srv.base_url(), false, KEY), 4, 40).await;
    assert_eq!(
        r.fatal.as_deref(),
        Some("OpenAI refused the API key (401/403): check OPENAI_API_KEY")
    );
    assert_eq!(r.success(), 1);
    assert!(r.count(Outcome::Fatal) >= 1);
    // Allow the in-flight ones to be counted by the server a moment later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = srv.requests();
    assert!((2..=5).contains(&seen), "{seen} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_succeed() {
    // Every 2nd request that reaches the fault check is a 500.
    let sim = sim(SimulatorSettings {
        fault_5xx_rate: Some(0.5),
        ..fast()
    })
    .await;
    let r = step(openai(&sim, false), 1, 4).await;
    assert_eq!(outcomes(&r), vec![Outcome::Success; 4]);
    assert_eq!(retries(&r), vec![0, 1, 1, 1]);
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.ok, stats.faults), (7, 4, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_forever_fail_after_exactly_three_retries() {
    let sim = sim(SimulatorSettings {
        fault_5xx_rate: Some(1.0),
        ..fast()
    })
    .await;
    let r = step(openai(&sim, false), 1, 1).await;
    assert_eq!(outcomes(&r), vec![Outcome::Transient]);
    let p = &r.prompts[0];
    assert_eq!(
        (p.retries, p.status, p.rule.as_ref()),
        (3, Some(500), "overloaded")
    );
    assert_eq!(r.failed(), 1);
    assert_eq!(r.fatal, None);
    assert_eq!(sim.stats().requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_529_is_retried() {
    let sim = sim(SimulatorSettings {
        fault_overloaded_rate: Some(0.5),
        ..fast()
    })
    .await;
    let lines = Lines::default();
    let mut cfg = anthropic(&sim, false);
    cfg.verbose = true;
    cfg.log = lines.sink();
    let r = step(cfg, 1, 2).await;
    assert_eq!(outcomes(&r), vec![Outcome::Success; 2]);
    assert_eq!(retries(&r), vec![0, 1]);
    assert_eq!(sim.stats().requests, 3);
    let lines = lines.all();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[1].starts_with("[w=1 p=2 try=1] POST http://127.0.0.1:")
            && lines[1].contains("/v1/messages -> 529 transient (rule \"overloaded\") "),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("; retry in "), "{}", lines[1]);
    assert!(
        lines[2].starts_with("[w=1 p=2 try=2] ")
            && lines[2].contains("-> 200 success (rule \"success\")")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_error_is_retried() {
    let sim = sim(SimulatorSettings {
        fault_midstream_error_rate: Some(0.5),
        ..fast()
    })
    .await;
    let lines = Lines::default();
    let mut cfg = openai(&sim, true);
    cfg.verbose = true;
    cfg.log = lines.sink();
    let r = step(cfg, 1, 2).await;
    assert_eq!(outcomes(&r), vec![Outcome::Success; 2]);
    assert_eq!(retries(&r), vec![0, 1]);
    assert_eq!(sim.stats().requests, 3);
    let lines = lines.all();
    assert!(
        lines[1].contains("-> 200 transient (rule \"stream"),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_rate_limit_is_rate_limited_not_retried() {
    let sim = sim(SimulatorSettings {
        fault_midstream_rate_limit_rate: Some(1.0),
        ..fast()
    })
    .await;
    let r = step(anthropic(&sim, true), 1, 2).await;
    assert_eq!(outcomes(&r), vec![Outcome::RateLimited; 2]);
    assert_eq!(r.prompts[0].status, Some(200));
    assert_eq!(r.prompts[0].rule.as_ref(), "stream rate limit");
    assert_eq!(sim.stats().requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_is_a_transport_failure_retried_then_failed() {
    let sim = sim(SimulatorSettings {
        fault_truncate_rate: Some(1.0),
        ..fast()
    })
    .await;
    let r = step(openai(&sim, false), 1, 1).await;
    assert_eq!(outcomes(&r), vec![Outcome::Transient]);
    let p = &r.prompts[0];
    assert_eq!(
        (p.retries, p.status, p.rule.as_ref()),
        (3, Some(200), "network")
    );
    let error = p.error.as_deref().unwrap_or("");
    assert!(error.starts_with("response body cut short"), "{error}");
    assert_eq!(sim.stats().requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_hits_the_request_timeout() {
    let sim = sim(SimulatorSettings {
        fault_stall_rate: Some(1.0),
        ..fast()
    })
    .await;
    let mut cfg = openai(&sim, false);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.max_retries = 1;
    let started = Instant::now();
    let r = step(cfg, 1, 1).await;
    let p = &r.prompts[0];
    assert_eq!(
        (p.outcome, p.retries, p.status),
        (Outcome::Transient, 1, None)
    );
    assert_eq!(p.error.as_deref(), Some("request timed out after 300ms"));
    assert!(p.latency >= Duration::from_millis(300) && p.latency < Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(sim.stats().requests, 2);
}

/// The worker keeps one timer across its requests: a stall after a slow success still
/// gets the whole timeout from its own start, not what was left of the first request's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_gets_the_whole_timeout_from_its_own_start() {
    let sim = sim(SimulatorSettings {
        ttft_ms: Some(200),
        // Every second request stalls.
        fault_stall_rate: Some(0.5),
        ..fast()
    })
    .await;
    let mut cfg = openai(&sim, false);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.max_retries = 0;
    let r = step(cfg, 1, 2).await;
    let (ok, stalled) = (&r.prompts[0], &r.prompts[1]);
    assert_eq!(
        (ok.outcome, stalled.outcome, stalled.error.as_deref()),
        (
            Outcome::Success,
            Outcome::Transient,
            Some("request timed out after 300ms")
        )
    );
    // The first request's deadline fell 100 ms into the second one.
    assert!(ok.latency >= Duration::from_millis(200), "{:?}", ok.latency);
    assert!(
        stalled.latency >= Duration::from_millis(300) && stalled.latency < Duration::from_secs(2),
        "{:?}",
        stalled.latency
    );
    assert_eq!(sim.stats().requests, 2);
}

/// A timeout too long to add to the clock (`--timeout 500000000000years`), or one that
/// just fits, is a timeout that never comes, not a panic (a worker that panics loses its
/// prompts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_at_or_past_the_end_of_the_clock_never_fires() {
    let sim = sim(fast()).await;
    let mut cfg = openai(&sim, false);
    cfg.request_timeout = Duration::MAX;
    let r = step(cfg, 2, 4).await;
    assert_eq!(outcomes(&r), vec![Outcome::Success; 4]);
    // Just below the longest timeout that can still be added to now, 0 to 4 ms short of
    // it: some attempts start where tokio's timer rounds the deadline past the end.
    for k in 0..200 {
        let mut cfg = openai(&sim, false);
        cfg.request_timeout = room_on_the_clock() - Duration::from_micros(20 * k);
        let r = step(cfg, 1, 1).await;
        assert_eq!(outcomes(&r), vec![Outcome::Success], "{k}");
    }
}

/// The longest duration that can be added to now (to the microsecond).
fn room_on_the_clock() -> Duration {
    let now = Instant::now();
    let (mut fits, mut overflows) = (Duration::ZERO, Duration::MAX);
    while overflows - fits > Duration::from_micros(1) {
        let mid = fits + (overflows - fits) / 2;
        if now.checked_add(mid).is_some() {
            fits = mid;
        } else {
            overflows = mid;
        }
    }
    fits.saturating_sub(now.elapsed())
}

async fn exactly_w_in_flight(w: u32) {
    let sim = sim(SimulatorSettings {
        ttft_ms: Some(300),
        ..fast()
    })
    .await;
    let r = step(openai(&sim, false), w, 3 * w).await;
    assert_eq!(r.success(), 3 * w);
    assert_eq!(r.max_in_flight, w);
    let stats = sim.stats();
    assert_eq!(
        (stats.requests, stats.max_in_flight),
        (u64::from(3 * w), u64::from(w))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_5_in_flight() {
    exactly_w_in_flight(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_50_in_flight() {
    exactly_w_in_flight(50).await;
}

async fn step_with(engine: &Engine, workers: u32, prompts: u32) -> StepResult {
    engine
        .run_step(
            StepSpec {
                workers,
                prompts,
                min_duration: None,
                max_prompts: None,
            },
            CancellationToken::new(),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_duration_keeps_workers_busy() {
    let sim = sim(SimulatorSettings {
        ttft_ms: Some(40),
        ..fast()
    })
    .await;
    let engine = Engine::new(openai(&sim, false)).expect("engine");
    let r = engine
        .run_step(
            StepSpec {
                workers: 2,
                prompts: 2,
                min_duration: Some(Duration::from_millis(400)),
                max_prompts: None,
            },
            CancellationToken::new(),
        )
        .await;
    assert!(r.duration >= Duration::from_millis(400), "{:?}", r.duration);
    assert!(r.prompts.len() >= 8, "{}", r.prompts.len());
    assert_eq!(r.success() as usize, r.prompts.len());
    assert_eq!(sim.stats().requests, r.prompts.len() as u64);
}

/// A sustained step that hits a rate limit has failed: it ends once its planned prompts
/// are sent instead of hammering the limit until the duration is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_duration_stops_extending_once_rate_limited() {
    let sim = sim(SimulatorSettings {
        max_concurrency: Some(2),
        ttft_ms: Some(40),
        ..fast()
    })
    .await;
    let engine = Engine::new(openai(&sim, false)).expect("engine");
    // Verify the engine first, so the step starts all 4 workers at once.
    step_with(&engine, 1, 1).await;
    let r = engine
        .run_step(
            StepSpec {
                workers: 4,
                prompts: 8,
                min_duration: Some(Duration::from_secs(30)),
                max_prompts: None,
            },
            CancellationToken::new(),
        )
        .await;
    assert!(r.rate_limited() > 0);
    assert_eq!(r.prompts.len(), 8, "no prompt beyond the planned 8");
    assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_returns_promptly_with_finished_prompts() {
    let sim = sim(SimulatorSettings {
        ttft_ms: Some(60_000),
        ..fast()
    })
    .await;
    let engine = Engine::new(openai(&sim, false)).expect("engine");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let r = engine
        .run_step(
            StepSpec {
                workers: 3,
                prompts: 6,
                min_duration: None,
                max_prompts: None,
            },
            cancel,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(r.interrupted);
    assert!(r.prompts.is_empty());
    assert_eq!(r.fatal, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_lines_never_show_the_key() {
    let lines = Lines::default();
    // A success, a rate limit with its body, and a bad key.
    let ok = sim(SimulatorSettings {
        rpm: Some(1),
        ..fast()
    })
    .await;
    let mut cfg = openai(&ok, false);
    cfg.verbose = true;
    cfg.log = lines.sink();
    let r = step(cfg, 1, 2).await;
    assert_eq!((r.success(), r.rate_limited()), (1, 1));
    let bad = sim(SimulatorSettings {
        fault_bad_key: Some(true),
        ..fast()
    })
    .await;
    let mut cfg = anthropic(&bad, true);
    cfg.verbose = true;
    cfg.log = lines.sink();
    let r = step(cfg, 2, 2).await;
    assert!(r.fatal.is_some());
    // A server that echoes the key in its error body.
    let echo = Canned::start(json_response(
        "401 Unauthorized",
        "",
        &format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#),
    ))
    .await;
    let mut cfg = engine_config("openai", &echo.base_url(), false, KEY);
    cfg.verbose = true;
    cfg.log = lines.sink();
    let r = step(cfg, 1, 1).await;
    let lines = lines.all();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for line in &lines {
        assert!(!line.contains("SECRET"), "{line}");
    }
    let record = format!("{:?} {:?}", r.prompts, r.fatal);
    assert!(!record.contains("SECRET"), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_a_transport_failure() {
    let srv = Canned::start(json_response("200 OK", "", &"x".repeat(5000))).await;
    let mut cfg = engine_config("openai", &srv.base_url(), false, KEY);
    cfg.max_body_bytes = 1000;
    cfg.max_retries = 1;
    let r = step(cfg, 1, 1).await;
    let p = &r.prompts[0];
    assert_eq!(
        (p.outcome, p.retries, p.status),
        (Outcome::Transient, 1, Some(200))
    );
    assert_eq!(p.error.as_deref(), Some("response body exceeds 1000 bytes"));
    assert_eq!(srv.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let srv = Canned::start(json_response(
        "302 Found",
        "location: http://127.0.0.1:9/v1\r\n",
        "",
    ))
    .await;
    let r = step(engine_config("openai", &srv.base_url(), false, KEY), 1, 1).await;
    assert_eq!(r.prompts[0].status, Some(302));
    assert_eq!(r.prompts[0].outcome, Outcome::Fatal);
    assert_eq!(srv.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_a_transient_network_failure() {
    let port = common::free_port();
    let mut cfg = engine_config("openai", &format!("http://127.0.0.1:{port}/v1"), false, KEY);
    cfg.max_retries = 2;
    let r = step(cfg, 1, 1).await;
    let p = &r.prompts[0];
    assert_eq!(
        (p.outcome, p.retries, p.status, p.rule.as_ref()),
        (Outcome::Transient, 2, None, "network")
    );
    let error = p.error.as_deref().unwrap_or("");
    assert!(error.starts_with("connect failed: "), "{error}");
}

/// The bytes on the wire: the rendered body exactly, announced by its content-length, on
/// every request of a kept-alive connection (the body is shared between requests, not
/// consumed by the first). A small body leaves copied behind the head, a large one from
/// where it is: both ways are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_the_rendered_body_byte_for_byte() {
    let small = bytes_on_the_wire(None).await;
    assert!(small < 4096, "{small}");
    let prompt = "x".repeat(20_000);
    let large =
        format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{prompt}"}}]}}"#);
    assert_eq!(bytes_on_the_wire(Some(large)).await, 20_060);
}

/// Sends 3 prompts over one connection to a server that records them; checks each body
/// against the engine's and returns its length.
async fn bytes_on_the_wire(body: Option<String>) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ok = json_response(
        "200 OK",
        "",
        r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#,
    );
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while seen.len() < 3 {
            let head_end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-request");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a content-length header");
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            let first_line = head.lines().next().unwrap_or("").to_string();
            seen.push((first_line, buf[head_end..head_end + len].to_vec()));
            buf.drain(..head_end + len);
            sock.write_all(&ok).await.unwrap();
        }
        seen
    });
    let mut cfg = engine_config("openai", &format!("http://{addr}/v1"), false, KEY);
    if let Some(b) = body {
        cfg.request.body_bytes = b.into();
    }
    let body = cfg.request.body_bytes.clone();
    let r = step(cfg, 1, 3).await;
    assert_eq!(r.success(), 3);
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 3);
    for (line, sent) in seen {
        assert_eq!(line, "post /v1/chat/completions http/1.1");
        assert_eq!(sent, body.to_vec());
    }
    body.len()
}

/// New connections read into 4 KiB buffers once the heads seen fit twice over; a head
/// that does not fit fails its request once (a transport error, retried), and every
/// connection after that reads into hyper's growing buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_too_large_for_the_small_read_buffer_is_retried_once() {
    let body = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#;
    let small = json_response("200 OK", "", body);
    let big = json_response(
        "200 OK",
        &format!("x-padding: {}\r\n", "p".repeat(6000)),
        body,
    );
    let server = Canned::sequence(vec![small, big], Duration::ZERO).await;
    let engine = Engine::new(engine_config(
        "openai",
        &format!("http://{}/v1", server.addr),
        false,
        KEY,
    ))
    .expect("engine");
    let requests = || server.requests.load(std::sync::atomic::Ordering::SeqCst);

    // The first connection reads with hyper's default buffer; its answer has a small head.
    let r = step_with(&engine, 1, 1).await;
    assert_eq!((r.success(), retries(&r), requests()), (1, vec![0], 1));

    // A new connection reads into 4 KiB: the 6 KB head does not fit, the request fails
    // and is retried on a connection with the default buffer, which reads it.
    let r = step_with(&engine, 1, 1).await;
    assert_eq!((r.success(), retries(&r), requests()), (1, vec![1], 3));

    // From then on every connection has the default buffer: no more failures.
    let r = step_with(&engine, 2, 4).await;
    assert_eq!((r.success(), retries(&r), requests()), (4, vec![0; 4], 7));
}

/// Dropping a step's future (a caller that gives up, a `select!` that takes another
/// branch) must stop its workers, or they would go on sending prompts nobody reads, at
/// the user's expense (a step spawned as its own task without an abort on drop sent 29
/// requests where it should have stopped at 9: checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_step_stops_its_workers() {
    let sim = sim(SimulatorSettings {
        ttft_ms: Some(100),
        ..fast()
    })
    .await;
    let engine = Engine::new(openai(&sim, false)).expect("engine");
    let spec = StepSpec {
        workers: 4,
        prompts: 1000,
        min_duration: None,
        max_prompts: None,
    };
    // Given up during the third round of 100 ms replies.
    let given_up = tokio::time::timeout(
        Duration::from_millis(250),
        engine.run_step(spec, CancellationToken::new()),
    )
    .await;
    assert!(
        given_up.is_err(),
        "the step cannot finish 1,000 prompts in 250 ms"
    );
    let at_drop = sim.stats().requests;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = sim.stats().requests;
    assert_eq!(later, at_drop, "requests sent after the step was dropped");
    assert!(
        at_drop <= 12,
        "{at_drop} requests in 250 ms of 100 ms replies at 4 workers"
    );
    sim.shutdown().await;
}
