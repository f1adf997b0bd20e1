//! Removing a run's container, whatever happens to the run.
//!
//! A [`ContainerGuard`] is armed with the container's name *before* the create request is
//! sent. The adapter removes the container itself once the run ends (success, failure,
//! timeout or Ctrl-C); if the run's future is dropped instead (a caller's own timeout or
//! cancellation), dropping the guard spawns the removal, on the current runtime when there
//! is one, else on a thread of its own.

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use proctor_contract::CanonError;

use crate::local::{engine_error, is_not_found};

/// Force-removes a container on [`remove`](ContainerGuard::remove) or on drop.
pub(crate) struct ContainerGuard {
    docker: Docker,
    name: String,
    armed: bool,
}

impl ContainerGuard {
    /// A guard for the container that will be named `name`.
    pub(crate) fn new(docker: Docker, name: String) -> ContainerGuard {
        ContainerGuard {
            docker,
            name,
            armed: true,
        }
    }

    /// The container's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Removes the container now and disarms the guard.
    pub(crate) async fn remove(mut self) -> Result<(), CanonError> {
        self.armed = false;
        force_remove(&self.docker, &self.name).await
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let docker = self.docker.clone();
        let name = std::mem::take(&mut self.name);
        let removal = async move {
            if let Err(error) = force_remove(&docker, &name).await {
                tracing::warn!(event = "container.remove_failed", container = %name, error = %error);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(removal);
            }
            Err(_) => {
                std::thread::spawn(move || {
                    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        runtime.block_on(removal);
                    }
                });
            }
        }
    }
}

/// Whether the engine answered that the container is already being removed.
fn is_removal_in_progress(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 409, message }
        if message.contains("already in progress"))
}

/// Force-removes `name` with its anonymous volumes; a container that is already gone is
/// fine.
async fn force_remove(docker: &Docker, name: &str) -> Result<(), CanonError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => {
            tracing::debug!(event = "container.removed", container = %name);
            Ok(())
        }
        Err(error) if is_not_found(&error) || is_removal_in_progress(&error) => Ok(()),
        Err(error) => Err(engine_error(&format!("removing container {name}"), error)),
    }
}
