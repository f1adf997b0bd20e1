//! Processor SDK: a processor is a thin `main` plus a [`Provider`]; the SDK serves the
//! HTTP contract and writes outputs, the outputs index and receipts.
//!
//! ```no_run
//! use proctor_sdk::{Context, ProcessorDefinition, ProviderError, ProviderOutput, ProviderResult};
//!
//! fn provide(_: &Context, inputs: serde_json::Value) -> Result<ProviderResult, ProviderError> {
//!     let text = inputs["text"].as_str().ok_or_else(|| ProviderError::inputs("`text` is missing"))?;
//!     Ok(ProviderResult {
//!         outputs: vec![ProviderOutput::text("upper.txt", text.to_uppercase())],
//!         processor_info: "example/upper@1".to_owned(),
//!         usage: Default::default(),
//!     })
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let processor_ref = "example/upper@1".parse().expect("a valid ref");
//!     proctor_sdk::serve_main(ProcessorDefinition::new(processor_ref, provide))
//! }
//! ```
//!
//! The HTTP contract (`PROCTOR_PORT`, `PROCTOR_BIND`, `PROCTOR_IMAGE_DIGEST`,
//! `PROCTOR_ARTIFACTS_ROOT`, `PROCTOR_STORE_URL`, and the runtime limits `PROCTOR_CPU`, `PROCTOR_MEMORY_GB`,
//! `PROCTOR_GPU` that the env fingerprint names; with `PROCTOR_SOCKET` set, served on that
//! unix socket instead of a port):
//! - Without `PROCTOR_IMAGE_DIGEST` nothing runs: `/healthz` answers `setup_failed` with a
//!   line saying so, and every `POST /run` and `POST /run-stream` answers 500 with an
//!   `ERR_IMAGE_UNPINNED` envelope, whatever its body.
//! - `GET /healthz` answers [`proctor_contract::Health`]: 200 while `ready` or `busy`, 503
//!   while `starting` (a set-up step, [`ProcessorDefinition::with_setup`], is running) or
//!   `setup_failed` (with the redacted tail of the set-up's log), and the concurrency: how
//!   many runs it serves at once ([`ProcessorDefinition::with_concurrency`], default 1,
//!   overridden by `PROCTOR_CONCURRENCY`).
//! - `POST /run` and `POST /run-stream` over the concurrency, or before set-up has ended,
//!   answer 409 with an `ERR_PROCESSOR_BUSY` envelope: try again later; after a failed
//!   set-up, 503 with `ERR_PROVIDER`.
//! - `POST /run` takes a [`proctor_contract::RunPayload`] as `application/json` and answers
//!   an envelope: 200 on success; 415 for another content type; 400 for a body that is not
//!   a valid payload for this processor, a bad write prefix (`ERR_WRITE_PREFIX` for a
//!   `{…}` placeholder other than `{execution_id}`, which is expanded with the payload's
//!   execution id as the orchestrator expands it), a missing secret (`real`), or
//!   inputs the provider refuses; 500 for outputs that are invalid or cannot be written;
//!   502 when the provider fails.
//! - `POST /run-stream` checks the request the same way (same error answers), then answers
//!   `text/event-stream`: `progress` events (`{"stage":…}`), then one `done` event whose
//!   data is the envelope.
//!
//! An error envelope's message, and the `run.fail` line that logs it, never carry the values
//! of the processor's secrets and pass-through variables, whatever the mode: its detail is
//! redacted, then cut to 4 KiB. A provider that quotes its upstream redacts before it cuts
//! ([`Context::redactor`]).
//!
//! **Architecture Invariant:** the SDK, not the adapter, writes every file of a run —
//! outputs under `{write_prefix}outputs/`, `{write_prefix}outputs.json`, and the receipt
//! at `{write_prefix}receipt.json` and `/artifacts/execution/{execution_id}/receipt.json` —
//! each atomically, and all of them or none. With `PROCTOR_STORE_URL` set (a Modal
//! deployment) they go to that object store under the same world paths instead of the
//! directory behind `/artifacts/`: one put per object (visible whole or not at all), the
//! receipts last, and what was put removed again when a later put fails. A store that
//! cannot be opened is a failed set-up: `/healthz` says why and every run is refused.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod artifacts;
mod config;
mod error;
mod input_artifacts;
#[cfg(feature = "openai")]
pub mod openai;
mod provider;
mod run;
mod server;
mod setup;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    DEFAULT_PORT, ENV_ARTIFACTS_ROOT, ENV_BIND, ENV_CONCURRENCY, ENV_CPU, ENV_GPU,
    ENV_IMAGE_DIGEST, ENV_MEMORY_GB, ENV_PORT, ENV_SOCKET, ENV_STORE_URL, ServerConfig,
};
pub use error::SdkError;
pub use provider::{
    Context, ProcessorDefinition, Provider, ProviderError, ProviderFuture, ProviderOutput,
    ProviderResult,
};
pub use rand_chacha::ChaCha20Rng;
pub use server::{serve, serve_main, serve_on, serve_on_socket, shutdown_signal};
pub use setup::{SetupFuture, SetupLog};
