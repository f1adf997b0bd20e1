//! Progress of long work — compiling a processor, building, pulling or pushing an image,
//! deploying, applying a plan — reported as events through one callback.
//!
//! Libraries report and never draw: they take a [`Progress`], start a [`ProgressTask`] per
//! piece of work and tell it how far it got. The caller decides what the events become (the
//! CLI draws bars on a terminal and nothing on a pipe); [`Progress::none`] drops them.
//! A task ends with [`ProgressEvent::Finished`] when its handle is dropped, so a task that
//! fails half-way never leaves a bar behind.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a task counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressUnit {
    /// Steps of a fixed recipe (compile, assemble, write per platform).
    Steps,
    /// Bytes moved (a push, a pull).
    Bytes,
    /// Things of a kind (crates compiled, transitions settled, processors deployed).
    Items,
}

/// One task among those reported through one [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u64);

/// Something that happened to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The task started: what it does, what it counts and, when known, how many.
    Started {
        /// The task.
        task: TaskId,
        /// What it does, e.g. `pushing 127.0.0.1:5000/acme/text-stats:1`.
        label: String,
        /// What it counts.
        unit: ProgressUnit,
        /// How many units it will count, when known.
        total: Option<u64>,
    },
    /// Its total became known, or changed (a pull learns each layer's size as it starts).
    Total {
        /// The task.
        task: TaskId,
        /// The new total.
        total: u64,
    },
    /// It advanced by `by` units.
    Advanced {
        /// The task.
        task: TaskId,
        /// How many units.
        by: u64,
    },
    /// What it is doing now, replacing the previous message (e.g. the crate cargo built last).
    Message {
        /// The task.
        task: TaskId,
        /// The message.
        text: String,
    },
    /// A line worth keeping once the task is gone, e.g. `✓ stats succeeded (e-123)`.
    Note {
        /// The task.
        task: TaskId,
        /// The line, without its newline.
        line: String,
    },
    /// A line of the output of a tool the task runs (cargo's own output during a compile);
    /// shown only when asked for.
    Output {
        /// The task.
        task: TaskId,
        /// The line, without its newline.
        line: String,
    },
    /// The task ended: done, failed or abandoned.
    Finished {
        /// The task.
        task: TaskId,
    },
}

/// Where progress goes: a callback that hears every [`ProgressEvent`], or nowhere. Cheap to
/// clone; clones report to the same callback and number their tasks together.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<Sink>>);

struct Sink {
    report: Box<dyn Fn(ProgressEvent) + Send + Sync>,
    next_task: AtomicU64,
}

impl Progress {
    /// Progress reported to `report`, which may be called from any thread.
    pub fn new(report: impl Fn(ProgressEvent) + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(Sink {
            report: Box::new(report),
            next_task: AtomicU64::new(0),
        })))
    }

    /// Progress that goes nowhere.
    pub fn none() -> Progress {
        Progress(None)
    }

    /// Starts a task: `label` says what it does, `unit` what it counts, `total` how many
    /// when known.
    pub fn start(
        &self,
        label: impl Into<String>,
        unit: ProgressUnit,
        total: Option<u64>,
    ) -> ProgressTask {
        let Some(sink) = &self.0 else {
            return ProgressTask {
                sink: None,
                task: TaskId(0),
            };
        };
        let task = TaskId(sink.next_task.fetch_add(1, Ordering::Relaxed));
        (sink.report)(ProgressEvent::Started {
            task,
            label: label.into(),
            unit,
            total,
        });
        ProgressTask {
            sink: Some(Arc::clone(sink)),
            task,
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "Progress(reported)",
            None => "Progress(none)",
        })
    }
}

/// A started task; dropping it finishes it.
pub struct ProgressTask {
    sink: Option<Arc<Sink>>,
    task: TaskId,
}

impl ProgressTask {
    /// The task's id, as its events carry it.
    pub fn id(&self) -> TaskId {
        self.task
    }

    /// Sets how many units the task will count.
    pub fn set_total(&self, total: u64) {
        self.report(|task| ProgressEvent::Total { task, total });
    }

    /// Counts `by` more units.
    pub fn advance(&self, by: u64) {
        self.report(|task| ProgressEvent::Advanced { task, by });
    }

    /// Says what the task is doing now.
    pub fn message(&self, text: impl Into<String>) {
        self.report(|task| ProgressEvent::Message {
            task,
            text: text.into(),
        });
    }

    /// Reports a line worth keeping.
    pub fn note(&self, line: impl Into<String>) {
        self.report(|task| ProgressEvent::Note {
            task,
            line: line.into(),
        });
    }

    /// Passes on a line of a tool's own output.
    pub fn output(&self, line: impl Into<String>) {
        self.report(|task| ProgressEvent::Output {
            task,
            line: line.into(),
        });
    }

    fn report(&self, event: impl FnOnce(TaskId) -> ProgressEvent) {
        if let Some(sink) = &self.sink {
            (sink.report)(event(self.task));
        }
    }
}

impl Drop for ProgressTask {
    fn drop(&mut self) {
        self.report(|task| ProgressEvent::Finished { task });
    }
}

impl fmt::Debug for ProgressTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProgressTask").field(&self.task).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn recording() -> (Progress, Arc<Mutex<Vec<ProgressEvent>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let progress = Progress::new(move |event| sink.lock().unwrap().push(event));
        (progress, events)
    }

    #[test]
    fn a_task_reports_in_order_and_finishes_when_dropped() {
        let (progress, events) = recording();
        let task = progress.start("pushing", ProgressUnit::Bytes, None);
        task.set_total(10);
        task.advance(4);
        task.message("layer");
        task.note("pushed");
        task.output("cargo says");
        let id = task.id();
        drop(task);
        assert_eq!(
            *events.lock().unwrap(),
            [
                ProgressEvent::Started {
                    task: id,
                    label: "pushing".into(),
                    unit: ProgressUnit::Bytes,
                    total: None,
                },
                ProgressEvent::Total {
                    task: id,
                    total: 10
                },
                ProgressEvent::Advanced { task: id, by: 4 },
                ProgressEvent::Message {
                    task: id,
                    text: "layer".into()
                },
                ProgressEvent::Note {
                    task: id,
                    line: "pushed".into()
                },
                ProgressEvent::Output {
                    task: id,
                    line: "cargo says".into()
                },
                ProgressEvent::Finished { task: id },
            ]
        );
    }

    #[test]
    fn clones_number_their_tasks_together() {
        let (progress, _events) = recording();
        let first = progress.start("a", ProgressUnit::Steps, Some(1));
        let second = progress.clone().start("b", ProgressUnit::Steps, Some(1));
        assert_ne!(first.id(), second.id());
    }

    #[test]
    fn no_progress_goes_nowhere() {
        let task = Progress::none().start("a", ProgressUnit::Items, None);
        task.advance(1);
        assert_eq!(format!("{:?}", Progress::none()), "Progress(none)");
    }
}
