//! One function per subcommand. `dispatch` is what `lib::run` calls.

use std::io::Write;

use crate::cli::{Cli, Command};
use crate::config::registry::Registry;
use crate::config::scenario::SimulatorSettings;
use crate::config::{self, SchemaKind};
use crate::Error;

pub fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Validate { files }) => validate(&files),
        Some(Command::Schema { kind }) => schema(kind),
        Some(Command::Providers { providers_dir }) => providers(&providers_dir),
        Some(Command::Simulate { port, settings }) => simulate(port, settings),
        Some(Command::Run { .. }) | Some(Command::Plan { .. }) | None => {
            Err(Error::Internal("this command is not built yet".into()))
        }
    }
}

/// Prints to stdout, treating a closed pipe (`| head`) as success.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Internal(format!("cannot write to stdout: {e}"))),
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
        out.push_str(&format!("{:<16} {:<28} {:<22} {}", p.name, p.models.join(","), key, e.source));
        if let Some(r) = &e.replaced {
            out.push_str(&format!("  (replaces {r})"));
        }
        out.push('\n');
    }
    print_stdout(&out)
}

/// `simulate`: serves the simulated provider on 127.0.0.1 until Ctrl-C, then prints
/// what it served.
pub fn simulate(port: u16, settings: SimulatorSettings) -> Result<(), Error> {
    // Check the flags before binding, so a bad value is a usage error, not a failed bind.
    crate::simulate::config::SimConfig::resolve(&settings).map_err(Error::Usage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let server = crate::simulate::SimServer::start(settings, addr)
            .await
            .map_err(|e| Error::Internal(format!("cannot listen on {addr}: {e}")))?;
        eprintln!(
            "simulator listening on http://{} (OpenAI base URL {}, Anthropic base URL {})",
            server.addr,
            server.openai_base_url(),
            server.anthropic_base_url()
        );
        eprintln!("settings: {}", server.describe());
        eprintln!("stats: GET http://{}/stats; Ctrl-C stops", server.addr);
        let _ = tokio::signal::ctrl_c().await;
        let s = server.stats();
        server.shutdown().await;
        eprintln!(
            "served {} requests: {} ok, {} rate limited, {} faults; at most {} in flight",
            s.requests, s.ok, s.rate_limited, s.faults, s.max_in_flight
        );
        Ok(())
    })
}
