//! Build → push → pin against real services:
//! - the OCI registry at 127.0.0.1:5000 (Debian's docker-registry, started by
//!   scripts/setup.sh); every test pushes under its own owner `127.0.0.1:5000/t<random>/proctor`;
//! - the Docker engine at /var/run/docker.sock, which pulls the pinned digests;
//! - cargo with the aarch64 cross toolchain (scripts/setup.sh installs it).
//!
//! The shipped processor text/stats@1 is built once for both platforms and shared.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]
// Build and push timings are reported on stderr.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bollard::Docker;
use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions};
use futures_util::{FutureExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use proctor_contract::{
    ErrorCode, Platform, ProcessorRef, Progress, ProgressEvent, ProgressUnit, TaskId,
};
use proctor_oci::{
    BuildRequest, BuiltImage, IndexReference, IndexSource, PushedImage, RegistryTarget, build,
    layout_dir, pin, push,
};
use proctor_registry::{Registry, pinned_image};
use reqwest::header::HeaderValue;
use serde_json::json;

const REGISTRY: &str = "127.0.0.1:5000";
const PROCESSOR_REF: &str = "text/stats@1";
const PROCESSOR_DIR: &str = "processors/text/stats/1";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The checked-in registry.yaml of text/stats@1 (never modified: tests pin copies).
fn shipped_registry_yaml() -> String {
    let path = workspace_root().join(PROCESSOR_DIR).join("registry.yaml");
    std::fs::read_to_string(path).unwrap()
}

/// `build.cargo_package` and `build.port` of the shipped registry.yaml.
fn build_settings() -> (String, u16) {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&shipped_registry_yaml()).unwrap();
    let package = doc["build"]["cargo_package"].as_str().unwrap().to_owned();
    let port = u16::try_from(doc["build"]["port"].as_u64().unwrap()).unwrap();
    (package, port)
}

/// A [`Progress`] that keeps every event it hears.
fn recording() -> (Progress, Arc<Mutex<Vec<ProgressEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let progress = Progress::new(move |event| sink.lock().unwrap().push(event));
    (progress, events)
}

/// The tasks started in `events`: id, label, unit and total, in order.
fn started(events: &[ProgressEvent]) -> Vec<(TaskId, String, ProgressUnit, Option<u64>)> {
    events
        .iter()
        .filter_map(|event| match event {
            ProgressEvent::Started {
                task,
                label,
                unit,
                total,
            } => Some((*task, label.clone(), *unit, *total)),
            _ => None,
        })
        .collect()
}

/// How far `task` advanced in `events`.
fn advanced(events: &[ProgressEvent], task: TaskId) -> u64 {
    events
        .iter()
        .map(|event| match event {
            ProgressEvent::Advanced { task: t, by } if *t == task => *by,
            _ => 0,
        })
        .sum()
}

/// Whether every task started in `events` finished, each once, as its last event.
fn all_finished(events: &[ProgressEvent]) -> bool {
    started(events).iter().all(|(task, ..)| {
        let of_task: Vec<&ProgressEvent> = events
            .iter()
            .filter(|event| task_of(event) == *task)
            .collect();
        of_task
            .iter()
            .filter(|event| matches!(event, ProgressEvent::Finished { .. }))
            .count()
            == 1
            && matches!(of_task.last(), Some(ProgressEvent::Finished { .. }))
    })
}

fn task_of(event: &ProgressEvent) -> TaskId {
    match event {
        ProgressEvent::Started { task, .. }
        | ProgressEvent::Total { task, .. }
        | ProgressEvent::Advanced { task, .. }
        | ProgressEvent::Message { task, .. }
        | ProgressEvent::Note { task, .. }
        | ProgressEvent::Output { task, .. }
        | ProgressEvent::Finished { task } => *task,
    }
}

