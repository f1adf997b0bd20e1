//! `proctor lane pr` and `proctor lane main`: the serialized chains behind the pull-request
//! and main-branch workflows.
//!
//! - pr: **Smoke** — each processor built from source (`--build`) and run twice on its
//!   `examples.smoke` inputs in mock mode.
//! - main: **Build & Pin** (both platforms → push → pin in `registry.yaml`) → **Acceptance**
//!   (the smoke runs, against the pinned images) → **Deploy** (to the configured deploy
//!   target) → **Drift** (what the target runs against the pins).
//!
//! Smoke and Acceptance runs are `proctor run --lane <lane> --adapter local --mode mock …`,
//! and each pair of runs must show a success envelope, its outputs index and outputs on disk
//! matching it, both receipts byte-identical and matching the envelope, and byte-stability
//! (same output CIDs, same stable receipt part). Acceptance also checks the image digest is
//! the pinned one for this host.
//!
//! Each step logs `lane.step.start`, then exactly one of `lane.step.settle` or
//! `lane.step.fail`; the first failure stops the chain with its canonical error. Without a
//! deploy target, Deploy fails with `ERR_DEPLOY_TARGET` ("no deploy target configured"):
//! nothing is ever reported as deployed unless the target said so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use proctor_adapters::host_platform;
use proctor_contract::{
    CanonError, Envelope, ErrorBody, ErrorCode, Mode, OutputsIndex, ProcessorRef, Receipt,
    SuccessEnvelope, WorldPath, WritePrefix, cid,
};
use proctor_deploy::{
    Endpoint, ModalCli, ModalTarget, ProxyAuth, check_drift, drift_verdict, generate_app,
};
use proctor_oci::Platform;
use proctor_registry::{ProcessorSpec, Registry, pinned_reference};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::args::{Cli, Config, LaneConfig, MainLaneConfig, MainStep, OutputFormat, RunConfig};
use crate::deploy_commands::host_env;
use crate::image_commands::{build_layout, built_json, pins_json, pushed_json};
use crate::lane::Lane;
use crate::output::{emit, error_json, table};

/// How long Drift waits for each deployment's `/healthz`.
const DRIFT_TIMEOUT: Duration = Duration::from_secs(10);
/// The example each processor's smoke runs use.
const SMOKE_EXAMPLE: &str = "smoke";

/// A step of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// pr: build from source, two mock runs.
    Smoke,
    /// main: build both platforms, push, pin.
    BuildPin,
    /// main: two mock runs of the pinned image.
    Acceptance,
    /// main: deploy the pins.
    Deploy,
    /// main: compare deployments with the pins.
    Drift,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Smoke => "smoke",
            Step::BuildPin => "build-pin",
            Step::Acceptance => "acceptance",
            Step::Deploy => "deploy",
            Step::Drift => "drift",
        }
    }

    /// The main-lane step it is, for `--from` / `--until`.
    fn main_step(self) -> Option<MainStep> {
        match self {
            Step::Smoke => None,
            Step::BuildPin => Some(MainStep::BuildPin),
            Step::Acceptance => Some(MainStep::Acceptance),
            Step::Deploy => Some(MainStep::Deploy),
            Step::Drift => Some(MainStep::Drift),
        }
    }

    /// The steps of `lane`, in order.
    fn chain(lane: Lane) -> &'static [Step] {
        match lane {
            Lane::Pr => &[Step::Smoke],
            Lane::Main => &[Step::BuildPin, Step::Acceptance, Step::Deploy, Step::Drift],
        }
    }
}

/// What became of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Settled,
    Failed,
    /// Not reached: an earlier step failed.
    Skipped,
    /// Outside `--from` / `--until`.
    NotRun,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Settled => "settled",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::NotRun => "not run",
        }
    }
}

/// What a settled step did: a line for people, a record per processor for machines.
struct StepReport {
    summary: String,
    processors: Vec<Value>,
}

/// One row of the chain's report.
struct StepOutcome {
    step: Step,
    status: Status,
    duration: Option<Duration>,
    report: Option<StepReport>,
    error: Option<CanonError>,
}

