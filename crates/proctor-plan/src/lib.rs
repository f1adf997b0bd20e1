//! Plans: a graph of transitions (processor executions) gated by predicates, applied through
//! the engine.
//!
//! A plan file names transitions, their inputs (which may reference upstream outputs with
//! `$from`), their dependencies and their predicates. Loading checks the whole plan before
//! anything starts; applying runs ready transitions concurrently through
//! `proctor_engine::Engine::run`, which does every per-run check and the ledger record.
//!
//! **Architecture invariant:** nothing in a plan bypasses the engine: every transition is one
//! `RunRequest`, and nothing here prints or parses arguments.
