//! `proctor`: run containerized processors and keep checkable evidence.
//!
//! Arguments are parsed into a validated [`args::Config`] first; only then does anything
//! run. Exit codes: 0 success, 1 internal error, 2 usage error ([`EXIT_USAGE`]), and each
//! canonical error's own code (10 and above), also for a processor's error envelope.
//!
//! **Architecture Invariant:** only this crate prints. Logs are JSON lines on stderr; under
//! `--json`, stdout carries exactly one line.

mod args;
mod output;
mod registry_commands;
mod run;
mod save;

use std::process::ExitCode;

use clap::Parser;
use proctor_contract::EXIT_USAGE;

use crate::args::{Cli, Config, OutputFormat};

/// Exit code for failures outside the error canon (e.g. stdout cannot be written).
const EXIT_INTERNAL: i32 = 1;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            // Help and version text go to stdout; a closed pipe there is not an error.
            let _ = error.print();
            return exit_code(code);
        }
    };
    proctor_telemetry::init(
        proctor_telemetry::redactor_from_env(&[]),
        tracing::Level::INFO,
    );
    let format = cli.format();
    match cli.into_config().and_then(act) {
        Ok(code) => exit_code(code),
        Err(error) => {
            tracing::error!(event = "cli.error", error = %format!("{error:#}"));
            if format == OutputFormat::Human {
                eprintln!("error: {error:#}");
            }
            exit_code(EXIT_INTERNAL)
        }
    }
}

/// Acts on a validated configuration; returns the exit code.
fn act(config: Config) -> anyhow::Result<i32> {
    match config {
        Config::Run(run) => {
            let outcome = run::run(&run);
            output::print_run(&outcome, run.format)?;
            Ok(outcome.exit_code())
        }
        Config::Registry(registry) => Ok(registry_commands::execute(&registry)?),
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