impl StepOutcome {
    /// A row with no time, report or error yet.
    fn new(step: Step, status: Status) -> StepOutcome {
        StepOutcome {
            step,
            status,
            duration: None,
            report: None,
            error: None,
        }
    }
}

/// The chain's report: every step, and the error that stopped it.
struct ChainReport {
    processors: Vec<ProcessorRef>,
    steps: Vec<StepOutcome>,
    error: Option<CanonError>,
}

/// Runs the lane's chain and prints its report; returns the exit code (the stopping error's,
/// or 0).
pub(crate) fn execute(config: &LaneConfig) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tracing::info!(event = "lane.start", lane = %config.lane);
    let report = run_chain(config, &runtime);
    match &report.error {
        None => tracing::info!(event = "lane.settle", lane = %config.lane),
        Some(error) => tracing::error!(
            event = "lane.fail",
            lane = %config.lane,
            code = %error.code(),
            message = %error.message(),
        ),
    }
    match config.format {
        OutputFormat::Json => emit(&format!("{}\n", report_json(config, &report)))?,
        OutputFormat::Human => emit(&report_text(config, &report))?,
    }
    Ok(report.error.map_or(0, |error| error.code().exit_code()))
}

/// Checks what must hold before any step, then runs the steps in order.
fn run_chain(config: &LaneConfig, runtime: &Runtime) -> ChainReport {
    let chain = Step::chain(config.lane);
    let processors = match preflight(config) {
        Ok(processors) => processors,
        Err(error) => {
            return ChainReport {
                processors: Vec::new(),
                steps: chain
                    .iter()
                    .map(|&step| StepOutcome::new(step, Status::NotRun))
                    .collect(),
                error: Some(error),
            };
        }
    };
    let context = ChainContext {
        config,
        runtime,
        processors: &processors,
    };
    let mut steps = Vec::new();
    let mut stopped: Option<CanonError> = None;
    for &step in chain {
        let selected = match (&config.main, step.main_step()) {
            (Some(main), Some(main_step)) => (main.from..=main.until).contains(&main_step),
            _ => true,
        };
        if !selected || stopped.is_some() {
            let status = if selected {
                Status::Skipped
            } else {
                Status::NotRun
            };
            steps.push(StepOutcome::new(step, status));
            continue;
        }
        tracing::info!(event = "lane.step.start", lane = %config.lane, step = step.name());
        let started = Instant::now();
        let result = context.run_step(step);
        let duration = started.elapsed();
        let duration_ms = millis(duration);
        let mut outcome = StepOutcome::new(step, Status::Settled);
        outcome.duration = Some(duration);
        match result {
            Ok(report) => {
                tracing::info!(
                    event = "lane.step.settle",
                    lane = %config.lane,
                    step = step.name(),
                    summary = %report.summary,
                    duration_ms,
                );
                outcome.report = Some(report);
            }
            Err(error) => {
                tracing::error!(
                    event = "lane.step.fail",
                    lane = %config.lane,
                    step = step.name(),
                    code = %error.code(),
                    message = %error.message(),
                    duration_ms,
                );
                outcome.status = Status::Failed;
                outcome.error = Some(error.clone());
                stopped = Some(error);
            }
        }
        steps.push(outcome);
    }
    ChainReport {
        processors,
        steps,
        error: stopped,
    }
}

/// The lane named by `--lane` / `PROCTOR_LANE` agrees, the step range is ordered, and the
/// processors exist; returns them.
fn preflight(config: &LaneConfig) -> Result<Vec<ProcessorRef>, CanonError> {
    if let Some(selected) = config.selected_lane
        && selected != config.lane
    {
        return Err(CanonError::new(
            ErrorCode::Lane,
            format!(
                "this job is in the {selected} lane (--lane or PROCTOR_LANE) but the command is `proctor lane {}`",
                config.lane
            ),
        ));
    }
    if let Some(main) = &config.main
        && main.from > main.until
    {
        return Err(CanonError::new(
            ErrorCode::Lane,
            format!(
                "--from {} comes after --until {}",
                step_flag(main.from),
                step_flag(main.until)
            ),
        ));
    }
    let registry = Registry::load(&config.registry_root)?;
    if config.processor_refs.is_empty() {
        return Ok(registry
            .iter()
            .map(|entry| entry.spec().processor_ref.clone())
            .collect());
    }
    let mut processors: Vec<ProcessorRef> = Vec::new();
    for raw in &config.processor_refs {
        let processor_ref = registry.get(&raw.parse()?)?.spec().processor_ref.clone();
        if !processors.contains(&processor_ref) {
            processors.push(processor_ref);
        }
    }
    Ok(processors)
}

