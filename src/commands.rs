//! One function per subcommand. `dispatch` is what `lib::run` calls.

use std::io::Write;

use crate::cli::{Cli, Command};
use crate::config::registry::Registry;
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
        Some(Command::Plan { .. }) | Some(Command::Simulate { .. }) => {
            Err(Error::Internal("this command is not built yet".into()))
        }
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
            Ok(kind) => eprintln!("ok: {} ({})", f.display(), kind_name(kind)),
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
    let reg = Registry::load(dirs, true).map_err(Error::Config)?;
    let mut out = String::new();
    for e in reg.entries() {
        let p = &e.provider;
        let key = p.auth.key_env.as_deref().unwrap_or("(no key)");
        out.push_str(&format!(
            "{:<16} {:<28} {:<22} {}",
            p.name,
            p.models.join(","),
            key,
            e.source
        ));
        if let Some(r) = &e.replaced {
            out.push_str(&format!("  (replaces {r})"));
        }
        out.push('\n');
    }
    print_stdout(&out)
}

/// Runs a probe: starts the simulator if the scenario asks for one, runs the loop,
/// prints the summary (stderr) and the count (stdout), writes the result file.
pub fn run_probe(settings: &ProbeSettings) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(probe_async(settings.clone()))?;
    let result = &outcome.result;
    eprint!("{}", crate::report::summary_table(result));
    if let Some(path) = &settings.output_file {
        crate::report::write_result_atomically(path, result).map_err(|e| {
            Error::Internal(format!(
                "{}: cannot write the result file: {}",
                path.display(),
                config::io_reason(&e)
            ))
        })?;
        eprintln!("result written to {}", path.display());
    }
    if let Some(w) = result.recommended_workers {
        print_stdout(&format!("{w}\n"))?;
    }
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn probe_async(mut settings: ProbeSettings) -> Result<crate::probe::ProbeOutcome, Error> {
    use std::sync::Arc;
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
        eprintln!("simulator listening on {base}");
        settings.set_base_url(Some(&base))?;
        sim = Some(server);
    }
    let request = settings.render_request()?;
    let classifier =
        crate::classify::Classifier::new(&settings.provider).map_err(Error::Internal)?;
    let engine = crate::engine::Engine::new(crate::engine::EngineConfig {
        request,
        classifier: Arc::new(classifier),
        stream: settings.stream,
        connect_timeout: settings.connect_timeout,
        request_timeout: settings.request_timeout,
        max_retries: settings.max_retries,
        retry_base_delay: settings.retry_base_delay,
        retry_max_delay: settings.retry_max_delay,
        max_body_bytes: settings::MAX_BODY_BYTES,
        ca_cert: settings.ca_cert.clone(),
        verbose: settings.verbose,
        proxy: crate::engine::ProxySettings::from_env(),
        log: crate::engine::LogSink::stderr(),
    })
    .map_err(Error::Usage)?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let signal_cancel = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: finishing the result file (Ctrl-C again to quit at once)");
            signal_cancel.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                // The second Ctrl-C: the person wants out now.
                std::process::exit(i32::from(crate::exit::INTERRUPTED));
            }
        }
    });
    let mut observer = crate::probe::PlainLines;
    let outcome = crate::probe::run(&settings, &engine, &cancel, &mut observer).await;
    if let Some(s) = sim {
        s.shutdown().await;
    }
    Ok(outcome)
}
