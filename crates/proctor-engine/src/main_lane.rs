//! The lanes' chains, serialized, behind the pull-request and main-branch workflows:
//!
//! - main: **Build & Pin** (both platforms → push → pin in `registry.yaml`) → **Acceptance**
//!   (two mock runs of each processor's `examples.smoke` inputs against the pinned images)
//!   → **Deploy** (the pins, to the deploy target, each new deployment validated by a mock
//!   smoke run through the Modal adapter) → **Drift** (what the target runs against the
//!   pins).
//! - pr: **Smoke** — Acceptance's runs on images built from source.
//!
//! The main lane covers the processors Build & Pin can build, the Cargo ones
//! (`build.cargo_package`). Given no processor list, it leaves every other one out and
//! reports each, with its reason, in [`ChainReport::skipped`] and a `lane.processor.skipped`
//! warning; one named in the list is refused with `ERR_BUILD` before any step. The pr lane
//! covers every processor.
//!
//! Smoke and Acceptance runs go through [`Engine::run`] (`--lane <lane> --adapter local
//! --mode mock`, built from source in the pr lane), which checks and commits each run's
//! evidence; each run must then pass every check of [`verify_execution`] — the same
//! verification as `proctor verify`, pins included — and the two runs of a processor must
//! be byte-stable ([`acceptance`]). Deploy and Drift are [`crate::deploy()`] and
//! [`crate::drift()`], as the commands run them.
//!
//! Each step logs `lane.step.start`, then exactly one of `lane.step.settle` or
//! `lane.step.fail`; the chain logs `lane.start`, then `lane.settle` or `lane.fail`. The
//! first failure stops the chain with its canonical error. Without a deploy target, Deploy
//! fails with `ERR_DEPLOY_TARGET` ("no deploy target configured") before anything is
//! written: nothing is ever reported as deployed unless the target said so.

mod acceptance;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use proctor_contract::{
    CanonError, Envelope, ErrorCode, Mode, Platform, ProcessorRef, ProgressUnit,
};
use proctor_deploy::DriftRow;
use proctor_oci::{BuiltImage, Pins, PushedImage, RegistryTarget};
use proctor_registry::{ProcessorSpec, Registry};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::acceptance::{CheckedRun, check_stable, checked_run, run_error};
use crate::deploy::{
    AppOutcome, DeployRequest, DeployTarget, DriftRequest, SMOKE_EXAMPLE, TargetedProcessors,
    ValidationRuns, deploy, drift, unready_target,
};
use crate::images::build_layout;
use crate::verify::{EvidenceSources, verify_execution};
use crate::{AdapterKind, Engine, Inputs, Lane, RunRequest};

/// How long Drift waits for each deployment's `/healthz`.
const DRIFT_TIMEOUT: Duration = Duration::from_secs(10);

/// A step of a lane's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LaneStep {
    /// pr: build from source, two mock runs.
    Smoke,
    /// main: build both platforms, push, pin.
    BuildPin,
    /// main: two mock runs of the pinned images.
    Acceptance,
    /// main: deploy the pins.
    Deploy,
    /// main: compare the deployments with the pins.
    Drift,
}

impl LaneStep {
    /// The main lane's steps, in order.
    pub const MAIN: [LaneStep; 4] = [
        LaneStep::BuildPin,
        LaneStep::Acceptance,
        LaneStep::Deploy,
        LaneStep::Drift,
    ];

    /// The step's name: `smoke`, `build-pin`, `acceptance`, `deploy` or `drift`.
    pub fn as_str(self) -> &'static str {
        match self {
            LaneStep::Smoke => "smoke",
            LaneStep::BuildPin => "build-pin",
            LaneStep::Acceptance => "acceptance",
            LaneStep::Deploy => "deploy",
            LaneStep::Drift => "drift",
        }
    }

    /// The steps of `lane`'s chain, in order.
    pub fn chain(lane: Lane) -> &'static [LaneStep] {
        match lane {
            Lane::Pr => &[LaneStep::Smoke],
            Lane::Main => &LaneStep::MAIN,
        }
    }
}

