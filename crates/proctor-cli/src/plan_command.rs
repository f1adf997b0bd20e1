//! `proctor plan apply|status|graph`: the validated configuration becomes one library call
//! of `proctor-plan`, and its result is printed. On a terminal, `apply` shows the plan's
//! progress and a line per settled transition on stderr; under `--json`, stdout carries the
//! one report line.

use proctor_contract::{CanonError, ErrorCode};
use proctor_engine::{CancellationToken, Engine, EngineConfig, Limits};
use proctor_plan::{ApplyOptions, PlanReport};

use crate::args::{OutputFormat, PlanApplyConfig, PlanConfig};
use crate::output::{emit, json_report, print_error, table};
use crate::progress::{ProgressOptions, reporter};

/// Runs a plan command; returns the exit code.
pub(crate) async fn execute(
    config: &PlanConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<i32> {
    match config {
        PlanConfig::Apply(apply) => execute_apply(apply, cancel).await,
        PlanConfig::Status {
            key,
            format,
            ledger_url,
        } => {
            let status = match read_status(key, ledger_url).await {
                Ok(status) => status,
                Err(error) => {
                    print_error(&error, *format)?;
                    return Ok(error.code().exit_code());
                }
            };
            match format {
                OutputFormat::Json => emit(&json_report(&status))?,
                OutputFormat::Human => {
                    let rows: Vec<[String; 4]> = status
                        .transitions
                        .iter()
                        .map(|t| {
                            [
                                t.id.clone(),
                                t.state.as_str().to_owned(),
                                t.execution_id.clone().unwrap_or_default(),
                                t.error
                                    .as_ref()
                                    .map(|e| e.message.clone())
                                    .unwrap_or_default(),
                            ]
                        })
                        .collect();
                    emit(&format!(
                        "plan {} (file {})\n{}",
                        status.plan,
                        status.plan_cid,
                        table(["TRANSITION", "STATE", "EXECUTION", "ERROR"], &rows)
                    ))?;
                }
            }
            Ok(0)
        }
        PlanConfig::Graph {
            key,
            format,
            ledger_url,
            output,
        } => match read_status(key, ledger_url).await {
            Ok(status) => {
                let graph = status.render(*format);
                emit(&match output {
                    OutputFormat::Human => graph,
                    OutputFormat::Json => {
                        json_report(&serde_json::json!({"plan": key, "graph": graph}))
                    }
                })?;
                Ok(0)
            }
            Err(error) => {
                print_error(&error, *output)?;
                Ok(error.code().exit_code())
            }
        },
    }
}

async fn read_status(key: &str, ledger_url: &str) -> Result<proctor_plan::PlanStatus, CanonError> {
    let ledger = crate::ledger_commands::open_existing(ledger_url).await?;
    let status = proctor_plan::status(&ledger, key).await;
    ledger.close().await;
    status
}

async fn execute_apply(
    config: &PlanApplyConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<i32> {
    let engine = Engine::new(EngineConfig {
        registry_root: config.registry_root.clone(),
        artifacts_root: config.artifacts_root.clone(),
        ledger_url: config.ledger_url.clone(),
        env: crate::deploy_commands::host_env(),
        limits: Limits::default(),
    })
    .with_cargo_workspace(config.cargo_workspace.clone())
    .with_progress(reporter(ProgressOptions::for_output(config.format)));
    let engine = match config.warm_per_image {
        0 => engine,
        per_image => engine.with_warm_containers(per_image),
    };
    let result = apply(&engine, config, cancel).await;
    engine.close().await;
    match result {
        Ok(Applied::DryRun(text)) => {
            emit(&text)?;
            Ok(0)
        }
        Ok(Applied::Report(report)) => {
            match config.format {
                OutputFormat::Json => emit(&json_report(&report))?,
                OutputFormat::Human => emit(&summary(&report))?,
            }
            Ok(report.exit_code())
        }
        Err(error) => {
            print_error(&error, config.format)?;
            Ok(error.code().exit_code())
        }
    }
}

/// What `plan apply` prints.
enum Applied {
    /// `--dry-run`: the admission order.
    DryRun(String),
    /// The report of a plan that was applied.
    Report(PlanReport),
}

async fn apply(
    engine: &Engine,
    config: &PlanApplyConfig,
    cancel: &CancellationToken,
) -> Result<Applied, CanonError> {
    let bytes = std::fs::read(&config.file).map_err(|e| {
        CanonError::new(
            ErrorCode::Plan,
            format!("cannot read `{}`: {e}", config.file.display()),
        )
    })?;
    let plan = proctor_plan::load(&bytes, engine.config())?;
    if config.dry_run {
        let order = proctor_plan::admission_order(&plan.edges());
        return Ok(Applied::DryRun(match config.format {
            OutputFormat::Json => format!(
                "{}\n",
                serde_json::json!({"plan": plan.key, "plan_cid": plan.cid, "order": order})
            ),
            OutputFormat::Human => order
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let transition = plan.transition(id).expect("ordered ids are the plan's");
                    format!("{}. {id} ({})\n", i + 1, transition.processor_ref)
                })
                .collect(),
        }));
    }
    let options = ApplyOptions {
        max_parallel: config.max_parallel,
        build: config.build,
        adapter_options: config.adapter_options.clone(),
    };
    proctor_plan::apply(engine, &plan, &options, cancel)
        .await
        .map(Applied::Report)
}

/// The report for people: a table of transitions, then the outcome.
fn summary(report: &PlanReport) -> String {
    let rows: Vec<[String; 3]> = report
        .transitions
        .iter()
        .map(|t| {
            [
                t.id.clone(),
                t.state.as_str().to_owned(),
                t.execution_id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let outcome = match &report.error {
        None => "ok".to_owned(),
        Some(error) => format!("error: {}: {}", error.code, error.message),
    };
    format!(
        "plan {} (file {})\n{}{outcome}\n",
        report.plan,
        report.plan_cid,
        table(["TRANSITION", "STATE", "EXECUTION"], &rows)
    )
}
