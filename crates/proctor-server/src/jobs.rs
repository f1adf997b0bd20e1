//! Submitted runs and plans: answered at once with their ids, run in the background on the
//! server's runtime, at most `max_running` executions at a time in submission order, each
//! under its own cancellation token.
//!
//! A run waits in a FIFO queue until a slot is free; only then does the engine see it, so a
//! queued run cancelled (or dropped by a shutdown) never reaches the ledger. A plan is
//! applied at once in its own task: its transitions take no run slot, `apply` bounds them
//! with the plan's `max_parallel`. The envelopes of the last [`KEPT_FINISHED_RUNS`] finished
//! runs stay in memory; older ones are in the ledger.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::FutureExt as _;
use proctor_contract::{CanonError, Envelope, ErrorBody, ErrorCode, Mode};
use proctor_engine::{CancellationToken, Engine, RunOutcome, RunRequest};
use proctor_plan::{ApplyOptions, Plan, PlanReport};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

/// Finished runs whose job (state, envelope) stays in memory; older ones are read from the
/// ledger.
pub(crate) const KEPT_FINISHED_RUNS: usize = 10_000;

/// The most runs waiting for a slot at once; a submission beyond is refused (`ERR_SERVE`)
/// until some have started.
pub(crate) const MAX_QUEUED_RUNS: usize = 10_000;

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

impl JobState {
    /// The state's wire name, as the API's `state` strings spell it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job has ended and will not change again.
    pub(crate) fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// How a run that reached the engine ended: an interruption is a cancellation.
    fn of_run(outcome: &RunOutcome) -> JobState {
        match &outcome.envelope {
            Envelope::Success(_) => JobState::Succeeded,
            Envelope::Error(_) if outcome.was_interrupted() => JobState::Cancelled,
            Envelope::Error(_) => JobState::Failed,
        }
    }
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
    /// Why the apply ended without a report (the ledger could not be read or written
    /// before the first transition).
    pub(crate) error: Option<ErrorBody>,
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

impl JobChange {
    fn run(execution_id: &str, state: JobState) -> JobChange {
        JobChange {
            execution_id: Some(execution_id.to_owned()),
            plan: None,
            state,
        }
    }

    fn plan(key: &str, state: JobState) -> JobChange {
        JobChange {
            execution_id: None,
            plan: Some(key.to_owned()),
            state,
        }
    }
}

/// What a cancellation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancellation {
    /// The job was queued: it was dropped and never started (`cancelled`).
    Dropped,
    /// The job runs: its token is cancelled and it ends shortly (`cancelling`).
    Requested,
}

impl Cancellation {
    /// The state the cancel answer reports: `cancelled` or `cancelling`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cancellation::Dropped => "cancelled",
            Cancellation::Requested => "cancelling",
        }
    }
}

/// Why a job was not cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotCancelled {
    /// This server holds no such job (it may still be in the ledger).
    Unknown,
    /// It already ended, in this state.
    Finished(JobState),
}

/// The submitted work. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Jobs(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    engine: Arc<Engine>,
    max_running: usize,
    changes: broadcast::Sender<JobChange>,
    book: Mutex<Book>,
    /// How many spawned tasks have not ended yet.
    in_flight: watch::Sender<usize>,
}

/// The jobs and the queue, under one lock.
#[derive(Debug, Default)]
struct Book {
    /// Set by the shutdown: nothing is accepted or started any more.
    closed: bool,
    runs: HashMap<String, RunEntry>,
    /// Execution ids waiting for a slot, oldest first.
    queue: VecDeque<String>,
    /// How many runs hold a slot.
    running: usize,
    /// Ended runs, oldest first, to forget the oldest beyond [`KEPT_FINISHED_RUNS`].
    finished: VecDeque<String>,
    /// Each plan key's latest apply by this server.
    plans: HashMap<String, PlanEntry>,
}

