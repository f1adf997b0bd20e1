//! The ledger's test suite, run once on SQLite and once on PostgreSQL.
//!
//! Needs: nothing for the `sqlite::` tests; for the `postgres::` tests, the PostgreSQL
//! server that `scripts/setup.sh` starts on 127.0.0.1:55432 (they fail, never skip, when it
//! is missing). Every test gets a fresh database and removes it afterwards.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

mod checkpoints;
mod group_commit;
mod queries;
mod support;

use std::collections::HashSet;
use std::time::Duration;

use proctor_contract::{
    CanonError, ErrorCode, EventKind, ExecutionOwner, LeaseReleaseReason, LedgerEvent, Mode,
    OutputEntry, WorldPath,
};
use proctor_ledger::{
    BreakReason, ChainCache, ExecutionSettle, ExecutionStart, ExecutionStatus, GENESIS_HASH,
    Ledger, LedgerError, NewEvent, Outcome, Settlement, TableMismatch,
};
use sqlx::AnyPool;
use sqlx::error::ErrorKind;
use support::TestDb;

/// Generates one test per backend for each suite function.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::new(crate::support::Kind::Sqlite).await;
                    crate::suite::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::new(crate::support::Kind::Postgres).await;
                    crate::suite::$name(&db).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_run_is_recorded_and_its_fresh_chain_verifies,
    executions_are_recorded_and_settled_once,
    an_edited_payload_breaks_the_chain_at_its_seq,
    a_chain_cache_verifies_again_only_past_what_it_covers,
    a_deleted_row_breaks_the_chain_at_its_seq,
    reordered_rows_break_the_chain_at_the_first_moved_seq,
    edited_columns_and_forged_rows_break_the_chain,
    runs_budgets_and_failures_verify_against_their_tables,
    edited_plans_and_executions_rows_are_reported,
    eight_concurrent_writers_leave_a_gap_free_valid_chain,
    a_reservation_past_the_budget_is_refused,
    the_database_enforces_budget_and_chain_constraints,
    overlapping_leases_conflict_until_released,
    expired_leases_are_taken_over_and_dropped_guards_release,
    executions_of_dead_owners_are_settled_and_live_ones_left_alone,
);

fn start(plan: &str, execution_id: &str) -> ExecutionStart {
    ExecutionStart {
        execution_id: execution_id.to_owned(),
        plan: plan.to_owned(),
        processor_ref: "llm/litellm@1".to_owned(),
        mode: Mode::Mock,
        write_prefix: format!("/artifacts/outputs/demo/{execution_id}/"),
        image_digest: None,
        owner: None,
    }
}

/// An owner on this host and boot whose process has ended: a real child process, its start
/// time read while it ran, then killed and reaped.
fn dead_owner(here: &ExecutionOwner) -> ExecutionOwner {
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    let start_time = proctor_ledger::process_start_time(pid)
        .unwrap()
        .expect("the child runs");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(proctor_ledger::process_start_time(pid).unwrap(), None);
    ExecutionOwner {
        pid,
        start_time,
        ..here.clone()
    }
}

fn success(execution_id: &str) -> ExecutionSettle {
    ExecutionSettle {
        execution_id: execution_id.to_owned(),
        outcome: Outcome::Success {
            index_path: format!("/artifacts/outputs/demo/{execution_id}/outputs.json"),
            outputs_index_cid: proctor_contract::cid(b"{\"outputs\":[]}"),
            receipt_cid: Some(proctor_contract::cid(b"receipt")),
        },
        image_digest: Some("sha256:abc".to_owned()),
        duration_ms: 12,
    }
}

fn failure(execution_id: &str) -> ExecutionSettle {
    ExecutionSettle {
        execution_id: execution_id.to_owned(),
        outcome: Outcome::Failure(CanonError::new(ErrorCode::Timeout, "after 30 s")),
        image_digest: None,
        duration_ms: 30_000,
    }
}

/// Records on `plan` two budgets, a success, a failure, a run with an open reservation and a
/// run without one; execution ids are `{plan}-e1` to `{plan}-e4`.
async fn record_runs_budgets_and_failures(ledger: &Ledger, plan: &str) {
    ledger.set_budget(plan, Some(10_000)).await.unwrap();
    ledger.set_budget(plan, Some(8_000)).await.unwrap();
    let id = |n: u32| format!("{plan}-e{n}");

    ledger.record_start(&start(plan, &id(1))).await.unwrap();
    ledger.reserve(plan, &id(1), 2_000).await.unwrap();
    ledger.settle(plan, &id(1), 1_500).await.unwrap();
    ledger.record_settle(&success(&id(1))).await.unwrap();

    let pinned = ExecutionStart {
        image_digest: Some("sha256:def".to_owned()),
        ..start(plan, &id(2))
    };
    ledger.record_start(&pinned).await.unwrap();
    ledger.reserve(plan, &id(2), 1_000).await.unwrap();
    ledger.reserve(plan, &id(2), 500).await.unwrap();
    ledger.settle(plan, &id(2), 0).await.unwrap();
    ledger.record_settle(&failure(&id(2))).await.unwrap();

    ledger.record_start(&start(plan, &id(3))).await.unwrap();
    ledger.reserve(plan, &id(3), 700).await.unwrap();

    ledger.record_start(&start(plan, &id(4))).await.unwrap();
    ledger.append(plan, &check_event(&id(4), 1)).await.unwrap();
}

fn path(raw: &str) -> WorldPath {
    WorldPath::parse(raw).unwrap()
}

fn check_event(execution_id: &str, n: usize) -> NewEvent {
    NewEvent::predicate_check(
        execution_id,
        "smoke",
        n.is_multiple_of(2),
        &format!("check {n}"),
    )
}

