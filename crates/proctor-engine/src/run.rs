//! One execution: every check in its fixed order, each before any later work, then the
//! adapter, the evidence check and commit, and the ledger record.
//!
//! Order: CI guard → lane rules ([`crate::check_run`]) → ref → registry → timeout (at most
//! [`MAX_RUN_TIMEOUT`]) → inputs (the payload from its source or the registry's examples,
//! with `params` set on top ([`crate::inputs`]), then attachments stored and input
//! artifacts checked ([`crate::attach`]), then schema) → secrets (`real` only) → write prefix (apart
//! from every input artifact) → image source (pinned digest unless
//! `build`) → memo lookup (when asked: a verified earlier result answers the run, see
//! [`crate::memo`]) → payload → ledger (start, budget reservation, write-prefix lease; see
//! [`crate::record`]) → adapter → evidence ([`crate::evidence`]) → `save_dir`
//! ([`crate::save`]) → settle.
//! Every run logs `execution.start` and then exactly one of `execution.settle` or
//! `execution.fail`. Every string that leaves a run (the envelope, log lines, ledger
//! payloads) goes through a redactor that knows the values of the run's secrets.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use proctor_adapters::{
    Adapter, DockerfileBuilds, ImageSource, Invocation, LocalAdapter, ModalAdapter, ResponseLimits,
    Staging, host_platform,
};
use proctor_contract::{
    ArtifactRef, CanonError, Envelope, ErrorCode, Mode, PAYLOAD_SCHEMA, ProcessorRef, Progress,
    Redactor, RunPayload, UpstreamOutput, WritePrefix, ci_guard,
};
use proctor_deploy::ModalTarget;
use proctor_ledger::Ledger;
use proctor_registry::{
    ProcessorSpec, RegistryCache, Runtime, check_secrets, pinned_image, validate_inputs,
};
use proctor_store::{ArtifactStore, FsStore};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::inputs::{Inputs, resolve_inputs};
use crate::lane::{Lane, check_run};

/// The adapter that runs a request; `local` or `modal` in plan files and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// The Docker engine on this machine.
    Local,
    /// A pinned image deployed on Modal.
    Modal,
}

impl AdapterKind {
    /// Every adapter, in the order help texts list them.
    pub const ALL: [AdapterKind; 2] = [AdapterKind::Local, AdapterKind::Modal];

    /// The adapter's name, `local` or `modal`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Local => "local",
            AdapterKind::Modal => "modal",
        }
    }
}

impl FromStr for AdapterKind {
    type Err = String;

    fn from_str(name: &str) -> Result<AdapterKind, String> {
        AdapterKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| format!("unknown adapter `{name}`; expected local or modal"))
    }
}

/// Everything one execution needs besides the World it runs in.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The processor, `ns/name@version`, as given; parsed after the CI guard.
    pub processor_ref: String,
    /// Which adapter runs it.
    pub adapter: AdapterKind,
    /// `mock` or `real`, always explicit.
    pub mode: Mode,
    /// Build the image from source and run it by image ID instead of the pinned digest.
    pub build: bool,
    /// The write prefix before expansion; must contain `{execution_id}`. `None`: the ref's
    /// default, `/artifacts/outputs/{ns}/{name}/{version}/{execution_id}/`
    /// ([`ProcessorRef::default_write_prefix`]).
    pub write_prefix: Option<String>,
    /// The inputs payload.
    pub inputs: Inputs,
    /// Keys set in the payload's `params` object over what `inputs` holds, as `-i key=value`
    /// gives them: each value is read as JSON when it is JSON, else taken as a string.
    pub params: BTreeMap<String, String>,
    /// Adapter-specific options (`null` for none).
    pub adapter_options: Value,
    /// Overrides the processor's `runtime.timeout_s`.
    pub timeout: Option<Duration>,
    /// Where to copy the committed outputs and index, mirroring world paths.
    pub save_dir: Option<PathBuf>,
    /// The ledger plan that records the run.
    pub plan: String,
    /// The budget reserved before the adapter is called, in micro-USD.
    pub reserve_micro_usd: u64,
    /// The lane whose rules the run follows.
    pub lane: Option<Lane>,
    /// The upstream outputs the inputs were resolved from, named in the payload and the
    /// receipt; empty outside a plan.
    pub upstream: Vec<UpstreamOutput>,
    /// The files the inputs refer to as `{"$attach": NAME}`, stored in the World before the
    /// run ([`crate::attach`]).
    pub attachments: Vec<crate::Attachment>,
    /// Answer the run from the memo cache when an earlier successful execution with the
    /// same memo key still verifies (local adapter only; see [`crate::memo`]).
    pub memo: bool,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The processor's envelope, or one built for the error that ended the run; redacted.
    pub envelope: Envelope,
    /// Where `save_dir` put the outputs, when it was given and the run succeeded.
    pub saved_to: Option<PathBuf>,
}

