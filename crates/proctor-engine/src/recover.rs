//! Recovery of executions that ended without settling: their process died (`proctor run`
//! killed, crashed, its machine rebooted) or their run panicked.
//!
//! For each such execution, its containers (found by their execution-id label) and the warm
//! containers its process kept (found by their process-key label) are removed through the
//! local adapter, then the ledger settles it in one transaction (leases and
//! reservation released, settled as a failure; see `proctor_ledger::recover`). Containers
//! go first: once settled, an execution is no longer looked for. An engine that cannot be
//! reached does not stop the settle; the report says which containers were removed, and
//! why others may be left.
//!
//! It runs at the start of every recorded run, for the run's plan and before its budget
//! reservation (one indexed query when nothing is abandoned), with `proctor ledger
//! recover`, and for a run that panicked.

use proctor_contract::{CanonError, ErrorBody, ErrorCode, ExecutionOwner};
use proctor_ledger::{
    Ledger, OwnerLiveness, RunningExecution, abandoned_error, owner_liveness, this_process,
};
use serde::Serialize;

use crate::run::{AdapterHandle, AdapterKind, Engine};

/// Which running executions to recover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoverScope {
    /// Those of one plan whose process is gone from this host.
    Plan(String),
    /// Those of every plan whose process is gone from this host.
    AllPlans,
    /// This execution, unless its process still runs on this host: the way to settle one
    /// whose process ran on another host.
    Execution(String),
}

/// What a recovery did, execution by execution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// The executions settled, by plan and execution id.
    pub executions: Vec<RecoveredExecution>,
}

/// One execution settled by recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveredExecution {
    /// The execution.
    pub execution_id: String,
    /// Its plan.
    pub plan: String,
    /// The error it was settled with (`ERR_ABANDONED`, or `ERR_INTERNAL` for a panic).
    pub error: ErrorBody,
    /// The write-path leases released.
    pub released_leases: Vec<String>,
    /// The budget reservation released, in micro-USD.
    pub released_micro_usd: u64,
    /// What it was recorded to spend (a `real` execution spends its reservation).
    pub spent_micro_usd: u64,
    /// The containers the engine confirmed it removed.
    pub containers_removed: Vec<String>,
    /// Why containers of the execution may be left, when their removal failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers_error: Option<ErrorBody>,
}

/// Recovers the executions `scope` selects: removes their containers and settles them in
/// the ledger. An execution asked for by id that is unknown, or whose process still runs
/// here, is `ERR_LEDGER`; one already settled is not in the report.
pub async fn recover(engine: &Engine, scope: &RecoverScope) -> Result<RecoveryReport, CanonError> {
    let ledger = engine.ledger().await?;
    let here = this_process().map_err(|error| {
        CanonError::new(
            ErrorCode::Ledger,
            format!("cannot identify this process to judge others: {error}"),
        )
    })?;
    let executions = match scope {
        RecoverScope::Plan(plan) => ledger.abandoned_executions(Some(plan), &here).await?,
        RecoverScope::AllPlans => ledger.abandoned_executions(None, &here).await?,
        RecoverScope::Execution(execution_id) => asked_for(ledger, execution_id, &here)
            .await?
            .into_iter()
            .collect(),
    };
    recover_executions(engine, ledger, executions).await
}

/// Recovers the abandoned executions of `plan` as judged from `here`, before a run on it
/// reserves its budget; each one settled is logged.
pub(crate) async fn recover_plan_at_start(
    engine: &Engine,
    ledger: &Ledger,
    plan: &str,
    here: &ExecutionOwner,
) -> Result<(), CanonError> {
    let executions = ledger.abandoned_executions(Some(plan), here).await?;
    if executions.is_empty() {
        return Ok(());
    }
    recover_executions(engine, ledger, executions).await?;
    Ok(())
}

/// Settles `execution_id`, whose run panicked in this process, with `error`: its
/// containers removed, its leases and reservation released. A run that had not recorded
/// its start has nothing to settle. A failure is logged: the caller reports `error` anyway.
pub(crate) async fn settle_panicked(engine: &Engine, execution_id: &str, error: &CanonError) {
    let settled = async {
        let ledger = engine.ledger().await?;
        if ledger.execution(execution_id).await?.is_none() {
            return Ok::<_, CanonError>(None);
        }
        // This process lives on: its warm containers stay with their pool.
        let removal = remove_containers(engine, execution_id, None).await;
        let settled = ledger.settle_abandoned(execution_id, error).await?;
        Ok(settled.map(|settled| recovered_execution(settled, removal)))
    };
    match settled.await {
        Ok(Some(recovered)) => tracing::info!(
            event = "execution.recovered",
            execution_id,
            code = %recovered.error.code,
            containers_removed = recovered.containers_removed.len(),
        ),
        Ok(None) => {}
        Err(failed) => tracing::error!(
            event = "execution.recover_failed",
            execution_id,
            code = %failed.code(),
            message = %failed.message(),
        ),
    }
}

