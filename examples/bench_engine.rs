//! The engine side of `bench/run` (not a test; CI never runs it).
//!
//! ```text
//! bench_engine request URL                 # the request the probe sends, as JSON (for oha)
//! bench_engine step URL WORKERS REQUESTS   # one engine step; one JSON line of figures
//! ```
//!
//! `URL` is an OpenAI base URL (`http://127.0.0.1:PORT/v1`). The engine is built the way
//! the binary builds it (`commands::probe_async`): flags → `ProbeSettings` → rendered
//! request → `Classifier` → `EngineConfig` with the progress display's per-prompt hook
//! (writing nowhere), on the same multi-threaded tokio runtime
//! (its worker count follows the CPU affinity, so `taskset -c 1` means one worker
//! thread, as for oha). Retries are off so that a failure shows as a failure.

use std::time::Instant;

use find_workers_limit::cli::ProbeArgs;
use find_workers_limit::config::provider::Outcome;
use find_workers_limit::engine::{Engine, ProxySettings, StepSpec};
use find_workers_limit::settings::{self, ProbeSettings};

fn usage() -> ! {
    eprintln!("usage: bench_engine request URL | bench_engine step URL WORKERS REQUESTS");
    std::process::exit(2)
}

fn probe_settings(url: &str) -> ProbeSettings {
    if std::env::var_os("OPENAI_API_KEY").is_none() {
        eprintln!("bench_engine: set OPENAI_API_KEY (any value, e.g. sk-bench)");
        std::process::exit(2);
    }
    let args = ProbeArgs {
        model: Some("gpt-4o".into()),
        provider: Some("openai".into()),
        base_url: Some(url.into()),
        min_output_tokens: Some(16),
        max_tokens: Some(32),
        retries: Some(0),
        ..Default::default()
    };
    settings::resolve(&args, None).unwrap_or_else(|e| {
        eprintln!("bench_engine: {e}");
        std::process::exit(2)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("request") if args.len() == 2 => print_request(&probe_settings(&args[1])),
        Some("step") if args.len() == 4 => {
            let workers: u32 = args[2].parse().unwrap_or_else(|_| usage());
            let requests: u32 = args[3].parse().unwrap_or_else(|_| usage());
            let settings = probe_settings(&args[1]);
            // As `commands::run_probe` does for its largest step.
            find_workers_limit::engine::reserve_descriptors(u64::from(workers));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(step(settings, workers, requests));
        }
        _ => usage(),
    }
}

/// The exact method, URL, headers and body the engine sends, so oha sends the same bytes.
fn print_request(settings: &ProbeSettings) {
    let req = settings.render_request().unwrap_or_else(|e| {
        eprintln!("bench_engine: {e}");
        std::process::exit(2)
    });
    let out = serde_json::json!({
        "method": req.method.to_string(),
        "url": req.url,
        "headers": req.headers,
        "body": String::from_utf8_lossy(&req.body_bytes),
    });
    println!("{out}");
}

async fn step(settings: ProbeSettings, workers: u32, requests: u32) {
    // Built as the probe builds it, with no proxy and no verbose output; the progress
    // display counts every prompt as the probe's does (its lines go nowhere: a terminal's
    // redraws are not the engine's cost).
    let mut config = settings.engine_config().expect("engine config");
    config.ca_cert = None;
    config.verbose = false;
    config.proxy = ProxySettings::none();
    let progress = find_workers_limit::progress::Progress::plain(Box::new(std::io::sink()));
    config.on_prompt = progress.prompt_hook();
    let engine = Engine::new(config).expect("engine");
    let spec = StepSpec {
        workers,
        prompts: requests,
        min_duration: None,
        max_prompts: None,
    };
    let t = Instant::now();
    let r = engine
        .run_step(spec, tokio_util::sync::CancellationToken::new())
        .await;
    let wall = t.elapsed().as_secs_f64();
    let ok: Vec<f64> = r
        .prompts
        .iter()
        .filter(|p| p.outcome == Outcome::Success)
        .map(|p| p.latency.as_secs_f64() * 1000.0)
        .collect();
    let p = find_workers_limit::report::percentiles(&ok);
    let first_error = r.prompts.iter().find_map(|p| p.error.clone());
    let out = serde_json::json!({
        "workers": workers,
        "requests": r.prompts.len(),
        "success": r.success(),
        "rate_limited": r.rate_limited(),
        "failed": r.failed(),
        "seconds": wall,
        "step_seconds": r.duration.as_secs_f64(),
        "rps": r.prompts.len() as f64 / wall,
        "p50_ms": p.as_ref().map(|p| p.p50),
        "p90_ms": p.as_ref().map(|p| p.p90),
        "max_in_flight": r.max_in_flight,
        "first_error": first_error,
    });
    println!("{out}");
}
