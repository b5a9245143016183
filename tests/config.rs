//! Loading provider and scenario files: every problem of a file at once, each naming the
//! file, the path and the line; no input, however broken, panics.

use std::path::Path;
use std::process::Command;

use find_workers_limit::config::{self, parse_provider, parse_scenario};

const BIN: &str = env!("CARGO_BIN_EXE_find-workers-limit");

/// A valid provider to mutate in the table below.
const GOOD: &str = r#"name: demo
models: ["demo-*"]
base_url: http://127.0.0.1:1/v1
request:
  path: /chat/completions
  headers:
    Authorization: "Bearer {{ api_key }}"
  body:
    model: "{{ model }}"
    max_tokens: "{{ max_tokens }}"
classify:
  - status: 429
    outcome: rate_limited
  - status: 200
    outcome: success
"#;

fn provider_errors(text: &str) -> String {
    match parse_provider(Path::new("p.yaml"), text) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_good_provider_loads() {
    assert_eq!(provider_errors(GOOD), "ok");
}

#[test]
fn provider_problems_name_file_path_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "typo'd key",
            "  - status: 200\n    outcome: success\n",
            "  - status: 200\n    outcom: success\n",
        ),
        (
            "wrong type",
            "base_url: http://127.0.0.1:1/v1\n",
            "base_url: [1, 2]\n",
        ),
        (
            "missing required field",
            "  path: /chat/completions\n",
            "  pth: /chat/completions\n",
        ),
        (
            "template syntax error",
            "\"Bearer {{ api_key }}\"",
            "\"Bearer {{ api_key \"",
        ),
        (
            "unknown template variable",
            "model: \"{{ model }}\"",
            "model: \"{{ modle }}\"",
        ),
        ("bad status", "  - status: 429\n", "  - status: 4290\n"),
        (
            "bad outcome",
            "    outcome: rate_limited\n",
            "    outcome: ratelimited\n",
        ),
        (
            "bad regex",
            "  - status: 429\n",
            "  - status: 429\n    body_regex: \"(unclosed\"\n",
        ),
    ];
    let expected = [
        "p.yaml:14: classify[1]: \"outcome\" is a required property\np.yaml:15: classify[1].outcom: unknown field `outcom` (did you mean `outcome`?)",
        "p.yaml:3: base_url: [1,2] is not of type \"string\"",
        "p.yaml:4: request: \"path\" is a required property\np.yaml:5: request.pth: unknown field `pth` (did you mean `path`?)",
        "p.yaml:7: request.headers.Authorization: template error: syntax error: unexpected end of input, expected end of variable block (template line 1)",
        "p.yaml:9: request.body.model: unknown template variable `modle`; known: model, prompt, max_tokens, api_key, base_url, stream, env",
        "p.yaml:12: classify[0].status: 4290 is not an HTTP status (100 to 599)",
        "p.yaml:13: classify[0].outcome: \"ratelimited\" is not one of [\"success\",\"rate_limited\",\"transient\",\"fatal\"]",
        "p.yaml:13: classify[0].body_regex: invalid regular expression `(unclosed`: unclosed group",
    ];
    for ((name, from, to), want) in cases.iter().zip(expected) {
        assert!(
            GOOD.contains(from),
            "{name}: fixture does not contain {from:?}"
        );
        let text = GOOD.replacen(from, to, 1);
        assert_eq!(provider_errors(&text), want, "case: {name}");
    }
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let text = GOOD
        .replacen("base_url: http://127.0.0.1:1/v1", "base_url: 5", 1)
        .replacen("outcome: success", "outcom: success", 1)
        .replacen("{{ model }}", "{{ modle }}", 1);
    let got = provider_errors(&text);
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        vec![
            "p.yaml:3: base_url: 5 is not of type \"string\"",
            "p.yaml:9: request.body.model: unknown template variable `modle`; known: model, prompt, max_tokens, api_key, base_url, stream, env",
            "p.yaml:14: classify[1]: \"outcome\" is a required property",
            "p.yaml:15: classify[1].outcom: unknown field `outcom` (did you mean `outcome`?)",
        ]
    );
}

#[test]
fn scenario_cross_checks() {
    let err = parse_scenario(
        Path::new("s.yaml"),
        "model: x\nprompt: hi\nprompt_file: p.txt\nplanner:\n  backoff: 1.5\n  start: 0\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "s.yaml:3: prompt_file: give `prompt` or `prompt_file`, not both\n\
         s.yaml:5: planner.backoff: 1.5 must be between 0 and 1 (exclusive)\n\
         s.yaml:6: planner.start: must be at least 1"
    );
}

