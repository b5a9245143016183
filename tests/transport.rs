//! The engine over real transports on 127.0.0.1: TLS terminated by nginx with a
//! throwaway CA (trusted only through `ca_cert`), and tinyproxy as an HTTPS proxy (a
//! CONNECT tunnel) and as a plain-http proxy (absolute-form requests). The binaries come
//! from Debian packages (tests/run installs them); a missing one fails the test.

mod common;

use common::net::{engine_config, Nginx, NginxMode, Tinyproxy};
use find_workers_limit::config::provider::Outcome;
use find_workers_limit::config::scenario::SimulatorSettings;
use find_workers_limit::engine::{Engine, EngineConfig, ProxySettings, StepResult, StepSpec};
use find_workers_limit::simulate::SimServer;
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-transport";

async fn sim() -> SimServer {
    let settings = SimulatorSettings {
        ttft_ms: Some(0),
        tokens_per_second: Some(0),
        output_tokens: Some(20),
        ..Default::default()
    };
    SimServer::start(settings, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts")
}

async fn step(cfg: EngineConfig, workers: u32, prompts: u32) -> StepResult {
    Engine::new(cfg)
        .expect("engine")
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

fn https_config(nginx: &Nginx) -> EngineConfig {
    engine_config(
        "openai",
        &format!("https://127.0.0.1:{}/v1", nginx.port),
        false,
        KEY,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_extra_ca_succeeds() {
    let sim = sim().await;
    let nginx = Nginx::start(sim.addr.port(), NginxMode::Tls);
    let mut cfg = https_config(&nginx);
    cfg.ca_cert = Some(nginx.ca_pem.clone());
    let r = step(cfg, 2, 4).await;
    assert_eq!(r.success(), 4, "{:?}", r.prompts);
    assert_eq!(r.prompts[0].output_tokens, Some(20));
    assert_eq!(sim.stats().requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_ca_fails_with_a_certificate_error() {
    let sim = sim().await;
    let nginx = Nginx::start(sim.addr.port(), NginxMode::Tls);
    let mut cfg = https_config(&nginx);
    cfg.max_retries = 0;
    let r = step(cfg, 1, 1).await;
    let p = &r.prompts[0];
    assert_eq!(
        (p.outcome, p.status, p.rule.as_ref()),
        (Outcome::Transient, None, "network")
    );
    let error = p.error.as_deref().unwrap_or("");
    assert!(error.starts_with("connect failed: "), "{error}");
    assert!(error.contains("certificate verify failed"), "{error}");
    assert_eq!(sim.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ca_file_is_a_clear_error() {
    let mut cfg = engine_config("openai", "https://127.0.0.1:1/v1", false, KEY);
    cfg.ca_cert = Some("/nonexistent/ca.pem".into());
    let err = Engine::new(cfg).expect_err("no such file");
    assert!(
        err.starts_with("cannot read CA certificate /nonexistent/ca.pem: "),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let mut cfg = engine_config("openai", "https://127.0.0.1:1/v1", false, KEY);
    cfg.ca_cert = Some(junk);
    let err = Engine::new(cfg).expect_err("not PEM");
    assert!(err.starts_with("CA certificate: "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_through_a_proxy_uses_a_connect_tunnel() {
    let sim = sim().await;
    let nginx = Nginx::start(sim.addr.port(), NginxMode::Tls);
    let proxy = Tinyproxy::start(nginx.port);
    let mut cfg = https_config(&nginx);
    cfg.ca_cert = Some(nginx.ca_pem.clone());
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    cfg.proxy = ProxySettings::explicit(None, Some(&proxy_url), None);
    let r = step(cfg, 2, 4).await;
    assert_eq!(r.success(), 4, "{:?}", r.prompts);
    assert_eq!(sim.stats().requests, 4);
    let log = proxy.log_text();
    let connect = format!("CONNECT 127.0.0.1:{} HTTP/1.1", nginx.port);
    // One tunnel per worker: two connections, each kept alive for its two requests.
    assert_eq!(log.matches(&connect).count(), 2, "tinyproxy log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_through_a_proxy_sends_the_absolute_uri() {
    let sim = sim().await;
    let proxy = Tinyproxy::start(1);
    let base = sim.openai_base_url();
    let mut cfg = engine_config("openai", &base, false, KEY);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    cfg.proxy = ProxySettings::explicit(Some(&proxy_url), None, None);
    let r = step(cfg, 1, 2).await;
    assert_eq!(r.success(), 2, "{:?}", r.prompts);
    assert_eq!(sim.stats().requests, 2);
    let log = proxy.log_text();
    let line = format!("POST {base}/chat/completions HTTP/1.1");
    assert_eq!(log.matches(&line).count(), 2, "tinyproxy log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_bypasses_the_proxy() {
    let sim = sim().await;
    let nginx = Nginx::start(sim.addr.port(), NginxMode::Tls);
    let proxy = Tinyproxy::start(nginx.port);
    let mut cfg = https_config(&nginx);
    cfg.ca_cert = Some(nginx.ca_pem.clone());
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    cfg.proxy = ProxySettings::explicit(Some(&proxy_url), Some(&proxy_url), Some("127.0.0.1"));
    let r = step(cfg, 1, 2).await;
    assert_eq!(r.success(), 2, "{:?}", r.prompts);
    let log = proxy.log_text();
    assert!(!log.contains("CONNECT 127.0.0.1"), "tinyproxy log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_proxy_is_named_in_the_error() {
    let port = common::free_port();
    let mut cfg = engine_config("openai", "https://127.0.0.1:9/v1", false, KEY);
    cfg.max_retries = 0;
    let proxy_url = format!("http://127.0.0.1:{port}");
    cfg.proxy = ProxySettings::explicit(None, Some(&proxy_url), None);
    let r = step(cfg, 1, 1).await;
    let error = r.prompts[0].error.as_deref().unwrap_or("");
    assert!(
        error.starts_with(&format!("connect via proxy 127.0.0.1:{port} failed: ")),
        "{error}"
    );
}
