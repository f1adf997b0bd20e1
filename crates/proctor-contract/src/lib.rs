//! The proctor contract: every rule of the wire format, as pure functions.
//!
//! This crate does no I/O. The orchestrator (CLI, adapters) and the processor SDK both
//! depend on it, so a rule written here holds on both sides of the wire.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod artifact_input;
mod digest;
mod envelope;
mod error;
mod hashing;
mod image_reference;
mod index;
mod inputs;
mod ledger_event;
mod mode;
mod payload;
mod platform;
mod processor_ref;
mod progress;
mod receipt;
mod redact;
mod world_path;

pub use artifact_input::{
    ARTIFACT_KEY, ARTIFACT_SCHEMA_ID, ARTIFACT_SCHEMA_REF, ATTACH_KEY, ArtifactRead, ArtifactRef,
    INPUTS_PREFIX, MAX_ATTACHMENT_NAME_BYTES, artifact_schema, attachment_path,
    attachment_references, check_attachment_name, check_attachment_references, input_artifacts,
    resolve_attachments,
};
pub use digest::{Digest, InvalidDigest};
pub use envelope::{Envelope, ErrorBody, ErrorEnvelope, ErrorMeta, SuccessEnvelope, SuccessMeta};
pub use error::{CanonError, EXIT_USAGE, ErrorCode};
pub use hashing::{
    CidHasher, HASH_SCHEMA, InputsHash, canonical_json, cid, env_fingerprint, inputs_hash,
};
pub use image_reference::{ImageRepository, InvalidReference, PinnedReference};
pub use index::{OutputEntry, OutputsIndex};
pub use inputs::{InvalidInputs, inputs_object, parse_inputs, parse_json_value};
pub use ledger_event::{
    AppliedTransition, BudgetReserveEvent, BudgetSetEvent, BudgetSettleEvent, EventKind,
    ExecutionFailureEvent, ExecutionMemoEvent, ExecutionOwner, ExecutionStartEvent,
    ExecutionSuccessEvent, LeaseAcquireEvent, LeaseReleaseEvent, LeaseReleaseReason, LedgerEvent,
    PlanAppliedEvent, PlanProposedEvent, PredicateCheckEvent, PredicateRegressedEvent,
    ResolvedReference, TakenOverLease, TransitionRunEvent, TransitionSkippedEvent,
};
pub use mode::{Mode, ci_guard};
pub use payload::{
    Health, HealthState, PAYLOAD_SCHEMA, PROPOSAL_OUTPUT, RunPayload, UpstreamOutput,
};
pub use platform::{Platform, UnknownPlatform};
pub use processor_ref::ProcessorRef;
pub use progress::{Progress, ProgressEvent, ProgressTask, ProgressUnit, TaskId};
pub use receipt::{Receipt, Usage};
pub use redact::Redactor;
pub use world_path::{
    EXECUTION_ID_PLACEHOLDER, Facet, MAX_PATH_BYTES, MAX_SEGMENT_BYTES, SelectorKind, WorldPath,
    WritePrefix,
};
