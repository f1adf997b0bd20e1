//! Group commit, on both backends: concurrent writers of one handle (and of a second
//! handle, as another process would be) share transactions, every plan's chain stays
//! gap-free and verifiable with its tables in step, and a member refused inside its group
//! gets its own error while the rest of the group commits.

use std::time::Duration;

use proctor_contract::{ErrorCode, EventKind, OutputEntry};
use proctor_ledger::{ExecutionStatus, Ledger, LedgerError};

use crate::support::{Kind, TestDb};
use crate::{assert_canon, check_event, failure, path, start, success};

/// Generates one test per backend for each function of this module.
macro_rules! group_commit_on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::new(crate::support::Kind::Sqlite).await;
                    super::$name(&db, crate::support::Kind::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::new(crate::support::Kind::Postgres).await;
                    super::$name(&db, crate::support::Kind::Postgres).await;
                }
            )*
        }
    };
}

group_commit_on_both_backends!(
    concurrent_executions_keep_every_chain_and_table_in_step,
    a_refused_member_does_not_fail_its_group,
    an_execution_is_settled_with_its_budget_in_one_write,
);

const PLANS: usize = 3;
const WRITERS: usize = 12;
const EXECUTIONS_PER_WRITER: usize = 12;
const BUDGET: u64 = 1_000_000;
const RESERVED: u64 = 100;
/// The execution of each writer whose reservation passes the budget.
const REFUSED: usize = 7;

fn output(execution_id: &str, name: &str) -> OutputEntry {
    OutputEntry {
        path: path(&format!(
            "/artifacts/outputs/demo/{execution_id}/outputs/{name}"
        )),
        cid: proctor_contract::cid(name.as_bytes()),
        size_bytes: 3,
        mime: "text/plain".to_owned(),
    }
}

/// Records `count` executions of `writer` on `plan` the way the engine does: start,
/// reserve, lease, outputs, release, budget settle, settle; one of them is refused its
/// reservation and settled as a failure. Gives what the writer spent.
async fn record_executions(ledger: Ledger, plan: String, writer: usize, count: usize) -> u64 {
    let mut spent = 0;
    for n in 0..count {
        let execution_id = format!("w{writer}-e{n}");
        ledger
            .record_start(&start(&plan, &execution_id))
            .await
            .unwrap();
        if n == REFUSED {
            let err = ledger
                .reserve(&plan, &execution_id, BUDGET + 1)
                .await
                .unwrap_err();
            assert_canon(err, ErrorCode::BudgetExceeded);
            ledger.settle(&plan, &execution_id, 0).await.unwrap();
            ledger.record_settle(&failure(&execution_id)).await.unwrap();
            continue;
        }
        ledger
            .reserve(&plan, &execution_id, RESERVED)
            .await
            .unwrap();
        let prefix = path(&format!("/artifacts/outputs/demo/{execution_id}/"));
        let lease = ledger
            .acquire_lease(&plan, &prefix, &execution_id, Duration::from_secs(600))
            .await
            .unwrap();
        let outputs = [
            proctor_ledger::NewEvent::artifact_produce(&execution_id, &output(&execution_id, "a")),
            proctor_ledger::NewEvent::artifact_produce(&execution_id, &output(&execution_id, "b")),
        ];
        let appended = ledger.append_batch(&plan, &outputs).await.unwrap();
        assert_eq!(
            appended[1].seq,
            appended[0].seq + 1,
            "a batch is consecutive"
        );
        ledger
            .append(&plan, &check_event(&execution_id, n))
            .await
            .unwrap();
        assert!(lease.release().await.unwrap());
        let actual = if n % 2 == 0 { RESERVED / 2 } else { 0 };
        ledger.settle(&plan, &execution_id, actual).await.unwrap();
        spent += actual;
        let settle = if n % 3 == 0 {
            failure(&execution_id)
        } else {
            success(&execution_id)
        };
        ledger.record_settle(&settle).await.unwrap();
    }
    spent
}