impl RunOutcome {
    /// 0 for a success, the code's exit code for an error envelope.
    pub fn exit_code(&self) -> i32 {
        match &self.envelope {
            Envelope::Success(_) => 0,
            Envelope::Error(error) => error.error.code.exit_code(),
        }
    }

    /// Whether the run ended because it was cancelled (`ERR_INTERRUPTED`).
    pub fn was_interrupted(&self) -> bool {
        matches!(&self.envelope, Envelope::Error(error) if error.error.code == ErrorCode::Interrupted)
    }
}

/// The longest a run may be given, from `--timeout` or `runtime.timeout_s`: 7 days. Longer
/// is refused before any ledger work, so every deadline and lease stays representable.
pub const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(Runtime::MAX_TIMEOUT_S);

/// Where executions run and what they share: the registry, the World's store, the ledger
/// and the host environment.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The directory holding `processors/`-style registry entries.
    pub registry_root: PathBuf,
    /// The filesystem World (`/artifacts` on the host).
    pub artifacts_root: PathBuf,
    /// The ledger, `sqlite://…` or `postgres://…`.
    pub ledger_url: String,
    /// The host environment: `CI`, secrets, pass-through variables, Modal settings.
    pub env: BTreeMap<String, String>,
    /// Bounds on what a run reads from its caller.
    pub limits: Limits,
}

/// Bounds on what a run reads from its caller and from its processor, each checked before
/// any work with what it bounds; every refusal names the limit and the flag that raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest inputs payload, in bytes, read from `--inputs-json` or `--inputs-file`
    /// (default [`Limits::DEFAULT_MAX_INPUTS_BYTES`]); a larger one is `ERR_INPUTS`.
    pub max_inputs_bytes: u64,
    /// The largest envelope and `/healthz` answers read from the processor; a larger one
    /// is the adapter's error.
    pub responses: ResponseLimits,
    /// The largest staged output file, in bytes (default
    /// [`Limits::DEFAULT_MAX_OUTPUT_BYTES`]); a larger one is `ERR_EVIDENCE`.
    pub max_output_bytes: u64,
    /// The largest sum of one execution's staged output files, in bytes (default
    /// [`Limits::DEFAULT_MAX_OUTPUTS_TOTAL_BYTES`]); a larger one is `ERR_EVIDENCE`.
    pub max_outputs_total_bytes: u64,
    /// The most output files one execution may stage (default
    /// [`Limits::DEFAULT_MAX_OUTPUTS`]); more is `ERR_EVIDENCE`.
    pub max_outputs: u64,
    /// The largest attached file, in bytes (default
    /// [`Limits::DEFAULT_MAX_ATTACHMENT_BYTES`]); a larger one is `ERR_INPUTS`.
    pub max_attachment_bytes: u64,
}

impl Limits {
    /// 8 MiB.
    pub const DEFAULT_MAX_INPUTS_BYTES: u64 = 8 * 1024 * 1024;
    /// 256 MiB.
    pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;
    /// 1 GiB.
    pub const DEFAULT_MAX_OUTPUTS_TOTAL_BYTES: u64 = 1024 * 1024 * 1024;
    /// 10 000 files.
    pub const DEFAULT_MAX_OUTPUTS: u64 = 10_000;
    /// 256 MiB.
    pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 256 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_inputs_bytes: Limits::DEFAULT_MAX_INPUTS_BYTES,
            responses: ResponseLimits::default(),
            max_output_bytes: Limits::DEFAULT_MAX_OUTPUT_BYTES,
            max_outputs_total_bytes: Limits::DEFAULT_MAX_OUTPUTS_TOTAL_BYTES,
            max_outputs: Limits::DEFAULT_MAX_OUTPUTS,
            max_attachment_bytes: Limits::DEFAULT_MAX_ATTACHMENT_BYTES,
        }
    }
}

