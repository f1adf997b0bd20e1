//! The Modal app generated for a processor: its pinned image behind a web endpoint, with the
//! resources and secrets of its registry entry. Generation is pure and deterministic; writing
//! is atomic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, Digest, ErrorCode, PinnedReference, Platform, ProcessorRef};
use proctor_registry::{ProcessorSpec, Runtime, pinned_image};

use crate::target::is_object_name;
use crate::{ModalNames, ModalTarget};

/// Directory, relative to the project root, that holds generated apps as `<app>.py`.
pub const APP_DIR: &str = ".proctor/deploy/modal";
/// The Python that Modal adds to the processor's `FROM scratch` image to run the app. With
/// 3.13, Modal image builder versions 2025.06 and later add it by copying files only; older
/// builders (and 3.12 on 2025.06) run shell commands, which a scratch image cannot.
pub const ADD_PYTHON: &str = "3.13";
/// Where a processor writes `/artifacts/` without an artifacts volume: container-local,
/// gone when the container stops.
pub const EPHEMERAL_ARTIFACTS_ROOT: &str = "/tmp/artifacts";
/// Where the artifacts volume is mounted when [`ModalTarget::artifacts_volume`] is set.
pub const VOLUME_ARTIFACTS_ROOT: &str = "/artifacts";
/// The processor binary inside every processor image.
const PROCESSOR_BINARY: &str = "/processor";
/// Longest function timeout Modal accepts, in seconds (24 h).
const MAX_TIMEOUT_S: u64 = 86_400;
/// Hex digits of the image digest kept in the deploy tag.
const TAG_HEX_LEN: usize = 12;

/// A generated Modal app, not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedApp {
    /// The processor it serves.
    pub processor_ref: ProcessorRef,
    /// Its Modal names.
    pub names: ModalNames,
    /// The pinned linux/amd64 reference `REGISTRY/REPO@sha256:…` it runs.
    pub pinned_reference: PinnedReference,
    /// The digest of [`Self::pinned_reference`], which the processor reports in `/healthz`
    /// and envelopes.
    pub image_digest: Digest,
    /// Where it belongs, relative to the project root: `.proctor/deploy/modal/<app>.py`.
    pub path: PathBuf,
    /// The Python source.
    pub source: String,
}

impl GeneratedApp {
    /// The `modal deploy --tag`: `sha256-` and the first 12 hex digits of the image digest
    /// (Modal tags are ≤ 50 characters of `[a-zA-Z0-9._-]`, so the full digest cannot fit).
    pub fn deploy_tag(&self) -> String {
        deploy_tag(&self.image_digest)
    }

    /// Writes the source to `<root>/<path>` atomically ([`proctor_fs::write_atomically`]) and
    /// returns the written path; an I/O failure is `ERR_DEPLOY`.
    pub fn write(&self, root: &Path) -> Result<PathBuf, CanonError> {
        let target = root.join(&self.path);
        let failed = |what: &str, error: std::io::Error| {
            CanonError::new(
                ErrorCode::Deploy,
                format!("cannot {what} {}: {error}", target.display()),
            )
        };
        let dir = target.parent().unwrap_or(root);
        std::fs::create_dir_all(dir).map_err(|e| failed("create the directory of", e))?;
        proctor_fs::write_atomically(&target, self.source.as_bytes(), None)
            .map_err(|e| failed("write", e))?;
        Ok(target)
    }
}

/// The deploy tag of an image digest `sha256:<hex>`: `sha256-<first 12 hex>`.
fn deploy_tag(image_digest: &Digest) -> String {
    format!("sha256-{}", &image_digest.hex()[..TAG_HEX_LEN])
}

/// A container's runtime limits as the processor contract's variables: `PROCTOR_CPU`
/// (cores), `PROCTOR_MEMORY_GB` (GiB), and `PROCTOR_GPU` when a GPU is requested. The
/// processor names them in its env fingerprint; the local adapter and the generated Modal
/// app set the same ones.
pub fn runtime_env(runtime: &Runtime) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PROCTOR_CPU", runtime.cpu.to_string()),
        ("PROCTOR_MEMORY_GB", runtime.memory_gb.to_string()),
    ];
    if let Some(gpu) = runtime.gpu.as_deref().filter(|gpu| !gpu.is_empty()) {
        env.push(("PROCTOR_GPU", gpu.to_owned()));
    }
    env
}

