//! Ledger throughput on SQLite (the embedded default): appends per second, one event per
//! transaction and in batches of 1,000 (`append_batch`), and chain verification per second.
//!
//! Run with `cargo bench -p proctor-ledger -- --warm-up-time 1 --measurement-time 3`.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proctor_ledger::{Ledger, NewEvent};
use tokio::runtime::Runtime;

const BATCH: usize = 1_000;
const VERIFIED_CHAIN: usize = 10_000;

fn event(n: usize) -> NewEvent {
    NewEvent::predicate_check(
        "bench-execution",
        "bench",
        n.is_multiple_of(2),
        &format!("check {n}"),
    )
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

fn open(runtime: &Runtime, dir: &tempfile::TempDir) -> Ledger {
    let url = format!("sqlite://{}/ledger.db", dir.path().display());
    runtime
        .block_on(Ledger::open(&url))
        .expect("open the ledger")
}

fn appends(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger = open(&runtime, &dir);
    let mut group = c.benchmark_group("sqlite_append");

    group.throughput(Throughput::Elements(1));
    group.bench_function("one_per_transaction", |b| {
        let single = event(0);
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    ledger.append("single", &single).await.expect("append");
                }
                started.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("batch_of_1000", |b| {
        let batch: Vec<NewEvent> = (0..BATCH).map(event).collect();
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    ledger
                        .append_batch("batched", &batch)
                        .await
                        .expect("append_batch");
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

fn verification(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger = open(&runtime, &dir);
    let batch: Vec<NewEvent> = (0..BATCH).map(event).collect();
    runtime.block_on(async {
        for _ in 0..VERIFIED_CHAIN / BATCH {
            ledger
                .append_batch("verified", &batch)
                .await
                .expect("append_batch");
        }
    });

    let mut group = c.benchmark_group("sqlite_verify");
    group.throughput(Throughput::Elements(VERIFIED_CHAIN as u64));
    group.bench_function("chain_of_10000", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let report = ledger.verify_chain("verified").await.expect("verify");
                    assert!(report.is_valid() && report.verified == VERIFIED_CHAIN as u64);
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1));
    targets = appends, verification
}
criterion_main!(benches);
