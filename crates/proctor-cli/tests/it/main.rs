//! Integration tests of the `proctor` binary: one test binary, one module per command.
//!
//! Needs: nothing beyond the built binary and `cargo` (for the layering check). Runs that
//! reach a container engine live in `local_adapter` and need the Docker engine that
//! `scripts/setup.sh` starts.

mod layering;
mod registry;
mod run;
mod util;