/// Generates the Modal app of `spec` for `target`.
///
/// The app runs the pinned linux/amd64 image (`ERR_IMAGE_UNPINNED` without one; never a
/// tag) with Python [`ADD_PYTHON`] added, as one function [`crate::FUNCTION_NAME`] stacking
/// `@app.function` (cpu, memory in MiB, timeout and gpu from `runtime`; one
/// `modal.Secret.from_name(NAME)` per required secret — the Modal secret `NAME` must hold
/// the key `NAME`; the private-registry secret on the image when configured) and
/// `@modal.web_server` (the build port, `startup_timeout` = `runtime.timeout_s`,
/// `requires_proxy_auth=True`, the convention's label). The function sets the container
/// contract's `PROCTOR_IMAGE_DIGEST`, `PROCTOR_PORT`, `PROCTOR_ARTIFACTS_ROOT`
/// ([`EPHEMERAL_ARTIFACTS_ROOT`], or the artifacts volume at [`VOLUME_ARTIFACTS_ROOT`]) and
/// the runtime limits ([`runtime_env`]), and starts `/processor`. With the target's World
/// store ([`ModalTarget::world_store`]) it also sets `PROCTOR_STORE_URL`, so the processor
/// writes its evidence there, and attaches the store's credentials secret
/// ([`ModalTarget::store_secret_name`]).
///
/// `pass_env` holds values for the registry's non-secret `env` names; those present are
/// baked into the app's environment, others are ignored.
pub fn generate_app(
    spec: &ProcessorSpec,
    target: &ModalTarget,
    pass_env: &BTreeMap<String, String>,
) -> Result<GeneratedApp, CanonError> {
    let processor_ref = &spec.processor_ref;
    let pinned = pinned_image(spec, Platform::Amd64)?;
    let image_digest = pinned.digest().clone();
    let resources = Resources::of(spec)?;
    if let Some(name) = spec
        .secrets
        .required
        .iter()
        .find(|name| !is_object_name(name))
    {
        return Err(CanonError::new(
            ErrorCode::Registry,
            format!(
                "{processor_ref}: secrets.required `{name}` is not a Modal secret name (≤ 64 of [a-zA-Z0-9-_.])"
            ),
        ));
    }
    let names = ModalNames::derive(processor_ref, target);
    let artifacts_root = match target.artifacts_volume {
        Some(_) => VOLUME_ARTIFACTS_ROOT,
        None => EPHEMERAL_ARTIFACTS_ROOT,
    };

    let mut env: BTreeMap<&str, String> = spec
        .env
        .iter()
        .filter_map(|name| {
            pass_env
                .get(name)
                .map(|value| (name.as_str(), value.clone()))
        })
        .collect();
    env.insert("PROCTOR_ARTIFACTS_ROOT", artifacts_root.to_owned());
    env.insert("PROCTOR_IMAGE_DIGEST", image_digest.to_string());
    env.insert("PROCTOR_PORT", spec.build.port.to_string());
    env.extend(runtime_env(&spec.runtime));
    if let Some(store) = &target.world_store {
        env.insert(ModalTarget::ENV_WORLD_STORE, store.clone());
    }

    let mut source = String::new();
    let mut line = |text: &str| {
        source.push_str(text);
        source.push('\n');
    };
    line(&format!(
        "\"\"\"Modal app serving the proctor processor {processor_ref} from its pinned image."
    ));
    line("");
    line("Generated by `proctor deploy --target modal` from the processor's registry.yaml;");
    line("regenerate it instead of editing it. The image has no shell: the workspace needs");
    line("Modal image builder version 2025.06 or later.");
    line("\"\"\"");
    line("");
    line("import os");
    line("import subprocess");
    line("");
    line("import modal");
    line("");
    line(&format!("APP_NAME = {}", py_str(&names.app)));
    line(&format!("PINNED_IMAGE = {}", py_str(&pinned.to_string())));
    line(&format!("ARTIFACTS_ROOT = {}", py_str(artifacts_root)));
    line(&format!("PORT = {}", spec.build.port));
    line("");
    let registry_secret = target
        .registry_secret
        .as_deref()
        .map(|name| format!("secret=modal.Secret.from_name({}), ", py_str(name)))
        .unwrap_or_default();
    line(&format!(
        "image = modal.Image.from_registry(PINNED_IMAGE, {registry_secret}add_python={})",
        py_str(ADD_PYTHON)
    ));
    line("app = modal.App(APP_NAME)");
    line("");
    line("");
    line("@app.function(");
    line("    image=image,");
    line(&format!("    cpu={:?},", resources.cpu));
    line(&format!("    memory={},", resources.memory_mib));
    line(&format!("    timeout={},", resources.timeout_s));
    line(&format!(
        "    gpu={},",
        resources.gpu.as_deref().map_or("None".to_owned(), py_str)
    ));
    let store_secret = target
        .world_store
        .as_ref()
        .map(|_| target.store_secret_name());
    let secrets: Vec<String> = spec
        .secrets
        .required
        .iter()
        .map(String::as_str)
        .chain(store_secret)
        .map(|name| format!("modal.Secret.from_name({})", py_str(name)))
        .collect();
    line(&format!("    secrets=[{}],", secrets.join(", ")));
    let env_items: Vec<String> = env
        .iter()
        .map(|(name, value)| format!("{}: {}", py_str(name), py_str(value)))
        .collect();
    line(&format!("    env={{{}}},", env_items.join(", ")));
    if let Some(volume) = &target.artifacts_volume {
        line(&format!(
            "    volumes={{ARTIFACTS_ROOT: modal.Volume.from_name({}, create_if_missing=True)}},",
            py_str(volume)
        ));
    }
    line(")");
    line(&format!(
        "@modal.web_server(port=PORT, startup_timeout={}, requires_proxy_auth=True, label={})",
        resources.timeout_s,
        py_str(&names.label)
    ));
    line(&format!("def {}():", names.function));
    line("    \"\"\"Starts the processor's HTTP server; Modal routes the endpoint to PORT.\"\"\"");
    line("    os.makedirs(ARTIFACTS_ROOT, exist_ok=True)");
    line(&format!(
        "    subprocess.Popen([{}])",
        py_str(PROCESSOR_BINARY)
    ));

    Ok(GeneratedApp {
        processor_ref: processor_ref.clone(),
        path: Path::new(APP_DIR).join(format!("{}.py", names.app)),
        names,
        pinned_reference: pinned,
        image_digest,
        source,
    })
}

