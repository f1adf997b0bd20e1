//! Integration tests of proctor-deploy, one binary. What each module needs:
//! - `modal_app`: `python3` with the `modal` package (scripts/setup.sh installs it); no
//!   token, no network.
//! - `modal_cli`: the `modal` command on `PATH`; Modal itself is never reached (its server
//!   URL points at a closed port on 127.0.0.1).
//! - `drift`: nothing; it serves `/healthz` on 127.0.0.1.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

mod drift;
mod modal_app;
mod modal_cli;
mod support;
