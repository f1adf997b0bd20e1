//! `proctor run`'s record in the ledger, around the adapter.
//!
//! Once every check of `run` has passed, the run is recorded in plan `--plan` of the ledger
//! `--ledger`, in this order: `execution.start` → `budget.reserve` of `--reserve-micro-usd`
//! (refused with `ERR_BUDGET_EXCEEDED`) → `lease.acquire` on the expanded write prefix
//! (refused with `ERR_LEASE_CONFLICT`) → the adapter → one `artifact.produce` per output →
//! `lease.release` → `budget.settle` → `execution.settle.success` or
//! `execution.settle.failure`. A refusal ends the run before any adapter work (no image is
//! built or pulled, no container created) and is recorded as a failure like any other.
//!
//! Rules:
//! - **Release on every path.** Once taken, the lease is released whatever happens next: a
//!   processor error, an adapter failure, a timeout, Ctrl-C (the adapter answers
//!   `ERR_INTERRUPTED`; a Ctrl-C while the ledger is being written is noticed before the
//!   adapter is called). Should the process die anyway, the lease expires after its TTL.
//! - **Lease TTL** = the run's timeout + [`LEASE_MARGIN`], plus [`BUILD_ALLOWANCE`] with
//!   `--build`: the timeout does not count image builds and pulls.
//! - **Cost.** Mock runs spend nothing. Real runs that reached the adapter spend their whole
//!   reservation (provider prices are not known to proctor); runs refused before the
//!   adapter spend nothing.
//! - **Success evidence.** The success settle records the index path and the content ids of
//!   the `outputs.json` and `receipt.json` bytes read back from the artifacts root, so
//!   `proctor verify` can tie the files to the chain (the modal adapter's artifacts stay in
//!   Modal: the index id comes from the envelope, and no receipt id is recorded). A pinned
//!   run records its pinned digest at start; a `--build` run records none (its image ID is
//!   known only at settle).
//! - Failures before the ledger is opened (CI guard, usage, every pre-adapter check) are
//!   not recorded: they happen before any work.

use std::cell::RefCell;
use std::task::Poll;
use std::time::{Duration, Instant};

use proctor_adapters::{ImageSource, Invocation};
use proctor_contract::{
    CanonError, Envelope, ErrorBody, ErrorCode, OutputsIndex, SuccessEnvelope, WorldPath,
    WritePrefix, cid,
};
use proctor_ledger::{ExecutionSettle, ExecutionStart, LeaseGuard, Ledger, NewEvent, Outcome};
use proctor_store::{ArtifactStore, FsStore};
use tokio::runtime::Runtime;
use tokio::signal::unix::{Signal, SignalKind};

use crate::args::{AdapterKind, RunConfig};
use crate::ledger_commands::open;
use crate::world_commands::canonical;

/// Added to the run's timeout for the lease TTL: container start-up, cleanup, the ledger.
const LEASE_MARGIN: Duration = Duration::from_secs(120);
/// Added to the lease TTL of `--build` runs: building the image is not counted in the
/// run's timeout.
const BUILD_ALLOWANCE: Duration = Duration::from_secs(30 * 60);

/// Records the run described by `config` and `invocation` around `invoke` (the adapter);
/// returns what `invoke` returned, or the refusal or ledger failure that replaced it.
pub(crate) fn record_run(
    config: &RunConfig,
    invocation: &Invocation,
    invoke: impl FnOnce(&Invocation) -> Result<Envelope, CanonError>,
) -> Result<Envelope, CanonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CanonError::new(
                ErrorCode::Ledger,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    let ledger = runtime.block_on(open(&config.ledger.url))?;
    let recorder = Recorder {
        interrupts: runtime.block_on(async { Interrupts::watch() }),
        runtime,
        ledger,
        config,
        invocation,
        started: Instant::now(),
    };
    let result = recorder.record(invoke);
    recorder.runtime.block_on(recorder.ledger.close());
    result
}

/// One run's conversation with the ledger.
struct Recorder<'a> {
    runtime: Runtime,
    ledger: Ledger,
    interrupts: Interrupts,
    config: &'a RunConfig,
    invocation: &'a Invocation,
    started: Instant,
}

/// What the run produced, ready for its settle.
struct Ran {
    /// What `run` answers: the adapter's envelope, or the error that ended the run.
    result: Result<Envelope, CanonError>,
    /// How the ledger records it.
    outcome: Outcome,
    /// Whether the adapter was called.
    invoked: bool,
}

impl Ran {
    /// A run that ended with `error` before or instead of an envelope.
    fn failed(error: CanonError, invoked: bool) -> Ran {
        Ran {
            outcome: Outcome::Failure(error.clone()),
            result: Err(error),
            invoked,
        }
    }
}

