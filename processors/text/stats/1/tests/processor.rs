//! text/stats@1 served in-process (`proctor_sdk::testing`), checked against its own
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
    TestServer::start(processor_text_stats::definition(), &[]).await
}

#[test]
fn registry_yaml_agrees_with_the_definition_and_examples_validate() {
    let registry = registry();
    let schema =
        registry.assert_agrees_with(&processor_text_stats::definition(), env!("CARGO_PKG_NAME"));
    assert!(!schema.is_valid(&json!({"schema": "v1"})));
    assert!(!schema.is_valid(&json!({"schema": "v1", "text": "x", "extra": 1})));
}

#[tokio::test]
async fn smoke_example_writes_the_declared_outputs_in_both_modes_alike() {
    let server = start().await;
    let mock = server
        .run_ok("smoke-mock", Mode::Mock, registry().example("smoke"))
        .await;
    let real = server
        .run_ok("smoke-real", Mode::Real, registry().example("smoke"))
        .await;
    assert_eq!(server.written_outputs(&mock), registry().declared_outputs());
    let cids = |envelope: &proctor_contract::SuccessEnvelope| -> Vec<String> {
        envelope.outputs.iter().map(|o| o.cid.clone()).collect()
    };
    assert_eq!(cids(&mock), cids(&real));
    assert_eq!(
        server.receipt(&mock).inputs_hash,
        inputs_hash(&registry().example("smoke")).value
    );
}

#[tokio::test]
async fn outputs_hold_counts_normalized_text_and_a_frequency_table() {
    let server = start().await;
    let envelope = server
        .run_ok("counts", Mode::Mock, registry().example("smoke"))
        .await;
    let stats: Value = serde_json::from_slice(&server.output(&envelope, "stats.json")).unwrap();
    assert_eq!(stats["lines"], 2);
    assert_eq!(stats["words"], 12);
    assert_eq!(stats["unique_words"], 9);
    assert_eq!(stats["chars"], 60);
    assert_eq!(stats["top_words"][0], json!({"word": "the", "count": 3}));
    assert_eq!(stats["top_words"][1], json!({"word": "dog", "count": 2}));
    assert_eq!(
        String::from_utf8(server.output(&envelope, "normalized.txt")).unwrap(),
        "the quick brown fox jumps over the lazy dog. the dog sleeps.\n"
    );
    let csv = String::from_utf8(server.output(&envelope, "words.csv")).unwrap();
    assert!(
        csv.starts_with("word,count\nthe,3\ndog,2\nbrown,1\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 10);
    assert_eq!(server.receipt(&envelope).usage["input_bytes"], 60);

    let top = server
        .run_ok("top", Mode::Mock, registry().example("top_three"))
        .await;
    let stats: Value = serde_json::from_slice(&server.output(&top, "stats.json")).unwrap();
    let words: Vec<&str> = stats["top_words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["word"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["d", "c", "b"]);
}

#[tokio::test]
async fn same_inputs_give_the_same_bytes_and_stable_receipt() {
    let server = start().await;
    let first = server
        .run_ok("twice-1", Mode::Mock, registry().example("smoke"))
        .await;
    let second = server
        .run_ok("twice-2", Mode::Mock, registry().example("smoke"))
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
}

#[tokio::test]
async fn unusable_inputs_are_err_inputs() {
    let server = start().await;
    for inputs in [
        json!({"schema": "v1"}),
        json!({"schema": "v2", "text": "x"}),
        json!({"schema": "v1", "text": 3}),
    ] {
        let (status, code, _) = server.run_err("bad", Mode::Mock, inputs).await;
        assert_eq!((status, code.as_str()), (400, "ERR_INPUTS"));
    }
    assert!(server.listing().is_empty());
}

#[tokio::test]
async fn an_attached_text_counts_as_the_inline_text_and_is_recorded_as_read() {
    let server = start().await;
    let smoke = registry().example("smoke");
    let text = smoke["text"].as_str().unwrap();
    let artifact = server.attach("smoke.txt", text.as_bytes(), "text/plain");
    let attached = json!({"schema": "v1", "text": artifact.to_value()});
    assert!(
        registry()
            .assert_agrees_with(&processor_text_stats::definition(), env!("CARGO_PKG_NAME"))
            .is_valid(&attached)
    );
    let inline = server.run_ok("inline", Mode::Mock, smoke).await;
    let from_file = server.run_ok("attached", Mode::Mock, attached).await;
    let cids = |envelope: &proctor_contract::SuccessEnvelope| -> Vec<String> {
        envelope.outputs.iter().map(|o| o.cid.clone()).collect()
    };
    assert_eq!(cids(&inline), cids(&from_file));
    assert!(server.receipt(&inline).artifacts_read.is_empty());
    assert_eq!(
        server.receipt(&from_file).artifacts_read,
        vec![artifact.read()]
    );
}

#[tokio::test]
async fn a_tampered_attachment_is_refused_and_nothing_is_written() {
    let server = start().await;
    let artifact = server.attach("notes.txt", b"the original text\n", "text/plain");
    std::fs::write(server.fs_path(&artifact.path), b"the tampered text\n").unwrap();
    let inputs = json!({"schema": "v1", "text": artifact.to_value()});
    let (status, code, message) = server.run_err("tampered", Mode::Mock, inputs).await;
    assert_eq!((status, code.as_str()), (422, "ERR_ARTIFACT_MISMATCH"));
    assert!(
        message.starts_with("input artifact does not match its content id"),
        "{message}"
    );
    assert!(
        !server
            .listing()
            .iter()
            .any(|path| path.starts_with("outputs")),
        "{:?}",
        server.listing()
    );

    let binary = server.attach("blob.txt", &[0xff, 0xfe], "text/plain");
    let inputs = json!({"schema": "v1", "text": binary.to_value()});
    let (status, code, message) = server.run_err("binary", Mode::Mock, inputs).await;
    assert_eq!((status, code.as_str()), (400, "ERR_INPUTS"), "{message}");
    assert!(message.contains("is not UTF-8 text"), "{message}");
}