/// Appends `n` predicate checks to `plan`, in one batch.
async fn append_checks(ledger: &Ledger, plan: &str, n: usize) {
    let events: Vec<NewEvent> = (1..=n).map(|i| check_event("e1", i)).collect();
    let appended = ledger.append_batch(plan, &events).await.unwrap();
    assert_eq!(appended.len(), n);
}

async fn exec(raw: &AnyPool, sql: &str) -> Result<u64, sqlx::Error> {
    sqlx::query(sql)
        .execute(raw)
        .await
        .map(|done| done.rows_affected())
}

fn assert_canon(err: LedgerError, code: ErrorCode) -> CanonError {
    let canon = err.to_canon();
    assert_eq!(canon.code(), code, "{canon}");
    assert!(canon.message().contains(code.fragment()), "{canon}");
    canon
}

/// The constraint a statement must trip.
#[derive(Debug, Clone, Copy)]
enum Violation {
    Check,
    Unique,
}

fn assert_violation(result: Result<u64, sqlx::Error>, violation: Violation, what: &str) {
    let err = result.expect_err(what);
    let db_error = err
        .as_database_error()
        .unwrap_or_else(|| panic!("{what}: {err}"));
    let tripped = match violation {
        Violation::Check => matches!(db_error.kind(), ErrorKind::CheckViolation),
        Violation::Unique => matches!(db_error.kind(), ErrorKind::UniqueViolation),
    };
    assert!(
        tripped,
        "{what}: expected a {violation:?} violation, got {db_error}"
    );
}

mod suite {
    use super::*;

