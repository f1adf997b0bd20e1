//! llm/planner@1 served in-process (`proctor_sdk::testing`), checked against its own
//! `registry.yaml`; `real` mode talks to a fake OpenAI-compatible server on 127.0.0.1 that
//! each test starts and stops. Needs nothing outside the process.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use proctor_contract::{Mode, SuccessEnvelope};
use proctor_sdk::testing::{FakeChatEndpoint, RegistryEntry, TestServer, assert_valid_proposal};
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789abcdefghijklmn";

fn registry() -> RegistryEntry {
    RegistryEntry::read(env!("CARGO_MANIFEST_DIR"))
}

/// A chat completion whose message is `content`.
fn answer_with(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "fake-model-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160},
    })
}

/// A processor whose environment holds the key and points at the fake endpoint.
async fn start_with_endpoint(endpoint: &FakeChatEndpoint) -> TestServer {
    let base_url = endpoint.base_url();
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", base_url.as_str()),
    ];
    TestServer::start(processor_llm_planner::definition(), &env).await
}

fn proposal(server: &TestServer, envelope: &SuccessEnvelope) -> Value {
    serde_json::from_slice(&server.output(envelope, processor_llm_planner::PROPOSAL_OUTPUT))
        .unwrap()
}

#[test]
fn registry_yaml_agrees_with_the_definition_and_examples_validate() {
    let registry = registry();
    let schema =
        registry.assert_agrees_with(&processor_llm_planner::definition(), env!("CARGO_PKG_NAME"));
    assert_eq!(registry.yaml()["planner"], true);
    assert_eq!(
        registry.yaml()["outputs"],
        json!([{"path": processor_llm_planner::PROPOSAL_OUTPUT, "mime": "application/json"}])
    );
    let offer = json!([{"ref": "text/stats@1", "description": "counts"}]);
    for invalid in [
        json!({"schema": "v1", "goal": "g"}),
        json!({"schema": "v1", "goal": "", "processors": offer}),
        json!({"schema": "v1", "goal": "g", "processors": []}),
        json!({"schema": "v1", "goal": "g", "processors": [{"ref": "stats", "description": ""}]}),
        json!({"schema": "v1", "goal": "g", "processors": offer, "max_transitions": 0}),
        json!({"schema": "v1", "goal": "g", "processors": offer, "mode": "live"}),
        json!({"schema": "v1", "goal": "g", "processors": offer, "params": {}}),
    ] {
        assert!(!schema.is_valid(&invalid), "{invalid}");
    }
}

#[tokio::test]
async fn mock_mode_proposes_a_canned_byte_stable_plan_without_network() {
    let endpoint = FakeChatEndpoint::start(200, answer_with("{}")).await;
    let server = start_with_endpoint(&endpoint).await;
    let first = server
        .run_ok("smoke-1", Mode::Mock, registry().example("smoke"))
        .await;
    let second = server
        .run_ok("smoke-2", Mode::Mock, registry().example("smoke"))
        .await;
    assert_valid_proposal(&proposal(&server, &first));
    assert_eq!(
        proposal(&server, &first),
        json!({"transitions": [{
            "id": "goal-stats", "ref": "text/stats@1", "mode": "mock",
            "inputs": {"schema": "v1", "text": "Count the words of this sentence."},
        }]})
    );
    assert_eq!(
        server.output(&first, "plan/transitions.json"),
        server.output(&second, "plan/transitions.json")
    );
    assert_eq!(first.outputs[0].cid, second.outputs[0].cid);
    assert_eq!(
        server.receipt(&first).stable_part(),
        server.receipt(&second).stable_part()
    );
    let mut real_mode = registry().example("smoke");
    real_mode["mode"] = json!("real");
    let real_mode = server
        .run_ok("smoke-real-mode", Mode::Mock, real_mode)
        .await;
    assert_eq!(
        proposal(&server, &real_mode)["transitions"][0]["mode"],
        "real"
    );
    assert!(endpoint.requests().is_empty(), "mock mode called out");

    let mut unoffered = registry().example("smoke");
    unoffered["processors"] = json!([{"ref": "json/merge@1", "description": "merges"}]);
    let (status, code, message) = server.run_err("unoffered", Mode::Mock, unoffered).await;
    assert_eq!((status, code.as_str()), (400, "ERR_INPUTS"));
    assert!(message.contains("text/stats@1"), "{message}");
}