/// `ERR_INTERNAL` for a run that panicked with `payload`, quoting its message.
pub(crate) fn panic_error(payload: &(dyn std::any::Any + Send)) -> CanonError {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    CanonError::new(ErrorCode::Internal, format!("the run panicked: {message}"))
}

/// The execution asked for by id, if it is still running; refused while its process
/// runs on this host.
async fn asked_for(
    ledger: &Ledger,
    execution_id: &str,
    here: &ExecutionOwner,
) -> Result<Option<RunningExecution>, CanonError> {
    let execution = ledger.execution(execution_id).await?.ok_or_else(|| {
        CanonError::new(
            ErrorCode::Ledger,
            format!("unknown execution `{execution_id}`"),
        )
    })?;
    let running = ledger.running_executions(Some(&execution.plan)).await?;
    let Some(running) = running
        .into_iter()
        .find(|running| running.execution.execution_id == execution_id)
    else {
        return Ok(None);
    };
    if owner_liveness(running.owner.as_ref(), here) == OwnerLiveness::Alive {
        let pid = running.owner.as_ref().map_or(0, |owner| owner.pid);
        return Err(CanonError::new(
            ErrorCode::Ledger,
            format!("execution `{execution_id}` is still running (process {pid} on this host)"),
        ));
    }
    Ok(Some(running))
}

/// Removes the containers of each execution, then settles it with `ERR_ABANDONED`.
async fn recover_executions(
    engine: &Engine,
    ledger: &Ledger,
    executions: Vec<RunningExecution>,
) -> Result<RecoveryReport, CanonError> {
    let mut report = RecoveryReport::default();
    for running in executions {
        let execution_id = running.execution.execution_id.as_str();
        let removal = remove_containers(engine, execution_id, running.owner.as_ref()).await;
        let error = abandoned_error(running.owner.as_ref());
        if let Some(settled) = ledger.settle_abandoned(execution_id, &error).await? {
            let recovered = recovered_execution(settled, removal);
            tracing::warn!(
                event = "execution.recovered",
                execution_id,
                plan = %recovered.plan,
                code = %recovered.error.code,
                leases = recovered.released_leases.len(),
                released_micro_usd = recovered.released_micro_usd,
                containers_removed = recovered.containers_removed.len(),
            );
            report.executions.push(recovered);
        }
    }
    Ok(report)
}

/// Removes the execution's containers through the local adapter, and the warm containers
/// its (gone) process kept, which may have served it.
async fn remove_containers(
    engine: &Engine,
    execution_id: &str,
    owner: Option<&ExecutionOwner>,
) -> Result<Vec<String>, CanonError> {
    match engine.adapter(AdapterKind::Local)? {
        AdapterHandle::Borrowed(local) => {
            let mut removed = local.remove_execution_containers(execution_id).await?;
            if let Some(owner) = owner {
                removed.extend(local.remove_warm_containers(&owner.process_key()).await?);
            }
            Ok(removed)
        }
        AdapterHandle::Owned(_) => Ok(Vec::new()),
    }
}

fn recovered_execution(
    settled: proctor_ledger::SettledAbandoned,
    removal: Result<Vec<String>, CanonError>,
) -> RecoveredExecution {
    let (containers_removed, containers_error) = match removal {
        Ok(removed) => (removed, None),
        Err(failed) => (
            Vec::new(),
            Some(ErrorBody {
                code: failed.code(),
                message: failed.message(),
            }),
        ),
    };
    RecoveredExecution {
        execution_id: settled.execution_id,
        plan: settled.plan,
        error: settled.error,
        released_leases: settled
            .released_leases
            .iter()
            .map(ToString::to_string)
            .collect(),
        released_micro_usd: settled.released_micro_usd,
        spent_micro_usd: settled.spent_micro_usd,
        containers_removed,
        containers_error,
    }
}
