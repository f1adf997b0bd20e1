//! Ledger throughput under concurrency: 8 writers sharing one ledger handle append events
//! one at a time to 2 plans, then record whole executions (start, reserve, lease,
//! `artifact.produce`, release, budget settle and settle); prints events/s, executions/s and
//! how long `verify_all` takes. `scripts/bench-ledger.sh` runs it in release.
//!
//! Usage: `concurrent_appends [LEDGER_URL]` (default: an SQLite file in a temporary
//! directory). Environment: `BENCH_EVENTS` events per writer (default 5,000),
//! `BENCH_EXECUTIONS` executions per writer (default 500).

// Every example of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]
// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use proctor_contract::{Mode, OutputEntry, WorldPath};
use proctor_ledger::{ExecutionSettle, ExecutionStart, Ledger, NewEvent, Outcome};

const WRITERS: usize = 8;
const PLANS: usize = 2;

fn from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn check_event(writer: usize, n: usize) -> NewEvent {
    NewEvent::predicate_check(
        &format!("writer-{writer}"),
        "bench",
        n.is_multiple_of(2),
        &format!("check {n}"),
    )
}

/// Records one mock execution the way the engine does, in its six writes.
async fn record_execution(ledger: &Ledger, plan: &str, execution_id: &str) {
    let write_prefix = format!("/artifacts/outputs/bench/{execution_id}/");
    let start = ExecutionStart {
        execution_id: execution_id.to_owned(),
        plan: plan.to_owned(),
        processor_ref: "text/stats@1".to_owned(),
        mode: Mode::Mock,
        write_prefix: write_prefix.clone(),
        image_digest: None,
        owner: None,
    };
    ledger.record_start(&start).await.expect("record_start");
    ledger
        .reserve(plan, execution_id, 0)
        .await
        .expect("reserve");
    let selector = WorldPath::parse(&write_prefix).expect("a world path");
    let lease = ledger
        .acquire_lease(plan, &selector, execution_id, Duration::from_secs(600))
        .await
        .expect("acquire_lease");
    let output = OutputEntry {
        path: WorldPath::parse(&format!("{write_prefix}outputs/stats.json")).expect("a path"),
        cid: proctor_contract::cid(execution_id.as_bytes()),
        size_bytes: 42,
        mime: "application/json".to_owned(),
    };
    ledger
        .append_batch(plan, &[NewEvent::artifact_produce(execution_id, &output)])
        .await
        .expect("append_batch");
    assert!(lease.release().await.expect("release"));
    let settle = ExecutionSettle {
        execution_id: execution_id.to_owned(),
        outcome: Outcome::Success {
            index_path: format!("{write_prefix}outputs.json"),
            outputs_index_cid: proctor_contract::cid(b"{\"outputs\":[]}"),
            receipt_cid: None,
        },
        image_digest: Some("sha256:bench".to_owned()),
        duration_ms: 1,
    };
    ledger
        .settle_execution(plan, 0, &settle)
        .await
        .expect("settle_execution");
}

/// Runs `WRITERS` tasks of `work(ledger, writer)` and gives the elapsed time.
async fn concurrently<F, Fut>(ledger: &Ledger, work: F) -> Duration
where
    F: Fn(Ledger, usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| tokio::spawn(work(ledger.clone(), writer)))
        .collect();
    for task in tasks {
        task.await.expect("a writer");
    }
    started.elapsed()
}

fn main() {
    let events = from_env("BENCH_EVENTS", 5_000);
    let executions = from_env("BENCH_EXECUTIONS", 500);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("sqlite://{}/ledger.db", dir.path().display()));
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    runtime.block_on(async {
        let ledger = Ledger::open(&url).await.expect("open the ledger");
        let backend = ledger.backend().as_str();
        let run = format!("{}", std::process::id());

        let elapsed = concurrently(&ledger, |ledger, writer| {
            let plan = format!("bench-{run}-appends-{}", writer % PLANS);
            async move {
                for n in 0..events {
                    ledger
                        .append(&plan, &check_event(writer, n))
                        .await
                        .expect("append");
                }
            }
        })
        .await;
        let total = (WRITERS * events) as f64;
        println!(
            "{backend}: {WRITERS} writers, {} events appended one at a time: {:.0} events/s",
            WRITERS * events,
            total / elapsed.as_secs_f64()
        );

        let elapsed = concurrently(&ledger, |ledger, writer| {
            let plan = format!("bench-{run}-executions-{}", writer % PLANS);
            async move {
                for n in 0..executions {
                    record_execution(&ledger, &plan, &format!("w{writer}-e{n}")).await;
                }
            }
        })
        .await;
        let total = (WRITERS * executions) as f64;
        println!(
            "{backend}: {WRITERS} writers, {} executions of 7 events in 6 writes: {:.0} executions/s ({:.0} events/s)",
            WRITERS * executions,
            total / elapsed.as_secs_f64(),
            total * 7.0 / elapsed.as_secs_f64()
        );

        let started = Instant::now();
        let reports = ledger.verify_all().await.expect("verify_all");
        let elapsed = started.elapsed();
        let verified: u64 = reports.iter().map(|report| report.verified).sum();
        assert!(reports.iter().all(|report| report.is_valid() && report.mismatches.is_empty()));
        println!(
            "{backend}: verify_all of {} plans, {verified} events: {:.0} ms",
            reports.len(),
            elapsed.as_secs_f64() * 1_000.0
        );
        ledger.close().await;
    });
}
