//! Executions as `proctor run` records them: a row per execution, written together with
//! its `execution.start` and `execution.settle.*` events in one transaction.

use proctor_contract::{CanonError, Mode};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::error::{LedgerError, Result};
use crate::event::{Appended, Event, EventKind, NewEvent, object};
use crate::ledger::{Ledger, Locks, from_db, optional_text, text};
use crate::verify::ChainReport;

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Started, not settled.
    Running,
    /// Settled with a success envelope.
    Success,
    /// Settled with a canonical error.
    Failure,
}

impl ExecutionStatus {
    /// `running`, `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Success => "success",
            ExecutionStatus::Failure => "failure",
        }
    }

    fn parse(value: &str) -> Result<ExecutionStatus> {
        match value {
            "running" => Ok(ExecutionStatus::Running),
            "success" => Ok(ExecutionStatus::Success),
            "failure" => Ok(ExecutionStatus::Failure),
            other => Err(LedgerError::ledger(format!(
                "unknown execution status `{other}`"
            ))),
        }
    }
}

/// What `proctor run` knows when it records an execution's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionStart {
    /// The execution id.
    pub execution_id: String,
    /// The plan it runs under.
    pub plan: String,
    /// The processor ref, `ns/name@version`.
    pub processor_ref: String,
    /// `mock` or `real`.
    pub mode: Mode,
    /// The expanded write prefix (ending in `/`).
    pub write_prefix: String,
    /// The image digest, when already known.
    pub image_digest: Option<String>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A success envelope: where its index is, and the content ids of the index and the
    /// receipt bytes (`b3:…`), so `proctor verify` can tie the files to the ledger.
    Success {
        /// The envelope's `index_path`.
        index_path: String,
        /// `cid` of the `outputs.json` bytes.
        outputs_index_cid: String,
        /// `cid` of the `receipt.json` bytes; `None` when the receipt stayed where the
        /// processor ran (a remote adapter), out of the recorder's reach.
        receipt_cid: Option<String>,
    },
    /// A canonical error (its message never carries secret values).
    Failure(CanonError),
}

/// What `proctor run` knows when it settles an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSettle {
    /// The execution id.
    pub execution_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The image digest it ran (the envelope's `meta.image_digest`), when known.
    pub image_digest: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// An execution row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Execution {
    /// The execution id.
    pub execution_id: String,
    /// The plan it runs under.
    pub plan: String,
    /// The processor ref.
    pub processor_ref: String,
    /// `mock` or `real`.
    pub mode: Mode,
    /// The expanded write prefix.
    pub write_prefix: String,
    /// Where it stands.
    pub status: ExecutionStatus,
    /// The image digest, once known.
    pub image_digest: Option<String>,
    /// The canonical error code of a failure.
    pub error_code: Option<String>,
    /// Its open reservation.
    pub reserved_micro_usd: u64,
    /// Its actual cost, once its budget is settled.
    pub spent_micro_usd: Option<u64>,
    /// When its start was recorded.
    pub started_at: String,
    /// When it was settled.
    pub settled_at: Option<String>,
}

/// What the ledger holds about one execution, for `proctor verify EXECUTION_ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionEvidence {
    /// The execution row.
    pub execution: Execution,
    /// Its `execution.settle.*` event, once settled.
    pub settle_event: Option<Event>,
    /// The verification of its plan's chain.
    pub chain: ChainReport,
}

impl ExecutionEvidence {
    /// Whether the execution is settled and its settle event lies on a valid chain.
    pub fn is_settled_on_a_valid_chain(&self) -> bool {
        self.chain.is_valid() && self.settle_event.is_some()
    }
}

impl Ledger {
    /// The execution row, its settle event and its plan's verified chain; `None` for an
    /// unknown execution.
    pub async fn execution_evidence(
        &self,
        execution_id: &str,
    ) -> Result<Option<ExecutionEvidence>> {
        let Some(execution) = self.execution(execution_id).await? else {
            return Ok(None);
        };
        let settle_event = self
            .events_for_execution(execution_id)
            .await?
            .into_iter()
            .filter(|event| event.plan == execution.plan)
            .find(|event| {
                matches!(
                    event.kind(),
                    Some(EventKind::ExecutionSettleSuccess | EventKind::ExecutionSettleFailure)
                )
            });
        let chain = self.verify_chain(&execution.plan).await?;
        Ok(Some(ExecutionEvidence {
            execution,
            settle_event,
            chain,
        }))
    }

    /// Records an execution's start: its row (status `running`) and `execution.start`, in
    /// one transaction on its plan (created if needed). A known execution id is `ERR_LEDGER`.
    pub async fn record_start(&self, start: &ExecutionStart) -> Result<Appended> {
        let plan = start.plan.as_str();
        self.retrying(|| async move {
            let mut txn = self.begin_write(plan, Locks::Plan).await?;
            if fetch_execution(txn.conn(), &start.execution_id)
                .await?
                .is_some()
            {
                return Err(LedgerError::ledger(format!(
                    "execution `{}` is already recorded",
                    start.execution_id
                )));
            }
            sqlx::query(
                "INSERT INTO executions (execution_id, plan, processor_ref, mode, write_prefix, \
                 status, image_digest, started_at) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7)",
            )
            .bind(start.execution_id.as_str())
            .bind(plan)
            .bind(start.processor_ref.as_str())
            .bind(start.mode.as_str())
            .bind(start.write_prefix.as_str())
            .bind(start.image_digest.as_deref())
            .bind(txn.now.as_str().to_owned())
            .execute(txn.conn())
            .await
            .map_err(|e| {
                LedgerError::database(format!("recording execution `{}`", start.execution_id), e)
            })?;
            let mut fields = object(json!({
                "ref": start.processor_ref,
                "mode": start.mode,
                "write_prefix": start.write_prefix,
            }));
            if let Some(digest) = &start.image_digest {
                fields.insert("image_digest".to_owned(), Value::from(digest.as_str()));
            }
            let event =
                NewEvent::internal(EventKind::ExecutionStart, Some(&start.execution_id), fields);
            let appended = txn.append(&event).await?;
            txn.commit().await?;
            Ok(appended)
        })
        .await
    }

