//! `proctor`: run containerized processors and keep checkable evidence.
//!
//! Arguments are parsed into a validated [`args::Config`] first; only then does anything
//! run. Exit codes: 0 success, 1 internal error, 2 usage error ([`EXIT_USAGE`]), each
//! canonical error's own code (10 and above), also for a processor's error envelope, and
//! 128 + the signal's number for a command a signal stopped (130 for Ctrl-C).
//!
//! **Architecture Invariant:** only this crate prints. Logs go to stderr: status lines on a
//! terminal, JSON lines otherwise. Under `--json`, stdout carries exactly one line, errors
//! included (`{"status":"error","error":{"code","message"}}`, or `run`'s error envelope).

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]
// The one crate that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod args;
mod checkpoint_command;
mod completions_command;
mod conform_command;
mod deploy_commands;
mod doctor_command;
mod image_commands;
mod lane_commands;
mod ledger_commands;
mod new_command;
mod output;
mod plan_command;
mod progress;
mod registry_commands;
mod run;
mod serve_command;
mod verify_command;
mod world_commands;

use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use clap::Parser;
use proctor_contract::{CanonError, EXIT_USAGE, ErrorCode};
use proctor_engine::CancellationToken;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::args::{Cli, Config, LogFormat, OutputFormat, Verbosity};

/// Exit code for failures outside the error canon (e.g. stdout cannot be written).
const EXIT_INTERNAL: i32 = 1;
/// Added to a signal's number for the exit code of a command it stopped (130 for SIGINT,
/// 143 for SIGTERM, 129 for SIGHUP), as shells report it.
const EXIT_BY_SIGNAL: i32 = 128;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let format = cli.global.output_format();
    let log_filter = match std::env::var("PROCTOR_LOG") {
        Ok(text) => proctor_telemetry::parse_filter(&text),
        Err(_) => proctor_telemetry::parse_filter(match cli.global.verbosity() {
            Verbosity::Quiet => "error",
            Verbosity::Normal => "info",
            Verbosity::Verbose => "info,proctor=debug",
            Verbosity::Trace => "debug,proctor=trace",
        }),
    };
    let log_filter = match log_filter {
        Ok(filter) => filter,
        Err(why) => {
            let error = CanonError::new(ErrorCode::Usage, format!("PROCTOR_LOG: {why}"));
            let _ = output::print_error(&error, format);
            return exit_code(EXIT_USAGE);
        }
    };
    let log_format = cli.global.log_format(std::io::stderr().is_terminal());
    progress::configure(progress::StderrSettings {
        verbosity: cli.global.verbosity(),
        log_format,
    });
    proctor_telemetry::init_with(
        proctor_telemetry::redactor_from_env(&[]),
        proctor_telemetry::LogSettings {
            format: match log_format {
                LogFormat::Human => proctor_telemetry::LogFormat::Human,
                LogFormat::Json => proctor_telemetry::LogFormat::Json,
            },
            filter: log_filter,
            write_line: Some(progress::print_above),
        },
    );
    let acted = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let config = cli.into_config()?;
            // A run's own panic is settled by the engine; one anywhere else still ends with
            // a canonical error (the panic message itself went to stderr).
            std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(act(config))))
                .unwrap_or_else(|_| {
                    let error = CanonError::new(ErrorCode::Internal, "proctor panicked");
                    output::print_error(&error, format)?;
                    Ok(error.code().exit_code())
                })
        });
    match acted {
        Ok(code) => exit_code(code),
        Err(error) => {
            tracing::error!(event = "cli.error", error = %format!("{error:#}"));
            let error = CanonError::new(ErrorCode::Internal, format!("{error:#}"));
            match format {
                OutputFormat::Json => {
                    let _ = output::print_error(&error, format);
                }
                OutputFormat::Human => eprintln!("error: {}", error.message()),
            }
            exit_code(EXIT_INTERNAL)
        }
    }
}

/// Help and version text on stdout (exit 0); any other parse failure is a usage error
/// (exit 2), written by clap on stderr and, under `--json`, as the error shape on stdout.
fn usage_error(error: &clap::Error) -> ExitCode {
    // Help and version text go to stdout; a closed pipe there is not an error.
    let _ = error.print();
    if !error.use_stderr() {
        return exit_code(0);
    }
    let json_asked = std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json");
    if json_asked {
        let rendered = error.render().to_string();
        let first_line = rendered.lines().next().unwrap_or_default();
        let detail = first_line.trim_start_matches("error: ");
        let error = CanonError::new(ErrorCode::Usage, detail);
        let _ = output::print_error(&error, OutputFormat::Json);
    }
    exit_code(EXIT_USAGE)
}

