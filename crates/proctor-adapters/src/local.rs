//! The local adapter: one hardened container of the local Docker engine per run.
//!
//! A run goes: resolve the image (build from source, pull a pin, or take a local ID) →
//! arm the cleanup guard → create and start the container → poll `/healthz` → `POST /run`
//! → check the envelope → remove the container. Every step races the caller's
//! cancellation token, and everything from container creation on is bounded by the
//! invocation's timeout and races the container's own exit, so a processor that dies early
//! fails fast with its last log lines. Once the container has started, the engine's
//! liveness is watched too: an engine that stops answering ends the run at once
//! (`ERR_ADAPTER_INVOCATION`, "lost the Docker engine"). Whatever ends the run, the
//! container is removed before [`Adapter::invoke`] returns, and the error says so only when
//! it happened; when it could not be removed, the error names it. See
//! [`crate::container`] for the network, mounts and hardening of the container, and
//! [`crate::engine`] for the engine operations a run uses.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use proctor_contract::{CanonError, Envelope, ErrorCode, Health, ProcessorRef, Progress, Redactor};
use proctor_registry::Registry;
use tempfile::TempDir;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::build_cache::{BuildCache, BuildKey, Recipe};
use crate::cleanup::ContainerGuard;
use crate::container::{
    ContainerSettings, LocalOptions, Mounts, Network, NetworkOption, SOCKET_NAME, StagingMounts,
    create_body,
};
use crate::dockerfile_build::{DockerfileBuild, DockerfileBuilds};
use crate::engine::{BollardEngine, ContainerEngine, Removal};
// The image modules reach the engine's error helpers through this module.
pub(crate) use crate::engine::{engine_error, is_not_found};
use crate::envelope_check::check_envelope;
use crate::held::HeldContainer;
use crate::image_build::{BuiltImage, ImageBuild};
use crate::platform::host_platform;
use crate::staging::{container_user, hand_over};
use crate::transport::{BusyBackoff, Endpoint, ProcessorClient, RunAnswer, TransportError};
use crate::warm::{
    Lease, Slot, StartTicket, WarmContainer, WarmKey, WarmPool, WarmRoot, can_run_warm,
};
use crate::{Adapter, ImageSource, Invocation};

/// Label carrying the execution id on every run's container.
pub const LABEL_EXECUTION_ID: &str = "proctor.execution_id";
/// Label carrying the processor ref on every run's container and built image.
pub const LABEL_REF: &str = "proctor.ref";
/// Label marking a warm container, one that serves several runs ([`crate::warm`]), with the
/// process key of the process that keeps it; its [`LABEL_EXECUTION_ID`] is the run that
/// started it.
pub const LABEL_WARM: &str = "proctor.warm";
/// How many log lines of a failed container an error carries.
const LOG_TAIL_LINES: usize = 20;
/// How long a broken `/run` connection waits for the container's exit to explain it.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a create request already sent when the run stops may take to land, so the
/// removal that follows finds the container it made.
const CREATE_GRACE: Duration = Duration::from_secs(10);
/// How long a removal someone else started may take before recovery reports the container
/// as possibly left.
const REMOVAL_WAIT: Duration = Duration::from_secs(30);
/// How often a running container's engine is asked whether it is still there.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long the engine may take to answer a liveness ping before it counts as lost.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs processors in containers of the local Docker engine, through its API.
#[derive(Debug, Clone)]
pub struct LocalAdapter {
    engine: Arc<dyn ContainerEngine>,
    builds: Arc<BuildCache>,
    warm: Option<Arc<WarmPool>>,
    /// How processors without `build.cargo_package` are built; `None`: they are not.
    dockerfile: Option<Arc<DockerfileBuilds>>,
    /// Where image builds and pulls report their progress.
    progress: Progress,
}

/// The image a run starts from and the digest its envelope must report.
struct ResolvedImage {
    image_id: String,
    expected_digest: String,
}

/// What a run holds until it is cleaned up: the container, and the socket directory
/// mounted into it.
#[derive(Default)]
struct RunResources {
    container: Option<ContainerGuard>,
    socket_dir: Option<TempDir>,
}

impl RunResources {
    /// Removes the container, if one was armed, and says what became of it.
    async fn remove_container(&mut self) -> Option<(String, Result<Removal, CanonError>)> {
        let container = self.container.take()?;
        let name = container.name().to_owned();
        Some((name, container.remove().await))
    }
}

/// What ends a run early: the caller's cancellation, and once the container is being
/// created, the run's timeout.
pub(crate) struct Stop<'a> {
    cancel: &'a CancellationToken,
    processor_ref: &'a ProcessorRef,
    deadline: Option<(Instant, Duration)>,
}

impl<'a> Stop<'a> {
    fn new(cancel: &'a CancellationToken, processor_ref: &'a ProcessorRef) -> Stop<'a> {
        Stop {
            cancel,
            processor_ref,
            deadline: None,
        }
    }

    /// Starts the run's clock: from now on, `timeout` ends it too.
    fn start_clock(&mut self, timeout: Duration) {
        self.deadline = Some((Instant::now() + timeout, timeout));
    }

    /// Resolves, with the error to report, once the run must stop.
    pub(crate) async fn stopped(&self) -> CanonError {
        let timed_out = async {
            match self.deadline {
                Some((deadline, _)) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => CanonError::new(
                ErrorCode::Interrupted,
                format!("{} was cancelled", self.processor_ref),
            ),
            () = timed_out => CanonError::new(
                ErrorCode::Timeout,
                format!(
                    "{} gave no envelope within {:?}",
                    self.processor_ref,
                    self.deadline.map(|(_, timeout)| timeout).unwrap_or_default()
                ),
            ),
        }
    }

    /// `work`'s outcome, unless the run must stop first.
    async fn unless_stopped<T>(
        &self,
        work: impl Future<Output = Result<T, CanonError>>,
    ) -> Result<T, CanonError> {
        tokio::select! {
            biased;
            reason = self.stopped() => Err(reason),
            outcome = work => outcome,
        }
    }
}

impl LocalAdapter {
    /// A client of the engine at `DOCKER_HOST`, else the local socket. Cheap: nothing is
    /// sent before the first run or build, which negotiates the API version (an unreachable
    /// engine is an `ERR_ADAPTER_INVOCATION` then).
    pub fn connect() -> Result<LocalAdapter, CanonError> {
        Ok(LocalAdapter {
            engine: Arc::new(BollardEngine::connect()?),
            builds: Arc::default(),
            warm: None,
            dockerfile: None,
            progress: Progress::none(),
        })
    }

