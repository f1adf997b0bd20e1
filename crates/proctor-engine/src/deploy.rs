//! Deploy, drift and the secrets plan against a deploy target. Modal is the one target; it is
//! configured by the `PROCTOR_MODAL_*` variables of the host environment (see
//! [`proctor_deploy::ModalTarget`]), the `modal` client's credentials and, for endpoints,
//! `MODAL_PROXY_TOKEN_ID` / `MODAL_PROXY_TOKEN_SECRET`.
//!
//! Nothing here reports a success the target did not confirm: without the `modal` client
//! and credentials a deploy is `ERR_DEPLOY_TARGET` (the apps are still generated and
//! written), a deployment that does not answer `/healthz` fails drift, and secrets whose
//! presence cannot be listed fail the secrets plan. Each report carries the error that ended
//! it next to what was done before.
//!
//! A deploy is validated: once `modal deploy` of a processor returns, its `examples.smoke`
//! inputs run in mock mode through the Modal adapter against the new deployment, as
//! `proctor run --adapter modal --mode mock` runs them ([`Engine::run`]: the adapter's
//! `/healthz` digest and envelope checks, the evidence check, the ledger record), and the
//! envelope must report the pinned digest. Anything else is `ERR_DEPLOY_VALIDATION` naming
//! the check and the execution.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use proctor_contract::{
    CanonError, Digest, Envelope, ErrorBody, ErrorCode, Mode, PinnedReference, ProcessorRef,
    ProgressUnit,
};
use proctor_deploy::{
    DriftRow, Endpoint, GeneratedApp, ModalCli, ModalTarget, ProxyAuth, SecretInventory,
    SecretPresence, SecretsPlan, check_drift, drift_verdict, generate_app,
};
use proctor_registry::{ProcessorSpec, Registry};
use serde::ser::SerializeMap as _;
use serde::{Serialize, Serializer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{AdapterKind, Engine, Inputs, Lane, RunRequest};

/// The example whose inputs validate a new deployment.
pub(crate) const SMOKE_EXAMPLE: &str = "smoke";

/// Where processors are deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployTarget {
    /// Modal's serverless engine, configured by `PROCTOR_MODAL_*` variables.
    Modal,
}

impl DeployTarget {
    /// Every target, in the order help texts list them.
    pub const ALL: [DeployTarget; 1] = [DeployTarget::Modal];

    /// The target's name, `modal`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployTarget::Modal => "modal",
        }
    }

    /// The configured Modal target; an invalid `PROCTOR_MODAL_*` value is
    /// `ERR_DEPLOY_TARGET`.
    fn modal(self, env: &BTreeMap<String, String>) -> Result<ModalTarget, CanonError> {
        match self {
            DeployTarget::Modal => ModalTarget::from_env(env),
        }
    }
}

impl fmt::Display for DeployTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeployTarget {
    type Err = String;

    fn from_str(name: &str) -> Result<DeployTarget, String> {
        DeployTarget::ALL
            .into_iter()
            .find(|target| target.as_str() == name)
            .ok_or_else(|| format!("unknown deploy target `{name}`; expected modal"))
    }
}

/// The processors a deploy-target command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetedProcessors {
    /// The target.
    pub target: DeployTarget,
    /// The registry root holding `<ns>/<name>/<version>/registry.yaml`.
    pub registry_root: PathBuf,
    /// Processors as given, `ns/name@version`; empty for every processor in the registry.
    pub processor_refs: Vec<String>,
}

impl TargetedProcessors {
    /// The registry entries selected, in the order given (registry order for every one).
    fn specs(&self) -> Result<Vec<ProcessorSpec>, CanonError> {
        let registry = Registry::load(&self.registry_root)?;
        if self.processor_refs.is_empty() {
            return Ok(registry.iter().map(|entry| entry.spec().clone()).collect());
        }
        self.processor_refs
            .iter()
            .map(|raw| Ok(registry.get(&raw.parse::<ProcessorRef>()?)?.spec().clone()))
            .collect()
    }
}

/// What [`deploy`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    /// The target and the processors to deploy there.
    pub processors: TargetedProcessors,
    /// Generate and write the apps without deploying them.
    pub dry_run: bool,
    /// The directory generated apps are written below (`.proctor/deploy/…`).
    pub project_root: PathBuf,
    /// How the validation runs of new deployments are recorded.
    pub validation: ValidationRuns,
}

