//! A run's record in the ledger, around the adapter.
//!
//! Once every check of a run has passed, it is recorded in its plan, in this order:
//! recovery of the plan's abandoned executions ([`crate::recover`]) → `execution.start`
//! (naming this process as its owner) → `budget.reserve` (refused with `ERR_BUDGET_EXCEEDED`) →
//! `lease.acquire` on the expanded write prefix (refused with `ERR_LEASE_CONFLICT`) → the
//! adapter → the evidence check and commit → one `artifact.produce` per output → the copy to
//! `save_dir` → `lease.release` → `budget.settle` → `execution.settle.success` or
//! `execution.settle.failure`. A refusal ends the run before any adapter work (no image is
//! built or pulled, no container created) and is recorded as a failure like any other.
//!
//! Rules:
//! - **Success means checked.** Success is recorded only after the staged evidence passed
//!   every check of [`crate::evidence`], was committed to the World's store, and (when asked)
//!   was copied to `save_dir`. Any failure on the way is recorded as the failure it is, so
//!   what the ledger says and what the caller prints are always one outcome.
//! - **Release on every path.** Once taken, the lease is released whatever happens next: a
//!   processor error, an adapter failure, a timeout, cancellation. Should the process die
//!   anyway, the lease expires after its TTL.
//! - **Lease TTL** = the run's timeout + [`LEASE_MARGIN`], plus [`BUILD_ALLOWANCE`] with
//!   `build`: the timeout does not count image builds and pulls.
//! - **Cost.** Mock runs spend nothing. Real runs that reached the adapter spend their whole
//!   reservation (provider prices are not known to proctor); runs refused before the
//!   adapter spend nothing.
//! - **Success evidence.** The success settle records the index path and the content ids of
//!   the committed `outputs.json` and `receipt.json`, so `proctor verify` can tie the files
//!   to the chain; a Modal run's files are checked where its processor wrote them, in the
//!   World's store ([`evidence::check_in_store`]), and recorded the same way. A pinned run records its pinned digest at
//!   start; a `build` run records none (its image ID is known only at settle).
//! - **Redaction.** Every payload recorded passes the run's redactor first (the ledger
//!   applies it to whole payloads before they are hashed), so no secret value and no
//!   credential a processor echoes reaches the chain, where it could never be removed.
//! - **Memo keys.** A local success records its memo key ([`crate::memo`]) once settled,
//!   so later runs with the same key can be answered by it; an envelope that claims to be
//!   a memo hit (`memo_source`) is refused with `ERR_ENVELOPE`.
//! - Failures before the ledger is opened (CI guard, every pre-adapter check) are not
//!   recorded: they happen before any work.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proctor_adapters::{ImageSource, Invocation};
use proctor_contract::{
    CanonError, Envelope, ErrorCode, Mode, Redactor, SuccessEnvelope, WorldPath,
};
use proctor_ledger::{ExecutionSettle, ExecutionStart, LeaseGuard, Ledger, NewEvent, Outcome};
use tokio_util::sync::CancellationToken;

use crate::evidence::{self, StagedDirs};
use crate::memo::MemoKey;
use crate::run::{AdapterHandle, AdapterKind, Engine, RunRequest};

/// Added to the run's timeout for the lease TTL: container start-up, cleanup, the ledger.
const LEASE_MARGIN: Duration = Duration::from_secs(120);
/// Added to the lease TTL of `build` runs: building the image is not counted in the run's
/// timeout.
const BUILD_ALLOWANCE: Duration = Duration::from_secs(30 * 60);

/// Records the run of `invocation` around the adapter; returns the envelope and where the
/// outputs were saved, or the error that replaced them.
pub(crate) async fn record_run(
    engine: &Engine,
    request: &RunRequest,
    invocation: Invocation,
    redactor: &Redactor,
    cancel: &CancellationToken,
) -> Result<(Envelope, Option<PathBuf>), CanonError> {
    let ledger = engine.ledger().await?;
    ledger.redact_with(redactor);
    // Without /proc the owner goes unrecorded, and recovery leaves the run alone.
    let owner = proctor_ledger::this_process().ok();
    if let Some(here) = &owner
        && let Err(error) =
            crate::recover::recover_plan_at_start(engine, ledger, &request.plan, here).await
    {
        tracing::warn!(
            event = "ledger.recover_failed",
            plan = %request.plan,
            code = %error.code(),
            message = %error.message(),
        );
    }
    let recorder = Recorder {
        owner,
        ledger,
        engine,
        request,
        invocation,
        started: Instant::now(),
    };
    recorder.record(cancel).await
}

