//! Rendering a provider's request template with minijinja.
//!
//! Every string of `base_url`, `request.path`, `request.headers` and the body's string
//! leaves is a template over [`KNOWN_VARIABLES`]. The values are fixed for a whole probe,
//! so the request is rendered once and the engine sends the same bytes for every prompt.
//!
//! The body is a JSON tree: templates are rendered leaf by leaf and the tree is then
//! serialized by serde_json, so no prompt can break the JSON. A leaf that is exactly one
//! `{{ expr }}` keeps the value's type (`"{{ max_tokens }}"` becomes a number). The
//! prompt is a *value*: text inside it is never evaluated as a template.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

use crate::config::provider::{Method, Provider};

/// The variables a template may use.
pub const KNOWN_VARIABLES: &[&str] = &[
    "model",
    "prompt",
    "max_tokens",
    "api_key",
    "base_url",
    "stream",
    "env",
];

/// The values templates are rendered with. `Debug` shows the key and the `env` values
/// as `***` (they come from the keys file or the environment).
#[derive(Clone, Serialize)]
pub struct Vars {
    pub model: String,
    pub prompt: String,
    pub max_tokens: u32,
    pub api_key: String,
    pub base_url: String,
    pub stream: bool,
    /// Only the variables the templates name (see [`env_names`]).
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vars")
            .field("model", &self.model)
            .field("prompt", &self.prompt)
            .field("max_tokens", &self.max_tokens)
            .field("api_key", &"***")
            .field("base_url", &self.base_url)
            .field("stream", &self.stream)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A request ready to send, identical for every prompt of the probe.
#[derive(Clone)]
pub struct RenderedRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// The body serialized once.
    pub body_bytes: bytes::Bytes,
    /// The key and every `env.NAME` value the headers or the body read (a gateway's
    /// token, say), longest first: kept only to redact them wherever they might be shown.
    secrets: Vec<String>,
}

impl std::fmt::Debug for RenderedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedRequest")
            .field("method", &self.method)
            .field("url", &self.redact(&self.url))
            .field("headers", &self.redacted_headers())
            .finish_non_exhaustive()
    }
}

/// Header names that carry credentials whatever their value.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "proxy-authorization",
];

impl RenderedRequest {
    /// Replaces every occurrence of the key, and of each `env.NAME` value the headers or
    /// the body read, in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// The headers as they may be shown: credentials replaced by `***`.
    pub fn redacted_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(name, value)| {
                if SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    (name.clone(), "***".to_string())
                } else {
                    (name.clone(), self.redact(value))
                }
            })
            .collect()
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// If `s` is exactly one `{{ expr }}`, the expression.
fn sole_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    let inner = inner.trim_start_matches('-').trim_end_matches('-').trim();
    (!inner.is_empty()).then_some(inner)
}