/// Acts on a validated configuration; returns the exit code.
async fn act(config: Config) -> anyhow::Result<i32> {
    match config {
        Config::Run(run) => {
            let stop = Stop::on_signals();
            let outcome = run::run(&run, &stop.cancel).await;
            output::print_run(&outcome, &run)?;
            // A signal that came too late to stop the run leaves its outcome's exit code.
            Ok(match stop.exit_code() {
                Some(code) if outcome.was_interrupted() => code,
                _ => outcome.exit_code(),
            })
        }
        Config::Registry(registry) => Ok(registry_commands::execute(&registry)?),
        Config::World(world) => world_commands::execute(&world).await,
        Config::Deploy(deploy) => {
            let stop = Stop::on_signals();
            let code = deploy_commands::deploy(&deploy, &stop.cancel).await?;
            Ok(stop.exit_code().unwrap_or(code))
        }
        Config::Drift(drift) => deploy_commands::drift(&drift).await,
        Config::SecretsPlan(plan) => deploy_commands::secrets_plan(&plan).await,
        Config::Ledger(ledger) => ledger_commands::execute(&ledger).await,
        Config::Verify(verify) => verify_command::execute(&verify).await,
        Config::Image(image) => image_commands::execute(&image).await,
        Config::Lane(lane) => {
            let stop = Stop::on_signals();
            let code = lane_commands::execute(&lane, &stop.cancel).await?;
            Ok(stop.exit_code().unwrap_or(code))
        }
        Config::Plan(plan) => {
            let stop = Stop::on_signals();
            let code = plan_command::execute(&plan, &stop.cancel).await?;
            Ok(stop.exit_code().unwrap_or(code))
        }
        Config::Conform(conform) => {
            let stop = Stop::on_signals();
            let code = conform_command::execute(&conform, &stop.cancel).await?;
            Ok(stop.exit_code().unwrap_or(code))
        }
        Config::New(new) => new_command::execute(&new),
        Config::Doctor(doctor) => doctor_command::execute(&doctor).await,
        Config::Serve(serve) => {
            // A stop signal is the server's graceful shutdown: a clean one exits 0.
            let stop = Stop::on_signals();
            serve_command::execute(&serve, &stop.cancel).await
        }
        Config::Completions { shell, format } => completions_command::completions(shell, format),
        Config::Man { page, format } => completions_command::man(&page, format),
    }
}

/// The signals that stop a command that cleans up after itself: SIGINT (Ctrl-C), SIGTERM
/// (`timeout`, systemd, CI cancellation, `docker stop`) and SIGHUP (a closed terminal).
const STOP_SIGNALS: [(SignalKind, i32, &str); 3] = [
    (SignalKind::interrupt(), libc::SIGINT, "SIGINT"),
    (SignalKind::terminate(), libc::SIGTERM, "SIGTERM"),
    (SignalKind::hangup(), libc::SIGHUP, "SIGHUP"),
];

/// How a command that cleans up after itself is stopped: the first stop signal cancels its
/// one [`CancellationToken`] (the run removes its container, releases its lease and
/// reservation and records the interruption, then the envelope is printed); a second one
/// ends the process at once. Where signals cannot be watched, they keep their default
/// effect.
struct Stop {
    cancel: CancellationToken,
    /// The number of the signal that cancelled the command.
    signal: Arc<OnceLock<i32>>,
}

impl Stop {
    /// Starts watching the stop signals.
    fn on_signals() -> Stop {
        let stop = Stop {
            cancel: CancellationToken::new(),
            signal: Arc::default(),
        };
        let mut streams: Vec<(Signal, i32, &str)> = STOP_SIGNALS
            .into_iter()
            .filter_map(|(kind, number, name)| Some((signal(kind).ok()?, number, name)))
            .collect();
        if streams.is_empty() {
            return stop;
        }
        let (cancel, first) = (stop.cancel.clone(), stop.signal.clone());
        tokio::spawn(async move {
            loop {
                let next = streams.iter_mut().map(|(stream, number, name)| {
                    Box::pin(async move {
                        stream.recv().await;
                        (*number, *name)
                    })
                });
                let ((number, name), _, _) = futures_util::future::select_all(next).await;
                if first.set(number).is_err() {
                    std::process::exit(EXIT_BY_SIGNAL + number);
                }
                tracing::warn!(
                    event = "cli.interrupt",
                    signal = name,
                    "stopping: the run cleans up and records the interruption; a second signal quits at once"
                );
                cancel.cancel();
            }
        });
        stop
    }

    /// `128 + signal`, as shells report a process a signal ended, once a signal stopped the
    /// command.
    fn exit_code(&self) -> Option<i32> {
        self.signal.get().map(|number| EXIT_BY_SIGNAL + number)
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
