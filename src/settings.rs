//! Flags and scenario file resolved into the checked settings of one probe. The rest of
//! the program never sees raw flags or raw YAML: only [`ProbeSettings`].
//!
//! Precedence: a flag beats the scenario file, which beats the built-in default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ProbeArgs;
use crate::config::keys::{Keys, Secret};
use crate::config::provider::Provider;
use crate::config::registry::{Registry, Source};
use crate::config::scenario::{Scenario, SimulatorSettings, DEFAULT_PROMPT};
use crate::config::{self, ConfigError};
use crate::planner::{PlannerConfig, SpendCap};
use crate::template::{self, RenderedRequest, Vars};
use crate::Error;

include!(concat!(env!("OUT_DIR"), "/builtin_scenarios.rs"));

/// Default of `--min-output-tokens` (the seed spec's).
pub const DEFAULT_MIN_OUTPUT_TOKENS: u32 = 500;
/// Cooldown after a rate-limited step when no retry hint was seen: one per-minute window.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
/// A retry hint longer than this ends the probe (Azure can say 86400 s).
pub const DEFAULT_MAX_COOLDOWN: Duration = Duration::from_secs(300);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(500);
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(8);
/// Response bodies above this are cut and count as a failure.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Prompt files above this are refused (a prompt is sent with every request).
pub const MAX_PROMPT_BYTES: u64 = 1 << 20;

/// Everything one probe needs, checked.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// The proxies from the environment (`HTTP_PROXY`, `NO_PROXY`, ...), read once: the
    /// key check and the engine see the same route.
    pub proxy: crate::engine::ProxySettings,
    /// Scenario name, when the probe came from one.
    pub scenario: Option<String>,
    pub provider: Provider,
    pub provider_source: Source,
    pub model: String,
    /// The provider's base URL, overridden by `--base-url` / the scenario. When a
    /// simulator is started, the probe replaces it with the simulator's address.
    pub base_url: String,
    pub prompt: String,
    pub min_output_tokens: u32,
    pub max_tokens: u32,
    pub stream: bool,
    pub planner: PlannerConfig,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
    pub output_file: Option<PathBuf>,
    pub chart: Option<PathBuf>,
    /// Start the built-in simulator with these settings and probe it.
    pub simulator: Option<SimulatorSettings>,
    pub verbose: bool,
    pub ca_cert: Option<PathBuf>,
    pub step_duration: Option<Duration>,
    pub refine: bool,
    /// Limits on what the probe may spend; a step that could break one is not started.
    pub caps: SpendCap,
    /// The key, if the provider uses one and it was found.
    pub api_key: Option<Secret>,
    /// `env.NAME` values the templates read.
    pub env: BTreeMap<String, String>,
}