/// What a run's checks resolved before any work ([`Engine::admit`]).
struct Admitted {
    processor_ref: ProcessorRef,
    spec: ProcessorSpec,
    timeout: Duration,
    inputs: Value,
    artifacts: Vec<ArtifactRef>,
    env: BTreeMap<String, String>,
    write_prefix: WritePrefix,
    image: ImageSource,
}

/// Runs executions against one World. Cheap to share behind an [`Arc`]; the ledger and the
/// container engine are connected on first use.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    store: Arc<dyn ArtifactStore>,
    /// Why the World's store named by `PROCTOR_STORE_URL` could not be opened; every run
    /// is refused with it.
    store_error: Option<CanonError>,
    /// `PROCTOR_STORE_URL`, when it names the World's store instead of the artifacts root.
    world_store: Option<String>,
    ledger: OnceCell<Ledger>,
    local: std::sync::OnceLock<LocalAdapter>,
    warm_per_kind: Option<usize>,
    /// The build arguments of Dockerfile builds (`--build-arg`).
    build_args: BTreeMap<String, String>,
    /// The Cargo workspace that compiles a processor for a `build` run.
    cargo_workspace: PathBuf,
    /// Loaded again only when a `registry.yaml` changes, so runs do not each parse it.
    registry: RegistryCache,
    /// Where image builds, pulls, pushes and deploys report their progress.
    progress: Progress,
}

impl Engine {
    /// An engine over `config`; nothing is opened yet. Its World store is the one
    /// `PROCTOR_STORE_URL` names in `config.env` (e.g. `s3://bucket/prefix?endpoint=URL`,
    /// credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, as
    /// [`proctor_store::open_with_env`] reads them), where Modal runs write their evidence
    /// and local runs commit theirs; without it, the filesystem at `artifacts_root`.
    pub fn new(config: EngineConfig) -> Engine {
        let local: Arc<dyn ArtifactStore> = Arc::new(FsStore::new(&config.artifacts_root));
        let world_store = config
            .env
            .get(ModalTarget::ENV_WORLD_STORE)
            .filter(|location| !location.is_empty())
            .cloned();
        let world = world_store.as_deref().map(|location| {
            proctor_store::open_with_env(location, |name| {
                config.env.get(name).filter(|v| !v.is_empty()).cloned()
            })
        });
        let (store, store_error) = match world {
            None => (local, None),
            Some(Ok(world)) => (world, None),
            Some(Err(error)) => (local, Some(CanonError::from(error))),
        };
        Engine {
            cargo_workspace: workspace_root(&config.registry_root),
            config,
            store,
            store_error,
            world_store,
            ledger: OnceCell::new(),
            local: std::sync::OnceLock::new(),
            warm_per_kind: None,
            build_args: BTreeMap::new(),
            registry: RegistryCache::default(),
            progress: Progress::none(),
        }
    }

    /// This engine, reporting the progress of long work — a run's image build (the compile)
    /// or pull (its bytes), a lane's builds, pushes and deploys — to `progress`.
    pub fn with_progress(self, progress: Progress) -> Engine {
        Engine { progress, ..self }
    }

    /// Where long work reports its progress.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// This engine, building processors without `build.cargo_package` (`--build`) from
    /// their Dockerfile with these build arguments (`KEY` → `VALUE`, as `--build-arg`
    /// gives them), e.g. `BASE_IMAGE` naming a local base image.
    pub fn with_build_args(self, build_args: BTreeMap<String, String>) -> Engine {
        Engine { build_args, ..self }
    }

    /// This engine, compiling processors for `build` runs in the Cargo workspace at
    /// `cargo_workspace` (`--workspace-root`) instead of the one [`workspace_root`] finds
    /// above the registry root.
    pub fn with_cargo_workspace(self, cargo_workspace: PathBuf) -> Engine {
        Engine {
            cargo_workspace,
            ..self
        }
    }

