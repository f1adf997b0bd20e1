//! The Rust and Python SDKs, given the same payload and provider result, answer the same
//! and write the same files: identical output and index bytes, receipts identical but for
//! the time they were stamped, the same error for a refused run. The Python SDK
//! (`sdk/python`, from this tree) replays the run cases of `golden/sdk/runs.json` with
//! `python3 -m proctor_sdk.testing replay`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use proctor_contract::{Envelope, Receipt};
use serde_json::Value;

use crate::golden::{golden_dir, run_case, stored_files};

/// Every file under `root`, relative, with its bytes.
fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(name, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Replays every case of `runs.json` through the Python SDK into `out/{case}/`; each
/// case's status and envelope, by name.
fn replay_in_python(out: &Path) -> BTreeMap<String, (u16, Value)> {
    let sdk_source: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python/src");
    let output = Command::new("python3")
        .args(["-m", "proctor_sdk.testing", "replay"])
        .arg(golden_dir().join("runs.json"))
        .arg(out)
        .env("PYTHONPATH", &sdk_source)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); run scripts/test.sh, which installs the Python SDK")
        });
    assert!(
        output.status.success(),
        "the Python SDK could not replay the run cases ({}). If a module is missing, install \
         the SDK's dependencies: run scripts/test.sh (python3 -m pip install ./sdk/python[test]).\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let answer: Value = serde_json::from_str(line).unwrap();
            let status = u16::try_from(answer["status"].as_u64().unwrap()).unwrap();
            let name = answer["name"].as_str().unwrap().to_owned();
            (name, (status, answer["envelope"].clone()))
        })
        .collect()
}

#[tokio::test]
async fn the_python_sdk_answers_and_writes_what_the_rust_sdk_does() {
    let out = tempfile::tempdir().unwrap();
    let python = replay_in_python(out.path());
    let runs: Value =
        serde_json::from_str(&fs::read_to_string(golden_dir().join("runs.json")).unwrap()).unwrap();
    let cases = runs["cases"].as_array().unwrap();
    assert_eq!(python.len(), cases.len(), "{python:?}");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (server, status, envelope) = run_case(case).await;
        let (python_status, python_envelope) = &python[name];
        assert_eq!(*python_status, status, "{name}");
        let python_root = out.path().join(name);
        let python_files = files_under(&python_root);
        let stored: Vec<String> = stored_files(case)
            .into_iter()
            .map(|(path, _)| path.strip_prefix("/artifacts/").unwrap().to_owned())
            .collect();
        let success = match envelope {
            Envelope::Error(error) => {
                let python_error = &python_envelope["error"];
                assert_eq!(python_error["code"], error.error.code.as_str(), "{name}");
                assert_eq!(python_error["message"], error.error.message, "{name}");
                let written: Vec<&String> = python_files
                    .keys()
                    .filter(|file| !stored.contains(file))
                    .collect();
                assert!(written.is_empty(), "{name}: {written:?}");
                continue;
            }
            Envelope::Success(success) => success,
        };
        let Envelope::Success(python_success) =
            Envelope::validate(python_envelope).unwrap_or_else(|e| panic!("{name}: {e}"))
        else {
            panic!("{name}: the Python SDK failed: {python_envelope}");
        };
        assert_eq!(python_success.outputs, success.outputs, "{name}");
        assert_eq!(python_success.index_path, success.index_path, "{name}");
        assert_eq!(
            python_success.meta.env_fingerprint, success.meta.env_fingerprint,
            "{name}"
        );
        assert_eq!(
            python_success.meta.image_digest, success.meta.image_digest,
            "{name}"
        );

        let rust_files = files_under(server.artifacts_root());
        let names = |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&python_files), names(&rust_files), "{name}");
        let receipt_name = format!("execution/{}/receipt.json", success.execution_id);
        for (file, bytes) in &rust_files {
            if !file.ends_with("receipt.json") {
                assert_eq!(&python_files[file], bytes, "{name}: {file}");
            }
        }

        // The receipts: both Python copies identical, its stable part the Rust one's, and
        // its bytes the Rust receipt's once stamped with the same time.
        let python_receipt_bytes = &python_files[&receipt_name];
        let prefixed = success
            .index_path
            .as_str()
            .strip_prefix("/artifacts/")
            .unwrap()
            .replace("outputs.json", "receipt.json");
        assert_eq!(&python_files[&prefixed], python_receipt_bytes, "{name}");
        let python_receipt: Receipt = serde_json::from_slice(python_receipt_bytes).unwrap();
        let mut rust_receipt = server.receipt(&success);
        assert_eq!(
            python_receipt.stable_part(),
            rust_receipt.stable_part(),
            "{name}"
        );
        rust_receipt.timestamp_utc = python_receipt.timestamp_utc.clone();
        rust_receipt.duration_ms = python_receipt.duration_ms;
        assert_eq!(
            String::from_utf8(rust_receipt.to_bytes()).unwrap(),
            String::from_utf8(python_receipt_bytes.clone()).unwrap(),
            "{name}"
        );
    }
}
