//! Progress is drawn on a terminal only: on a pipe, a build (its compile and steps) and a
//! push (its bytes) print their human summaries on stdout, and stderr holds no bar or
//! spinner — no carriage return, no escape sequence, no spinner frame.

use proctor_contract::Platform;

use crate::oci::unique_target;
use crate::util::{Run, TestDir, workspace_registry, workspace_root};

const STATS: &str = "text/stats@1";

#[test]
fn a_build_and_a_push_on_a_pipe_draw_nothing() {
    let dir = TestDir::new();
    let registry_root = workspace_registry().display().to_string();
    let workspace = workspace_root().display().to_string();
    let oci_root = dir.path().join("oci").display().to_string();
    let host = Platform::from_arch(std::env::consts::ARCH)
        .expect("an image platform host")
        .to_string();
    let build = dir
        .proctor(&[
            "build",
            "--ref",
            STATS,
            "--platform",
            &host,
            "--registry-root",
            &registry_root,
            "--workspace-root",
            &workspace,
            "--oci-root",
            &oci_root,
        ])
        .run();
    build.exits(0);
    build.check(
        build.stdout.starts_with("built text/stats@1 into "),
        "the human summary",
    );
    draws_nothing(&build);

    let push = dir
        .proctor(&[
            "push",
            "--ref",
            STATS,
            "--registry",
            &unique_target(),
            "--oci-root",
            &oci_root,
        ])
        .run();
    push.exits(0);
    push.check(push.stdout.starts_with("pushed "), "the human summary");
    draws_nothing(&push);
}

/// Checks that `run`'s stderr holds nothing a bar or spinner draws.
fn draws_nothing(run: &Run) {
    let drawn = |c: char| c == '\r' || c == '\x1b' || ('\u{2800}'..='\u{28ff}').contains(&c);
    run.check(
        !run.stderr.chars().any(drawn),
        "no bar or spinner on a piped stderr",
    );
}
