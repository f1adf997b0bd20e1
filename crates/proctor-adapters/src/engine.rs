//! The container engine as a run needs it, behind [`ContainerEngine`], so the local
//! adapter's run logic (timeout, early exit, cleanup, cancellation) is tested against a
//! recording double; [`BollardEngine`] is the Docker engine through its API. bollard types
//! do not leave this crate.

use std::fmt;
use std::path::{Path, PathBuf};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use proctor_contract::{CanonError, ErrorCode, PinnedReference, Progress, Redactor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::OnceCell;

use crate::dockerfile_build::{DockerfileBuild, build_dockerfile_image};
use crate::image_build::{BuiltImage, ImageBuild, build_image};
use crate::image_pin::{PinnedImage, ensure_pinned_image};

/// What became of a container the adapter asked the engine to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The engine removed it.
    Removed,
    /// There was none by that name (never created, or already removed by someone else).
    Absent,
}

/// The operations a local run performs on the container engine.
pub(crate) trait ContainerEngine: Send + Sync + fmt::Debug {
    /// Opens the connection to the engine (negotiating its API version) ahead of need.
    fn negotiate(&self) -> BoxFuture<'_, Result<(), CanonError>>;

    /// The ID (`sha256:…`) of the local image `image` names; an error when there is none.
    fn image_id<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<String, CanonError>>;

    /// Makes sure the pinned image is present (pulled by digest when absent) and carries
    /// the pinned digest.
    fn ensure_pinned_image<'a>(
        &'a self,
        reference: &'a PinnedReference,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<PinnedImage, CanonError>>;

    /// Builds a processor's image from source.
    fn build_image<'a>(
        &'a self,
        build: &'a ImageBuild<'a>,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<BuiltImage, CanonError>>;

    /// Builds a processor's image from its Dockerfile.
    fn build_dockerfile_image<'a>(
        &'a self,
        build: &'a DockerfileBuild<'a>,
    ) -> BoxFuture<'a, Result<BuiltImage, CanonError>>;

    /// Creates the container `name` from `body`.
    fn create_container<'a>(
        &'a self,
        name: &'a str,
        body: ContainerCreateBody,
    ) -> BoxFuture<'a, Result<(), CanonError>>;

    /// Starts the container `name`.
    fn start_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), CanonError>>;

    /// Resolves with the container's exit code once it stops; pends forever when the
    /// engine cannot say (the run's timeout still applies).
    fn exit_code<'a>(&'a self, name: &'a str) -> BoxFuture<'a, i64>;

    /// The container's last `lines` lines of output (stdout and stderr); empty when the
    /// engine has none or cannot say.
    fn log_tail<'a>(&'a self, name: &'a str, lines: usize) -> BoxFuture<'a, String>;

    /// The host port the engine published `container_port` (`"8000/tcp"`) on, if any.
    fn published_port<'a>(
        &'a self,
        name: &'a str,
        container_port: &'a str,
    ) -> BoxFuture<'a, Result<Option<u16>, CanonError>>;

    /// Force-removes the container `name` with its anonymous volumes.
    fn remove_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Removal, CanonError>>;

    /// Asks the engine whether it is there (`GET /_ping`); an error when it does not answer.
    fn ping(&self) -> BoxFuture<'_, Result<(), CanonError>>;

    /// The names of every container, running or not, labelled `label` = `value`.
    fn labelled_containers<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, CanonError>>;

    /// Resolves once the container `name` no longer exists (another party is removing it).
    fn removed<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), CanonError>>;

    /// Sends `signal` (`SIGTERM`) to the main process of the container `name`.
    fn signal<'a>(
        &'a self,
        name: &'a str,
        signal: &'a str,
    ) -> BoxFuture<'a, Result<(), CanonError>>;

    /// The user the image `image` declares (its config's `User`), `None` when it declares
    /// none.
    fn image_user<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CanonError>>;
}

/// The Docker engine at `DOCKER_HOST`, else the local socket. The API version is
/// negotiated on the first request, so making one sends nothing.
#[derive(Debug)]
pub(crate) struct BollardEngine {
    client: Docker,
    negotiated: OnceCell<Docker>,
}

