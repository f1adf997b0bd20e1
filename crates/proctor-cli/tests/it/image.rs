//! `proctor build`, `push` and `pin`, and pinned runs, against the real loopback registry
//! and Docker engine (see [`crate::oci`]): the shipped `text/stats@1` is built for both
//! platforms, pushed under an owner of its own, pinned in a copy of `processors/`, and run
//! from the registry by digest. Refusals — a missing platform, an absent digest, a registry
//! that is down — each give their canonical error and leave registry.yaml as it was. A
//! `run --build` runs the image config `proctor build` writes for the host platform.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use proctor_contract::{Digest, ErrorCode, Platform};
use serde_json::Value;

use crate::engine::image_present;
use crate::oci::{
    EngineCleanup, closed_target, copy_processors, digest_of, fails_with_error, json_events,
    pins_in, unique_target,
};
use crate::util::{TestDir, workspace_registry, workspace_root};

const STATS: &str = "text/stats@1";
const STATS_YAML: &str = "text/stats/1/registry.yaml";

/// `proctor build --ref text/stats@1 --json` with `extra`, on the copy at `processors`.
fn build(dir: &TestDir, processors: &str, extra: &[&str]) -> Value {
    let root = workspace_root().display().to_string();
    let mut args = vec![
        "build",
        "--ref",
        STATS,
        "--registry-root",
        processors,
        "--workspace-root",
        &root,
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = dir.proctor(&args).run();
    run.exits(0);
    run.json()
}

/// A mock `run --lane main` of `text/stats@1` from the pins of the copy at `processors`.
fn pinned_run(dir: &TestDir, cleanup: &EngineCleanup, processors: &str) -> crate::util::Run {
    let options = cleanup.adapter_options();
    dir.proctor(&[
        "run",
        "--lane",
        "main",
        "--ref",
        STATS,
        "--adapter",
        "local",
        "--write-prefix",
        "/artifacts/o/{execution_id}",
        "--inputs-json",
        r#"{"schema":"v1","text":"pinned runs pull by digest"}"#,
        "--adapter-opts-json",
        &options,
        "--registry-root",
        processors,
        "--artifacts-root",
        "artifacts",
        "--json",
    ])
    .run()
}

#[test]
fn build_push_pin_then_a_main_lane_run_pulls_the_pinned_digest() {
    let dir = TestDir::new();
    let cleanup = EngineCleanup::new();
    let processors = copy_processors(&dir);
    let root = processors.display().to_string();
    let yaml = processors.join(STATS_YAML);
    let shipped = std::fs::read_to_string(&yaml).unwrap();

    let built = build(&dir, &root, &[]);
    let platforms: Vec<&str> = built["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{built}");
    let layout = dir.path().join(".proctor/oci/text-stats-1");
    assert_eq!(built["layout_dir"], layout.display().to_string());
    assert!(layout.join("index.json").is_file());
    let amd64_manifest = built["platforms"][0]["manifest_digest"].as_str().unwrap();

    // A registry that does not answer: nothing is pushed, nothing pinned.
    let down = closed_target();
    let push_down = dir
        .proctor(&["push", "--ref", STATS, "--registry", &down, "--json"])
        .run();
    fails_with_error(
        &push_down,
        ErrorCode::RegistryUnreachable,
        "is the registry running?",
    );
    let pin_down = dir
        .proctor(&[
            "pin",
            "--ref",
            STATS,
            "--registry",
            &down,
            "--registry-root",
            &root,
            "--json",
        ])
        .run();
    fails_with_error(&pin_down, ErrorCode::RegistryUnreachable, "");
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), shipped);

    let target = unique_target();
    let push = dir
        .proctor(&["push", "--ref", STATS, "--registry", &target, "--json"])
        .run();
    push.exits(0);
    let pushed = push.json();
    push.check(
        pushed["repository"] == format!("{target}/text-stats") && pushed["tag"] == "1",
        "repository HOST/OWNER/REPO/<ns>-<name>, tagged with the version",
    );
    push.check(
        pushed["index_digest"] == built["index_digest"],
        "the built index",
    );
    push.check(
        pushed["platforms"]["amd64"] == amd64_manifest,
        "the built amd64 image",
    );

    // Pinned from the push record: no --registry needed.
    let pin = dir
        .proctor(&["pin", "--ref", STATS, "--registry-root", &root, "--json"])
        .run();
    pin.exits(0);
    let pins = &pin.json()["pins"];
    let repository = format!("{target}/text-stats");
    pin.check(
        pins["index"] == format!("{repository}@{}", built["index_digest"].as_str().unwrap())
            && pins["amd64"] == format!("{repository}@{amd64_manifest}"),
        "pins name the pushed digests",
    );
    let (index, amd64, arm64) = pins_in(&yaml);
    assert_eq!(
        (&index, &amd64, &arm64),
        (&pins["index"], &pins["amd64"], &pins["arm64"])
    );
    let pinned = std::fs::read_to_string(&yaml).unwrap();
    let changed: Vec<(&str, &str)> = shipped
        .lines()
        .zip(pinned.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "only the image line changes: {changed:?}");
    assert!(changed[0].0.starts_with("image:"), "{changed:?}");
    assert_eq!(shipped.lines().count(), pinned.lines().count());

    // The pinned image is absent locally, so the run pulls it by digest.
    let amd64 = amd64.as_str().unwrap();
    cleanup.pulls(amd64);
    assert!(!image_present(amd64), "{amd64} must not be local yet");
    let run = pinned_run(&dir, &cleanup, &root);
    run.exits(0);
    run.check(image_present(amd64), "the run pulled the pinned image");
    let envelope = run.json();
    run.check(
        envelope["meta"]["image_digest"] == digest_of(amd64),
        "the envelope reports the pinned amd64 digest",
    );
    run.check(digest_of(amd64) == amd64_manifest, "which is the built one");
    let pulls = json_events(&run, "image.pull");
    run.check(
        pulls.len() == 1 && pulls[0]["reference"] == amd64,
        "pulled once, by the pinned reference",
    );
    run.check(cleanup.containers().is_empty(), "no container is left");
}