/// How `--from` / `--until` spell a main step.
fn step_flag(step: MainStep) -> &'static str {
    match step {
        MainStep::BuildPin => Step::BuildPin.name(),
        MainStep::Acceptance => Step::Acceptance.name(),
        MainStep::Deploy => Step::Deploy.name(),
        MainStep::Drift => Step::Drift.name(),
    }
}

/// What every step works with.
struct ChainContext<'a> {
    config: &'a LaneConfig,
    runtime: &'a Runtime,
    processors: &'a [ProcessorRef],
}

/// One smoke run that passed its checks.
struct CheckedRun {
    envelope: SuccessEnvelope,
    receipt: Receipt,
    /// `(path below the write prefix, cid)` of each output.
    outputs: Vec<(String, String)>,
}

impl ChainContext<'_> {
    fn run_step(&self, step: Step) -> Result<StepReport, CanonError> {
        match step {
            Step::Smoke => self.smoke(Lane::Pr),
            Step::Acceptance => self.smoke(Lane::Main),
            Step::BuildPin => self.build_pin(self.main()?),
            Step::Deploy => self.deploy(self.main()?),
            Step::Drift => self.drift(),
        }
    }

    fn main(&self) -> Result<&MainLaneConfig, CanonError> {
        self.config
            .main
            .as_ref()
            .ok_or_else(|| CanonError::new(ErrorCode::Lane, "this step belongs to the main lane"))
    }

    /// The registry entries of the chain's processors, read afresh (Build & Pin changes
    /// them).
    fn specs(&self) -> Result<Vec<(ProcessorSpec, PathBuf)>, CanonError> {
        let registry = Registry::load(&self.config.registry_root)?;
        self.processors
            .iter()
            .map(|processor_ref| {
                let entry = registry.get(processor_ref)?;
                Ok((entry.spec().clone(), entry.file()))
            })
            .collect()
    }

    fn show_progress(&self) -> bool {
        self.config.format == OutputFormat::Human
    }

    /// Build & Pin: each processor built for both platforms, pushed, and pinned by the
    /// digest of that push.
    fn build_pin(&self, main: &MainLaneConfig) -> Result<StepReport, CanonError> {
        let registry = Registry::load(&self.config.registry_root)?;
        let mut processors = Vec::new();
        for processor_ref in self.processors {
            let entry = registry.get(processor_ref)?;
            let built = build_layout(
                entry,
                &Platform::ALL,
                &main.oci_root,
                &main.workspace_root,
                self.show_progress(),
            )?;
            let pushed = self.runtime.block_on(proctor_oci::push(
                &built.layout_dir,
                &main.registry,
                self.show_progress(),
            ))?;
            let file = entry.file();
            let pins = self
                .runtime
                .block_on(proctor_oci::pin(&file, &pushed.index_source()))?;
            tracing::info!(
                event = "lane.build_pin.pinned",
                r#ref = %processor_ref,
                index = %pins.index,
                file = %file.display(),
            );
            processors.push(json!({
                "ref": processor_ref,
                "file": file,
                "built": built_json(processor_ref, &built),
                "pushed": pushed_json(&pushed),
                "pins": pins_json(&pins),
            }));
        }
        Ok(StepReport {
            summary: format!(
                "{} built for linux/amd64 and linux/arm64, pushed to {} and pinned",
                list(self.processors),
                main.registry
            ),
            processors,
        })
    }

    /// Smoke (pr) or Acceptance (main): two mock runs of each processor's smoke inputs,
    /// checked one by one and against each other.
    fn smoke(&self, lane: Lane) -> Result<StepReport, CanonError> {
        let mut processors = Vec::new();
        for (spec, file) in self.specs()? {
            let processor_ref = &spec.processor_ref;
            let inputs = &spec
                .examples
                .get(SMOKE_EXAMPLE)
                .ok_or_else(|| {
                    acceptance(format!(
                        "{processor_ref} has no examples.{SMOKE_EXAMPLE} in {}",
                        file.display()
                    ))
                })?
                .inputs;
            let expected_digest = match lane {
                Lane::Main => Some(pinned_digest(&spec)?),
                Lane::Pr => None,
            };
            let first = self.smoke_run(lane, processor_ref, inputs)?;
            let second = self.smoke_run(lane, processor_ref, inputs)?;
            let digest = &first.envelope.meta.image_digest;
            if let Some(expected) = &expected_digest
                && digest != expected
            {
                return Err(acceptance(format!(
                    "{processor_ref} ran image {digest}, not the pinned {expected}"
                )));
            }
            check_stable(processor_ref, &first, &second)?;
            processors.push(json!({
                "ref": processor_ref,
                "image_digest": digest,
                "executions": [first.envelope.execution_id, second.envelope.execution_id],
                "outputs": first.outputs.len(),
            }));
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
            processors,
        })
    }

    /// One `proctor run --lane <lane> --adapter local --mode mock …` of `inputs`, with its
    /// evidence checked.
    fn smoke_run(
        &self,
        lane: Lane,
        processor_ref: &ProcessorRef,
        inputs: &Value,
    ) -> Result<CheckedRun, CanonError> {
        let template = format!(
            "/artifacts/lane/{lane}/{}-{}/{{execution_id}}",
            processor_ref.image_name(),
            processor_ref.version()
        );
        let run_config = self.run_config(lane, processor_ref, inputs, &template)?;
        let outcome = crate::run::run(&run_config);
        match outcome.envelope {
            Envelope::Success(envelope) => check_evidence(
                &self.config.artifacts_root,
                processor_ref,
                &template,
                envelope,
            ),
            Envelope::Error(error) => {
                Err(run_error(processor_ref, &error.execution_id, &error.error))
            }
        }
    }

    /// The configuration of a smoke run, made by the `run` parser from the flags the run
    /// is documented as, so that it is exactly that command — every flag `run` has and
    /// this module does not name keeps its default.
    fn run_config(
        &self,
        lane: Lane,
        processor_ref: &ProcessorRef,
        inputs: &Value,
        write_prefix: &str,
    ) -> Result<RunConfig, CanonError> {
        let mut argv: Vec<std::ffi::OsString> = [
            "proctor",
            "run",
            "--lane",
            lane.as_str(),
            "--adapter",
            "local",
            "--mode",
            "mock",
            "--json",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let processor_ref = processor_ref.to_string();
        let inputs = inputs.to_string();
        let options = self.config.adapter_options.to_string();
        for (flag, value) in [
            ("--ref", processor_ref.as_str()),
            ("--write-prefix", write_prefix),
            ("--inputs-json", inputs.as_str()),
            ("--adapter-opts-json", options.as_str()),
        ] {
            argv.extend([flag.into(), value.into()]);
        }
        for (flag, dir) in [
            ("--registry-root", &self.config.registry_root),
            ("--artifacts-root", &self.config.artifacts_root),
        ] {
            argv.extend([flag.into(), dir.as_os_str().to_owned()]);
        }
        if lane == Lane::Pr {
            argv.push("--build".into());
        }
        let internal = |why: String| {
            CanonError::new(
                ErrorCode::Lane,
                format!("internal: cannot form the smoke run of {processor_ref}: {why}"),
            )
        };
        let cli =
            <Cli as clap::Parser>::try_parse_from(argv).map_err(|e| internal(e.to_string()))?;
        match cli.into_config().map_err(|e| internal(format!("{e:#}")))? {
            Config::Run(run) => Ok(*run),
            _ => Err(internal("the parser gave another command".to_owned())),
        }
    }

    /// Deploy: every pinned processor to the configured target. A target with no endpoint
    /// convention (no workspace or base URL) or no usable `modal` client is
    /// `ERR_DEPLOY_TARGET`, before anything is written.
    fn deploy(&self, main: &MainLaneConfig) -> Result<StepReport, CanonError> {
        let env = host_env();
        let target = ModalTarget::from_env(&env)?;
        let specs = self.specs()?;
        let mut missing = Vec::new();
        if let Some((spec, _)) = specs.first()
            && let Err(error) = Endpoint::resolve(&spec.processor_ref, &target)
        {
            missing.push(error.detail().to_owned());
        }
        let cli = ModalCli::discover(&env).map_err(|error| missing.push(error.detail().to_owned()));
        let cli = match (cli, missing.is_empty()) {
            (Ok(cli), true) => cli,
            _ => {
                return Err(CanonError::new(
                    ErrorCode::DeployTarget,
                    format!(
                        "{}; once one is, `proctor lane main --from deploy` deploys the pins",
                        missing.join("; ")
                    ),
                ));
            }
        };
        let apps = specs
            .iter()
            .map(|(spec, _)| generate_app(spec, &target, &env))
            .collect::<Result<Vec<_>, _>>()?;
        let mut processors = Vec::new();
        for app in apps {
            let file = app.write(&main.project_root)?;
            let deployment = self.runtime.block_on(cli.deploy(&app, &file, &target))?;
            processors.push(json!({
                "ref": app.processor_ref,
                "app": deployment.app,
                "tag": deployment.tag,
                "file": file,
                "image_digest": app.image_digest,
            }));
        }
        Ok(StepReport {
            summary: format!("{} deployed to modal", list(self.processors)),
            processors,
        })
    }

    /// Drift: each deployment's `/healthz` digest against its pin.
    fn drift(&self) -> Result<StepReport, CanonError> {
        let env = host_env();
        let target = ModalTarget::from_env(&env)?;
        let auth = ProxyAuth::from_env(&env)?;
        let specs: Vec<ProcessorSpec> = self.specs()?.into_iter().map(|(spec, _)| spec).collect();
        let client = reqwest::Client::builder().build().map_err(|error| {
            CanonError::new(
                ErrorCode::ModalInvocation,
                format!("cannot build the HTTP client: {error}"),
            )
        })?;
        let rows = self.runtime.block_on(check_drift(
            &specs,
            &target,
            auth.as_ref(),
            &client,
            DRIFT_TIMEOUT,
        ))?;
        drift_verdict(&rows)?;
        Ok(StepReport {
            summary: format!("{}: deployments run their pins", list(self.processors)),
            processors: rows.iter().map(|row| json!(row)).collect(),
        })
    }
}