impl Recorder<'_> {
    fn execution_id(&self) -> &str {
        &self.invocation.payload.execution_id
    }

    fn plan(&self) -> &str {
        &self.config.ledger.plan
    }

    /// Start, guarded run, settle.
    fn record(
        &self,
        invoke: impl FnOnce(&Invocation) -> Result<Envelope, CanonError>,
    ) -> Result<Envelope, CanonError> {
        let payload = &self.invocation.payload;
        let start = ExecutionStart {
            execution_id: payload.execution_id.clone(),
            plan: self.plan().to_owned(),
            processor_ref: payload.processor_ref.to_string(),
            mode: payload.mode,
            write_prefix: payload.write_prefix.clone(),
            image_digest: pinned_digest(&self.invocation.image),
        };
        self.runtime.block_on(self.ledger.record_start(&start))?;
        let ran = self.reserve_lease_and_invoke(invoke);
        self.settle(ran)
    }

    /// Reserves, leases, and (both granted) invokes; the lease is released on every path.
    fn reserve_lease_and_invoke(
        &self,
        invoke: impl FnOnce(&Invocation) -> Result<Envelope, CanonError>,
    ) -> Ran {
        let reserved = self.runtime.block_on(self.ledger.reserve(
            self.plan(),
            self.execution_id(),
            self.config.ledger.reserve_micro_usd,
        ));
        if let Err(error) = reserved {
            return Ran::failed(error.into(), false);
        }
        let selector = match WorldPath::parse(&self.invocation.payload.write_prefix) {
            Ok(selector) => selector,
            Err(error) => return Ran::failed(error, false),
        };
        let lease = self.runtime.block_on(self.ledger.acquire_lease(
            self.plan(),
            &selector,
            self.execution_id(),
            self.lease_ttl(),
        ));
        let lease = match lease {
            Ok(lease) => lease,
            Err(error) => return Ran::failed(error.into(), false),
        };
        let ran = self.invoke_under_lease(invoke);
        self.release(lease);
        ran
    }

    /// Calls the adapter (unless Ctrl-C came first) and records the outputs of a success.
    fn invoke_under_lease(
        &self,
        invoke: impl FnOnce(&Invocation) -> Result<Envelope, CanonError>,
    ) -> Ran {
        if self.interrupts.received(&self.runtime) {
            let error = CanonError::new(
                ErrorCode::Interrupted,
                format!(
                    "Ctrl-C before {} was started",
                    self.invocation.payload.processor_ref
                ),
            );
            return Ran::failed(error, false);
        }
        match invoke(self.invocation) {
            Ok(Envelope::Success(success)) => match self.record_outputs(&success) {
                Ok(outcome) => Ran {
                    result: Ok(Envelope::Success(success)),
                    outcome,
                    invoked: true,
                },
                Err(error) => Ran::failed(error, true),
            },
            Ok(Envelope::Error(error)) => Ran {
                outcome: Outcome::Failure(canon_error(&error.error)),
                result: Ok(Envelope::Error(error)),
                invoked: true,
            },
            Err(error) => Ran::failed(error, true),
        }
    }

    /// Appends one `artifact.produce` per output and gives the success outcome, with the
    /// content ids of the index and receipt (see [`Recorder::evidence_ids`]).
    fn record_outputs(&self, success: &SuccessEnvelope) -> Result<Outcome, CanonError> {
        let (outputs_index_cid, receipt_cid) = self.evidence_ids(success)?;
        let events: Vec<NewEvent> = success
            .outputs
            .iter()
            .map(|output| NewEvent::artifact_produce(self.execution_id(), output))
            .collect();
        self.runtime
            .block_on(self.ledger.append_batch(self.plan(), &events))?;
        Ok(Outcome::Success {
            index_path: success.index_path.to_string(),
            outputs_index_cid,
            receipt_cid,
        })
    }

    /// The content ids of the index and receipt bytes. The local adapter's processor wrote
    /// them under the artifacts root: they are read back (a missing file, or receipt copies
    /// that differ, is `ERR_OUTPUT_WRITE`). The modal adapter's stay in Modal: the index id
    /// is that of the canonical index of the envelope's outputs (the bytes the SDK writes),
    /// and the receipt's is unknown.
    fn evidence_ids(
        &self,
        success: &SuccessEnvelope,
    ) -> Result<(String, Option<String>), CanonError> {
        match self.config.adapter {
            AdapterKind::Modal => {
                let index = OutputsIndex {
                    outputs: success.outputs.clone(),
                };
                Ok((cid(&index.to_bytes()), None))
            }
            AdapterKind::Local => {
                let store = FsStore::new(&self.invocation.artifacts_root);
                let prefix = WritePrefix::from_expanded(&self.invocation.payload.write_prefix)?;
                let execution_receipt = WorldPath::execution_receipt(self.execution_id())?;
                let (index, receipt, receipt_copy) = self.runtime.block_on(async {
                    Ok::<_, CanonError>((
                        read_back(&store, &success.index_path).await?,
                        read_back(&store, &execution_receipt).await?,
                        read_back(&store, &prefix.receipt_path()).await?,
                    ))
                })?;
                if receipt != receipt_copy {
                    return Err(CanonError::new(
                        ErrorCode::OutputWrite,
                        format!(
                            "`{}` and `{execution_receipt}` differ",
                            prefix.receipt_path()
                        ),
                    ));
                }
                Ok((cid(&index), Some(cid(&receipt))))
            }
        }
    }

    /// Releases the lease; a failure is logged (the lease then expires after its TTL).
    fn release(&self, lease: LeaseGuard) {
        let selector = lease.lease().selector.to_string();
        match self.runtime.block_on(lease.release()) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                event = "lease.lost",
                execution_id = %self.execution_id(),
                selector = %selector,
                reason = "it expired and another execution took it over",
            ),
            Err(error) => tracing::warn!(
                event = "lease.release_failed",
                execution_id = %self.execution_id(),
                selector = %selector,
                error = %error,
            ),
        }
    }

    /// Settles the budget and records the end; a ledger failure turns a success into
    /// `ERR_LEDGER` (its evidence would be incomplete) and is logged beside any other error.
    fn settle(&self, ran: Ran) -> Result<Envelope, CanonError> {
        let actual_micro_usd = match self.invocation.payload.mode {
            proctor_contract::Mode::Real if ran.invoked => self.config.ledger.reserve_micro_usd,
            _ => 0,
        };
        let image_digest = match &ran.result {
            Ok(Envelope::Success(success)) => Some(success.meta.image_digest.clone()),
            Ok(Envelope::Error(error)) => error.meta.image_digest.clone(),
            Err(_) => None,
        };
        let settle = ExecutionSettle {
            execution_id: self.execution_id().to_owned(),
            outcome: ran.outcome,
            image_digest,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let recorded = self.runtime.block_on(async {
            let budget = self
                .ledger
                .settle(self.plan(), self.execution_id(), actual_micro_usd)
                .await;
            let settled = self.ledger.record_settle(&settle).await;
            budget.and(settled)
        });
        match recorded {
            Ok(appended) => {
                tracing::info!(
                    event = "ledger.settle",
                    execution_id = %self.execution_id(),
                    plan = %self.plan(),
                    seq = appended.seq,
                    status = if ran.result.as_ref().is_ok_and(|e| matches!(e, Envelope::Success(_))) { "success" } else { "failure" },
                );
                ran.result
            }
            Err(error) => {
                let error = error.to_canon();
                match ran.result {
                    Ok(Envelope::Success(_)) => Err(error),
                    other => {
                        tracing::error!(
                            event = "ledger.settle_failed",
                            execution_id = %self.execution_id(),
                            code = %error.code(),
                            message = %error.message(),
                        );
                        other
                    }
                }
            }
        }
    }

    /// How long the lease lasts should this process die without releasing it.
    fn lease_ttl(&self) -> Duration {
        let build = match self.invocation.image {
            ImageSource::Build { .. } => BUILD_ALLOWANCE,
            ImageSource::Pinned { .. } | ImageSource::Local { .. } => Duration::ZERO,
        };
        self.invocation.timeout + LEASE_MARGIN + build
    }
}

