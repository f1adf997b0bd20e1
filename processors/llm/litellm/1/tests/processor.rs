//! llm/litellm@1 served in-process (`proctor_sdk::testing`), checked against its own
//! `registry.yaml`; `real` mode talks to a fake OpenAI-compatible server on 127.0.0.1 that
//! each test starts and stops. Needs nothing outside the process.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use proctor_contract::{ErrorCode, Mode, SuccessEnvelope};
use proctor_sdk::testing::{FakeChatEndpoint, RegistryEntry, TestServer};
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789abcdefghijklmn";

fn registry() -> RegistryEntry {
    RegistryEntry::read(env!("CARGO_MANIFEST_DIR"))
}

fn completion_answer() -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "fake-model-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Receipts prove what ran."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    })
}

/// A processor whose environment holds the key and points at the fake endpoint.
async fn start_with_endpoint(endpoint: &FakeChatEndpoint) -> TestServer {
    start_with_base_url(&endpoint.base_url()).await
}

/// A processor whose environment holds the key and `base_url`.
async fn start_with_base_url(base_url: &str) -> TestServer {
    let env = [("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", base_url)];
    TestServer::start(processor_llm_litellm::definition(), &env).await
}

fn text(server: &TestServer, envelope: &SuccessEnvelope, relative: &str) -> String {
    String::from_utf8(server.output(envelope, relative)).unwrap()
}

#[test]
fn registry_yaml_agrees_with_the_definition_and_examples_validate() {
    let registry = registry();
    let schema =
        registry.assert_agrees_with(&processor_llm_litellm::definition(), env!("CARGO_PKG_NAME"));
    assert_eq!(
        registry.example("smoke"),
        json!({"schema": "v1", "params": {}})
    );
    assert!(!schema.is_valid(&json!({"schema": "v1"})));
    assert!(!schema.is_valid(&json!({"schema": "v1", "params": {"messages": []}})));
    assert!(!schema.is_valid(&json!({"schema": "v1", "params": {"top_k": 1}})));
}

#[tokio::test]
async fn smoke_example_in_mock_writes_the_declared_outputs_without_network() {
    let endpoint = FakeChatEndpoint::start(200, completion_answer()).await;
    let server = start_with_endpoint(&endpoint).await;
    let envelope = server
        .run_ok("smoke", Mode::Mock, registry().example("smoke"))
        .await;

    assert_eq!(
        server.written_outputs(&envelope),
        registry().declared_outputs()
    );

    let reply = text(&server, &envelope, "text/response.txt");
    assert!(
        reply.starts_with(
            "Mock reply from mock-gpt to 1 message(s). You said: \"Hello from proctor\"."
        ),
        "{reply}"
    );
    let metadata: Value =
        serde_json::from_slice(&server.output(&envelope, "metadata.json")).unwrap();
    assert_eq!(metadata["model"], "mock-gpt");
    assert_eq!(metadata["finish_reason"], "stop");
    assert_eq!(metadata["prompt_tokens"], 3);
    let receipt = server.receipt(&envelope);
    assert_eq!(receipt.usage["prompt_tokens"], 3);
    assert_eq!(
        receipt.usage["total_tokens"],
        receipt.usage["prompt_tokens"] + receipt.usage["completion_tokens"]
    );
    assert_eq!(receipt.processor_info, "llm/litellm@1 mock model=mock-gpt");
    assert!(envelope.meta.env_fingerprint.ends_with(";secrets="));
    assert!(
        endpoint.requests().is_empty(),
        "mock mode called the endpoint"
    );
}

#[tokio::test]
async fn mock_replies_are_byte_stable_and_follow_the_messages() {
    let server = TestServer::start(processor_llm_litellm::definition(), &[]).await;
    let first = server
        .run_ok("chat-1", Mode::Mock, registry().example("chat"))
        .await;
    let second = server
        .run_ok("chat-2", Mode::Mock, registry().example("chat"))
        .await;
    for (a, b) in first.outputs.iter().zip(&second.outputs) {
        assert_eq!(
            (&a.cid, server.read(&a.path)),
            (&b.cid, server.read(&b.path))
        );
    }
    assert_eq!(
        server.receipt(&first).stable_part(),
        server.receipt(&second).stable_part()
    );
    let reply = text(&server, &first, "text/response.txt");
    assert!(
        reply.contains("gpt-4o-mini to 2 message(s)")
            && reply.contains("What does a receipt prove?"),
        "{reply}"
    );

    let mut other = registry().example("chat");
    other["params"]["messages"][1]["content"] = json!("Something else entirely?");
    let third = server.run_ok("chat-3", Mode::Mock, other).await;
    assert_ne!(text(&server, &third, "text/response.txt"), reply);
}

