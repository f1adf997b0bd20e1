//! `proctor deploy`, `proctor drift` and `proctor secrets plan` against a deploy target.
//! Modal is the one target; it is configured by the `PROCTOR_MODAL_*` variables (see
//! `proctor_deploy::ModalTarget`), the `modal` client's credentials and, for endpoints,
//! `MODAL_PROXY_TOKEN_ID` / `MODAL_PROXY_TOKEN_SECRET`.
//!
//! Nothing here reports a success the target did not confirm: without the `modal` client
//! and credentials a deploy is `ERR_DEPLOY_TARGET` (the app is still generated and
//! written), a deployment that does not answer `/healthz` fails `drift`, and secrets whose
//! presence cannot be listed fail `secrets plan`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, ErrorCode, ProcessorRef};
use proctor_deploy::{
    Deployment, DriftRow, Endpoint, GeneratedApp, ModalCli, ModalTarget, ProxyAuth,
    SecretInventory, SecretPresence, SecretPurpose, SecretsPlan, check_drift, drift_verdict,
    generate_app,
};
use proctor_registry::{ProcessorSpec, Registry};
use serde_json::{Value, json};

use crate::args::{DeployConfig, DeployTarget, DriftConfig, OutputFormat, SecretsPlanConfig};
use crate::async_runtime::block_on;
use crate::output::{emit, error_json, table};

/// The process environment, UTF-8 variables only. The target, the proxy-auth tokens, the
/// `modal` client (which runs with exactly this environment) and the values of the
/// registry's pass-through `env` names all come from it.
pub(crate) fn host_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// The configured Modal target; an invalid `PROCTOR_MODAL_*` value is `ERR_DEPLOY_TARGET`.
fn modal_target(
    target: DeployTarget,
    env: &BTreeMap<String, String>,
) -> Result<ModalTarget, CanonError> {
    match target {
        DeployTarget::Modal => ModalTarget::from_env(env),
    }
}

/// The registry entry of `processor_ref`, or every entry when it is `None`.
fn select_specs(
    registry_root: &Path,
    processor_ref: Option<&str>,
) -> Result<Vec<ProcessorSpec>, CanonError> {
    let registry = Registry::load(registry_root)?;
    Ok(match processor_ref {
        Some(raw) => vec![registry.get(&raw.parse::<ProcessorRef>()?)?.spec().clone()],
        None => registry.iter().map(|entry| entry.spec().clone()).collect(),
    })
}

/// The error line people see after a report.
fn error_line(error: &CanonError) -> String {
    format!("error: {error}\n")
}

/// The exit code of a report that ended with `error`, or 0.
fn exit_code(error: Option<&CanonError>) -> i32 {
    error.map_or(0, |error| error.code().exit_code())
}

/// One generated app and what became of it.
struct AppOutcome {
    app: GeneratedApp,
    /// Where it was written, absolute.
    file: PathBuf,
    /// Its endpoint base URL, when the target names a workspace or base URL.
    endpoint: Option<String>,
    /// Modal's confirmation, when it was deployed.
    deployment: Option<Deployment>,
}

/// `proctor deploy`: generates and writes every selected app, then deploys each in turn
/// unless `--dry-run`; the first failure stops it. Returns the exit code.
pub(crate) fn deploy(config: &DeployConfig) -> anyhow::Result<i32> {
    let env = host_env();
    let mut outcomes = Vec::new();
    let error = block_on(deploy_apps(config, &env, &mut outcomes))?.err();
    let text = match config.format {
        OutputFormat::Json => {
            let apps: Vec<Value> = outcomes.iter().map(app_json).collect();
            let report = json!({
                "target": "modal",
                "dry_run": config.dry_run,
                "apps": apps,
                "error": error.as_ref().map(error_json),
            });
            format!("{report}\n")
        }
        OutputFormat::Human => {
            let mut text = if outcomes.is_empty() && error.is_none() {
                "(no processors to deploy)\n".to_owned()
            } else if config.dry_run {
                outcomes
                    .iter()
                    .map(|outcome| format!("# {}\n{}", outcome.file.display(), outcome.app.source))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                deploy_table(&outcomes)
            };
            if let Some(error) = &error {
                text.push_str(&error_line(error));
            }
            text
        }
    };
    emit(&text)?;
    Ok(exit_code(error.as_ref()))
}

