//! Executions as `proctor run` records them: a row per execution, written together with
//! its `execution.start` and `execution.settle.*` events in one transaction.

use proctor_contract::{
    CanonError, ErrorBody, EventKind, ExecutionFailureEvent, ExecutionOwner, ExecutionStartEvent,
    ExecutionSuccessEvent, LedgerEvent, Mode, OutputEntry,
};
use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::error::{LedgerError, Result};
use crate::event::{Appended, Event, NewEvent};
use crate::group::{PlanTxn, Write};
use crate::ledger::{Ledger, from_db, optional_text, text, to_db};
use crate::verify::{ChainCache, ChainReport};

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
    /// The process running it (see [`crate::this_process`]), so that recovery can tell
    /// when it died.
    pub owner: Option<ExecutionOwner>,
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

/// What the ledger holds about one execution, for `proctor verify EXECUTION_ID`. The typed
/// accessors ([`ExecutionEvidence::start`], [`ExecutionEvidence::settlement`],
/// [`ExecutionEvidence::artifacts`]) read the payloads of [`ExecutionEvidence::events`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionEvidence {
    /// The execution row.
    pub execution: Execution,
    /// Its `execution.settle.*` event as stored (seq, hashes), once settled.
    pub settle_event: Option<Event>,
    /// The verification of its plan's chain.
    pub chain: ChainReport,
    /// Every event of the execution on its plan, in seq order.
    pub events: Vec<Event>,
}

/// How an execution ended, as its settle event recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// `execution.settle.success`.
    Success(ExecutionSuccessEvent),
    /// `execution.settle.failure`.
    Failure(ExecutionFailureEvent),
}

impl Settlement {
    /// The image digest recorded with the outcome, when known.
    pub fn image_digest(&self) -> Option<&str> {
        match self {
            Settlement::Success(success) => success.image_digest.as_deref(),
            Settlement::Failure(failure) => failure.image_digest.as_deref(),
        }
    }
}

impl ExecutionEvidence {
    /// Whether the execution is settled and its settle event lies on a valid chain.
    pub fn is_settled_on_a_valid_chain(&self) -> bool {
        self.chain.is_valid() && self.settle_event.is_some()
    }

    /// What `execution.start` recorded, if the event is there. A payload that does not
    /// decode is `ERR_LEDGER`.
    pub fn start(&self) -> Result<Option<ExecutionStartEvent>> {
        for event in &self.events {
            if let LedgerEvent::ExecutionStart(start) = event.ledger_event()? {
                return Ok(Some(start));
            }
        }
        Ok(None)
    }

    /// How the execution ended, once settled. A payload that does not decode is
    /// `ERR_LEDGER`.
    pub fn settlement(&self) -> Result<Option<Settlement>> {
        let Some(event) = &self.settle_event else {
            return Ok(None);
        };
        match event.ledger_event()? {
            LedgerEvent::ExecutionSettleSuccess(success) => Ok(Some(Settlement::Success(success))),
            LedgerEvent::ExecutionSettleFailure(failure) => Ok(Some(Settlement::Failure(failure))),
            other => Err(LedgerError::ledger(format!(
                "event seq {} of plan `{}` is `{}`, not a settle event",
                event.seq,
                event.plan,
                other.kind()
            ))),
        }
    }

    /// The outputs its `artifact.produce` events recorded, in seq order. A payload that
    /// does not decode is `ERR_LEDGER`.
    pub fn artifacts(&self) -> Result<Vec<OutputEntry>> {
        let mut outputs = Vec::new();
        for event in &self.events {
            if event.kind() == Some(EventKind::ArtifactProduce)
                && let LedgerEvent::ArtifactProduce(output) = event.ledger_event()?
            {
                outputs.push(output);
            }
        }
        Ok(outputs)
    }
}

impl Ledger {
    /// The execution row, its events (the settle event apart) and its plan's verified chain;
    /// `None` for an unknown execution.
    pub async fn execution_evidence(
        &self,
        execution_id: &str,
    ) -> Result<Option<ExecutionEvidence>> {
        self.evidence_of(execution_id, None).await
    }

    /// [`Ledger::execution_evidence`], its plan's chain verified again only when its settle
    /// event lies past what `chains` already verified.
    pub async fn execution_evidence_with(
        &self,
        execution_id: &str,
        chains: &ChainCache,
    ) -> Result<Option<ExecutionEvidence>> {
        self.evidence_of(execution_id, Some(chains)).await
    }