#[test]
fn a_pin_needs_both_platforms_and_a_resolving_index() {
    let dir = TestDir::new();
    let processors = copy_processors(&dir);
    let root = processors.display().to_string();
    let yaml = processors.join(STATS_YAML);
    let shipped = std::fs::read(&yaml).unwrap();

    let built = build(&dir, &root, &["--platform", "linux/amd64"]);
    assert_eq!(built["platforms"].as_array().unwrap().len(), 1, "{built}");
    let target = unique_target();
    let push = dir
        .proctor(&["push", "--ref", STATS, "--registry", &target, "--json"])
        .run();
    push.exits(0);
    let pin = dir
        .proctor(&["pin", "--ref", STATS, "--registry-root", &root, "--json"])
        .run();
    fails_with_error(&pin, ErrorCode::Pin, "the index does not list linux/arm64");
    assert_eq!(
        std::fs::read(&yaml).unwrap(),
        shipped,
        "registry.yaml unchanged"
    );

    // Nothing was ever pushed under this owner: the version tag does not resolve.
    let empty = unique_target();
    let pin = dir
        .proctor(&[
            "pin",
            "--ref",
            STATS,
            "--registry",
            &empty,
            "--registry-root",
            &root,
            "--json",
        ])
        .run();
    fails_with_error(&pin, ErrorCode::Pin, "does not resolve");
    assert_eq!(
        std::fs::read(&yaml).unwrap(),
        shipped,
        "registry.yaml unchanged"
    );

    // Human output names the error too.
    let pin = dir
        .proctor(&[
            "pin",
            "--ref",
            STATS,
            "--registry",
            &empty,
            "--registry-root",
            &root,
        ])
        .run();
    pin.exits(ErrorCode::Pin.exit_code());
    pin.check(
        pin.stdout.starts_with("error: ERR_PIN: pin refused: "),
        "one error line",
    );
}