/// Generates, writes and (unless a dry run) deploys; `outcomes` keeps what was done even
/// when a later step fails.
async fn deploy_apps(
    config: &DeployConfig,
    env: &BTreeMap<String, String>,
    outcomes: &mut Vec<AppOutcome>,
) -> Result<(), CanonError> {
    let target = modal_target(config.target, env)?;
    let specs = select_specs(&config.registry_root, config.processor_ref.as_deref())?;
    // Every app is generated before any is written, so one unpinned entry writes nothing.
    let apps = specs
        .iter()
        .map(|spec| generate_app(spec, &target, env))
        .collect::<Result<Vec<_>, _>>()?;
    for app in apps {
        let file = app.write(&config.project_root)?;
        tracing::info!(
            event = "deploy.generate",
            r#ref = %app.processor_ref,
            app = %app.names.app,
            file = %file.display(),
        );
        let endpoint = Endpoint::resolve(&app.processor_ref, &target)
            .ok()
            .map(|endpoint| endpoint.base_url);
        outcomes.push(AppOutcome {
            app,
            file,
            endpoint,
            deployment: None,
        });
    }
    if config.dry_run {
        return Ok(());
    }
    let cli = ModalCli::discover(env)?;
    for outcome in outcomes.iter_mut() {
        let deployment = cli.deploy(&outcome.app, &outcome.file, &target).await?;
        outcome.deployment = Some(deployment);
    }
    Ok(())
}

fn app_json(outcome: &AppOutcome) -> Value {
    let app = &outcome.app;
    json!({
        "ref": app.processor_ref,
        "app": app.names.app,
        "function": app.names.function,
        "label": app.names.label,
        "pinned_reference": app.pinned_reference,
        "image_digest": app.image_digest,
        "tag": app.deploy_tag(),
        "file": outcome.file,
        "endpoint": outcome.endpoint,
        "deployed": outcome.deployment.is_some(),
        "source": app.source,
    })
}