/// A processor's runtime, in Modal's units.
struct Resources {
    cpu: f64,
    memory_mib: u64,
    timeout_s: u64,
    gpu: Option<String>,
}

impl Resources {
    /// Converts `runtime`, refusing values Modal cannot take (`ERR_REGISTRY`).
    fn of(spec: &ProcessorSpec) -> Result<Resources, CanonError> {
        let runtime = &spec.runtime;
        let refuse = |why: String| {
            CanonError::new(
                ErrorCode::Registry,
                format!("{}: {why}", spec.processor_ref),
            )
        };
        if !(runtime.cpu.is_finite() && runtime.cpu > 0.0) {
            return Err(refuse(format!(
                "runtime.cpu {} is not a positive number",
                runtime.cpu
            )));
        }
        if !(runtime.memory_gb.is_finite() && runtime.memory_gb > 0.0) {
            return Err(refuse(format!(
                "runtime.memory_gb {} is not a positive number",
                runtime.memory_gb
            )));
        }
        if !(1..=MAX_TIMEOUT_S).contains(&runtime.timeout_s) {
            return Err(refuse(format!(
                "runtime.timeout_s {} is not within 1..={MAX_TIMEOUT_S}",
                runtime.timeout_s
            )));
        }
        let gpu = runtime.gpu.as_deref().filter(|gpu| !gpu.is_empty());
        if let Some(gpu) = gpu
            && !gpu
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '_'))
        {
            return Err(refuse(format!(
                "runtime.gpu `{gpu}` is not a GPU type such as A100 or H100:2"
            )));
        }
        Ok(Resources {
            cpu: runtime.cpu,
            // Whole MiB, rounded up so the limit is never below the declared one.
            memory_mib: (runtime.memory_gb * 1024.0).ceil() as u64,
            timeout_s: runtime.timeout_s,
            gpu: gpu.map(str::to_owned),
        })
    }
}

