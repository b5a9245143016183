//! The bad-input catalog: every wrong flag value and broken file gets one clear message
//! and a documented exit code, before anything is sent. None panics.

mod common;

use common::*;

/// (name, args, extra env, expected exit code, expected stderr).
type Case = (
    &'static str,
    Vec<String>,
    Vec<(&'static str, &'static str)>,
    i32,
    String,
);

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn bad_flags_and_files_get_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty.txt"), "  \n").unwrap();
    std::fs::write(d.join("binary.txt"), [0xffu8, 0xfe, 0x00]).unwrap();
    std::fs::create_dir(d.join("adir")).unwrap();
    std::fs::write(
        d.join("keys.env"),
        "OPENAI_API_KEY=sk-x\nthis line is wrong\n",
    )
    .unwrap();
    std::fs::create_dir(d.join("two")).unwrap();
    let mut acme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/providers/openai.yaml"
    ))
    .unwrap();
    acme = acme.replacen("name: openai", "name: acme", 1);
    std::fs::write(d.join("two/acme.yaml"), &acme).unwrap();
    std::fs::create_dir(d.join("badtpl")).unwrap();
    std::fs::write(
        d.join("badtpl/openai.yaml"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/providers/openai.yaml"
        ))
        .unwrap()
        .replacen("\"Bearer {{ api_key }}\"", "\"Bearer {{ apikey }}\"", 1),
    )
    .unwrap();
    std::fs::create_dir(d.join("latin1")).unwrap();
    std::fs::write(d.join("latin1/x.yaml"), b"name: caf\xe9\n").unwrap();

    let key = vec![("OPENAI_API_KEY", "sk-test-bad-input")];
    let base = s(&[
        "--model",
        "gpt-4o",
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ]);
    let with = |extra: &[&str]| {
        let mut v = base.clone();
        v.extend(s(extra));
        v
    };
    let cases: Vec<Case> = vec![
        ("max-workers zero", with(&["--max-workers", "0"]), key.clone(), 2, "error: --max-workers must be at least 1\n".into()),
        ("max-workers huge", with(&["--max-workers", "1000000"]), key.clone(), 2, "error: --max-workers 1000000 is more than 100000\n".into()),
        ("prompt file missing", with(&["--prompt-file", "nope.txt"]), key.clone(), 2, "error: nope.txt: cannot read prompt file: no such file\n".into()),
        ("prompt file empty", with(&["--prompt-file", "empty.txt"]), key.clone(), 2, "error: empty.txt: prompt file is empty\n".into()),
        ("prompt file binary", with(&["--prompt-file", "binary.txt"]), key.clone(), 2, "error: binary.txt: prompt file is not UTF-8 text\n".into()),
        ("prompt file is a directory", with(&["--prompt-file", "adir"]), key.clone(), 2, "error: adir: prompt file is a directory\n".into()),
        ("keys file missing", with(&["--keys-file", "none.env"]), vec![], 3, "error: none.env: cannot read keys file: no such file\n".into()),
        ("keys file is a directory", with(&["--keys-file", "adir"]), vec![], 3, "error: adir: cannot read keys file: is a directory, not a file\n".into()),
        ("keys file syntax", with(&["--keys-file", "keys.env"]), vec![], 3, "error: keys.env:2: not a KEY=value line\n".into()),
        ("missing key", base.clone(), vec![], 3, "error: missing API key: set OPENAI_API_KEY in the environment or in .env (keys file)\n".into()),
        (
            "unknown provider",
            s(&["--model", "gpt-4o", "--provider", "nope"]),
            key.clone(),
            3,
            "error: unknown provider `nope`; loaded: anthropic, azure-openai, cohere, deepseek, fireworks, gemini, gemini-openai, groq, mistral, ollama, openai, openrouter, simulated, together, vllm, xai\n".into(),
        ),
        (
            "ambiguous model",
            s(&["--model", "gpt-4o", "--providers-dir", "two"]),
            key.clone(),
            3,
            "error: model `gpt-4o` matches several providers: acme (two/acme.yaml), openai (built-in (providers/openai.yaml)); choose one with --provider\n".into(),
        ),
        (
            "no provider for model",
            s(&["--model", "mystery-1"]),
            key.clone(),
            3,
            "error: no provider serves model `mystery-1`; give --provider (loaded: anthropic, azure-openai, cohere, deepseek, fireworks, gemini, gemini-openai, groq, mistral, ollama, openai, openrouter, simulated, together, vllm, xai)\n".into(),
        ),
        (
            "template with unknown variable",
            with(&["--providers-dir", "badtpl"]),
            key.clone(),
            3,
            "error: badtpl/openai.yaml:13: request.headers.Authorization: unknown template variable `apikey`; known: model, prompt, max_tokens, api_key, base_url, stream, env\n".into(),
        ),
        ("non-UTF-8 provider file", with(&["--providers-dir", "latin1"]), key.clone(), 3, "error: latin1/x.yaml: (top level): is not UTF-8 text (invalid byte at offset 9)\n".into()),
        ("providers dir missing", with(&["--providers-dir", "nodir"]), key.clone(), 3, "error: nodir: (top level): cannot read providers directory: no such file\n".into()),
        (
            "key over plain http",
            s(&["--model", "gpt-4o", "--provider", "openai", "--base-url", "http://example.com/v1"]),
            key.clone(),
            2,
            "error: refusing to send OPENAI_API_KEY over plain http to example.com: use https, or set `auth.allow_plain_http: true` in the provider file\n".into(),
        ),
        ("base url not a url", s(&["--model", "gpt-4o", "--provider", "openai", "--base-url", "not a url"]), key.clone(), 2, "error: base URL `not a url` is not a URL (expected e.g. https://api.openai.com/v1)\n".into()),
        ("base url scheme", s(&["--model", "gpt-4o", "--provider", "openai", "--base-url", "ftp://h/v1"]), key.clone(), 2, "error: base URL `ftp://h/v1` must start with http:// or https://\n".into()),
        ("no model", s(&["--provider", "openai"]), key.clone(), 2, "error: --model is required (or a scenario that names a model)\n".into()),
        ("unknown scenario", s(&["run", "nope"]), key.clone(), 2, "error: no scenario `nope`: not a file, not scenarios/nope.yaml, not built in (built in: demo)\n".into()),
        ("timeout zero", with(&["--timeout", "0s"]), key.clone(), 2, "error: --timeout and --connect-timeout must be above 0\n".into()),
        ("max-cost without pricing", with(&["--max-cost", "1"]), key.clone(), 2, "error: --max-cost needs prices: provider `openai` (built-in (providers/openai.yaml)) has no `pricing`; add it to the provider file, or cap with --max-prompts / --max-output-tokens\n".into()),
        ("output file in a missing directory", with(&["--output-file", "nodir/r.json"]), key.clone(), 2, "error: nodir/r.json: cannot write the result file: no directory nodir\n".into()),
        ("output file is a directory", with(&["--output-file", "adir"]), key.clone(), 2, "error: adir: cannot write the result file: it is a directory\n".into()),
        ("chart in a missing directory", with(&["--chart", "nodir/c.svg"]), key.clone(), 2, "error: nodir/c.svg: cannot write the chart: no directory nodir\n".into()),
        ("ca-cert missing", with(&["--ca-cert", "ca.pem"]), key.clone(), 2, "error: ca.pem: --ca-cert file not found\n".into()),
    ];
    let mut failures = Vec::new();
    for (name, args, env, code, want) in cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_in(d, &argv, &env);
        let got = stderr(&out);
        if out.status.code() != Some(code) || got != want || !out.stdout.is_empty() {
            failures.push(format!("{name}: exit {:?} (want {code})\n  got:  {got:?}\n  want: {want:?}\n  stdout: {:?}", out.status.code(), stdout(&out)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn clap_rejects_malformed_numbers_with_usage_exit() {
    let dir = tempfile::tempdir().unwrap();
    for (value, fragment) in [
        ("-1", "unexpected argument '-1' found"),
        ("abc", "invalid value 'abc' for '--max-workers <N>': invalid digit found in string"),
        ("99999999999", "invalid value '99999999999' for '--max-workers <N>': 99999999999 is not in 0..=4294967295"),
    ] {
        let out = run_in(dir.path(), &["--model", "gpt-4o", "--max-workers", value], &[]);
        assert_eq!(out.status.code(), Some(2), "{value}");
        assert!(stderr(&out).contains(fragment), "{value}: {}", stderr(&out));
    }
    let out = run_in(
        dir.path(),
        &["--model", "gpt-4o", "--max-cooldown", "soon"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid value 'soon' for '--max-cooldown <DURATION>': `soon` is not a duration (use e.g. 60s, 500ms, 2m)"), "{}", stderr(&out));
}
