//! The processor registry: one `registry.yaml` per processor version under
//! `processors/<ns>/<name>/<version>/`, loaded strictly (unknown keys are refused).
//!
//! [`Registry::load`] checks every file once (its ref matches its directory, its inputs
//! schema compiles, its declared outputs are canonical relative paths, its examples are valid
//! inputs); the per-run checks ([`validate_inputs`], [`check_secrets`],
//! [`pinned_image`]) then answer with canonical errors before any adapter work.
//!
//! **Architecture Invariant:** the registry reads files and nothing else: no network, no
//! containers. Processors never depend on it.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod checks;
mod loader;
mod spec;

pub use checks::{check_secrets, pinned_image, validate_inputs};
pub use loader::{REGISTRY_FILE, RegisteredProcessor, Registry, RegistryCache};
pub use spec::{Build, Example, Image, OutputDecl, Platforms, ProcessorSpec, Runtime, Secrets};
