//! `proctor deploy`, `proctor drift` and `proctor secrets plan`: each maps its flags to a
//! request, calls the engine's function of the same name ([`proctor_engine::deploy()`],
//! [`proctor_engine::drift()`], [`proctor_engine::secrets_plan()`]) with the host
//! environment, and prints the report — one JSON line, or text for people ending with the
//! error that stopped the command. `deploy` validates each new deployment with a mock smoke
//! run, recorded in the World and ledger its flags name, as `proctor run` records a run.

use std::collections::BTreeMap;
use std::path::Path;

use proctor_contract::CanonError;
use proctor_deploy::{DriftRow, SecretPurpose, SecretsPlan};
use proctor_engine::{
    CancellationToken, DeployReport, DeployRequest, DeployTarget, DriftReport, DriftRequest,
    Engine, EngineConfig, Limits, SecretsPlanReport, TargetedProcessors, Validation,
    ValidationRuns, ValidationStatus,
};

use crate::args::{DeployConfig, DriftConfig, OutputFormat, SecretsPlanConfig};
use crate::output::{emit, json_report, table};
use crate::progress::{ProgressOptions, reporter};

/// The process environment, UTF-8 variables only. The target, the proxy-auth tokens, the
/// `modal` client (which runs with exactly this environment) and the values of the
/// registry's pass-through `env` names all come from it.
pub(crate) fn host_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// The processors `--ref` selects (every one without it) on `--target`.
fn targeted(
    target: DeployTarget,
    processor_ref: Option<&String>,
    registry_root: &Path,
) -> TargetedProcessors {
    TargetedProcessors {
        target,
        registry_root: registry_root.to_path_buf(),
        processor_refs: processor_ref.into_iter().cloned().collect(),
    }
}

/// The error line people see after a report.
fn error_line(error: &CanonError) -> String {
    format!("error: {error}\n")
}

/// The exit code of a report that ended with `error`, or 0.
fn exit_code(error: Option<&CanonError>) -> i32 {
    error.map_or(0, |error| error.code().exit_code())
}