#[tokio::test]
async fn real_mode_asks_the_endpoint_and_writes_the_checked_proposal() {
    let content = "```json\n{\"transitions\": [\
        {\"id\": \"stats\", \"ref\": \"text/stats@1\", \"inputs\": {\"schema\": \"v1\", \"text\": \"The quick brown fox.\"}},\
        {\"id\": \"merge\", \"ref\": \"json/merge@1\", \"mode\": \"real\", \"inputs\": {\"schema\": \"v1\", \"documents\": [{\"$from\": \"stats:outputs/stats.json\"}]}}]}\n```";
    let endpoint = FakeChatEndpoint::start(200, answer_with(content)).await;
    let server = start_with_endpoint(&endpoint).await;
    let envelope = server
        .run_ok("plan", Mode::Real, registry().example("plan"))
        .await;
    let proposal = proposal(&server, &envelope);
    assert_valid_proposal(&proposal);
    let transitions = proposal["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 2);
    assert_eq!(transitions[0]["mode"], "mock");
    assert_eq!(transitions[1]["mode"], "mock", "the inputs' mode wins");
    assert_eq!(
        transitions[1]["inputs"]["documents"],
        json!([{"$from": "stats:outputs/stats.json"}])
    );
    let receipt = server.receipt(&envelope);
    assert_eq!(receipt.usage["transitions"], 2);
    assert_eq!(receipt.usage["total_tokens"], 160);

    let seen = endpoint.requests();
    assert_eq!(seen.len(), 1);
    let (authorization, body) = &seen[0];
    assert_eq!(
        authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("{\"transitions\": [TRANSITION, ...]}")
    );
    let request: Value =
        serde_json::from_str(body["messages"][1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(request["goal"], registry().example("plan")["goal"]);
    assert_eq!(
        request["processors"],
        registry().example("plan")["processors"]
    );
    assert_eq!(request["max_transitions"], 4);
}

#[tokio::test]
async fn real_mode_refuses_an_answer_that_is_not_an_offered_proposal() {
    for (content, why) in [
        (
            "Here is my plan: count words.",
            "the model's answer is not JSON",
        ),
        (
            "{\"transitions\": [{\"id\": \"x\", \"ref\": \"llm/litellm@1\"}]}",
            "transitions[0] uses `llm/litellm@1`, which was not offered",
        ),
        (
            "{\"transitions\": [{\"ref\": \"text/stats@1\"}, {\"ref\": \"text/stats@1\"}, \
             {\"ref\": \"text/stats@1\"}, {\"ref\": \"text/stats@1\"}, {\"ref\": \"text/stats@1\"}]}",
            "the model proposed 5 transitions; from 1 to 4 are allowed",
        ),
    ] {
        let endpoint = FakeChatEndpoint::start(200, answer_with(content)).await;
        let server = start_with_endpoint(&endpoint).await;
        let (status, code, message) = server
            .run_err("bad", Mode::Real, registry().example("plan"))
            .await;
        assert_eq!((status, code.as_str()), (502, "ERR_PROVIDER"), "{message}");
        assert!(message.contains(why), "{message} should say {why}");
        assert!(server.listing().is_empty());
    }
}

#[tokio::test]
async fn real_mode_needs_a_model_and_redacts_the_endpoints_errors() {
    let echo = json!({"error": format!("bad key {KEY}")});
    let endpoint = FakeChatEndpoint::start(401, echo).await;
    let server = start_with_endpoint(&endpoint).await;
    let mut no_model = registry().example("plan");
    no_model.as_object_mut().unwrap().remove("model");
    let (status, code, message) = server.run_err("no-model", Mode::Real, no_model).await;
    assert_eq!((status, code.as_str()), (400, "ERR_INPUTS"));
    assert!(message.contains("real mode needs model"), "{message}");
    assert!(endpoint.requests().is_empty());

    let (status, code, message) = server
        .run_err("denied", Mode::Real, registry().example("plan"))
        .await;
    assert_eq!((status, code.as_str()), (502, "ERR_PROVIDER"));
    assert!(message.contains("401"), "{message}");
    assert!(!message.contains(KEY), "{message}");
    assert!(server.listing().is_empty());
}
