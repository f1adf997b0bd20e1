//! The engine driven as a library, with no CLI process: a real container of the local
//! Docker engine runs `text/stats@1` (built from source) in mock mode, the evidence lands in
//! the World, the same library verifies the execution, and the ledger's chain records it. Needs the Docker engine that
//! `scripts/setup.sh` starts.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proctor_contract::{Envelope, Mode, cid};
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
        write_prefix: "/artifacts/outputs/library/{execution_id}/".to_owned(),
        inputs: Inputs::Value(json!({"schema": "v1", "text": text})),
        adapter_options: serde_json::Value::Null,
        timeout: None,
        save_dir: None,
        plan: "library".to_owned(),
        reserve_micro_usd: 0,
        lane: None,
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
