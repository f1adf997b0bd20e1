//! plan/map@1 served in-process (`proctor_sdk::testing`), checked against its own
//! `registry.yaml`. Needs nothing outside the process.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use proctor_contract::{Mode, SuccessEnvelope};
use proctor_sdk::testing::{RegistryEntry, TestServer, assert_valid_proposal};
use serde_json::{Value, json};

fn registry() -> RegistryEntry {
    RegistryEntry::read(env!("CARGO_MANIFEST_DIR"))
}

async fn start() -> TestServer {
    TestServer::start(processor_plan_map::definition(), &[]).await
}

fn proposal(server: &TestServer, envelope: &SuccessEnvelope) -> Value {
    serde_json::from_slice(&server.output(envelope, processor_plan_map::PROPOSAL_OUTPUT)).unwrap()
}

#[test]
fn registry_yaml_agrees_with_the_definition_and_examples_validate() {
    let registry = registry();
    let schema =
        registry.assert_agrees_with(&processor_plan_map::definition(), env!("CARGO_PKG_NAME"));
    assert_eq!(registry.yaml()["planner"], true);
    assert_eq!(
        registry.yaml()["outputs"],
        json!([{"path": processor_plan_map::PROPOSAL_OUTPUT, "mime": "application/json"}])
    );
    for valid in [
        json!({"schema": "v1", "text": "x", "ref": "text/stats@1", "mode": "real"}),
        json!({"schema": "v1", "text": "x", "chunk_chars": 100000, "output": "a/b.json"}),
    ] {
        assert!(schema.is_valid(&valid), "{valid}");
    }
    for invalid in [
        json!({"schema": "v1"}),
        json!({"schema": "v1", "text": ""}),
        json!({"schema": "v1", "text": "x", "chunk_chars": 0}),
        json!({"schema": "v1", "text": "x", "chunk_chars": 100001}),
        json!({"schema": "v1", "text": "x", "ref": "text/stats"}),
        json!({"schema": "v1", "text": "x", "ref": "Text/stats@1"}),
        json!({"schema": "v1", "text": "x", "mode": "live"}),
        json!({"schema": "v1", "text": "x", "extra": 1}),
    ] {
        assert!(!schema.is_valid(&invalid), "{invalid}");
    }
}

#[tokio::test]
async fn smoke_example_proposes_chunks_and_a_merge_alike_in_both_modes() {
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
    let written: Vec<&str> = mock.outputs.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(
        written,
        ["/artifacts/outputs/test/smoke-mock/outputs/plan/transitions.json"]
    );
    let proposal = proposal(&server, &mock);
    assert_valid_proposal(&proposal);
    let transitions = proposal["transitions"].as_array().unwrap();
    let ids: Vec<&str> = transitions
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chunk-0000", "chunk-0001", "chunk-0002", "merge"]);
    let text: String = transitions[..3]
        .iter()
        .map(|t| t["inputs"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, registry().example("smoke")["text"].as_str().unwrap());
    assert_eq!(
        transitions[3]["after"],
        json!(["chunk-0000", "chunk-0001", "chunk-0002"])
    );
    assert_eq!(
        transitions[3]["inputs"]["documents"][2],
        json!({"$from": "chunk-0002:outputs/stats.json"})
    );
    let cids = |envelope: &SuccessEnvelope| -> Vec<String> {
        envelope.outputs.iter().map(|o| o.cid.clone()).collect()
    };
    assert_eq!(cids(&mock), cids(&real));
    assert_eq!(cids(&mock), cids(&again));
    assert_eq!(
        server.receipt(&mock).stable_part(),
        server.receipt(&again).stable_part()
    );
    assert_eq!(server.receipt(&mock).usage["chunks"], 3);
}

#[tokio::test]
async fn the_chunk_ref_output_and_mode_are_the_callers() {
    let server = start().await;
    let inputs = json!({
        "schema": "v1", "text": "alpha beta", "chunk_chars": 6,
        "ref": "llm/summary@2", "output": "text/summary.json", "mode": "real",
    });
    let envelope = server.run_ok("custom", Mode::Mock, inputs).await;
    let proposal = proposal(&server, &envelope);
    assert_valid_proposal(&proposal);
    let transitions = proposal["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 3);
    assert_eq!(
        transitions[0],
        json!({"id": "chunk-0000", "ref": "llm/summary@2", "mode": "real",
               "inputs": {"schema": "v1", "text": "alpha "}})
    );
    assert_eq!(transitions[2]["mode"], "real");
    assert_eq!(
        transitions[2]["inputs"]["documents"],
        json!([{"$from": "chunk-0000:outputs/text/summary.json"},
               {"$from": "chunk-0001:outputs/text/summary.json"}])
    );
}

#[tokio::test]
async fn unusable_inputs_and_too_many_chunks_are_err_inputs() {
    let server = start().await;
    let at_the_limit = "x".repeat(processor_plan_map::MAX_CHUNKS);
    let envelope = server
        .run_ok(
            "limit",
            Mode::Mock,
            json!({"schema": "v1", "text": at_the_limit, "chunk_chars": 1}),
        )
        .await;
    let proposal = proposal(&server, &envelope);
    assert_valid_proposal(&proposal);
    let transitions = proposal["transitions"].as_array().unwrap().len();
    assert_eq!(transitions, processor_plan_map::MAX_CHUNKS + 1);

    let server = start().await;
    let over_the_limit = "x".repeat(processor_plan_map::MAX_CHUNKS + 1);
    let (status, code, message) = server
        .run_err(
            "over",
            Mode::Mock,
            json!({"schema": "v1", "text": over_the_limit, "chunk_chars": 1}),
        )
        .await;
    assert_eq!((status, code.as_str()), (400, "ERR_INPUTS"));
    assert!(message.contains("1001 chunks"), "{message}");
    for inputs in [
        json!({"schema": "v1"}),
        json!({"schema": "v2", "text": "x"}),
        json!({"schema": "v1", "text": "x", "chunk_chars": 0}),
        json!({"schema": "v1", "text": "x", "ref": "stats"}),
        json!({"schema": "v1", "text": "x", "output": "/abs.json"}),
        json!({"schema": "v1", "text": "x", "mode": "live"}),
    ] {
        let (status, code, _) = server.run_err("bad", Mode::Mock, inputs).await;
        assert_eq!((status, code.as_str()), (400, "ERR_INPUTS"));
    }
    assert!(server.listing().is_empty());
}