/// `ERR_ACCEPTANCE` with `detail`.
fn acceptance(detail: String) -> CanonError {
    CanonError::new(ErrorCode::Acceptance, detail)
}

/// A smoke run's own error, kept under its code, naming the processor and execution.
fn run_error(processor_ref: &ProcessorRef, execution_id: &str, error: &ErrorBody) -> CanonError {
    let detail = error
        .message
        .strip_prefix(error.code.fragment())
        .map(|rest| rest.trim_start_matches(": "))
        .unwrap_or(&error.message);
    CanonError::new(
        error.code,
        format!("{processor_ref} smoke run {execution_id}: {detail}"),
    )
}

/// The `sha256:…` the host platform's pin names.
fn pinned_digest(spec: &ProcessorSpec) -> Result<String, CanonError> {
    let reference = pinned_reference(spec, host_platform()?)?;
    Ok(reference
        .rsplit_once('@')
        .map_or(reference.as_str(), |(_, digest)| digest)
        .to_owned())
}

/// The bytes of the host file behind an `/artifacts/…` world path, or why they cannot be
/// read.
fn read_evidence(artifacts_root: &Path, path: &WorldPath) -> Result<Vec<u8>, String> {
    let below = path
        .relative()
        .strip_prefix("artifacts/")
        .ok_or_else(|| format!("`{path}` is not under /artifacts/"))?;
    let file = artifacts_root.join(below);
    std::fs::read(&file).map_err(|e| format!("cannot read {path} ({}): {e}", file.display()))
}