#[derive(Debug)]
struct RunEntry {
    job: RunJob,
    /// The request, until the run starts.
    request: Option<RunRequest>,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct PlanEntry {
    job: PlanJob,
    cancel: CancellationToken,
}

/// Counts a spawned task as in flight until it is dropped, however the task ends.
struct InFlight(Jobs);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.in_flight.send_modify(|count| *count -= 1);
    }
}

impl Jobs {
    /// No jobs yet; at most `max_running` runs (at least one) execute at once.
    pub(crate) fn new(engine: Arc<Engine>, max_running: usize) -> Jobs {
        Jobs(Arc::new(Inner {
            engine,
            max_running: max_running.max(1),
            changes: broadcast::channel(1024).0,
            book: Mutex::new(Book::default()),
            in_flight: watch::channel(0).0,
        }))
    }

    /// The run submitted as `execution_id`, when this server was given it.
    pub(crate) fn run(&self, execution_id: &str) -> Option<RunJob> {
        self.book()
            .runs
            .get(execution_id)
            .map(|entry| entry.job.clone())
    }

    /// The runs waiting for a slot, newest first.
    pub(crate) fn queued_runs(&self) -> Vec<RunJob> {
        let book = self.book();
        book.queue
            .iter()
            .rev()
            .filter_map(|id| book.runs.get(id).map(|entry| entry.job.clone()))
            .collect()
    }

    /// The plan `key`'s latest apply by this server.
    pub(crate) fn plan(&self, key: &str) -> Option<PlanJob> {
        self.book().plans.get(key).map(|entry| entry.job.clone())
    }