/// One run's conversation with the ledger.
struct Recorder<'a> {
    /// This process, the owner `execution.start` records.
    owner: Option<proctor_contract::ExecutionOwner>,
    engine: &'a Engine,
    ledger: &'a Ledger,
    request: &'a RunRequest,
    invocation: Invocation,
    started: Instant,
}

/// What the run produced, ready for its settle.
struct Ran {
    /// What the caller gets: the envelope and where it was saved, or the error.
    result: Result<(Envelope, Option<PathBuf>), CanonError>,
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
        &self.request.plan
    }

    /// Start, guarded run, settle.
    async fn record(
        self,
        cancel: &CancellationToken,
    ) -> Result<(Envelope, Option<PathBuf>), CanonError> {
        let payload = &self.invocation.payload;
        let start = ExecutionStart {
            execution_id: payload.execution_id.clone(),
            plan: self.plan().to_owned(),
            processor_ref: payload.processor_ref.to_string(),
            mode: payload.mode,
            write_prefix: payload.write_prefix.clone(),
            image_digest: pinned_digest(&self.invocation.image),
            owner: self.owner.clone(),
        };
        let adapter = self.engine.adapter(self.request.adapter);
        // The adapter connects while the ledger records the start: neither waits for the
        // other, and nothing is started before the reservation and the lease are granted.
        let prepare = async {
            if let Ok(adapter) = &adapter {
                // An engine that never answers must not hold up a cancelled run.
                tokio::select! {
                    () = adapter.get().prepare() => {}
                    () = cancel.cancelled() => {}
                }
            }
        };
        let (started, ()) = tokio::join!(self.ledger.record_start(&start), prepare);
        started?;
        let ran = self.reserve_lease_and_invoke(&adapter, cancel).await;
        let settled = self.settle(ran).await;
        if let Ok((Envelope::Success(success), _)) = &settled
            && self.request.adapter == AdapterKind::Local
        {
            let key = MemoKey::of_run(
                &payload.processor_ref,
                &success.meta.image_digest,
                payload.mode,
                &payload.inputs,
                &payload.upstream,
            );
            crate::memo::record_key(self.ledger, self.execution_id(), &key).await;
        }
        settled
    }

    /// Reserves, leases, and (both granted) invokes; the lease is released on every path.
    async fn reserve_lease_and_invoke(
        &self,
        adapter: &Result<AdapterHandle<'_>, CanonError>,
        cancel: &CancellationToken,
    ) -> Ran {
        let reserved = self
            .ledger
            .reserve(
                self.plan(),
                self.execution_id(),
                self.request.reserve_micro_usd,
            )
            .await;
        if let Err(error) = reserved {
            return Ran::failed(error.into(), false);
        }
        let selector = match WorldPath::parse(&self.invocation.payload.write_prefix) {
            Ok(selector) => selector,
            Err(error) => return Ran::failed(error, false),
        };
        let lease = self
            .ledger
            .acquire_lease(
                self.plan(),
                &selector,
                self.execution_id(),
                self.lease_ttl(),
            )
            .await;
        let lease = match lease {
            Ok(lease) => lease,
            Err(error) => return Ran::failed(error.into(), false),
        };
        let ran = self.invoke_under_lease(adapter, cancel).await;
        self.release(lease).await;
        ran
    }

    /// Calls the adapter (unless cancelled first), then checks and commits a success.
    async fn invoke_under_lease(
        &self,
        adapter: &Result<AdapterHandle<'_>, CanonError>,
        cancel: &CancellationToken,
    ) -> Ran {
        if cancel.is_cancelled() {
            let error = CanonError::new(
                ErrorCode::Interrupted,
                format!(
                    "interrupted before {} was started",
                    self.invocation.payload.processor_ref
                ),
            );
            return Ran::failed(error, false);
        }
        let adapter = match adapter {
            Ok(adapter) => adapter,
            Err(error) => return Ran::failed(error.clone(), false),
        };
        match adapter.get().invoke(&self.invocation, cancel).await {
            Ok(Envelope::Success(success)) => match self.accept(&success, cancel).await {
                Ok((outcome, saved_to)) => Ran {
                    result: Ok((Envelope::Success(success), saved_to)),
                    outcome,
                    invoked: true,
                },
                Err(error) => Ran::failed(error, true),
            },
            Ok(Envelope::Error(error)) => {
                // The ledger and the printed envelope are each redacted where they are written.
                Ran {
                    outcome: Outcome::Failure(error.error.to_canon_error()),
                    result: Ok((Envelope::Error(error), None)),
                    invoked: true,
                }
            }
            Err(error) => Ran::failed(error, true),
        }
    }

    /// Checks and commits the evidence of a success, records its outputs, and copies them to
    /// `save_dir`; gives the success outcome and where the outputs were saved.
    async fn accept(
        &self,
        success: &SuccessEnvelope,
        cancel: &CancellationToken,
    ) -> Result<(Outcome, Option<PathBuf>), CanonError> {
        if let Some(source) = &success.memo_source {
            return Err(CanonError::new(
                ErrorCode::Envelope,
                format!(
                    "{} answered as a memo hit of `{source}`; only the engine answers from \
                     the memo cache",
                    self.invocation.payload.processor_ref
                ),
            ));
        }
        if cancel.is_cancelled() {
            return Err(CanonError::new(
                ErrorCode::Interrupted,
                format!(
                    "interrupted after {} returned; none of its evidence was committed",
                    self.invocation.payload.processor_ref
                ),
            ));
        }
        let limits = &self.engine.config().limits;
        let (outputs_index_cid, receipt_cid) = match self.request.adapter {
            AdapterKind::Modal => {
                let stored = evidence::check_in_store(
                    self.engine.store().as_ref(),
                    &self.invocation.payload,
                    success,
                    limits,
                )
                .await?;
                (stored.index_cid, Some(stored.receipt_cid))
            }
            AdapterKind::Local => {
                let staging = &self.invocation.staging;
                let staged = StagedDirs {
                    prefix: staging.prefix_dir(),
                    execution: staging.execution_dir(),
                };
                let checked = evidence::check(staged, &self.invocation.payload, success, limits)?;
                evidence::commit(self.engine.store().as_ref(), &checked, cancel).await?;
                (checked.index_cid(), Some(checked.receipt_cid()))
            }
        };
        let events: Vec<NewEvent> = success
            .outputs
            .iter()
            .map(|output| NewEvent::artifact_produce(self.execution_id(), output))
            .collect();
        self.ledger.append_batch(self.plan(), &events).await?;
        let saved_to = match &self.request.save_dir {
            Some(save_dir) => {
                crate::save::save_outputs(
                    self.engine.store().as_ref(),
                    &self.engine.config().artifacts_root,
                    success,
                    save_dir,
                )
                .await?;
                Some(save_dir.clone())
            }
            None => None,
        };
        Ok((
            Outcome::Success {
                index_path: success.index_path.to_string(),
                outputs_index_cid,
                receipt_cid,
            },
            saved_to,
        ))
    }

    /// Releases the lease; a failure is logged (the lease then expires after its TTL).
    async fn release(&self, lease: LeaseGuard) {
        let selector = lease.lease().selector.to_string();
        match lease.release().await {
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
    async fn settle(&self, ran: Ran) -> Result<(Envelope, Option<PathBuf>), CanonError> {
        let actual_micro_usd = match self.invocation.payload.mode {
            Mode::Real if ran.invoked => self.request.reserve_micro_usd,
            _ => 0,
        };
        let image_digest = match &ran.result {
            Ok((Envelope::Success(success), _)) => Some(success.meta.image_digest.clone()),
            Ok((Envelope::Error(error), _)) => error.meta.image_digest.clone(),
            Err(_) => None,
        };
        let settle = ExecutionSettle {
            execution_id: self.execution_id().to_owned(),
            outcome: ran.outcome,
            image_digest,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let settled = self
            .ledger
            .settle_execution(self.plan(), actual_micro_usd, &settle)
            .await;
        match settled {
            Ok(appended) => {
                tracing::info!(
                    event = "ledger.settle",
                    execution_id = %self.execution_id(),
                    plan = %self.plan(),
                    seq = appended.seq,
                    status = if matches!(ran.result, Ok((Envelope::Success(_), _))) { "success" } else { "failure" },
                );
                ran.result
            }
            Err(error) => {
                let error = error.to_canon();
                match ran.result {
                    Ok((Envelope::Success(_), _)) => Err(error),
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
        self.invocation
            .timeout
            .saturating_add(LEASE_MARGIN)
            .saturating_add(build)
    }
}

/// The digest a pinned run must report (`sha256:…`), known before the run.
fn pinned_digest(image: &ImageSource) -> Option<String> {
    match image {
        ImageSource::Pinned { reference } => Some(reference.digest().to_string()),
        ImageSource::Build { .. } | ImageSource::Local { .. } => None,
    }
}
