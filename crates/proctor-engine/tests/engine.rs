//! The engine driven as a library, with no CLI process: a real container of the local
//! Docker engine runs `text/stats@1` (built from source) in mock mode, the evidence lands in
//! the World, the same library verifies the execution, and the ledger's chain records it. Needs the Docker engine that
//! `scripts/setup.sh` starts.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proctor_adapters::LABEL_EXECUTION_ID;
use proctor_contract::{Envelope, ErrorCode, Mode, cid};
use proctor_engine::{
    AdapterKind, CancellationToken, Engine, EngineConfig, EvidenceSources, Inputs, Limits,
    RunRequest, verify_execution,
};
use serde_json::json;

fn workspace_registry() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../processors")
}

/// The host environment a build needs (cargo, the engine), without `CI`.
fn host_env() -> BTreeMap<String, String> {
    std::env::vars().filter(|(name, _)| name != "CI").collect()
}

fn engine(dir: &Path) -> Engine {
    Engine::new(EngineConfig {
        registry_root: workspace_registry(),
        artifacts_root: dir.join("artifacts"),
        ledger_url: format!("sqlite://{}", dir.join("ledger.db").display()),
        env: host_env(),
        limits: Limits::default(),
    })
}

fn stats_request(text: &str) -> RunRequest {
    RunRequest {
        processor_ref: "text/stats@1".to_owned(),
        adapter: AdapterKind::Local,
        mode: Mode::Mock,
        build: true,
        write_prefix: Some("/artifacts/outputs/library/{execution_id}/".to_owned()),
        inputs: Inputs::Value(json!({"schema": "v1", "text": text})),
        params: BTreeMap::new(),
        adapter_options: serde_json::Value::Null,
        timeout: None,
        save_dir: None,
        plan: "library".to_owned(),
        reserve_micro_usd: 0,
        lane: None,
        upstream: Vec::new(),
        attachments: Vec::new(),
        memo: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_runs_verifies_and_chains_an_execution() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let outcome = engine
        .run(&stats_request("one two two"), &CancellationToken::new())
        .await;
    let Envelope::Success(success) = &outcome.envelope else {
        panic!("expected a success: {}", outcome.envelope.to_json_line());
    };
    assert_eq!(outcome.exit_code(), 0);
    for output in &success.outputs {
        let bytes = engine.store().get(&output.path).await.unwrap();
        assert_eq!(cid(&bytes), output.cid, "{}", output.path);
    }
    let ledger = engine.ledger().await.unwrap();
    let chain = ledger.verify_chain("library").await.unwrap();
    assert!(chain.is_valid(), "{chain:?}");
    let execution = ledger
        .execution(&success.execution_id)
        .await
        .unwrap()
        .expect("the execution is recorded");
    assert_eq!(execution.status.as_str(), "success");
    let sources = EvidenceSources {
        store: engine.store().as_ref(),
        ledger,
        registry_root: &engine.config().registry_root,
        chains: None,
    };
    let report = verify_execution(&sources, &success.execution_id)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.checks.len() > 5, "{report:?}");
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_token_starts_no_container_and_records_the_interruption() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let cancel = CancellationToken::new();
    cancel.cancel();
    let outcome = engine.run(&stats_request("x"), &cancel).await;
    let Envelope::Error(error) = &outcome.envelope else {
        panic!("expected an error: {}", outcome.envelope.to_json_line());
    };
    assert_eq!(error.error.code.as_str(), "ERR_INTERRUPTED");
    let ledger = engine.ledger().await.unwrap();
    let execution = ledger
        .execution(&error.execution_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(execution.status.as_str(), "failure");
    assert!(
        ledger.leases().await.unwrap().is_empty(),
        "the lease is released"
    );
    assert!(ledger.verify_chain("library").await.unwrap().is_valid());
    engine.close().await;
}

/// A tracing subscriber that panics where the code under test logs `event = NAME`: a panic
/// injected at a real point of a run, with no hook in the code itself.
struct PanicAtEvent(&'static str);

impl tracing::Subscriber for PanicAtEvent {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct EventName(Option<String>);
        impl tracing::field::Visit for EventName {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "event" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut name = EventName(None);
        event.record(&mut name);
        if name.0.as_deref() == Some(self.0) {
            panic!("injected at {}", self.0);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// The ids of the containers, running or not, labelled with `execution_id`.
fn containers_of(execution_id: &str) -> String {
    let listed = std::process::Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label={LABEL_EXECUTION_ID}={execution_id}"))
        .output()
        .expect("run docker ps");
    assert!(listed.status.success(), "{listed:?}");
    String::from_utf8(listed.stdout).unwrap()
}

// One thread: the subscriber set for this thread sees every event of the run.
#[tokio::test(flavor = "current_thread")]
async fn a_panic_after_the_container_started_still_settles_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let ledger = engine.ledger().await.unwrap();
    ledger.set_budget("library", Some(1_000)).await.unwrap();
    let request = RunRequest {
        reserve_micro_usd: 800,
        ..stats_request("panic")
    };
    let outcome = {
        let _panicking = tracing::subscriber::set_default(PanicAtEvent("container.started"));
        engine.run(&request, &CancellationToken::new()).await
    };
    let Envelope::Error(error) = &outcome.envelope else {
        panic!("expected an error: {}", outcome.envelope.to_json_line());
    };
    assert_eq!(error.error.code, ErrorCode::Internal);
    assert_eq!(outcome.exit_code(), 1);
    assert!(
        error
            .error
            .message
            .contains("the run panicked: injected at container.started"),
        "{}",
        error.error.message
    );
    let execution = ledger
        .execution(&error.execution_id)
        .await
        .unwrap()
        .expect("the execution is recorded");
    assert_eq!(execution.status.as_str(), "failure");
    assert_eq!(execution.error_code.as_deref(), Some("ERR_INTERNAL"));
    assert!(ledger.leases().await.unwrap().is_empty(), "lease released");
    let plan = ledger.plan("library").await.unwrap().unwrap();
    assert_eq!(plan.reserved_micro_usd, 0, "reservation released");
    assert_eq!(containers_of(&error.execution_id), "", "no container left");
    ledger.wait_for_dropped_leases().await;
    let chain = ledger.verify_chain("library").await.unwrap();
    assert!(chain.is_valid(), "{chain:?}");
    // The next run on the plan reserves and runs as usual.
    let next = engine.run(&request, &CancellationToken::new()).await;
    assert_eq!(next.exit_code(), 0, "{}", next.envelope.to_json_line());
    engine.close().await;
}