fn deploy_table(outcomes: &[AppOutcome]) -> String {
    if outcomes.is_empty() {
        return String::new();
    }
    let rows: Vec<[String; 5]> = outcomes
        .iter()
        .map(|outcome| {
            [
                outcome.app.processor_ref.to_string(),
                outcome.app.names.app.clone(),
                outcome.app.deploy_tag(),
                if outcome.deployment.is_some() {
                    "deployed".to_owned()
                } else {
                    "not deployed".to_owned()
                },
                outcome.endpoint.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let dir = outcomes[0].file.parent().unwrap_or(Path::new("."));
    format!(
        "apps written under {}\n{}",
        dir.display(),
        table(["REF", "APP", "TAG", "STATUS", "ENDPOINT"], &rows)
    )
}

/// `proctor drift`: asks each deployment's `/healthz` for its digest and compares it with
/// the pin. Exits non-zero on any drift, unreachable deployment or missing pin
/// (`drift_verdict`).
pub(crate) fn drift(config: &DriftConfig) -> anyhow::Result<i32> {
    let env = host_env();
    let checked = block_on(async {
        let target = modal_target(config.target, &env)?;
        let auth = ProxyAuth::from_env(&env)?;
        let specs = select_specs(&config.registry_root, config.processor_ref.as_deref())?;
        let client = reqwest::Client::builder().build().map_err(|error| {
            CanonError::new(
                ErrorCode::ModalInvocation,
                format!("cannot build the HTTP client: {error}"),
            )
        })?;
        check_drift(&specs, &target, auth.as_ref(), &client, config.timeout).await
    })?;
    let (rows, error) = match checked {
        Ok(rows) => {
            let verdict = drift_verdict(&rows).err();
            (rows, verdict)
        }
        Err(error) => (Vec::new(), Some(error)),
    };
    for row in &rows {
        tracing::info!(
            event = "drift.check",
            r#ref = %row.processor_ref,
            status = %row.status,
            endpoint = %row.endpoint,
        );
    }
    let text = match config.format {
        OutputFormat::Json => format!(
            "{}\n",
            json!({
                "target": "modal",
                "rows": rows,
                "error": error.as_ref().map(error_json),
            })
        ),
        OutputFormat::Human => {
            let mut text = drift_table(&rows, error.is_none());
            if let Some(error) = &error {
                text.push_str(&error_line(error));
            }
            text
        }
    };
    emit(&text)?;
    Ok(exit_code(error.as_ref()))
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
pub(crate) fn secrets_plan(config: &SecretsPlanConfig) -> anyhow::Result<i32> {
    let env = host_env();
    let planned = block_on(async {
        let target = modal_target(config.target, &env)?;
        let specs = select_specs(&config.registry_root, config.processor_ref.as_deref())?;
        let (inventory, listing_error) = list_secrets(&env, &target).await;
        let plan = proctor_deploy::secrets_plan(&specs, &target, &inventory);
        Ok::<_, CanonError>((plan, listing_error))
    })?;
    let (plan, error) = match planned {
        Ok((plan, listing_error)) => {
            let error = plan_verdict(&plan, listing_error);
            (Some(plan), error)
        }
        Err(error) => (None, Some(error)),
    };
    if let Some(plan) = &plan {
        tracing::info!(
            event = "secrets.plan",
            needed = plan.rows.len(),
            missing = plan.missing().len(),
            known = plan.unknown_because.is_none(),
        );
    }
    let text = match config.format {
        OutputFormat::Json => {
            let mut report = json!({"target": "modal"});
            if let Some(plan) = &plan {
                report["rows"] = json!(plan.rows);
                report["missing"] = json!(plan.missing());
                report["unknown_because"] = json!(plan.unknown_because);
            }
            report["error"] = json!(error.as_ref().map(error_json));
            format!("{report}\n")
        }
        OutputFormat::Human => {
            let mut text = plan.as_ref().map(plan_text).unwrap_or_default();
            if let Some(error) = &error {
                text.push_str(&error_line(error));
            }
            text
        }
    };
    emit(&text)?;
    Ok(exit_code(error.as_ref()))
}

/// The names of the secrets in the target, or why they are unknown and the error saying
/// so (`ERR_DEPLOY_TARGET` when Modal is not configured, `ERR_DEPLOY` when listing failed).
async fn list_secrets(
    env: &BTreeMap<String, String>,
    target: &ModalTarget,
) -> (SecretInventory, Option<CanonError>) {
    let listed = match ModalCli::discover(env) {
        Ok(cli) => cli.secret_names(target).await,
        Err(error) => Err(error),
    };
    match listed {
        Ok(names) => (SecretInventory::Known(names), None),
        Err(error) => (SecretInventory::Unknown(error.message()), Some(error)),
    }
}

/// `ERR_MISSING_SECRET` naming the missing secrets; else the listing error when a needed
/// secret's presence is unknown; else none.
fn plan_verdict(plan: &SecretsPlan, listing_error: Option<CanonError>) -> Option<CanonError> {
    let missing = plan.missing();
    if !missing.is_empty() {
        return Some(CanonError::new(
            ErrorCode::MissingSecret,
            format!("{} (create them in the target)", missing.join(", ")),
        ));
    }
    let unknown = plan
        .rows
        .iter()
        .any(|row| row.presence == SecretPresence::Unknown);
    listing_error.filter(|_| unknown)
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

#[cfg(test)]
mod tests {
    use proctor_deploy::SecretPlanRow;

    use super::*;

    fn row(secret: &str, presence: SecretPresence) -> SecretPlanRow {
        SecretPlanRow {
            processor_ref: "llm/litellm@1".parse().unwrap(),
            secret: secret.to_owned(),
            purpose: SecretPurpose::Required,
            presence,
        }
    }

    fn plan(rows: Vec<SecretPlanRow>) -> SecretsPlan {
        SecretsPlan {
            rows,
            unknown_because: None,
        }
    }

    #[test]
    fn the_plan_verdict_names_missing_secrets_first() {
        let listing = || {
            Some(CanonError::new(
                ErrorCode::DeployTarget,
                "modal is not configured",
            ))
        };
        assert_eq!(plan_verdict(&plan(vec![]), listing()), None);
        assert_eq!(
            plan_verdict(&plan(vec![row("A", SecretPresence::Present)]), None),
            None
        );
        let error = plan_verdict(
            &plan(vec![
                row("B", SecretPresence::Missing),
                row("A", SecretPresence::Missing),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(error.code(), ErrorCode::MissingSecret);
        assert_eq!(
            error.message(),
            "missing required secret: A, B (create them in the target)"
        );
        let error =
            plan_verdict(&plan(vec![row("A", SecretPresence::Unknown)]), listing()).unwrap();
        assert_eq!(error.code(), ErrorCode::DeployTarget);
    }
}