    pub(crate) async fn a_run_is_recorded_and_its_fresh_chain_verifies(db: &TestDb) {
        let ledger = db.ledger().await;
        let plan = "default";
        ledger.set_budget(plan, Some(5_000)).await.unwrap();
        ledger.record_start(&start(plan, "e1")).await.unwrap();
        ledger.reserve(plan, "e1", 2_000).await.unwrap();
        let lease = ledger
            .acquire_lease(
                plan,
                &path("/artifacts/outputs/demo/e1/"),
                "e1",
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let output = OutputEntry {
            path: path("/artifacts/outputs/demo/e1/outputs/text/response.txt"),
            cid: proctor_contract::cid(b"hello"),
            size_bytes: 5,
            mime: "text/plain".to_owned(),
        };
        ledger
            .append(plan, &NewEvent::artifact_produce("e1", &output))
            .await
            .unwrap();
        ledger.append(plan, &check_event("e1", 1)).await.unwrap();
        assert!(lease.release().await.unwrap());
        ledger.settle(plan, "e1", 1_500).await.unwrap();
        let settled = ledger.record_settle(&success("e1")).await.unwrap();
        assert_eq!(settled.seq, 9);

        let report = ledger.verify_chain(plan).await.unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!((report.verified, report.head_seq), (9, 9));
        assert_eq!(report.head_hash, settled.this_hash);
        assert!(report.to_error().is_none());

        let kinds: Vec<_> = ledger
            .events(plan, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|event| event.kind().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                EventKind::BudgetSet,
                EventKind::ExecutionStart,
                EventKind::BudgetReserve,
                EventKind::LeaseAcquire,
                EventKind::ArtifactProduce,
                EventKind::PredicateCheck,
                EventKind::LeaseRelease,
                EventKind::BudgetSettle,
                EventKind::ExecutionSettleSuccess,
            ]
        );
        let events = ledger.events(plan, 0, 100).await.unwrap();
        assert_eq!(events[0].prev_hash, GENESIS_HASH);
        for pair in events.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].this_hash);
            assert_eq!(pair[1].seq, pair[0].seq + 1);
        }
        for event in &events {
            let typed = event.ledger_event().unwrap();
            assert_eq!(Some(typed.kind()), event.kind(), "seq {}", event.seq);
        }
        let LedgerEvent::ExecutionSettleSuccess(settled_event) = events[8].ledger_event().unwrap()
        else {
            panic!("seq 9 is not a success settle: {:?}", events[8]);
        };
        assert_eq!(settled_event.image_digest.as_deref(), Some("sha256:abc"));
        assert_eq!(settled_event.duration_ms, 12);
        assert_eq!(ledger.events(plan, 7, 100).await.unwrap().len(), 2);
        assert_eq!(ledger.events_for_execution("e1").await.unwrap().len(), 8);

        let execution = ledger.execution("e1").await.unwrap().unwrap();
        assert_eq!(execution.status, ExecutionStatus::Success);
        assert_eq!(execution.image_digest.as_deref(), Some("sha256:abc"));
        assert_eq!(
            (execution.reserved_micro_usd, execution.spent_micro_usd),
            (0, Some(1_500))
        );
        let plan_row = ledger.plan(plan).await.unwrap().unwrap();
        assert_eq!(
            (plan_row.reserved_micro_usd, plan_row.spent_micro_usd),
            (0, 1_500)
        );
        assert_eq!(plan_row.available_micro_usd(), Some(3_500));

        let evidence = ledger.execution_evidence("e1").await.unwrap().unwrap();
        assert!(evidence.is_settled_on_a_valid_chain());
        assert_eq!(evidence.events.len(), 8);
        let Some(Settlement::Success(settled)) = evidence.settlement().unwrap() else {
            panic!("not settled with success: {evidence:?}");
        };
        assert_eq!(
            settled.receipt_cid.as_deref(),
            Some(proctor_contract::cid(b"receipt").as_str())
        );
        assert_eq!(
            settled.index_path,
            "/artifacts/outputs/demo/e1/outputs.json"
        );
        let started = evidence.start().unwrap().unwrap();
        assert_eq!(
            (started.processor_ref.as_str(), started.mode),
            ("llm/litellm@1", Mode::Mock)
        );
        assert_eq!(started.image_digest, None);
        assert_eq!(evidence.artifacts().unwrap(), [output]);
        let settle_event = evidence.settle_event.unwrap();
        assert_eq!(settle_event.seq, 9);
        assert!(ledger.execution_evidence("nope").await.unwrap().is_none());

        append_checks(&ledger, "other", 3).await;
        let reports = ledger.verify_all().await.unwrap();
        let summary: Vec<_> = reports
            .iter()
            .map(|r| (r.plan.as_str(), r.verified, r.is_valid()))
            .collect();
        assert_eq!(summary, [("default", 9, true), ("other", 3, true)]);
        assert!(ledger.leases().await.unwrap().is_empty());
        ledger.close().await;
    }

    pub(crate) async fn executions_are_recorded_and_settled_once(db: &TestDb) {
        let ledger = db.ledger().await;
        ledger.record_start(&start("p", "e1")).await.unwrap();
        let err = ledger.record_start(&start("p", "e1")).await.unwrap_err();
        assert!(
            assert_canon(err, ErrorCode::Ledger)
                .message()
                .contains("already recorded")
        );

        let failure = ExecutionSettle {
            execution_id: "e1".to_owned(),
            outcome: Outcome::Failure(CanonError::new(ErrorCode::Timeout, "after 60s")),
            image_digest: None,
            duration_ms: 60_000,
        };
        ledger.record_settle(&failure).await.unwrap();
        let err = ledger.record_settle(&success("e1")).await.unwrap_err();
        assert!(
            assert_canon(err, ErrorCode::Ledger)
                .message()
                .contains("already settled")
        );
        let err = ledger.record_settle(&success("nope")).await.unwrap_err();
        assert!(
            assert_canon(err, ErrorCode::Ledger)
                .message()
                .contains("unknown execution")
        );

        let execution = ledger.execution("e1").await.unwrap().unwrap();
        assert_eq!(execution.status, ExecutionStatus::Failure);
        assert_eq!(execution.error_code.as_deref(), Some("ERR_TIMEOUT"));
        assert!(execution.settled_at.is_some());
        let events = ledger.events("p", 0, 10).await.unwrap();
        assert_eq!(events.len(), 2);
        let LedgerEvent::ExecutionSettleFailure(failed) = events[1].ledger_event().unwrap() else {
            panic!("seq 2 is not a failure settle: {:?}", events[1]);
        };
        assert_eq!(failed.error.code, ErrorCode::Timeout);
        assert_eq!(failed.error.message, "execution timed out: after 60s");
        assert_eq!((failed.image_digest, failed.duration_ms), (None, 60_000));
        let evidence = ledger.execution_evidence("e1").await.unwrap().unwrap();
        let Some(Settlement::Failure(failure)) = evidence.settlement().unwrap() else {
            panic!("not settled with a failure: {evidence:?}");
        };
        assert_eq!(failure.error.code, ErrorCode::Timeout);
        assert!(evidence.artifacts().unwrap().is_empty());
        assert!(ledger.execution("nope").await.unwrap().is_none());

        let err = ledger.append("p", &check_event("e1", 1)).await.map(|_| ());
        assert!(err.is_ok());
        let err = ledger.verify_chain("missing").await.unwrap_err();
        assert_canon(err, ErrorCode::Ledger);
        let err = ledger
            .append("bad key", &check_event("e1", 1))
            .await
            .unwrap_err();
        assert_canon(err, ErrorCode::Ledger);
    }

    pub(crate) async fn an_edited_payload_breaks_the_chain_at_its_seq(db: &TestDb) {
        let ledger = db.ledger().await;
        ledger.record_start(&start("p", "e1")).await.unwrap();
        append_checks(&ledger, "p", 10).await;
        ledger.record_settle(&success("e1")).await.unwrap();
        let evidence = ledger.execution_evidence("e1").await.unwrap().unwrap();
        assert!(evidence.is_settled_on_a_valid_chain());
        let raw = db.raw().await;
        // Seq 4 holds `check 3` (seq 1 is the execution's start).
        let edited = exec(
            &raw,
            "UPDATE events SET payload = replace(payload, 'check 3', 'check 30') WHERE plan = 'p' AND seq = 4",
        )
        .await
        .unwrap();
        assert_eq!(edited, 1);
        let report = ledger.verify_chain("p").await.unwrap();
        let broken = report.broken.clone().unwrap();
        assert_eq!(broken.seq, 4, "{report:?}");
        let evidence = ledger.execution_evidence("e1").await.unwrap().unwrap();
        assert!(!evidence.is_settled_on_a_valid_chain());
        assert!(
            matches!(broken.reason, BreakReason::PayloadHashMismatch { .. }),
            "{report:?}"
        );
        assert_eq!(report.verified, 3);
        let err = report.to_error().unwrap();
        assert_eq!(err.code(), ErrorCode::LedgerChain);
        assert!(err.message().contains("seq 4: payload hashes to"), "{err}");

        // A settle payload edited out of its kind's shape no longer reads as one.
        let edited = exec(
            &raw,
            "UPDATE events SET payload = replace(payload, '\"duration_ms\":12', '\"duration_ms\":\"12\"') \
             WHERE plan = 'p' AND seq = 12",
        )
        .await
        .unwrap();
        assert_eq!(edited, 1);
        let evidence = ledger.execution_evidence("e1").await.unwrap().unwrap();
        let err = assert_canon(evidence.settlement().unwrap_err(), ErrorCode::Ledger);
        assert!(
            err.message()
                .contains("event seq 12 of plan `p` does not decode"),
            "{err}"
        );
        assert!(evidence.start().unwrap().is_some());
    }

    pub(crate) async fn a_chain_cache_verifies_again_only_past_what_it_covers(db: &TestDb) {
        let ledger = db.ledger().await;
        ledger.record_start(&start("p", "e1")).await.unwrap();
        ledger.record_settle(&success("e1")).await.unwrap();
        let chains = ChainCache::default();
        let first = ledger
            .execution_evidence_with("e1", &chains)
            .await
            .unwrap()
            .unwrap();
        assert!(first.is_settled_on_a_valid_chain());
        // An edit the kept verification covers is not seen again through the cache...
        append_checks(&ledger, "p", 3).await;
        let raw = db.raw().await;
        let edited = exec(
            &raw,
            "UPDATE events SET payload = replace(payload, 'check 1', 'check 10') \
             WHERE plan = 'p' AND seq = 3",
        )
        .await
        .unwrap();
        assert_eq!(edited, 1);
        let cached = ledger
            .execution_evidence_with("e1", &chains)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cached.chain, first.chain);
        // ...but an event past it is verified afresh, and a broken chain is never kept.
        ledger.record_start(&start("p", "e2")).await.unwrap();
        ledger.record_settle(&success("e2")).await.unwrap();
        let later = ledger
            .execution_evidence_with("e2", &chains)
            .await
            .unwrap()
            .unwrap();
        assert!(!later.is_settled_on_a_valid_chain());
        let uncached = ledger.execution_evidence("e1").await.unwrap().unwrap();
        assert!(!uncached.is_settled_on_a_valid_chain());
        let again = ledger
            .execution_evidence_with("e2", &chains)
            .await
            .unwrap()
            .unwrap();
        assert!(!again.is_settled_on_a_valid_chain());
    }

    pub(crate) async fn a_deleted_row_breaks_the_chain_at_its_seq(db: &TestDb) {
        let ledger = db.ledger().await;
        append_checks(&ledger, "p", 10).await;
        append_checks(&ledger, "q", 10).await;
        let raw = db.raw().await;
        assert_eq!(
            exec(&raw, "DELETE FROM events WHERE plan = 'p' AND seq = 6")
                .await
                .unwrap(),
            1
        );
        let broken = ledger.verify_chain("p").await.unwrap().broken.unwrap();
        assert_eq!(
            (broken.seq, broken.reason),
            (6, BreakReason::Gap { next_stored_seq: 7 })
        );

        assert_eq!(
            exec(&raw, "DELETE FROM events WHERE plan = 'q' AND seq = 10")
                .await
                .unwrap(),
            1
        );
        let broken = ledger.verify_chain("q").await.unwrap().broken.unwrap();
        assert_eq!(
            (broken.seq, broken.reason),
            (10, BreakReason::Truncated { head_seq: 10 })
        );
    }

    pub(crate) async fn reordered_rows_break_the_chain_at_the_first_moved_seq(db: &TestDb) {
        let ledger = db.ledger().await;
        append_checks(&ledger, "p", 10).await;
        append_checks(&ledger, "q", 10).await;
        let raw = db.raw().await;
        // Swap the positions of seq 3 and seq 4.
        for sql in [
            "UPDATE events SET seq = 1000 WHERE plan = 'p' AND seq = 3",
            "UPDATE events SET seq = 3 WHERE plan = 'p' AND seq = 4",
            "UPDATE events SET seq = 4 WHERE plan = 'p' AND seq = 1000",
        ] {
            assert_eq!(exec(&raw, sql).await.unwrap(), 1, "{sql}");
        }
        let broken = ledger.verify_chain("p").await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(
            matches!(broken.reason, BreakReason::PrevHashMismatch { .. }),
            "{broken:?}"
        );

        // Swap the contents of seq 7 and seq 8, hashes included, keeping the seqs.
        for sql in [
            "UPDATE events SET seq = 1000 WHERE plan = 'q' AND seq = 7",
            "UPDATE events SET seq = 7 WHERE plan = 'q' AND seq = 8",
            "UPDATE events SET seq = 8 WHERE plan = 'q' AND seq = 1000",
        ] {
            assert_eq!(exec(&raw, sql).await.unwrap(), 1, "{sql}");
        }
        let broken = ledger.verify_chain("q").await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 7, "{broken:?}");
    }

    pub(crate) async fn edited_columns_and_forged_rows_break_the_chain(db: &TestDb) {
        let ledger = db.ledger().await;
        for plan in ["kind", "forged", "rehashed"] {
            append_checks(&ledger, plan, 5).await;
        }
        let raw = db.raw().await;
        // The kind, execution_id and created_at columns derive from the hashed payload.
        for sql in [
            "UPDATE events SET kind = 'artifact.produce' WHERE plan = 'kind' AND seq = 2",
            "UPDATE events SET execution_id = 'e9' WHERE plan = 'kind' AND seq = 2",
            "UPDATE events SET created_at = '2000-01-01T00:00:00.000Z' WHERE plan = 'kind' AND seq = 2",
            "UPDATE events SET payload = 'not json' WHERE plan = 'kind' AND seq = 2",
        ] {
            assert!(exec(&raw, sql).await.is_err(), "{sql}");
        }
        let edited = "UPDATE events SET payload = replace(payload, 'predicate.check', 'artifact.produce') \
                      WHERE plan = 'kind' AND seq = 2";
        assert_eq!(exec(&raw, edited).await.unwrap(), 1);
        let relabeled = ledger.events("kind", 1, 1).await.unwrap().remove(0);
        assert_eq!(relabeled.kind(), Some(EventKind::ArtifactProduce));
        let broken = ledger.verify_chain("kind").await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(
            matches!(broken.reason, BreakReason::PayloadHashMismatch { .. }),
            "{broken:?}"
        );

        // A row appended behind the ledger's back, even with a correct hash link.
        let last = ledger.events("forged", 4, 1).await.unwrap().remove(0);
        exec(
            &raw,
            &format!(
                "INSERT INTO events (plan, seq, payload, prev_hash, this_hash) \
                 VALUES ('forged', 6, '{}', '{}', '{}')",
                last.payload, last.this_hash, last.this_hash
            ),
        )
        .await
        .unwrap();
        let broken = ledger.verify_chain("forged").await.unwrap().broken.unwrap();
        assert_eq!(
            (broken.seq, broken.reason),
            (6, BreakReason::BeyondHead { head_seq: 5 })
        );

        // An edited payload whose this_hash was recomputed: the next link breaks.
        let third = ledger.events("rehashed", 2, 1).await.unwrap().remove(0);
        let forged_payload = third.payload.replace("check 3", "check 33");
        let prev = blake3::Hash::from_hex(&third.prev_hash).unwrap();
        let mut hasher = blake3::Hasher::new();
        hasher.update(prev.as_bytes());
        hasher.update(forged_payload.as_bytes());
        exec(
            &raw,
            &format!(
                "UPDATE events SET payload = '{forged_payload}', this_hash = '{}' WHERE plan = 'rehashed' AND seq = 3",
                hasher.finalize().to_hex()
            ),
        )
        .await
        .unwrap();
        let broken = ledger
            .verify_chain("rehashed")
            .await
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(broken.seq, 4);
        assert!(
            matches!(broken.reason, BreakReason::PrevHashMismatch { .. }),
            "{broken:?}"
        );
    }

    pub(crate) async fn runs_budgets_and_failures_verify_against_their_tables(db: &TestDb) {
        let ledger = db.ledger().await;
        record_runs_budgets_and_failures(&ledger, "p").await;
        ledger.set_budget("unlimited", None).await.unwrap();
        let failed = ledger.execution("p-e2").await.unwrap().unwrap();
        assert_eq!(
            (failed.status, failed.error_code.as_deref()),
            (ExecutionStatus::Failure, Some("ERR_TIMEOUT"))
        );
        let reports = ledger.verify_all().await.unwrap();
        for report in &reports {
            assert!(report.is_valid(), "{report:?}");
            assert!(report.mismatches.is_empty(), "{report:?}");
            assert!(report.to_error().is_none());
        }
        assert_eq!(reports.len(), 2);
        ledger.close().await;
    }

    pub(crate) async fn edited_plans_and_executions_rows_are_reported(db: &TestDb) {
        let ledger = db.ledger().await;
        for plan in ["spent", "status", "deleted", "ghost", "clean"] {
            record_runs_budgets_and_failures(&ledger, plan).await;
        }
        let raw = db.raw().await;
        for sql in [
            "UPDATE plans SET spent_micro_usd = 1 WHERE key = 'spent'",
            "UPDATE executions SET status = 'failure', error_code = 'ERR_TIMEOUT' \
             WHERE execution_id = 'status-e1'",
            "DELETE FROM executions WHERE execution_id = 'deleted-e3'",
            "INSERT INTO executions (execution_id, plan, processor_ref, mode, write_prefix, status, \
             started_at) VALUES ('ghost-e9', 'ghost', 'llm/litellm@1', 'mock', \
             '/artifacts/outputs/demo/ghost-e9/', 'running', '2026-01-01T00:00:00.000Z')",
        ] {
            assert_eq!(exec(&raw, sql).await.unwrap(), 1, "{sql}");
        }
        let mismatch = |table, key: &str, column, expected: &str, found: &str| TableMismatch {
            table,
            key: key.to_owned(),
            column,
            expected: expected.to_owned(),
            found: found.to_owned(),
        };
        let expected = [
            ("clean", vec![]),
            (
                "deleted",
                vec![mismatch(
                    "executions",
                    "deleted-e3",
                    "row",
                    "present",
                    "absent",
                )],
            ),
            (
                "ghost",
                vec![mismatch(
                    "executions",
                    "ghost-e9",
                    "row",
                    "absent",
                    "present",
                )],
            ),
            (
                "spent",
                vec![mismatch("plans", "spent", "spent_micro_usd", "1500", "1")],
            ),
            (
                "status",
                vec![
                    mismatch("executions", "status-e1", "status", "success", "failure"),
                    mismatch(
                        "executions",
                        "status-e1",
                        "error_code",
                        "null",
                        "ERR_TIMEOUT",
                    ),
                ],
            ),
        ];
        let reports = ledger.verify_all().await.unwrap();
        assert_eq!(reports.len(), expected.len());
        for (report, (plan, mismatches)) in reports.iter().zip(expected) {
            assert_eq!(report.plan, plan);
            assert_eq!(report.broken, None, "{report:?}");
            assert_eq!(report.mismatches, mismatches, "{plan}");
            assert_eq!(report.is_valid(), plan == "clean", "{plan}");
        }

        let report = ledger.verify_chain("spent").await.unwrap();
        let error = report.to_error().unwrap();
        assert_eq!(error.code(), ErrorCode::LedgerChain);
        assert!(
            error.message().contains(
                "plan `spent`: table `plans` row `spent`: spent_micro_usd is `1` but the chain \
                 says `1500`"
            ),
            "{error}"
        );
        let error = ledger
            .verify_chain("status")
            .await
            .unwrap()
            .to_error()
            .unwrap();
        assert!(error.message().contains("(and 1 more)"), "{error}");

        // A broken chain is reported as such, not replayed.
        exec(&raw, "DELETE FROM events WHERE plan = 'spent' AND seq = 3")
            .await
            .unwrap();
        let report = ledger.verify_chain("spent").await.unwrap();
        assert_eq!(report.broken.unwrap().seq, 3);
        assert!(report.mismatches.is_empty());
        ledger.close().await;
    }

    pub(crate) async fn eight_concurrent_writers_leave_a_gap_free_valid_chain(db: &TestDb) {
        const WRITERS: usize = 8;
        const PER_WRITER: usize = 1_250;
        // Migrate once; then every writer has its own handle and connection pool.
        db.ledger().await.close().await;
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let url = db.url.clone();
            tasks.push(tokio::spawn(async move {
                let ledger = Ledger::open(&url).await.unwrap();
                for n in 0..PER_WRITER {
                    let execution_id = format!("w{writer}");
                    ledger
                        .append("shared", &check_event(&execution_id, n))
                        .await
                        .unwrap();
                }
                ledger.close().await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }

        let ledger = db.ledger().await;
        let report = ledger.verify_chain("shared").await.unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!(report.verified, (WRITERS * PER_WRITER) as u64);
        assert_eq!(report.head_seq, (WRITERS * PER_WRITER) as u64);

        let mut seen = HashSet::new();
        let mut after = 0;
        loop {
            let page = ledger.events("shared", after, 2_000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            for event in &page {
                let LedgerEvent::PredicateCheck(check) = event.ledger_event().unwrap() else {
                    panic!("not a predicate check: {event:?}");
                };
                let key = (event.execution_id.clone().unwrap(), check.detail);
                assert!(seen.insert(key), "event appended twice: {}", event.payload);
            }
        }
        assert_eq!(seen.len(), WRITERS * PER_WRITER);
        let raw = db.raw().await;
        let (count, min, max): (i64, i64, i64) =
            sqlx::query_as("SELECT COUNT(*), MIN(seq), MAX(seq) FROM events WHERE plan = 'shared'")
                .fetch_one(&raw)
                .await
                .unwrap();
        assert_eq!((count, min, max), (10_000, 1, 10_000));
    }

    pub(crate) async fn a_reservation_past_the_budget_is_refused(db: &TestDb) {
        let ledger = db.ledger().await;
        let plan = "capped";
        ledger.set_budget(plan, Some(1_000)).await.unwrap();
        for execution_id in ["e1", "e2"] {
            ledger
                .record_start(&start(plan, execution_id))
                .await
                .unwrap();
        }
        ledger.reserve(plan, "e1", 600).await.unwrap();
        let head_before = ledger.plan(plan).await.unwrap().unwrap().head_seq;

        let err = ledger.reserve(plan, "e2", 500).await.unwrap_err();
        assert!(err.is_budget_exceeded());
        let canon = assert_canon(err, ErrorCode::BudgetExceeded);
        assert!(canon.message().contains("plan `capped`"), "{canon}");
        assert_eq!(
            canon.code().exit_code(),
            ErrorCode::BudgetExceeded.exit_code()
        );
        let state = ledger.plan(plan).await.unwrap().unwrap();
        assert_eq!((state.reserved_micro_usd, state.spent_micro_usd), (600, 0));
        assert_eq!(state.head_seq, head_before, "a refusal appends nothing");

        ledger.settle(plan, "e1", 400).await.unwrap();
        ledger.reserve(plan, "e2", 500).await.unwrap();
        let err = ledger.reserve(plan, "e2", 200).await.unwrap_err();
        assert_canon(err, ErrorCode::BudgetExceeded);
        let err = ledger.settle(plan, "e2", 700).await.unwrap_err();
        assert_canon(err, ErrorCode::BudgetExceeded);
        let err = ledger.set_budget(plan, Some(800)).await.unwrap_err();
        assert_canon(err, ErrorCode::BudgetExceeded);

        let err = ledger.settle(plan, "e1", 1).await.unwrap_err();
        assert!(
            assert_canon(err, ErrorCode::Ledger)
                .message()
                .contains("already settled")
        );
        let err = ledger.reserve(plan, "ghost", 1).await.unwrap_err();
        assert!(
            assert_canon(err, ErrorCode::Ledger)
                .message()
                .contains("unknown execution")
        );
        ledger
            .record_start(&start("elsewhere", "e3"))
            .await
            .unwrap();
        let err = ledger.reserve(plan, "e3", 1).await.unwrap_err();
        assert!(
            assert_canon(err, ErrorCode::Ledger)
                .message()
                .contains("belongs to plan")
        );

        ledger.settle(plan, "e2", 600).await.unwrap();
        let state = ledger.plan(plan).await.unwrap().unwrap();
        assert_eq!(
            (state.reserved_micro_usd, state.spent_micro_usd),
            (0, 1_000)
        );
        assert_eq!(state.available_micro_usd(), Some(0));
        ledger.set_budget(plan, None).await.unwrap();
        ledger.record_start(&start(plan, "e4")).await.unwrap();
        ledger.reserve(plan, "e4", 1_000_000).await.unwrap();
        assert!(ledger.verify_chain(plan).await.unwrap().is_valid());
    }

    pub(crate) async fn the_database_enforces_budget_and_chain_constraints(db: &TestDb) {
        let ledger = db.ledger().await;
        ledger.set_budget("p", Some(100)).await.unwrap();
        ledger.record_start(&start("p", "e1")).await.unwrap();
        ledger.reserve("p", "e1", 60).await.unwrap();
        let raw = db.raw().await;
        let check = Violation::Check;
        assert_violation(
            exec(
                &raw,
                "UPDATE plans SET reserved_micro_usd = -1 WHERE key = 'p'",
            )
            .await,
            check,
            "negative reserved",
        );
        assert_violation(
            exec(
                &raw,
                "UPDATE plans SET spent_micro_usd = -5 WHERE key = 'p'",
            )
            .await,
            check,
            "negative spent",
        );
        assert_violation(
            exec(
                &raw,
                "UPDATE plans SET spent_micro_usd = 41 WHERE key = 'p'",
            )
            .await,
            check,
            "reserved + spent over budget",
        );
        assert_violation(
            exec(
                &raw,
                "UPDATE plans SET budget_micro_usd = 59 WHERE key = 'p'",
            )
            .await,
            check,
            "budget under reserved",
        );
        assert_violation(
            exec(
                &raw,
                "UPDATE executions SET reserved_micro_usd = -1 WHERE execution_id = 'e1'",
            )
            .await,
            check,
            "negative execution reservation",
        );
        assert_violation(
            exec(
                &raw,
                "UPDATE executions SET spent_micro_usd = -1 WHERE execution_id = 'e1'",
            )
            .await,
            check,
            "negative execution spend",
        );
        assert_violation(
            exec(
                &raw,
                "UPDATE events SET seq = 0 WHERE plan = 'p' AND seq = 1",
            )
            .await,
            check,
            "seq below 1",
        );
        assert_violation(
            exec(
                &raw,
                "UPDATE events SET seq = 2 WHERE plan = 'p' AND seq = 1",
            )
            .await,
            Violation::Unique,
            "duplicate (plan, seq)",
        );
        // The limits themselves are allowed.
        assert_eq!(
            exec(
                &raw,
                "UPDATE plans SET spent_micro_usd = 40 WHERE key = 'p'"
            )
            .await
            .unwrap(),
            1
        );
        assert_eq!(
            exec(
                &raw,
                "UPDATE plans SET budget_micro_usd = NULL WHERE key = 'p'"
            )
            .await
            .unwrap(),
            1
        );
    }

    pub(crate) async fn overlapping_leases_conflict_until_released(db: &TestDb) {
        let ledger = db.ledger().await;
        let minute = Duration::from_secs(60);
        let held = ledger
            .acquire_lease("p", &path("/artifacts/outputs/demo/e1/"), "e1", minute)
            .await
            .unwrap();
        assert_eq!(held.lease().holder, "e1");
        assert!(!held.lease().is_expired());

        for (selector, why) in [
            (
                "/artifacts/outputs/demo/e1/outputs/x.json",
                "exact path inside the prefix",
            ),
            (
                "/artifacts/outputs/demo/e1/outputs/",
                "prefix inside the prefix",
            ),
            ("/artifacts/outputs/demo/", "prefix covering the prefix"),
            ("/artifacts/outputs/demo/e1/", "the same prefix"),
        ] {
            let err = ledger
                .acquire_lease("p", &path(selector), "e2", minute)
                .await
                .unwrap_err();
            assert!(err.is_lease_conflict(), "{why}: {err}");
            let canon = assert_canon(err, ErrorCode::LeaseConflict);
            assert!(
                canon.message().contains("held by execution `e1`"),
                "{canon}"
            );
        }
        let sibling = ledger
            .acquire_lease("p", &path("/artifacts/outputs/demo/e2/"), "e2", minute)
            .await
            .unwrap();
        let exact = ledger
            .acquire_lease("p", &path("/artifacts/outputs/demo/e1"), "e3", minute)
            .await
            .unwrap();
        // The holder itself may lease inside its prefix and renew it.
        let inner = ledger
            .acquire_lease("p", &path("/artifacts/outputs/demo/e1/x"), "e1", minute)
            .await
            .unwrap();
        let renewed = ledger
            .acquire_lease("p", &path("/artifacts/outputs/demo/e1/"), "e1", minute)
            .await
            .unwrap();
        assert_eq!(ledger.leases().await.unwrap().len(), 4);

        assert!(held.release().await.unwrap());
        assert!(
            !renewed.release().await.unwrap(),
            "already released through the first guard"
        );
        assert!(inner.release().await.unwrap());
        let taken = ledger
            .acquire_lease("p", &path("/artifacts/outputs/demo/e1/"), "e2", minute)
            .await
            .unwrap();
        assert_eq!(taken.lease().holder, "e2");
        for guard in [taken, sibling, exact] {
            assert!(guard.release().await.unwrap());
        }
        assert!(ledger.leases().await.unwrap().is_empty());
        let report = ledger.verify_chain("p").await.unwrap();
        assert!(report.is_valid(), "{report:?}");
        let kinds: Vec<_> = ledger
            .events("p", 0, 100)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| e.kind())
            .collect();
        let count = |kind| kinds.iter().filter(|k| **k == kind).count();
        assert_eq!(
            (
                count(EventKind::LeaseAcquire),
                count(EventKind::LeaseRelease)
            ),
            (6, 5)
        );
    }

    pub(crate) async fn expired_leases_are_taken_over_and_dropped_guards_release(db: &TestDb) {
        let ledger = db.ledger().await;
        let prefix = path("/artifacts/outputs/crashed/");
        // A zero TTL has expired by the time anyone else looks: a crashed holder.
        let crashed = ledger
            .acquire_lease("p", &prefix, "e1", Duration::ZERO)
            .await
            .unwrap();
        assert!(crashed.lease().is_expired());
        let successor = ledger
            .acquire_lease(
                "p",
                &path("/artifacts/outputs/crashed/e2/"),
                "e2",
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let takeover = ledger
            .events("p", 0, 10)
            .await
            .unwrap()
            .pop()
            .unwrap()
            .ledger_event()
            .unwrap();
        let LedgerEvent::LeaseAcquire(takeover) = takeover else {
            panic!("not a lease acquisition: {takeover:?}");
        };
        assert_eq!(takeover.taken_over[0].holder, "e1");
        assert_eq!(
            takeover.taken_over[0].selector.as_str(),
            "/artifacts/outputs/crashed/"
        );
        assert!(
            !crashed.release().await.unwrap(),
            "the expired lease was taken over"
        );
        assert!(!ledger.release_lease(&prefix, "e1").await.unwrap());
        assert!(successor.release().await.unwrap());

        {
            let _guard = ledger
                .acquire_lease(
                    "p",
                    &path("/artifacts/outputs/dropped/"),
                    "e3",
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
            // Leaves the scope without an explicit release, as an early return or error would.
        }
        ledger.wait_for_dropped_leases().await;
        assert!(ledger.leases().await.unwrap().is_empty());
        let released = ledger
            .events("p", 0, 100)
            .await
            .unwrap()
            .pop()
            .unwrap()
            .ledger_event()
            .unwrap();
        let LedgerEvent::LeaseRelease(released) = released else {
            panic!("not a lease release: {released:?}");
        };
        assert_eq!(released.reason, LeaseReleaseReason::Dropped);
        ledger
            .acquire_lease(
                "p",
                &path("/artifacts/outputs/dropped/"),
                "e4",
                Duration::from_secs(60),
            )
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        assert!(ledger.verify_chain("p").await.unwrap().is_valid());
    }

    pub(crate) async fn executions_of_dead_owners_are_settled_and_live_ones_left_alone(
        db: &TestDb,
    ) {
        let plan = "recover";
        let here = proctor_ledger::this_process().unwrap();
        let owners = [
            ("dead", dead_owner(&here), Mode::Real),
            (
                "elsewhere",
                ExecutionOwner {
                    hostname: format!("{}-elsewhere", here.hostname),
                    ..here.clone()
                },
                Mode::Mock,
            ),
            ("live", here.clone(), Mode::Mock),
            (
                "reused-pid",
                ExecutionOwner {
                    start_time: here.start_time + 1,
                    ..here.clone()
                },
                Mode::Mock,
            ),
        ];
        let prefix = |id: &str| path(&format!("/artifacts/outputs/demo/{id}/"));
        // The owners record, reserve and lease, then vanish without releasing anything.
        let owners_ledger = db.ledger().await;
        owners_ledger.set_budget(plan, Some(1_000)).await.unwrap();
        for (id, owner, mode) in &owners {
            let execution = ExecutionStart {
                owner: Some(owner.clone()),
                mode: *mode,
                ..start(plan, id)
            };
            owners_ledger.record_start(&execution).await.unwrap();
            owners_ledger.reserve(plan, id, 200).await.unwrap();
            let lease = owners_ledger
                .acquire_lease(plan, &prefix(id), id, Duration::from_secs(600))
                .await
                .unwrap();
            std::mem::forget(lease);
        }
        owners_ledger.close().await;

        let ledger = db.ledger().await;
        ledger.record_start(&start(plan, "next")).await.unwrap();
        let refused = ledger.reserve(plan, "next", 300).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::BudgetExceeded, "{refused}");

        let settled = ledger.recover_abandoned(Some(plan), &here).await.unwrap();
        let ids: Vec<&str> = settled.iter().map(|s| s.execution_id.as_str()).collect();
        assert_eq!(ids, ["dead", "reused-pid"]);
        for (done, spent) in settled.iter().zip([200, 0]) {
            assert_eq!(done.released_leases, [prefix(&done.execution_id)]);
            assert_eq!(done.released_micro_usd, 200);
            assert_eq!(
                done.spent_micro_usd, spent,
                "a real run spends its reservation"
            );
            assert_eq!(done.error.code, ErrorCode::Abandoned);
            assert!(
                done.error
                    .message
                    .starts_with("execution abandoned: process "),
                "{}",
                done.error.message
            );
            let execution = ledger.execution(&done.execution_id).await.unwrap().unwrap();
            assert_eq!(execution.status, ExecutionStatus::Failure);
            assert_eq!(execution.error_code.as_deref(), Some("ERR_ABANDONED"));
            let kinds: Vec<_> = ledger
                .events_for_execution(&done.execution_id)
                .await
                .unwrap()
                .iter()
                .filter_map(|event| event.kind())
                .collect();
            assert_eq!(
                kinds[kinds.len() - 3..],
                [
                    EventKind::LeaseRelease,
                    EventKind::BudgetSettle,
                    EventKind::ExecutionSettleFailure
                ]
            );
        }
        let release = ledger
            .events_for_execution("dead")
            .await
            .unwrap()
            .into_iter()
            .find(|event| event.kind() == Some(EventKind::LeaseRelease))
            .unwrap();
        let LedgerEvent::LeaseRelease(release) = release.ledger_event().unwrap() else {
            panic!("not a release");
        };
        assert_eq!(release.reason, LeaseReleaseReason::Recovered);
        for alive in ["live", "elsewhere"] {
            let execution = ledger.execution(alive).await.unwrap().unwrap();
            assert_eq!(execution.status, ExecutionStatus::Running, "{alive}");
        }
        let held: Vec<String> = ledger
            .leases()
            .await
            .unwrap()
            .into_iter()
            .map(|lease| lease.holder)
            .collect();
        assert_eq!(held, ["elsewhere", "live"]);
        let budget = ledger.plan(plan).await.unwrap().unwrap();
        assert_eq!(
            (budget.reserved_micro_usd, budget.spent_micro_usd),
            (400, 200)
        );
        let chain = ledger.verify_chain(plan).await.unwrap();
        assert!(chain.is_valid(), "{chain:?}");
        assert!(
            ledger
                .recover_abandoned(None, &here)
                .await
                .unwrap()
                .is_empty(),
            "nothing is left to recover"
        );
        ledger.reserve(plan, "next", 300).await.unwrap();

        // Asked by id, another host's execution is settled; only once.
        let error = proctor_ledger::abandoned_error(None);
        let elsewhere = ledger.settle_abandoned("elsewhere", &error).await.unwrap();
        assert_eq!(elsewhere.unwrap().released_leases, [prefix("elsewhere")]);
        assert_eq!(
            ledger.settle_abandoned("elsewhere", &error).await.unwrap(),
            None
        );
        let unknown = ledger.settle_abandoned("nobody", &error).await.unwrap_err();
        assert_eq!(unknown.code(), ErrorCode::Ledger);
        let chain = ledger.verify_chain(plan).await.unwrap();
        assert!(chain.is_valid(), "{chain:?}");
        ledger.close().await;
    }
}