    /// This adapter, reporting its image builds (compile, Dockerfile steps) and pulls (bytes)
    /// to `progress`.
    pub fn with_progress(self, progress: Progress) -> LocalAdapter {
        LocalAdapter { progress, ..self }
    }

    /// This adapter, building processors without `build.cargo_package` from their
    /// Dockerfile, found through `builds.registry_root`, with `builds.build_args`.
    pub fn with_dockerfile_builds(self, builds: DockerfileBuilds) -> LocalAdapter {
        LocalAdapter {
            dockerfile: Some(Arc::new(builds)),
            ..self
        }
    }

    /// This adapter, keeping containers warm: a container serves later runs of the same
    /// kind, up to `per_kind` containers per kind, until [`LocalAdapter::close_warm`]
    /// (see [`crate::warm`]). For long-lived callers that must call that at the end.
    /// `owner` is the caller's process key: warm containers carry it as their
    /// [`LABEL_WARM`], so [`LocalAdapter::remove_warm_containers`] finds those a killed
    /// process left.
    pub fn with_warm_containers(self, per_kind: usize, owner: String) -> LocalAdapter {
        LocalAdapter {
            warm: Some(Arc::new(WarmPool::new(per_kind, owner))),
            ..self
        }
    }

    /// Removes every warm container: idle ones now, busy ones as soon as their run ends.
    /// Later runs get containers of their own.
    pub async fn close_warm(&self) {
        if let Some(pool) = &self.warm {
            pool.close().await;
        }
    }

    /// Builds a processor's image from source; see [`ImageBuild`]; one without
    /// `build.cargo_package` from its Dockerfile, which needs
    /// [`LocalAdapter::with_dockerfile_builds`]. The returned ID can be run with
    /// [`ImageSource::Local`]. A package or Dockerfile is built once per adapter and
    /// platform: later calls get that image, so sources changed meanwhile need a new
    /// adapter.
    pub async fn build_image(&self, build: &ImageBuild<'_>) -> Result<BuiltImage, CanonError> {
        let Some(package) = &build.spec.build.cargo_package else {
            return self.build_dockerfile_image(build).await;
        };
        let key = BuildKey {
            workspace_root: build.workspace_root.to_path_buf(),
            recipe: Recipe::Cargo(package.clone()),
            platform: build.platform,
        };
        self.builds
            .get_or_build(key, || self.engine.build_image(build, &self.progress))
            .await
    }

    /// Builds a processor's image from its Dockerfile (see [`crate::dockerfile_build`]).
    async fn build_dockerfile_image(
        &self,
        build: &ImageBuild<'_>,
    ) -> Result<BuiltImage, CanonError> {
        let processor_ref = &build.spec.processor_ref;
        let Some(settings) = &self.dockerfile else {
            return Err(CanonError::new(
                ErrorCode::Build,
                format!(
                    "{processor_ref} is built from its Dockerfile, and this adapter was given \
                     no registry root to find it in"
                ),
            ));
        };
        let registry = Registry::load(&settings.registry_root)?;
        let dir = registry.get(processor_ref)?.dir().to_path_buf();
        let key = BuildKey {
            workspace_root: build.workspace_root.to_path_buf(),
            recipe: Recipe::Dockerfile(dir.clone()),
            platform: build.platform,
        };
        self.builds
            .get_or_build(key, || async {
                let job = DockerfileBuild {
                    processor_ref,
                    build: &build.spec.build,
                    dir: &dir,
                    workspace_root: build.workspace_root,
                    platform: build.platform,
                    build_args: &settings.build_args,
                    progress: &self.progress,
                };
                self.engine.build_dockerfile_image(&job).await
            })
            .await
    }

    /// Force-removes every container of execution `execution_id`, running or not, found
    /// by its [`LABEL_EXECUTION_ID`] label (e.g. left by a process that died); gives the
    /// names of the containers the engine removed, and only those. When a removal fails,
    /// the error names it and the containers removed before it.
    pub async fn remove_execution_containers(
        &self,
        execution_id: &str,
    ) -> Result<Vec<String>, CanonError> {
        self.remove_labelled(LABEL_EXECUTION_ID, execution_id, "execution")
            .await
    }

    /// Force-removes every warm container kept by the process whose process key is
    /// `owner` (its [`LABEL_WARM`]), e.g. one that was killed; gives the names of the
    /// containers the engine removed, as [`LocalAdapter::remove_execution_containers`] does.
    pub async fn remove_warm_containers(&self, owner: &str) -> Result<Vec<String>, CanonError> {
        self.remove_labelled(LABEL_WARM, owner, "process").await
    }

