//! One function per subcommand. `dispatch` is what `lib::run` calls.

use std::io::Write;

use crate::cli::{Cli, Command};
use crate::config::registry::Registry;
use crate::config::scenario::SimulatorSettings;
use crate::config::{self, SchemaKind};
use crate::settings::{self, ProbeSettings};
use crate::Error;

pub fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Validate { files }) => validate(&files),
        Some(Command::Schema { kind }) => schema(kind),
        Some(Command::Providers { providers_dir }) => providers(&providers_dir),
        Some(Command::Run { scenario, probe }) => {
            let (sc, path) = settings::load_scenario(&scenario)?;
            run_probe(&settings::resolve(&probe, Some((&sc, &path)))?)
        }
        None => run_probe(&settings::resolve(&cli.probe, None)?),
        Some(Command::Plan {
            scenario,
            show_request,
            probe,
        }) => {
            let settings = match scenario {
                Some(name) => {
                    let (sc, path) = settings::load_scenario(&name)?;
                    settings::resolve_with(&probe, Some((&sc, &path)), false)?
                }
                None => settings::resolve_with(&probe, None, false)?,
            };
            print_stdout(&plan(&settings, show_request)?)
        }
        Some(Command::Simulate { port, settings }) => simulate(port, settings),
    }
}

/// Prints to stdout, treating a closed pipe (`| head`) as success.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Internal(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// `validate FILE...`: every file is checked and every problem printed.
pub fn validate(files: &[std::path::PathBuf]) -> Result<(), Error> {
    let mut errors = Vec::new();
    for f in files {
        match config::validate_file(f) {
            Ok(kind) => crate::note!("ok: {} ({})", f.display(), kind_name(kind)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(errors))
    }
}

fn kind_name(kind: SchemaKind) -> &'static str {
    match kind {
        SchemaKind::Provider => "provider",
        SchemaKind::Scenario => "scenario",
        SchemaKind::Result => "result",
    }
}

/// `schema KIND`: the committed schema, which is what the binary validates with.
pub fn schema(kind: SchemaKind) -> Result<(), Error> {
    print_stdout(kind.committed())
}

/// `providers`: name, models, key variable and source of every loaded provider.
pub fn providers(dirs: &[std::path::PathBuf]) -> Result<(), Error> {
    use crate::report::summary::{table, Align};
    let reg = Registry::load(dirs, true).map_err(Error::Config)?;
    // The model globs last: one provider's list can be long, and the columns before it
    // stay aligned whatever its length.
    let rows: Vec<Vec<String>> = reg
        .entries()
        .iter()
        .map(|e| {
            let p = &e.provider;
            let source = match &e.replaced {
                Some(r) => format!("{} (replaces {r})", e.source),
                None => e.source.to_string(),
            };
            vec![
                p.name.clone(),
                p.auth.key_env.clone().unwrap_or_else(|| "(no key)".into()),
                source,
                if p.models.is_empty() {
                    "(none: chosen with --provider)".to_string()
                } else {
                    p.models.join(", ")
                },
            ]
        })
        .collect();
    let headers = [
        ("provider", Align::Left),
        ("key", Align::Left),
        ("file", Align::Left),
        ("models", Align::Left),
    ];
    print_stdout(&table(&headers, &rows))
}

