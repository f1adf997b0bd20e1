//! The shape of `registry.yaml`.

use std::collections::BTreeMap;

use proctor_contract::ProcessorRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One processor version, as declared in its `registry.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorSpec {
    /// `ns/name@version`; must match the file's directory.
    #[serde(rename = "ref")]
    pub processor_ref: ProcessorRef,
    /// One line saying what the processor does.
    pub description: String,
    /// How to build the image from source.
    pub build: Build,
    /// Pinned images, per platform.
    pub image: Image,
    /// Resources and limits.
    pub runtime: Runtime,
    /// Secrets the processor needs in `real` mode.
    #[serde(default)]
    pub secrets: Secrets,
    /// Names of non-secret host variables passed through in `real` mode only
    /// (e.g. `OPENAI_BASE_URL`).
    #[serde(default)]
    pub env: Vec<String>,
    /// JSON Schema of the inputs payload.
    pub inputs: Value,
    /// Outputs the processor declares, relative to `{write_prefix}outputs/`.
    pub outputs: Vec<OutputDecl>,
    /// Named example inputs; `smoke` is used by the README, smoke tests and lane acceptance.
    pub examples: BTreeMap<String, Example>,
}

/// How the image is built from source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Build context, relative to the `registry.yaml` directory.
    pub context: String,
    /// Dockerfile, relative to the context.
    pub dockerfile: String,
    /// The port the processor's HTTP server listens on inside the container.
    pub port: u16,
    /// The Cargo package whose statically linked binary the Dockerfile copies in as
    /// `processor`.
    pub cargo_package: String,
}

/// Pinned image references.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The multi-arch index, `REGISTRY/REPO@sha256:…`, when pinned.
    #[serde(default)]
    pub index: Option<String>,
    /// Per-platform manifests.
    pub platforms: Platforms,
}

/// Per-platform pinned references, `REGISTRY/REPO@sha256:…`; `null` means not pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platforms {
    /// linux/amd64.
    pub amd64: Option<String>,
    /// linux/arm64.
    pub arm64: Option<String>,
}

/// Resources and limits for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// CPU cores.
    pub cpu: f64,
    /// Memory limit in GiB.
    pub memory_gb: f64,
    /// Wall-clock limit of one run, including start-up.
    pub timeout_s: u64,
    /// GPU request (e.g. `A100`), if any.
    #[serde(default)]
    pub gpu: Option<String>,
}

/// Secret names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Secrets that must be present in `real` mode.
    #[serde(default)]
    pub required: Vec<String>,
}

/// A declared output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDecl {
    /// Path relative to `{write_prefix}outputs/`.
    pub path: String,
    /// Media type.
    pub mime: String,
}

/// A named example inputs payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// What the example shows.
    #[serde(default)]
    pub description: Option<String>,
    /// The inputs payload.
    pub inputs: Value,
}