    async fn evidence_of(
        &self,
        execution_id: &str,
        chains: Option<&ChainCache>,
    ) -> Result<Option<ExecutionEvidence>> {
        let Some(execution) = self.execution(execution_id).await? else {
            return Ok(None);
        };
        let events: Vec<Event> = self
            .events_for_execution(execution_id)
            .await?
            .into_iter()
            .filter(|event| event.plan == execution.plan)
            .collect();
        let settle_event = events
            .iter()
            .find(|event| {
                matches!(
                    event.kind(),
                    Some(EventKind::ExecutionSettleSuccess | EventKind::ExecutionSettleFailure)
                )
            })
            .cloned();
        let chain = match (chains, &settle_event) {
            (Some(chains), Some(settle)) => {
                self.verify_chain_covering(&execution.plan, settle.seq, chains)
                    .await?
            }
            _ => self.verify_chain(&execution.plan).await?,
        };
        Ok(Some(ExecutionEvidence {
            execution,
            settle_event,
            chain,
            events,
        }))
    }

    /// Records an execution's start: its row (status `running`) and `execution.start`, in
    /// one transaction on its plan (created if needed). A known execution id is `ERR_LEDGER`.
    pub async fn record_start(&self, start: &ExecutionStart) -> Result<Appended> {
        self.write(Write::RecordStart(start.clone())).await?.event()
    }

