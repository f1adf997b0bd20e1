//! Deploy targets for pinned processor images. Modal is the one target today.
//!
//! - [`ModalNames::derive`] is the naming convention (app, function, endpoint label) and
//!   [`Endpoint::resolve`] the endpoint URL of a processor on a [`ModalTarget`]; the Modal
//!   adapter and every command below use them, so all agree on where a processor lives.
//! - [`generate_app`] turns a registry entry into a Modal app (Python) that runs the pinned
//!   linux/amd64 image behind a proxy-authenticated web endpoint;
//!   [`GeneratedApp::write`] stores it under [`APP_DIR`].
//! - [`ModalCli`] runs `modal deploy` and `modal secret list` when the `modal` client and
//!   credentials are present, and says Modal is not configured otherwise.
//! - [`check_drift`] compares what each endpoint's `/healthz` reports with the pin;
//!   [`secrets_plan`] lists the secrets each processor needs and which are missing.
//!
//! **Architecture Invariant:** nothing here prints, and no failure is reported as success:
//! an unreachable Modal or endpoint is a canonical error or an `unreachable` row. Token
//! values never appear in errors, rows or logs.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod app;
mod drift;
mod endpoint;
mod modal_cli;
mod naming;
mod secrets;
mod target;

pub use app::{
    ADD_PYTHON, APP_DIR, EPHEMERAL_ARTIFACTS_ROOT, GeneratedApp, VOLUME_ARTIFACTS_ROOT,
    generate_app, runtime_env,
};
pub use drift::{DriftRow, DriftStatus, check_drift, drift_verdict};
pub use endpoint::{Endpoint, ProxyAuth};
pub use modal_cli::{Deployment, ModalCli};
pub use naming::{FUNCTION_NAME, ModalNames};
pub use secrets::{
    SecretInventory, SecretPlanRow, SecretPresence, SecretPurpose, SecretsPlan, secrets_plan,
};
pub use target::{MAX_HOST_PREFIX, ModalTarget};
