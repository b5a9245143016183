//! `plan`: the dry run. Exact output; nothing is sent; no key is shown.

mod common;

use common::*;

#[test]
fn plan_prints_steps_worst_case_caps_and_the_redacted_request() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &[
            "plan",
            "--model",
            "gpt-4o",
            "--max-workers",
            "20",
            "--max-tokens",
            "100",
            "--max-prompts",
            "50",
            "--show-request",
        ],
        &[("OPENAI_API_KEY", "sk-SECRET-plan")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), include_str!("fixtures/plan_openai_max20.txt"));
    assert!(!stdout(&out).contains("SECRET") && !stderr(&out).contains("SECRET"));
}

#[test]
fn plan_needs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["plan", "--model", "claude-sonnet-4-5"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("provider: anthropic (built-in (providers/anthropic.yaml))\nrequest:  POST https://api.anthropic.com/v1/messages\n"), "{}", stdout(&out));
    assert!(stdout(&out).contains(
        "steps if every step passes: 3, 6, 12, 18, 27, 40, 60, 90, 100 (9 steps, 712 prompts)\n"
    ));
}