impl fmt::Display for LaneStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LaneStep {
    type Err = String;

    fn from_str(name: &str) -> Result<LaneStep, String> {
        [LaneStep::Smoke]
            .into_iter()
            .chain(LaneStep::MAIN)
            .find(|step| step.as_str() == name)
            .ok_or_else(|| format!("unknown lane step `{name}`"))
    }
}

/// What became of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// It ran and succeeded.
    Settled,
    /// It ran and failed; the chain stopped there.
    Failed,
    /// Not reached: an earlier step failed.
    Skipped,
    /// Outside the selected part of the chain.
    NotRun,
}

impl StepStatus {
    /// `settled`, `failed`, `skipped` or `not run`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Settled => "settled",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::NotRun => "not run",
        }
    }
}

/// Which chain to run, with what only the main lane's needs.
#[derive(Debug, Clone)]
pub enum LaneChain {
    /// The pr lane's Smoke.
    Pr,
    /// The main lane's chain.
    Main(MainLaneSettings),
}

impl LaneChain {
    /// The lane whose chain this is.
    pub fn lane(&self) -> Lane {
        match self {
            LaneChain::Pr => Lane::Pr,
            LaneChain::Main(_) => Lane::Main,
        }
    }
}

/// What only the main lane needs.
#[derive(Debug, Clone)]
pub struct MainLaneSettings {
    /// Where Build & Pin pushes, `HOST/OWNER/REPO`.
    pub registry: RegistryTarget,
    /// The first step to run; earlier ones are not run.
    pub from: LaneStep,
    /// The last step to run; later ones are not run.
    pub until: LaneStep,
    /// Where built image layouts go.
    pub oci_root: PathBuf,
    /// The Cargo workspace that compiles the processors.
    pub workspace_root: PathBuf,
    /// The directory generated deploy apps are written below.
    pub project_root: PathBuf,
}

/// One run of a lane's chain, in the World of the [`Engine`] that runs it (its registry,
/// artifacts, ledger and host environment).
#[derive(Debug, Clone)]
pub struct LaneRequest {
    /// The chain.
    pub chain: LaneChain,
    /// The lane the whole job is in, when one is named; it must be the chain's.
    pub job_lane: Option<Lane>,
    /// The processors, `ns/name@version`; empty for every processor in the registry.
    pub processor_refs: Vec<String>,
    /// Adapter options for every smoke run.
    pub adapter_options: Value,
    /// The ledger plan recording the smoke runs.
    pub plan: String,
    /// The budget each smoke run reserves, in micro-USD.
    pub reserve_micro_usd: u64,
}

/// A processor built, pushed and pinned by Build & Pin.
#[derive(Debug, Clone)]
pub struct PinnedProcessor {
    /// The processor.
    pub processor_ref: ProcessorRef,
    /// The `registry.yaml` that now holds the pins.
    pub file: PathBuf,
    /// The build.
    pub built: BuiltImage,
    /// The push.
    pub pushed: PushedImage,
    /// The pins written.
    pub pins: Pins,
}

/// A processor whose two smoke runs were accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedProcessor {
    /// The processor.
    #[serde(rename = "ref")]
    pub processor_ref: ProcessorRef,
    /// The image both runs ran.
    pub image_digest: String,
    /// The two executions.
    pub executions: [String; 2],
    /// How many outputs each run wrote.
    pub outputs: usize,
}

/// A processor the chain leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedProcessor {
    /// The processor.
    #[serde(rename = "ref")]
    pub processor_ref: ProcessorRef,
    /// Why the chain cannot cover it.
    pub reason: String,
}

