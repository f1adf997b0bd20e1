//! The local adapter: one hardened container of the local Docker engine per run.
//!
//! A run goes: resolve the image (build from source, pull a pin, or take a local ID) →
//! arm the cleanup guard → create and start the container → poll `/healthz` → `POST /run`
//! → check the envelope → remove the container. Everything from container creation on is
//! bounded by the invocation's timeout and races Ctrl-C and the container's own exit, so a
//! processor that dies early fails fast with its last log lines. See [`crate::container`]
//! for the network and hardening of the container.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use proctor_contract::{CanonError, Envelope, ErrorCode, Redactor};
use tempfile::TempDir;

use crate::cleanup::ContainerGuard;
use crate::container::{
    ContainerSettings, LocalOptions, Network, NetworkOption, SOCKET_NAME, create_body,
};
use crate::envelope_check::check_envelope;
use crate::image_build::{BuiltImage, ImageBuild, build_image};
use crate::image_pin::ensure_pinned_image;
use crate::platform::host_platform;
use crate::transport::{Endpoint, ProcessorClient};
use crate::{Adapter, ImageSource, Invocation};

/// Label carrying the execution id on every run's container.
pub const LABEL_EXECUTION_ID: &str = "proctor.execution_id";
/// Label carrying the processor ref on every run's container and built image.
pub const LABEL_REF: &str = "proctor.ref";
/// The user processors run as when proctor runs as root.
const UNPRIVILEGED_ID: u32 = 65532;
/// How many log lines of a failed container an error carries.
const LOG_TAIL_LINES: &str = "20";
/// How long a broken `/run` connection waits for the container's exit to explain it.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Runs processors in containers of the local Docker engine, through its API.
#[derive(Debug, Clone)]
pub struct LocalAdapter {
    docker: Docker,
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

impl LocalAdapter {
    /// Connects to the engine (`DOCKER_HOST`, else the local socket) and negotiates the API
    /// version.
    pub async fn connect() -> Result<LocalAdapter, CanonError> {
        let unreachable = |error: bollard::errors::Error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!(
                    "cannot reach the Docker engine: {error}; is dockerd running? (scripts/setup.sh starts it)"
                ),
            )
        };
        let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        Ok(LocalAdapter { docker })
    }

    /// Builds a processor's image from source; see [`ImageBuild`]. The returned ID can be
    /// run with [`ImageSource::Local`].
    pub async fn build_image(&self, build: &ImageBuild<'_>) -> Result<BuiltImage, CanonError> {
        build_image(&self.docker, build).await
    }

    /// The whole run, Ctrl-C included; the container is gone when this returns.
    async fn invoke_local(&self, invocation: &Invocation) -> Result<Envelope, CanonError> {
        let mut resources = RunResources::default();
        let outcome = tokio::select! {
            biased;
            () = ctrl_c() => Err(CanonError::new(
                ErrorCode::Interrupted,
                format!("Ctrl-C during {}; its container is removed", invocation.payload.processor_ref),
            )),
            outcome = self.run(invocation, &mut resources) => outcome,
        };
        let removal = match resources.container.take() {
            Some(container) => container.remove().await,
            None => Ok(()),
        };
        drop(resources.socket_dir);
        match (outcome, removal) {
            (Ok(envelope), Ok(())) => Ok(envelope),
            (Ok(_), Err(error)) => Err(error),
            (Err(error), removal) => {
                if let Err(removal_error) = removal {
                    tracing::warn!(event = "container.remove_failed", error = %removal_error);
                }
                Err(error)
            }
        }
    }

    /// Resolves the image, then runs the container within the timeout.
    async fn run(
        &self,
        invocation: &Invocation,
        resources: &mut RunResources,
    ) -> Result<Envelope, CanonError> {
        let options = LocalOptions::parse(&invocation.options)?;
        let network = match options.network_option(invocation.payload.mode)? {
            None => Network::None,
            Some(NetworkOption::Bridge) => Network::Bridge,
            Some(NetworkOption::Host) => Network::Host {
                port: free_loopback_port()?,
            },
        };
        let image = self.resolve_image(invocation).await?;
        let user = container_user()?;
        let artifacts_root = prepare_artifacts_root(&invocation.artifacts_root, user)?;
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
            options: &options,
            image_id: &image.image_id,
            expected_digest: &image.expected_digest,
            network,
            user,
            artifacts_root: &artifacts_root,
            socket_dir,
        });
        let name = format!("proctor-{}", uuid::Uuid::new_v4().simple());
        let container = resources
            .container
            .insert(ContainerGuard::new(self.docker.clone(), name));
        let converse = async {
            let options = CreateContainerOptionsBuilder::default()
                .name(container.name())
                .build();
            self.docker
                .create_container(Some(options), body)
                .await
                .map_err(|error| engine_error("creating the container", error))?;
            self.docker
                .start_container(container.name(), None)
                .await
                .map_err(|error| engine_error("starting the container", error))?;
            tracing::info!(
                event = "container.started",
                execution_id = %invocation.payload.execution_id,
                container = %container.name(),
                image_id = %image.image_id,
            );
            let endpoint = match known_endpoint {
                Some(endpoint) => endpoint,
                None => {
                    Endpoint::Loopback(self.published_port(container.name(), invocation).await?)
                }
            };
            self.converse(
                container.name(),
                &endpoint,
                invocation,
                &image.expected_digest,
            )
            .await
        };
        match tokio::time::timeout(invocation.timeout, converse).await {
            Ok(outcome) => outcome,
            Err(_) => Err(CanonError::new(
                ErrorCode::Timeout,
                format!(
                    "{} gave no envelope within {:?}; its container is removed",
                    invocation.payload.processor_ref, invocation.timeout
                ),
            )),
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
                let pinned = ensure_pinned_image(&self.docker, reference).await?;
                Ok(ResolvedImage {
                    image_id: pinned.image_id,
                    expected_digest: pinned.digest,
                })
            }
            ImageSource::Local { image_id } => {
                let image = self.docker.inspect_image(image_id).await.map_err(|error| {
                    engine_error(&format!("inspecting image {image_id}"), error)
                })?;
                if image.id.as_deref() != Some(image_id.as_str()) {
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

    /// The host port the engine published the processor's port on (bridge network).
    async fn published_port(
        &self,
        container: &str,
        invocation: &Invocation,
    ) -> Result<u16, CanonError> {
        let details = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|error| engine_error("inspecting the container", error))?;
        let key = format!("{}/tcp", invocation.spec.build.port);
        details
            .network_settings
            .and_then(|settings| settings.ports)
            .and_then(|mut ports| ports.remove(&key).flatten())
            .into_iter()
            .flatten()
            .find_map(|binding| binding.host_port.and_then(|port| port.parse().ok()))
            .ok_or_else(|| {
                CanonError::new(
                    ErrorCode::AdapterInvocation,
                    format!("the engine published no host port for {key}"),
                )
            })
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
        let client = ProcessorClient::new(endpoint)?;
        let mut exited = Box::pin(self.exit_code(container));
        tokio::select! {
            health = client.wait_healthy(&invocation.payload.processor_ref) => health?,
            code = &mut exited => {
                return Err(self.exited_early(container, code, "before /healthz answered", invocation).await);
            }
        }
        tracing::debug!(event = "container.healthy", container = %container);
        let (status, body) = tokio::select! {
            answer = client.post_run(&invocation.payload) => match answer {
                Ok(answer) => answer,
                Err(broken) => {
                    return Err(match tokio::time::timeout(EXIT_GRACE, &mut exited).await {
                        Ok(code) => self.exited_early(container, code, "while answering /run", invocation).await,
                        Err(_) => {
                            let logs = self.last_logs(container, invocation).await;
                            CanonError::new(ErrorCode::AdapterInvocation, format!("{}{logs}", broken.0))
                        }
                    });
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

    /// Resolves with the container's exit code once it stops; pends forever if the engine
    /// cannot say (the run's timeout still applies).
    async fn exit_code(&self, container: &str) -> i64 {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        match self
            .docker
            .wait_container(container, Some(options))
            .next()
            .await
        {
            Some(Ok(response)) => response.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            _ => std::future::pending().await,
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
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(LOG_TAIL_LINES)
            .build();
        let chunks: Vec<_> = self.docker.logs(container, Some(options)).collect().await;
        let text: String = chunks
            .into_iter()
            .filter_map(Result::ok)
            .map(|chunk| chunk.to_string())
            .collect();
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
    ) -> BoxFuture<'a, Result<Envelope, CanonError>> {
        Box::pin(self.invoke_local(invocation))
    }
}

/// Resolves on Ctrl-C; never, where signals cannot be watched.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The `uid:gid` processors run as: [`UNPRIVILEGED_ID`] when proctor runs as root, else
/// proctor's own effective ids (so both sides can write the artifacts root).
fn container_user() -> Result<(u32, u32), CanonError> {
    let (uid, gid) = effective_ids()?;
    Ok(if uid == 0 {
        (UNPRIVILEGED_ID, UNPRIVILEGED_ID)
    } else {
        (uid, gid)
    })
}

/// This process's effective uid and gid: the owner of `/proc/self` (procfs gives each
/// process directory its effective ids).
fn effective_ids() -> Result<(u32, u32), CanonError> {
    let metadata = std::fs::metadata("/proc/self").map_err(|error| {
        CanonError::new(
            ErrorCode::AdapterInvocation,
            format!("cannot read /proc/self for the user id: {error}"),
        )
    })?;
    Ok((metadata.uid(), metadata.gid()))
}

/// Creates the artifacts root if missing and returns its absolute path; as root, hands
/// the root directory itself to the container user so the processor can write under it.
fn prepare_artifacts_root(root: &Path, user: (u32, u32)) -> Result<PathBuf, CanonError> {
    let failed = |what: &str, error: std::io::Error| {
        CanonError::new(
            ErrorCode::AdapterInvocation,
            format!("artifacts root {}: {what}: {error}", root.display()),
        )
    };
    std::fs::create_dir_all(root).map_err(|error| failed("cannot create it", error))?;
    let absolute = root
        .canonicalize()
        .map_err(|error| failed("cannot resolve it", error))?;
    if effective_ids()?.0 == 0 {
        std::os::unix::fs::chown(&absolute, Some(user.0), Some(user.1))
            .map_err(|error| failed("cannot hand it to the container user", error))?;
    }
    Ok(absolute)
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
    if effective_ids()?.0 == 0 {
        std::os::unix::fs::chown(dir.path(), Some(user.0), Some(user.1)).map_err(failed)?;
    }
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

/// An engine failure while `doing` something.
pub(crate) fn engine_error(doing: &str, error: bollard::errors::Error) -> CanonError {
    CanonError::new(
        ErrorCode::AdapterInvocation,
        format!("docker engine: {doing}: {error}"),
    )
}

/// Whether the engine answered 404.
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_runs_processors_unprivileged() {
        let (uid, gid) = effective_ids().unwrap();
        let user = container_user().unwrap();
        if uid == 0 {
            assert_eq!(user, (UNPRIVILEGED_ID, UNPRIVILEGED_ID));
        } else {
            assert_eq!(user, (uid, gid));
        }
    }

    #[test]
    fn artifacts_root_is_created_and_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b");
        let user = container_user().unwrap();
        let absolute = prepare_artifacts_root(&root, user).unwrap();
        assert!(absolute.is_absolute() && absolute.is_dir());
        assert_eq!(std::fs::metadata(&absolute).unwrap().uid(), user.0);
    }

    #[test]
    fn free_ports_are_loopback_ports() {
        assert_ne!(free_loopback_port().unwrap(), 0);
    }
}
