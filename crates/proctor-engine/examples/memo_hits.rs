//! Memo hit throughput through the engine library. One mock `text/stats@1` run, built from
//! source and run on the local Docker engine, becomes the source; then `BENCH_HITS` runs of
//! the same request with `memo: true`, `BENCH_CONCURRENCY` at a time on one [`Engine`], are
//! each answered from the memo cache: the ledger lookup, the check of the source's evidence
//! (outputs re-hashed, both receipts) and the `execution.memo` record.
//! Prints hits/s; reports no rate when any answer was not a hit of the source, or when the
//! plan's chain does not verify afterwards.
//! `scripts/bench-memo.sh` runs it in release.
//!
//! Usage: `memo_hits REGISTRY_ROOT` (the workspace's `processors/`). Environment:
//! `BENCH_HITS` (default 5,000), `BENCH_CONCURRENCY` (default 16), `BENCH_LABEL` (the
//! value of the `proctor.bench` label the source's container carries).

// Every example of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]
// A benchmark reports on stdout, and why it gave up on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use proctor_contract::{Envelope, Mode};
use proctor_engine::{
    AdapterKind, CancellationToken, Engine, EngineConfig, Inputs, Limits, RunRequest,
};
use serde_json::json;

const PLAN: &str = "bench-memo";

fn from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn fail(why: String) -> ! {
    eprintln!("memo_hits: {why}");
    std::process::exit(1);
}

#[tokio::main]
async fn main() {
    let registry_root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| fail("usage: memo_hits REGISTRY_ROOT".to_owned()));
    let registry_root = std::fs::canonicalize(&registry_root)
        .unwrap_or_else(|e| fail(format!("{}: {e}", registry_root.display())));
    let hits = from_env("BENCH_HITS", 5_000);
    let label = std::env::var("BENCH_LABEL").unwrap_or_else(|_| "memo-hits".to_owned());
    let concurrency = from_env("BENCH_CONCURRENCY", 16).max(1);
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e.to_string()));
    let engine = Engine::new(EngineConfig {
        registry_root,
        artifacts_root: dir.path().join("artifacts"),
        ledger_url: format!("sqlite://{}/ledger.db", dir.path().display()),
        env: BTreeMap::new(),
        limits: Limits::default(),
    });
    let request = RunRequest {
        processor_ref: "text/stats@1".to_owned(),
        adapter: AdapterKind::Local,
        mode: Mode::Mock,
        build: true,
        write_prefix: Some("/artifacts/bench/{execution_id}/".to_owned()),
        inputs: Inputs::Value(json!({
            "schema": "v1",
            "text": "The quick brown fox jumps over the lazy dog. The dog sleeps."
        })),
        params: BTreeMap::new(),
        adapter_options: json!({"labels": {"proctor.bench": label}}),
        timeout: None,
        save_dir: None,
        plan: PLAN.to_owned(),
        reserve_micro_usd: 0,
        lane: None,
        upstream: Vec::new(),
        attachments: Vec::new(),
        memo: true,
    };
    let cancel = CancellationToken::new();
    let source = engine.run(&request, &cancel).await;
    let source_id = match &source.envelope {
        Envelope::Success(success) if success.memo_source.is_none() => success.execution_id.clone(),
        other => fail(format!("the source run: {}", other.to_json_line())),
    };

    // The callers share one task, as `plan apply` runs its transitions.
    let started = Instant::now();
    let mut running = FuturesUnordered::new();
    let mut answered = Vec::with_capacity(hits);
    let mut issued = 0;
    while answered.len() < hits {
        while issued < hits && running.len() < concurrency {
            running.push(engine.run(&request, &cancel));
            issued += 1;
        }
        let Some(outcome) = running.next().await else {
            break;
        };
        answered.push(match outcome.envelope {
            Envelope::Success(success) => success.memo_source,
            Envelope::Error(error) => fail(format!("a hit failed: {}", error.error.message)),
        });
    }
    let elapsed = started.elapsed();
    if let Some(miss) = answered
        .iter()
        .find(|source| source.as_deref() != Some(source_id.as_str()))
    {
        fail(format!("a run was not a hit of {source_id}: {miss:?}"));
    }
    let ledger = engine
        .ledger()
        .await
        .unwrap_or_else(|e| fail(e.to_string()));
    let verify_started = Instant::now();
    let chain = ledger
        .verify_chain(PLAN)
        .await
        .unwrap_or_else(|e| fail(e.to_string()));
    if let Some(error) = chain.to_error() {
        fail(error.to_string());
    }
    let verify_elapsed = verify_started.elapsed();
    let rate = hits as f64 / elapsed.as_secs_f64();
    println!("{:<28} {hits}", "memo hits");
    println!("{:<28} {concurrency}", "runs at a time");
    println!(
        "{:<28} {} ms  {rate:.0} hits/s",
        "hits",
        elapsed.as_millis()
    );
    println!(
        "{:<28} {} ms",
        format!("ledger verify ({} events)", chain.verified),
        verify_elapsed.as_millis()
    );
    drop(running);
    engine.close().await;
}