/// Compiles a template string and checks the variables it uses. Returns the `env.NAME`
/// names it reads.
pub fn check(source: &str) -> Result<BTreeSet<String>, String> {
    let env = environment();
    let (top, nested) = if let Some(expr) = sole_expression(source) {
        let e = env.compile_expression(expr).map_err(|e| describe(&e))?;
        (e.undeclared_variables(false), e.undeclared_variables(true))
    } else {
        let t = env.template_from_str(source).map_err(|e| describe(&e))?;
        (t.undeclared_variables(false), t.undeclared_variables(true))
    };
    let mut unknown: Vec<_> = top
        .iter()
        .filter(|v| !KNOWN_VARIABLES.contains(&v.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(format!(
            "unknown template variable{} {}; known: {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", "),
            KNOWN_VARIABLES.join(", ")
        ));
    }
    let mut names = BTreeSet::new();
    for v in nested {
        if let Some(name) = v.strip_prefix("env.") {
            names.insert(name.split('.').next().unwrap_or(name).to_string());
        } else if v == "env" {
            return Err("use `env.NAME` to read a variable from the environment".into());
        }
    }
    Ok(names)
}

/// minijinja's error without its debug dump, one line.
fn describe(e: &minijinja::Error) -> String {
    let mut s = format!("template error: {}", e.kind());
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    if let Some(line) = e.line() {
        s.push_str(&format!(" (template line {line})"));
    }
    s
}

/// Every template string of a provider document, with the JSON pointer where it is
/// written. Works on the raw JSON so that template errors are reported together with
/// schema errors, before the document is typed.
pub fn template_strings(doc: &Value) -> Vec<(String, String)> {
    use crate::config::locate::escape_segment;
    fn leaves(v: &Value, at: String, out: &mut Vec<(String, String)>) {
        match v {
            Value::String(s) => out.push((at, s.clone())),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| leaves(v, format!("{at}/{i}"), out)),
            Value::Object(map) => map
                .iter()
                .for_each(|(k, v)| leaves(v, format!("{at}/{}", escape_segment(k)), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (at, v) in [
        ("/base_url", doc.get("base_url")),
        ("/request/path", doc.pointer("/request/path")),
        ("/request/headers", doc.pointer("/request/headers")),
        ("/request/body", doc.pointer("/request/body")),
        ("/request/stream_body", doc.pointer("/request/stream_body")),
    ] {
        if let Some(v) = v {
            leaves(v, at.to_string(), &mut out);
        }
    }
    out
}

/// Template problems of a provider document: `(JSON pointer, message)` each.
pub fn template_problems(doc: &Value) -> Vec<(String, String)> {
    template_strings(doc)
        .into_iter()
        .filter_map(|(at, source)| check(&source).err().map(|e| (at, e)))
        .collect()
}

/// The `env.NAME` variables a provider's templates read.
pub fn env_names(p: &Provider) -> BTreeSet<String> {
    env_names_under(p, |_| true)
}

/// The `env.NAME` variables read by the template strings whose place (a JSON pointer,
/// as [`template_strings`] gives it) passes `keep`.
fn env_names_under(p: &Provider, keep: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let doc = serde_json::to_value(p).unwrap_or_default();
    template_strings(&doc)
        .into_iter()
        .filter(|(at, _)| keep(at))
        .filter_map(|(_, s)| check(&s).ok())
        .flatten()
        .collect()
}

/// Renders one template string to text.
pub fn render_str(source: &str, vars: &Vars) -> Result<String, String> {
    environment()
        .render_str(source, vars)
        .map_err(|e| describe(&e))
}

/// Renders a JSON tree: string leaves are templates; sole expressions keep their type.
pub fn render_value(v: &Value, vars: &Vars) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => match sole_expression(s) {
            Some(expr) => {
                let env = environment();
                let value = env
                    .compile_expression(expr)
                    .and_then(|e| e.eval(vars))
                    .map_err(|e| describe(&e))?;
                serde_json::to_value(&value)
                    .map_err(|e| format!("template value is not JSON: {e}"))?
            }
            None => Value::String(render_str(s, vars)?),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Merges `over` into `base`, key by key, recursively.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Renders the provider's request for these values. `base_url` in `vars` must already
/// be the final base URL (the provider's, or the override), itself rendered.
pub fn render_request(p: &Provider, vars: &Vars) -> Result<RenderedRequest, String> {
    let path = render_str(&p.request.path, vars).map_err(|e| format!("request.path: {e}"))?;
    let url = join_url(&vars.base_url, &path);
    let mut headers = Vec::new();
    for (name, value) in &p.request.headers {
        let v = render_str(value, vars).map_err(|e| format!("request.headers.{name}: {e}"))?;
        headers.push((name.clone(), v));
    }
    let mut body = p.request.body.clone();
    if vars.stream {
        if let Some(sb) = &p.request.stream_body {
            merge(&mut body, sb);
        }
    }
    let body = render_value(&body, vars).map_err(|e| format!("request.body: {e}"))?;
    let body_bytes =
        bytes::Bytes::from(serde_json::to_vec(&body).map_err(|e| format!("request.body: {e}"))?);
    Ok(RenderedRequest {
        method: p.request.method,
        url,
        headers,
        body,
        body_bytes,
        secrets: secrets(p, vars),
    })
}

/// The shortest `env.NAME` value treated as a secret. A shorter one (a version, a flag, a
/// region code) is no credential, and hiding it would garble every address and number that
/// holds its characters (`sig=1` made `http://***27.0.0.***`). The key is hidden whatever
/// its length.
pub const MIN_ENV_SECRET_CHARS: usize = 8;

/// What [`RenderedRequest::redact`] hides: the key, and the value of every `env.NAME`
/// that the path, a header or the body reads (credentials travel there, a query-string
/// token among them; `base_url` is the address, which verbose lines should show) and is
/// at least [`MIN_ENV_SECRET_CHARS`] long. Each also as it appears inside a JSON string
/// (`"` and `\` escaped: the body, a server's reply quoting it) and inside such a string
/// quoted again (an error message that quotes that reply). Longest first, so that a
/// secret holding another is hidden whole.
fn secrets(p: &Provider, vars: &Vars) -> Vec<String> {
    let names = env_names_under(p, |at| at != "/base_url");
    let env_values = names
        .iter()
        .filter_map(|name| vars.env.get(name).cloned())
        .filter(|v| v.chars().count() >= MIN_ENV_SECRET_CHARS);
    let mut secrets: Vec<String> = env_values
        .chain(std::iter::once(vars.api_key.clone()))
        .filter(|s| !s.is_empty())
        .flat_map(|s| {
            let once = json_escaped(&s);
            let twice = json_escaped(&once);
            [s, once, twice]
        })
        .collect();
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
    secrets
}

/// `s` as it reads between the quotes of a JSON string.
fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

/// `https://h/v1` + `/chat/completions` → `https://h/v1/chat/completions`, with exactly
/// one slash between them.
pub fn join_url(base: &str, path: &str) -> String {
    if path.is_empty() {
        return base.to_string();
    }
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(prompt: &str) -> Vars {
        Vars {
            model: "gpt-4o".into(),
            prompt: prompt.into(),
            max_tokens: 512,
            api_key: "sk-test".into(),
            base_url: "https://api.openai.com/v1".into(),
            stream: false,
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn sole_expressions_keep_their_type() {
        let body = json!({"max_tokens": "{{ max_tokens }}", "stream": "{{stream}}", "label": "n={{ max_tokens }}"});
        let out = render_value(&body, &vars("x")).unwrap();
        assert_eq!(
            out,
            json!({"max_tokens": 512, "stream": false, "label": "n=512"})
        );
    }

    #[test]
    fn hostile_prompt_round_trips_byte_for_byte() {
        let prompt = "Say \"hello world\"\\\n\t{{ not a template }} {% if x %} 🦀 日本語 Ω \u{0}";
        let body = json!({"messages": [{"role": "user", "content": "{{ prompt }}"}]});
        let out = render_value(&body, &vars(prompt)).unwrap();
        let text = serde_json::to_string(&out).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["messages"][0]["content"].as_str().unwrap(), prompt);
    }

    #[test]
    fn unknown_variables_and_syntax_errors_are_reported() {
        assert_eq!(
            check("Bearer {{ apikey }}").unwrap_err(),
            "unknown template variable `apikey`; known: model, prompt, max_tokens, api_key, base_url, stream, env"
        );
        assert!(check("{{ model ")
            .unwrap_err()
            .starts_with("template error: syntax error"));
        assert_eq!(
            check("{{ env.AZURE_RESOURCE }}.x").unwrap(),
            BTreeSet::from(["AZURE_RESOURCE".to_string()])
        );
    }

    #[test]
    fn env_values_read_by_path_headers_or_body_are_redacted_but_the_base_url_is_not() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/providers/openai.yaml"
        ))
        .unwrap()
        .replacen(
            "base_url: https://api.openai.com/v1",
            "base_url: \"{{ env.GW_URL }}\"",
            1,
        )
        .replacen(
            "path: /chat/completions",
            "path: \"/chat/completions?sig={{ env.GW_SIG }}\"",
            1,
        )
        .replacen(
            "    Content-Type: application/json\n",
            "    Content-Type: application/json\n    Gw-Auth: \"t {{ env.GW_TOKEN }}\"\n",
            1,
        );
        assert!(text.contains("GW_URL") && text.contains("GW_SIG") && text.contains("Gw-Auth"));
        let p = crate::config::parse_provider(std::path::Path::new("gw.yaml"), &text).unwrap();
        let mut v = vars("x");
        v.base_url = "http://127.0.0.1:9/v1".into();
        v.env = BTreeMap::from([
            ("GW_URL".to_string(), "http://127.0.0.1:9/v1".to_string()),
            ("GW_SIG".to_string(), "sig-77aa".to_string()),
            ("GW_TOKEN".to_string(), "tok-31f0".to_string()),
        ]);
        let r = render_request(&p, &v).unwrap();
        assert_eq!(r.url, "http://127.0.0.1:9/v1/chat/completions?sig=sig-77aa");
        assert_eq!(
            r.redact(&format!("{} Gw-Auth: t tok-31f0 key sk-test", r.url)),
            "http://127.0.0.1:9/v1/chat/completions?sig=*** Gw-Auth: t *** key ***"
        );
    }

    #[test]
    fn env_secrets_are_hidden_raw_and_json_escaped_and_short_values_are_not_secrets() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/providers/openai.yaml"
        ))
        .unwrap()
        .replacen(
            "path: /chat/completions",
            "path: \"/chat/completions?v={{ env.GW_VERSION }}\"",
            1,
        )
        .replacen(
            "    Content-Type: application/json\n",
            "    Content-Type: application/json\n    Gw-Auth: \"{{ env.GW_TOKEN }}\"\n",
            1,
        );
        let p = crate::config::parse_provider(std::path::Path::new("gw.yaml"), &text).unwrap();
        let mut v = vars("sk-test-key");
        v.base_url = "http://127.0.0.1:9/v1".into();
        let token = r#"to"k\en-31f0"#;
        v.env = BTreeMap::from([
            ("GW_VERSION".to_string(), "1".to_string()),
            ("GW_TOKEN".to_string(), token.to_string()),
        ]);
        let r = render_request(&p, &v).unwrap();
        // One JSON string holding the token, and that JSON quoted again.
        let once = serde_json::to_string(token).unwrap();
        let twice = serde_json::to_string(&once).unwrap();
        assert_eq!(once, r#""to\"k\\en-31f0""#);
        assert_eq!(
            r.redact(&format!("{} raw {token} json {once} twice {twice}", r.url)),
            r#"http://127.0.0.1:9/v1/chat/completions?v=1 raw *** json "***" twice "\"***\"""#
        );
        assert_eq!(r.redact("max_tokens 1000"), "max_tokens 1000");
    }

    #[test]
    fn join_url_puts_one_slash() {
        assert_eq!(join_url("http://h/v1/", "/chat"), "http://h/v1/chat");
        assert_eq!(join_url("http://h", "v1/messages"), "http://h/v1/messages");
    }
}