/// How the validation run of each new deployment is recorded in the ledger, as `proctor
/// run`'s ledger flags record a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationRuns {
    /// The ledger plan recording the runs.
    pub plan: String,
    /// The budget each run reserves, in micro-USD (mock runs spend nothing).
    pub reserve_micro_usd: u64,
    /// The lane whose rules the runs follow, when the deploy is a lane's step.
    pub lane: Option<Lane>,
}

/// What [`deploy`] did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The target.
    pub target: DeployTarget,
    /// Whether deploying was skipped.
    pub dry_run: bool,
    /// Every app written, in order, whether or not it was deployed.
    pub apps: Vec<AppOutcome>,
    /// What stopped the deploy, if anything did.
    #[serde(serialize_with = "crate::error_json::serialize")]
    pub error: Option<CanonError>,
}

/// One generated app and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppOutcome {
    /// The processor it serves.
    #[serde(rename = "ref")]
    pub processor_ref: ProcessorRef,
    /// The Modal app.
    pub app: String,
    /// The function serving its web endpoint.
    pub function: String,
    /// Its endpoint label.
    pub label: String,
    /// The pinned linux/amd64 reference it runs.
    pub pinned_reference: PinnedReference,
    /// The digest of that reference.
    pub image_digest: Digest,
    /// The deploy tag, from the digest.
    pub tag: String,
    /// Where it was written, absolute.
    pub file: PathBuf,
    /// Its endpoint base URL, when the target names a workspace or base URL.
    pub endpoint: Option<String>,
    /// Whether the target confirmed the deployment.
    pub deployed: bool,
    /// The mock smoke run against the new deployment; `None` when it was not deployed.
    pub validation: Option<Validation>,
    /// The app's Python source.
    pub source: String,
}

/// The mock smoke run that validated (or failed) one new deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validation {
    /// The execution, as the ledger records it.
    pub execution_id: String,
    /// `ok` or `failed`.
    pub status: ValidationStatus,
    /// The check that failed: `digest` (the deployment runs another image than the pin),
    /// `evidence` (its evidence does not match the run), `envelope`, or `run` (the run
    /// through the Modal adapter failed: unreachable, refused envelope, provider error).
    pub check: Option<&'static str>,
    /// Why it failed: the check's canonical error.
    pub why: Option<String>,
}

/// Whether a deployment passed its validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationStatus {
    /// The smoke run succeeded on the pinned digest.
    Ok,
    /// A check failed.
    Failed,
}

impl Validation {
    /// The validation of `processor_ref`'s deployment from the envelope of its smoke run:
    /// a success must report `pinned`; an error names the check its code belongs to.
    fn judge(processor_ref: &ProcessorRef, pinned: &Digest, envelope: &Envelope) -> Validation {
        let (execution_id, failure) = match envelope {
            Envelope::Success(success) => {
                let reported = &success.meta.image_digest;
                let failure = (*reported != pinned.to_string()).then(|| {
                    let error = CanonError::new(
                        ErrorCode::ImageDrift,
                        format!("{processor_ref} answered from {reported}, the pin is {pinned}"),
                    );
                    ("digest", error.to_string())
                });
                (&success.execution_id, failure)
            }
            Envelope::Error(error) => (
                &error.execution_id,
                Some((failed_check(&error.error), error_line(&error.error))),
            ),
        };
        Validation {
            execution_id: execution_id.clone(),
            status: match failure {
                None => ValidationStatus::Ok,
                Some(_) => ValidationStatus::Failed,
            },
            check: failure.as_ref().map(|(check, _)| *check),
            why: failure.map(|(_, why)| why),
        }
    }

    /// `ERR_DEPLOY_VALIDATION` for a failed validation of `processor_ref`'s deployment.
    fn error(&self, processor_ref: &ProcessorRef) -> Option<CanonError> {
        let why = self.why.as_deref()?;
        Some(CanonError::new(
            ErrorCode::DeployValidation,
            format!(
                "{processor_ref}, execution {}: the {} check failed: {why}",
                self.execution_id,
                self.check.unwrap_or("run")
            ),
        ))
    }
}

/// The check of a deployment a failed smoke run's code belongs to.
fn failed_check(error: &ErrorBody) -> &'static str {
    match error.code {
        ErrorCode::ImageDrift | ErrorCode::ImageUnpinned => "digest",
        ErrorCode::Envelope | ErrorCode::OutputDuplicate => "envelope",
        ErrorCode::Evidence => "evidence",
        _ => "run",
    }
}

