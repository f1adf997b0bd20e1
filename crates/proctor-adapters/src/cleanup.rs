//! Removing a run's container, whatever happens to the run.
//!
//! A [`ContainerGuard`] is armed with the container's name *before* the create request is
//! sent. The adapter removes the container itself once the run ends (success, failure,
//! timeout or cancellation) and reports what became of it; if the run's future is dropped
//! instead, dropping the guard spawns the removal, on the current runtime when there is
//! one, else on a thread of its own. A removal gets [`REMOVE_TIMEOUT`], so a hung engine
//! cannot hold the run forever.

use std::sync::Arc;
use std::time::Duration;

use proctor_contract::{CanonError, ErrorCode};

use crate::engine::{ContainerEngine, Removal};

/// Longest wait for the engine to remove a container.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Force-removes a container on [`remove`](ContainerGuard::remove) or on drop.
pub(crate) struct ContainerGuard {
    engine: Arc<dyn ContainerEngine>,
    name: String,
    armed: bool,
}

impl ContainerGuard {
    /// A guard for the container that will be named `name`.
    pub(crate) fn new(engine: Arc<dyn ContainerEngine>, name: String) -> ContainerGuard {
        ContainerGuard {
            engine,
            name,
            armed: true,
        }
    }

    /// The container's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Removes the container now and disarms the guard.
    pub(crate) async fn remove(mut self) -> Result<Removal, CanonError> {
        self.armed = false;
        remove(self.engine.as_ref(), &self.name).await
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let engine = Arc::clone(&self.engine);
        let name = std::mem::take(&mut self.name);
        let removal = async move {
            if let Err(error) = remove(engine.as_ref(), &name).await {
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

/// Removes `name` within [`REMOVE_TIMEOUT`].
async fn remove(engine: &dyn ContainerEngine, name: &str) -> Result<Removal, CanonError> {
    let removal = tokio::time::timeout(REMOVE_TIMEOUT, engine.remove_container(name))
        .await
        .map_err(|_| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!(
                    "docker engine: removing container {name}: no answer within {REMOVE_TIMEOUT:?}"
                ),
            )
        })??;
    tracing::debug!(event = "container.removed", container = %name, removal = ?removal);
    Ok(removal)
}
