//! `proctor conform` and `proctor new` end to end: images built from source (`--build`,
//! the compile path and build cache every `run --build` test shares), real containers on
//! the Docker engine, the fixtures' faults chosen by their inputs.

use std::path::{Path, PathBuf};

use proctor_contract::ErrorCode;
use serde_json::{Value, json};

use crate::util::{
    Run, TestDir, fixtures_registry, mock_build_run_args, workspace_registry, workspace_root,
};

/// Every check `proctor conform` reports, in order.
const CHECKS: [&str; 13] = [
    "healthz.json_with_digest",
    "container.non_root",
    "container.no_network_in_mock",
    "run.envelope_valid",
    "run.index_under_prefix",
    "run.index_sorted_compact",
    "run.cids_match",
    "run.receipts_identical",
    "mock.byte_stable",
    "errors.canonical",
    "stream.sse_valid",
    "container.stops_on_sigterm",
    "real.canary_secret_not_leaked",
];

/// The build argument that builds a Python processor on the local base image set-up makes
/// (its default base cannot be pulled here); a Cargo processor's build ignores it.
const PYTHON_BASE: &[&str] = &["--build-arg", "BASE_IMAGE=proctor-python-base:bookworm"];

/// `proctor conform REF --build --json` against `registry`, with `extra` flags.
fn conform(dir: &TestDir, registry: &str, processor_ref: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "conform",
        processor_ref,
        "--build",
        "--json",
        "--registry-root",
        registry,
    ];
    args.extend_from_slice(extra);
    dir.proctor(&args).run()
}

/// The report's checks, name → (status, evidence), asserting they are all there in order.
fn checks(run: &Run) -> Vec<(String, String, String)> {
    let report = run.json();
    let checks: Vec<(String, String, String)> = report["checks"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|check| {
            let text = |key: &str| check[key].as_str().unwrap_or_default().to_owned();
            (text("name"), text("status"), text("evidence"))
        })
        .collect();
    let names: Vec<&str> = checks.iter().map(|(name, _, _)| name.as_str()).collect();
    run.check(names == CHECKS, "every check, in order");
    checks
}

/// The names of the checks with `status`.
fn with_status(checks: &[(String, String, String)], status: &str) -> Vec<String> {
    checks
        .iter()
        .filter(|(_, seen, _)| seen == status)
        .map(|(name, _, _)| name.clone())
        .collect()
}

/// The evidence of check `name`.
fn evidence<'a>(checks: &'a [(String, String, String)], name: &str) -> &'a str {
    &checks.iter().find(|(seen, _, _)| seen == name).unwrap().2
}

/// Asserts a report that fails exactly `failing`, as `ERR_ACCEPTANCE` naming them.
#[track_caller]
fn fails_exactly(run: &Run, failing: &[&str]) -> Vec<(String, String, String)> {
    run.exits(ErrorCode::Acceptance.exit_code());
    let checks = checks(run);
    run.check(
        with_status(&checks, "fail") == failing,
        &format!("exactly {failing:?} fail"),
    );
    let report = run.json();
    run.check(report["ok"] == false, "the report is not ok");
    let message = report["error"]["message"].as_str().unwrap_or_default();
    run.check(
        report["error"]["code"] == "ERR_ACCEPTANCE" && message.ends_with(&failing.join(", ")),
        "ERR_ACCEPTANCE names the failed checks",
    );
    checks
}

/// Asserts a canonical error outside a run: its exit code, and `{"error":{"code","message"}}`
/// with `detail` in the message.
#[track_caller]
fn refused(run: &Run, code: ErrorCode, detail: &str) {
    run.exits(code.exit_code());
    let error = &run.json()["error"];
    let message = error["message"].as_str().unwrap_or_default();
    run.check(
        error["code"] == code.as_str()
            && message.starts_with(code.fragment())
            && message.contains(detail),
        &format!("{code} naming {detail:?}"),
    );
}

#[test]
fn every_shipped_processor_conforms() {
    let dir = TestDir::new();
    let registry = workspace_registry().display().to_string();
    for processor_ref in [
        "json/merge@1",
        "llm/litellm@1",
        "llm/planner@1",
        "plan/map@1",
        "text/stats@1",
        "llm/litellm@2",
    ] {
        let run = conform(&dir, &registry, processor_ref, PYTHON_BASE);
        run.exits(0);
        let checks = checks(&run);
        run.check(with_status(&checks, "fail").is_empty(), "no check fails");
        let has_secrets = processor_ref.starts_with("llm/");
        let canary = if has_secrets {
            "pass"
        } else {
            "not_applicable"
        };
        run.check(
            checks[12].1 == canary,
            "the canary check applies to processors with secrets only",
        );
        let report = run.json();
        run.check(
            report["ok"] == true && report.get("error").is_none(),
            "an ok report without an error",
        );
        run.check(
            report["image_digest"]
                .as_str()
                .is_some_and(|digest| digest.starts_with("sha256:")),
            "the image digest is reported",
        );
    }
    let human = dir
        .proctor(&[
            "conform",
            "text/stats@1",
            "--build",
            "--registry-root",
            &registry,
        ])
        .run();
    human.exits(0);
    human.check(
        human.stdout.contains("✓ healthz.json_with_digest")
            && human.stdout.contains("– real.canary_secret_not_leaked")
            && human.stdout.ends_with("conforms: no check failed\n"),
        "a human report marks each check",
    );
}

