//! The memo index and memo hits.
//!
//! A successful execution whose evidence is in the World's store is recorded with its memo
//! key ([`Ledger::record_memo_key`]) in the `memo_keys` table, an index beside the chain:
//! [`Ledger::memo_sources`] finds the successful executions of a key, newest first, with
//! the settle event that ties their files to the chain, in one indexed query. The caller
//! checks a candidate's evidence before using it; the index itself proves nothing.
//!
//! A run answered by such a source is recorded by [`Ledger::record_memo_hit`] as one
//! `execution.memo` event on the run's plan, carrying the hit's own id and naming the
//! source. A hit is not an execution: it has no execution row, no start or settle, no
//! reservation and no lease, so chain verification replays it as an event that keeps no
//! table in step, and recovery (which settles `running` rows) never sees one.

use proctor_contract::{EventKind, ExecutionMemoEvent, ExecutionSuccessEvent, LedgerEvent};
use sqlx::Row;

use crate::error::{LedgerError, Result};
use crate::event::{Appended, Event, NewEvent, decode_payload};
use crate::group::Write;
use crate::ledger::{Ledger, text};

/// A successful execution recorded under a memo key: a candidate source for a memo hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoSource {
    /// The execution.
    pub execution_id: String,
    /// The plan that records it.
    pub plan: String,
    /// Its expanded write prefix.
    pub write_prefix: String,
    /// What its `execution.settle.success` event recorded (index path, content ids).
    pub settled: ExecutionSuccessEvent,
}

/// A memo hit, as its `execution.memo` event recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoHit {
    /// The event as stored (plan, seq, hashes).
    pub event: Event,
    /// Its typed payload.
    pub memo: ExecutionMemoEvent,
}