impl BollardEngine {
    /// A client of the engine found as the docker CLI finds it: `DOCKER_HOST` (`unix://…`
    /// or `tcp://…`), else the local socket; with `DOCKER_TLS_VERIFY` set (non-empty), TLS
    /// to a `tcp://` engine, with the client certificate and the CA of `DOCKER_CERT_PATH`
    /// (see [`connect_tls`]). Anything else is refused, never ignored: another scheme, or
    /// `DOCKER_TLS_VERIFY` without a `tcp://` host.
    pub(crate) fn connect() -> Result<BollardEngine, CanonError> {
        let tls_verify =
            std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|value| !value.is_empty());
        let client = match std::env::var("DOCKER_HOST") {
            Ok(host) if host.starts_with("tcp://") && tls_verify => connect_tls(&host)?,
            Ok(host) if host.starts_with("tcp://") => {
                Docker::connect_with_http(&host, ENGINE_TIMEOUT_S, API_DEFAULT_VERSION)
                    .map_err(unreachable)?
            }
            _ if tls_verify => {
                return Err(CanonError::new(
                    ErrorCode::AdapterInvocation,
                    "DOCKER_TLS_VERIFY is set, but DOCKER_HOST is not tcp://HOST:PORT: \
                     TLS to the Docker engine needs a tcp:// DOCKER_HOST",
                ));
            }
            Ok(host) if host.starts_with("unix://") => {
                Docker::connect_with_unix(&host, ENGINE_TIMEOUT_S, API_DEFAULT_VERSION)
                    .map_err(unreachable)?
            }
            Ok(host) => {
                return Err(CanonError::new(
                    ErrorCode::AdapterInvocation,
                    format!(
                        "DOCKER_HOST `{}` is not supported: use unix://PATH or tcp://HOST:PORT",
                        Redactor::default().redact(&host)
                    ),
                ));
            }
            Err(_) => Docker::connect_with_unix_defaults().map_err(unreachable)?,
        };
        Ok(BollardEngine {
            client,
            negotiated: OnceCell::new(),
        })
    }

    /// The client, its API version negotiated with the engine.
    async fn docker(&self) -> Result<&Docker, CanonError> {
        self.negotiated
            .get_or_try_init(|| self.client.clone().negotiate_version())
            .await
            .map_err(unreachable)
    }

    /// The engine's own account of itself (`GET /version`).
    pub(crate) async fn version(&self) -> Result<bollard::models::SystemVersion, CanonError> {
        self.docker()
            .await?
            .version()
            .await
            .map_err(|error| engine_error("reading its version", error))
    }
}