/// What a settled step did, per processor.
#[derive(Debug, Clone)]
pub enum StepDetail {
    /// Build & Pin.
    BuildPin(Vec<PinnedProcessor>),
    /// Smoke or Acceptance.
    Runs(Vec<AcceptedProcessor>),
    /// Deploy: the apps deployed.
    Deploy(Vec<AppOutcome>),
    /// Drift: each deployment against its pin.
    Drift(Vec<DriftRow>),
}

/// What a settled step did: a line for people, a record per processor.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// One line.
    pub summary: String,
    /// Per processor.
    pub detail: StepDetail,
}

/// One step of the chain's report.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The step.
    pub step: LaneStep,
    /// What became of it.
    pub status: StepStatus,
    /// How long it ran, when it ran.
    pub duration: Option<Duration>,
    /// What it did, when it settled.
    pub report: Option<StepReport>,
    /// Why it failed, when it did.
    pub error: Option<CanonError>,
}

impl StepOutcome {
    /// A step with no time, report or error yet.
    fn new(step: LaneStep, status: StepStatus) -> StepOutcome {
        StepOutcome {
            step,
            status,
            duration: None,
            report: None,
            error: None,
        }
    }

    /// How long it ran, in whole milliseconds.
    pub fn duration_ms(&self) -> Option<u64> {
        self.duration.map(millis)
    }
}

/// The chain's report: every step, and the error that stopped it.
#[derive(Debug, Clone)]
pub struct ChainReport {
    /// The lane.
    pub lane: Lane,
    /// Where Build & Pin pushes, for the main lane.
    pub registry: Option<RegistryTarget>,
    /// The processors, in order; empty when they could not be known.
    pub processors: Vec<ProcessorRef>,
    /// The registry's processors the chain leaves out, in order, each with its reason.
    pub skipped: Vec<SkippedProcessor>,
    /// Every step of the chain, in order.
    pub steps: Vec<StepOutcome>,
    /// The error that stopped the chain, if any.
    pub error: Option<CanonError>,
}

impl ChainReport {
    /// The processors as one line: `a, b`, or `no processors`.
    pub fn processor_list(&self) -> String {
        list(&self.processors)
    }
}

/// Runs the chain of `request` in `engine`'s World. Never fails outright: what stopped the
/// chain is the report's error.
pub async fn run_lane(
    engine: &Engine,
    request: &LaneRequest,
    cancel: &CancellationToken,
) -> ChainReport {
    let lane = request.chain.lane();
    tracing::info!(event = "lane.start", lane = %lane);
    let report = run_chain(engine, request, cancel).await;
    match &report.error {
        None => tracing::info!(event = "lane.settle", lane = %lane),
        Some(error) => tracing::error!(
            event = "lane.fail",
            lane = %lane,
            code = %error.code(),
            message = %error.message(),
        ),
    }
    report
}

/// Checks what must hold before any step, then runs the selected steps in order.
async fn run_chain(
    engine: &Engine,
    request: &LaneRequest,
    cancel: &CancellationToken,
) -> ChainReport {
    let lane = request.chain.lane();
    let chain = LaneStep::chain(lane);
    let mut report = ChainReport {
        lane,
        registry: match &request.chain {
            LaneChain::Main(main) => Some(main.registry.clone()),
            LaneChain::Pr => None,
        },
        processors: Vec::new(),
        skipped: Vec::new(),
        steps: Vec::new(),
        error: None,
    };
    match preflight(engine, request) {
        Ok(selection) => {
            for skipped in &selection.skipped {
                tracing::warn!(
                    event = "lane.processor.skipped",
                    lane = %lane,
                    r#ref = %skipped.processor_ref,
                    reason = %skipped.reason,
                );
            }
            report.processors = selection.processors;
            report.skipped = selection.skipped;
        }
        Err(error) => {
            report.steps = chain
                .iter()
                .map(|&step| StepOutcome::new(step, StepStatus::NotRun))
                .collect();
            report.error = Some(error);
            return report;
        }
    }
    let steps = Steps {
        engine,
        request,
        processors: &report.processors,
        cancel,
    };
    let is_selected = |step: &LaneStep| match &request.chain {
        LaneChain::Main(main) => (main.from..=main.until).contains(step),
        LaneChain::Pr => true,
    };
    let task = engine.progress().start(
        format!("lane {lane}"),
        ProgressUnit::Steps,
        Some(chain.iter().filter(|step| is_selected(step)).count() as u64),
    );
    let mut outcomes = Vec::with_capacity(chain.len());
    let mut stopped = None;
    for &step in chain {
        let selected = is_selected(&step);
        if !selected || stopped.is_some() {
            let status = if selected {
                StepStatus::Skipped
            } else {
                StepStatus::NotRun
            };
            outcomes.push(StepOutcome::new(step, status));
            continue;
        }
        task.message(step.as_str());
        let outcome = steps.run(step).await;
        task.advance(1);
        stopped = outcome.error.clone();
        outcomes.push(outcome);
    }
    report.steps = outcomes;
    report.error = stopped;
    report
}

