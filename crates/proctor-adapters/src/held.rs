//! A processor's container held running for a caller that speaks to it directly — the
//! conformance kit — rather than for one run.
//!
//! [`LocalAdapter::hold`](crate::LocalAdapter::hold) starts it as it starts a run's
//! container (the same image resolution, hardening and network for the mode) with a
//! private directory at `/artifacts`, as a warm container has: [`HeldContainer::run`] makes
//! a run's two directories there before posting its payload and moves them into the run's
//! [`Staging`] area after the answer. Every exchange is bounded by the invocation's
//! timeout. The container is removed by [`HeldContainer::remove`], or in the background
//! when the handle is dropped.

use std::sync::Arc;
use std::time::Duration;

use proctor_contract::{CanonError, ErrorCode, Health, RunPayload};
use tempfile::TempDir;

use crate::Staging;
use crate::cleanup::ContainerGuard;
use crate::container::Network;
use crate::engine::ContainerEngine;
use crate::transport::ProcessorClient;
use crate::warm::WarmRoot;

/// How many log lines [`HeldContainer::logs`] reads: every line a conforming processor
/// writes in a few runs.
const MAX_LOG_LINES: usize = 100_000;

/// One HTTP answer of a held processor, as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The whole body (at most the invocation's limit for its kind of answer).
    pub body: Vec<u8>,
}

/// A healthy processor container, kept until [`HeldContainer::remove`] (or dropped).
pub struct HeldContainer {
    pub(crate) engine: Arc<dyn ContainerEngine>,
    pub(crate) container: ContainerGuard,
    /// The socket directory of a container without network, removed with the handle.
    pub(crate) socket_dir: Option<TempDir>,
    pub(crate) root: WarmRoot,
    pub(crate) client: ProcessorClient,
    pub(crate) health: Health,
    pub(crate) image_id: String,
    pub(crate) expected_digest: String,
    pub(crate) network: Network,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for HeldContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldContainer")
            .field("container", &self.container.name())
            .field("image_id", &self.image_id)
            .finish_non_exhaustive()
    }
}

impl HeldContainer {
    /// The container's name.
    pub fn name(&self) -> &str {
        self.container.name()
    }

    /// The health document that let the container be held.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The image the container runs, by ID.
    pub fn image_id(&self) -> &str {
        &self.image_id
    }

    /// The digest the processor must report (`PROCTOR_IMAGE_DIGEST`).
    pub fn expected_digest(&self) -> &str {
        &self.expected_digest
    }

    /// The container's network mode: `none` (mock), `bridge` or `host`.
    pub fn network_mode(&self) -> &'static str {
        match self.network {
            Network::None => "none",
            Network::Bridge => "bridge",
            Network::Host { .. } => "host",
        }
    }

    /// `GET path`, answered whatever its status.
    pub async fn get(&self, path: &str) -> Result<HttpAnswer, CanonError> {
        self.exchange(path, None).await
    }

    /// `POST path` with `body` as `content_type`, answered whatever its status; nothing is
    /// prepared for a run, so a conforming processor refuses what it is sent.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<HttpAnswer, CanonError> {
        self.exchange(path, Some((content_type, body))).await
    }

    /// Posts `payload` as JSON to `path` (`/run` or `/run-stream`) once its two
    /// directories are made, and moves what the processor wrote there into `staging`
    /// (this execution's) when the answer is in, whatever it is.
    pub async fn run(
        &self,
        path: &str,
        payload: &RunPayload,
        staging: &Staging,
    ) -> Result<HttpAnswer, CanonError> {
        self.root.prepare(payload)?;
        let body = serde_json::to_vec(payload).map_err(|error| {
            CanonError::new(ErrorCode::Internal, format!("run payload: {error}"))
        })?;
        let answer = self.exchange(path, Some(("application/json", body))).await;
        let moved = self.root.move_out(payload, staging);
        let answer = answer?;
        moved?;
        Ok(answer)
    }

    /// The container's output so far (stdout and stderr), unredacted.
    pub async fn logs(&self) -> String {
        self.engine.log_tail(self.name(), MAX_LOG_LINES).await
    }

    /// The user the image declares, `None` when it declares none (it would run as root
    /// unless told otherwise).
    pub async fn image_user(&self) -> Result<Option<String>, CanonError> {
        self.engine.image_user(&self.image_id).await
    }

    /// Sends SIGTERM to the processor and waits up to `within` for it to exit: its exit
    /// code, or `None` when it was still running then.
    pub async fn terminate(&self, within: Duration) -> Result<Option<i64>, CanonError> {
        self.engine.signal(self.name(), "SIGTERM").await?;
        Ok(
            tokio::time::timeout(within, self.engine.exit_code(self.name()))
                .await
                .ok(),
        )
    }

    /// Removes the container (and its directories).
    pub async fn remove(self) -> Result<(), CanonError> {
        let HeldContainer {
            container,
            socket_dir,
            root,
            ..
        } = self;
        let removed = container.remove().await.map(drop);
        drop((socket_dir, root));
        removed
    }

    /// One exchange, bounded by the invocation's timeout.
    async fn exchange(
        &self,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<HttpAnswer, CanonError> {
        match tokio::time::timeout(self.timeout, self.client.exchange(path, body)).await {
            Ok(Ok((status, body))) => Ok(HttpAnswer { status, body }),
            Ok(Err(broken)) => Err(CanonError::new(ErrorCode::AdapterInvocation, broken.0)),
            Err(_) => Err(CanonError::new(
                ErrorCode::Timeout,
                format!("{path} gave no answer within {:?}", self.timeout),
            )),
        }
    }
}