    /// This engine, keeping local containers warm: a container serves later runs of the
    /// same image, mode, environment and adapter options, up to `per_kind` containers of
    /// each kind, until [`Engine::close`] removes them. For callers that start many runs
    /// (`plan apply`); each run keeps its own execution id, staging area, evidence check
    /// and ledger record. A processor whose `runtime.reuse` is `false` always gets a
    /// fresh container.
    pub fn with_warm_containers(self, per_kind: usize) -> Engine {
        Engine {
            warm_per_kind: Some(per_kind),
            ..self
        }
    }

    /// What the engine was made with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The World's store that committed evidence lives in.
    pub fn store(&self) -> &Arc<dyn ArtifactStore> {
        &self.store
    }

    /// The ledger, opened (and created when absent) on first use.
    pub async fn ledger(&self) -> Result<&Ledger, CanonError> {
        self.ledger
            .get_or_try_init(|| async {
                Ledger::open(&self.config.ledger_url)
                    .await
                    .map_err(CanonError::from)
            })
            .await
    }

    /// Removes the warm containers, then closes the ledger's connections.
    pub async fn close(self) {
        self.close_warm().await;
        if let Some(ledger) = self.ledger.into_inner() {
            ledger.close().await;
        }
    }

    /// Removes the warm containers, for an owner that shares the engine and so cannot
    /// [`Engine::close`] it; the ledger's connections close when the last owner drops it.
    pub async fn close_warm(&self) {
        if let Some(local) = self.local.get() {
            local.close_warm().await;
        }
    }

    fn env(&self, name: &str) -> Option<&str> {
        self.config.env.get(name).map(String::as_str)
    }

    /// Runs one execution; never fails outright: every failure becomes an error envelope.
    /// The future is `Send`, so a server can spawn runs on a multi-threaded runtime.
    pub async fn run(&self, request: &RunRequest, cancel: &CancellationToken) -> RunOutcome {
        self.run_as(&Engine::new_execution_id(), request, cancel)
            .await
    }