/// The job's lane agrees, the step range is ordered, and the processors exist and suit the
/// lane; returns them.
fn preflight(engine: &Engine, request: &LaneRequest) -> Result<Selection, CanonError> {
    let lane = request.chain.lane();
    if let Some(job_lane) = request.job_lane
        && job_lane != lane
    {
        return Err(CanonError::new(
            ErrorCode::Lane,
            format!(
                "this job is in the {job_lane} lane (--lane or PROCTOR_LANE) but the command is `proctor lane {lane}`"
            ),
        ));
    }
    if let LaneChain::Main(main) = &request.chain
        && main.from > main.until
    {
        return Err(CanonError::new(
            ErrorCode::Lane,
            format!("--from {} comes after --until {}", main.from, main.until),
        ));
    }
    let registry = Registry::load(&engine.config().registry_root)?;
    select_processors(&registry, lane, &request.processor_refs)
}

/// The processors a chain covers, and those of the registry it leaves out.
#[derive(Debug, Default, PartialEq)]
struct Selection {
    processors: Vec<ProcessorRef>,
    skipped: Vec<SkippedProcessor>,
}

/// The processors of `registry` named by `raw_refs` (in order, each once), or, when it is
/// empty, every processor `lane` can cover, the others skipped with their reasons. A named
/// processor the lane cannot cover is refused with `ERR_BUILD`.
fn select_processors(
    registry: &Registry,
    lane: Lane,
    raw_refs: &[String],
) -> Result<Selection, CanonError> {
    let mut selection = Selection::default();
    if raw_refs.is_empty() {
        for entry in registry.iter() {
            let processor_ref = entry.spec().processor_ref.clone();
            match uncovered_reason(lane, entry.spec()) {
                Some(reason) => selection.skipped.push(SkippedProcessor {
                    processor_ref,
                    reason,
                }),
                None => selection.processors.push(processor_ref),
            }
        }
        return Ok(selection);
    }
    for raw in raw_refs {
        let spec = registry.get(&raw.parse()?)?.spec();
        if let Some(reason) = uncovered_reason(lane, spec) {
            return Err(CanonError::new(
                ErrorCode::Build,
                format!(
                    "{} cannot be in the {lane} lane: {reason}",
                    spec.processor_ref
                ),
            ));
        }
        if !selection.processors.contains(&spec.processor_ref) {
            selection.processors.push(spec.processor_ref.clone());
        }
    }
    Ok(selection)
}

/// Why `lane`'s chain cannot cover `spec`'s processor, if it cannot: the main lane's Build &
/// Pin compiles a Cargo package into images for both platforms, so a processor the container
/// engine builds from its Dockerfile is outside it.
fn uncovered_reason(lane: Lane, spec: &ProcessorSpec) -> Option<String> {
    (lane == Lane::Main && spec.build.cargo_package.is_none()).then(|| {
        "no build.cargo_package: the container engine builds it from its Dockerfile \
         (`proctor run --build`), and Build & Pin builds and pins Cargo processors only, for \
         linux/amd64 and linux/arm64"
            .to_owned()
    })
}