/// `proctor deploy`: generates and writes every selected app, then deploys each in turn and
/// validates it unless `--dry-run`; `cancel` stops a validation run. Returns the exit code.
pub(crate) async fn deploy(
    config: &DeployConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<i32> {
    let request = DeployRequest {
        processors: targeted(
            config.target,
            config.processor_ref.as_ref(),
            &config.registry_root,
        ),
        dry_run: config.dry_run,
        project_root: config.project_root.clone(),
        validation: ValidationRuns {
            plan: config.ledger.plan.clone(),
            reserve_micro_usd: config.ledger.reserve_micro_usd,
            lane: None,
        },
    };
    let engine = Engine::new(EngineConfig {
        registry_root: config.registry_root.clone(),
        artifacts_root: config.artifacts_root.clone(),
        ledger_url: config.ledger.url.clone(),
        env: host_env(),
        limits: Limits::default(),
    })
    .with_progress(reporter(ProgressOptions::for_output(config.format)));
    let report = proctor_engine::deploy(&engine, &request, cancel).await;
    engine.close().await;
    emit(&match config.format {
        OutputFormat::Json => json_report(&report),
        OutputFormat::Human => deploy_text(&report),
    })?;
    Ok(exit_code(report.error.as_ref()))
}

fn deploy_text(report: &DeployReport) -> String {
    let mut text = if report.apps.is_empty() && report.error.is_none() {
        "(no processors to deploy)\n".to_owned()
    } else if report.dry_run {
        report
            .apps
            .iter()
            .map(|app| format!("# {}\n{}", app.file.display(), app.source))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        deploy_table(report)
    };
    if let Some(error) = &report.error {
        text.push_str(&error_line(error));
    }
    text
}

fn deploy_table(report: &DeployReport) -> String {
    let Some(first) = report.apps.first() else {
        return String::new();
    };
    let rows: Vec<[String; 6]> = report
        .apps
        .iter()
        .map(|app| {
            [
                app.processor_ref.to_string(),
                app.app.clone(),
                app.tag.clone(),
                if app.deployed {
                    "deployed".to_owned()
                } else {
                    "not deployed".to_owned()
                },
                app.validation
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), validation_cell),
                app.endpoint.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let dir = first.file.parent().unwrap_or(Path::new("."));
    format!(
        "apps written under {}\n{}",
        dir.display(),
        table(
            ["REF", "APP", "TAG", "STATUS", "VALIDATION", "ENDPOINT"],
            &rows
        )
    )
}

/// `ok <execution>` or `failed <execution> (<check>)`; why it failed is the error line.
fn validation_cell(validation: &Validation) -> String {
    match validation.status {
        ValidationStatus::Ok => format!("ok {}", validation.execution_id),
        ValidationStatus::Failed => format!(
            "failed {} ({})",
            validation.execution_id,
            validation.check.unwrap_or("run")
        ),
    }
}

/// `proctor drift`: each deployment's `/healthz` digest against its pin. Exits non-zero on
/// any drift, unreachable deployment or missing pin.
pub(crate) async fn drift(config: &DriftConfig) -> anyhow::Result<i32> {
    let request = DriftRequest {
        processors: targeted(
            config.target,
            config.processor_ref.as_ref(),
            &config.registry_root,
        ),
        timeout: config.timeout,
    };
    let report = proctor_engine::drift(&request, &host_env()).await;
    emit(&match config.format {
        OutputFormat::Json => json_report(&report),
        OutputFormat::Human => drift_text(&report),
    })?;
    Ok(exit_code(report.error.as_ref()))
}

fn drift_text(report: &DriftReport) -> String {
    let mut text = drift_table(&report.rows, report.error.is_none());
    if let Some(error) = &report.error {
        text.push_str(&error_line(error));
    }
    text
}

fn drift_table(rows: &[DriftRow], ok: bool) -> String {
    if rows.is_empty() {
        return if ok {
            "(no processors to check)\n".to_owned()
        } else {
            String::new()
        };
    }
    let dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            [
                row.processor_ref.to_string(),
                dash(&row.pinned),
                dash(&row.deployed),
                row.status.to_string(),
                dash(&row.detail),
            ]
        })
        .collect();
    table(["REF", "PINNED", "DEPLOYED", "STATUS", "DETAIL"], &cells)
}

/// `proctor secrets plan`: the secrets each selected processor needs in the target and
/// whether each exists there. Exits with `ERR_MISSING_SECRET` when any is missing, and with
/// the listing's error when presence could not be known for a needed secret.
pub(crate) async fn secrets_plan(config: &SecretsPlanConfig) -> anyhow::Result<i32> {
    let request = targeted(
        config.target,
        config.processor_ref.as_ref(),
        &config.registry_root,
    );
    let report = proctor_engine::secrets_plan(&request, &host_env()).await;
    emit(&match config.format {
        OutputFormat::Json => json_report(&report),
        OutputFormat::Human => secrets_text(&report),
    })?;
    Ok(exit_code(report.error.as_ref()))
}

fn secrets_text(report: &SecretsPlanReport) -> String {
    let mut text = report.plan.as_ref().map(plan_text).unwrap_or_default();
    if let Some(error) = &report.error {
        text.push_str(&error_line(error));
    }
    text
}

fn plan_text(plan: &SecretsPlan) -> String {
    if plan.rows.is_empty() {
        return "(no secrets needed)\n".to_owned();
    }
    let rows: Vec<[String; 4]> = plan
        .rows
        .iter()
        .map(|row| {
            let purpose = match row.purpose {
                SecretPurpose::Required => "required",
                SecretPurpose::RegistryPull => "registry pull",
            };
            [
                row.processor_ref.to_string(),
                row.secret.clone(),
                purpose.to_owned(),
                row.presence.to_string(),
            ]
        })
        .collect();
    // What is missing, or why presence is unknown, follows as the error line.
    table(["REF", "SECRET", "PURPOSE", "PRESENCE"], &rows)
}