    /// Force-removes every container whose `label` is `value` (`what` names the value in
    /// errors).
    async fn remove_labelled(
        &self,
        label: &str,
        value: &str,
        what: &str,
    ) -> Result<Vec<String>, CanonError> {
        let mut removed = Vec::new();
        for name in self.engine.labelled_containers(label, value).await? {
            match ContainerGuard::new(Arc::clone(&self.engine), name.clone())
                .remove()
                .await
            {
                Ok(Removal::Removed) => removed.push(name),
                // Gone, or being removed by someone else (a dropped run's guard): wait
                // until it is gone.
                Ok(Removal::Absent) => {
                    match tokio::time::timeout(REMOVAL_WAIT, self.engine.removed(&name)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(failed)) => return Err(failed),
                        Err(_) => {
                            return Err(CanonError::new(
                                ErrorCode::AdapterInvocation,
                                format!(
                                    "container {name} of {what} {value} is still \
                                     being removed after {REMOVAL_WAIT:?}"
                                ),
                            ));
                        }
                    }
                }
                Err(failed) => {
                    return Err(CanonError::new(
                        ErrorCode::AdapterInvocation,
                        format!(
                            "containers of {what} {value}: removed [{}], then {}",
                            removed.join(", "),
                            failed.detail()
                        ),
                    ));
                }
            }
        }
        Ok(removed)
    }

    /// The whole run, on a warm container when the adapter keeps them and the processor
    /// allows it, else on a container of its own.
    async fn invoke_local(
        &self,
        invocation: &Invocation,
        cancel: &CancellationToken,
    ) -> Result<Envelope, CanonError> {
        match &self.warm {
            // A warm container's `/artifacts` outlives the run: input files are mounted
            // into a container of the run's own only.
            Some(pool)
                if invocation.spec.runtime.reuse
                    && invocation.staging.input_files().is_empty()
                    && can_run_warm(&invocation.payload) =>
            {
                self.run_warm(pool, invocation, cancel).await
            }
            _ => self.invoke_cold(invocation, cancel).await,
        }
    }

    /// A run on a container of its own; the container is gone, or the error says it may
    /// not be, when this returns.
    async fn invoke_cold(
        &self,
        invocation: &Invocation,
        cancel: &CancellationToken,
    ) -> Result<Envelope, CanonError> {
        let mut resources = RunResources::default();
        let outcome = self.run(invocation, cancel, &mut resources).await;
        let removal = resources.remove_container().await;
        drop(resources.socket_dir);
        with_removal(invocation, outcome, removal)
    }

    /// Resolves the image, then creates, starts and converses with the container, every
    /// step racing `cancel` and, from creation on, the timeout; once the container has
    /// started, the engine's liveness too.
    async fn run(
        &self,
        invocation: &Invocation,
        cancel: &CancellationToken,
        resources: &mut RunResources,
    ) -> Result<Envelope, CanonError> {
        let options = LocalOptions::parse(&invocation.options)?;
        let network = run_network(&options, invocation)?;
        let staging = StagingMounts::new(&invocation.staging, &invocation.payload)?;
        let mut stop = Stop::new(cancel, &invocation.payload.processor_ref);
        let image = stop.unless_stopped(self.resolve_image(invocation)).await?;
        stop.start_clock(invocation.timeout);
        let endpoint = self
            .start_container(
                invocation,
                &options,
                network,
                &image,
                Mounts::Execution(&staging),
                &stop,
                resources,
            )
            .await?;
        let container = resources.container.as_ref().expect("started above");
        stop.unless_stopped(async {
            tokio::select! {
                answered = self.converse(container.name(), &endpoint, invocation, &image.expected_digest) => answered,
                lost = self.engine_lost() => Err(lost),
            }
        })
        .await
    }

    /// Creates and starts a container for `invocation` with `mounts` (its guard and socket
    /// directory go into `resources` first), racing `stop`; gives the processor's endpoint.
    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        invocation: &Invocation,
        options: &LocalOptions,
        network: Network,
        image: &ResolvedImage,
        mounts: Mounts<'_>,
        stop: &Stop<'_>,
        resources: &mut RunResources,
    ) -> Result<Endpoint, CanonError> {
        let user = container_user()?;
        let socket_dir = match network {
            Network::None => Some(resources.socket_dir.insert(socket_dir(user)?).path()),
            Network::Bridge | Network::Host { .. } => None,
        };
        // The bridge's host port is known only once the container has started.
        let known_endpoint = match (network, socket_dir) {
            (Network::Host { port }, _) => Some(Endpoint::Loopback(port)),
            (_, Some(dir)) => Some(Endpoint::Socket(dir.join(SOCKET_NAME))),
            (_, None) => None,
        };
        let body = create_body(&ContainerSettings {
            invocation,
            options,
            image_id: &image.image_id,
            expected_digest: &image.expected_digest,
            network,
            user,
            mounts,
            socket_dir,
        });
        let name = format!("proctor-{}", uuid::Uuid::new_v4().simple());
        let container = resources
            .container
            .insert(ContainerGuard::new(Arc::clone(&self.engine), name));
        let mut create = pin!(self.engine.create_container(container.name(), body));
        tokio::select! {
            biased;
            created = &mut create => created?,
            reason = stop.stopped() => {
                // The engine may still create the container: wait for its answer, so the
                // removal that follows finds it.
                let _ = tokio::time::timeout(CREATE_GRACE, create).await;
                return Err(reason);
            }
        }
        stop.unless_stopped(self.engine.start_container(container.name()))
            .await?;
        tracing::info!(
            event = "container.started",
            execution_id = %invocation.payload.execution_id,
            container = %container.name(),
            image_id = %image.image_id,
        );
        match known_endpoint {
            Some(endpoint) => Ok(endpoint),
            None => stop
                .unless_stopped(async {
                    tokio::select! {
                        port = self.published_port(container.name(), invocation) => port.map(Endpoint::Loopback),
                        lost = self.engine_lost() => Err(lost),
                    }
                })
                .await,
        }
    }

    /// A run on a warm container of its kind ([`crate::warm`]): a free one, else a new one
    /// when the kind is below its limit, else the first to free up. Falls back to a
    /// container of its own once the pool is closed.
    async fn run_warm(
        &self,
        pool: &Arc<WarmPool>,
        invocation: &Invocation,
        cancel: &CancellationToken,
    ) -> Result<Envelope, CanonError> {
        let mut stop = Stop::new(cancel, &invocation.payload.processor_ref);
        let image = stop.unless_stopped(self.resolve_image(invocation)).await?;
        stop.start_clock(invocation.timeout);
        let key = WarmKey::new(invocation, &image.image_id, &image.expected_digest);
        let mut busy = BusyBackoff::default();
        let (slot, outcome) = loop {
            let slot = match pool.acquire(&key, stop.stopped()).await? {
                Lease::Warm(slot) => {
                    tracing::info!(
                        event = "container.reused",
                        execution_id = %invocation.payload.execution_id,
                        container = %slot.container().name(),
                    );
                    slot
                }
                Lease::Start(ticket) => {
                    self.start_warm(ticket, pool.owner(), invocation, &image, &stop)
                        .await?
                }
                Lease::Cold => return self.invoke_cold(invocation, cancel).await,
            };
            match self
                .serve_warm(slot.container(), invocation, &image, &stop)
                .await
            {
                // Nothing ran: give the slot back, pause, and take the first free one.
                Ok(None) => {
                    drop(slot.release(true).await);
                    stop.unless_stopped(async {
                        busy.pause(&invocation.payload.execution_id).await;
                        Ok(())
                    })
                    .await?;
                }
                Ok(Some(envelope)) => break (slot, Ok(envelope)),
                Err(error) => break (slot, Err(error)),
            }
        };
        let removal = slot.release(outcome.is_ok()).await;
        with_removal(invocation, outcome, removal)
    }

    /// Starts a warm container for `invocation`'s kind and waits until it is healthy; a
    /// container that does not get there is removed, never admitted.
    async fn start_warm(
        &self,
        ticket: StartTicket,
        owner: &str,
        invocation: &Invocation,
        image: &ResolvedImage,
        stop: &Stop<'_>,
    ) -> Result<Slot, CanonError> {
        let root = WarmRoot::create(container_user()?)?;
        let mut resources = RunResources::default();
        let mounts = Mounts::Warm {
            dir: root.artifacts(),
            owner,
        };
        let healthy = self
            .start_healthy(invocation, image, mounts, stop, &mut resources)
            .await
            .map(|(client, health, _)| (client, health.concurrency.get()));
        match healthy {
            Ok((client, concurrency)) => {
                let guard = resources.container.take().expect("started above");
                tracing::debug!(
                    event = "container.warm",
                    container = %guard.name(),
                    concurrency,
                );
                Ok(ticket.admit(
                    guard,
                    resources.socket_dir.take(),
                    client,
                    root,
                    usize::try_from(concurrency).unwrap_or(1),
                ))
            }
            Err(error) => Err(with_cleanup_note(error, resources.remove_container().await)),
        }
    }

    /// Creates and starts a container for `invocation` with `mounts` (its guard and socket
    /// directory go into `resources` first) and waits until it is healthy, racing `stop`
    /// and the engine's liveness; gives its client, its health and its network.
    async fn start_healthy(
        &self,
        invocation: &Invocation,
        image: &ResolvedImage,
        mounts: Mounts<'_>,
        stop: &Stop<'_>,
        resources: &mut RunResources,
    ) -> Result<(ProcessorClient, Health, Network), CanonError> {
        let options = LocalOptions::parse(&invocation.options)?;
        let network = run_network(&options, invocation)?;
        let endpoint = self
            .start_container(
                invocation, &options, network, image, mounts, stop, resources,
            )
            .await?;
        let name = resources.container.as_ref().expect("started above").name();
        let client = ProcessorClient::new(&endpoint, invocation.limits)?;
        let mut exited = self.engine.exit_code(name);
        let health = stop
            .unless_stopped(async {
                tokio::select! {
                    health = self.wait_healthy(&client, name, invocation, &mut exited) => health,
                    lost = self.engine_lost() => Err(lost),
                }
            })
            .await?;
        Ok((client, health, network))
    }

    /// Starts `invocation`'s processor in a container held for the caller, who speaks to
    /// it directly ([`HeldContainer`]): resolved, hardened and networked as a run's
    /// container, with a private directory at `/artifacts` as a warm container has, and
    /// returned once healthy. Starting races `cancel` and, from creation on, the
    /// invocation's timeout, which also bounds each later exchange. A container that does
    /// not get healthy is removed; the error says what became of it.
    pub async fn hold(
        &self,
        invocation: &Invocation,
        cancel: &CancellationToken,
    ) -> Result<HeldContainer, CanonError> {
        let mut stop = Stop::new(cancel, &invocation.payload.processor_ref);
        let image = stop.unless_stopped(self.resolve_image(invocation)).await?;
        stop.start_clock(invocation.timeout);
        let root = WarmRoot::create(container_user()?)?;
        let mut resources = RunResources::default();
        let mounts = Mounts::Held {
            dir: root.artifacts(),
        };
        match self
            .start_healthy(invocation, &image, mounts, &stop, &mut resources)
            .await
        {
            Ok((client, health, network)) => Ok(HeldContainer {
                engine: Arc::clone(&self.engine),
                container: resources.container.take().expect("started above"),
                socket_dir: resources.socket_dir.take(),
                root,
                client,
                health,
                image_id: image.image_id,
                expected_digest: image.expected_digest,
                network,
                timeout: invocation.timeout,
            }),
            Err(error) => Err(with_cleanup_note(error, resources.remove_container().await)),
        }
    }

    /// The ID (`sha256:…`) of the local image `image` names (a name, a tag or an ID), to
    /// run with [`ImageSource::Local`].
    pub async fn local_image_id(&self, image: &str) -> Result<String, CanonError> {
        self.engine.image_id(image).await
    }

    /// One run on a warm container: its directories prepared, the payload posted, the
    /// envelope checked, and its directories moved into its staging area whatever the
    /// outcome (the evidence check decides what they are worth). `None` when the container
    /// answered busy: nothing ran.
    async fn serve_warm(
        &self,
        container: &WarmContainer,
        invocation: &Invocation,
        image: &ResolvedImage,
        stop: &Stop<'_>,
    ) -> Result<Option<Envelope>, CanonError> {
        let payload = &invocation.payload;
        container.root().prepare(payload)?;
        let exchange = async {
            let mut exited = self.engine.exit_code(container.name());
            let (status, body) = tokio::select! {
                answer = container.client().try_post_run(payload) => match answer {
                    Ok(RunAnswer::Answered { status, body }) => (status, body),
                    Ok(RunAnswer::Busy) => return Ok(None),
                    Err(broken) => {
                        return Err(self.broken_exchange(container.name(), invocation, broken, &mut exited).await);
                    }
                },
                code = &mut exited => {
                    return Err(self.exited_early(container.name(), code, "while answering /run", invocation).await);
                }
            };
            check_envelope(
                status,
                &body,
                payload,
                &image.expected_digest,
                ErrorCode::AdapterInvocation,
            )
            .map(Some)
        };
        let answered = stop
            .unless_stopped(async {
                tokio::select! {
                    answered = exchange => answered,
                    lost = self.engine_lost() => Err(lost),
                }
            })
            .await;
        let staged = container.root().move_out(payload, &invocation.staging);
        let envelope = answered?;
        staged?;
        Ok(envelope)
    }

    /// Resolves, with the error to report, once the engine stops answering its liveness
    /// ping ([`LIVENESS_INTERVAL`], [`LIVENESS_TIMEOUT`]).
    async fn engine_lost(&self) -> CanonError {
        loop {
            tokio::time::sleep(LIVENESS_INTERVAL).await;
            let why = match tokio::time::timeout(LIVENESS_TIMEOUT, self.engine.ping()).await {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.detail().to_owned(),
                Err(_) => format!("no answer to a ping within {LIVENESS_TIMEOUT:?}"),
            };
            tracing::warn!(event = "engine.lost", error = %why);
            return CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("lost the Docker engine during the run: {why}"),
            );
        }
    }

    /// The image to start and the digest to expect.
    async fn resolve_image(&self, invocation: &Invocation) -> Result<ResolvedImage, CanonError> {
        match &invocation.image {
            ImageSource::Build { workspace_root, .. } => {
                let built = self
                    .build_image(&ImageBuild {
                        spec: &invocation.spec,
                        workspace_root,
                        platform: host_platform()?,
                    })
                    .await?;
                Ok(ResolvedImage {
                    expected_digest: built.id.clone(),
                    image_id: built.id,
                })
            }
            ImageSource::Pinned { reference } => {
                let pinned = self
                    .engine
                    .ensure_pinned_image(reference, &self.progress)
                    .await?;
                Ok(ResolvedImage {
                    image_id: pinned.image_id,
                    expected_digest: pinned.digest,
                })
            }
            ImageSource::Local { image_id } => {
                if self.engine.image_id(image_id).await? != *image_id {
                    return Err(CanonError::new(
                        ErrorCode::AdapterInvocation,
                        format!("`{image_id}` is not a local image ID (sha256:…)"),
                    ));
                }
                Ok(ResolvedImage {
                    image_id: image_id.clone(),
                    expected_digest: image_id.clone(),
                })
            }
        }
    }

    /// The host port the engine published the processor's port on (bridge network). A
    /// container that already exited has none: its exit code and log tail say why, as on
    /// every other network.
    async fn published_port(
        &self,
        container: &str,
        invocation: &Invocation,
    ) -> Result<u16, CanonError> {
        let key = format!("{}/tcp", invocation.spec.build.port);
        if let Some(port) = self.engine.published_port(container, &key).await? {
            return Ok(port);
        }
        match tokio::time::timeout(EXIT_GRACE, self.engine.exit_code(container)).await {
            Ok(code) => Err(self
                .exited_early(container, code, "before /healthz answered", invocation)
                .await),
            Err(_) => Err(CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("the engine published no host port for {key}"),
            )),
        }
    }

    /// Waits for health, posts the payload and checks the envelope, failing fast if the
    /// container exits first.
    async fn converse(
        &self,
        container: &str,
        endpoint: &Endpoint,
        invocation: &Invocation,
        expected_digest: &str,
    ) -> Result<Envelope, CanonError> {
        let client = ProcessorClient::new(endpoint, invocation.limits)?;
        let mut exited = self.engine.exit_code(container);
        self.wait_healthy(&client, container, invocation, &mut exited)
            .await?;
        // A busy answer is waited out and posted again (`post_run`), within the run's
        // timeout and cancellation and racing the container's exit.
        let (status, body) = tokio::select! {
            answer = client.post_run(&invocation.payload) => match answer {
                Ok(answer) => answer,
                Err(broken) => {
                    return Err(self.broken_exchange(container, invocation, broken, &mut exited).await);
                }
            },
            code = &mut exited => {
                return Err(self.exited_early(container, code, "while answering /run", invocation).await);
            }
        };
        check_envelope(
            status,
            &body,
            &invocation.payload,
            expected_digest,
            ErrorCode::AdapterInvocation,
        )
    }

    /// Polls `/healthz` until the processor answers ready or busy, failing fast if the
    /// container exits first (`exited`).
    async fn wait_healthy(
        &self,
        client: &ProcessorClient,
        container: &str,
        invocation: &Invocation,
        exited: &mut BoxFuture<'_, i64>,
    ) -> Result<Health, CanonError> {
        let health = tokio::select! {
            health = client.wait_healthy(&invocation.payload.processor_ref) => health?,
            code = exited => {
                return Err(self.exited_early(container, code, "before /healthz answered", invocation).await);
            }
        };
        tracing::debug!(
            event = "container.healthy",
            container = %container,
            state = health.state.as_str(),
            concurrency = health.concurrency.get(),
        );
        Ok(health)
    }

    /// The error for a `/run` exchange that broke: the container's exit and log tail when
    /// it exits within [`EXIT_GRACE`] (`exited`), else the transport's error and the tail.
    async fn broken_exchange(
        &self,
        container: &str,
        invocation: &Invocation,
        broken: TransportError,
        exited: &mut BoxFuture<'_, i64>,
    ) -> CanonError {
        match tokio::time::timeout(EXIT_GRACE, exited).await {
            Ok(code) => {
                self.exited_early(container, code, "while answering /run", invocation)
                    .await
            }
            Err(_) => {
                let logs = self.last_logs(container, invocation).await;
                CanonError::new(ErrorCode::AdapterInvocation, format!("{}{logs}", broken.0))
            }
        }
    }

    /// The error for a container that stopped before answering.
    async fn exited_early(
        &self,
        container: &str,
        code: i64,
        when: &str,
        invocation: &Invocation,
    ) -> CanonError {
        let logs = self.last_logs(container, invocation).await;
        CanonError::new(
            ErrorCode::AdapterInvocation,
            format!(
                "{} exited with code {code} {when}{logs}",
                invocation.payload.processor_ref
            ),
        )
    }

    /// `"; last log lines:\n…"` with secrets masked, or nothing.
    async fn last_logs(&self, container: &str, invocation: &Invocation) -> String {
        let text = self.engine.log_tail(container, LOG_TAIL_LINES).await;
        let text = text.trim_end();
        if text.is_empty() {
            return String::new();
        }
        let redactor = Redactor::new(invocation.env.values().cloned());
        format!("; last log lines:\n{}", redactor.redact(text))
    }
}

