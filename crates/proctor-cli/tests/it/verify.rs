//! `proctor verify EXECUTION_ID` against one real run: a mock `--build` run of
//! `text/stats@1` in a labelled container on the Docker engine that `scripts/setup.sh`
//! starts, recorded in an SQLite ledger in the test's directory. The one run serves every
//! case: each tampering is undone before the next.

use std::path::PathBuf;

use proctor_contract::{ErrorCode, cid};
use serde_json::Value;

use crate::engine::ContainerSweep;
use crate::ledger::{events_of, execute_sql, fails_plainly, sqlite_url};
use crate::local_adapter::smoke_inputs;
use crate::util::{Run, TestDir, workspace_registry};

/// `proctor verify ID --json` in `dir` with the workspace registry; its exit code and
/// report.
fn verify_json(dir: &TestDir, execution_id: &str) -> (Run, Value) {
    let root = workspace_registry().display().to_string();
    let run = dir
        .proctor(&[
            "verify",
            execution_id,
            "--json",
            "--artifacts-root",
            "artifacts",
            "--registry-root",
            &root,
        ])
        .run();
    let report = run.json();
    (run, report)
}

/// The names of the failed checks of a report.
fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["ok"] == false)
        .map(|check| check["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The detail of the check `name`.
fn detail<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .and_then(|check| check["detail"].as_str())
        .unwrap_or_default()
}

/// Asserts `proctor verify` fails with exactly the checks `expected`; returns the report.
#[track_caller]
fn fails_exactly(dir: &TestDir, execution_id: &str, expected: &[&str]) -> Value {
    let (run, report) = verify_json(dir, execution_id);
    run.exits(ErrorCode::Verify.exit_code());
    run.check(
        failed(&report) == expected,
        &format!("failed checks must be {expected:?}"),
    );
    assert_eq!(report["ok"], false);
    assert_eq!(report["error"]["code"], "ERR_VERIFY");
    let message = report["error"]["message"].as_str().unwrap();
    for name in expected {
        assert!(message.contains(name), "{message} names {name}");
    }
    report
}

/// Replaces a file's bytes for the length of a check, then puts them back.
fn with_file_changed(
    path: &PathBuf,
    change: impl FnOnce(Vec<u8>) -> Option<Vec<u8>>,
    check: impl FnOnce(),
) {
    let original = std::fs::read(path).unwrap();
    match change(original.clone()) {
        Some(bytes) => std::fs::write(path, bytes).unwrap(),
        None => std::fs::remove_file(path).unwrap(),
    }
    check();
    std::fs::write(path, original).unwrap();
}

#[test]
fn verify_checks_every_piece_of_evidence_of_a_real_run() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let inputs = smoke_inputs(&dir, "text/stats@1");
    let root = workspace_registry().display().to_string();
    let options = sweep.adapter_options();
    let run = dir
        .proctor(&[
            "run",
            "--ref",
            "text/stats@1",
            "--adapter",
            "local",
            "--build",
            "--write-prefix",
            "/artifacts/outputs/demo/{execution_id}",
            "--inputs-json",
            &inputs,
            "--adapter-opts-json",
            &options,
            "--registry-root",
            &root,
            "--artifacts-root",
            "artifacts",
            "--json",
        ])
        .run();
    run.exits(0);
    run.check(sweep.containers().is_empty(), "no container may be left");
    let envelope = run.json();
    let id = envelope["execution_id"].as_str().unwrap().to_owned();
    let artifacts = dir.path().join("artifacts");
    let host = |world: &str| artifacts.join(world.strip_prefix("/artifacts/").unwrap());
    let index_file = host(envelope["index_path"].as_str().unwrap());
    let prefix_receipt = index_file.with_file_name("receipt.json");
    let execution_receipt = artifacts.join(format!("execution/{id}/receipt.json"));
    let outputs = envelope["outputs"].as_array().unwrap();
    assert!(outputs.len() >= 2, "text/stats@1 has several outputs");

    // The ledger recorded the whole run, tied to the files by content ids.
    let show = {
        let run = dir.proctor(&["ledger", "show", "default", "--json"]).run();
        run.exits(0);
        run.json()
    };
    let events = events_of(&show, &id);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let mut expected = vec!["execution.start", "budget.reserve", "lease.acquire"];
    expected.extend(std::iter::repeat_n("artifact.produce", outputs.len()));
    expected.extend(["lease.release", "budget.settle", "execution.settle.success"]);
    assert_eq!(kinds, expected, "{show:#}");
    let settle = &events.last().unwrap()["payload"];
    assert_eq!(settle["index_path"], envelope["index_path"]);
    assert_eq!(
        settle["outputs_index_cid"],
        cid(&std::fs::read(&index_file).unwrap())
    );
    assert_eq!(
        settle["receipt_cid"],
        cid(&std::fs::read(&execution_receipt).unwrap())
    );
    assert_eq!(settle["image_digest"], envelope["meta"]["image_digest"]);
    assert_eq!(
        events[0]["payload"].get("image_digest"),
        None,
        "--build: no pin at start"
    );
    let verified = {
        let run = dir.proctor(&["ledger", "verify", "--json"]).run();
        run.exits(0);
        run.json()
    };
    assert_eq!(verified["ok"], true);

    // Untouched evidence verifies, in JSON and for people.
    let (run, report) = verify_json(&dir, &id);
    run.exits(0);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        (&report["ledger"], &report["plan"]),
        (&"sqlite".into(), &"default".into())
    );
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "receipt.execution",
        "receipt.prefix_copy",
        "index.read",
        "ledger.execution",
        "ledger.chain",
        "ledger.settle",
        "ledger.processor",
        "ledger.outputs_index",
        "ledger.receipt",
        "ledger.image_digest",
        "ledger.artifacts",
        "image.pin",
    ] {
        assert!(names.contains(&name), "{name} is checked: {names:?}");
    }
    for output in outputs {
        let name = format!("output:{}", output["path"].as_str().unwrap());
        assert!(names.contains(&name.as_str()), "{name} is checked");
    }
    assert!(detail(&report, "image.pin").starts_with("built from source (image ID sha256:"));
    let human = dir
        .proctor(&[
            "verify",
            &id,
            "--artifacts-root",
            "artifacts",
            "--registry-root",
            &root,
        ])
        .run();
    human.exits(0);
    let check_lines: Vec<&str> = human
        .stdout
        .lines()
        .filter(|line| line.starts_with('✓') || line.starts_with('✗'))
        .collect();
    human.check(check_lines.len() == names.len(), "one line per check");
    human.check(
        check_lines.iter().all(|line| line.starts_with('✓')),
        "all pass",
    );
    human.check(
        human
            .stdout
            .ends_with(&format!("verified: all {} checks passed\n", names.len())),
        "summary line",
    );

    // A flipped byte in an output.
    let first_output = output_path(&outputs[0]);
    let output_file = host(&first_output);
    with_file_changed(
        &output_file,
        |mut bytes| {
            bytes[0] ^= 0x01;
            Some(bytes)
        },
        || {
            let name = format!("output:{first_output}");
            let report = fails_exactly(&dir, &id, &[&name]);
            assert!(
                detail(&report, &name).contains("index says b3:"),
                "{report:#}"
            );
        },
    );

    // A deleted receipt copy, either one.
    with_file_changed(
        &prefix_receipt,
        |_| None,
        || {
            let report = fails_exactly(&dir, &id, &["receipt.prefix_copy"]);
            assert!(
                detail(&report, "receipt.prefix_copy")
                    .starts_with("missing: `/artifacts/outputs/demo/")
            );
        },
    );
    with_file_changed(
        &execution_receipt,
        |_| None,
        || {
            fails_exactly(&dir, &id, &["receipt.execution"]);
        },
    );

    // An index entry with a wrong size: the output no longer matches, nor does the index
    // the ledger recorded.
    with_file_changed(
        &index_file,
        |bytes| {
            let mut index: Value = serde_json::from_slice(&bytes).unwrap();
            let size = index["outputs"][0]["size_bytes"].as_u64().unwrap();
            index["outputs"][0]["size_bytes"] = (size + 1).into();
            Some(serde_json::to_vec(&index).unwrap())
        },
        || {
            let name = format!("output:{first_output}");
            let report = fails_exactly(
                &dir,
                &id,
                &[&name, "ledger.outputs_index", "ledger.artifacts"],
            );
            assert!(detail(&report, &name).contains("size"), "{report:#}");
        },
    );

    // Everything restored verifies again.
    let (run, _) = verify_json(&dir, &id);
    run.exits(0);

    // An edited ledger payload breaks the chain at its seq, before the settle event.
    let produce = events
        .iter()
        .find(|event| event["kind"] == "artifact.produce")
        .unwrap();
    let seq = produce["seq"].as_u64().unwrap();
    execute_sql(
        &sqlite_url(&dir),
        &format!(
            "UPDATE events SET payload = replace(payload, '\"kind\":\"artifact.produce\"', \
             '\"kind\":\"artifact.produce\",\"note\":\"edited\"') WHERE plan = 'default' AND seq = {seq}"
        ),
    );
    let run = dir.proctor(&["ledger", "verify", "--json"]).run();
    run.exits(ErrorCode::LedgerChain.exit_code());
    assert_eq!(run.json()["plans"][0]["broken"]["seq"], seq);
    let report = fails_exactly(&dir, &id, &["ledger.chain", "ledger.settle"]);
    assert!(
        detail(&report, "ledger.chain")
            .starts_with(&format!("plan `default` broken at seq {seq}:")),
        "{report:#}"
    );

    // An execution nobody ran.
    let unknown = uuid::Uuid::new_v4().to_string();
    fails_exactly(&dir, &unknown, &["receipt.execution", "ledger.execution"]);
    let run = dir
        .proctor(&["verify", "a/b", "--artifacts-root", "artifacts"])
        .run();
    fails_plainly(&run, ErrorCode::BadPath, "invalid execution id `a/b`");
}

/// The world path of an envelope output.
fn output_path(output: &Value) -> String {
    output["path"].as_str().unwrap().to_owned()
}