/// What every step works with.
struct Steps<'a> {
    engine: &'a Engine,
    request: &'a LaneRequest,
    processors: &'a [ProcessorRef],
    cancel: &'a CancellationToken,
}

impl Steps<'_> {
    /// Runs `step`, logging its start and its settle or failure.
    async fn run(&self, step: LaneStep) -> StepOutcome {
        let lane = self.request.chain.lane();
        tracing::info!(event = "lane.step.start", lane = %lane, step = step.as_str());
        let started = Instant::now();
        let result = self.act(step).await;
        let duration = started.elapsed();
        let duration_ms = millis(duration);
        let mut outcome = StepOutcome::new(step, StepStatus::Settled);
        outcome.duration = Some(duration);
        match result {
            Ok(report) => {
                tracing::info!(
                    event = "lane.step.settle",
                    lane = %lane,
                    step = step.as_str(),
                    summary = %report.summary,
                    duration_ms,
                );
                outcome.report = Some(report);
            }
            Err(error) => {
                tracing::error!(
                    event = "lane.step.fail",
                    lane = %lane,
                    step = step.as_str(),
                    code = %error.code(),
                    message = %error.message(),
                    duration_ms,
                );
                outcome.status = StepStatus::Failed;
                outcome.error = Some(error);
            }
        }
        outcome
    }

    async fn act(&self, step: LaneStep) -> Result<StepReport, CanonError> {
        if self.cancel.is_cancelled() {
            return Err(CanonError::new(
                ErrorCode::Interrupted,
                format!("the lane was interrupted before its {step} step"),
            ));
        }
        match (step, &self.request.chain) {
            (LaneStep::Smoke, _) => self.smoke_runs(Lane::Pr).await,
            (LaneStep::Acceptance, _) => self.smoke_runs(Lane::Main).await,
            (LaneStep::BuildPin, LaneChain::Main(main)) => self.build_pin(main).await,
            (LaneStep::Deploy, LaneChain::Main(main)) => self.deploy(main).await,
            (LaneStep::Drift, _) => self.drift().await,
            (LaneStep::BuildPin | LaneStep::Deploy, LaneChain::Pr) => Err(CanonError::new(
                ErrorCode::Lane,
                format!("the {step} step belongs to the main lane"),
            )),
        }
    }

    /// The registry entries of the chain's processors and their files, read afresh (Build
    /// & Pin changes them).
    fn specs(&self) -> Result<Vec<(ProcessorSpec, PathBuf)>, CanonError> {
        let registry = Registry::load(&self.engine.config().registry_root)?;
        self.processors
            .iter()
            .map(|processor_ref| {
                let entry = registry.get(processor_ref)?;
                Ok((entry.spec().clone(), entry.file()))
            })
            .collect()
    }

    /// The chain's processors on the deploy target.
    fn targeted(&self) -> TargetedProcessors {
        TargetedProcessors {
            target: DeployTarget::Modal,
            registry_root: self.engine.config().registry_root.clone(),
            processor_refs: self.processors.iter().map(ToString::to_string).collect(),
        }
    }

    /// Build & Pin: each processor built for both platforms, pushed, and pinned by the
    /// digest of that push.
    async fn build_pin(&self, main: &MainLaneSettings) -> Result<StepReport, CanonError> {
        let registry = Registry::load(&self.engine.config().registry_root)?;
        let progress = self.engine.progress();
        let mut pinned = Vec::with_capacity(self.processors.len());
        for processor_ref in self.processors {
            let entry = registry.get(processor_ref)?.clone();
            let file = entry.file();
            let (oci_root, workspace_root) = (main.oci_root.clone(), main.workspace_root.clone());
            let build_progress = progress.clone();
            // Cargo compiles for minutes: off the runtime's worker threads.
            let built = tokio::task::spawn_blocking(move || {
                build_layout(
                    &entry,
                    &Platform::ALL,
                    &oci_root,
                    &workspace_root,
                    &build_progress,
                )
            })
            .await
            .unwrap_or_else(|join_error| std::panic::resume_unwind(join_error.into_panic()))?;
            let pushed = proctor_oci::push(&built.layout_dir, &main.registry, progress).await?;
            let pins = proctor_oci::pin(&file, &pushed.index_source()).await?;
            tracing::info!(
                event = "lane.build_pin.pinned",
                r#ref = %processor_ref,
                index = %pins.index,
                file = %file.display(),
            );
            pinned.push(PinnedProcessor {
                processor_ref: processor_ref.clone(),
                file,
                built,
                pushed,
                pins,
            });
        }
        Ok(StepReport {
            summary: format!(
                "{} built for linux/amd64 and linux/arm64, pushed to {} and pinned",
                list(self.processors),
                main.registry
            ),
            detail: StepDetail::BuildPin(pinned),
        })
    }

    /// Smoke (pr) or Acceptance (main): two mock runs of each processor's smoke inputs,
    /// each verified, and the two compared.
    async fn smoke_runs(&self, lane: Lane) -> Result<StepReport, CanonError> {
        let mut accepted = Vec::with_capacity(self.processors.len());
        for (spec, file) in self.specs()? {
            let processor_ref = &spec.processor_ref;
            let inputs = &spec
                .examples
                .get(SMOKE_EXAMPLE)
                .ok_or_else(|| {
                    CanonError::new(
                        ErrorCode::Acceptance,
                        format!(
                            "{processor_ref} has no examples.{SMOKE_EXAMPLE} in {}",
                            file.display()
                        ),
                    )
                })?
                .inputs;
            let first = self.smoke_run(lane, processor_ref, inputs).await?;
            let second = self.smoke_run(lane, processor_ref, inputs).await?;
            check_stable(processor_ref, &first, &second)?;
            accepted.push(AcceptedProcessor {
                processor_ref: processor_ref.clone(),
                image_digest: first.receipt.image_digest,
                executions: [first.execution_id, second.execution_id],
                outputs: first.outputs.len(),
            });
        }
        let images = match lane {
            Lane::Main => "pinned images",
            Lane::Pr => "images built from source",
        };
        Ok(StepReport {
            summary: format!(
                "{}: two mock runs each of {images}, evidence checked and byte-stable",
                list(self.processors)
            ),
            detail: StepDetail::Runs(accepted),
        })
    }

    /// One run of `inputs` in `lane` (local adapter, mock mode, built from source in the pr
    /// lane), then its evidence verified.
    async fn smoke_run(
        &self,
        lane: Lane,
        processor_ref: &ProcessorRef,
        inputs: &Value,
    ) -> Result<CheckedRun, CanonError> {
        let write_prefix = format!(
            "/artifacts/lane/{lane}/{}-{}/{{execution_id}}",
            processor_ref.image_name(),
            processor_ref.version()
        );
        let request = RunRequest {
            processor_ref: processor_ref.to_string(),
            adapter: AdapterKind::Local,
            mode: Mode::Mock,
            build: lane == Lane::Pr,
            write_prefix: Some(write_prefix.clone()),
            inputs: Inputs::Value(inputs.clone()),
            params: std::collections::BTreeMap::new(),
            adapter_options: self.request.adapter_options.clone(),
            timeout: None,
            save_dir: None,
            plan: self.request.plan.clone(),
            reserve_micro_usd: self.request.reserve_micro_usd,
            lane: Some(lane),
            upstream: Vec::new(),
            attachments: Vec::new(),
            memo: false,
        };
        let execution_id = match self.engine.run(&request, self.cancel).await.envelope {
            Envelope::Success(success) => success.execution_id,
            Envelope::Error(error) => {
                return Err(run_error(processor_ref, &error.execution_id, &error.error));
            }
        };
        let sources = EvidenceSources {
            store: self.engine.store().as_ref(),
            ledger: self.engine.ledger().await?,
            registry_root: &self.engine.config().registry_root,
            chains: None,
        };
        let verified = verify_execution(&sources, &execution_id).await?;
        checked_run(processor_ref, &write_prefix, verified)
    }

    /// Deploy: every processor's pin to the deploy target, once the target can take
    /// deployments whose endpoints Drift can then ask; otherwise `ERR_DEPLOY_TARGET` before
    /// anything is written. Each new deployment is validated by a mock run of its smoke
    /// example through the Modal adapter, recorded on the lane's plan
    /// (`ERR_DEPLOY_VALIDATION` when it fails).
    async fn deploy(&self, main: &MainLaneSettings) -> Result<StepReport, CanonError> {
        let targeted = self.targeted();
        let env = &self.engine.config().env;
        let unready = unready_target(targeted.target, self.processors.first(), env)?;
        if !unready.is_empty() {
            return Err(CanonError::new(
                ErrorCode::DeployTarget,
                format!(
                    "{}; once one is, `proctor lane main --from deploy` deploys the pins",
                    unready.join("; ")
                ),
            ));
        }
        let request = DeployRequest {
            processors: targeted,
            dry_run: false,
            project_root: main.project_root.clone(),
            validation: ValidationRuns {
                plan: self.request.plan.clone(),
                reserve_micro_usd: self.request.reserve_micro_usd,
                lane: Some(Lane::Main),
            },
        };
        let report = deploy(self.engine, &request, self.cancel).await;
        if let Some(error) = report.error {
            return Err(error);
        }
        Ok(StepReport {
            summary: format!(
                "{} deployed to {}, each validated by a mock smoke run",
                list(self.processors),
                report.target
            ),
            detail: StepDetail::Deploy(report.apps),
        })
    }

    /// Drift: each deployment's `/healthz` digest against its pin.
    async fn drift(&self) -> Result<StepReport, CanonError> {
        let request = DriftRequest {
            processors: self.targeted(),
            timeout: DRIFT_TIMEOUT,
        };
        let report = drift(&request, &self.engine.config().env).await;
        if let Some(error) = report.error {
            return Err(error);
        }
        Ok(StepReport {
            summary: format!("{}: deployments run their pins", list(self.processors)),
            detail: StepDetail::Drift(report.rows),
        })
    }
}