impl Adapter for LocalAdapter {
    fn name(&self) -> &'static str {
        "local"
    }

    fn invoke<'a>(
        &'a self,
        invocation: &'a Invocation,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Envelope, CanonError>> {
        Box::pin(self.invoke_local(invocation, cancel))
    }

    fn prepare(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Only the head start matters: invoke reports an unreachable engine.
            let _ = self.engine.negotiate().await;
        })
    }
}

/// The run's outcome once its container's removal (if one was due) is known: a removal
/// that failed turns an answer into an error naming the container.
fn with_removal(
    invocation: &Invocation,
    outcome: Result<Envelope, CanonError>,
    removal: Option<(String, Result<Removal, CanonError>)>,
) -> Result<Envelope, CanonError> {
    match (outcome, removal) {
        (Ok(envelope), None | Some((_, Ok(_)))) => Ok(envelope),
        (Ok(_), Some((name, Err(failed)))) => Err(CanonError::new(
            ErrorCode::AdapterInvocation,
            format!(
                "{} answered, but{}",
                invocation.payload.processor_ref,
                not_removed(&name, &failed)
            ),
        )),
        (Err(error), removal) => Err(with_cleanup_note(error, removal)),
    }
}

/// `error`, saying what became of the run's container where that matters: always when
/// removing it failed, and for a timeout or a cancellation in any case.
fn with_cleanup_note(
    error: CanonError,
    removal: Option<(String, Result<Removal, CanonError>)>,
) -> CanonError {
    let stopped = matches!(error.code(), ErrorCode::Timeout | ErrorCode::Interrupted);
    let note = match removal {
        Some((name, Err(failed))) => format!(";{}", not_removed(&name, &failed)),
        Some((_, Ok(Removal::Removed))) if stopped => "; its container is removed".to_owned(),
        Some((_, Ok(Removal::Absent))) if stopped => "; no container is left".to_owned(),
        None if stopped => "; no container was created".to_owned(),
        _ => return error,
    };
    CanonError::new(error.code(), format!("{}{note}", error.detail()))
}