#[test]
fn tampered_and_placeholder_pins_fail_before_any_container() {
    let dir = TestDir::new();
    let cleanup = EngineCleanup::new();
    let processors = copy_processors(&dir);
    let root = processors.display().to_string();
    let yaml = processors.join(STATS_YAML);
    let shipped = std::fs::read_to_string(&yaml).unwrap();
    let set_pin = |pin: &str| {
        let line = format!("image: {{index: {pin}, platforms: {{amd64: {pin}, arm64: {pin}}}}}");
        let text = shipped.replace(
            "image: {index: null, platforms: {amd64: null, arm64: null}}",
            &line,
        );
        assert_ne!(
            text, shipped,
            "the shipped file holds an unpinned image line"
        );
        std::fs::write(&yaml, &text).unwrap();
        text
    };

    // A well-formed pin to a digest the registry does not have.
    let absent = format!("{}/text-stats@sha256:{}", unique_target(), random_hex());
    let tampered = set_pin(&format!("\"{absent}\""));
    cleanup.pulls(&absent);
    let run = pinned_run(&dir, &cleanup, &root);
    let envelope = run.json();
    run.exits(ErrorCode::AdapterInvocation.exit_code());
    run.check(
        envelope["error"]["code"] == "ERR_ADAPTER_INVOCATION",
        "the code",
    );
    run.check(
        envelope["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pulling {absent} failed")),
        "names the pull",
    );
    run.check(
        json_events(&run, "container.started").is_empty(),
        "no container started",
    );
    run.check(
        !dir.path().join("artifacts").exists(),
        "no artifact written",
    );
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), tampered);

    // A placeholder pin in the main lane.
    let placeholder = set_pin("'registry.example/text-stats@sha256:<64 hex>'");
    let run = pinned_run(&dir, &cleanup, &root);
    run.exits(ErrorCode::ImageUnpinned.exit_code());
    run.check(
        run.json()["error"]["code"] == "ERR_IMAGE_UNPINNED",
        "the code",
    );
    run.check(
        !dir.path().join("artifacts").exists(),
        "no artifact written",
    );
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), placeholder);
    assert!(cleanup.containers().is_empty());
}

#[test]
fn run_build_runs_the_config_that_proctor_build_writes_for_the_host() {
    let dir = TestDir::new();
    let cleanup = EngineCleanup::new();
    let root = workspace_registry().display().to_string();
    let host = Platform::from_arch(std::env::consts::ARCH).expect("an image platform host");
    let built = build(&dir, &root, &["--platform", &host.to_string()]);
    let layout = dir.path().join(".proctor/oci/text-stats-1");
    assert_eq!(built["layout_dir"], layout.display().to_string());
    let config_digest = config_digest_in(&layout, host);

    let options = cleanup.adapter_options();
    let build_run = || {
        dir.proctor(&[
            "run",
            "--lane",
            "pr",
            "--build",
            "--ref",
            STATS,
            "--adapter",
            "local",
            "--mode",
            "mock",
            "--write-prefix",
            "/artifacts/o/{execution_id}",
            "--inputs-json",
            r#"{"schema":"v1","text":"the pr lane runs what main pins"}"#,
            "--adapter-opts-json",
            &options,
            "--registry-root",
            &root,
            "--artifacts-root",
            "artifacts",
            "--json",
        ])
        .run()
    };
    let run = build_run();
    run.exits(0);
    run.check(
        run.json()["meta"]["image_digest"] == config_digest,
        "the run's image ID is the config digest of the built layout's host image",
    );
    let (id, labels) = engine_image("proctor/text-stats:1");
    run.check(id == config_digest, "the local tag names that image");
    run.check(
        labels.get("proctor.ref").map(String::as_str) == Some(STATS),
        "labelled with the ref",
    );

    // Nothing changed: the engine already has the image, nothing is loaded again.
    let again = build_run();
    again.exits(0);
    let built_events = json_events(&again, "image.built");
    again.check(
        built_events.len() == 1
            && built_events[0]["image_id"] == config_digest
            && built_events[0]["loaded"] == false,
        "the same image, not loaded again",
    );
    again.check(cleanup.containers().is_empty(), "no container is left");
}

/// The config digest of `platform`'s image in the OCI layout at `layout`.
fn config_digest_in(layout: &Path, platform: Platform) -> String {
    let read =
        |path: &Path| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let blob = |digest: &Value| {
        let digest: Digest = digest.as_str().unwrap().parse().unwrap();
        read(&layout.join("blobs/sha256").join(digest.hex()))
    };
    let top = read(&layout.join("index.json"));
    let index = blob(&top["manifests"][0]["digest"]);
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["platform"]["architecture"] == platform.as_str())
        .unwrap_or_else(|| panic!("no {platform} image in {index}"));
    let manifest = blob(&entry["digest"]);
    manifest["config"]["digest"].as_str().unwrap().to_owned()
}

/// The ID and labels of the engine's image `reference`.
fn engine_image(reference: &str) -> (String, HashMap<String, String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let docker = Docker::connect_with_local_defaults().unwrap();
        let docker = docker.negotiate_version().await.unwrap();
        let image = docker.inspect_image(reference).await.unwrap();
        let labels = image.config.and_then(|config| config.labels);
        (image.id.unwrap(), labels.unwrap_or_default())
    })
}

/// 64 random lowercase hex digits, as a digest no registry holds.
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