/// Runs a probe: starts the simulator if the scenario asks for one, runs the loop,
/// prints the summary (stderr) and the count (stdout), writes the result file.
pub fn run_probe(settings: &ProbeSettings) -> Result<(), Error> {
    // The largest step's connections, and as many again on the in-process simulator.
    let per_worker = settings.descriptors_per_worker();
    let max_workers = u64::from(settings.planner.max_workers);
    let files = crate::engine::reserve_descriptors(max_workers * per_worker);
    if let Some(f) = files.filter(|f| !f.fits(max_workers * per_worker)) {
        let room = f.connections() / per_worker;
        crate::note!(
            "warning: the open-file limit is {f}: room for {} at once, not the {} of --max-workers; the probe stops before a larger step",
            crate::report::workers(u32::try_from(room).unwrap_or(u32::MAX)),
            max_workers
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(probe_async(settings.clone(), files))?;
    let result = &outcome.result;
    crate::note_raw!("{}", crate::report::summary_table(result));
    if let Some(path) = &settings.output_file {
        crate::report::write_result_atomically(path, result).map_err(|e| {
            Error::Internal(format!(
                "{}: cannot write the result file: {}",
                path.display(),
                config::io_reason(&e)
            ))
        })?;
        crate::note!("result written to {}", path.display());
    }
    if let Some(path) = &settings.chart {
        crate::chart::write(path, result).map_err(Error::Internal)?;
        crate::note!("chart written to {}", path.display());
    }
    if let Some(w) = result.recommended_workers {
        print_stdout(&format!("{w}\n"))?;
    }
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn probe_async(
    mut settings: ProbeSettings,
    files: Option<crate::engine::OpenFiles>,
) -> Result<crate::probe::ProbeOutcome, Error> {
    // Ctrl-C is caught from here on, before anything is printed or sent: the handler is
    // installed now, not when a task first polls it (until then a Ctrl-C would kill the
    // process without a result file).
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut interrupts =
        Interrupts::install().map_err(|e| Error::Internal(format!("cannot catch signals: {e}")))?;
    let signal_cancel = cancel.clone();
    tokio::spawn(async move {
        if let Some(stop) = interrupts.recv().await {
            signal_cancel.cancel();
            let notice = match stop {
                Stop::CtrlC => {
                    "\ninterrupted: finishing the result file (Ctrl-C again to quit at once)"
                }
                Stop::Terminate => {
                    "\nterminated: finishing the result file (a second signal quits at once)"
                }
            };
            // Printed from its own thread: a stderr that blocks (a paused pager) must
            // not keep this task from seeing the second signal.
            std::thread::spawn(move || crate::note!("{notice}"));
            if interrupts.recv().await.is_some() {
                // The second signal: the person (or the scheduler) wants out now.
                std::process::exit(i32::from(crate::exit::INTERRUPTED));
            }
        }
    });
    let mut sim = None;
    if let Some(sim_settings) = settings.simulator.clone() {
        let server = crate::simulate::SimServer::start(sim_settings, ([127, 0, 0, 1], 0).into())
            .await
            .map_err(|e| Error::Internal(format!("cannot start the simulator: {e}")))?;
        let base = if settings
            .provider
            .base_url
            .trim_end_matches('/')
            .ends_with("/v1")
        {
            server.openai_base_url()
        } else {
            server.anthropic_base_url()
        };
        crate::note!("simulator listening on {base}");
        settings.set_base_url(Some(&base))?;
        sim = Some(server);
    }
    let observer = crate::progress::Progress::stderr();
    // Debug builds only: a panic on demand, so tests can check that a panic message
    // carrying a key (the worst case) is printed redacted.
    #[cfg(debug_assertions)]
    if std::env::var_os("FIND_WORKERS_LIMIT_DEBUG_PANIC").is_some() {
        let request = settings.render_request()?;
        panic!(
            "debug panic; request headers {:?}",
            request
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
        );
    }
    let mut config = settings.engine_config()?;
    config.on_prompt = observer.prompt_hook();
    let engine = crate::engine::Engine::new(config).map_err(Error::Usage)?;
    let outcome = crate::probe::run(&settings, files, &engine, &cancel, &observer).await;
    observer.finish();
    if let Some(s) = sim {
        s.shutdown().await;
    }
    Ok(outcome)
}

/// Ctrl-C (SIGINT) and, on Unix, SIGTERM (what `kill`, a batch scheduler or a container
/// runtime sends), caught from the moment [`Interrupts::install`] returns.
struct Interrupts {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(windows)]
    interrupt: tokio::signal::windows::CtrlC,
}

/// Which signal asked the run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    CtrlC,
    Terminate,
}

impl Interrupts {
    /// Installs the handlers now (needs a runtime).
    fn install() -> std::io::Result<Interrupts> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Interrupts {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(windows)]
        Ok(Interrupts {
            interrupt: tokio::signal::windows::ctrl_c()?,
        })
    }

    /// The next signal; `None` if no more can come.
    async fn recv(&mut self) -> Option<Stop> {
        #[cfg(unix)]
        {
            tokio::select! {
                got = self.interrupt.recv() => got.map(|()| Stop::CtrlC),
                got = self.terminate.recv() => got.map(|()| Stop::Terminate),
            }
        }
        #[cfg(windows)]
        self.interrupt.recv().await.map(|()| Stop::CtrlC)
    }
}