    /// A fresh execution id (a random UUID), for a caller that must name an execution
    /// before it runs, as a server answering a submission does.
    pub fn new_execution_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// [`Engine::run`] under `execution_id`, which the caller made with
    /// [`Engine::new_execution_id`] and uses for no other run.
    pub async fn run_as(
        &self,
        execution_id: &str,
        request: &RunRequest,
        cancel: &CancellationToken,
    ) -> RunOutcome {
        let execution_id = execution_id.to_owned();
        let started = Instant::now();
        tracing::info!(
            event = "execution.start",
            execution_id = %execution_id,
            r#ref = %request.processor_ref,
            mode = %request.mode,
            adapter = request.adapter.as_str(),
        );
        let mut redactor = proctor_telemetry::known_secrets().redactor();
        let executed =
            AssertUnwindSafe(self.execute(request, &execution_id, &mut redactor, cancel))
                .catch_unwind()
                .await;
        let result = match executed {
            Ok(result) => result,
            // A panic still ends in an envelope and a settled ledger: the run's container
            // removed, its lease and reservation released.
            Err(panic) => {
                let error = crate::recover::panic_error(panic.as_ref());
                crate::recover::settle_panicked(self, &execution_id, &error).await;
                Err(error)
            }
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (envelope, saved_to) = match result {
            Ok(done) => done,
            Err(error) => (
                Envelope::error(&execution_id, &error, request.mode, duration_ms, None),
                None,
            ),
        };
        let envelope = redacted(envelope, &redactor);
        match &envelope {
            Envelope::Success(success) => tracing::info!(
                event = "execution.settle",
                execution_id = %execution_id,
                r#ref = %request.processor_ref,
                mode = %request.mode,
                adapter = request.adapter.as_str(),
                index_path = %success.index_path,
                outputs = success.outputs.len(),
                duration_ms,
            ),
            Envelope::Error(error) => tracing::error!(
                event = "execution.fail",
                execution_id = %execution_id,
                r#ref = %request.processor_ref,
                mode = %request.mode,
                adapter = request.adapter.as_str(),
                code = %error.error.code,
                message = %error.error.message,
                duration_ms,
            ),
        }
        RunOutcome { envelope, saved_to }
    }

    /// Every check a run makes before any work, in the run's order — CI guard, lane rules,
    /// ref, registry, timeout, inputs (attachments stored), schema, secrets, write prefix,
    /// image source — for a caller that refuses a bad request at once rather than in its
    /// envelope, as a server answering a submission does. [`Engine::run_as`] makes the same
    /// checks again; nothing is recorded and no container is started.
    pub async fn admit(&self, request: &RunRequest, execution_id: &str) -> Result<(), CanonError> {
        self.admission(request, execution_id).await.map(drop)
    }

    /// The checks before any work, in order, and what they resolved.
    async fn admission(
        &self,
        request: &RunRequest,
        execution_id: &str,
    ) -> Result<Admitted, CanonError> {
        ci_guard(request.mode, self.env("CI"))?;
        check_run(request.lane, request.mode, request.build)?;
        if let Some(error) = &self.store_error {
            return Err(error.clone());
        }
        let processor_ref: ProcessorRef = request.processor_ref.parse()?;
        let registry = self.registry.get(&self.config.registry_root)?;
        let entry = registry.get(&processor_ref)?;
        let spec = entry.spec();
        let timeout = run_timeout(request.timeout, &spec.runtime)?;
        let inputs = Value::Object(resolve_inputs(
            &request.inputs,
            &request.params,
            spec,
            self.config.limits.max_inputs_bytes,
        )?);
        let resolved = crate::attach::resolve_inputs(self, &request.attachments, inputs).await?;
        let inputs = resolved.inputs;
        validate_inputs(spec, &inputs)?;
        let env = match request.mode {
            Mode::Real => self.real_mode_env(spec)?,
            Mode::Mock => BTreeMap::new(),
        };
        let write_prefix = match &request.write_prefix {
            Some(template) => WritePrefix::expand(template, execution_id)?,
            None => WritePrefix::expand(&processor_ref.default_write_prefix(), execution_id)?,
        };
        crate::attach::check_apart(&resolved.artifacts, &write_prefix, execution_id)?;
        let image = if request.build {
            ImageSource::Build {
                workspace_root: self.cargo_workspace.clone(),
            }
        } else {
            ImageSource::Pinned {
                reference: pinned_image(spec, host_platform()?)?,
            }
        };
        Ok(Admitted {
            processor_ref,
            spec: spec.clone(),
            timeout,
            inputs,
            artifacts: resolved.artifacts,
            env,
            write_prefix,
            image,
        })
    }

    /// The checks, in order, then the recorded run.
    async fn execute(
        &self,
        request: &RunRequest,
        execution_id: &str,
        redactor: &mut Redactor,
        cancel: &CancellationToken,
    ) -> Result<(Envelope, Option<PathBuf>), CanonError> {
        let Admitted {
            processor_ref,
            spec,
            timeout,
            inputs,
            artifacts,
            env,
            write_prefix,
            image,
        } = self.admission(request, execution_id).await?;
        let spec = &spec;
        let known_secrets = proctor_telemetry::known_secrets();
        known_secrets.register_secret_values(env.values().cloned());
        *redactor = known_secrets.redactor();
        if let Some(save_dir) = &request.save_dir {
            crate::save::check_destination(&self.config.artifacts_root, save_dir)?;
        }
        if request.memo
            && request.adapter == AdapterKind::Local
            && let Some(answered) = crate::memo::answer_from_memo(
                self,
                request,
                execution_id,
                spec,
                &image,
                &inputs,
                cancel,
            )
            .await?
        {
            return Ok(answered);
        }
        // A local container mounts its input artifacts from files of this host: the World's
        // own when it is the artifacts root, else copies fetched from the World's store,
        // removed once the run ends.
        let fetched = match (&self.world_store, request.adapter) {
            (Some(_), AdapterKind::Local) if !artifacts.is_empty() => Some(
                tempfile::Builder::new()
                    .prefix("proctor-inputs-")
                    .tempdir()
                    .map_err(|error| {
                        CanonError::new(
                            ErrorCode::Internal,
                            format!("cannot make a directory for input artifacts: {error}"),
                        )
                    })?,
            ),
            _ => None,
        };
        let input_files = match &fetched {
            Some(dir) => {
                crate::attach::fetch_input_files(self.store.as_ref(), &artifacts, dir.path())
                    .await?
            }
            None => crate::attach::input_files(&self.config.artifacts_root, &artifacts),
        };
        let staging = Arc::new(Staging::create(execution_id)?.with_input_files(input_files));
        let invocation = Invocation {
            payload: RunPayload {
                schema: PAYLOAD_SCHEMA.to_owned(),
                execution_id: execution_id.to_owned(),
                processor_ref,
                mode: request.mode,
                inputs,
                write_prefix: write_prefix.as_str().to_owned(),
                upstream: request.upstream.clone(),
            },
            spec: spec.clone(),
            image,
            staging,
            timeout,
            env,
            options: request.adapter_options.clone(),
            limits: self.config.limits.responses,
        };
        crate::record::record_run(self, request, invocation, redactor, cancel).await
    }

    /// `real` mode's container environment: the required secrets (all present, or
    /// `ERR_MISSING_SECRET`) plus the spec's pass-through variables that are set.
    fn real_mode_env(&self, spec: &ProcessorSpec) -> Result<BTreeMap<String, String>, CanonError> {
        let mut env = check_secrets(spec, |name| self.env(name).map(str::to_owned))?;
        for name in &spec.env {
            if let Some(value) = self.env(name) {
                env.insert(name.clone(), value.to_owned());
            }
        }
        Ok(env)
    }

    /// The adapter for `kind`; the local one is made once per [`Engine`] (it connects
    /// lazily, racing the cancellation token, on the first run).
    pub(crate) fn adapter(&self, kind: AdapterKind) -> Result<AdapterHandle<'_>, CanonError> {
        match kind {
            AdapterKind::Local => {
                let local = match self.local.get() {
                    Some(local) => local,
                    None => {
                        let local = LocalAdapter::connect()?
                            .with_dockerfile_builds(DockerfileBuilds {
                                registry_root: self.config.registry_root.clone(),
                                build_args: self.build_args.clone(),
                            })
                            .with_progress(self.progress.clone());
                        let _ = self.local.set(match self.warm_per_kind {
                            Some(per_kind) => local.with_warm_containers(per_kind, warm_owner()?),
                            None => local,
                        });
                        self.local.get().expect("set just above")
                    }
                };
                Ok(AdapterHandle::Borrowed(local))
            }
            // The deploy target (`PROCTOR_MODAL_*`) and the proxy-auth token
            // (`MODAL_PROXY_TOKEN_*`) come from the host environment.
            AdapterKind::Modal => Ok(AdapterHandle::Owned(Box::new(ModalAdapter::from_env(
                &self.config.env,
            )?))),
        }
    }
}