    /// Job state changes from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<JobChange> {
        self.0.changes.subscribe()
    }

    /// Queues `request` as `execution_id` (made with [`Engine::new_execution_id`]); it
    /// starts as soon as a slot is free and every earlier submission has started. Refused
    /// with `ERR_SERVE` once the server shuts down or while the queue is full.
    pub(crate) fn submit_run(
        &self,
        execution_id: String,
        request: RunRequest,
    ) -> Result<(), CanonError> {
        let mut book = self.book();
        if book.closed {
            return Err(shutting_down());
        }
        if book.queue.len() >= MAX_QUEUED_RUNS {
            return Err(CanonError::new(
                ErrorCode::Serve,
                format!("{MAX_QUEUED_RUNS} runs are already waiting; submit again later"),
            ));
        }
        let job = RunJob {
            execution_id: execution_id.clone(),
            processor_ref: request.processor_ref.clone(),
            plan: request.plan.clone(),
            mode: request.mode,
            state: JobState::Queued,
            submitted_at: proctor_ledger::now_timestamp(),
            envelope: None,
        };
        book.runs.insert(
            execution_id.clone(),
            RunEntry {
                job,
                request: Some(request),
                cancel: CancellationToken::new(),
            },
        );
        book.queue.push_back(execution_id.clone());
        self.announce(JobChange::run(&execution_id, JobState::Queued));
        self.start_ready(&mut book);
        Ok(())
    }

    /// Cancels the run `execution_id`: a queued one is dropped and never starts; a running
    /// one has its token cancelled (the engine removes its container and records the
    /// interruption).
    pub(crate) fn cancel_run(&self, execution_id: &str) -> Result<Cancellation, NotCancelled> {
        let mut book = self.book();
        let entry = book
            .runs
            .get_mut(execution_id)
            .ok_or(NotCancelled::Unknown)?;
        match entry.job.state {
            JobState::Queued => {
                entry.job.state = JobState::Cancelled;
                entry.request = None;
                book.queue.retain(|queued| queued != execution_id);
                retire(&mut book, execution_id);
                self.announce(JobChange::run(execution_id, JobState::Cancelled));
                Ok(Cancellation::Dropped)
            }
            JobState::Running => {
                entry.cancel.cancel();
                Ok(Cancellation::Requested)
            }
            finished => Err(NotCancelled::Finished(finished)),
        }
    }

    /// Applies `plan` in the background. Refused with `ERR_CONFLICT` while this server
    /// applies the same plan key, and with `ERR_SERVE` once it shuts down.
    pub(crate) fn submit_plan(&self, plan: Plan, options: ApplyOptions) -> Result<(), CanonError> {
        let mut book = self.book();
        if book.closed {
            return Err(shutting_down());
        }
        if book
            .plans
            .get(&plan.key)
            .is_some_and(|entry| !entry.job.state.is_finished())
        {
            return Err(CanonError::new(
                ErrorCode::Conflict,
                format!(
                    "plan `{}` is being applied; cancel it or wait until it ends",
                    plan.key
                ),
            ));
        }
        let cancel = CancellationToken::new();
        book.plans.insert(
            plan.key.clone(),
            PlanEntry {
                job: PlanJob {
                    plan: plan.key.clone(),
                    plan_cid: plan.cid.clone(),
                    state: JobState::Running,
                    report: None,
                    error: None,
                },
                cancel: cancel.clone(),
            },
        );
        self.announce(JobChange::plan(&plan.key, JobState::Running));
        let in_flight = self.in_flight();
        let jobs = self.clone();
        tokio::spawn(async move {
            jobs.apply_plan(&plan, &options, &cancel).await;
            drop(in_flight);
        });
        Ok(())
    }

    /// Cancels the apply of plan `key`: no transition is admitted any more and the running
    /// ones are cancelled.
    pub(crate) fn cancel_plan(&self, key: &str) -> Result<Cancellation, NotCancelled> {
        let book = self.book();
        let entry = book.plans.get(key).ok_or(NotCancelled::Unknown)?;
        if entry.job.state.is_finished() {
            return Err(NotCancelled::Finished(entry.job.state));
        }
        entry.cancel.cancel();
        Ok(Cancellation::Requested)
    }

    /// Refuses new submissions, drops the queued runs, cancels every running run and plan,
    /// and waits until each has ended (the engine settles each in the ledger).
    pub(crate) async fn shut_down(self) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        {
            let mut book = self.book();
            book.closed = true;
            let queued: Vec<String> = book.queue.drain(..).collect();
            for execution_id in queued {
                if let Some(entry) = book.runs.get_mut(&execution_id) {
                    entry.job.state = JobState::Cancelled;
                    entry.request = None;
                }
                retire(&mut book, &execution_id);
                self.announce(JobChange::run(&execution_id, JobState::Cancelled));
                report.dropped_queued.push(execution_id);
            }
            for (execution_id, entry) in &book.runs {
                if entry.job.state == JobState::Running {
                    entry.cancel.cancel();
                    report.cancelled_executions.push(execution_id.clone());
                }
            }
            for (key, entry) in &book.plans {
                if entry.job.state == JobState::Running {
                    entry.cancel.cancel();
                    report.cancelled_plans.push(key.clone());
                }
            }
        }
        report.cancelled_executions.sort();
        report.cancelled_plans.sort();
        let mut in_flight = self.0.in_flight.subscribe();
        // The sender lives in `self`, so the wait ends only when the count is zero.
        let _ = in_flight.wait_for(|count| *count == 0).await;
        report
    }

    /// Starts queued runs, oldest first, while slots are free.
    fn start_ready(&self, book: &mut Book) {
        while !book.closed && book.running < self.0.max_running {
            let Some(execution_id) = book.queue.pop_front() else {
                break;
            };
            let Some(entry) = book.runs.get_mut(&execution_id) else {
                continue;
            };
            let Some(request) = entry.request.take() else {
                continue;
            };
            entry.job.state = JobState::Running;
            let cancel = entry.cancel.clone();
            book.running += 1;
            self.announce(JobChange::run(&execution_id, JobState::Running));
            let in_flight = self.in_flight();
            let jobs = self.clone();
            tokio::spawn(async move {
                let outcome = jobs.0.engine.run_as(&execution_id, &request, &cancel).await;
                jobs.finish_run(&execution_id, &outcome);
                drop(in_flight);
            });
        }
    }

    /// Records how a started run ended, frees its slot and starts the next.
    fn finish_run(&self, execution_id: &str, outcome: &RunOutcome) {
        let state = JobState::of_run(outcome);
        let envelope = serde_json::to_value(&outcome.envelope).ok();
        let mut book = self.book();
        book.running -= 1;
        if let Some(entry) = book.runs.get_mut(execution_id) {
            entry.job.state = state;
            entry.job.envelope = envelope;
        }
        retire(&mut book, execution_id);
        self.announce(JobChange::run(execution_id, state));
        self.start_ready(&mut book);
    }

    /// Applies `plan` and records how the apply ended.
    async fn apply_plan(&self, plan: &Plan, options: &ApplyOptions, cancel: &CancellationToken) {
        let applied = AssertUnwindSafe(proctor_plan::apply(&self.0.engine, plan, options, cancel))
            .catch_unwind()
            .await;
        let cancelled = cancel.is_cancelled();
        let (state, report, error) = match applied {
            Ok(Ok(report)) => {
                let state = match (report.ok, cancelled) {
                    (true, _) => JobState::Succeeded,
                    (false, true) => JobState::Cancelled,
                    (false, false) => JobState::Failed,
                };
                (state, Some(report), None)
            }
            Ok(Err(error)) => (
                if cancelled {
                    JobState::Cancelled
                } else {
                    JobState::Failed
                },
                None,
                Some(error),
            ),
            Err(_) => (
                JobState::Failed,
                None,
                Some(CanonError::new(
                    ErrorCode::Internal,
                    "the plan's apply panicked",
                )),
            ),
        };
        let mut book = self.book();
        if let Some(entry) = book.plans.get_mut(&plan.key) {
            entry.job.state = state;
            entry.job.report = report;
            entry.job.error = error.map(|error| ErrorBody {
                code: error.code(),
                message: error.message(),
            });
        }
        self.announce(JobChange::plan(&plan.key, state));
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic never happens under the lock; a poisoned one still holds consistent data.
        self.0.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the subscribers; nobody listening is fine.
    fn announce(&self, change: JobChange) {
        let _ = self.0.changes.send(change);
    }

    /// Counts one more task in flight until the returned guard is dropped.
    fn in_flight(&self) -> InFlight {
        self.0.in_flight.send_modify(|count| *count += 1);
        InFlight(self.clone())
    }
}