/// The checks every run of the hand-written fixtures fails besides its fault: no
/// `/run-stream`, refusals that are not error envelopes, and no reaction to SIGTERM.
const FIXTURE_GAPS: [&str; 3] = [
    "errors.canonical",
    "stream.sse_valid",
    "container.stops_on_sigterm",
];

#[test]
fn an_index_outside_the_write_prefix_is_named() {
    let dir = TestDir::new();
    let inputs = json!({"schema": "v1", "fault": "bad_index_path"}).to_string();
    let run = conform(
        &dir,
        &fixtures_registry(),
        "testing/faulty@1",
        &["--inputs-json", &inputs],
    );
    let checks = fails_exactly(
        &run,
        &[
            "run.index_under_prefix",
            "run.index_sorted_compact",
            "run.receipts_identical",
            "mock.byte_stable",
            FIXTURE_GAPS[0],
            FIXTURE_GAPS[1],
            FIXTURE_GAPS[2],
        ],
    );
    run.check(
        evidence(&checks, "run.index_under_prefix").contains("/artifacts/elsewhere/outputs.json"),
        "the evidence names the index path",
    );
    run.check(
        evidence(&checks, "errors.canonical")
            .contains("malformed_json: expected HTTP 400 ERR_INPUTS"),
        "the evidence names the refusal",
    );
    run.check(
        evidence(&checks, "container.stops_on_sigterm")
            .contains("still running 10 s after SIGTERM"),
        "the evidence says the container outlived SIGTERM",
    );
    run.check(
        evidence(&checks, "real.canary_secret_not_leaked")
            .starts_with("canary values of FAULTY_PASSTHROUGH, FAULTY_STARTUP appear in none"),
        "pass-through variables get canaries too",
    );
}

#[test]
fn a_leaked_canary_is_named_with_where_it_leaked() {
    let dir = TestDir::new();
    let inputs = json!({"schema": "v1", "fault": "leak_secrets"}).to_string();
    let run = conform(
        &dir,
        &fixtures_registry(),
        "testing/faulty@1",
        &["--inputs-json", &inputs],
    );
    let not_checked = [
        "run.index_under_prefix",
        "run.index_sorted_compact",
        "run.cids_match",
        "run.receipts_identical",
    ];
    let mut failing = vec!["container.no_network_in_mock", "run.envelope_valid"];
    failing.extend(not_checked);
    failing.extend(["mock.byte_stable"]);
    failing.extend(FIXTURE_GAPS);
    failing.push("real.canary_secret_not_leaked");
    let checks = fails_exactly(&run, &failing);
    let leaked = evidence(&checks, "real.canary_secret_not_leaked");
    run.check(
        leaked.contains("FAULTY_PASSTHROUGH's value in the /run answer (HTTP 502)")
            && leaked.contains("FAULTY_PASSTHROUGH's value in the container log"),
        "the evidence says where the canary leaked",
    );
    run.check(
        evidence(&checks, "run.envelope_valid").contains("an error envelope (ERR_PROVIDER)"),
        "an error envelope is not a valid run",
    );
}

#[test]
fn outputs_that_do_not_match_their_cids_are_named() {
    let dir = TestDir::new();
    let inputs = json!({"schema": "v1", "behaviour": "wrong_cid"}).to_string();
    let run = conform(
        &dir,
        &fixtures_registry(),
        "testing/hostile@1",
        &["--inputs-json", &inputs],
    );
    let checks = fails_exactly(
        &run,
        &[
            "run.cids_match",
            FIXTURE_GAPS[0],
            FIXTURE_GAPS[1],
            FIXTURE_GAPS[2],
        ],
    );
    run.check(
        evidence(&checks, "run.cids_match").contains("a.txt: the file has"),
        "the evidence names the output",
    );
}

#[test]
fn bad_requests_are_canonical_errors_that_start_nothing() {
    let dir = TestDir::new();
    let registry = workspace_registry().display().to_string();
    let run = conform(&dir, &registry, "text/stats", &[]);
    refused(&run, ErrorCode::ProcessorRef, "text/stats");
    let run = conform(&dir, &registry, "text/stats@1", &["--example", "nope"]);
    refused(
        &run,
        ErrorCode::Inputs,
        "has no example `nope`; its examples: smoke, top_three",
    );
    let run = conform(&dir, &registry, "text/stats@1", &["--inputs-json", "{}"]);
    refused(&run, ErrorCode::Inputs, "");
    let pinned = dir
        .proctor(&[
            "conform",
            "text/stats@1",
            "--json",
            "--registry-root",
            &registry,
        ])
        .run();
    refused(&pinned, ErrorCode::ImageUnpinned, "text/stats@1");
}

