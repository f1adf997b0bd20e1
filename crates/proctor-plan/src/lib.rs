//! Plans: a graph of transitions (processor executions) gated by predicates, applied through
//! the engine.
//!
//! A plan file names transitions, their inputs (which may reference upstream outputs with
//! `$from` and attached files with `$attach`), their dependencies and their predicates. Loading checks the whole plan before
//! anything starts; applying runs ready transitions concurrently through
//! `proctor_engine::Engine::run`, which does every per-run check and the ledger record.
//!
//! **Architecture invariant:** nothing in a plan bypasses the engine: every transition is one
//! `RunRequest`, and nothing here prints or parses arguments.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod apply;
mod graph;
mod load;
mod model;
mod predicates;
mod reference;
mod status;

pub use apply::{ApplyOptions, PlanReport, TransitionReport, apply};
pub use graph::{GraphFormat, TransitionState, admission_order, find_cycle, render};
pub use load::{MAX_PLAN_BYTES, MAX_PLAN_DEPTH, MAX_PROPOSAL_DEPTH, PLAN_SCHEMA, load};
pub use model::{
    DEFAULT_MAX_PARALLEL, DEFAULT_WRITE_PREFIX, OnFailure, Plan, PlanFile, PolicySpec,
    PredicatesSpec, Transition, TransitionSpec,
};
pub use predicates::{
    MAX_JSON_BYTES, PREDICATE_IDS, Predicate, PredicateContext, PredicateSpec, Scope, Verdict,
};
pub use reference::{AS_KEY, FROM_KEY, FromRef, MAX_REFERENCE_BYTES};
pub use status::{PlanStatus, TransitionStatus, status};
