//! Adapters move a run payload to a processor and bring its envelope back.
//!
//! **Invariant:** adapters never parse provider payloads and never write receipts; they
//! validate envelopes, check the index path and the image digest, and clean up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use proctor_contract::{CanonError, Envelope, RunPayload};
use proctor_registry::ProcessorSpec;

/// Where the image for a run comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Build from source (`--build`) and run by image ID.
    Build {
        /// The directory holding `registry.yaml`.
        processor_dir: PathBuf,
        /// The Cargo workspace root that builds the processor binary.
        workspace_root: PathBuf,
    },
    /// Run the pinned reference `REGISTRY/REPO@sha256:…` for the host platform.
    Pinned {
        /// The full pinned reference.
        reference: String,
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
    /// Host directory mounted at `/artifacts`.
    pub artifacts_root: PathBuf,
    /// Limit for the whole run, start-up included.
    pub timeout: Duration,
    /// Environment for the processor: secrets and pass-through variables (`real` mode
    /// only; empty in `mock`).
    pub env: BTreeMap<String, String>,
    /// Adapter-specific options (`--adapter-opts-json`).
    pub options: serde_json::Value,
}

/// A way to run processors.
pub trait Adapter: Send + Sync {
    /// The adapter's name, as given to `--adapter`.
    fn name(&self) -> &'static str;

    /// Runs one invocation and returns the processor's validated envelope.
    fn invoke<'a>(&'a self, invocation: &'a Invocation) -> BoxFuture<'a, Result<Envelope, CanonError>>;
}
