//! `proctor run --attach NAME=PATH` and a plan's `attach:` on the Docker engine: the shipped
//! `text/stats@1` reading its text from an attached file, and `testing/hostile@1` probing
//! what of the World its container sees, both built from source (`--build`), mock mode.
//! Every container carries a [`ContainerSweep`] label; "before any container" means no
//! `container.started` log line and no container with the label.

use std::os::unix::fs::symlink;

use proctor_contract::{ErrorCode, Receipt, cid, inputs_hash};
use serde_json::{Value, json};

use crate::engine::ContainerSweep;
use crate::ledger::sqlite_url;
use crate::plan::{apply_in, transition, verify_execution, verify_execution_on};
use crate::util::{Run, TestDir, fixtures_registry, mock_build_run_args, workspace_registry};

/// The text every test attaches.
const NOTES: &str = "The quick brown fox.\nThe lazy dog sleeps.\n";

/// `proctor run` of `processor_ref` from `registry` with `inputs`, `--json`, the World in
/// `artifacts`, its container labelled by `sweep`, and `extra` flags (the attachments);
/// asserts no container is left.
fn run(
    dir: &TestDir,
    sweep: &ContainerSweep,
    (processor_ref, registry): (&str, &str),
    inputs: &Value,
    extra: &[&str],
) -> Run {
    let inputs = inputs.to_string();
    let options = sweep.adapter_options();
    let mut args = mock_build_run_args(
        processor_ref,
        registry,
        "/artifacts/outputs/attach/{execution_id}/",
        &inputs,
    );
    args.extend(["--adapter-opts-json", &options, "--json"]);
    args.extend_from_slice(extra);
    let run = dir.proctor(&args).run();
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the run",
    );
    run
}

/// [`run`] of the workspace's `text/stats@1`.
fn stats(dir: &TestDir, sweep: &ContainerSweep, inputs: &Value, extra: &[&str]) -> Run {
    let registry = workspace_registry().display().to_string();
    run(dir, sweep, ("text/stats@1", &registry), inputs, extra)
}

/// Every file below `artifacts/inputs`, relative to the World, sorted.
fn stored_inputs(dir: &TestDir) -> Vec<String> {
    dir.files()
        .into_iter()
        .filter(|path| path.starts_with("artifacts/inputs/"))
        .collect()
}

/// The committed receipt of the execution `envelope` reports.
fn receipt(dir: &TestDir, envelope: &Value) -> Receipt {
    let id = envelope["execution_id"].as_str().unwrap();
    let bytes = std::fs::read(
        dir.path()
            .join(format!("artifacts/execution/{id}/receipt.json")),
    );
    serde_json::from_slice(&bytes.unwrap()).unwrap()
}

