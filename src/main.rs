//! The binary: parse flags, run, map the outcome to an exit code. See `exit.rs`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    install_panic_hook();
    let cli = find_workers_limit::cli::Cli::parse();
    let outcome = std::panic::catch_unwind(|| find_workers_limit::run(cli));
    match outcome {
        Ok(Ok(())) => ExitCode::from(find_workers_limit::exit::FOUND),
        Ok(Err(e)) => {
            if !matches!(e, find_workers_limit::Error::Interrupted) {
                for line in e.to_string().lines() {
                    find_workers_limit::note!("error: {line}");
                }
            }
            ExitCode::from(e.exit_code())
        }
        // The hook has said what happened.
        Err(_) => ExitCode::from(find_workers_limit::exit::INTERNAL),
    }
}

/// A panic (a bug) prints one line: its message, with every key redacted, and where it
/// happened. No backtrace and no `Debug` dump of anything.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        find_workers_limit::note!(
            "error: internal error (a bug; please report it): {}{place}",
            find_workers_limit::config::keys::redact_known(&message)
        );
    }));
}