/// `plan`: the steps the probe would run and the most they could spend, against the
/// caps; with `show_request`, the exact request (secrets redacted). Sends nothing.
pub fn plan(settings: &ProbeSettings, show_request: bool) -> Result<String, Error> {
    use crate::planner::{self, SpendCap};
    use crate::probe::{estimated_input_tokens, worst_case_spend};
    use std::fmt::Write;

    let mut out = String::new();
    let request = settings.render_request()?;
    let _ = writeln!(
        out,
        "provider: {} ({})",
        settings.provider.name, settings.provider_source
    );
    let _ = writeln!(
        out,
        "request:  {} {}",
        request.method,
        request.redact(&request.url)
    );
    let _ = writeln!(
        out,
        "model:    {}   max_tokens {}   prompt {} chars (~{} tokens)   stream {}",
        settings.model,
        settings.max_tokens,
        settings.prompt.chars().count(),
        estimated_input_tokens(settings),
        settings.stream
    );
    if settings.simulator.is_some() {
        let _ = writeln!(
            out,
            "target:   the built-in simulator, started on 127.0.0.1 when the probe runs"
        );
    }
    let ramp = planner::ramp(&settings.planner);
    let ramp_prompts: u32 = ramp
        .iter()
        .map(|w| planner::prompts_for(&settings.planner, *w))
        .sum();
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        out,
        "\nsteps if every step passes: {} ({}, {ramp_prompts} prompts)",
        list(&ramp),
        crate::report::count(ramp.len() as u64, "step", "steps")
    );
    let worst = planner::worst_case_steps(&settings.planner);
    let _ = writeln!(
        out,
        "worst case:                 {} ({})\n",
        list(&worst),
        crate::report::count(worst.len() as u64, "step", "steps")
    );
    let caps = settings.caps;
    let priced = settings.provider.pricing.is_some();
    let _ = writeln!(
        out,
        "{:>4}  {:>7}  {:>7}  {:>12}  {:>17}  {:>10}",
        "step", "workers", "prompts", "sum prompts", "sum output (max)", "sum cost"
    );
    let mut spent = planner::Spend {
        cost_usd: priced.then_some(0.0),
        ..Default::default()
    };
    let mut stop: Option<(usize, String)> = None;
    for (i, w) in worst.iter().enumerate() {
        let prompts = planner::prompts_for(&settings.planner, *w);
        let step = worst_case_spend(settings, prompts);
        if stop.is_none() {
            if let Err(why) = caps.check(spent, step) {
                stop = Some((i, why));
            }
        }
        spent = spent.plus(step);
        let cost = spent
            .cost_usd
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "unknown".into());
        let mark = if stop.as_ref().is_some_and(|(at, _)| *at == i) {
            "  <- a cap stops the probe here"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:>4}  {:>7}  {:>7}  {:>12}  {:>17}  {:>10}{mark}",
            i + 1,
            w,
            prompts,
            spent.prompts,
            spent.output_tokens,
            cost
        );
    }
    let _ = writeln!(
        out,
        "\nworst case: {} prompts, up to {} output tokens, ~{} input tokens, cost {}",
        spent.prompts,
        spent.output_tokens,
        spent.prompts * estimated_input_tokens(settings),
        spent
            .cost_usd
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "unknown (no pricing in the provider file)".into())
    );
    if let Some(d) = settings.step_duration {
        let _ = writeln!(
            out,
            "--step-duration {}: each step sends as many prompts as {} takes (at least the count above); the totals above are a floor, and the spend caps bound every step",
            humantime::format_duration(d),
            humantime::format_duration(d)
        );
    }
    if settings.refine {
        let worst = worst.last().copied().unwrap_or(1);
        let extra = u32::BITS - worst.leading_zeros();
        let _ = writeln!(
            out,
            "--refine: up to {extra} more steps of at most {worst} workers after the ramp (bisecting between the recommendation and the lowest failing count), not in the totals above; the spend caps bound them too"
        );
    }
    if caps != SpendCap::default() {
        match &stop {
            Some((i, why)) => {
                let _ = writeln!(
                    out,
                    "caps: the probe would stop before step {} at worst: {why}",
                    i + 1
                );
            }
            None => {
                let _ = writeln!(out, "caps: the worst case fits within the caps");
            }
        }
    }
    if show_request {
        let _ = writeln!(
            out,
            "\nrequest the probe sends (secrets as ***):\n{} {}",
            request.method,
            request.redact(&request.url)
        );
        for (name, value) in request.redacted_headers() {
            let _ = writeln!(out, "{name}: {value}");
        }
        let body = serde_json::to_string_pretty(&request.body).unwrap_or_default();
        let _ = writeln!(out, "\n{}", request.redact(&body));
    }
    Ok(out)
}

/// The connections `simulate` makes room for before it starts (see
/// [`crate::engine::reserve_descriptors`]).
const SIMULATOR_CONNECTIONS: u64 = 4032;

/// `simulate`: serves the simulated provider on 127.0.0.1 until Ctrl-C, then prints
/// what it served.
pub fn simulate(port: u16, settings: SimulatorSettings) -> Result<(), Error> {
    // Check the flags before binding, so a bad value is a usage error, not a failed bind.
    crate::simulate::config::SimConfig::resolve(&settings).map_err(Error::Usage)?;
    // Clients are not known in advance: room for a probe of 4,000 workers.
    if let Some(f) = crate::engine::reserve_descriptors(SIMULATOR_CONNECTIONS)
        .filter(|f| !f.fits(SIMULATOR_CONNECTIONS))
    {
        crate::note!(
            "warning: the open-file limit is {f}: this simulator holds at most {} connections at once; more wait in the listen queue until one closes",
            f.connections()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        let mut interrupts = Interrupts::install()
            .map_err(|e| Error::Internal(format!("cannot catch signals: {e}")))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let server = crate::simulate::SimServer::start(settings, addr)
            .await
            .map_err(|e| Error::Internal(format!("cannot listen on {addr}: {e}")))?;
        crate::note!(
            "simulator listening on http://{} (OpenAI base URL {}, Anthropic base URL {})",
            server.addr,
            server.openai_base_url(),
            server.anthropic_base_url()
        );
        crate::note!("settings: {}", server.describe());
        crate::note!("stats: GET http://{}/stats; Ctrl-C stops", server.addr);
        let _ = interrupts.recv().await;
        let s = server.stats();
        server.shutdown().await;
        crate::note!(
            "served {} requests: {} ok, {} rate limited, {} faults; at most {} in flight",
            s.requests,
            s.ok,
            s.rate_limited,
            s.faults,
            s.max_in_flight
        );
        Ok(())
    })
}
