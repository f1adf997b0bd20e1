//! Integration tests of the `proctor` binary: one test binary, one module per command.
//!
//! Needs: the built binary and `cargo` (layering check, and image builds). `local_adapter`
//! also needs the Docker engine that `scripts/setup.sh` starts; it is not skipped without it.

mod layering;
mod local_adapter;
mod registry;
mod run;
mod util;