/// A copy of the workspace's sources (no `target/`, no `.git`) in `dir`, sharing the
/// workspace's `target/` through a link: cargo finds every dependency already built, and a
/// Python build its cached wheels.
fn scratch_workspace(dir: &TestDir) -> PathBuf {
    let source = workspace_root();
    let scratch = dir.path().join("workspace");
    std::fs::create_dir(&scratch).unwrap();
    for entry in [
        "Cargo.toml",
        "Cargo.lock",
        "crates",
        "processors",
        "fixtures",
        "sdk",
        "schemas",
    ] {
        copy_tree(&source.join(entry), &scratch.join(entry));
    }
    let target = Path::new(env!("CARGO_BIN_EXE_proctor"))
        .parent()
        .and_then(Path::parent)
        .unwrap();
    std::os::unix::fs::symlink(target, scratch.join("target")).unwrap();
    scratch
}

/// Copies `from` to `to`, leaving out build output and hidden entries.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_file() {
        std::fs::copy(from, to).unwrap();
        return;
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        let skipped = name.to_string_lossy().starts_with('.')
            || ["target", "__pycache__"].contains(&name.to_string_lossy().as_ref());
        if !skipped {
            copy_tree(&entry.path(), &to.join(name));
        }
    }
}

/// A mock `--build` run of `processor_ref`'s smoke example from `registry`.
fn mock_run(dir: &TestDir, registry: &str, processor_ref: &str, inputs: &Value) -> Run {
    let inputs = inputs.to_string();
    let mut args = mock_build_run_args(
        processor_ref,
        registry,
        "/artifacts/outputs/new/{execution_id}",
        &inputs,
    );
    args.push("--json");
    args.extend_from_slice(PYTHON_BASE);
    dir.proctor(&args).run()
}

#[test]
fn a_new_rust_processor_conforms_and_runs_as_written() {
    let dir = TestDir::new();
    let workspace = scratch_workspace(&dir);
    let registry = workspace.join("processors").display().to_string();
    let new = dir
        .proctor(&[
            "new",
            "acme/wordcount@1",
            "--lang",
            "rust",
            "--json",
            "--registry-root",
            &registry,
        ])
        .run();
    new.exits(0);
    let made = new.json();
    new.check(
        made["workspace_member"] == "processors/acme/wordcount/1"
            && made["files"]
                == json!([
                    "registry.yaml",
                    "Dockerfile",
                    "Cargo.toml",
                    "src/main.rs",
                    "src/lib.rs",
                    "tests/processor.rs"
                ]),
        "the package is written and joins the workspace",
    );
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#""processors/acme/wordcount/1"]"#),
        "{manifest}"
    );

    let again = dir
        .proctor(&[
            "new",
            "acme/wordcount@1",
            "--lang",
            "rust",
            "--json",
            "--registry-root",
            &registry,
        ])
        .run();
    refused(&again, ErrorCode::Registry, "already exists");
    let bad = dir
        .proctor(&[
            "new",
            "acme/WordCount@1",
            "--lang",
            "rust",
            "--json",
            "--registry-root",
            &registry,
        ])
        .run();
    refused(&bad, ErrorCode::ProcessorRef, "acme/WordCount@1");
    assert_eq!(
        std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap(),
        manifest,
        "refusals leave the workspace as it was"
    );
    assert!(!workspace.join("processors/acme/WordCount").exists());

    let run = conform(&dir, &registry, "acme/wordcount@1", &[]);
    run.exits(0);
    let checks = checks(&run);
    run.check(with_status(&checks, "fail").is_empty(), "no check fails");

    let run = mock_run(
        &dir,
        &registry,
        "acme/wordcount@1",
        &json!({"schema": "v1", "text": "Hello from proctor."}),
    );
    run.exits(0);
    let envelope = run.json();
    run.check(
        envelope["status"] == "success" && envelope["outputs"].as_array().map(Vec::len) == Some(1),
        "a mock run writes the declared output",
    );
}

#[test]
fn a_new_python_processor_conforms_and_runs_as_written() {
    let dir = TestDir::new();
    let workspace = scratch_workspace(&dir);
    let registry = workspace.join("processors").display().to_string();
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    let new = dir
        .proctor(&[
            "new",
            "acme/wordcount@1",
            "--lang",
            "python",
            "--json",
            "--registry-root",
            &registry,
        ])
        .run();
    new.exits(0);
    new.check(
        new.json()["workspace_member"].is_null(),
        "a Python processor is no workspace member",
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap(),
        manifest
    );

    let run = conform(&dir, &registry, "acme/wordcount@1", PYTHON_BASE);
    run.exits(0);
    let checks = checks(&run);
    run.check(with_status(&checks, "fail").is_empty(), "no check fails");

    let run = mock_run(
        &dir,
        &registry,
        "acme/wordcount@1",
        &json!({"schema": "v1", "text": "Hello from proctor."}),
    );
    run.exits(0);
    run.check(
        run.json()["status"] == "success",
        "a mock run of the new processor succeeds",
    );
}
