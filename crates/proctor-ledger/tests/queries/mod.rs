//! The browsing reads, on both backends: executions filtered and paged newest first with
//! their total, plans with their execution counts, and plan heads.

use proctor_contract::{CanonError, ErrorCode};
use proctor_ledger::{
    ErrorCodeFilter, ExecutionQuery, ExecutionSettle, ExecutionStatus, Ledger, Outcome,
};

use crate::support::TestDb;
use crate::{exec, failure, start, success};

/// Generates one test per backend for each function of this module.
macro_rules! queries_on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::new(crate::support::Kind::Sqlite).await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::new(crate::support::Kind::Postgres).await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

queries_on_both_backends!(
    executions_are_filtered_and_paged_newest_first,
    plans_count_their_executions_and_report_their_heads,
);

fn interrupted(execution_id: &str) -> ExecutionSettle {
    ExecutionSettle {
        outcome: Outcome::Failure(CanonError::new(ErrorCode::Interrupted, "cancelled")),
        ..failure(execution_id)
    }
}

/// Records on plan `a`: `a1` succeeded, `a2` failed, `a3` interrupted, `a4` running; on plan
/// `b`: `b1` succeeded. Their starts are set one minute apart, `a1` first.
async fn record_five(db: &TestDb, ledger: &Ledger) {
    for (plan, id) in [
        ("a", "a1"),
        ("a", "a2"),
        ("a", "a3"),
        ("a", "a4"),
        ("b", "b1"),
    ] {
        ledger.record_start(&start(plan, id)).await.unwrap();
    }
    ledger.record_settle(&success("a1")).await.unwrap();
    ledger.record_settle(&failure("a2")).await.unwrap();
    ledger.record_settle(&interrupted("a3")).await.unwrap();
    ledger.record_settle(&success("b1")).await.unwrap();
    let raw = db.raw().await;
    for (minute, id) in ["a1", "a2", "a3", "a4", "b1"].iter().enumerate() {
        let sql = format!(
            "UPDATE executions SET started_at = '2026-03-01T10:0{minute}:00.000Z' \
             WHERE execution_id = '{id}'"
        );
        assert_eq!(exec(&raw, &sql).await.unwrap(), 1);
    }
}

fn ids(page: &proctor_ledger::ExecutionPage) -> Vec<&str> {
    page.executions
        .iter()
        .map(|e| e.execution_id.as_str())
        .collect()
}

pub(crate) async fn executions_are_filtered_and_paged_newest_first(db: &TestDb) {
    let ledger = db.ledger().await;
    record_five(db, &ledger).await;
    let all = ExecutionQuery {
        limit: 50,
        ..ExecutionQuery::default()
    };
    let page = ledger.list_executions(&all).await.unwrap();
    assert_eq!(ids(&page), ["b1", "a4", "a3", "a2", "a1"]);
    assert_eq!(page.total, 5);

    let second_page = ExecutionQuery {
        limit: 2,
        offset: 2,
        ..all.clone()
    };
    let page = ledger.list_executions(&second_page).await.unwrap();
    assert_eq!((ids(&page), page.total), (vec!["a3", "a2"], 5));

    let query = |edit: &dyn Fn(&mut ExecutionQuery)| {
        let mut query = all.clone();
        edit(&mut query);
        query
    };
    let cases: Vec<(ExecutionQuery, Vec<&str>)> = vec![
        (
            query(&|q| q.plan = Some("a".to_owned())),
            vec!["a4", "a3", "a2", "a1"],
        ),
        (
            query(&|q| q.status = Some(ExecutionStatus::Success)),
            vec!["b1", "a1"],
        ),
        (
            query(&|q| q.status = Some(ExecutionStatus::Running)),
            vec!["a4"],
        ),
        (
            query(&|q| {
                q.status = Some(ExecutionStatus::Failure);
                q.error_code = Some(ErrorCodeFilter::IsNot(ErrorCode::Interrupted));
            }),
            vec!["a2"],
        ),
        (
            query(&|q| q.error_code = Some(ErrorCodeFilter::Is(ErrorCode::Interrupted))),
            vec!["a3"],
        ),
        (
            query(&|q| q.processor_ref = Some("llm/litellm@1".to_owned())),
            vec!["b1", "a4", "a3", "a2", "a1"],
        ),
        (
            query(&|q| q.processor_ref = Some("text/stats@1".to_owned())),
            vec![],
        ),
        (
            // Since is inclusive, until exclusive; offsets are normalized first.
            query(&|q| {
                q.since = Some("2026-03-01T11:01:00+01:00".to_owned());
                q.until = Some("2026-03-01T10:03:00Z".to_owned());
            }),
            vec!["a3", "a2"],
        ),
    ];
    for (query, want) in cases {
        let page = ledger.list_executions(&query).await.unwrap();
        assert_eq!(ids(&page), want, "{query:?}");
        assert_eq!(page.total, want.len() as u64, "{query:?}");
    }

    let bad = query(&|q| q.since = Some("yesterday".to_owned()));
    let err = ledger.list_executions(&bad).await.unwrap_err().to_canon();
    assert_eq!(err.code(), ErrorCode::Inputs);
    assert!(err.message().contains("`since`"), "{err}");
}

pub(crate) async fn plans_count_their_executions_and_report_their_heads(db: &TestDb) {
    let ledger = db.ledger().await;
    assert!(ledger.plan_summaries().await.unwrap().is_empty());
    assert!(ledger.plan_heads().await.unwrap().is_empty());
    record_five(db, &ledger).await;
    ledger.set_budget("c", Some(1_000)).await.unwrap();
    let summaries = ledger.plan_summaries().await.unwrap();
    let counted: Vec<(&str, u64, Option<u64>)> = summaries
        .iter()
        .map(|s| (s.plan.key.as_str(), s.executions, s.plan.budget_micro_usd))
        .collect();
    assert_eq!(
        counted,
        [("a", 4, None), ("b", 1, None), ("c", 0, Some(1_000))]
    );
    let heads: Vec<(String, u64)> = ledger
        .plan_heads()
        .await
        .unwrap()
        .into_iter()
        .map(|head| (head.plan, head.head_seq))
        .collect();
    let plans = ledger.plans().await.unwrap();
    assert_eq!(
        heads,
        plans
            .iter()
            .map(|p| (p.key.clone(), p.head_seq))
            .collect::<Vec<_>>()
    );
    // Four starts and four settles on `a`, one start and one settle on `b`, one budget on `c`.
    assert_eq!(
        heads,
        [
            ("a".to_owned(), 7),
            ("b".to_owned(), 2),
            ("c".to_owned(), 1)
        ]
    );
    assert!(ledger.verify_chain("a").await.unwrap().is_valid());
}