/// The digest a pinned run must report (`sha256:…`), known before the run.
fn pinned_digest(image: &ImageSource) -> Option<String> {
    match image {
        ImageSource::Pinned { reference } => reference
            .rsplit_once('@')
            .map(|(_, digest)| digest.to_owned()),
        ImageSource::Build { .. } | ImageSource::Local { .. } => None,
    }
}

/// The canonical error an error envelope carries.
fn canon_error(body: &ErrorBody) -> CanonError {
    let fragment = format!("{}: ", body.code.fragment());
    let detail = body
        .message
        .strip_prefix(&fragment)
        .or_else(|| body.message.strip_prefix(body.code.fragment()))
        .unwrap_or(&body.message);
    CanonError::new(body.code, detail)
}

/// Reads an artifact the processor wrote; a missing or unreadable one is
/// `ERR_OUTPUT_WRITE`.
async fn read_back(store: &FsStore, path: &WorldPath) -> Result<Vec<u8>, CanonError> {
    store
        .get(path)
        .await
        .map(|bytes| bytes.to_vec())
        .map_err(|e| {
            let error = canonical(e);
            CanonError::new(
                ErrorCode::OutputWrite,
                format!("cannot read back `{path}`: {}", error.message()),
            )
        })
}

/// Ctrl-C, watched from the moment the ledger is open. Once watched, Ctrl-C no longer ends
/// the process at once: the run stops at its next check (or the adapter answers
/// `ERR_INTERRUPTED`) and still settles.
struct Interrupts(Option<RefCell<Signal>>);

impl Interrupts {
    /// Starts watching; must run inside the runtime. Where signals cannot be watched,
    /// Ctrl-C keeps its default effect.
    fn watch() -> Interrupts {
        Interrupts(
            tokio::signal::unix::signal(SignalKind::interrupt())
                .ok()
                .map(RefCell::new),
        )
    }

    /// Whether Ctrl-C came since watching began; never waits.
    fn received(&self, runtime: &Runtime) -> bool {
        let Some(signal) = &self.0 else {
            return false;
        };
        let mut signal = signal.borrow_mut();
        runtime.block_on(std::future::poll_fn(|cx| {
            Poll::Ready(matches!(signal.poll_recv(cx), Poll::Ready(Some(()))))
        }))
    }
}