#[test]
fn broken_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let nested = format!("a: {}1{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let big = "x: 1\n".repeat(2_200_000);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty.yaml",
            vec![],
            "empty.yaml: (top level): is empty: expected a YAML mapping",
        ),
        (
            "comments.yaml",
            b"# only a comment\n".to_vec(),
            "comments.yaml: (top level): is empty: expected a YAML mapping",
        ),
        (
            "binary.yaml",
            vec![0xff, 0xfe, 0x00, 0x01, 0x80],
            "binary.yaml: (top level): is not UTF-8 text (invalid byte at offset 0)",
        ),
        (
            "list.yaml",
            b"- a\n- b\n".to_vec(),
            "list.yaml:1: (top level): expected a YAML mapping, found a list",
        ),
        (
            "scalar.yaml",
            b"just text\n".to_vec(),
            "scalar.yaml:1: (top level): expected a YAML mapping, found a string",
        ),
        (
            "big.yaml",
            big.into_bytes(),
            "big.yaml: (top level): is 11000000 bytes; config files are limited to 1048576 bytes",
        ),
        (
            "tabs.yaml",
            b"a:\n\t- b\n".to_vec(),
            "tabs.yaml:2: (top level): invalid YAML: found character that cannot start any token",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let got = config::load_provider(&path).unwrap_err().to_string();
        assert_eq!(
            got.replace(&format!("{}/", dir.path().display()), ""),
            want,
            "{name}"
        );
    }
    // Deep nesting: serde_yaml's recursion limit answers, whatever its words.
    let path = dir.path().join("nested.yaml");
    std::fs::write(&path, nested).unwrap();
    let got = config::load_provider(&path).unwrap_err().to_string();
    assert!(
        got.contains("nested.yaml") && got.contains("invalid YAML: recursion limit exceeded"),
        "{got}"
    );
    // A directory given as a file.
    let got = config::load_provider(dir.path()).unwrap_err().to_string();
    assert_eq!(
        got,
        format!(
            "{}: (top level): is a directory, not a file",
            dir.path().display()
        )
    );
}

#[test]
fn validate_command_exits_non_zero_with_one_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = format!(
        "# yaml-language-server: $schema=../schemas/provider.schema.json\n{}",
        GOOD.replacen("outcome: success", "outcom: success", 1)
    );
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let b = bad.display();
    assert_eq!(
        stderr,
        format!(
            "error: {b}:15: classify[1]: \"outcome\" is a required property\n\
             error: {b}:16: classify[1].outcom: unknown field `outcom` (did you mean `outcome`?)\n"
        )
    );
}

#[test]
fn every_shipped_file_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["providers", "scenarios"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let out = Command::new(BIN)
        .arg("validate")
        .args(&files)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_yaml_file_in_the_repo_has_the_schema_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("git")
        .args(["ls-files", "*.yaml", "*.yml"])
        .current_dir(root)
        .output()
        .unwrap();
    let listed = String::from_utf8(out.stdout).unwrap();
    let mut missing = Vec::new();
    let mut count = 0;
    for f in listed.lines() {
        count += 1;
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        let first = text.lines().next().unwrap_or("");
        let kind = if f.starts_with("providers/") {
            "provider"
        } else {
            "scenario"
        };
        let depth = f.matches('/').count();
        let want = format!(
            "# yaml-language-server: $schema={}schemas/{kind}.schema.json",
            "../".repeat(depth)
        );
        if first != want {
            missing.push(format!("{f}: first line is {first:?}, want {want:?}"));
        }
    }
    assert!(count >= 3, "git ls-files found {count} YAML files");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn schema_command_prints_the_committed_schema() {
    for kind in ["provider", "scenario", "result"] {
        let out = Command::new(BIN).args(["schema", kind]).output().unwrap();
        assert!(out.status.success());
        let committed = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{kind}.schema.json")),
        )
        .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
    }
}

#[test]
fn the_readme_provider_example_validates() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("```yaml\n# yaml-language-server")
        .expect("README has the provider example")
        + "```yaml\n".len();
    let len = readme[start..].find("```").unwrap();
    let example = &readme[start..start + len];
    let p = parse_provider(Path::new("README.md"), example).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name, "acme");
    assert_eq!(p.classify.len(), 4);
}