fn build_into(layout: &Path, progress: &Progress) -> BuiltImage {
    let (cargo_package, port) = build_settings();
    let processor_ref: ProcessorRef = PROCESSOR_REF.parse().unwrap();
    build(
        &BuildRequest {
            processor_ref,
            cargo_package,
            port,
            workspace_root: workspace_root(),
            platforms: Platform::ALL.to_vec(),
            layout_dir: layout.to_owned(),
        },
        progress,
    )
    .unwrap()
}

struct SharedBuild {
    _root: tempfile::TempDir,
    image: BuiltImage,
    /// What the build reported.
    events: Vec<ProgressEvent>,
}

/// Both platforms of text/stats@1, built once per test binary, with what the build
/// reported.
fn shared_build_reported() -> &'static SharedBuild {
    static BUILT: OnceLock<SharedBuild> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let layout = layout_dir(root.path(), &PROCESSOR_REF.parse().unwrap());
        let (progress, events) = recording();
        let image = build_into(&layout, &progress);
        for platform in &image.platforms {
            eprintln!(
                "compiled {} in {:?}",
                platform.platform, platform.compile_time
            );
        }
        let events = events.lock().unwrap().clone();
        SharedBuild {
            _root: root,
            image,
            events,
        }
    })
}

/// Both platforms of text/stats@1, built once per test binary.
fn shared_build() -> &'static BuiltImage {
    &shared_build_reported().image
}

/// A registry target with an owner no other test uses.
fn unique_target() -> RegistryTarget {
    let owner = uuid::Uuid::new_v4().simple().to_string();
    format!("{REGISTRY}/t{}/proctor", &owner[..12])
        .parse()
        .unwrap()
}

/// A temp processors tree holding a copy of the shipped registry.yaml at its usual place.
fn registry_yaml_copy() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let processor_dir = dir.path().join(PROCESSOR_DIR);
    std::fs::create_dir_all(&processor_dir).unwrap();
    let path = processor_dir.join("registry.yaml");
    let text = shipped_registry_yaml();
    std::fs::write(&path, &text).unwrap();
    (dir, path, text)
}

fn loopback_client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