pub(crate) async fn concurrent_executions_keep_every_chain_and_table_in_step(
    db: &TestDb,
    _kind: Kind,
) {
    let ledger = db.ledger().await;
    // A second handle writes beside the first, with its own committer, as another process.
    let other = db.ledger().await;
    let plan = |writer: usize| format!("group-{}", writer % PLANS);
    for writer in 0..PLANS {
        ledger
            .set_budget(&plan(writer), Some(BUDGET))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let handle = if writer % 4 == 3 { &other } else { &ledger };
            tokio::spawn(record_executions(
                handle.clone(),
                plan(writer),
                writer,
                EXECUTIONS_PER_WRITER,
            ))
        })
        .collect();
    let mut spent = [0u64; PLANS];
    for (writer, task) in tasks.into_iter().enumerate() {
        spent[writer % PLANS] += task.await.unwrap();
    }
    other.close().await;

    let reports = ledger.verify_all().await.unwrap();
    assert_eq!(reports.len(), PLANS);
    for report in &reports {
        assert!(report.is_valid(), "{report:?}");
        assert!(report.mismatches.is_empty(), "{report:?}");
    }
    let raw = db.raw().await;
    let writers_per_plan = (WRITERS / PLANS) as u64;
    let executions_per_plan = writers_per_plan * EXECUTIONS_PER_WRITER as u64;
    // budget.set, then per execution start, reserve, lease, 2 outputs, check, release,
    // budget settle, settle; the refused one has start, budget settle, settle.
    let events_per_plan = 1 + (executions_per_plan - writers_per_plan) * 9 + writers_per_plan * 3;
    for (index, spent) in spent.iter().enumerate() {
        let key = plan(index);
        let (count, min, max): (i64, i64, i64) =
            sqlx::query_as("SELECT COUNT(*), MIN(seq), MAX(seq) FROM events WHERE plan = $1")
                .bind(key.as_str())
                .fetch_one(&raw)
                .await
                .unwrap();
        assert_eq!(
            (count, min, max),
            (events_per_plan as i64, 1, events_per_plan as i64),
            "{key}: seqs gap-free"
        );
        let row = ledger.plan(&key).await.unwrap().unwrap();
        assert_eq!(row.head_seq, events_per_plan);
        assert_eq!(
            (row.reserved_micro_usd, row.spent_micro_usd),
            (0, *spent),
            "{key}"
        );
    }
    let executions: Vec<(String, String)> =
        sqlx::query_as("SELECT execution_id, status FROM executions ORDER BY execution_id")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(executions.len(), WRITERS * EXECUTIONS_PER_WRITER);
    assert!(executions.iter().all(|(_, status)| status != "running"));
    assert!(ledger.leases().await.unwrap().is_empty());
    ledger.close().await;
}

/// Holds the write lock of plan `p` from outside the ledger, so that writes queue up
/// behind it and go in one group once it is let go.
async fn hold_plan_lock(raw: &sqlx::AnyPool, kind: Kind) -> sqlx::pool::PoolConnection<sqlx::Any> {
    let mut conn = raw.acquire().await.unwrap();
    let statements: &[&str] = match kind {
        Kind::Sqlite => &["BEGIN IMMEDIATE"],
        Kind::Postgres => &["BEGIN", "SELECT key FROM plans WHERE key = 'p' FOR UPDATE"],
    };
    for statement in statements {
        sqlx::query(statement).execute(&mut *conn).await.unwrap();
    }
    conn
}

