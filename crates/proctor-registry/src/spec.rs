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
    /// Whether the processor is a planner: among its outputs it proposes transitions for the
    /// running plan, in [`proctor_contract::PROPOSAL_OUTPUT`]. Absent means `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub planner: bool,
    /// Named example inputs; `smoke` is used by the README, smoke tests and lane acceptance.
    pub examples: BTreeMap<String, Example>,
}

/// How the image is built from source: with `cargo_package`, `proctor-oci` assembles it in
/// code and the Dockerfile only documents it; without, the container engine builds the
/// Dockerfile (with `python`, from wheels the host puts into the build context).
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
    /// `processor`; absent for a processor the container engine builds from its Dockerfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cargo_package: Option<String>,
    /// For a Dockerfile build of a Python processor, the CPython version (`3.11`) of its
    /// base image: the host downloads wheels of the context's `requirements.txt` and of the
    /// Python SDK for it into the build context's `wheels/`, so the build needs no network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

impl Build {
    /// The file of a Python processor's pinned requirements, in its build context.
    pub const PYTHON_REQUIREMENTS: &'static str = "requirements.txt";
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
    /// Wall-clock limit of one run, including start-up: from 1 to
    /// [`Runtime::MAX_TIMEOUT_S`].
    pub timeout_s: u64,
    /// GPU request (e.g. `A100`), if any.
    #[serde(default)]
    pub gpu: Option<String>,
    /// Whether a container may serve later runs of the same kind (image, mode,
    /// environment, adapter options) within one long-lived caller, such as `plan apply`.
    /// Default `true`; `false` gives every run a fresh container.
    #[serde(default = "reuse_by_default", skip_serializing_if = "is_default_reuse")]
    pub reuse: bool,
}

fn reuse_by_default() -> bool {
    true
}

/// Whether `reuse` is the default, which the serialized entry leaves out, as `registry.yaml`
/// files usually do.
fn is_default_reuse(reuse: &bool) -> bool {
    *reuse == reuse_by_default()
}

impl Runtime {
    /// The longest `timeout_s` an entry may give: 7 days, so that every deadline and lease
    /// derived from it stays representable.
    pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 60 * 60;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid `registry.yaml` for `text/stats@1`, the base every negative case mutates.
    pub(crate) const SAMPLE_YAML: &str = r#"ref: text/stats@1
description: Word and line counts of a text.
build: {context: ".", dockerfile: Dockerfile, port: 8000, cargo_package: processor-text-stats}
image: {index: null, platforms: {amd64: null, arm64: null}}
runtime: {cpu: 0.5, memory_gb: 0.25, timeout_s: 30, gpu: null}
secrets: {required: []}
env: []
inputs:
  type: object
  additionalProperties: false
  required: [schema, params]
  properties:
    schema: {const: v1}
    params:
      type: object
      properties:
        n: {type: integer, minimum: 0}
outputs:
  - {path: stats.json, mime: application/json}
  - {path: text/normalized.txt, mime: text/plain}
examples:
  smoke: {description: Empty params., inputs: {schema: v1, params: {}}}
"#;

    /// [`SAMPLE_YAML`], parsed.
    pub(crate) fn sample_spec() -> ProcessorSpec {
        serde_yaml_ng::from_str(SAMPLE_YAML).unwrap()
    }

    #[test]
    fn sample_parses_and_unknown_keys_are_refused() {
        assert_eq!(sample_spec().processor_ref.to_string(), "text/stats@1");
        let extra = SAMPLE_YAML.replace("env: []", "env: []\nextra: 1");
        assert!(serde_yaml_ng::from_str::<ProcessorSpec>(&extra).is_err());
        let nested = SAMPLE_YAML.replace("port: 8000", "port: 8000, user: root");
        assert!(serde_yaml_ng::from_str::<ProcessorSpec>(&nested).is_err());
    }

    #[test]
    fn planner_defaults_to_false_and_is_written_only_when_true() {
        let spec = sample_spec();
        assert!(!spec.planner);
        assert!(
            serde_json::to_value(&spec)
                .unwrap()
                .get("planner")
                .is_none()
        );
        let planner: ProcessorSpec =
            serde_yaml_ng::from_str(&SAMPLE_YAML.replace("env: []", "env: []\nplanner: true"))
                .unwrap();
        assert!(planner.planner);
        assert_eq!(serde_json::to_value(&planner).unwrap()["planner"], true);
        let not_bool = SAMPLE_YAML.replace("env: []", "env: []\nplanner: yes please");
        assert!(serde_yaml_ng::from_str::<ProcessorSpec>(&not_bool).is_err());
    }
}