async fn docker() -> Docker {
    Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// Pulls `reference` for `platform`, runs `check` on its inspection, and removes the local
/// image reference again whatever happened.
async fn with_pulled_image(
    docker: &Docker,
    reference: &str,
    platform: Platform,
    check: impl FnOnce(bollard::models::ImageInspect),
) {
    let options = CreateImageOptions {
        from_image: Some(reference.to_owned()),
        platform: platform.to_string(),
        ..Default::default()
    };
    docker
        .create_image(Some(options), None, None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let outcome = AssertUnwindSafe(async {
        let inspect = docker.inspect_image(reference).await.unwrap();
        check(inspect);
    })
    .catch_unwind()
    .await;
    let removed = docker
        .remove_image(reference, None::<RemoveImageOptions>, None)
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    removed.unwrap();
}

#[tokio::test]
async fn build_push_pin_then_docker_pulls_the_pinned_digests() {
    let built = shared_build();
    assert_eq!(
        built
            .platforms
            .iter()
            .map(|p| p.platform)
            .collect::<Vec<_>>(),
        Platform::ALL.to_vec()
    );
    let target = unique_target();
    let push_started = std::time::Instant::now();
    let pushed = push(&built.layout_dir, &target, &Progress::none())
        .await
        .unwrap();
    eprintln!(
        "pushed {} in {:?}",
        pushed.repository,
        push_started.elapsed()
    );
    assert_eq!(
        pushed.repository.to_string(),
        format!("{target}/text-stats")
    );
    assert_eq!(pushed.tag, "1");
    assert_eq!(pushed.index_digest, built.index_digest);
    let built_digests: BTreeMap<Platform, String> = built
        .platforms
        .iter()
        .map(|p| (p.platform, p.manifest_digest.clone()))
        .collect();
    assert_eq!(pushed.platforms, built_digests);
    assert!(PushedImage::load(&built.layout_dir).unwrap().is_some());

    let (dir, registry_yaml, before) = registry_yaml_copy();
    let pins = pin(&registry_yaml, &pushed.index_source()).await.unwrap();
    let repository = &pushed.repository;
    assert_eq!(
        pins.index,
        repository.pinned(built.index_digest.parse().unwrap())
    );
    assert_eq!(
        pins.amd64,
        repository.pinned(built_digests[&Platform::Amd64].parse().unwrap())
    );
    assert_eq!(
        pins.arm64,
        repository.pinned(built_digests[&Platform::Arm64].parse().unwrap())
    );

    // Only the pinned values changed; the file still parses and says what was pinned.
    let after = std::fs::read_to_string(&registry_yaml).unwrap();
    assert_eq!(before.lines().count(), after.lines().count());
    for (old, new) in before.lines().zip(after.lines()).filter(|(a, b)| a != b) {
        let pinned = [&pins.index, &pins.amd64, &pins.arm64];
        assert!(
            pinned.iter().any(|pin| new.contains(&pin.to_string())),
            "{old} -> {new}"
        );
    }
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&after).unwrap();
    assert_eq!(
        doc["image"]["index"].as_str(),
        Some(pins.index.to_string().as_str())
    );
    assert_eq!(
        doc["image"]["platforms"]["amd64"].as_str(),
        Some(pins.amd64.to_string().as_str())
    );
    assert_eq!(
        doc["image"]["platforms"]["arm64"].as_str(),
        Some(pins.arm64.to_string().as_str())
    );
    // The registry crate loads the pinned file and hands out the pins.
    let registry = Registry::load(&dir.path().join("processors")).unwrap();
    let spec = registry
        .get(&PROCESSOR_REF.parse().unwrap())
        .unwrap()
        .spec();
    assert_eq!(pinned_image(spec, Platform::Amd64).unwrap(), pins.amd64);
    assert_eq!(pinned_image(spec, Platform::Arm64).unwrap(), pins.arm64);
    assert_eq!(
        spec.image.index.as_deref(),
        Some(pins.index.to_string().as_str())
    );

    // Pinning again by tag gives the same pins and leaves the file as it is.
    let by_tag = IndexSource {
        repository: repository.clone(),
        reference: IndexReference::Tag("1".to_owned()),
    };
    assert_eq!(pin(&registry_yaml, &by_tag).await.unwrap(), pins);
    assert_eq!(std::fs::read_to_string(&registry_yaml).unwrap(), after);

    // The engine pulls exactly the pinned digests.
    let docker = docker().await;
    for (platform, pinned) in [
        (Platform::Amd64, &pins.amd64),
        (Platform::Arm64, &pins.arm64),
    ] {
        let pinned = pinned.to_string();
        with_pulled_image(&docker, &pinned, platform, |inspect| {
            let repo_digests = inspect.repo_digests.unwrap_or_default();
            assert!(
                repo_digests.contains(&pinned),
                "{repo_digests:?} lacks {pinned}"
            );
            assert_eq!(inspect.architecture.as_deref(), Some(platform.as_str()));
            assert_eq!(inspect.os.as_deref(), Some("linux"));
            let config = inspect.config.unwrap();
            assert_eq!(config.user.as_deref(), Some("65532:65532"));
            assert_eq!(config.entrypoint, Some(vec!["/processor".to_owned()]));
            let ports: Vec<String> = config
                .exposed_ports
                .unwrap_or_default()
                .into_iter()
                .collect();
            assert_eq!(ports, vec![format!("{}/tcp", build_settings().1)]);
        })
        .await;
    }
}

#[test]
fn build_reports_its_steps_and_each_compile() {
    let events = &shared_build_reported().events;
    let tasks = started(events);
    let (package, _) = build_settings();
    let (steps, label, unit, total) = &tasks[0];
    assert_eq!(
        (label.as_str(), *unit, *total),
        ("building text/stats@1", ProgressUnit::Steps, Some(5)),
        "{tasks:?}"
    );
    assert_eq!(advanced(events, *steps), 5);
    let compiles: Vec<_> = tasks[1..].iter().collect();
    assert_eq!(
        compiles
            .iter()
            .map(|(_, label, unit, total)| (label.clone(), *unit, *total))
            .collect::<Vec<_>>(),
        Platform::ALL
            .iter()
            .map(|platform| (
                format!("compiling {package} for {platform}"),
                ProgressUnit::Items,
                None
            ))
            .collect::<Vec<_>>()
    );
    for (compile, ..) in compiles {
        // Each crate cargo built (fresh or not) counts, the last one named; cargo's own
        // output (at least its `Finished` line) is passed on.
        assert!(advanced(events, *compile) >= 1);
        assert!(events.iter().any(|event| matches!(
            event,
            ProgressEvent::Message { task, text }
                if task == compile && text.contains("crates built, last ")
        )));
        assert!(events.iter().any(|event| matches!(
            event,
            ProgressEvent::Output { task, line } if task == compile && line.contains("Finished")
        )));
    }
    assert!(all_finished(events), "{events:?}");
}

#[tokio::test]
async fn push_reports_every_byte_of_the_layout() {
    let built = shared_build();
    let (progress, events) = recording();
    let pushed = push(&built.layout_dir, &unique_target(), &progress)
        .await
        .unwrap();
    let events = events.lock().unwrap().clone();
    let tasks = started(&events);
    let [(task, label, unit, Some(total))] = tasks.as_slice() else {
        panic!("one push task with a total: {tasks:?}");
    };
    assert_eq!(label, &format!("pushing {}:1", pushed.repository));
    assert_eq!(*unit, ProgressUnit::Bytes);
    let layout_bytes: u64 = std::fs::read_dir(built.layout_dir.join("blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(*total, layout_bytes);
    assert_eq!(advanced(&events, *task), *total);
    assert!(all_finished(&events), "{events:?}");
}

#[tokio::test]
async fn pin_refuses_an_index_without_arm64_and_leaves_the_file_alone() {
    let built = shared_build();
    let pushed = push(&built.layout_dir, &unique_target(), &Progress::none())
        .await
        .unwrap();
    let amd64 = &pushed.platforms[&Platform::Amd64];
    let manifest_size = std::fs::metadata(
        built
            .layout_dir
            .join("blobs/sha256")
            .join(amd64.trim_start_matches("sha256:")),
    )
    .unwrap()
    .len();
    let amd64_only = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": amd64,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    });
    let repository = &pushed.repository;
    let reference = Reference::with_tag(
        repository.host().to_owned(),
        repository.path().to_owned(),
        "amd64-only".to_owned(),
    );
    let client = loopback_client();
    client
        .auth(
            &reference,
            &RegistryAuth::Anonymous,
            oci_client::RegistryOperation::Push,
        )
        .await
        .unwrap();
    client
        .push_manifest_raw(
            &reference,
            serde_json::to_vec(&amd64_only).unwrap(),
            HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
        )
        .await
        .unwrap();

    let (_dir, registry_yaml, before) = registry_yaml_copy();
    let source = IndexSource {
        repository: repository.clone(),
        reference: IndexReference::Tag("amd64-only".to_owned()),
    };
    let err = pin(&registry_yaml, &source).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Pin);
    assert!(err.message().starts_with("pin refused"), "{err}");
    assert!(err.message().contains("does not list linux/arm64"), "{err}");
    assert_eq!(std::fs::read_to_string(&registry_yaml).unwrap(), before);
}

#[tokio::test]
async fn pin_refuses_digests_absent_from_the_registry() {
    let built = shared_build();
    let pushed = push(&built.layout_dir, &unique_target(), &Progress::none())
        .await
        .unwrap();
    let (_dir, registry_yaml, before) = registry_yaml_copy();

    // An index digest the registry never saw.
    let absent = IndexSource {
        repository: pushed.repository.clone(),
        reference: IndexReference::Digest(format!("sha256:{}", "0".repeat(64))),
    };
    let err = pin(&registry_yaml, &absent).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Pin);
    assert!(err.message().contains("does not resolve"), "{err}");
    assert_eq!(std::fs::read_to_string(&registry_yaml).unwrap(), before);

    // An index whose arm64 manifest was deleted from the registry after the push.
    let arm64 = &pushed.platforms[&Platform::Arm64];
    let url = format!(
        "http://{REGISTRY}/v2/{}/manifests/{arm64}",
        pushed.repository.path()
    );
    let response = proctor_tls::http_client_builder()
        .build()
        .unwrap()
        .delete(url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let err = pin(&registry_yaml, &pushed.index_source())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Pin);
    assert!(
        err.message()
            .contains("linux/arm64 manifest does not resolve"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&registry_yaml).unwrap(), before);
}

#[tokio::test]
async fn a_registry_that_is_down_is_unreachable_for_push_and_pin() {
    let built = shared_build();
    // A port that was just free and that nothing listens on.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target: RegistryTarget = format!("127.0.0.1:{closed_port}/acme/proctor")
        .parse()
        .unwrap();

    let (progress, events) = recording();
    let err = push(&built.layout_dir, &target, &progress)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::RegistryUnreachable);
    assert!(err.message().starts_with("registry unreachable"), "{err}");
    assert!(
        events.lock().unwrap().is_empty(),
        "a push refused before any upload reports nothing"
    );

    let (_dir, registry_yaml, before) = registry_yaml_copy();
    let source = IndexSource {
        repository: target.repository(&PROCESSOR_REF.parse().unwrap()).unwrap(),
        reference: IndexReference::Tag("1".to_owned()),
    };
    let err = pin(&registry_yaml, &source).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RegistryUnreachable);
    assert_eq!(std::fs::read_to_string(&registry_yaml).unwrap(), before);
}