impl ContainerEngine for BollardEngine {
    fn negotiate(&self) -> BoxFuture<'_, Result<(), CanonError>> {
        Box::pin(async move { self.docker().await.map(|_| ()) })
    }

    fn image_id<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<String, CanonError>> {
        Box::pin(async move {
            let details = self
                .docker()
                .await?
                .inspect_image(image)
                .await
                .map_err(|error| engine_error(&format!("inspecting image {image}"), error))?;
            Ok(details.id.unwrap_or_default())
        })
    }

    fn ensure_pinned_image<'a>(
        &'a self,
        reference: &'a PinnedReference,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<PinnedImage, CanonError>> {
        Box::pin(
            async move { ensure_pinned_image(self.docker().await?, reference, progress).await },
        )
    }

    fn build_image<'a>(
        &'a self,
        build: &'a ImageBuild<'a>,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<BuiltImage, CanonError>> {
        Box::pin(async move { build_image(self.docker().await?, build, progress).await })
    }

    fn build_dockerfile_image<'a>(
        &'a self,
        build: &'a DockerfileBuild<'a>,
    ) -> BoxFuture<'a, Result<BuiltImage, CanonError>> {
        Box::pin(async move { build_dockerfile_image(self.docker().await?, build).await })
    }

    fn create_container<'a>(
        &'a self,
        name: &'a str,
        body: ContainerCreateBody,
    ) -> BoxFuture<'a, Result<(), CanonError>> {
        Box::pin(async move {
            let options = CreateContainerOptionsBuilder::default().name(name).build();
            self.docker()
                .await?
                .create_container(Some(options), body)
                .await
                .map(drop)
                .map_err(|error| engine_error("creating the container", error))
        })
    }

    fn start_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), CanonError>> {
        Box::pin(async move {
            self.docker()
                .await?
                .start_container(name, None)
                .await
                .map_err(|error| engine_error("starting the container", error))
        })
    }

    fn exit_code<'a>(&'a self, name: &'a str) -> BoxFuture<'a, i64> {
        Box::pin(async move {
            let options = WaitContainerOptionsBuilder::default()
                .condition("not-running")
                .build();
            let answer = match self.docker().await {
                Ok(docker) => docker.wait_container(name, Some(options)).next().await,
                Err(_) => None,
            };
            match answer {
                Some(Ok(response)) => response.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                _ => std::future::pending().await,
            }
        })
    }

    fn log_tail<'a>(&'a self, name: &'a str, lines: usize) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let Ok(docker) = self.docker().await else {
                return String::new();
            };
            let options = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .tail(&lines.to_string())
                .build();
            let chunks: Vec<_> = docker.logs(name, Some(options)).collect().await;
            chunks
                .into_iter()
                .filter_map(Result::ok)
                .map(|chunk| chunk.to_string())
                .collect()
        })
    }

    fn published_port<'a>(
        &'a self,
        name: &'a str,
        container_port: &'a str,
    ) -> BoxFuture<'a, Result<Option<u16>, CanonError>> {
        Box::pin(async move {
            let details = self
                .docker()
                .await?
                .inspect_container(name, None)
                .await
                .map_err(|error| engine_error("inspecting the container", error))?;
            Ok(details
                .network_settings
                .and_then(|settings| settings.ports)
                .and_then(|mut ports| ports.remove(container_port).flatten())
                .into_iter()
                .flatten()
                .find_map(|binding| binding.host_port.and_then(|port| port.parse().ok())))
        })
    }

    fn remove_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Removal, CanonError>> {
        Box::pin(async move {
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match self
                .docker()
                .await?
                .remove_container(name, Some(options))
                .await
            {
                Ok(()) => Ok(Removal::Removed),
                // Already being removed (by the engine's own clean-up, say) is as good as gone.
                Err(error) if is_not_found(&error) || is_removal_in_progress(&error) => {
                    Ok(Removal::Absent)
                }
                Err(error) => Err(engine_error(&format!("removing container {name}"), error)),
            }
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), CanonError>> {
        Box::pin(async move {
            self.docker()
                .await?
                .ping()
                .await
                .map(drop)
                .map_err(|error| engine_error("ping", error))
        })
    }

    fn labelled_containers<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, CanonError>> {
        Box::pin(self.list_labelled(format!("{label}={value}")))
    }

    fn removed<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), CanonError>> {
        Box::pin(async move {
            let options = WaitContainerOptionsBuilder::default()
                .condition("removed")
                .build();
            let answer = self
                .docker()
                .await?
                .wait_container(name, Some(options))
                .next()
                .await;
            match answer {
                None | Some(Ok(_)) => Ok(()),
                // Gone before the wait began; a non-zero exit of a removed container is
                // reported as an error too.
                Some(Err(error))
                    if is_not_found(&error)
                        || matches!(
                            error,
                            bollard::errors::Error::DockerContainerWaitError { .. }
                        ) =>
                {
                    Ok(())
                }
                Some(Err(error)) => Err(engine_error(
                    &format!("waiting for the removal of container {name}"),
                    error,
                )),
            }
        })
    }

    fn signal<'a>(
        &'a self,
        name: &'a str,
        signal: &'a str,
    ) -> BoxFuture<'a, Result<(), CanonError>> {
        Box::pin(self.kill(name, signal))
    }

    fn image_user<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CanonError>> {
        Box::pin(self.configured_user(image))
    }
}

