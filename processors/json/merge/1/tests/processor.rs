//! json/merge@1 served in-process (`proctor_sdk::testing`), checked against its own
//! `registry.yaml`. Needs nothing outside the process.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use proctor_contract::{Mode, inputs_hash};
use proctor_sdk::testing::{RegistryEntry, TestServer};
use serde_json::{Value, json};

fn registry() -> RegistryEntry {
    RegistryEntry::read(env!("CARGO_MANIFEST_DIR"))
}

async fn start() -> TestServer {
    TestServer::start(processor_json_merge::definition(), &[]).await
}

#[test]
fn registry_yaml_agrees_with_the_definition_and_examples_validate() {
    let registry = registry();
    let schema =
        registry.assert_agrees_with(&processor_json_merge::definition(), env!("CARGO_PKG_NAME"));
    assert_eq!(
        registry.yaml()["outputs"],
        json!([{"path": processor_json_merge::MERGED_OUTPUT, "mime": "application/json"}])
    );
    assert!(!schema.is_valid(&json!({"schema": "v1"})));
    assert!(!schema.is_valid(&json!({"schema": "v1", "documents": [{}]})));
    assert!(!schema.is_valid(&json!({"schema": "v1", "documents": [], "extra": 1})));
}

#[tokio::test]
async fn smoke_example_merges_in_order_alike_in_both_modes_and_twice() {
    let server = start().await;
    let mock = server
        .run_ok("smoke-mock", Mode::Mock, registry().example("smoke"))
        .await;
    let real = server
        .run_ok("smoke-real", Mode::Real, registry().example("smoke"))
        .await;
    let again = server
        .run_ok("smoke-again", Mode::Mock, registry().example("smoke"))
        .await;
    let merged: Value = serde_json::from_slice(&server.output(&mock, "merged.json")).unwrap();
    assert_eq!(merged, json!({"documents": [{"words": 3}, {"words": 5}]}));
    let cids = |envelope: &proctor_contract::SuccessEnvelope| -> Vec<String> {
        envelope.outputs.iter().map(|o| o.cid.clone()).collect()
    };
    assert_eq!(cids(&mock), cids(&real));
    assert_eq!(cids(&mock), cids(&again));
    assert_eq!(
        server.receipt(&mock).stable_part(),
        server.receipt(&again).stable_part()
    );
    let receipt = server.receipt(&mock);
    assert_eq!(
        receipt.inputs_hash,
        inputs_hash(&registry().example("smoke")).value
    );
    assert_eq!(receipt.usage["documents"], 2);
}

#[tokio::test]
async fn unusable_inputs_are_err_inputs_and_write_nothing() {
    let server = start().await;
    for inputs in [
        json!({"schema": "v1"}),
        json!({"schema": "v2", "documents": []}),
        json!({"schema": "v1", "documents": [{"words": 3}]}),
        json!({"schema": "v1", "documents": ["{}", "not json"]}),
    ] {
        let (status, code, _) = server.run_err("bad", Mode::Mock, inputs).await;
        assert_eq!((status, code.as_str()), (400, "ERR_INPUTS"));
    }
    assert!(server.listing().is_empty());
}