/// Checks what a successful run left: the index at its place under the write prefix and
/// equal to the envelope's outputs, every output's size and CID, and both receipts present,
/// byte-identical and agreeing with the envelope.
fn check_evidence(
    artifacts_root: &Path,
    processor_ref: &ProcessorRef,
    template: &str,
    envelope: SuccessEnvelope,
) -> Result<CheckedRun, CanonError> {
    let id = envelope.execution_id.clone();
    let fail = |what: String| acceptance(format!("{processor_ref} execution {id}: {what}"));
    let prefix = WritePrefix::expand(template, &id)?;
    if envelope.index_path != prefix.index_path() {
        return Err(fail(format!(
            "index_path {} is not {}",
            envelope.index_path,
            prefix.index_path()
        )));
    }
    let index = OutputsIndex::from_bytes(
        &read_evidence(artifacts_root, &envelope.index_path).map_err(fail)?,
    )
    .map_err(|e| fail(format!("outputs index: {}", e.message())))?;
    if index.outputs != envelope.outputs {
        return Err(fail(
            "the outputs index differs from the envelope".to_owned(),
        ));
    }
    let mut outputs = Vec::new();
    for output in &envelope.outputs {
        let bytes = read_evidence(artifacts_root, &output.path).map_err(fail)?;
        if bytes.len() as u64 != output.size_bytes || cid(&bytes) != output.cid {
            return Err(fail(format!(
                "{} does not match its size and cid",
                output.path
            )));
        }
        let below = output
            .path
            .as_str()
            .strip_prefix(prefix.as_str())
            .ok_or_else(|| fail(format!("{} is not under the write prefix", output.path)))?;
        outputs.push((below.to_owned(), output.cid.clone()));
    }
    let receipt_bytes = read_evidence(artifacts_root, &prefix.receipt_path()).map_err(fail)?;
    let execution_receipt = WorldPath::execution_receipt(&id)?;
    if read_evidence(artifacts_root, &execution_receipt).map_err(fail)? != receipt_bytes {
        return Err(fail(format!(
            "{} and {execution_receipt} differ",
            prefix.receipt_path()
        )));
    }
    let receipt: Receipt = serde_json::from_slice(&receipt_bytes)
        .map_err(|e| fail(format!("receipt.json is not a receipt: {e}")))?;
    let agrees = receipt.execution_id == id
        && receipt.processor_ref == *processor_ref
        && receipt.image_digest == envelope.meta.image_digest
        && receipt.env_fingerprint == envelope.meta.env_fingerprint
        && receipt.outputs_index == envelope.index_path
        && receipt.mode == Mode::Mock;
    if !agrees {
        return Err(fail(
            "the receipt disagrees with the envelope (id, ref, image, fingerprint, index or mode)"
                .to_owned(),
        ));
    }
    Ok(CheckedRun {
        envelope,
        receipt,
        outputs,
    })
}

