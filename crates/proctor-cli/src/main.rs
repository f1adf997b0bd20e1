//! `proctor`: run containerized processors and keep checkable evidence.
//!
//! Arguments are parsed into a validated [`args::Config`] first; only then does anything
//! run. Exit codes: 0 success, 1 internal error, 2 usage error ([`EXIT_USAGE`]), and each
//! canonical error's own code (10 and above), also for a processor's error envelope.
//!
//! **Architecture Invariant:** only this crate prints. Logs are JSON lines on stderr; under
//! `--json`, stdout carries exactly one line.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]
// The one crate that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod deploy_commands;
mod image_commands;
mod lane_commands;
mod ledger_commands;
mod output;
mod registry_commands;
mod run;
mod verify_command;
mod world_commands;

use std::process::ExitCode;

use clap::Parser;
use proctor_contract::EXIT_USAGE;
use proctor_engine::CancellationToken;

use crate::args::{Cli, Config, OutputFormat};

/// Exit code for failures outside the error canon (e.g. stdout cannot be written).
const EXIT_INTERNAL: i32 = 1;
/// Exit code when a second Ctrl-C ends the process before it cleaned up, as shells report
/// an interrupted process.
const EXIT_INTERRUPTED_TWICE: i32 = 130;

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
    let acted = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let config = cli.into_config()?;
            runtime.block_on(act(config))
        });
    match acted {
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
async fn act(config: Config) -> anyhow::Result<i32> {
    match config {
        Config::Run(run) => {
            let outcome = run::run(&run, &cancelled_by_ctrl_c()).await;
            output::print_run(&outcome, run.format)?;
            Ok(outcome.exit_code())
        }
        Config::Registry(registry) => Ok(registry_commands::execute(&registry)?),
        Config::World(world) => world_commands::execute(&world).await,
        Config::Deploy(deploy) => deploy_commands::deploy(&deploy).await,
        Config::Drift(drift) => deploy_commands::drift(&drift).await,
        Config::SecretsPlan(plan) => deploy_commands::secrets_plan(&plan).await,
        Config::Ledger(ledger) => ledger_commands::execute(&ledger).await,
        Config::Verify(verify) => verify_command::execute(&verify).await,
        Config::Image(image) => image_commands::execute(&image).await,
        Config::Lane(lane) => lane_commands::execute(&lane, &cancelled_by_ctrl_c()).await,
    }
}

/// The one [`CancellationToken`] of a command that cleans up after itself: the first Ctrl-C
/// cancels it, a second one ends the process at once. Where signals cannot be watched,
/// Ctrl-C keeps its default effect.
fn cancelled_by_ctrl_c() -> CancellationToken {
    let cancel = CancellationToken::new();
    let watched = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!(
                event = "cli.interrupt",
                "Ctrl-C: cancelling; press it again to quit at once"
            );
            watched.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(EXIT_INTERRUPTED_TWICE);
            }
        }
    });
    cancel
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