/// Notes that `execution_id` ended, forgetting the oldest ended runs beyond
/// [`KEPT_FINISHED_RUNS`].
fn retire(book: &mut Book, execution_id: &str) {
    book.finished.push_back(execution_id.to_owned());
    while book.finished.len() > KEPT_FINISHED_RUNS {
        if let Some(oldest) = book.finished.pop_front() {
            book.runs.remove(&oldest);
        }
    }
}

fn shutting_down() -> CanonError {
    CanonError::new(
        ErrorCode::Serve,
        "the server is shutting down; submit to another server or after its restart",
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use proctor_engine::{AdapterKind, EngineConfig, Inputs};

    use super::*;
    use crate::routes::test_support::UNREACHABLE_PIN;

    /// An engine over an empty World in `dir`, whose registry holds `text/stats@1` alone,
    /// pinned by [`UNREACHABLE_PIN`].
    pub(crate) fn engine(dir: &Path) -> Arc<Engine> {
        engine_with_env(dir, Default::default())
    }

    /// [`engine`], seeing `env` as the host environment.
    pub(crate) fn engine_with_env(dir: &Path, env: BTreeMap<String, String>) -> Arc<Engine> {
        let registry_root = dir.join("processors");
        let entry = registry_root.join("text/stats/1");
        std::fs::create_dir_all(&entry).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../processors/text/stats/1/registry.yaml");
        let (unpinned, pinned) = UNREACHABLE_PIN;
        let yaml = std::fs::read_to_string(source).unwrap();
        assert!(yaml.contains(unpinned), "{yaml}");
        std::fs::write(entry.join("registry.yaml"), yaml.replace(unpinned, pinned)).unwrap();
        Arc::new(Engine::new(EngineConfig {
            registry_root,
            artifacts_root: dir.join("artifacts"),
            ledger_url: format!("sqlite://{}", dir.join("ledger.db").display()),
            env,
            limits: Default::default(),
        }))
    }

    /// A mock run of `processor_ref` with `inputs`.
    pub(crate) fn request(processor_ref: &str, inputs: Inputs) -> RunRequest {
        RunRequest {
            processor_ref: processor_ref.to_owned(),
            adapter: AdapterKind::Local,
            mode: Mode::Mock,
            build: false,
            write_prefix: None,
            inputs,
            params: Default::default(),
            adapter_options: Value::Null,
            timeout: None,
            save_dir: None,
            plan: "default".to_owned(),
            reserve_micro_usd: 0,
            lane: None,
            upstream: Vec::new(),
            attachments: Vec::new(),
            memo: false,
        }
    }

    /// A run the engine fails at once, before any ledger record or container: its
    /// processor is not in the registry.
    fn failing() -> RunRequest {
        request("nope/missing@1", Inputs::NotGiven)
    }

    /// A named pipe: a run whose inputs file it is holds its slot, blocked in `open`, until
    /// [`release`] writes to it.
    fn fifo(dir: &Path) -> PathBuf {
        let path = dir.join("inputs.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        path
    }

    /// Lets the run blocked on `fifo` go on: it reads text that is not JSON and fails.
    async fn release(fifo: PathBuf) {
        tokio::task::spawn_blocking(move || std::fs::write(fifo, b"not json"))
            .await
            .unwrap()
            .unwrap();
    }

    /// Job changes until `ended` runs have ended.
    async fn changes_until(
        changes: &mut broadcast::Receiver<JobChange>,
        ended: usize,
    ) -> Vec<JobChange> {
        let mut seen = Vec::new();
        while seen
            .iter()
            .filter(|c: &&JobChange| c.state.is_finished())
            .count()
            < ended
        {
            seen.push(changes.recv().await.unwrap());
        }
        seen
    }

    #[test]
    fn only_the_latest_ended_runs_are_kept() {
        let mut book = Book::default();
        let ids: Vec<String> = (0..=KEPT_FINISHED_RUNS).map(|n| n.to_string()).collect();
        for id in &ids {
            book.runs.insert(
                id.clone(),
                RunEntry {
                    job: RunJob {
                        execution_id: id.clone(),
                        processor_ref: "a/b@1".to_owned(),
                        plan: "default".to_owned(),
                        mode: Mode::Mock,
                        state: JobState::Failed,
                        submitted_at: proctor_ledger::now_timestamp(),
                        envelope: None,
                    },
                    request: None,
                    cancel: CancellationToken::new(),
                },
            );
            retire(&mut book, id);
        }
        assert_eq!(book.runs.len(), KEPT_FINISHED_RUNS);
        assert_eq!(book.finished.len(), KEPT_FINISHED_RUNS);
        assert!(!book.runs.contains_key("0"), "the oldest is forgotten");
        assert!(book.runs.contains_key("1") && book.runs.contains_key(&ids[KEPT_FINISHED_RUNS]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_start_in_submission_order_within_the_slots() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(engine(dir.path()), 1);
        let mut changes = jobs.subscribe();
        let ids: Vec<String> = (0..5).map(|_| Engine::new_execution_id()).collect();
        for id in &ids {
            jobs.submit_run(id.clone(), failing()).unwrap();
        }
        let seen = changes_until(&mut changes, ids.len()).await;
        let started: Vec<&str> = seen
            .iter()
            .filter(|c| c.state == JobState::Running)
            .filter_map(|c| c.execution_id.as_deref())
            .collect();
        assert_eq!(started, ids.iter().map(String::as_str).collect::<Vec<_>>());
        // One slot: each run ends before the next starts.
        let mut running = 0;
        for change in &seen {
            match change.state {
                JobState::Running => running += 1,
                state if state.is_finished() => running -= 1,
                _ => {}
            }
            assert!(running <= 1, "{seen:?}");
        }
        for id in &ids {
            let job = jobs.run(id).unwrap();
            assert_eq!(job.state, JobState::Failed);
            let envelope = job.envelope.unwrap();
            assert_eq!(
                envelope["error"]["code"], "ERR_UNKNOWN_PROCESSOR",
                "{envelope}"
            );
            assert_eq!(envelope["execution_id"], id.as_str());
        }
        assert!(jobs.queued_runs().is_empty());
        assert_eq!(
            jobs.cancel_run(&ids[0]),
            Err(NotCancelled::Finished(JobState::Failed))
        );
        assert_eq!(jobs.cancel_run("no-such-run"), Err(NotCancelled::Unknown));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_run_cancelled_never_starts() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(engine(dir.path()), 1);
        let mut changes = jobs.subscribe();
        let fifo = fifo(dir.path());
        let (holder, queued, last) = (
            Engine::new_execution_id(),
            Engine::new_execution_id(),
            Engine::new_execution_id(),
        );
        jobs.submit_run(
            holder.clone(),
            request("text/stats@1", Inputs::File(fifo.clone())),
        )
        .unwrap();
        jobs.submit_run(queued.clone(), failing()).unwrap();
        jobs.submit_run(last.clone(), failing()).unwrap();
        let waiting: Vec<String> = jobs
            .queued_runs()
            .into_iter()
            .map(|job| job.execution_id)
            .collect();
        assert_eq!(waiting, [last.clone(), queued.clone()], "newest first");
        assert_eq!(jobs.run(&holder).unwrap().state, JobState::Running);

        assert_eq!(jobs.cancel_run(&queued), Ok(Cancellation::Dropped));
        assert_eq!(jobs.run(&queued).unwrap().state, JobState::Cancelled);
        assert_eq!(
            jobs.cancel_run(&queued),
            Err(NotCancelled::Finished(JobState::Cancelled))
        );
        release(fifo).await;
        let seen = changes_until(&mut changes, 3).await;
        let of = |id: &str| -> Vec<JobState> {
            seen.iter()
                .filter(|c| c.execution_id.as_deref() == Some(id))
                .map(|c| c.state)
                .collect()
        };
        assert_eq!(of(&queued), [JobState::Queued, JobState::Cancelled]);
        assert_eq!(
            of(&holder),
            [JobState::Queued, JobState::Running, JobState::Failed]
        );
        assert_eq!(
            of(&last),
            [JobState::Queued, JobState::Running, JobState::Failed]
        );
        let envelope = jobs.run(&holder).unwrap().envelope.unwrap();
        assert_eq!(envelope["error"]["code"], "ERR_INPUTS", "{envelope}");
        assert!(jobs.run(&queued).unwrap().envelope.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_refuses_submissions_drops_the_queue_and_waits_for_the_running() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(engine(dir.path()), 1);
        let mut changes = jobs.subscribe();
        let fifo = fifo(dir.path());
        let (running, queued) = (Engine::new_execution_id(), Engine::new_execution_id());
        jobs.submit_run(
            running.clone(),
            request("text/stats@1", Inputs::File(fifo.clone())),
        )
        .unwrap();
        jobs.submit_run(queued.clone(), failing()).unwrap();
        let shutting_down = tokio::spawn(jobs.clone().shut_down());
        // The queue is dropped as the shutdown begins, under the lock that closes it.
        loop {
            let change = changes.recv().await.unwrap();
            if change.execution_id.as_deref() == Some(&queued) && change.state.is_finished() {
                assert_eq!(change.state, JobState::Cancelled);
                break;
            }
        }
        let refused = jobs
            .submit_run(Engine::new_execution_id(), failing())
            .unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Serve);
        assert!(refused.message().contains("shutting down"), "{refused}");
        assert!(
            !shutting_down.is_finished(),
            "the running run holds the shutdown"
        );
        release(fifo).await;
        let report = shutting_down.await.unwrap();
        assert_eq!(report.dropped_queued, [queued.as_str()]);
        assert_eq!(report.cancelled_executions, [running.as_str()]);
        assert!(report.cancelled_plans.is_empty());
        assert!(jobs.run(&running).unwrap().state.is_finished());
        assert_eq!(jobs.run(&queued).unwrap().state, JobState::Cancelled);
    }
}