/// This process's key, which labels its warm containers, so recovery of an execution it
/// abandoned removes them too.
fn warm_owner() -> Result<String, CanonError> {
    proctor_ledger::this_process()
        .map(|owner| owner.process_key())
        .map_err(|error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("cannot name this process for its warm containers: {error}"),
            )
        })
}

/// An adapter the engine keeps, or one made for a single run.
pub(crate) enum AdapterHandle<'a> {
    Borrowed(&'a LocalAdapter),
    Owned(Box<dyn Adapter>),
}

impl AdapterHandle<'_> {
    pub(crate) fn get(&self) -> &dyn Adapter {
        match self {
            AdapterHandle::Borrowed(adapter) => *adapter,
            AdapterHandle::Owned(adapter) => adapter.as_ref(),
        }
    }
}

/// The envelope with every processor-provided message redacted.
fn redacted(envelope: Envelope, redactor: &Redactor) -> Envelope {
    match envelope {
        Envelope::Error(mut error) => {
            error.error.message = redactor.redact(&error.error.message).into_owned();
            Envelope::Error(error)
        }
        success => success,
    }
}

/// The run's timeout: `requested` (`--timeout`), else the registry's `runtime.timeout_s`.
/// Either above [`MAX_RUN_TIMEOUT`] is refused: `ERR_INPUTS` for the request,
/// `ERR_REGISTRY` for the registry entry.
fn run_timeout(requested: Option<Duration>, runtime: &Runtime) -> Result<Duration, CanonError> {
    let max = MAX_RUN_TIMEOUT.as_secs();
    match requested {
        Some(timeout) if timeout > MAX_RUN_TIMEOUT => Err(CanonError::new(
            ErrorCode::Inputs,
            format!(
                "--timeout {} s is above the maximum of {max} s (7 days)",
                timeout.as_secs()
            ),
        )),
        Some(timeout) => Ok(timeout),
        None if runtime.timeout_s > max => Err(CanonError::new(
            ErrorCode::Registry,
            format!(
                "runtime.timeout_s {} is above the maximum of {max} s (7 days)",
                runtime.timeout_s
            ),
        )),
        None => Ok(Duration::from_secs(runtime.timeout_s)),
    }
}

