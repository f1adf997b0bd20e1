//! Test harness for runs against the real Docker engine.
//!
//! Needs: a Docker engine (`scripts/setup.sh` starts one) and, for pinned-image tests, the
//! OCI registry at 127.0.0.1:5000. Each [`TestRun`] labels its containers
//! `proctor.test=<unique>`, owns a temporary directory holding its runs' staging areas, and
//! force-removes any container with its label when dropped, so no container outlives its
//! test even when it fails.
//! The faulty processor's image is built once per test process and shared by its tests
//! ([`faulty_image`]); under nextest (one process per test) the engine's build cache makes
//! the repeats cheap.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use proctor_adapters::{
    ImageBuild, ImageSource, Invocation, LocalAdapter, ResponseLimits, Staging, host_platform,
};
use proctor_contract::{Mode, PAYLOAD_SCHEMA, RunPayload, WritePrefix};
use proctor_registry::ProcessorSpec;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::OnceCell;

/// The label every test container carries.
pub(crate) const TEST_LABEL: &str = "proctor.test";

/// The workspace root.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The directory of a processor's `registry.yaml`, relative to the workspace root.
pub(crate) fn processor_dir(relative: &str) -> PathBuf {
    workspace_root().join(relative)
}

/// `testing/faulty@1`'s directory.
pub(crate) fn faulty_dir() -> PathBuf {
    processor_dir("fixtures/processors/testing/faulty/1")
}

/// Loads a `registry.yaml` straight into the spec type.
pub(crate) fn load_spec(dir: &Path) -> ProcessorSpec {
    let text = std::fs::read_to_string(dir.join("registry.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// A connected engine client for the harness's own checks.
pub(crate) async fn docker() -> Docker {
    Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// `testing/faulty@1`'s image, built once per test process.
pub(crate) async fn faulty_image() -> String {
    static FAULTY: OnceCell<String> = OnceCell::const_new();
    FAULTY
        .get_or_init(|| async {
            let dir = faulty_dir();
            let spec = load_spec(&dir);
            let adapter = LocalAdapter::connect().unwrap();
            let root = workspace_root();
            let build = ImageBuild {
                spec: &spec,
                workspace_root: &root,
                platform: host_platform().unwrap(),
            };
            adapter.build_image(&build).await.unwrap().id
        })
        .await
        .clone()
}

/// Where the container of `invocation` wrote `world_path`: under its staging area's prefix
/// or execution directory.
pub(crate) fn staged_path(invocation: &Invocation, world_path: &str) -> PathBuf {
    let staging = &invocation.staging;
    let execution = format!("/artifacts/execution/{}/", invocation.payload.execution_id);
    if let Some(relative) = world_path.strip_prefix(&invocation.payload.write_prefix) {
        staging.prefix_dir().join(relative)
    } else if let Some(relative) = world_path.strip_prefix(&execution) {
        staging.execution_dir().join(relative)
    } else {
        panic!("{world_path} lies outside the staging area")
    }
}

/// Every entry under `dir`, relative to it, sorted.
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut entries = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            entries.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.symlink_metadata().unwrap().is_dir() {
                pending.push(path);
            }
        }
    }
    entries.sort();
    entries
}

/// One test's run context: a unique label, a directory for staging areas, engine access.
pub(crate) struct TestRun {
    /// `proctor.test=<label>` on every container of this test.
    pub(crate) label: String,
    /// The parent of this test's staging areas.
    pub(crate) artifacts: TempDir,
    /// Engine access for checks.
    pub(crate) docker: Docker,
}

impl TestRun {
    /// A fresh context.
    pub(crate) async fn new() -> TestRun {
        TestRun {
            label: format!("t-{}", uuid::Uuid::new_v4().simple()),
            artifacts: tempfile::tempdir().unwrap(),
            docker: docker().await,
        }
    }

    /// An invocation of `spec` in `mode` with `inputs`, labelled for this test, with a
    /// staging area of its own.
    pub(crate) fn invocation(
        &self,
        spec: &ProcessorSpec,
        image: ImageSource,
        mode: Mode,
        inputs: Value,
    ) -> Invocation {
        let execution_id = uuid::Uuid::new_v4().to_string();
        let prefix = WritePrefix::expand("/artifacts/test/{execution_id}", &execution_id).unwrap();
        let staging = Staging::create_in(self.artifacts.path(), &execution_id).unwrap();
        Invocation {
            payload: RunPayload {
                schema: PAYLOAD_SCHEMA.to_owned(),
                execution_id,
                processor_ref: spec.processor_ref.clone(),
                mode,
                inputs,
                write_prefix: prefix.as_str().to_owned(),
                upstream: Vec::new(),
            },
            spec: spec.clone(),
            image,
            staging: Arc::new(staging),
            timeout: Duration::from_secs(120),
            env: BTreeMap::new(),
            options: json!({"labels": {TEST_LABEL: self.label}}),
            limits: ResponseLimits::default(),
        }
    }

    /// Every container (running or not) carrying this test's label.
    pub(crate) async fn containers(&self) -> Vec<ContainerSummary> {
        let filters = HashMap::from([("label", vec![format!("{TEST_LABEL}={}", self.label)])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker.list_containers(Some(options)).await.unwrap()
    }

    /// Waits (polling, bounded) until this test's containers number `count`; returns
    /// whether they did.
    pub(crate) async fn await_container_count(&self, count: usize) -> bool {
        for _ in 0..600 {
            if self.containers().await.len() == count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for TestRun {
    fn drop(&mut self) {
        let label = self.label.clone();
        let sweep = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let docker = docker().await;
                let filters = HashMap::from([("label", vec![format!("{TEST_LABEL}={label}")])]);
                let options = ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build();
                for container in docker
                    .list_containers(Some(options))
                    .await
                    .unwrap_or_default()
                {
                    let Some(id) = container.id else { continue };
                    let force = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = docker.remove_container(&id, Some(force)).await;
                }
            });
        });
        let _ = sweep.join();
    }
}
