//! Support for the tests that build, push and pin images and run what they pulled
//! (`image`, `lane`): unique registry owners on the loopback registry, copies of the shipped
//! `processors/`, and an [`EngineCleanup`] that removes every container and pulled image a
//! test made, even when it fails.
//!
//! Needs: the OCI registry at 127.0.0.1:5000 and the Docker engine that `scripts/setup.sh`
//! starts, and the arm64 cross toolchain it installs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use proctor_contract::{ErrorCode, PinnedReference};
use serde_json::Value;

use crate::engine::{ContainerSweep, remove_image};
use crate::util::{Run, TestDir, workspace_registry};

/// The loopback registry `scripts/setup.sh` starts.
pub(crate) const REGISTRY: &str = "127.0.0.1:5000";

/// A registry target `127.0.0.1:5000/t<random>/proctor` no other test uses.
pub(crate) fn unique_target() -> String {
    let owner = uuid::Uuid::new_v4().simple().to_string();
    format!("{REGISTRY}/t{}/proctor", &owner[..12])
}

/// A `HOST/OWNER/REPO` on a loopback port nothing listens on.
pub(crate) fn closed_target() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}/down/proctor")
}

/// Copies the shipped `processors/` (sources, Dockerfiles, registry.yaml; no `target/`) to
/// `dir/processors` and returns that path. Tests pin the copy, never the checked-in files.
pub(crate) fn copy_processors(dir: &TestDir) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                if entry.file_name() != "target" {
                    copy(&entry.path(), &target);
                }
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let copied = dir.path().join("processors");
    copy(&workspace_registry(), &copied);
    copied
}

/// Every `registry.yaml` below `root`, with its bytes, sorted by path.
pub(crate) fn registry_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for namespace in std::fs::read_dir(root).unwrap() {
        for name in std::fs::read_dir(namespace.unwrap().path()).unwrap() {
            for version in std::fs::read_dir(name.unwrap().path()).unwrap() {
                let file = version.unwrap().path().join("registry.yaml");
                if file.is_file() {
                    let bytes = std::fs::read(&file).unwrap();
                    files.push((file, bytes));
                }
            }
        }
    }
    files.sort();
    files
}

/// The `image` block of a registry.yaml: `(index, amd64, arm64)` pins.
pub(crate) fn pins_in(registry_yaml: &Path) -> (Value, Value, Value) {
    let text = std::fs::read_to_string(registry_yaml).unwrap();
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let image = serde_json::to_value(&yaml["image"]).unwrap();
    (
        image["index"].clone(),
        image["platforms"]["amd64"].clone(),
        image["platforms"]["arm64"].clone(),
    )
}

/// The `sha256:…` of a pinned reference.
pub(crate) fn digest_of(pinned: &str) -> String {
    pinned
        .parse::<PinnedReference>()
        .unwrap()
        .digest()
        .to_string()
}

/// The JSON log lines of stderr named `name`; other lines (cargo's progress while
/// compiling) are skipped.
pub(crate) fn json_events(run: &Run, name: &str) -> Vec<Value> {
    run.stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["event"] == name)
        .collect()
}

/// Asserts a command's canonical error under `--json`: exit code, and one line
/// `{"error":{"code","message"}}` whose message starts with the fragment and holds
/// `detail`. Returns the message.
#[track_caller]
pub(crate) fn fails_with_error(run: &Run, code: ErrorCode, detail: &str) -> String {
    run.exits(code.exit_code());
    let body = run.json();
    run.check(
        body["error"]["code"] == code.as_str(),
        &format!("code {code}"),
    );
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    run.check(message.starts_with(code.fragment()), "the fragment first");
    run.check(
        message.contains(detail),
        &format!("message holds {detail:?}"),
    );
    message
}

/// A [`ContainerSweep`] plus a list of pulled image references; on drop, removes the
/// containers carrying its label, then the images.
pub(crate) struct EngineCleanup {
    sweep: ContainerSweep,
    images: Mutex<Vec<String>>,
}

impl EngineCleanup {
    pub(crate) fn new() -> EngineCleanup {
        EngineCleanup {
            sweep: ContainerSweep::new(),
            images: Mutex::new(Vec::new()),
        }
    }

    /// `--adapter-opts-json` that labels every container a run starts.
    pub(crate) fn adapter_options(&self) -> String {
        self.sweep.adapter_options()
    }

    /// Removes `reference` now if the engine has it, and again when dropped (a run is
    /// about to pull it).
    pub(crate) fn pulls(&self, reference: &str) {
        remove_image(reference);
        self.images.lock().unwrap().push(reference.to_owned());
    }

    /// IDs of the containers carrying the label, stopped ones included.
    pub(crate) fn containers(&self) -> Vec<String> {
        self.sweep.containers()
    }
}

impl Drop for EngineCleanup {
    fn drop(&mut self) {
        // Containers first: an image a container uses cannot be removed.
        self.sweep.remove_containers();
        for reference in self.images.lock().unwrap().iter() {
            remove_image(reference);
        }
    }
}
