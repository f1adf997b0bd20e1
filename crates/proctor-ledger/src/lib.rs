//! The proctor ledger: plans, executions and hash-chained events on SQLite (embedded, the
//! default) or PostgreSQL (shared by a team), with budgets and write-path leases.
//!
//! Every change appends an event to its plan's chain:
//! `this_hash = BLAKE3(prev_hash bytes || JCS(payload))`, the first `prev_hash` being 32
//! zero bytes, so [`Ledger::verify_chain`] finds any edited, deleted, inserted or reordered
//! row, and checks the `plans` and `executions` rows against what the chain's events say
//! they hold. Both backends share one schema (`migrations/sqlite`, `migrations/postgres`) and
//! one code path through sqlx's `Any` driver.
//!
//! A run, as `proctor run --plan KEY` records it:
//! [`Ledger::record_start`], [`Ledger::reserve`] (refused with `ERR_BUDGET_EXCEEDED`),
//! [`Ledger::acquire_lease`] on the write prefix (refused with `ERR_LEASE_CONFLICT`), the
//! invocation, [`LeaseGuard::release`], [`Ledger::settle_execution`] (the budget's settle and
//! the run's end in one write). A run whose process died is settled later by
//! [`Ledger::settle_abandoned`] (see `recover`).
//!
//! Writes of one handle are committed in groups (see `group`): concurrent writers share
//! transactions, each still getting its own answer.
//!
//! **Architecture Invariant:** the ledger knows nothing of containers, adapters or
//! storage; it records what the CLI tells it and checks only its own consistency.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod budget;
mod checkpoint;
mod clock;
mod error;
mod event;
mod executions;
mod group;
mod leases;
mod ledger;
mod memo;
mod migrations;
mod query;
mod recover;
mod verify;

pub use budget::Plan;
pub use checkpoint::{
    CHECKPOINT_FORMAT, ChainHead, CheckpointProblem, CheckpointPublicKey, CheckpointReport,
    CheckpointSigningKey, CheckpointStatement, HeadCheck, HeadMismatch, SignedCheckpoint,
    public_key_path,
};
pub use clock::now_timestamp;
pub use error::{LedgerError, Result};
pub use event::{Appended, Event, GENESIS_HASH, NewEvent};
pub use executions::{
    Execution, ExecutionEvidence, ExecutionSettle, ExecutionStart, ExecutionStatus, Outcome,
    Settlement,
};
pub use leases::{Lease, LeaseGuard, selectors_overlap};
pub use ledger::{Backend, DEFAULT_LEDGER_URL, Ledger};
pub use memo::{MemoHit, MemoSource};
pub use query::{ErrorCodeFilter, ExecutionPage, ExecutionQuery, PlanHead, PlanSummary};
pub use recover::{
    OwnerLiveness, RunningExecution, SettledAbandoned, abandoned_error, owner_liveness,
    process_start_time, this_process,
};
pub use verify::{BreakReason, ChainBreak, ChainCache, ChainReport, TableMismatch};