/// Whole milliseconds, for logs and reports.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `a, b` for the processors of a chain.
fn list(processors: &[ProcessorRef]) -> String {
    if processors.is_empty() {
        return "no processors".to_owned();
    }
    processors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_step_names() {
        assert_eq!(LaneStep::chain(Lane::Pr), &[LaneStep::Smoke]);
        let main: Vec<&str> = LaneStep::chain(Lane::Main)
            .iter()
            .map(|step| step.as_str())
            .collect();
        assert_eq!(main, ["build-pin", "acceptance", "deploy", "drift"]);
        for step in LaneStep::MAIN.into_iter().chain([LaneStep::Smoke]) {
            assert_eq!(step.as_str().parse(), Ok(step));
        }
        assert!("build_pin".parse::<LaneStep>().is_err());
        assert!(LaneStep::BuildPin < LaneStep::Acceptance && LaneStep::Deploy < LaneStep::Drift);
    }

    /// A registry under `root` holding `text/stats@1` (a Cargo processor), `llm/litellm@2`
    /// (built from its Dockerfile) and `text/upper@1` (a Cargo processor).
    fn mixed_registry(root: &std::path::Path) -> Registry {
        let cargo = "cargo_package: processor-x";
        let python = "python: \"3.11\"";
        for (processor_ref, build) in [
            ("text/stats@1", cargo),
            ("llm/litellm@2", python),
            ("text/upper@1", cargo),
        ] {
            let processor_ref: ProcessorRef = processor_ref.parse().unwrap();
            let dir = root
                .join(processor_ref.namespace())
                .join(processor_ref.name())
                .join(processor_ref.version());
            std::fs::create_dir_all(&dir).unwrap();
            let yaml = format!(
                "ref: {processor_ref}
description: A processor.
build: {{context: \".\", dockerfile: Dockerfile, port: 8000, {build}}}
image: {{index: null, platforms: {{amd64: null, arm64: null}}}}
runtime: {{cpu: 0.5, memory_gb: 0.25, timeout_s: 30, gpu: null}}
inputs: {{type: object}}
outputs: [{{path: out.json, mime: application/json}}]
examples: {{smoke: {{description: Empty., inputs: {{}}}}}}
"
            );
            std::fs::write(dir.join("registry.yaml"), yaml).unwrap();
            if build == python {
                std::fs::write(dir.join("requirements.txt"), "litellm==1.0.0\n").unwrap();
            }
        }
        Registry::load(root).unwrap()
    }

    fn refs(raw: &[&str]) -> Vec<ProcessorRef> {
        raw.iter().map(|raw| raw.parse().unwrap()).collect()
    }

    #[test]
    fn the_main_lane_covers_cargo_processors_and_skips_the_rest_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let registry = mixed_registry(dir.path());

        let main = select_processors(&registry, Lane::Main, &[]).unwrap();
        assert_eq!(main.processors, refs(&["text/stats@1", "text/upper@1"]));
        assert_eq!(main.skipped.len(), 1);
        let skipped = &main.skipped[0];
        assert_eq!(skipped.processor_ref, "llm/litellm@2".parse().unwrap());
        assert!(
            skipped.reason.starts_with(
                "no build.cargo_package: the container engine builds it from its Dockerfile"
            ),
            "{}",
            skipped.reason
        );
        assert!(
            skipped
                .reason
                .contains("Build & Pin builds and pins Cargo processors only")
        );

        // The pr lane builds every processor from source, Dockerfile ones included.
        let pr = select_processors(&registry, Lane::Pr, &[]).unwrap();
        assert_eq!(
            pr,
            Selection {
                processors: refs(&["llm/litellm@2", "text/stats@1", "text/upper@1"]),
                skipped: Vec::new(),
            }
        );
    }

    #[test]
    fn a_named_dockerfile_processor_is_refused_by_the_main_lane_only() {
        let dir = tempfile::tempdir().unwrap();
        let registry = mixed_registry(dir.path());
        let named = |raw: &[&str]| raw.iter().map(|raw| raw.to_string()).collect::<Vec<_>>();

        let refused = select_processors(
            &registry,
            Lane::Main,
            &named(&["text/stats@1", "llm/litellm@2"]),
        )
        .unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Build);
        assert!(
            refused
                .message()
                .contains("llm/litellm@2 cannot be in the main lane: no build.cargo_package"),
            "{refused}"
        );

        let main = select_processors(
            &registry,
            Lane::Main,
            &named(&["text/upper@1", "text/stats@1", "text/upper@1"]),
        )
        .unwrap();
        assert_eq!(main.processors, refs(&["text/upper@1", "text/stats@1"]));
        assert!(main.skipped.is_empty());

        let pr = select_processors(&registry, Lane::Pr, &named(&["llm/litellm@2"])).unwrap();
        assert_eq!(pr.processors, refs(&["llm/litellm@2"]));

        let unknown = select_processors(&registry, Lane::Main, &named(&["nope/x@1"])).unwrap_err();
        assert_eq!(unknown.code(), ErrorCode::UnknownProcessor);
    }

    #[test]
    fn processor_lists_name_every_processor() {
        assert_eq!(list(&[]), "no processors");
        let refs: Vec<ProcessorRef> = vec!["a/b@1".parse().unwrap(), "c/d@2".parse().unwrap()];
        assert_eq!(list(&refs), "a/b@1, c/d@2");
    }
}