/// `CODE: message` of an envelope's error.
fn error_line(error: &ErrorBody) -> String {
    format!("{}: {}", error.code, error.message)
}

impl AppOutcome {
    fn written(app: GeneratedApp, file: PathBuf, endpoint: Option<String>) -> AppOutcome {
        AppOutcome {
            tag: app.deploy_tag(),
            processor_ref: app.processor_ref,
            app: app.names.app,
            function: app.names.function,
            label: app.names.label,
            pinned_reference: app.pinned_reference,
            image_digest: app.image_digest,
            file,
            endpoint,
            deployed: false,
            validation: None,
            source: app.source,
        }
    }
}

/// Generates and writes every selected app — all generated before any is written, so one
/// unpinned entry writes nothing — then, unless a dry run, deploys each in turn and
/// validates the new deployment with a mock run of its smoke example through `engine`
/// (whose registry root is the request's); the first failure stops it. The target, the
/// `modal` client (which runs with exactly this environment) and the registry's
/// pass-through `env` values come from the engine's host environment; its progress hears
/// of each app deployed and validated, and `cancel` stops the validation runs.
pub async fn deploy(
    engine: &Engine,
    request: &DeployRequest,
    cancel: &CancellationToken,
) -> DeployReport {
    let mut apps = Vec::new();
    let error = deploy_apps(engine, request, &mut apps, cancel).await.err();
    DeployReport {
        target: request.processors.target,
        dry_run: request.dry_run,
        apps,
        error,
    }
}

/// Generates, writes and (unless a dry run) deploys; `apps` keeps what was done even when a
/// later step fails.
async fn deploy_apps(
    engine: &Engine,
    request: &DeployRequest,
    apps: &mut Vec<AppOutcome>,
    cancel: &CancellationToken,
) -> Result<(), CanonError> {
    let env = &engine.config().env;
    let target = request.processors.target.modal(env)?;
    let generated = request
        .processors
        .specs()?
        .iter()
        .map(|spec| generate_app(spec, &target, env))
        .collect::<Result<Vec<_>, _>>()?;
    let mut written = Vec::with_capacity(generated.len());
    for app in generated {
        let file = app.write(&request.project_root)?;
        tracing::info!(
            event = "deploy.generate",
            r#ref = %app.processor_ref,
            app = %app.names.app,
            file = %file.display(),
        );
        let endpoint = Endpoint::resolve(&app.processor_ref, &target)
            .ok()
            .map(|endpoint| endpoint.base_url);
        apps.push(AppOutcome::written(app.clone(), file.clone(), endpoint));
        written.push((app, file));
    }
    if request.dry_run {
        return Ok(());
    }
    let cli = ModalCli::discover(env)?;
    let task = engine.progress().start(
        format!("deploying to {}", request.processors.target),
        ProgressUnit::Items,
        Some(written.len() as u64),
    );
    for ((app, file), outcome) in written.iter().zip(apps.iter_mut()) {
        task.message(format!("modal deploy {}", app.names.app));
        cli.deploy(app, file, &target).await?;
        outcome.deployed = true;
        task.message(format!("validating {}", app.names.app));
        let validation = validate(engine, &request.validation, app, cancel).await;
        tracing::info!(
            event = "deploy.validate",
            r#ref = %app.processor_ref,
            execution_id = %validation.execution_id,
            ok = validation.status == ValidationStatus::Ok,
        );
        let failed = validation.error(&app.processor_ref);
        outcome.validation = Some(validation);
        if let Some(error) = failed {
            return Err(error);
        }
        task.advance(1);
        task.note(format!(
            "deployed {} as {} ({}), smoke run validated",
            app.processor_ref,
            app.names.app,
            app.deploy_tag()
        ));
    }
    Ok(())
}

