//! The binary: parse flags, run, map the outcome to an exit code. See `exit.rs`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = find_workers_limit::cli::Cli::parse();
    match find_workers_limit::run(cli) {
        Ok(()) => ExitCode::from(find_workers_limit::exit::FOUND),
        Err(e) => {
            if !matches!(e, find_workers_limit::Error::Interrupted) {
                for line in e.to_string().lines() {
                    eprintln!("error: {line}");
                }
            }
            ExitCode::from(e.exit_code())
        }
    }
}