/// `" its container NAME could not be removed (why); remove it with …"`.
fn not_removed(name: &str, failed: &CanonError) -> String {
    format!(
        " its container {name} could not be removed ({}); remove it with `docker rm -f {name}`",
        failed.detail()
    )
}

/// The network of `invocation`'s container, a free port picked for the host network.
fn run_network(options: &LocalOptions, invocation: &Invocation) -> Result<Network, CanonError> {
    Ok(match options.network_option(invocation.payload.mode)? {
        None | Some(NetworkOption::None) => Network::None,
        Some(NetworkOption::Bridge) => Network::Bridge,
        Some(NetworkOption::Host) => Network::Host {
            port: free_loopback_port()?,
        },
    })
}

/// A fresh private directory for the processor's socket, owned by the container user.
fn socket_dir(user: (u32, u32)) -> Result<TempDir, CanonError> {
    let failed = |error: std::io::Error| {
        CanonError::new(
            ErrorCode::AdapterInvocation,
            format!("cannot create the socket directory: {error}"),
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("proctor-run-")
        .tempdir()
        .map_err(failed)?;
    hand_over(dir.path(), user).map_err(failed)?;
    Ok(dir)
}

/// A loopback port nobody listens on right now.
fn free_loopback_port() -> Result<u16, CanonError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("no free loopback port: {error}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use proctor_contract::Mode;

    use super::*;
    use crate::recording_engine::{Call, Processor, RecordingEngine, Script, Step};
    use crate::testing::invocation;

    fn adapter(engine: &Arc<RecordingEngine>) -> LocalAdapter {
        LocalAdapter {
            engine: Arc::clone(engine) as Arc<dyn ContainerEngine>,
            builds: Arc::default(),
            warm: None,
            dockerfile: None,
            progress: Progress::none(),
        }
    }

    /// Runs `invocation` against an engine playing `script`, never cancelled.
    async fn run(
        script: Script,
        invocation: &Invocation,
    ) -> (Arc<RecordingEngine>, Result<Envelope, CanonError>) {
        let engine = RecordingEngine::new(script);
        let outcome = adapter(&engine)
            .invoke(invocation, &CancellationToken::new())
            .await;
        (engine, outcome)
    }

    /// The calls' kinds, in order (container names are random).
    fn kinds(engine: &RecordingEngine) -> Vec<&'static str> {
        engine
            .calls()
            .iter()
            .map(|call| match call {
                Call::ImageId(_) => "image",
                Call::Create(_) => "create",
                Call::Start(_) => "start",
                Call::PublishedPort(_) => "port",
                Call::LogTail(_) => "logs",
                Call::Remove(_) => "remove",
                Call::ListLabelled(_) => "list",
            })
            .collect()
    }

    #[tokio::test]
    async fn an_executions_containers_are_found_by_label_and_removed_once() {
        let engine = RecordingEngine::new(Script {
            processor: Processor::HangsOnRun,
            ..Script::default()
        });
        let adapter = adapter(&engine);
        let invocation = invocation(Mode::Mock);
        let cancel = CancellationToken::new();
        let run = adapter.invoke(&invocation, &cancel);
        let removals = async {
            engine.run_received().await;
            let other = adapter.remove_execution_containers("e2").await.unwrap();
            let first = adapter.remove_execution_containers("e1").await.unwrap();
            let second = adapter.remove_execution_containers("e1").await.unwrap();
            cancel.cancel();
            (other, first, second)
        };
        let (outcome, (other, first, second)) = tokio::join!(run, removals);
        assert!(other.is_empty(), "{other:?}");
        let calls = engine.calls();
        let Call::Create(created) = &calls[1] else {
            panic!("{calls:?}");
        };
        assert_eq!(first, std::slice::from_ref(created));
        assert!(second.is_empty(), "{second:?}");
        assert_eq!(
            calls[3..6],
            [
                Call::ListLabelled(format!("{LABEL_EXECUTION_ID}=e2")),
                Call::ListLabelled(format!("{LABEL_EXECUTION_ID}=e1")),
                Call::Remove(created.clone()),
            ]
        );
        assert!(outcome.is_err(), "{outcome:?}");
    }

    /// [`invocation`] for execution `id`, writing under `/artifacts/o/{id}/`.
    fn invocation_of(id: &str) -> Invocation {
        let mut invocation = invocation(Mode::Mock);
        invocation.payload.execution_id = id.into();
        invocation.payload.write_prefix = format!("/artifacts/o/{id}/");
        invocation.staging = Arc::new(crate::Staging::create(id).unwrap());
        invocation
    }

    fn count(engine: &RecordingEngine, kind: &str) -> usize {
        kinds(engine).iter().filter(|k| **k == kind).count()
    }

    #[tokio::test]
    async fn a_warm_container_serves_later_runs_until_the_pool_closes() {
        let engine = RecordingEngine::new(Script::default());
        let adapter = adapter(&engine).with_warm_containers(2, "boot:1:2".into());
        let cancel = CancellationToken::new();
        for id in ["e1", "e2", "e3"] {
            let invocation = invocation_of(id);
            let outcome = adapter.invoke(&invocation, &cancel).await;
            assert!(matches!(outcome, Ok(Envelope::Success(_))), "{outcome:?}");
        }
        assert_eq!(count(&engine, "create"), 1);
        assert_eq!(count(&engine, "remove"), 0);
        let labels = engine.created_body().unwrap().labels.unwrap();
        assert_eq!(labels[LABEL_WARM], "boot:1:2");
        adapter.close_warm().await;
        assert_eq!(kinds(&engine).last(), Some(&"remove"));
        assert_eq!(count(&engine, "remove"), 1);
    }

    #[tokio::test]
    async fn a_warm_container_that_timed_out_is_removed_at_once() {
        let engine = RecordingEngine::new(Script {
            processor: Processor::HangsOnRun,
            ..Script::default()
        });
        let adapter = adapter(&engine).with_warm_containers(2, "boot:1:2".into());
        let mut invocation = invocation_of("e1");
        invocation.timeout = Duration::from_millis(300);
        let error = adapter
            .invoke(&invocation, &CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::Timeout);
        assert!(
            error.message().contains("its container is removed"),
            "{error}"
        );
        assert_eq!(kinds(&engine), ["image", "create", "start", "remove"]);
        adapter.close_warm().await;
        assert_eq!(count(&engine, "remove"), 1);
    }

    fn is_remove(call: &Call) -> bool {
        matches!(call, Call::Remove(_))
    }

    #[tokio::test]
    async fn a_run_creates_starts_and_removes_one_labelled_container() {
        let invocation = invocation(Mode::Mock);
        let (engine, outcome) = run(Script::default(), &invocation).await;
        assert!(matches!(outcome, Ok(Envelope::Success(_))), "{outcome:?}");
        assert_eq!(kinds(&engine), ["image", "create", "start", "remove"]);
        let calls = engine.calls();
        assert_eq!(calls[1], Call::Create(container_name(&calls[3])));
        let labels = engine.created_body().unwrap().labels.unwrap();
        assert_eq!(labels[LABEL_EXECUTION_ID], "e1");
        assert_eq!(labels[LABEL_REF], "text/stats@1");
    }

    fn container_name(call: &Call) -> String {
        match call {
            Call::Remove(name) => name.clone(),
            other => panic!("not a removal: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_bridge_run_talks_to_the_published_port() {
        let invocation = invocation(Mode::Real);
        let (engine, outcome) = run(Script::default(), &invocation).await;
        assert!(matches!(outcome, Ok(Envelope::Success(_))), "{outcome:?}");
        assert_eq!(
            kinds(&engine),
            ["image", "create", "start", "port", "remove"]
        );
    }

    #[tokio::test]
    async fn a_bridge_run_that_exits_before_health_reports_its_exit_code() {
        let script = Script {
            processor: Processor::ExitsAtStart(7),
            logs: "cannot bind\n".to_owned(),
            ..Script::default()
        };
        let (engine, outcome) = run(script, &invocation(Mode::Real)).await;
        let message = outcome.unwrap_err().message();
        assert!(
            message.contains("text/stats@1 exited with code 7 before /healthz answered"),
            "{message}"
        );
        assert!(
            message.contains("last log lines:\ncannot bind"),
            "{message}"
        );
        assert!(!message.contains("published no host port"), "{message}");
        assert_eq!(
            kinds(&engine),
            ["image", "create", "start", "port", "logs", "remove"]
        );
    }

    #[tokio::test]
    async fn a_host_network_run_that_exits_before_health_reports_its_exit_code() {
        let mut invocation = invocation(Mode::Real);
        invocation.options = serde_json::json!({"network": "host"});
        let script = Script {
            processor: Processor::ExitsAtStart(9),
            logs: "cannot bind 127.0.0.1\nkey sk-test-secret\n".to_owned(),
            ..Script::default()
        };
        let (engine, outcome) = run(script, &invocation).await;
        let message = outcome.unwrap_err().message();
        assert!(
            message.contains("text/stats@1 exited with code 9 before /healthz answered"),
            "{message}"
        );
        assert!(
            message.contains("last log lines:\ncannot bind 127.0.0.1"),
            "{message}"
        );
        assert!(
            !message.contains("sk-test-secret"),
            "a secret leaked: {message}"
        );
        assert_eq!(
            kinds(&engine),
            ["image", "create", "start", "logs", "remove"]
        );
    }

    #[tokio::test]
    async fn a_foreign_staging_area_is_refused_before_the_engine_is_asked() {
        let mut invocation = invocation(Mode::Mock);
        invocation.payload.execution_id = "e2".to_owned();
        let (engine, outcome) = run(Script::default(), &invocation).await;
        assert_eq!(outcome.unwrap_err().code(), ErrorCode::AdapterInvocation);
        assert!(engine.calls().is_empty());
    }

    #[tokio::test]
    async fn an_exit_before_health_fails_fast_with_masked_logs() {
        let script = Script {
            processor: Processor::ExitsAtStart(3),
            logs: "booting\nusing key sk-test-secret\n".to_owned(),
            ..Script::default()
        };
        let (engine, outcome) = run(script, &invocation(Mode::Mock)).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        let message = error.message();
        assert!(
            message.contains("text/stats@1 exited with code 3 before /healthz answered"),
            "{message}"
        );
        assert!(message.contains("last log lines:\nbooting"), "{message}");
        assert!(
            !message.contains("sk-test-secret"),
            "a secret leaked: {message}"
        );
        assert!(!message.contains("container"), "{message}");
        assert_eq!(
            kinds(&engine),
            ["image", "create", "start", "logs", "remove"]
        );
    }

    #[tokio::test]
    async fn an_exit_during_run_fails_fast() {
        let script = Script {
            processor: Processor::ExitsOnRun(70),
            ..Script::default()
        };
        let (engine, outcome) = run(script, &invocation(Mode::Mock)).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert!(
            error
                .message()
                .contains("exited with code 70 while answering /run"),
            "{error}"
        );
        assert_eq!(engine.calls().last().map(is_remove), Some(true));
    }

    #[tokio::test]
    async fn a_hung_run_times_out_and_its_container_is_removed() {
        let mut invocation = invocation(Mode::Mock);
        invocation.timeout = Duration::from_millis(300);
        let script = Script {
            processor: Processor::HangsOnRun,
            ..Script::default()
        };
        let (engine, outcome) = run(script, &invocation).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Timeout);
        assert_eq!(
            error.detail(),
            "text/stats@1 gave no envelope within 300ms; its container is removed"
        );
        assert_eq!(kinds(&engine), ["image", "create", "start", "remove"]);
    }

    #[tokio::test]
    async fn an_engine_failure_still_removes_the_container() {
        let script = Script {
            start: Step::Fails,
            ..Script::default()
        };
        let (engine, outcome) = run(script, &invocation(Mode::Mock)).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert_eq!(error.detail(), "docker engine: the script says so");
        assert_eq!(kinds(&engine), ["image", "create", "start", "remove"]);
    }

    #[tokio::test]
    async fn a_failed_removal_is_reported_truthfully() {
        let failing_removal = Script {
            remove: Step::Fails,
            ..Script::default()
        };
        let (engine, outcome) = run(failing_removal.clone(), &invocation(Mode::Mock)).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        let name = removed_name(&engine);
        assert_eq!(
            error.detail(),
            format!(
                "text/stats@1 answered, but its container {name} could not be removed \
                 (docker engine: the script says so); remove it with `docker rm -f {name}`"
            )
        );

        let mut invocation = invocation(Mode::Mock);
        invocation.timeout = Duration::from_millis(200);
        let hung = Script {
            processor: Processor::HangsOnRun,
            ..failing_removal
        };
        let (engine, outcome) = run(hung, &invocation).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Timeout);
        let name = removed_name(&engine);
        assert_eq!(
            error.detail(),
            format!(
                "text/stats@1 gave no envelope within 200ms; its container {name} could not be \
                 removed (docker engine: the script says so); remove it with `docker rm -f {name}`"
            )
        );
    }

    /// The name of the container the adapter asked the engine to remove last.
    fn removed_name(engine: &RecordingEngine) -> String {
        container_name(engine.calls().last().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_engine_ends_the_run_at_once_and_names_the_container_left() {
        let mut invocation = invocation(Mode::Mock);
        invocation.timeout = Duration::from_secs(600);
        let script = Script {
            processor: Processor::HangsOnRun,
            ping: Step::Fails,
            remove: Step::Fails,
            ..Script::default()
        };
        let started = Instant::now();
        let (engine, outcome) = run(script, &invocation).await;
        assert!(
            started.elapsed() < invocation.timeout,
            "the run waited for its timeout"
        );
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        let name = removed_name(&engine);
        assert_eq!(
            error.detail(),
            format!(
                "lost the Docker engine during the run: docker engine: the script says so; its \
                 container {name} could not be removed (docker engine: the script says so); \
                 remove it with `docker rm -f {name}`"
            )
        );
        assert_eq!(kinds(&engine), ["image", "create", "start", "remove"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_that_stops_answering_pings_is_lost() {
        let mut invocation = invocation(Mode::Mock);
        invocation.timeout = Duration::from_secs(600);
        let script = Script {
            processor: Processor::HangsOnRun,
            ping: Step::Hangs,
            ..Script::default()
        };
        let (engine, outcome) = run(script, &invocation).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert_eq!(
            error.detail(),
            format!(
                "lost the Docker engine during the run: no answer to a ping within {LIVENESS_TIMEOUT:?}"
            )
        );
        assert_eq!(kinds(&engine), ["image", "create", "start", "remove"]);
    }

    #[tokio::test]
    async fn cancelling_during_run_removes_the_container() {
        let mut invocation = invocation(Mode::Mock);
        invocation.timeout = Duration::from_secs(60);
        let engine = RecordingEngine::new(Script {
            processor: Processor::HangsOnRun,
            ..Script::default()
        });
        let cancel = CancellationToken::new();
        let adapter = adapter(&engine);
        let (outcome, ()) = tokio::join!(adapter.invoke(&invocation, &cancel), async {
            engine.run_received().await;
            cancel.cancel();
        });
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Interrupted);
        assert_eq!(
            error.message(),
            "run interrupted: text/stats@1 was cancelled; its container is removed"
        );
        assert_eq!(kinds(&engine), ["image", "create", "start", "remove"]);
    }

    #[tokio::test]
    async fn cancelling_during_image_resolution_creates_no_container() {
        let engine = RecordingEngine::new(Script {
            image: Step::Hangs,
            ..Script::default()
        });
        let cancel = CancellationToken::new();
        let invocation = invocation(Mode::Mock);
        let adapter = adapter(&engine);
        let (outcome, ()) = tokio::join!(adapter.invoke(&invocation, &cancel), async {
            assert!(
                engine
                    .await_call(|call| matches!(call, Call::ImageId(_)))
                    .await
            );
            cancel.cancel();
        });
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Interrupted);
        assert_eq!(
            error.detail(),
            "text/stats@1 was cancelled; no container was created"
        );
        assert_eq!(kinds(&engine), ["image"]);
    }

    #[tokio::test]
    async fn a_cancelled_token_stops_the_run_before_the_engine_is_asked() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let engine = RecordingEngine::new(Script::default());
        let error = adapter(&engine)
            .invoke(&invocation(Mode::Mock), &cancel)
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::Interrupted);
        assert!(engine.calls().is_empty());
    }

    #[tokio::test]
    async fn a_create_in_flight_lands_before_the_removal() {
        let engine = RecordingEngine::new(Script {
            create: Step::Lands(Duration::from_millis(300)),
            ..Script::default()
        });
        let cancel = CancellationToken::new();
        let invocation = invocation(Mode::Mock);
        let adapter = adapter(&engine);
        let (outcome, ()) = tokio::join!(adapter.invoke(&invocation, &cancel), async {
            assert!(
                engine
                    .await_call(|call| matches!(call, Call::ImageId(_)))
                    .await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Interrupted);
        assert!(
            error.detail().ends_with("; its container is removed"),
            "{error}"
        );
        assert_eq!(kinds(&engine), ["image", "create", "remove"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_that_never_answers_is_not_claimed_removed() {
        let mut invocation = invocation(Mode::Mock);
        invocation.timeout = Duration::from_secs(1);
        let script = Script {
            create: Step::Hangs,
            ..Script::default()
        };
        let (engine, outcome) = run(script, &invocation).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Timeout);
        assert_eq!(
            error.detail(),
            "text/stats@1 gave no envelope within 1s; no container is left"
        );
        assert_eq!(kinds(&engine), ["image", "remove"]);
    }

    #[tokio::test]
    async fn dropping_a_run_removes_its_container() {
        let engine = RecordingEngine::new(Script {
            processor: Processor::HangsOnRun,
            ..Script::default()
        });
        let task = tokio::spawn({
            let adapter = adapter(&engine);
            async move {
                let invocation = invocation(Mode::Mock);
                adapter.invoke(&invocation, &CancellationToken::new()).await
            }
        });
        engine.run_received().await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(engine.await_call(is_remove).await, "{:?}", engine.calls());
    }

    #[test]
    fn free_ports_are_loopback_ports() {
        assert_ne!(free_loopback_port().unwrap(), 0);
    }
}