    /// Settles an execution's budget on `plan` (`budget.settle`, as [`Ledger::settle`]
    /// with `actual_micro_usd`) and records how it ended (as [`Ledger::record_settle`]), in
    /// one write: both events, in that order. A budget settle that is refused (it would
    /// pass the budget, or the budget is already settled) still records the end, and is the
    /// error returned; an unknown, already settled or other plan's execution is
    /// `ERR_LEDGER` and records nothing.
    pub async fn settle_execution(
        &self,
        plan: &str,
        actual_micro_usd: u64,
        settle: &ExecutionSettle,
    ) -> Result<Appended> {
        to_db(actual_micro_usd)?;
        let (budget, settled) = self
            .write(Write::SettleExecution {
                plan: plan.to_owned(),
                actual_micro_usd,
                settle: settle.clone(),
            })
            .await?
            .settled()?;
        budget.map_err(LedgerError::Canon)?;
        Ok(settled)
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
        self.write(Write::RecordSettle {
            plan,
            settle: settle.clone(),
        })
        .await?
        .event()
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

/// Records an execution's start in `txn` (which holds its plan): its row (status
/// `running`) and `execution.start`. A known execution id is `ERR_LEDGER`.
pub(crate) async fn start_in(txn: &mut PlanTxn<'_>, start: &ExecutionStart) -> Result<Appended> {
    if fetch_execution(txn.conn(), &start.execution_id)
        .await?
        .is_some()
    {
        return Err(LedgerError::ledger(format!(
            "execution `{}` is already recorded",
            start.execution_id
        )));
    }
    let now = txn.now.as_str().to_owned();
    sqlx::query(
        "INSERT INTO executions (execution_id, plan, processor_ref, mode, write_prefix, \
         status, image_digest, started_at) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7)",
    )
    .bind(start.execution_id.as_str())
    .bind(start.plan.as_str())
    .bind(start.processor_ref.as_str())
    .bind(start.mode.as_str())
    .bind(start.write_prefix.as_str())
    .bind(start.image_digest.as_deref())
    .bind(now)
    .execute(txn.writing())
    .await
    .map_err(|e| {
        LedgerError::database(format!("recording execution `{}`", start.execution_id), e)
    })?;
    let event = NewEvent::internal(
        Some(&start.execution_id),
        LedgerEvent::ExecutionStart(ExecutionStartEvent {
            processor_ref: start.processor_ref.clone(),
            mode: start.mode,
            write_prefix: start.write_prefix.clone(),
            image_digest: start.image_digest.clone(),
            owner: start.owner.clone(),
        }),
    );
    txn.append(&event)
}

/// Settles an execution in `txn` (which holds its plan): its row's status and
/// `execution.settle.success` or `execution.settle.failure`. An unknown or already settled
/// execution is `ERR_LEDGER`.
pub(crate) async fn settle_in(txn: &mut PlanTxn<'_>, settle: &ExecutionSettle) -> Result<Appended> {
    let execution_id = settle.execution_id.as_str();
    let execution = fetch_execution(txn.conn(), execution_id)
        .await?
        .ok_or_else(|| LedgerError::ledger(format!("unknown execution `{execution_id}`")))?;
    if execution.plan != txn.key {
        return Err(LedgerError::ledger(format!(
            "execution `{execution_id}` belongs to plan `{}`, not `{}`",
            execution.plan, txn.key
        )));
    }
    if execution.status != ExecutionStatus::Running {
        return Err(LedgerError::ledger(format!(
            "execution `{execution_id}` is already settled ({})",
            execution.status.as_str()
        )));
    }
    let image_digest = settle.image_digest.clone().or(execution.image_digest);
    let duration_ms = settle.duration_ms;
    let (status, event, error_code) = match &settle.outcome {
        Outcome::Success {
            index_path,
            outputs_index_cid,
            receipt_cid,
        } => (
            ExecutionStatus::Success,
            LedgerEvent::ExecutionSettleSuccess(ExecutionSuccessEvent {
                index_path: index_path.clone(),
                outputs_index_cid: outputs_index_cid.clone(),
                receipt_cid: receipt_cid.clone(),
                image_digest: image_digest.clone(),
                duration_ms,
            }),
            None,
        ),
        Outcome::Failure(error) => (
            ExecutionStatus::Failure,
            LedgerEvent::ExecutionSettleFailure(ExecutionFailureEvent {
                error: ErrorBody {
                    code: error.code(),
                    message: error.message(),
                },
                image_digest: image_digest.clone(),
                duration_ms,
            }),
            Some(error.code().as_str()),
        ),
    };
    sqlx::query(
        "UPDATE executions SET status = $2, image_digest = $3, error_code = $4, settled_at = $5 \
         WHERE execution_id = $1",
    )
    .bind(execution_id)
    .bind(status.as_str())
    .bind(image_digest.as_deref())
    .bind(error_code)
    .bind(txn.now.as_str().to_owned())
    .execute(txn.writing())
    .await
    .map_err(|e| LedgerError::database(format!("settling execution `{execution_id}`"), e))?;
    txn.append(&NewEvent::internal(Some(execution_id), event))
}

/// Reads the executions still `running`, of `plan` or of every plan, by plan and execution
/// id: one query on the `executions_by_plan` index.
pub(crate) async fn fetch_running_executions(
    conn: &mut AnyConnection,
    plan: Option<&str>,
) -> Result<Vec<Execution>> {
    let sql = match plan {
        Some(_) => format!(
            "{SELECT_EXECUTION} WHERE plan = $1 AND status = 'running' ORDER BY execution_id"
        ),
        None => format!("{SELECT_EXECUTION} WHERE status = 'running' ORDER BY plan, execution_id"),
    };
    let mut query = sqlx::query(&sql);
    if let Some(plan) = plan {
        query = query.bind(plan);
    }
    let rows = query
        .fetch_all(conn)
        .await
        .map_err(|e| LedgerError::database("reading running executions", e))?;
    rows.iter().map(execution_from_row).collect()
}

/// Reads one execution row on `conn` (inside a transaction or not).
pub(crate) async fn fetch_execution(
    conn: &mut AnyConnection,
    execution_id: &str,
) -> Result<Option<Execution>> {
    let row = sqlx::query(&format!("{SELECT_EXECUTION} WHERE execution_id = $1"))
        .bind(execution_id)
        .fetch_optional(conn)
        .await
        .map_err(|e| LedgerError::database(format!("reading execution `{execution_id}`"), e))?;
    row.as_ref().map(execution_from_row).transpose()
}

/// Reads every execution row of `plan` on `conn`, by execution id.
pub(crate) async fn fetch_plan_executions(
    conn: &mut AnyConnection,
    plan: &str,
) -> Result<Vec<Execution>> {
    let rows = sqlx::query(&format!(
        "{SELECT_EXECUTION} WHERE plan = $1 ORDER BY execution_id"
    ))
    .bind(plan)
    .fetch_all(conn)
    .await
    .map_err(|e| LedgerError::database(format!("reading the executions of plan `{plan}`"), e))?;
    rows.iter().map(execution_from_row).collect()
}

pub(crate) const SELECT_EXECUTION: &str = "SELECT execution_id, plan, processor_ref, mode, write_prefix, \
     status, image_digest, error_code, reserved_micro_usd, spent_micro_usd, started_at, \
     settled_at FROM executions";

pub(crate) fn execution_from_row(row: &AnyRow) -> Result<Execution> {
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