pub(crate) async fn a_refused_member_does_not_fail_its_group(db: &TestDb, kind: Kind) {
    let ledger = db.ledger().await;
    ledger.set_budget("p", Some(1_000)).await.unwrap();
    for execution_id in ["e-ok", "e-poor"] {
        ledger
            .record_start(&start("p", execution_id))
            .await
            .unwrap();
    }
    let held = ledger
        .acquire_lease(
            "p",
            &path("/artifacts/outputs/held/"),
            "holder",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let before = ledger.plan("p").await.unwrap().unwrap().head_seq;

    let raw = db.raw().await;
    let mut lock = hold_plan_lock(&raw, kind).await;
    let writes = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let intruder = path("/artifacts/outputs/held/x/");
            let (one, two, again) = (
                check_event("e-ok", 1),
                check_event("e-ok", 2),
                start("p", "e-ok"),
            );
            tokio::join!(
                ledger.append("p", &one),
                ledger.reserve("p", "e-poor", 5_000),
                ledger.reserve("p", "e-ok", 100),
                ledger.acquire_lease("p", &intruder, "intruder", Duration::from_secs(60)),
                ledger.record_start(&again),
                ledger.set_budget("p", Some(10)),
                ledger.append("p", &two),
            )
        })
    };
    // Let the writes queue up behind the lock, then let it go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    let (first, poor, ok, intruder, again, shrink, last) = writes.await.unwrap();

    let first = first.unwrap();
    assert_canon(poor.unwrap_err(), ErrorCode::BudgetExceeded);
    let ok = ok.unwrap();
    let refused: LedgerError = intruder.unwrap_err();
    assert_canon(refused, ErrorCode::LeaseConflict);
    let canon = assert_canon(again.unwrap_err(), ErrorCode::Ledger);
    assert!(canon.message().contains("already recorded"), "{canon}");
    let canon = assert_canon(shrink.unwrap_err(), ErrorCode::BudgetExceeded);
    assert!(canon.message().contains("100 already reserved"), "{canon}");
    let last = last.unwrap();
    assert_eq!(
        [first.seq, ok.seq, last.seq],
        [before + 1, before + 2, before + 3],
        "the members that went in are consecutive, in arrival order"
    );

    let plan = ledger.plan("p").await.unwrap().unwrap();
    assert_eq!(
        (
            plan.head_seq,
            plan.reserved_micro_usd,
            plan.budget_micro_usd
        ),
        (before + 3, 100, Some(1_000))
    );
    let ok = ledger.execution("e-ok").await.unwrap().unwrap();
    assert_eq!(
        (ok.status, ok.reserved_micro_usd),
        (ExecutionStatus::Running, 100)
    );
    assert_eq!(
        ledger
            .execution("e-poor")
            .await
            .unwrap()
            .unwrap()
            .reserved_micro_usd,
        0
    );
    assert_eq!(ledger.leases().await.unwrap().len(), 1);
    assert!(held.release().await.unwrap());
    let report = ledger.verify_chain("p").await.unwrap();
    assert!(
        report.is_valid() && report.mismatches.is_empty(),
        "{report:?}"
    );
    ledger.close().await;
}

pub(crate) async fn an_execution_is_settled_with_its_budget_in_one_write(db: &TestDb, _kind: Kind) {
    let ledger = db.ledger().await;
    ledger.set_budget("p", Some(1_000)).await.unwrap();
    for execution_id in ["e1", "e2"] {
        ledger
            .record_start(&start("p", execution_id))
            .await
            .unwrap();
        ledger.reserve("p", execution_id, 400).await.unwrap();
    }

    let settled = ledger
        .settle_execution("p", 300, &success("e1"))
        .await
        .unwrap();
    let events = ledger.events("p", settled.seq - 2, 10).await.unwrap();
    let kinds: Vec<_> = events.iter().filter_map(|event| event.kind()).collect();
    assert_eq!(
        kinds,
        [EventKind::BudgetSettle, EventKind::ExecutionSettleSuccess],
        "the budget settle, then the end, consecutive"
    );
    let e1 = ledger.execution("e1").await.unwrap().unwrap();
    assert_eq!(
        (e1.status, e1.reserved_micro_usd, e1.spent_micro_usd),
        (ExecutionStatus::Success, 0, Some(300))
    );

    // A cost past the budget is refused, and the end is recorded all the same.
    let err = ledger
        .settle_execution("p", 900, &failure("e2"))
        .await
        .unwrap_err();
    assert_canon(err, ErrorCode::BudgetExceeded);
    let e2 = ledger.execution("e2").await.unwrap().unwrap();
    assert_eq!(
        (e2.status, e2.reserved_micro_usd, e2.spent_micro_usd),
        (ExecutionStatus::Failure, 400, None)
    );

    // Settled twice, or on another plan: refused, and nothing is recorded.
    let head = ledger.plan("p").await.unwrap().unwrap().head_seq;
    let canon = assert_canon(
        ledger
            .settle_execution("p", 0, &success("e1"))
            .await
            .unwrap_err(),
        ErrorCode::Ledger,
    );
    assert!(canon.message().contains("already settled"), "{canon}");
    ledger.record_start(&start("p", "e3")).await.unwrap();
    let canon = assert_canon(
        ledger
            .settle_execution("q", 0, &success("e3"))
            .await
            .unwrap_err(),
        ErrorCode::Ledger,
    );
    assert!(canon.message().contains("belongs to plan `p`"), "{canon}");
    assert_eq!(ledger.plan("p").await.unwrap().unwrap().head_seq, head + 1);
    assert!(
        ledger.plan("q").await.unwrap().is_none(),
        "no plan is left behind"
    );
    let e3 = ledger.execution("e3").await.unwrap().unwrap();
    assert_eq!(e3.status, ExecutionStatus::Running);

    for report in ledger.verify_all().await.unwrap() {
        assert!(
            report.is_valid() && report.mismatches.is_empty(),
            "{report:?}"
        );
    }
    ledger.close().await;
}
