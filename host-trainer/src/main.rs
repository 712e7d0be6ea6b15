//! `ldl`: the LDL host trainer's command line.

use clap::Parser;
use std::process::ExitCode;

/// Runs the command; a failure prints [`ldl_host::errors::error_report`] (exit code 1).
fn main() -> ExitCode {
    let cli = ldl_host::cli::Cli::parse();
    match ldl_host::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", ldl_host::errors::error_report(&e));
            ExitCode::FAILURE
        }
    }
}