/// Runs `app`'s processor on its smoke example in mock mode through the Modal adapter,
/// writing under `/artifacts/deploy/<target>/<ns>-<name>-<version>/{execution_id}`, and
/// judges the envelope.
async fn validate(
    engine: &Engine,
    runs: &ValidationRuns,
    app: &GeneratedApp,
    cancel: &CancellationToken,
) -> Validation {
    let processor_ref = &app.processor_ref;
    let request = RunRequest {
        processor_ref: processor_ref.to_string(),
        adapter: AdapterKind::Modal,
        mode: Mode::Mock,
        build: false,
        write_prefix: Some(format!(
            "/artifacts/deploy/{}/{}-{}/{{execution_id}}",
            DeployTarget::Modal,
            processor_ref.image_name(),
            processor_ref.version()
        )),
        inputs: Inputs::Example(SMOKE_EXAMPLE.to_owned()),
        params: BTreeMap::new(),
        adapter_options: Value::Null,
        timeout: None,
        save_dir: None,
        plan: runs.plan.clone(),
        reserve_micro_usd: runs.reserve_micro_usd,
        lane: runs.lane,
        upstream: Vec::new(),
        attachments: Vec::new(),
        memo: false,
    };
    let outcome = engine.run(&request, cancel).await;
    Validation::judge(processor_ref, &app.image_digest, &outcome.envelope)
}

/// What keeps `target` from taking deployments that can be checked afterwards: an endpoint
/// for `processor_ref` (a workspace or base URL) and a usable `modal` client. Empty when it
/// is ready; an invalid `PROCTOR_MODAL_*` value is an error.
pub(crate) fn unready_target(
    target: DeployTarget,
    processor_ref: Option<&ProcessorRef>,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, CanonError> {
    let modal = target.modal(env)?;
    let endpoint = processor_ref.map(|processor_ref| Endpoint::resolve(processor_ref, &modal));
    let client = ModalCli::discover(env).err();
    Ok(endpoint
        .and_then(Result::err)
        .into_iter()
        .chain(client)
        .map(|error| error.detail().to_owned())
        .collect())
}

/// What [`drift`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRequest {
    /// The target and the processors deployed there.
    pub processors: TargetedProcessors,
    /// How long to wait for each endpoint's `/healthz`.
    pub timeout: Duration,
}

/// What [`drift`] found.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// The target.
    pub target: DeployTarget,
    /// One row per processor, in order.
    pub rows: Vec<DriftRow>,
    /// `ERR_IMAGE_DRIFT`, `ERR_MODAL_INVOCATION` or `ERR_IMAGE_UNPINNED` over the rows
    /// ([`drift_verdict`]), or what kept them from being checked.
    #[serde(serialize_with = "crate::error_json::serialize")]
    pub error: Option<CanonError>,
}

/// Asks each deployment's `/healthz` for its digest and compares it with the pin; any
/// drift, unreachable deployment or missing pin is the report's error. Logs one
/// `drift.check` per row.
pub async fn drift(request: &DriftRequest, env: &BTreeMap<String, String>) -> DriftReport {
    let (rows, error) = match drift_rows(request, env).await {
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
    DriftReport {
        target: request.processors.target,
        rows,
        error,
    }
}

async fn drift_rows(
    request: &DriftRequest,
    env: &BTreeMap<String, String>,
) -> Result<Vec<DriftRow>, CanonError> {
    let target = request.processors.target.modal(env)?;
    let auth = ProxyAuth::from_env(env)?;
    let specs = request.processors.specs()?;
    let client = proctor_tls::http_client_builder()
        .build()
        .map_err(|error| {
            CanonError::new(
                ErrorCode::ModalInvocation,
                format!("cannot build the HTTP client: {error}"),
            )
        })?;
    check_drift(&specs, &target, auth.as_ref(), &client, request.timeout).await
}

/// What [`secrets_plan`] found.
#[derive(Debug, Clone)]
pub struct SecretsPlanReport {
    /// The target.
    pub target: DeployTarget,
    /// The secrets each processor needs and whether each exists, when the processors
    /// could be read.
    pub plan: Option<SecretsPlan>,
    /// `ERR_MISSING_SECRET` naming the missing secrets; else why a needed secret's presence
    /// is unknown; else what kept the plan from being made.
    pub error: Option<CanonError>,
}

impl Serialize for SecretsPlanReport {
    /// `{"target", "rows", "missing", "unknown_because", "error"}`; the plan's three keys
    /// only when there is a plan.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("target", &self.target)?;
        if let Some(plan) = &self.plan {
            map.serialize_entry("rows", &plan.rows)?;
            map.serialize_entry("missing", &plan.missing())?;
            map.serialize_entry("unknown_because", &plan.unknown_because)?;
        }
        map.serialize_entry("error", &self.error.as_ref().map(crate::error_json::body))?;
        map.end()
    }
}