/// Finds a scenario: a path to a file, `scenarios/NAME.yaml` in the working directory,
/// or a built-in scenario of that name.
pub fn load_scenario(name: &str) -> Result<(Scenario, PathBuf), Error> {
    let as_path = Path::new(name);
    let looks_like_path = name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml");
    if looks_like_path || as_path.is_file() {
        return Ok((config::load_scenario(as_path)?, as_path.to_path_buf()));
    }
    let local = Path::new("scenarios").join(format!("{name}.yaml"));
    if local.is_file() {
        return Ok((config::load_scenario(&local)?, local));
    }
    if let Some((file, text)) = BUILTIN_SCENARIOS
        .iter()
        .find(|(f, _)| f.strip_suffix(".yaml") == Some(name))
    {
        let path = Path::new("scenarios").join(file);
        return Ok((config::parse_scenario(&path, text)?, path));
    }
    let known: Vec<&str> = BUILTIN_SCENARIOS
        .iter()
        .filter_map(|(f, _)| f.strip_suffix(".yaml"))
        .collect();
    Err(Error::Usage(format!(
        "no scenario `{name}`: not a file, not scenarios/{name}.yaml, not built in (built in: {})",
        known.join(", ")
    )))
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// Reads a prompt file: it must exist, be a file, be UTF-8 and hold some text.
fn read_prompt(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(|e| {
        usage(format!(
            "{}: cannot read prompt file: {}",
            path.display(),
            config::io_reason(&e)
        ))
    })?;
    if meta.is_dir() {
        return Err(usage(format!(
            "{}: prompt file is a directory",
            path.display()
        )));
    }
    if meta.len() > MAX_PROMPT_BYTES {
        return Err(usage(format!(
            "{}: prompt file is {} bytes; the limit is {MAX_PROMPT_BYTES}",
            path.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        usage(format!(
            "{}: cannot read prompt file: {}",
            path.display(),
            config::io_reason(&e)
        ))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| usage(format!("{}: prompt file is not UTF-8 text", path.display())))?;
    if text.trim().is_empty() {
        return Err(usage(format!("{}: prompt file is empty", path.display())));
    }
    Ok(text)
}

/// Resolves flags and an optional scenario into settings. Loads the provider registry
/// and keys; everything that can be checked before a request is sent is checked here.
pub fn resolve(
    args: &ProbeArgs,
    scenario: Option<(&Scenario, &Path)>,
) -> Result<ProbeSettings, Error> {
    resolve_with(args, scenario, true)
}

/// [`resolve`], where `need_key: false` lets a missing key pass (the dry run `plan`,
/// which sends nothing and shows the key as `***`).
pub fn resolve_with(
    args: &ProbeArgs,
    scenario: Option<(&Scenario, &Path)>,
    need_key: bool,
) -> Result<ProbeSettings, Error> {
    let default_scenario = Scenario::default();
    let (sc, sc_path) = match scenario {
        Some((s, p)) => (s, Some(p)),
        None => (&default_scenario, None),
    };

    let model = args
        .model
        .clone()
        .or_else(|| sc.model.clone())
        .ok_or_else(|| usage("--model is required (or a scenario that names a model)"))?;
    if model.trim().is_empty() {
        return Err(usage("--model is empty"));
    }

    let registry = Registry::load(&args.providers_dir, true).map_err(Error::Config)?;
    let entry = registry.choose(args.provider.as_deref().or(sc.provider.as_deref()), &model)?;
    let provider = entry.provider.clone();

    // Planner settings: defaults, then the scenario, then flags.
    let d = PlannerConfig::default();
    let p = &sc.planner;
    let planner = PlannerConfig {
        start: p.start.unwrap_or(d.start),
        doubling_steps: p.doubling_steps.unwrap_or(d.doubling_steps),
        growth: p.growth.unwrap_or(d.growth),
        backoff: p.backoff.unwrap_or(d.backoff),
        max_workers: args.max_workers.or(p.max_workers).unwrap_or(d.max_workers),
        prompts_per_worker: p.prompts_per_worker.unwrap_or(d.prompts_per_worker),
        min_prompts: p.min_prompts.unwrap_or(d.min_prompts),
    };
    if planner.max_workers == 0 {
        return Err(usage("--max-workers must be at least 1"));
    }
    if planner.max_workers > 100_000 {
        return Err(usage(format!(
            "--max-workers {} is more than 100000",
            planner.max_workers
        )));
    }

    let prompt = match (&args.prompt_file, &sc.prompt, &sc.prompt_file) {
        (Some(f), _, _) => read_prompt(f)?,
        (None, Some(p), _) => p.clone(),
        (None, None, Some(f)) => {
            let base = sc_path.and_then(Path::parent).unwrap_or(Path::new("."));
            read_prompt(&base.join(f))?
        }
        (None, None, None) => DEFAULT_PROMPT.to_string(),
    };

    let min_output_tokens = args
        .min_output_tokens
        .or(sc.min_output_tokens)
        .unwrap_or(DEFAULT_MIN_OUTPUT_TOKENS);
    let max_tokens = args
        .max_tokens
        .or(sc.max_tokens)
        .unwrap_or_else(|| min_output_tokens.saturating_mul(2).max(1));
    if max_tokens == 0 {
        return Err(usage("--max-tokens must be at least 1"));
    }

    let ms = Duration::from_millis;
    let cooldown = args
        .cooldown
        .or(sc.cooldown.default_ms.map(ms))
        .unwrap_or(DEFAULT_COOLDOWN);
    let max_cooldown = args
        .max_cooldown
        .or(sc.cooldown.max_ms.map(ms))
        .unwrap_or(DEFAULT_MAX_COOLDOWN);
    let request_timeout = args
        .timeout
        .or(sc.timeouts.request_ms.map(ms))
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    let connect_timeout = args
        .connect_timeout
        .or(sc.timeouts.connect_ms.map(ms))
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if request_timeout.is_zero() || connect_timeout.is_zero() {
        return Err(usage("--timeout and --connect-timeout must be above 0"));
    }
    if let Some(d) = args.step_duration {
        if d.is_zero() {
            return Err(usage("--step-duration must be above 0"));
        }
    }
    if let Some(c) = args.max_cost {
        if !(c.is_finite() && c > 0.0) {
            return Err(usage(format!(
                "--max-cost {c} must be a positive number of US dollars"
            )));
        }
        if provider.pricing.is_none() {
            return Err(usage(format!(
                "--max-cost needs prices: provider `{}` ({}) has no `pricing`; add it to the provider file, or cap with --max-prompts / --max-output-tokens",
                provider.name, entry.source
            )));
        }
    }
    if args.max_prompts == Some(0) || args.max_output_tokens == Some(0) {
        return Err(usage(
            "--max-prompts and --max-output-tokens must be at least 1",
        ));
    }
    if let Some(ca) = &args.ca_cert {
        if !ca.is_file() {
            return Err(usage(format!("{}: --ca-cert file not found", ca.display())));
        }
    }

    let simulator = sc.simulator.clone();

    // Output paths are checked now, not after a paid probe.
    let output_file = args.output_file.clone().or_else(|| sc.output_file.clone());
    for (what, path) in [("result file", &output_file), ("chart", &args.chart)] {
        if let Some(p) = path {
            check_writable(what, p)?;
        }
    }

    // Keys and env variables, checked before anything is sent.
    let keys = Keys::load(args.keys_file.as_deref())?;
    if let Some(w) = keys.warning() {
        crate::note!("{w}");
    }
    let api_key = match &provider.auth.key_env {
        Some(name) => match keys.get(name) {
            Some(k) => Some(k),
            // The built-in simulator needs no key, whatever the provider file says.
            None if provider.auth.optional || simulator.is_some() || !need_key => None,
            None => return Err(keys.require(name).unwrap_err().into()),
        },
        None => None,
    };
    let mut env = BTreeMap::new();
    for name in template::env_names(&provider) {
        match keys.get(&name) {
            Some(v) => {
                env.insert(name, v.expose().to_string());
            }
            None => {
                return Err(Error::Usage(format!(
                    "provider `{}` reads `env.{name}`: set {name} in the environment or in {}",
                    provider.name,
                    keys.file()
                        .map(|f| f.display().to_string())
                        .unwrap_or_else(|| ".env".into())
                )))
            }
        }
    }

    let mut settings = ProbeSettings {
        proxy: crate::engine::ProxySettings::from_env(),
        scenario: sc.name.clone().or_else(|| {
            sc_path
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
        }),
        provider_source: entry.source.clone(),
        model,
        base_url: String::new(),
        prompt,
        min_output_tokens,
        max_tokens,
        stream: args.stream || sc.stream.unwrap_or(false),
        planner,
        max_retries: args
            .retries
            .or(sc.retries.max_retries)
            .unwrap_or(DEFAULT_MAX_RETRIES),
        retry_base_delay: sc
            .retries
            .base_delay_ms
            .map(ms)
            .unwrap_or(DEFAULT_RETRY_BASE_DELAY),
        retry_max_delay: sc
            .retries
            .max_delay_ms
            .map(ms)
            .unwrap_or(DEFAULT_RETRY_MAX_DELAY),
        connect_timeout,
        request_timeout,
        cooldown,
        max_cooldown,
        output_file,
        chart: args.chart.clone(),
        simulator,
        verbose: args.verbose,
        ca_cert: args.ca_cert.clone(),
        step_duration: args.step_duration,
        refine: args.refine,
        caps: SpendCap {
            max_prompts: args.max_prompts,
            max_output_tokens: args.max_output_tokens,
            max_cost_usd: args.max_cost,
        },
        api_key,
        env,
        provider,
    };
    let base = args.base_url.clone().or_else(|| sc.base_url.clone());
    settings.set_base_url(base.as_deref())?;
    Ok(settings)
}

impl ProbeSettings {
    /// Descriptors one worker holds: its connection, and the simulator's end of it when
    /// the simulator runs in this process.
    pub fn descriptors_per_worker(&self) -> u64 {
        if self.simulator.is_some() {
            2
        } else {
            1
        }
    }

    /// The template values, with `base_url` as given.
    fn vars(&self, base_url: &str) -> Vars {
        Vars {
            model: self.model.clone(),
            prompt: self.prompt.clone(),
            max_tokens: self.max_tokens,
            api_key: self
                .api_key
                .as_ref()
                .map(|k| k.expose().to_string())
                .unwrap_or_default(),
            base_url: base_url.to_string(),
            stream: self.stream,
            env: self.env.clone(),
        }
    }

    /// Sets the base URL (an override, or the provider's own), rendering its template
    /// and checking it: http(s) only, and no key over plain http to a remote host.
    pub fn set_base_url(&mut self, over: Option<&str>) -> Result<(), Error> {
        let raw = over.unwrap_or(&self.provider.base_url).to_string();
        let rendered = template::render_str(&raw, &self.vars(""))
            .map_err(|e| usage(format!("base URL `{raw}`: {e}")))?;
        let uri: http::Uri = rendered.parse().map_err(|_| {
            usage(format!(
                "base URL `{rendered}` is not a URL (expected e.g. https://api.openai.com/v1)"
            ))
        })?;
        let scheme = uri.scheme_str().unwrap_or("");
        if scheme != "http" && scheme != "https" {
            return Err(usage(format!(
                "base URL `{rendered}` must start with http:// or https://"
            )));
        }
        let host = uri.host().unwrap_or("");
        if host.is_empty() {
            return Err(usage(format!("base URL `{rendered}` has no host")));
        }
        let has_key = self
            .api_key
            .as_ref()
            .is_some_and(|k| !k.expose().is_empty());
        if scheme == "http" && has_key && !self.provider.auth.allow_plain_http {
            let key = self
                .provider
                .auth
                .key_env
                .as_deref()
                .unwrap_or("the API key");
            if !is_loopback(host) {
                return Err(usage(format!(
                    "refusing to send {key} over plain http to {host}: use https, or set `auth.allow_plain_http: true` in the provider file"
                )));
            }
            // A target on this machine, but the bytes' first hop is a proxy elsewhere.
            if let Some(proxy) = self.proxy.proxy_host_for(&uri) {
                if !is_loopback(&proxy) {
                    return Err(usage(format!(
                        "refusing to send {key} over plain http through the proxy {proxy}: use https, a proxy on this machine, NO_PROXY for the target, or set `auth.allow_plain_http: true` in the provider file"
                    )));
                }
            }
        }
        self.base_url = rendered;
        Ok(())
    }

    /// The engine configuration of this probe: the rendered request, the provider's
    /// classifier, timeouts and retries; proxy from the environment, verbose lines to
    /// stderr, no per-prompt hook (the caller adds one for a progress display).
    pub fn engine_config(&self) -> Result<crate::engine::EngineConfig, Error> {
        let classifier =
            crate::classify::Classifier::new(&self.provider).map_err(Error::Internal)?;
        Ok(crate::engine::EngineConfig {
            request: self.render_request()?,
            classifier: std::sync::Arc::new(classifier),
            stream: self.stream,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
            retry_base_delay: self.retry_base_delay,
            retry_max_delay: self.retry_max_delay,
            max_body_bytes: MAX_BODY_BYTES,
            ca_cert: self.ca_cert.clone(),
            verbose: self.verbose,
            proxy: self.proxy.clone(),
            log: crate::engine::LogSink::stderr(),
            on_prompt: Default::default(),
        })
    }

    /// The request every prompt sends.
    pub fn render_request(&self) -> Result<RenderedRequest, Error> {
        template::render_request(&self.provider, &self.vars(&self.base_url)).map_err(|e| {
            Error::Config(vec![ConfigError::whole_file(
                Path::new(&format!("provider {}", self.provider.name)),
                e,
            )])
        })
    }
}

/// A file the probe will write at the end: its directory must exist and the path must
/// not be a directory.
fn check_writable(what: &str, path: &Path) -> Result<(), Error> {
    if path.is_dir() {
        return Err(usage(format!(
            "{}: cannot write the {what}: it is a directory",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(usage(format!(
            "{}: cannot write the {what}: no directory {}",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// `localhost`, 127.0.0.0/8 and ::1.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}
