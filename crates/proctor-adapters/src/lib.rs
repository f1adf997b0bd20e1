//! Adapters move a run payload to a processor and bring its envelope back.
//!
//! **Invariant:** adapters never parse provider payloads and never write receipts; they
//! validate envelopes, check the index path and the image digest, and clean up.
//!
//! [`LocalAdapter`] runs processors in containers of the local Docker engine. Engine types
//! (bollard) stay inside this crate: its public API speaks in image IDs, references and
//! [`CanonError`]s. A local container writes into its execution's [`Staging`] area and
//! nowhere else; the caller checks the staged files and commits them to the World.
//! [`ModalAdapter`] runs processors on their Modal deployments, found with the naming
//! convention of `proctor-deploy`, and applies the same envelope checks.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod build_cache;
mod cleanup;
mod container;
mod dockerfile_build;
mod engine;
mod engine_version;
mod envelope_check;
mod held;
mod image_build;
mod image_pin;
mod local;
mod modal;
mod platform;
#[cfg(test)]
mod recording_engine;
mod staging;
#[cfg(test)]
mod testing;
mod transport;
mod warm;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use proctor_contract::{CanonError, Envelope, PinnedReference, RunPayload};
use proctor_registry::ProcessorSpec;
use tokio_util::sync::CancellationToken;

pub use dockerfile_build::DockerfileBuilds;
pub use engine_version::{EngineVersion, engine_version};
pub use held::{HeldContainer, HttpAnswer};
pub use image_build::{BuiltImage, ImageBuild};
pub use local::{LABEL_EXECUTION_ID, LABEL_REF, LABEL_WARM, LocalAdapter};
pub use modal::ModalAdapter;
pub use platform::host_platform;
pub use staging::{InputFile, Staging};
pub use transport::ResponseLimits;

/// Where the image for a run comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Build from source (`--build`) and run by image ID.
    Build {
        /// The Cargo workspace root that builds the processor binary.
        workspace_root: PathBuf,
    },
    /// Run the pinned reference `REGISTRY/REPO@sha256:…` for the host platform; pulled when
    /// absent locally. The pinned digest is the expected `meta.image_digest`.
    Pinned {
        /// The pinned reference.
        reference: PinnedReference,
    },
    /// Run an image already in the local engine, by its ID (`sha256:…`, e.g. what
    /// [`LocalAdapter::build_image`] returned); the ID is the expected `meta.image_digest`.
    Local {
        /// The image ID.
        image_id: String,
    },
}

/// Everything an adapter needs for one run.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The payload posted to `/run`.
    pub payload: RunPayload,
    /// The processor's registry entry.
    pub spec: ProcessorSpec,
    /// Where the image comes from.
    pub image: ImageSource,
    /// This execution's staging area ([`Staging::create`], for `payload.execution_id`): the
    /// local adapter mounts its two directories, and nothing else of the World, into the
    /// container. The Modal adapter does not use it.
    pub staging: Arc<Staging>,
    /// Limit for the run, from container creation to the envelope (building or pulling the
    /// image is not counted).
    pub timeout: Duration,
    /// Environment for the processor: secrets and pass-through variables (`real` mode
    /// only; empty in `mock`).
    pub env: BTreeMap<String, String>,
    /// Adapter-specific options (`--adapter-opts-json`).
    pub options: serde_json::Value,
    /// Bounds on the processor's answers.
    pub limits: ResponseLimits,
}

/// A way to run processors.
pub trait Adapter: Send + Sync {
    /// The adapter's name, as given to `--adapter`.
    fn name(&self) -> &'static str;

    /// Runs one invocation and returns the processor's validated envelope. When `cancel`
    /// fires, the run stops at once, cleans up (a local container is removed) and returns
    /// `ERR_INTERRUPTED`; the adapter watches no signals itself.
    fn invoke<'a>(
        &'a self,
        invocation: &'a Invocation,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Envelope, CanonError>>;

    /// Opens the adapter's connection ahead of a run (the local adapter negotiates the
    /// engine's API version), so that it overlaps the caller's own work; starts, pulls and
    /// builds nothing. A failure here is met again, and reported, by [`Adapter::invoke`].
    fn prepare(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
