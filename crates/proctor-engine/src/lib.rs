//! The engine: one execution end to end, and the commands built on executions.
//!
//! [`Engine::run`] takes a typed [`RunRequest`] through the checks in their fixed order, the
//! adapter call, the evidence check and commit (stage, check, commit), and the ledger record
//! (start, budget reservation and settlement, the write-prefix lease), all under one
//! [`CancellationToken`] that Ctrl-C or any caller can trigger. Verify, deploy, drift and the
//! main lane's chain are library functions beside it.
//!
//! **Architecture invariant:** nothing here prints or parses arguments; callers (the CLI,
//! plans, a server) pass typed requests and get typed outcomes.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod attach;
mod evidence;
mod inputs;
mod lane;
mod memo;
mod record;
mod recover;
mod run;
mod save;

pub use attach::{Attachment, attachment_mime};
pub use inputs::Inputs;
pub use lane::{Lane, check_publish, check_run};
pub use recover::{RecoverScope, RecoveredExecution, RecoveryReport, recover};
pub use run::{
    AdapterKind, Engine, EngineConfig, Limits, MAX_RUN_TIMEOUT, RunOutcome, RunRequest,
    workspace_root,
};
pub use tokio_util::sync::CancellationToken;

mod deploy;
mod doctor;
mod error_json;
mod images;
mod main_lane;
mod verify;

pub use deploy::{
    AppOutcome, DeployReport, DeployRequest, DeployTarget, DriftReport, DriftRequest,
    SecretsPlanReport, TargetedProcessors, Validation, ValidationRuns, ValidationStatus, deploy,
    drift, secrets_plan,
};
pub use doctor::{CheckStatus, DoctorCheck, DoctorReport, DoctorRequest, doctor};
pub use images::build_layout;
pub use main_lane::{
    AcceptedProcessor, ChainReport, LaneChain, LaneRequest, LaneStep, MainLaneSettings,
    PinnedProcessor, SkippedProcessor, StepDetail, StepOutcome, StepReport, StepStatus, run_lane,
};
pub use verify::{EvidenceSources, VerifyReport, verify_execution};