/// The Cargo workspace that builds processors by default: the nearest ancestor of the
/// registry root holding a `Cargo.lock`, else the registry root's parent.
pub fn workspace_root(registry_root: &Path) -> PathBuf {
    let parent = registry_root.parent().unwrap_or(registry_root);
    parent
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(parent)
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_above_seven_days_are_refused_naming_their_source() {
        let runtime = |timeout_s| Runtime {
            cpu: 1.0,
            memory_gb: 1.0,
            timeout_s,
            gpu: None,
            reuse: true,
        };
        let max = MAX_RUN_TIMEOUT;
        assert_eq!(
            run_timeout(None, &runtime(30)).unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(run_timeout(Some(max), &runtime(u64::MAX)).unwrap(), max);
        let err = run_timeout(Some(Duration::MAX), &runtime(30)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Inputs);
        assert!(err.message().contains("--timeout"), "{err}");
        assert_eq!(run_timeout(None, &runtime(max.as_secs())).unwrap(), max);
        let err = run_timeout(None, &runtime(max.as_secs() + 1)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Registry);
        assert!(err.message().contains("runtime.timeout_s"), "{err}");
    }

    fn engine_with(env: &[(&str, &str)]) -> Engine {
        Engine::new(EngineConfig {
            registry_root: "processors".into(),
            artifacts_root: "/tmp/proctor-artifacts".into(),
            ledger_url: "sqlite::memory:".to_owned(),
            env: env
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            limits: Limits::default(),
        })
    }

    #[tokio::test]
    async fn the_world_store_is_the_one_proctor_store_url_names() {
        assert_eq!(
            engine_with(&[]).store().location(),
            "file:///tmp/proctor-artifacts"
        );
        let s3 = engine_with(&[
            (
                "PROCTOR_STORE_URL",
                "s3://world/team?endpoint=http://127.0.0.1:9",
            ),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
        ]);
        assert_eq!(
            s3.store().location(),
            "s3://world/team?endpoint=http://127.0.0.1:9"
        );
        // A store that cannot be opened refuses every run before any other work.
        let broken = engine_with(&[("PROCTOR_STORE_URL", "s3://world/team")]);
        let request = RunRequest {
            processor_ref: "text/stats@1".to_owned(),
            adapter: AdapterKind::Modal,
            mode: Mode::Mock,
            build: false,
            write_prefix: None,
            inputs: crate::Inputs::Value(serde_json::json!({})),
            params: BTreeMap::new(),
            adapter_options: Value::Null,
            timeout: None,
            save_dir: None,
            plan: "default".to_owned(),
            reserve_micro_usd: 0,
            lane: None,
            upstream: Vec::new(),
            attachments: Vec::new(),
            memo: false,
        };
        let cancel = CancellationToken::new();
        let run = broken.run(&request, &cancel);
        // A server spawns runs on a multi-threaded runtime: the future must be `Send`.
        fn spawnable<F: Send>(future: F) -> F {
            future
        }
        let outcome = spawnable(run).await;
        let Envelope::Error(error) = outcome.envelope else {
            panic!("expected a refusal")
        };
        assert_eq!(error.error.code, ErrorCode::MissingSecret);
        assert!(
            error.error.message.contains("AWS_ACCESS_KEY_ID"),
            "{error:?}"
        );
    }

    #[test]
    fn the_workspace_root_is_the_nearest_directory_with_a_lockfile() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures/processors");
        std::fs::create_dir_all(&fixtures).unwrap();
        assert_eq!(workspace_root(&fixtures), dir.path().join("fixtures"));
        std::fs::write(dir.path().join("Cargo.lock"), "").unwrap();
        assert_eq!(workspace_root(&fixtures), dir.path());
        assert_eq!(workspace_root(&dir.path().join("processors")), dir.path());
    }
}
