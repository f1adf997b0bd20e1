//! The golden vectors both SDKs read (`golden/sdk/` at the repository root): each file's
//! cases hold what goes in, and `expected` what this SDK and the contract make of it. The
//! Python SDK's tests read the same files. `PROCTOR_UPDATE_GOLDEN=1` rewrites every
//! `expected` from this implementation instead of checking it.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use proctor_contract::{
    ArtifactRef, Envelope, ErrorCode, Redactor, Usage, WorldPath, WritePrefix, canonical_json,
    inputs_hash,
};
use proctor_sdk::testing::TestServer;
use proctor_sdk::{Context, ProcessorDefinition, ProviderOutput, ProviderResult};
use serde_json::{Map, Value, json};

/// `golden/sdk/`.
pub(crate) fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../golden/sdk")
}

fn read(name: &str) -> Value {
    let path = golden_dir().join(name);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn updating() -> bool {
    std::env::var_os("PROCTOR_UPDATE_GOLDEN").is_some_and(|value| !value.is_empty())
}

/// Checks (or, when updating, writes) `expected` of every case of each of `lists` in file
/// `name`, as `compute` makes it from the case (called once per case, in order).
fn check_cases(name: &str, lists: &[&str], mut compute: impl FnMut(&Value) -> Value) {
    let mut document = read(name);
    let mut mismatches = Vec::new();
    for list in lists {
        let cases = document[*list]
            .as_array_mut()
            .unwrap_or_else(|| panic!("{name}: `{list}` is not a list"));
        for case in cases {
            let got = compute(case);
            if updating() {
                case["expected"] = got;
            } else if case["expected"] != got {
                mismatches.push(format!(
                    "{list}: {case}\n  computed: {got}",
                    case = serde_json::to_string(case).unwrap()
                ));
            }
        }
    }
    if updating() {
        let text = serde_json::to_string_pretty(&document).unwrap() + "\n";
        fs::write(golden_dir().join(name), text).unwrap();
    }
    assert!(
        mismatches.is_empty(),
        "{name} disagrees with this implementation (PROCTOR_UPDATE_GOLDEN=1 rewrites it):\n{}",
        mismatches.join("\n")
    );
}

fn code_of(code: ErrorCode) -> Value {
    json!({ "code": code.as_str() })
}

/// Every code of `error_codes.json` is a canonical code with that fragment and exit code
/// (when updating, the file lists them all).
#[test]
fn error_codes_are_the_canon() {
    let path = golden_dir().join("error_codes.json");
    if updating() {
        let codes: Vec<Value> = ErrorCode::ALL
            .iter()
            .map(|code| {
                json!({"code": code.as_str(), "fragment": code.fragment(), "exit_code": code.exit_code()})
            })
            .collect();
        let document = json!({
            "about": "Canonical error codes: wire name, stable message fragment, exit code.",
            "codes": codes,
        });
        fs::write(
            &path,
            serde_json::to_string_pretty(&document).unwrap() + "\n",
        )
        .unwrap();
    }
    for row in read("error_codes.json")["codes"].as_array().unwrap() {
        let code = ErrorCode::from_wire(row["code"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{row} is no canonical code"));
        assert_eq!(row["fragment"], code.fragment(), "{row}");
        assert_eq!(row["exit_code"], code.exit_code(), "{row}");
    }
}

#[test]
fn inputs_hashes() {
    check_cases("inputs_hash.json", &["cases"], |case| {
        let inputs: Value = serde_json::from_str(case["inputs_json"].as_str().unwrap()).unwrap();
        json!({
            "jcs": canonical_json(&inputs),
            "inputs_hash": inputs_hash(&inputs).value,
        })
    });
}

#[test]
fn json_outputs() {
    check_cases("json_output.json", &["cases"], |case| {
        let value: Value = serde_json::from_str(case["value_json"].as_str().unwrap()).unwrap();
        let output = ProviderOutput::json("value.json", &value).unwrap();
        json!({ "bytes": String::from_utf8(output.bytes).unwrap() })
    });
}

#[test]
fn world_paths_and_write_prefixes() {
    check_cases(
        "world_paths.json",
        &["paths", "write_prefixes", "output_paths"],
        |case| {
            let raw = case["raw"].as_str();
            let parsed = if let Some(id) = case["execution_id"].as_str() {
                WritePrefix::receive(raw.unwrap(), id).map(|prefix| prefix.as_str().to_owned())
            } else if let Some(relative) = case["relative"].as_str() {
                let prefix = WritePrefix::from_expanded(case["prefix"].as_str().unwrap()).unwrap();
                prefix.output_path(relative).map(|path| path.to_string())
            } else {
                WorldPath::parse(raw.unwrap()).map(|path| path.to_string())
            };
            match parsed {
                Ok(canonical) => json!({ "canonical": canonical }),
                Err(error) => code_of(error.code()),
            }
        },
    );
}

#[test]
fn redactions() {
    check_cases("redaction.json", &["cases"], |case| {
        let secrets = case["secrets"].as_array().unwrap();
        let redactor = Redactor::new(secrets.iter().map(|s| s.as_str().unwrap().to_owned()));
        let text = case["text"].as_str().unwrap();
        match case["max_bytes"].as_u64() {
            Some(max) => json!({ "text": redactor.truncate_redacted(text, max as usize) }),
            None => json!({ "text": redactor.redact(text) }),
        }
    });
}

/// The provider result a run case describes: outputs as `text`, `hex` bytes or a `json`
/// value's text (written with [`ProviderOutput::json`]).
fn result_of(spec: &Value) -> ProviderResult {
    let outputs = spec["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|output| {
            let path = output["path"].as_str().unwrap();
            let mime = output["mime"].as_str().unwrap_or_default();
            if let Some(text) = output["json"].as_str() {
                let value: Value = serde_json::from_str(text).unwrap();
                ProviderOutput::json(path, &value).unwrap()
            } else if let Some(hex) = output["hex"].as_str() {
                ProviderOutput::new(path, hex::decode(hex).unwrap(), mime)
            } else {
                let text = output["text"].as_str().unwrap();
                ProviderOutput::new(path, text.as_bytes().to_vec(), mime)
            }
        })
        .collect();
    let usage: Usage = serde_json::from_value(spec["usage"].clone()).unwrap();
    ProviderResult {
        outputs,
        processor_info: spec["processor_info"].as_str().unwrap().to_owned(),
        usage,
    }
}

/// The files a run case stores before it runs (input artifacts): world path and text.
pub(crate) fn stored_files(case: &Value) -> Vec<(String, String)> {
    case["stored"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|stored| {
            let text = |key: &str| stored[key].as_str().unwrap().to_owned();
            (text("path"), text("text"))
        })
        .collect()
}

fn names(case: &Value, key: &str) -> Vec<String> {
    case[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect()
}

/// One run case of `runs.json` through this SDK: its payload text posted to `/run` of a
/// processor that answers every run with the case's provider result. Returns the server
/// (to read what the run wrote), the status and the envelope.
pub(crate) async fn run_case(case: &Value) -> (TestServer, u16, Envelope) {
    let result = result_of(&case["result"]);
    let reads = names(&case["result"], "reads");
    let provider = move |context: &Context, inputs: Value| {
        for name in &reads {
            let artifact: ArtifactRef = serde_json::from_value(inputs[name].clone()).unwrap();
            context.read_artifact(&artifact)?;
        }
        Ok(result.clone())
    };
    let definition = ProcessorDefinition::new(
        case["processor_ref"].as_str().unwrap().parse().unwrap(),
        provider,
    )
    .with_required_secrets(names(case, "required_secrets"))
    .with_passthrough_env(names(case, "passthrough_env"));
    let environment: Vec<(String, String)> = case["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
        .collect();
    let env: Vec<(&str, &str)> = environment
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let server = TestServer::start(definition, &env).await;
    for stored in stored_files(case) {
        let file = server.fs_path(&WorldPath::parse(&stored.0).unwrap());
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, stored.1).unwrap();
    }
    let response = server
        .client()
        .post(server.url("/run"))
        .header("content-type", "application/json")
        .body(case["payload"].as_str().unwrap().to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let envelope = Envelope::from_slice(&response.bytes().await.unwrap()).unwrap();
    (server, status, envelope)
}

/// What a run case's `expected` says: for success the inputs hash, env fingerprint, index
/// bytes, receipt stable part and content ids; for an error its code; the status always.
async fn expected_of_run(case: &Value) -> Value {
    let (server, status, envelope) = run_case(case).await;
    let success = match envelope {
        Envelope::Error(error) => {
            let written: Vec<String> = server
                .listing()
                .into_iter()
                .filter(|name| !name.starts_with("inputs"))
                .collect();
            assert!(written.is_empty(), "{written:?}");
            return json!({"status": status, "code": error.error.code.as_str()});
        }
        Envelope::Success(success) => success,
    };
    let index = String::from_utf8(server.read(&success.index_path)).unwrap();
    let receipt = server.receipt(&success);
    let cids: Map<String, Value> = success
        .outputs
        .iter()
        .map(|output| {
            assert_eq!(
                proctor_contract::cid(&server.read(&output.path)),
                output.cid
            );
            (output.path.to_string(), Value::String(output.cid.clone()))
        })
        .collect();
    assert_eq!(receipt.env_fingerprint, success.meta.env_fingerprint);
    assert_eq!(receipt.mode, success.meta.mode);
    json!({
        "status": status,
        "inputs_hash": receipt.inputs_hash,
        "env_fingerprint": success.meta.env_fingerprint,
        "index": index,
        "receipt_stable_part": receipt.stable_part(),
        "cids": cids,
    })
}

#[tokio::test]
async fn runs() {
    let document = read("runs.json");
    let mut computed = VecDeque::new();
    for case in document["cases"].as_array().unwrap() {
        computed.push_back(expected_of_run(case).await);
    }
    check_cases("runs.json", &["cases"], |_| computed.pop_front().unwrap());
}
