//! A processor's set-up step: run once when the server starts, before any run is served
//! (loading a model, warming a cache). `/healthz` says `starting` until it ends, then
//! `ready`, or `setup_failed` with the tail of what it logged.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;

use crate::ProviderError;

/// How many of a set-up's last log lines a failed set-up reports.
pub(crate) const SETUP_LOG_TAIL_LINES: usize = 20;

/// The future a set-up step returns; an error fails the processor for good.
pub type SetupFuture = BoxFuture<'static, Result<(), ProviderError>>;

/// A set-up step: called once, with the log it reports its progress to.
pub(crate) type SetupStep = Arc<dyn Fn(SetupLog) -> SetupFuture + Send + Sync>;

/// Where a set-up step reports its progress. Each line is logged (`setup.log`) and the
/// last ones are kept: a failed set-up reports them, redacted, on `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct SetupLog {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl SetupLog {
    /// Logs one line of the set-up's progress.
    pub fn line(&self, text: impl fmt::Display) {
        let text = text.to_string();
        tracing::info!(event = "setup.log", line = %text);
        self.push(text);
    }

    /// Keeps `text` among the last [`SETUP_LOG_TAIL_LINES`] lines.
    pub(crate) fn push(&self, text: String) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == SETUP_LOG_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(text);
    }

    /// The lines kept, oldest first.
    pub(crate) fn tail(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect()
    }
}

/// Whether the processor may serve runs, as its set-up left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// The set-up step is running.
    Starting,
    /// No set-up step, or it succeeded.
    Ready,
    /// The set-up step failed; the redacted tail of its log, its error last.
    Failed(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_its_last_lines_oldest_first() {
        let log = SetupLog::default();
        for n in 0..SETUP_LOG_TAIL_LINES + 3 {
            log.line(format!("line {n}"));
        }
        let tail = log.tail();
        assert_eq!(tail.len(), SETUP_LOG_TAIL_LINES);
        assert_eq!(tail[0], "line 3");
        assert_eq!(tail[SETUP_LOG_TAIL_LINES - 1], "line 22");
    }
}