/// The bytes of the output `name` of the execution `envelope` reports.
fn output(dir: &TestDir, envelope: &Value, name: &str) -> Vec<u8> {
    let path = envelope["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|output| output["path"].as_str().unwrap())
        .find(|path| path.ends_with(&format!("/outputs/{name}")))
        .unwrap_or_else(|| panic!("no output {name} in {envelope}"));
    let below = path.strip_prefix("/artifacts/").unwrap();
    std::fs::read(dir.path().join("artifacts").join(below)).unwrap()
}

/// The names of the failed checks of a `proctor verify --json` report.
fn failed_checks(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["ok"] == false)
        .map(|check| check["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_attached_file_is_stored_once_read_checked_and_verified() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    dir.write("notes.txt", NOTES);
    let attached = json!({"schema": "v1", "text": {"$attach": "doc"}});
    let first = stats(&dir, &sweep, &attached, &["--attach", "doc=notes.txt"]);
    first.exits(0);
    let envelope = first.json();

    let stored_at = format!("artifacts/inputs/{}/notes.txt", cid(NOTES.as_bytes()));
    assert_eq!(stored_inputs(&dir), std::slice::from_ref(&stored_at));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&stored_at)).unwrap(),
        NOTES
    );
    let artifact = json!({
        "$artifact": format!("/{stored_at}"),
        "cid": cid(NOTES.as_bytes()),
        "mime": "text/plain",
    });
    let receipt = receipt(&dir, &envelope);
    assert_eq!(
        receipt.inputs_hash,
        inputs_hash(&json!({"schema": "v1", "text": artifact})).value,
        "the inputs hash covers the resolved artifact"
    );
    assert_eq!(
        serde_json::to_value(&receipt.artifacts_read).unwrap(),
        json!([{"path": format!("/{stored_at}"), "cid": cid(NOTES.as_bytes())}])
    );

    // The same counts as the text given inline.
    let inline = stats(&dir, &sweep, &json!({"schema": "v1", "text": NOTES}), &[]);
    inline.exits(0);
    assert_eq!(
        output(&dir, &envelope, "stats.json"),
        output(&dir, &inline.json(), "stats.json")
    );

    // The same file attached again, under another name, is stored once.
    let again = stats(
        &dir,
        &sweep,
        &json!({"schema": "v1", "text": {"$attach": "other"}}),
        &["--attach", "other=notes.txt"],
    );
    again.exits(0);
    assert_eq!(stored_inputs(&dir), std::slice::from_ref(&stored_at));

    // `proctor verify` re-hashes the input artifact the receipt says was read.
    let id = envelope["execution_id"].as_str().unwrap();
    let registry = workspace_registry().display().to_string();
    let verified = verify_execution_on(&dir, id, &registry, &sqlite_url(&dir));
    verified.exits(0);
    let input_check = format!("input:/{stored_at}");
    let report = verified.json();
    verified.check(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|check| check["name"] == input_check.as_str() && check["ok"] == true),
        "verify must check the input artifact",
    );
    let stored = dir.path().join(&stored_at);
    std::fs::remove_file(&stored).unwrap();
    std::fs::write(&stored, "The quick brown fox.\nThe lazy cat sleeps.\n").unwrap();
    let tampered = verify_execution_on(&dir, id, &registry, &sqlite_url(&dir));
    tampered.exits(ErrorCode::Verify.exit_code());
    tampered.check(
        failed_checks(&tampered.json()) == [input_check],
        "only the input artifact check may fail",
    );
}

#[test]
fn bad_attachments_are_refused_before_any_container() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    dir.write("notes.txt", NOTES);
    dir.write("folder/inside.txt", NOTES);
    symlink(dir.path().join("folder"), dir.path().join("folder-link")).unwrap();
    dir.write("100%.txt", NOTES);
    let made = std::process::Command::new("mkfifo")
        .arg(dir.path().join("pipe"))
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    let referenced = json!({"schema": "v1", "text": {"$attach": "doc"}});
    let cases: [(Value, &[&str], &str); 9] = [
        (
            json!({"schema": "v1", "text": {"$attach": "missing"}}),
            &["--attach", "doc=notes.txt"],
            "`{\"$attach\": \"missing\"}` names no attachment",
        ),
        (
            json!({"schema": "v1", "text": "inline"}),
            &["--attach", "doc=notes.txt"],
            "attachment `doc` is never referenced",
        ),
        (referenced.clone(), &[], "names no attachment"),
        (
            referenced.clone(),
            &["--attach", "doc=folder"],
            "not a regular file",
        ),
        (
            referenced.clone(),
            &["--attach", "doc=folder-link"],
            "not a regular file",
        ),
        (
            referenced.clone(),
            &["--attach", "doc=pipe"],
            "not a regular file",
        ),
        (
            referenced.clone(),
            &["--attach", "doc=notes.txt", "--max-attachment-bytes", "8"],
            "raise --max-attachment-bytes",
        ),
        (
            referenced.clone(),
            &["--attach", "doc=notes.txt", "--attach", "doc=notes.txt"],
            "attachment `doc` is given twice",
        ),
        // The file name is part of the world path: it must be a segment as it is.
        (
            referenced.clone(),
            &["--attach", "doc=100%.txt"],
            "rename the file",
        ),
    ];
    for (inputs, extra, detail) in cases {
        let refused = stats(&dir, &sweep, &inputs, extra);
        refused.fails_with(ErrorCode::Inputs, detail);
        refused.check(
            refused.events("container.started").is_empty(),
            "no container may start",
        );
        refused.check(
            stored_inputs(&dir).is_empty(),
            "nothing may be stored for a refused attachment",
        );
        refused.check(
            !dir.path().join(".proctor/ledger.db").exists(),
            "nothing may be recorded before the checks",
        );
    }
    // The schema's media types are checked before any container too: text/stats takes
    // text/* files only.
    dir.write("notes.png", NOTES);
    let refused = stats(&dir, &sweep, &referenced, &["--attach", "doc=notes.png"]);
    refused.fails_with(ErrorCode::Inputs, "at `/text`");
    refused.check(
        refused.events("container.started").is_empty(),
        "no container may start",
    );
}