#[tokio::test]
async fn real_mode_calls_the_endpoint_with_the_key_and_returns_text_and_usage() {
    let endpoint = FakeChatEndpoint::start(200, completion_answer()).await;
    let server = start_with_endpoint(&endpoint).await;
    let envelope = server
        .run_ok("real-1", Mode::Real, registry().example("chat"))
        .await;

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1);
    let (authorization, body) = &requests[0];
    assert_eq!(
        authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(
        body["messages"],
        registry().example("chat")["params"]["messages"]
    );
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["max_tokens"], 64);

    assert_eq!(
        text(&server, &envelope, "text/response.txt"),
        "Receipts prove what ran."
    );
    let metadata: Value =
        serde_json::from_slice(&server.output(&envelope, "metadata.json")).unwrap();
    assert_eq!(
        metadata,
        json!({"model": "fake-model-1", "finish_reason": "stop", "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    );
    let receipt = server.receipt(&envelope);
    assert_eq!(receipt.usage["prompt_tokens"], 7);
    assert_eq!(receipt.usage["completion_tokens"], 3);
    assert_eq!(receipt.usage["total_tokens"], 10);
    assert_eq!(
        receipt.processor_info,
        "llm/litellm@1 real model=fake-model-1"
    );
    assert!(
        envelope
            .meta
            .env_fingerprint
            .ends_with(";secrets=OPENAI_API_KEY")
    );
    for file in server.listing() {
        let path = server.artifacts_root().join(&file);
        if path.is_file() {
            assert!(
                !std::fs::read_to_string(&path).unwrap().contains(KEY),
                "{file} holds the key"
            );
        }
    }
}

#[tokio::test]
async fn real_mode_needs_model_and_messages() {
    let endpoint = FakeChatEndpoint::start(200, completion_answer()).await;
    let server = start_with_endpoint(&endpoint).await;
    let (status, code, message) = server
        .run_err("real-2", Mode::Real, registry().example("smoke"))
        .await;
    assert_eq!((status, code), (400, ErrorCode::Inputs));
    assert!(message.contains("params.model"), "{message}");
    assert!(endpoint.requests().is_empty());
    assert!(server.listing().is_empty());
}

#[tokio::test]
async fn endpoint_errors_are_err_provider_and_never_quote_the_key() {
    let answer = json!({"error": {"message": format!("Incorrect API key provided: {KEY}")}});
    let endpoint = FakeChatEndpoint::start(401, answer).await;
    let server = start_with_endpoint(&endpoint).await;
    let (status, code, message) = server
        .run_err("real-3", Mode::Real, registry().example("chat"))
        .await;
    assert_eq!((status, code), (502, ErrorCode::Provider));
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("Incorrect API key provided"), "{message}");
    assert!(!message.contains(KEY), "{message}");
    assert!(server.listing().is_empty());
}

#[tokio::test]
async fn real_mode_without_the_key_is_err_missing_secret() {
    let server = TestServer::start(processor_llm_litellm::definition(), &[]).await;
    let (status, code, message) = server
        .run_err("real-4", Mode::Real, registry().example("chat"))
        .await;
    assert_eq!((status, code), (400, ErrorCode::MissingSecret));
    assert!(message.contains("OPENAI_API_KEY"), "{message}");
}

/// Credentials a base URL may carry; they must never be sent nor quoted.
const PROXY_USER: &str = "proxy-user";
const PROXY_PASSWORD: &str = "proxy-pass-4711";

#[tokio::test]
async fn userinfo_in_the_base_url_is_dropped_and_only_the_key_is_sent() {
    let endpoint = FakeChatEndpoint::start(200, completion_answer()).await;
    let server = start_with_base_url(&format!(
        "http://{PROXY_USER}:{PROXY_PASSWORD}@{}/v1",
        endpoint.addr()
    ))
    .await;
    server
        .run_ok("userinfo-1", Mode::Real, registry().example("chat"))
        .await;
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].0.as_deref(),
        Some(format!("Bearer {KEY}").as_str()),
        "the key, not Basic credentials from the URL"
    );
}

#[tokio::test]
async fn errors_never_quote_the_base_urls_userinfo() {
    let answer = json!({"error": {"message": "proxy refused"}});
    let endpoint = FakeChatEndpoint::start(502, answer).await;
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    for (addr, said) in [(endpoint.addr(), "proxy refused"), (closed, "cannot reach")] {
        let server =
            start_with_base_url(&format!("http://{PROXY_USER}:{PROXY_PASSWORD}@{addr}/v1")).await;
        let (status, code, message) = server
            .run_err("userinfo-2", Mode::Real, registry().example("chat"))
            .await;
        assert_eq!((status, code), (502, ErrorCode::Provider), "{message}");
        assert!(message.contains(said), "{message}");
        assert!(
            !message.contains(PROXY_USER) && !message.contains(PROXY_PASSWORD),
            "{message}"
        );
    }
    let server = start_with_base_url(&format!(
        "ftp://{PROXY_USER}:{PROXY_PASSWORD}@{}/",
        endpoint.addr()
    ))
    .await;
    let (_, code, message) = server
        .run_err("userinfo-3", Mode::Real, registry().example("chat"))
        .await;
    assert_eq!(code, ErrorCode::Provider);
    assert!(
        message.contains("must be an http or https URL"),
        "{message}"
    );
    assert!(!message.contains(PROXY_PASSWORD), "{message}");
}

#[tokio::test]
async fn error_bodies_are_redacted_before_they_are_cut() {
    // The key starts 10 bytes before the 500-byte quote ends: cut first, "sk-test-01" would
    // stay, too short for any pattern and no longer the key.
    let prefix = r#"{"error":{"message":""#;
    let padding = "x".repeat(490 - prefix.len());
    let answer = json!({"error": {"message": format!("{padding}{KEY}")}});
    assert_eq!(answer.to_string().find(KEY), Some(490));
    let endpoint = FakeChatEndpoint::start(401, answer).await;
    let server = start_with_endpoint(&endpoint).await;
    let (_, code, message) = server
        .run_err("cut-1", Mode::Real, registry().example("chat"))
        .await;
    assert_eq!(code, ErrorCode::Provider);
    assert!(message.ends_with(&format!("{padding}…")), "{message}");
    assert!(!message.contains(&KEY[..6]), "{message}");
}
