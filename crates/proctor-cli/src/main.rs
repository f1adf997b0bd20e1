//! `proctor`: run containerized processors and keep checkable evidence.
//!
//! Arguments are parsed into a validated [`args::Config`] first; only then does anything
//! run. Exit codes: 0 success, 1 internal error, 2 usage error ([`EXIT_USAGE`]), and each
//! canonical error's own code (10 and above), also for a processor's error envelope.
//!
//! **Architecture Invariant:** only this crate prints. Logs are JSON lines on stderr; under
//! `--json`, stdout carries exactly one line.

mod args;
mod async_runtime;
mod deploy_commands;
mod image_commands;
mod lane;
mod lane_commands;
mod ledger_commands;
mod output;
mod registry_commands;
mod run;
mod run_ledger;
mod save;
mod verify_command;
mod world_commands;

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
        Config::World(world) => world_commands::execute(&world),
        Config::Deploy(deploy) => deploy_commands::deploy(&deploy),
        Config::Drift(drift) => deploy_commands::drift(&drift),
        Config::SecretsPlan(plan) => deploy_commands::secrets_plan(&plan),
        Config::Ledger(ledger) => ledger_commands::execute(&ledger),
        Config::Verify(verify) => verify_command::execute(&verify),
        Config::Image(image) => image_commands::execute(&image),
        Config::Lane(lane) => lane_commands::execute(&lane),
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