/// A Python string literal (JSON string syntax is valid Python).
fn py_str(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake but well-formed digest.
    pub(crate) const DIGEST: &str =
        "3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

    /// A pinned `llm/litellm@1` entry like the shipped one.
    pub(crate) fn litellm_spec() -> ProcessorSpec {
        let yaml = format!(
            r#"ref: llm/litellm@1
description: Chat completion through any OpenAI-compatible endpoint.
build: {{context: ".", dockerfile: Dockerfile, port: 8000, cargo_package: processor-llm-litellm}}
image:
  index: 127.0.0.1:5000/acme/proctor/llm-litellm@sha256:{DIGEST}
  platforms:
    amd64: 127.0.0.1:5000/acme/proctor/llm-litellm@sha256:{DIGEST}
    arm64: null
runtime: {{cpu: 1.0, memory_gb: 0.5, timeout_s: 60, gpu: null}}
secrets: {{required: [OPENAI_API_KEY]}}
env: [OPENAI_BASE_URL]
inputs: {{type: object}}
outputs: [{{path: text/response.txt, mime: text/plain}}]
examples: {{smoke: {{inputs: {{schema: v1, params: {{}}}}}}}}
"#
        );
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    #[test]
    fn the_app_runs_the_pin_with_the_registry_resources() {
        let target = ModalTarget {
            workspace: Some("acme".into()),
            ..ModalTarget::default()
        };
        let app = generate_app(&litellm_spec(), &target, &BTreeMap::new()).unwrap();
        assert_eq!(
            app.path,
            Path::new(".proctor/deploy/modal/proctor-llm-litellm-v1.py")
        );
        assert_eq!(app.image_digest.to_string(), format!("sha256:{DIGEST}"));
        assert_eq!(app.deploy_tag(), "sha256-3f1c9e0b7a2d");
        let source = &app.source;
        for expected in [
            format!("PINNED_IMAGE = \"127.0.0.1:5000/acme/proctor/llm-litellm@sha256:{DIGEST}\""),
            "image = modal.Image.from_registry(PINNED_IMAGE, add_python=\"3.13\")".to_owned(),
            "    cpu=1.0,\n    memory=512,\n    timeout=60,\n    gpu=None,".to_owned(),
            "    secrets=[modal.Secret.from_name(\"OPENAI_API_KEY\")],".to_owned(),
            format!(
                "    env={{\"PROCTOR_ARTIFACTS_ROOT\": \"/tmp/artifacts\", \"PROCTOR_CPU\": \"1\", \
                 \"PROCTOR_IMAGE_DIGEST\": \"sha256:{DIGEST}\", \"PROCTOR_MEMORY_GB\": \"0.5\", \
                 \"PROCTOR_PORT\": \"8000\"}},"
            ),
            "@modal.web_server(port=PORT, startup_timeout=60, requires_proxy_auth=True, label=\"llm-litellm-v1\")\ndef serve():".to_owned(),
            "    subprocess.Popen([\"/processor\"])\n".to_owned(),
        ] {
            assert!(source.contains(&expected), "missing {expected:?} in\n{source}");
        }
        assert!(!source.contains("volumes="));
        assert_eq!(
            app,
            generate_app(&litellm_spec(), &target, &BTreeMap::new()).unwrap()
        );
    }

    #[test]
    fn options_add_registry_secret_volume_gpu_and_pass_through_env() {
        let mut spec = litellm_spec();
        spec.runtime.gpu = Some("A100-80GB:2".into());
        spec.runtime.memory_gb = 0.3;
        let target = ModalTarget {
            registry_secret: Some("ghcr-pull".into()),
            artifacts_volume: Some("proctor-artifacts".into()),
            ..ModalTarget::default()
        };
        let pass_env: BTreeMap<String, String> = [
            (
                "OPENAI_BASE_URL".to_owned(),
                "http://llm.internal/v1".to_owned(),
            ),
            ("NOT_DECLARED".to_owned(), "x".to_owned()),
        ]
        .into();
        let source = generate_app(&spec, &target, &pass_env).unwrap().source;
        assert!(source.contains(
            "from_registry(PINNED_IMAGE, secret=modal.Secret.from_name(\"ghcr-pull\"), add_python="
        ));
        assert!(source.contains("    gpu=\"A100-80GB:2\",\n"));
        assert!(source.contains("\"PROCTOR_GPU\": \"A100-80GB:2\""));
        assert!(source.contains("\"PROCTOR_MEMORY_GB\": \"0.3\""));
        assert!(
            source.contains("    memory=308,\n"),
            "0.3 GiB rounds up to 308 MiB"
        );
        assert!(source.contains("\"OPENAI_BASE_URL\": \"http://llm.internal/v1\""));
        assert!(!source.contains("NOT_DECLARED"));
        assert!(source.contains("ARTIFACTS_ROOT = \"/artifacts\""));
        assert!(source.contains(
            "    volumes={ARTIFACTS_ROOT: modal.Volume.from_name(\"proctor-artifacts\", create_if_missing=True)},"
        ));
    }

    #[test]
    fn a_world_store_is_passed_as_env_with_its_credentials_secret() {
        let target = ModalTarget {
            world_store: Some("s3://world/team".into()),
            ..ModalTarget::default()
        };
        let source = generate_app(&litellm_spec(), &target, &BTreeMap::new())
            .unwrap()
            .source;
        assert!(source.contains("\"PROCTOR_STORE_URL\": \"s3://world/team\""));
        assert!(source.contains(
            "    secrets=[modal.Secret.from_name(\"OPENAI_API_KEY\"), \
             modal.Secret.from_name(\"proctor-world-store\")],\n"
        ));
        let without = generate_app(&litellm_spec(), &ModalTarget::default(), &BTreeMap::new())
            .unwrap()
            .source;
        assert!(!without.contains("PROCTOR_STORE_URL"));
        assert!(!without.contains("proctor-world-store"));
    }

    #[test]
    fn unpinned_or_tagged_images_are_refused() {
        let target = ModalTarget::default();
        for pin in [
            None,
            Some("127.0.0.1:5000/acme/proctor/llm-litellm:1".to_owned()),
        ] {
            let mut spec = litellm_spec();
            spec.image.platforms.amd64 = pin;
            let err = generate_app(&spec, &target, &BTreeMap::new()).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ImageUnpinned);
            assert!(
                err.message()
                    .starts_with("image not pinned: llm/litellm@1 for amd64"),
                "{err}"
            );
        }
    }

    #[test]
    fn runtimes_modal_cannot_take_are_refused() {
        type Mutation = fn(&mut ProcessorSpec);
        let cases: [(Mutation, &str); 5] = [
            (|s| s.runtime.cpu = 0.0, "runtime.cpu"),
            (
                |s| s.secrets.required.push("A KEY".into()),
                "secrets.required `A KEY`",
            ),
            (|s| s.runtime.memory_gb = f64::NAN, "runtime.memory_gb"),
            (|s| s.runtime.timeout_s = 0, "runtime.timeout_s"),
            (
                |s| s.runtime.gpu = Some("A100\")\nimport os".into()),
                "runtime.gpu",
            ),
        ];
        for (mutate, field) in cases {
            let mut spec = litellm_spec();
            mutate(&mut spec);
            let err = generate_app(&spec, &ModalTarget::default(), &BTreeMap::new()).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Registry, "{field}");
            assert!(err.message().contains(field), "{err}");
        }
    }

    #[test]
    fn written_apps_land_atomically_at_their_path() {
        let root = tempfile::tempdir().unwrap();
        let app = generate_app(&litellm_spec(), &ModalTarget::default(), &BTreeMap::new()).unwrap();
        let written = app.write(root.path()).unwrap();
        assert_eq!(
            written,
            root.path()
                .join(".proctor/deploy/modal/proctor-llm-litellm-v1.py")
        );
        assert_eq!(std::fs::read_to_string(&written).unwrap(), app.source);
        app.write(root.path()).unwrap();
        let entries: Vec<_> = std::fs::read_dir(written.parent().unwrap())
            .unwrap()
            .collect();
        assert_eq!(entries.len(), 1, "no temporary file is left behind");
    }
}