/// The secrets each selected processor needs in the target and whether each exists there
/// (names only, never values). Logs `secrets.plan`.
pub async fn secrets_plan(
    request: &TargetedProcessors,
    env: &BTreeMap<String, String>,
) -> SecretsPlanReport {
    let (plan, error) = match plan_secrets(request, env).await {
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
    SecretsPlanReport {
        target: request.target,
        plan,
        error,
    }
}

/// The plan, and the error that kept presence from being known, if any.
async fn plan_secrets(
    request: &TargetedProcessors,
    env: &BTreeMap<String, String>,
) -> Result<(SecretsPlan, Option<CanonError>), CanonError> {
    let target = request.target.modal(env)?;
    let specs = request.specs()?;
    let (inventory, listing_error) = list_secrets(env, &target).await;
    Ok((
        proctor_deploy::secrets_plan(&specs, &target, &inventory),
        listing_error,
    ))
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

#[cfg(test)]
mod tests {
    use proctor_deploy::{SecretPlanRow, SecretPurpose};

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

    #[test]
    fn secrets_plan_reports_carry_the_plan_keys_only_with_a_plan() {
        let error = CanonError::new(ErrorCode::DeployTarget, "x");
        let without = SecretsPlanReport {
            target: DeployTarget::Modal,
            plan: None,
            error: Some(error.clone()),
        };
        assert_eq!(
            serde_json::to_string(&without).unwrap(),
            r#"{"target":"modal","error":{"code":"ERR_DEPLOY_TARGET","message":"no deploy target configured: x"}}"#
        );
        let with = SecretsPlanReport {
            plan: Some(plan(vec![row("A", SecretPresence::Missing)])),
            error: None,
            ..without
        };
        assert_eq!(
            serde_json::to_string(&with).unwrap(),
            r#"{"target":"modal","rows":[{"ref":"llm/litellm@1","secret":"A","purpose":"required","presence":"missing"}],"missing":["A"],"unknown_because":null,"error":null}"#
        );
    }

    fn success(image_digest: &str) -> Envelope {
        let body = serde_json::json!({
            "status": "success",
            "execution_id": "e1",
            "outputs": [],
            "index_path": "/artifacts/deploy/modal/text-stats-1/e1/outputs.json",
            "meta": {
                "image_digest": image_digest,
                "env_fingerprint": "",
                "duration_ms": 1,
                "mode": "mock",
            },
        });
        Envelope::from_slice(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_validation_needs_a_success_from_the_pinned_digest() {
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let pinned: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();

        let ok = Validation::judge(&processor_ref, &pinned, &success(&pinned.to_string()));
        assert_eq!(
            (ok.status, ok.check, ok.why.as_deref()),
            (ValidationStatus::Ok, None, None)
        );
        assert_eq!(ok.execution_id, "e1");
        assert_eq!(ok.error(&processor_ref), None);

        let other = format!("sha256:{}", "cd".repeat(32));
        let drifted = Validation::judge(&processor_ref, &pinned, &success(&other));
        assert_eq!(drifted.status, ValidationStatus::Failed);
        assert_eq!(drifted.check, Some("digest"));
        let error = drifted.error(&processor_ref).unwrap();
        assert_eq!(error.code(), ErrorCode::DeployValidation);
        assert_eq!(
            error.message(),
            format!(
                "deployment failed validation: text/stats@1, execution e1: the digest check \
                 failed: ERR_IMAGE_DRIFT: image digest mismatch: text/stats@1 answered from \
                 {other}, the pin is {pinned}"
            )
        );

        for (code, check) in [
            (ErrorCode::ImageDrift, "digest"),
            (ErrorCode::Evidence, "evidence"),
            (ErrorCode::Envelope, "envelope"),
            (ErrorCode::ModalInvocation, "run"),
            (ErrorCode::Inputs, "run"),
        ] {
            let failed = Envelope::error("e2", &CanonError::new(code, "x"), Mode::Mock, 1, None);
            let validation = Validation::judge(&processor_ref, &pinned, &failed);
            assert_eq!(validation.check, Some(check), "{code}");
            assert_eq!(
                validation.why.as_deref(),
                Some(format!("{code}: {}: x", code.fragment()).as_str())
            );
            assert_eq!(validation.execution_id, "e2");
        }
    }

    #[test]
    fn deploy_targets_are_named() {
        assert_eq!("modal".parse(), Ok(DeployTarget::Modal));
        assert!("aws".parse::<DeployTarget>().is_err());
        assert_eq!(
            serde_json::to_string(&DeployTarget::Modal).unwrap(),
            "\"modal\""
        );
    }
}
