//! Integration tests of the `proctor` binary: one test binary, one module per command.
//!
//! Needs: the built binary and `cargo` (layering check, and image builds). `local_adapter`
//! also needs the Docker engine that `scripts/setup.sh` starts, and `world` its S3-compatible
//! server on 127.0.0.1:9000; neither is skipped without them. `ledger` and `verify` also need
//! the engine, and `ledger` the PostgreSQL server on 127.0.0.1:55432. `deploy` serves its own
//! endpoints on 127.0.0.1 and runs a processor container on the engine. `image` and `lane`
//! also need the OCI registry on 127.0.0.1:5000 and the arm64 cross toolchain (see `oci`).
//! `concurrent_plans` needs the engine and the PostgreSQL server. `python_processor` needs
//! the engine with the local Python base image (`scripts/python-base.sh`), the OCI registry,
//! and `python3 -m pip` with PyPI. `first_run` needs what `local_adapter` needs.
//! `registry_auth` starts its own `docker-registry` with Basic auth, and needs the engine and
//! the cross toolchain too. `serve` starts `proctor serve` and runs containers on the engine;
//! `serve_browser` also needs Debian's `chromium` and `chromium-driver`.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

mod attach;
mod cli_output;
mod completions;
mod concurrent_plans;
mod conform;
mod deploy;
mod docker_host;
mod doctor;
mod engine;
mod evidence;
mod first_run;
mod image;
mod ipv6_pin;
mod lane;
mod layering;
mod ledger;
mod limits;
mod local_adapter;
mod memo;
mod modal_store;
mod oci;
mod plan;
mod planners;
mod progress;
mod python_processor;
mod recover;
mod registry;
mod registry_auth;
mod run;
mod secrets;
mod serve;
mod serve_browser;
mod shared_build;
mod signals;
mod util;
mod verify;
mod warm;
mod world;
