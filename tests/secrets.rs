//! Keys are never printed, logged or written: not with `--verbose`, not on errors (bad
//! key, unknown model, exhausted quota), not in a panic. A key is never sent over plain
//! http to a remote host unless the provider file allows it. A keys file others can
//! read gets a warning.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use find_workers_limit::config::scenario::SimulatorSettings;

const KEY: &str = "sk-fake-7f3a9c2e1b8d4f60-LEAKCHECK";

/// Every byte the run produced: stdout, stderr and the result file (if any).
fn assert_no_key(what: &str, out: &std::process::Output, dir: &Path) {
    let mut all = out.stdout.clone();
    all.extend_from_slice(&out.stderr);
    if let Ok(file) = std::fs::read(dir.join("result.json")) {
        all.extend_from_slice(&file);
    }
    for needle in [KEY, &KEY[3..], &KEY[..KEY.len() - 3]] {
        assert!(
            !all.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{what}: the key leaked:\n{}",
            stderr(out)
        );
    }
}

/// A 0600 keys file holding the key.
fn keys_file(dir: &Path) {
    let path = dir.join("keys.env");
    std::fs::write(&path, format!("OPENAI_API_KEY={KEY}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn probe(sim: &Sim, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let base = sim.openai_base_url();
    let mut args = vec![
        "--model",
        "gpt-4o",
        "--provider",
        "openai",
        "--base-url",
        &base,
        "--keys-file",
        "keys.env",
        "--max-workers",
        "3",
        "--min-output-tokens",
        "10",
        "--retries",
        "0",
        "--verbose",
        "--output-file",
        "result.json",
    ];
    args.extend_from_slice(extra);
    run_in(dir, &args, env)
}

fn fast() -> SimulatorSettings {
    SimulatorSettings {
        ttft_ms: Some(10),
        tokens_per_second: Some(0),
        output_tokens: Some(20),
        ..Default::default()
    }
}

#[test]
fn verbose_probe_never_shows_the_key() {
    let sim = Sim::start(fast());
    let dir = tempfile::tempdir().unwrap();
    keys_file(dir.path());
    let out = probe(&sim, dir.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "3\n");
    let err = stderr(&out);
    let line = format!(
        "[w=1 p=1 try=1] POST {}/chat/completions -> 200 success (rule \"success\")",
        sim.openai_base_url()
    );
    assert!(err.contains(&line), "no verbose line {line:?}:\n{err}");
    assert_no_key("verbose", &out, dir.path());
}

#[test]
fn fatal_answers_never_show_the_key() {
    let cases: [(&str, SimulatorSettings, &str); 3] = [
        (
            "bad key",
            SimulatorSettings {
                fault_bad_key: Some(true),
                ..fast()
            },
            "error: OpenAI refused the API key (401/403): check OPENAI_API_KEY",
        ),
        (
            "unknown model",
            SimulatorSettings {
                fault_unknown_model: Some(true),
                ..fast()
            },
            "error: OpenAI does not know this model (404 model_not_found): check --model",
        ),
        (
            "quota",
            SimulatorSettings {
                fault_quota_exhausted: Some(true),
                ..fast()
            },
            "error: OpenAI quota exhausted (insufficient_quota / billing or spend limit): the account has no quota left; lowering concurrency will not help",
        ),
    ];
    for (what, settings, want) in cases {
        let sim = Sim::start(settings);
        let dir = tempfile::tempdir().unwrap();
        keys_file(dir.path());
        let out = probe(&sim, dir.path(), &[], &[]);
        assert_eq!(out.status.code(), Some(5), "{what}: {}", stderr(&out));
        let last = stderr(&out).lines().last().unwrap().to_string();
        assert_eq!(last, want, "{what}");
        // One request only: the first is sent alone, and a fatal answer stops the probe.
        assert_eq!(sim.stats().requests, 1, "{what}");
        let result = read_result(&dir.path().join("result.json"));
        assert_eq!(result["outcome"], "fatal", "{what}");
        // The step that a fatal first answer cut short was not a test of 3 workers.
        assert_eq!(result["max_tested"], 0, "{what}");
        assert_no_key(what, &out, dir.path());
    }
}

#[test]
fn a_panic_prints_one_redacted_line() {
    // Debug builds panic on demand, with the rendered request headers (the key in the
    // Authorization header) in the message: the worst case.
    let sim = Sim::start(fast());
    let dir = tempfile::tempdir().unwrap();
    keys_file(dir.path());
    let out = probe(
        &sim,
        dir.path(),
        &[],
        &[
            ("FIND_WORKERS_LIMIT_DEBUG_PANIC", "1"),
            ("RUST_BACKTRACE", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: internal error (a bug; please report it): debug panic; request headers [\"Authorization: Bearer ***\", "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line, no backtrace:\n{err}");
    assert_eq!(sim.stats().requests, 0);
    assert_no_key("panic", &out, dir.path());
}

#[test]
fn debug_output_of_settings_and_requests_hides_the_key() {
    use clap::Parser;
    use find_workers_limit::cli::Cli;
    let dir = tempfile::tempdir().unwrap();
    keys_file(dir.path());
    let keys = dir.path().join("keys.env");
    let cli = Cli::parse_from([
        "find-workers-limit",
        "--model",
        "gpt-4o",
        "--provider",
        "openai",
        "--keys-file",
        keys.to_str().unwrap(),
    ]);
    let settings = find_workers_limit::settings::resolve(&cli.probe, None).unwrap();
    assert_eq!(settings.api_key.as_ref().unwrap().expose(), KEY);
    let request = settings.render_request().unwrap();
    let engine =
        find_workers_limit::engine::Engine::new(find_workers_limit::engine::EngineConfig::new(
            request.clone(),
            std::sync::Arc::new(
                find_workers_limit::classify::Classifier::new(&settings.provider).unwrap(),
            ),
            false,
        ))
        .unwrap();
    let vars = find_workers_limit::template::Vars {
        model: "gpt-4o".into(),
        prompt: "hi".into(),
        max_tokens: 10,
        api_key: KEY.into(),
        base_url: "https://api.openai.com/v1".into(),
        stream: false,
        env: [("OTHER_TOKEN".to_string(), KEY.to_string())].into(),
    };
    for (what, text) in [
        ("template vars", format!("{vars:?}")),
        ("settings", format!("{settings:?}")),
        ("request", format!("{request:?}")),
        ("engine", format!("{engine:?}")),
        ("engine config", format!("{:?}", engine.config())),
    ] {
        assert!(!text.contains(KEY), "{what}: {text}");
    }
}

/// A copy of the OpenAI provider pointing at a private, plain-http address (never
/// connected to: the refusal comes first, and `plan` sends nothing).
fn plain_http_provider(dir: &Path, allow: bool) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/providers/openai.yaml"
    ))
    .unwrap()
    .replacen("name: openai", "name: intranet", 1)
    .replacen(
        "base_url: https://api.openai.com/v1",
        "base_url: http://10.255.255.1/v1",
        1,
    )
    .replacen(
        "  key_env: OPENAI_API_KEY\n",
        if allow {
            "  key_env: OPENAI_API_KEY\n  allow_plain_http: true\n"
        } else {
            "  key_env: OPENAI_API_KEY\n"
        },
        1,
    );
    assert!(text.contains("http://10.255.255.1/v1"));
    assert_eq!(text.contains("allow_plain_http: true"), allow);
    std::fs::create_dir_all(dir.join("p")).unwrap();
    std::fs::write(dir.join("p/intranet.yaml"), text).unwrap();
}

#[test]
fn a_key_is_not_sent_over_plain_http_to_a_remote_host() {
    let dir = tempfile::tempdir().unwrap();
    keys_file(dir.path());
    plain_http_provider(dir.path(), false);
    let args = [
        "--model",
        "gpt-4o",
        "--provider",
        "intranet",
        "--providers-dir",
        "p",
        "--keys-file",
        "keys.env",
        "--timeout",
        "1s",
    ];
    let out = run_in(dir.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: refusing to send OPENAI_API_KEY over plain http to 10.255.255.1: use https, or set `auth.allow_plain_http: true` in the provider file\n"
    );
    assert_eq!(stdout(&out), "");
    let mut plan = vec!["plan"];
    plan.extend_from_slice(&args[..8]);
    let out = run_in(dir.path(), &plan, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_key("refusal", &out, dir.path());
}

/// A plain-http target on this machine, reached through an http proxy elsewhere: the key
/// would cross the network in clear text to the proxy, so it is refused the same way.
/// `NO_PROXY` for the target, or a proxy on this machine, lets it through.
#[test]
fn a_key_is_not_sent_over_plain_http_through_a_remote_proxy() {
    let sim = Sim::start(fast());
    let dir = tempfile::tempdir().unwrap();
    keys_file(dir.path());
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        let out = probe(
            &sim,
            dir.path(),
            &[],
            &[(var, "http://user:pw@10.255.255.1:3128")],
        );
        assert_eq!(out.status.code(), Some(2), "{var}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "error: refusing to send OPENAI_API_KEY over plain http through the proxy 10.255.255.1: use https, a proxy on this machine, NO_PROXY for the target, or set `auth.allow_plain_http: true` in the provider file\n",
            "{var}"
        );
        assert_eq!(stdout(&out), "");
        assert_no_key("remote proxy", &out, dir.path());
        let base = sim.openai_base_url();
        let plan = [
            "plan",
            "--model",
            "gpt-4o",
            "--base-url",
            &base,
            "--keys-file",
            "keys.env",
        ];
        let out = run_in(dir.path(), &plan, &[(var, "http://10.255.255.1:3128")]);
        assert_eq!(out.status.code(), Some(2), "plan, {var}: {}", stderr(&out));
    }
    assert_eq!(sim.stats().requests, 0);
    let proxy_but_not_for_the_target = [
        ("HTTP_PROXY", "http://10.255.255.1:3128"),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let out = probe(&sim, dir.path(), &[], &proxy_but_not_for_the_target);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "3\n");
    assert_no_key("NO_PROXY", &out, dir.path());
}

#[test]
fn allow_plain_http_in_the_provider_file_lets_it_through() {
    let dir = tempfile::tempdir().unwrap();
    keys_file(dir.path());
    plain_http_provider(dir.path(), true);
    let out = run_in(
        dir.path(),
        &[
            "plan",
            "--model",
            "gpt-4o",
            "--provider",
            "intranet",
            "--providers-dir",
            "p",
            "--keys-file",
            "keys.env",
            "--show-request",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("request:  POST http://10.255.255.1/v1/chat/completions\n"),
        "{text}"
    );
    assert!(text.contains("\nAuthorization: ***\n"), "{text}");
    assert_no_key("plan", &out, dir.path());
}

#[test]
fn a_keys_file_others_can_read_gets_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    keys_file(dir.path());
    let args = [
        "plan",
        "--model",
        "gpt-4o",
        "--provider",
        "openai",
        "--keys-file",
        "keys.env",
    ];
    let out = run_in(dir.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "", "0600: no warning");
    std::fs::set_permissions(
        dir.path().join("keys.env"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = run_in(dir.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stderr(&out),
        "warning: keys file keys.env is readable by other users; restrict it with: chmod 600 keys.env\n"
    );
    assert_no_key("warning", &out, dir.path());
}

const GATEWAY_TOKEN: &str = "gw-tok-5d1e9b7c33a04f28-LEAKCHECK";

/// A copy of the OpenAI provider behind a gateway: its address comes from
/// `env.GATEWAY_URL` and a second credential, `env.GATEWAY_TOKEN`, travels in a header
/// that is not one of the well-known credential headers.
fn gateway_provider(dir: &Path, sim_base: &str) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/providers/openai.yaml"
    ))
    .unwrap()
    .replacen("name: openai", "name: gateway", 1)
    .replacen(
        "base_url: https://api.openai.com/v1",
        "base_url: \"{{ env.GATEWAY_URL }}\"",
        1,
    )
    .replacen(
        "    Content-Type: application/json\n",
        "    Content-Type: application/json\n    Gateway-Auth: \"Bearer {{ env.GATEWAY_TOKEN }}\"\n",
        1,
    );
    assert!(text.contains("Gateway-Auth"));
    std::fs::create_dir_all(dir.join("p")).unwrap();
    std::fs::write(dir.join("p/gateway.yaml"), text).unwrap();
    let path = dir.join("keys.env");
    std::fs::write(
        &path,
        format!("OPENAI_API_KEY={KEY}\nGATEWAY_TOKEN={GATEWAY_TOKEN}\nGATEWAY_URL={sim_base}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_token_read_from_env_in_a_header_is_redacted_like_the_key() {
    let sim = Sim::start(fast());
    let base = sim.openai_base_url();
    let dir = tempfile::tempdir().unwrap();
    gateway_provider(dir.path(), &base);
    let common = [
        "--model",
        "gpt-4o",
        "--provider",
        "gateway",
        "--providers-dir",
        "p",
        "--keys-file",
        "keys.env",
    ];
    let mut plan = vec!["plan"];
    plan.extend_from_slice(&common);
    plan.push("--show-request");
    let out = run_in(dir.path(), &plan, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    // The address is shown (it is where the probe goes), the token is not.
    assert!(
        text.contains(&format!("request:  POST {base}/chat/completions\n")),
        "{text}"
    );
    assert!(text.contains("\nGateway-Auth: Bearer ***\n"), "{text}");
    assert!(text.contains("\nAuthorization: ***\n"), "{text}");
    assert!(!text.contains(GATEWAY_TOKEN), "{text}");
    assert_no_key("plan", &out, dir.path());

    let mut probe = common.to_vec();
    probe.extend_from_slice(&[
        "--max-workers",
        "3",
        "--min-output-tokens",
        "10",
        "--verbose",
        "--output-file",
        "result.json",
    ]);
    let out = run_in(dir.path(), &probe, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "3\n");
    let mut all = out.stdout.clone();
    all.extend_from_slice(&out.stderr);
    all.extend_from_slice(&std::fs::read(dir.path().join("result.json")).unwrap());
    assert!(
        !String::from_utf8_lossy(&all).contains(GATEWAY_TOKEN),
        "{}",
        stderr(&out)
    );
    assert_no_key("probe", &out, dir.path());
    // The simulator was sent the token itself, not a redaction of it.
    assert_eq!(sim.stats().requests, 6);
}