impl BollardEngine {
    /// Sends `signal` to the container `name`'s main process.
    async fn kill(&self, name: &str, signal: &str) -> Result<(), CanonError> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.docker()
            .await?
            .kill_container(name, Some(options))
            .await
            .map_err(|error| engine_error(&format!("sending {signal} to container {name}"), error))
    }

    /// The `User` of the image `image`'s config, when set.
    async fn configured_user(&self, image: &str) -> Result<Option<String>, CanonError> {
        let details = self
            .docker()
            .await?
            .inspect_image(image)
            .await
            .map_err(|error| engine_error(&format!("inspecting image {image}"), error))?;
        Ok(details
            .config
            .and_then(|config| config.user)
            .filter(|user| !user.is_empty()))
    }

    /// The names of the containers `filter` (`label=value`) selects, stopped ones included.
    async fn list_labelled(&self, filter: String) -> Result<Vec<String>, CanonError> {
        let filters = std::collections::HashMap::from([("label", vec![filter])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker()
            .await?
            .list_containers(Some(options))
            .await
            .map_err(|error| engine_error("listing containers", error))?;
        Ok(containers
            .into_iter()
            .filter_map(|container| container.names?.into_iter().next())
            .map(|name| name.trim_start_matches('/').to_owned())
            .collect())
    }
}

/// How long one request to the engine may take, in seconds (bollard's default).
const ENGINE_TIMEOUT_S: u64 = 120;

/// A TLS client of the engine at `host` (`tcp://HOST:PORT`), as the docker CLI makes one
/// with `DOCKER_TLS_VERIFY`: the client certificate `cert.pem` and key `key.pem`, and the
/// server verified against `ca.pem` (and the system's roots, as the docker CLI does), all
/// three in `DOCKER_CERT_PATH`, by default `~/.docker`. A file that is missing, unreadable
/// or holds no certificate or key is refused by name before anything is sent.
fn connect_tls(host: &str) -> Result<Docker, CanonError> {
    let cert_dir = match std::env::var_os("DOCKER_CERT_PATH").filter(|path| !path.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => std::env::home_dir()
            .ok_or_else(|| {
                CanonError::new(
                    ErrorCode::AdapterInvocation,
                    "DOCKER_TLS_VERIFY is set, but neither DOCKER_CERT_PATH nor a home \
                     directory says where ca.pem, cert.pem and key.pem are",
                )
            })?
            .join(".docker"),
    };
    let [ca, cert, key] = ["ca.pem", "cert.pem", "key.pem"].map(|name| cert_dir.join(name));
    let unusable = |path: &Path, why: String| {
        CanonError::new(
            ErrorCode::AdapterInvocation,
            format!(
                "DOCKER_TLS_VERIFY is set, but {} cannot be used: {why}",
                path.display()
            ),
        )
    };
    for path in [&ca, &cert] {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|error| unusable(path, error.to_string()))?;
        if certificates.is_empty() {
            return Err(unusable(path, "it holds no PEM certificate".to_owned()));
        }
    }
    PrivateKeyDer::from_pem_file(&key).map_err(|error| unusable(&key, error.to_string()))?;
    // bollard builds its TLS configuration with the process-wide rustls provider.
    proctor_tls::install_crypto_provider();
    Docker::connect_with_ssl(
        host,
        &key,
        &cert,
        &ca,
        ENGINE_TIMEOUT_S,
        API_DEFAULT_VERSION,
    )
    .map_err(unreachable)
}

/// The engine cannot be reached (the text is redacted: an address may carry credentials).
fn unreachable(error: bollard::errors::Error) -> CanonError {
    let at = std::env::var("DOCKER_HOST")
        .map(|host| format!(" at DOCKER_HOST `{host}`"))
        .unwrap_or_default();
    // The causes say why: a refused connection, a certificate the client does not trust.
    let mut why = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        why = format!("{why}: {inner}");
        cause = inner.source();
    }
    CanonError::new(
        ErrorCode::AdapterInvocation,
        Redactor::default()
            .redact(&format!(
                "cannot reach the Docker engine{at}: {why}; is dockerd running? (scripts/setup.sh starts it)"
            ))
            .into_owned(),
    )
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

/// Whether the engine answered that the container is already being removed.
fn is_removal_in_progress(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 409, message }
        if message.contains("already in progress"))
}
