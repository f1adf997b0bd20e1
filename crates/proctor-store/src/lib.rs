//! Artifact storage for the world.
//!
//! World paths under `/artifacts/` map onto one [`ArtifactStore`] trait with two
//! implementations: [`FsStore`], the local filesystem laid out exactly as processors see it
//! under `/artifacts` (the default), and [`S3Store`], S3-compatible object storage for teams,
//! where the object key is the world path without its leading `/`. [`open`] picks one from a
//! location (`file:///abs/path`, a plain path, or `s3://bucket/prefix?endpoint=…`).
//!
//! On top of the trait: [`ls`] and [`cat`] for browsing, [`sync_execution`] to publish an
//! execution's artifacts from one store to another, and [`verify_execution`], which re-checks
//! the evidence an execution left (receipts, outputs index, output bytes) and reports every
//! mismatch as a failed [`Check`].
//!
//! **Architecture invariant:** this crate knows world paths and the contract's evidence
//! types, nothing about containers, adapters, the ledger or the command line. It never logs
//! credentials.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod error;
mod fs;
mod open;
mod s3;
mod store;
mod sync;
mod verify;
mod world;

pub use error::StoreError;
pub use fs::FsStore;
pub use open::{open, open_with_env};
pub use s3::{S3Options, S3Store};
pub use store::{ArtifactStore, ByteStream, ObjectInfo};
pub use sync::{SyncReport, sync_execution};
pub use verify::{Check, VerifyReport, verify_execution};
pub use world::{cat, ls};