#[test]
fn the_container_sees_its_input_artifacts_read_only_and_nothing_else_of_the_world() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    let registry = fixtures_registry();
    let hostile = ("testing/hostile@1", registry.as_str());
    // Another execution's evidence and another attachment are in the World.
    let honest = run(
        &dir,
        &sweep,
        hostile,
        &json!({"schema": "v1", "behaviour": "honest"}),
        &[],
    );
    honest.exits(0);
    dir.write("other.txt", "another file\n");
    dir.write("notes.txt", NOTES);
    let other = run(
        &dir,
        &sweep,
        hostile,
        &json!({"schema": "v1", "behaviour": "probe_world", "artifact": {"$attach": "o"}}),
        &["--attach", "o=other.txt"],
    );
    other.exits(0);

    let probe = run(
        &dir,
        &sweep,
        hostile,
        &json!({"schema": "v1", "behaviour": "probe_world", "artifact": {"$attach": "doc"}}),
        &["--attach", "doc=notes.txt"],
    );
    probe.exits(0);
    let stored = format!("inputs/{}/notes.txt", cid(NOTES.as_bytes()));
    assert_eq!(
        String::from_utf8(output(&dir, &probe.json(), "a.txt")).unwrap(),
        format!("seen {stored}\nwrite {stored}: refused\n")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("artifacts").join(&stored)).unwrap(),
        NOTES,
        "the stored artifact is unchanged"
    );
}

#[test]
fn a_plan_attaches_files_and_passes_outputs_on_as_artifacts() {
    let dir = TestDir::new();
    let sweep = ContainerSweep::new();
    dir.write("notes.txt", NOTES);
    let plan = r#"
plan: files
mode: mock
transitions:
  - id: file
    ref: text/stats@1
    attach: {doc: notes.txt}
    inputs: {schema: v1, text: {$attach: doc}}
  - id: again
    ref: text/stats@1
    inputs: {schema: v1, text: {$from: "file:outputs/normalized.txt", as: artifact}}
"#;
    let registry = workspace_registry().display().to_string();
    let applied = apply_in(&dir, &sweep, plan, &registry, &[]);
    applied.exits(0);
    let report = applied.json();
    let again = transition(&report, "again");
    let again_id = again["execution_id"].as_str().unwrap();
    let file_id = transition(&report, "file")["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let normalized = "the quick brown fox. the lazy dog sleeps.\n";
    let receipt: Receipt = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join(format!("artifacts/execution/{again_id}/receipt.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&receipt.artifacts_read).unwrap(),
        json!([{
            "path": format!("/artifacts/plans/files/file/{file_id}/outputs/normalized.txt"),
            "cid": cid(normalized.as_bytes()),
        }])
    );
    assert_eq!(
        stored_inputs(&dir),
        [format!(
            "artifacts/inputs/{}/notes.txt",
            cid(NOTES.as_bytes())
        )]
    );
    for id in [file_id.as_str(), again_id] {
        verify_execution(&dir, id, &registry).exits(0);
    }

    // Applied again, nothing changed: both are skipped. A changed file runs its transition
    // again.
    let reapplied = apply_in(&dir, &sweep, plan, &registry, &[]);
    reapplied.exits(0);
    assert_eq!(transition(&reapplied.json(), "file")["state"], "skipped");
    dir.write("notes.txt", "Another text.\n");
    let changed = apply_in(&dir, &sweep, plan, &registry, &[]);
    changed.exits(0);
    assert_eq!(transition(&changed.json(), "file")["state"], "succeeded");
}
