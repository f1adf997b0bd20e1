//! A pin whose registry host is an IPv6 address, end to end: `proctor pin` writes
//! `[::1]:PORT/…@sha256:…` into registry.yaml, and `proctor run` takes it as pinned — it
//! may fail to pull from there, but never with `ERR_IMAGE_UNPINNED`.
//!
//! Needs: what `image` needs (see [`crate::oci`]) and IPv6 on the loopback interface. The
//! loopback registry listens on 127.0.0.1 only, so the test reaches it on `[::1]` through a
//! TCP relay of its own.

use std::net::TcpStream;

use proctor_contract::ErrorCode;

use crate::oci::{EngineCleanup, REGISTRY, copy_processors, pins_in, unique_target};
use crate::util::{Relay, TestDir, workspace_root};

const STATS: &str = "text/stats@1";
const STATS_YAML: &str = "text/stats/1/registry.yaml";

/// `[::1]:<port>/OWNER/REPO` for the loopback registry's `target` (`HOST/OWNER/REPO`),
/// reached through `relay`.
fn ipv6_target(relay: &Relay, target: &str) -> String {
    let (_, path) = target.split_once('/').unwrap();
    format!("[::1]:{}/{path}", relay.port())
}

#[test]
fn a_pin_on_an_ipv6_registry_host_is_written_and_then_run_as_pinned() {
    let dir = TestDir::new();
    let cleanup = EngineCleanup::new();
    let processors = copy_processors(&dir);
    let root = processors.display().to_string();
    let workspace = workspace_root().display().to_string();

    let build = dir
        .proctor(&[
            "build",
            "--ref",
            STATS,
            "--registry-root",
            &root,
            "--workspace-root",
            &workspace,
            "--json",
        ])
        .run();
    build.exits(0);
    let target = unique_target();
    let push = dir
        .proctor(&["push", "--ref", STATS, "--registry", &target, "--json"])
        .run();
    push.exits(0);

    // The same repository, reached on the IPv6 loopback address.
    let relay = Relay::start("[::1]:0", || TcpStream::connect(REGISTRY));
    let ipv6_target = ipv6_target(&relay, &target);
    let pin = dir
        .proctor(&[
            "pin",
            "--ref",
            STATS,
            "--registry",
            &ipv6_target,
            "--registry-root",
            &root,
            "--json",
        ])
        .run();
    pin.exits(0);
    let pins = &pin.json()["pins"];
    let repository = format!("{ipv6_target}/text-stats@sha256:");
    for platform in ["index", "amd64", "arm64"] {
        pin.check(
            pins[platform]
                .as_str()
                .is_some_and(|pinned| pinned.starts_with(&repository)),
            &format!("the {platform} pin names {repository}…"),
        );
    }
    let (index, amd64, arm64) = pins_in(&processors.join(STATS_YAML));
    assert_eq!(
        (&index, &amd64, &arm64),
        (&pins["index"], &pins["amd64"], &pins["arm64"]),
        "registry.yaml holds the IPv6 pins as strings"
    );

    // The registry's pin check takes both pins `proctor pin` just wrote.
    let show = dir
        .proctor(&["registry", "show", STATS, "--registry-root", &root])
        .run();
    show.exits(0);
    show.check(
        show.stdout.contains(amd64.as_str().unwrap())
            && show.stdout.contains(arm64.as_str().unwrap())
            && !show.stdout.contains("not pinned"),
        "both platforms are pinned",
    );

    let host_pin = match std::env::consts::ARCH {
        "aarch64" => arm64.as_str().unwrap().to_owned(),
        _ => amd64.as_str().unwrap().to_owned(),
    };
    cleanup.pulls(&host_pin);
    let options = cleanup.adapter_options();
    let run = dir
        .proctor(&[
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
            r#"{"schema":"v1","text":"pinned on an IPv6 host"}"#,
            "--adapter-opts-json",
            &options,
            "--registry-root",
            &root,
            "--artifacts-root",
            "artifacts",
            "--json",
        ])
        .run();
    let envelope = run.json();
    run.check(
        envelope["error"]["code"] != ErrorCode::ImageUnpinned.as_str(),
        "the pin check accepts the pin `proctor pin` wrote",
    );
    run.check(cleanup.containers().is_empty(), "no container is left");
}