    /// Records how an execution ended: its row's status and `execution.settle.success` or
    /// `execution.settle.failure`, in one transaction on its plan. An unknown or already
    /// settled execution is `ERR_LEDGER`.
    pub async fn record_settle(&self, settle: &ExecutionSettle) -> Result<Appended> {
        let execution_id = settle.execution_id.as_str();
        let plan = self
            .execution(execution_id)
            .await?
            .ok_or_else(|| {
                LedgerError::ledger(format!(
                    "unknown execution `{execution_id}`: record its start first"
                ))
            })?
            .plan;
        let plan = plan.as_str();
        self.retrying(|| async move {
            let mut txn = self.begin_write(plan, Locks::Plan).await?;
            let execution = fetch_execution(txn.conn(), execution_id)
                .await?
                .ok_or_else(|| LedgerError::ledger(format!("unknown execution `{execution_id}`")))?;
            if execution.status != ExecutionStatus::Running {
                return Err(LedgerError::ledger(format!(
                    "execution `{execution_id}` is already settled ({})",
                    execution.status.as_str()
                )));
            }
            let (status, kind, mut fields, error_code) = match &settle.outcome {
                Outcome::Success { index_path, outputs_index_cid, receipt_cid } => {
                    let mut fields = object(json!({
                        "index_path": index_path,
                        "outputs_index_cid": outputs_index_cid,
                    }));
                    insert_optional(&mut fields, "receipt_cid", receipt_cid.as_deref());
                    (ExecutionStatus::Success, EventKind::ExecutionSettleSuccess, fields, None)
                }
                Outcome::Failure(error) => (
                    ExecutionStatus::Failure,
                    EventKind::ExecutionSettleFailure,
                    object(json!({"error": {"code": error.code(), "message": error.message()}})),
                    Some(error.code().as_str()),
                ),
            };
            let image_digest = settle.image_digest.clone().or(execution.image_digest);
            insert_optional(&mut fields, "image_digest", image_digest.as_deref());
            fields.insert("duration_ms".to_owned(), Value::from(settle.duration_ms));
            sqlx::query(
                "UPDATE executions SET status = $2, image_digest = $3, error_code = $4, settled_at = $5 \
                 WHERE execution_id = $1",
            )
            .bind(execution_id)
            .bind(status.as_str())
            .bind(image_digest.as_deref())
            .bind(error_code)
            .bind(txn.now.as_str().to_owned())
            .execute(txn.conn())
            .await
            .map_err(|e| LedgerError::database(format!("settling execution `{execution_id}`"), e))?;
            let appended = txn.append(&NewEvent::internal(kind, Some(execution_id), fields)).await?;
            txn.commit().await?;
            Ok(appended)
        })
        .await
    }

    /// The execution `execution_id`, if recorded.
    pub async fn execution(&self, execution_id: &str) -> Result<Option<Execution>> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| LedgerError::database("acquiring a connection", e))?;
        fetch_execution(&mut conn, execution_id).await
    }
}

fn insert_optional(fields: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        fields.insert(key.to_owned(), Value::from(value));
    }
}

/// Reads one execution row on `conn` (inside a transaction or not).
pub(crate) async fn fetch_execution(
    conn: &mut AnyConnection,
    execution_id: &str,
) -> Result<Option<Execution>> {
    let row = sqlx::query(
        "SELECT execution_id, plan, processor_ref, mode, write_prefix, status, image_digest, \
         error_code, reserved_micro_usd, spent_micro_usd, started_at, settled_at \
         FROM executions WHERE execution_id = $1",
    )
    .bind(execution_id)
    .fetch_optional(conn)
    .await
    .map_err(|e| LedgerError::database(format!("reading execution `{execution_id}`"), e))?;
    row.as_ref().map(execution_from_row).transpose()
}

fn execution_from_row(row: &AnyRow) -> Result<Execution> {
    use sqlx::Row;
    let mode = text(row, "mode")?;
    let spent: Option<i64> = row
        .try_get("spent_micro_usd")
        .map_err(|e| LedgerError::database("reading executions.spent_micro_usd", e))?;
    Ok(Execution {
        execution_id: text(row, "execution_id")?,
        plan: text(row, "plan")?,
        processor_ref: text(row, "processor_ref")?,
        mode: mode.parse().map_err(LedgerError::ledger)?,
        write_prefix: text(row, "write_prefix")?,
        status: ExecutionStatus::parse(&text(row, "status")?)?,
        image_digest: optional_text(row, "image_digest")?,
        error_code: optional_text(row, "error_code")?,
        reserved_micro_usd: from_db(
            row.try_get("reserved_micro_usd"),
            "executions.reserved_micro_usd",
        )?,
        spent_micro_usd: spent
            .map(|s| from_db(Ok(s), "executions.spent_micro_usd"))
            .transpose()?,
        started_at: text(row, "started_at")?,
        settled_at: optional_text(row, "settled_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in [
            ExecutionStatus::Running,
            ExecutionStatus::Success,
            ExecutionStatus::Failure,
        ] {
            assert_eq!(ExecutionStatus::parse(status.as_str()).unwrap(), status);
        }
        assert!(ExecutionStatus::parse("done").is_err());
    }
}
