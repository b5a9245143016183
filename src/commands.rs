//! One function per subcommand. `dispatch` is what `lib::run` calls.

use std::io::Write;

use crate::cli::{Cli, Command};
use crate::config::registry::Registry;
use crate::config::{self, SchemaKind};
use crate::Error;

pub fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Validate { files }) => validate(&files),
        Some(Command::Schema { kind }) => schema(kind),
        Some(Command::Providers { providers_dir }) => providers(&providers_dir),
        Some(Command::Run { .. })
        | Some(Command::Plan { .. })
        | Some(Command::Simulate { .. })
        | None => Err(Error::Internal("this command is not built yet".into())),
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