#[tokio::test]
async fn pin_refuses_a_registry_yaml_out_of_shape_before_any_network_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.yaml");
    // The image block without arm64.
    let out_of_shape: String = shipped_registry_yaml()
        .lines()
        .map(|line| {
            let line = if line.starts_with("image:") {
                "image: {index: null, platforms: {amd64: null}}"
            } else {
                line
            };
            format!("{line}\n")
        })
        .collect();
    std::fs::write(&path, &out_of_shape).unwrap();
    // The registry does not matter: the file is refused first.
    let source = IndexSource {
        repository: "127.0.0.1:1/acme/proctor/text-stats".parse().unwrap(),
        reference: IndexReference::Tag("1".to_owned()),
    };
    let err = pin(&path, &source).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Pin);
    assert!(err.message().contains("not in the expected shape"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), out_of_shape);
}

#[test]
fn building_twice_gives_byte_identical_layouts() {
    let root = tempfile::tempdir().unwrap();
    let first = build_into(&root.path().join("first"), &Progress::none());
    let second = build_into(&root.path().join("second"), &Progress::none());
    assert_eq!(second.index_digest, first.index_digest);
    let digests = |image: &BuiltImage| {
        image
            .platforms
            .iter()
            .map(|p| p.manifest_digest.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&second), digests(&first));
    let files = |dir: &Path| {
        let mut names: Vec<PathBuf> = ["oci-layout", "index.json"].map(PathBuf::from).to_vec();
        for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
            names.push(Path::new("blobs/sha256").join(entry.unwrap().file_name()));
        }
        names.sort();
        names
            .into_iter()
            .map(|name| (std::fs::read(dir.join(&name)).unwrap(), name))
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&first.layout_dir), files(&second.layout_dir));
}