/// Two runs of the same inputs: same outputs below their prefixes, same CIDs, same stable
/// receipt part.
fn check_stable(
    processor_ref: &ProcessorRef,
    first: &CheckedRun,
    second: &CheckedRun,
) -> Result<(), CanonError> {
    let ids = format!(
        "executions {} and {}",
        first.envelope.execution_id, second.envelope.execution_id
    );
    if first.outputs != second.outputs {
        return Err(acceptance(format!(
            "{processor_ref}: mock outputs are not byte-stable across {ids}"
        )));
    }
    if first.receipt.stable_part() != second.receipt.stable_part() {
        return Err(acceptance(format!(
            "{processor_ref}: the stable parts of the receipts of {ids} differ"
        )));
    }
    Ok(())
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

/// The process environment, UTF-8 variables only: the deploy target, the `modal` client's
/// credentials and the proxy-auth tokens come from it.
fn report_json(config: &LaneConfig, report: &ChainReport) -> Value {
    let steps: Vec<Value> = report
        .steps
        .iter()
        .map(|outcome| {
            json!({
                "step": outcome.step.name(),
                "status": outcome.status.as_str(),
                "duration_ms": outcome.duration.map(millis),
                "summary": outcome.report.as_ref().map(|r| &r.summary),
                "processors": outcome.report.as_ref().map(|r| &r.processors),
                "error": outcome.error.as_ref().map(error_json),
            })
        })
        .collect();
    json!({
        "lane": config.lane.as_str(),
        "registry": config.main.as_ref().map(|main| main.registry.to_string()),
        "processors": report.processors,
        "steps": steps,
        "error": report.error.as_ref().map(error_json),
    })
}

fn report_text(config: &LaneConfig, report: &ChainReport) -> String {
    let mut text = format!("lane {}: {}", config.lane, list(&report.processors));
    if let Some(main) = &config.main {
        text.push_str(&format!(" (registry {})", main.registry));
    }
    text.push('\n');
    let rows: Vec<[String; 4]> = report
        .steps
        .iter()
        .map(|outcome| {
            let detail = match (&outcome.report, &outcome.error, outcome.status) {
                (Some(report), _, _) => report.summary.clone(),
                (_, Some(error), _) => error.code().to_string(),
                (_, _, Status::Skipped) => "not reached: an earlier step failed".to_owned(),
                _ => "-".to_owned(),
            };
            [
                outcome.step.name().to_owned(),
                outcome.status.as_str().to_owned(),
                outcome
                    .duration
                    .map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
                detail,
            ]
        })
        .collect();
    text.push_str(&table(["STEP", "STATUS", "TIME", "DETAIL"], &rows));
    if let Some(error) = &report.error {
        text.push_str(&format!("error: {error}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use proctor_contract::{OutputEntry, SuccessMeta};

    use super::*;

    const TEMPLATE: &str = "/artifacts/lane/pr/text-stats-1/{execution_id}";

    /// Writes the evidence of a mock run of `text/stats@1` with `outputs` under an artifacts
    /// root, as the SDK does, and returns its envelope.
    fn write_run(root: &Path, id: &str, outputs: &[(&str, &[u8])]) -> SuccessEnvelope {
        let prefix = WritePrefix::expand(TEMPLATE, id).unwrap();
        let index = OutputsIndex::build(outputs.iter().map(|(name, bytes)| {
            (
                prefix.output_path(name).unwrap().to_string(),
                cid(bytes),
                bytes.len() as u64,
                "text/plain".to_owned(),
            )
        }))
        .unwrap();
        let write = |path: &WorldPath, bytes: &[u8]| {
            let file = root.join(path.relative().strip_prefix("artifacts/").unwrap());
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, bytes).unwrap();
        };
        for (name, bytes) in outputs {
            write(&prefix.output_path(name).unwrap(), bytes);
        }
        write(&prefix.index_path(), &index.to_bytes());
        let meta = SuccessMeta {
            image_digest: "sha256:ab".to_owned(),
            env_fingerprint: "image_digest=sha256:ab;mode=mock".to_owned(),
            duration_ms: 3,
            mode: Mode::Mock,
        };
        let receipt = Receipt {
            execution_id: id.to_owned(),
            processor_ref: "text/stats@1".parse().unwrap(),
            image_digest: meta.image_digest.clone(),
            env_fingerprint: meta.env_fingerprint.clone(),
            inputs_hash: "00".to_owned(),
            hash_schema: "jcs-blake3-v1".to_owned(),
            outputs_index: prefix.index_path(),
            processor_info: "stats".to_owned(),
            usage: Default::default(),
            timestamp_utc: format!("2025-01-01T00:00:0{}Z", id.len() % 10),
            duration_ms: 3,
            mode: Mode::Mock,
        };
        write(&prefix.receipt_path(), &receipt.to_bytes());
        write(
            &WorldPath::execution_receipt(id).unwrap(),
            &receipt.to_bytes(),
        );
        match Envelope::success(id, index.outputs, prefix.index_path(), meta) {
            Envelope::Success(success) => success,
            Envelope::Error(_) => unreachable!(),
        }
    }

    fn checked(root: &Path, envelope: SuccessEnvelope) -> Result<CheckedRun, CanonError> {
        check_evidence(root, &"text/stats@1".parse().unwrap(), TEMPLATE, envelope)
    }

    #[test]
    fn complete_evidence_of_two_equal_runs_passes() {
        let root = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8])] = &[("stats.json", b"{}"), ("a/b.txt", b"x")];
        let first = checked(root.path(), write_run(root.path(), "e1", files)).unwrap();
        let second = checked(root.path(), write_run(root.path(), "e22", files)).unwrap();
        assert_eq!(first.outputs[0], ("outputs/a/b.txt".to_owned(), cid(b"x")));
        check_stable(&"text/stats@1".parse().unwrap(), &first, &second).unwrap();

        let other = checked(
            root.path(),
            write_run(
                root.path(),
                "e3",
                &[("stats.json", b"{ }"), ("a/b.txt", b"x")],
            ),
        )
        .unwrap();
        let err = check_stable(&"text/stats@1".parse().unwrap(), &first, &other).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Acceptance);
        assert!(err.message().contains("not byte-stable"), "{err}");
    }

    #[test]
    fn missing_or_tampered_evidence_fails_acceptance() {
        let root = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8])] = &[("stats.json", b"{}")];
        let expect = |envelope: SuccessEnvelope, what: &str| {
            let err = checked(root.path(), envelope).err().unwrap();
            assert_eq!(err.code(), ErrorCode::Acceptance, "{err}");
            assert!(
                err.message()
                    .starts_with("acceptance check failed: text/stats@1")
            );
            assert!(err.message().contains(what), "{what}: {err}");
        };
        let envelope = write_run(root.path(), "e1", files);
        std::fs::write(
            root.path()
                .join("lane/pr/text-stats-1/e1/outputs/stats.json"),
            b"{\n}",
        )
        .unwrap();
        expect(envelope, "does not match its size and cid");

        let envelope = write_run(root.path(), "e2", files);
        std::fs::write(root.path().join("execution/e2/receipt.json"), b"{}").unwrap();
        expect(envelope, "differ");

        let envelope = write_run(root.path(), "e3", files);
        std::fs::remove_file(root.path().join("lane/pr/text-stats-1/e3/outputs.json")).unwrap();
        expect(
            envelope,
            "cannot read /artifacts/lane/pr/text-stats-1/e3/outputs.json",
        );

        let mut envelope = write_run(root.path(), "e4", files);
        envelope.outputs.push(OutputEntry {
            mime: "text/plain".to_owned(),
            ..envelope.outputs[0].clone()
        });
        expect(envelope, "index differs from the envelope");

        let mut envelope = write_run(root.path(), "e5", files);
        envelope.meta.image_digest = "sha256:cd".to_owned();
        expect(envelope, "the receipt disagrees");
    }

    #[test]
    fn a_run_error_keeps_its_code_and_names_the_run() {
        let body = ErrorBody {
            code: ErrorCode::AdapterInvocation,
            message: "adapter invocation failed: pulling x failed".to_owned(),
        };
        let err = run_error(&"text/stats@1".parse().unwrap(), "e1", &body);
        assert_eq!(err.code(), ErrorCode::AdapterInvocation);
        assert_eq!(
            err.message(),
            "adapter invocation failed: text/stats@1 smoke run e1: pulling x failed"
        );
    }

    #[test]
    fn chains_and_step_names() {
        assert_eq!(Step::chain(Lane::Pr), &[Step::Smoke]);
        let main: Vec<&str> = Step::chain(Lane::Main).iter().map(|s| s.name()).collect();
        assert_eq!(main, ["build-pin", "acceptance", "deploy", "drift"]);
        for step in Step::chain(Lane::Main) {
            assert_eq!(step_flag(step.main_step().unwrap()), step.name());
        }
    }
}