impl Ledger {
    /// Records `memo_key` for `execution_id`, which must be settled as a success; recording
    /// the same execution again changes nothing. An unknown or unsuccessful execution is
    /// `ERR_LEDGER`.
    pub async fn record_memo_key(&self, execution_id: &str, memo_key: &str) -> Result<()> {
        self.retrying(|| async move {
            let inserted = sqlx::query(
                "INSERT INTO memo_keys (execution_id, memo_key) SELECT execution_id, $2 \
                 FROM executions WHERE execution_id = $1 AND status = 'success' \
                 ON CONFLICT (execution_id) DO NOTHING",
            )
            .bind(execution_id)
            .bind(memo_key)
            .execute(self.pool())
            .await
            .map_err(|e| {
                LedgerError::database(format!("recording the memo key of `{execution_id}`"), e)
            })?;
            if inserted.rows_affected() == 0 && !self.has_memo_key(execution_id).await? {
                return Err(LedgerError::ledger(format!(
                    "execution `{execution_id}` is not settled as a success: it has no memo key"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn has_memo_key(&self, execution_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS found FROM memo_keys WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| LedgerError::database("reading the memo keys", e))?;
        Ok(row.is_some())
    }

    /// Up to `limit` successful executions recorded under `memo_key`, newest settle first,
    /// each with its success settle event's record.
    pub async fn memo_sources(&self, memo_key: &str, limit: u32) -> Result<Vec<MemoSource>> {
        let rows = sqlx::query(
            "SELECT m.execution_id, x.plan, x.write_prefix, ev.payload \
             FROM memo_keys m \
             JOIN executions x ON x.execution_id = m.execution_id \
             JOIN events ev ON ev.execution_id = m.execution_id AND ev.plan = x.plan \
             WHERE m.memo_key = $1 AND x.status = 'success' \
             AND ev.kind = 'execution.settle.success' \
             ORDER BY x.settled_at DESC, m.execution_id LIMIT $2",
        )
        .bind(memo_key)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(|e| LedgerError::database("looking up a memo key", e))?;
        rows.iter()
            .map(|row| {
                let execution_id = text(row, "execution_id")?;
                let payload: String = row
                    .try_get("payload")
                    .map_err(|e| LedgerError::database("reading a settle event", e))?;
                let settled = match decode_payload(&payload).map(|decoded| decoded.event) {
                    Ok(LedgerEvent::ExecutionSettleSuccess(settled)) => settled,
                    Ok(other) => {
                        return Err(LedgerError::ledger(format!(
                            "the settle event of `{execution_id}` is `{}`",
                            other.kind()
                        )));
                    }
                    Err(why) => {
                        return Err(LedgerError::ledger(format!(
                            "the settle event of `{execution_id}` does not decode: {why}"
                        )));
                    }
                };
                Ok(MemoSource {
                    plan: text(row, "plan")?,
                    write_prefix: text(row, "write_prefix")?,
                    execution_id,
                    settled,
                })
            })
            .collect()
    }

    /// Records a memo hit: `execution.memo` for `hit_id` on `plan` (created if needed),
    /// committed with the ledger's other writes. An id already recorded (an execution or
    /// another event) is `ERR_LEDGER`.
    pub async fn record_memo_hit(
        &self,
        plan: &str,
        hit_id: &str,
        memo: &ExecutionMemoEvent,
    ) -> Result<Appended> {
        let known = sqlx::query(
            "SELECT 1 AS found FROM executions WHERE execution_id = $1 \
             UNION ALL SELECT 1 AS found FROM events WHERE execution_id = $1",
        )
        .bind(hit_id)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| LedgerError::database(format!("reading execution `{hit_id}`"), e))?;
        if known.is_some() {
            return Err(LedgerError::ledger(format!(
                "execution `{hit_id}` is already recorded"
            )));
        }
        let event = NewEvent::internal(Some(hit_id), LedgerEvent::ExecutionMemo(memo.clone()));
        self.write(Write::Append {
            plan: plan.to_owned(),
            events: vec![event],
        })
        .await?
        .events()?
        .pop()
        .ok_or_else(|| LedgerError::ledger("recording a memo hit appended no event"))
    }

    /// The memo hit `hit_id`, if one is recorded.
    pub async fn memo_hit(&self, hit_id: &str) -> Result<Option<MemoHit>> {
        for event in self.events_for_execution(hit_id).await? {
            if event.kind() == Some(EventKind::ExecutionMemo)
                && let LedgerEvent::ExecutionMemo(memo) = event.ledger_event()?
            {
                return Ok(Some(MemoHit { event, memo }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use proctor_contract::{CanonError, ErrorCode, Mode};

    use super::*;
    use crate::{ExecutionSettle, ExecutionStart, Outcome};

    async fn ledger(dir: &tempfile::TempDir) -> Ledger {
        Ledger::open(&format!("sqlite://{}/ledger.db", dir.path().display()))
            .await
            .unwrap()
    }

    async fn settled(ledger: &Ledger, execution_id: &str, outcome: Outcome) {
        ledger
            .record_start(&ExecutionStart {
                execution_id: execution_id.to_owned(),
                plan: "p".to_owned(),
                processor_ref: "text/stats@1".to_owned(),
                mode: Mode::Mock,
                write_prefix: format!("/artifacts/o/{execution_id}/"),
                image_digest: Some("sha256:ab".to_owned()),
                owner: None,
            })
            .await
            .unwrap();
        ledger
            .record_settle(&ExecutionSettle {
                execution_id: execution_id.to_owned(),
                outcome,
                image_digest: Some("sha256:ab".to_owned()),
                duration_ms: 1,
            })
            .await
            .unwrap();
    }

    fn success(execution_id: &str) -> Outcome {
        Outcome::Success {
            index_path: format!("/artifacts/o/{execution_id}/outputs.json"),
            outputs_index_cid: format!("b3:index-{execution_id}"),
            receipt_cid: Some(format!("b3:receipt-{execution_id}")),
        }
    }

    fn memo(source: &MemoSource) -> ExecutionMemoEvent {
        ExecutionMemoEvent {
            processor_ref: "text/stats@1".to_owned(),
            mode: Mode::Mock,
            image_digest: "sha256:ab".to_owned(),
            inputs_hash: "00".to_owned(),
            memo_key: "b3:key".to_owned(),
            source_execution_id: source.execution_id.clone(),
            source_plan: source.plan.clone(),
            index_path: source.settled.index_path.clone(),
            outputs_index_cid: source.settled.outputs_index_cid.clone(),
            receipt_cid: source.settled.receipt_cid.clone().unwrap_or_default(),
        }
    }

    #[tokio::test]
    async fn successes_are_found_by_key_newest_first_with_their_settle_record() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir).await;
        settled(&ledger, "e1", success("e1")).await;
        settled(&ledger, "e2", success("e2")).await;
        settled(&ledger, "other", success("other")).await;
        for (execution_id, key) in [("e1", "b3:key"), ("e2", "b3:key"), ("other", "b3:else")] {
            ledger.record_memo_key(execution_id, key).await.unwrap();
        }
        // Recording again changes nothing.
        ledger.record_memo_key("e1", "b3:key").await.unwrap();
        let found = ledger.memo_sources("b3:key", 8).await.unwrap();
        let ids: Vec<&str> = found.iter().map(|s| s.execution_id.as_str()).collect();
        assert_eq!(ids, ["e2", "e1"]);
        assert_eq!(found[0].plan, "p");
        assert_eq!(found[0].write_prefix, "/artifacts/o/e2/");
        assert_eq!(found[0].settled.outputs_index_cid, "b3:index-e2");
        assert_eq!(
            found[0].settled.receipt_cid.as_deref(),
            Some("b3:receipt-e2")
        );
        assert_eq!(ledger.memo_sources("b3:key", 1).await.unwrap().len(), 1);
        assert!(ledger.memo_sources("b3:none", 8).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn failures_and_unknown_executions_get_no_memo_key() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir).await;
        let failed = CanonError::new(ErrorCode::Provider, "boom");
        settled(&ledger, "f1", Outcome::Failure(failed)).await;
        for execution_id in ["f1", "nope"] {
            let err = ledger
                .record_memo_key(execution_id, "b3:key")
                .await
                .unwrap_err()
                .to_canon();
            assert_eq!(err.code(), ErrorCode::Ledger);
            assert!(err.message().contains("not settled as a success"), "{err}");
        }
        assert!(ledger.memo_sources("b3:key", 8).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_hit_is_one_event_without_an_execution_row_and_the_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir).await;
        settled(&ledger, "e1", success("e1")).await;
        ledger.record_memo_key("e1", "b3:key").await.unwrap();
        let source = ledger.memo_sources("b3:key", 1).await.unwrap().remove(0);
        let appended = ledger
            .record_memo_hit("q", "h1", &memo(&source))
            .await
            .unwrap();
        assert_eq!(appended.seq, 1);
        let hit = ledger.memo_hit("h1").await.unwrap().unwrap();
        assert_eq!(hit.event.plan, "q");
        assert_eq!(hit.event.kind_name, "execution.memo");
        assert_eq!(hit.memo, memo(&source));
        assert!(ledger.execution("h1").await.unwrap().is_none());
        assert!(ledger.memo_hit("e1").await.unwrap().is_none());
        for plan in ["p", "q"] {
            let report = ledger.verify_chain(plan).await.unwrap();
            assert!(report.is_valid(), "{report:?}");
        }
        let plan = ledger.plan("q").await.unwrap().unwrap();
        assert_eq!((plan.reserved_micro_usd, plan.spent_micro_usd), (0, 0));
        // A hit is never a source, and an id is recorded once.
        assert!(ledger.record_memo_key("h1", "b3:key").await.is_err());
        for id in ["h1", "e1"] {
            let err = ledger
                .record_memo_hit("q", id, &memo(&source))
                .await
                .unwrap_err()
                .to_canon();
            assert!(err.message().contains("already recorded"), "{err}");
        }
    }

    #[test]
    fn the_memo_keys_table_is_the_same_on_both_backends() {
        let sqlite = include_str!("../migrations/sqlite/0003_memo_keys.sql");
        let postgres = include_str!("../migrations/postgres/0003_memo_keys.sql");
        let dialect_free = sqlite
            .replace(") STRICT;", ");")
            .replace("postgres/0003", "sqlite/0003");
        assert_eq!(dialect_free, postgres);
    }
}
