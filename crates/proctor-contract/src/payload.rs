//! What the orchestrator sends a processor, and what `/healthz` answers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Mode, ProcessorRef};

/// The schema tag of [`RunPayload`].
pub const PAYLOAD_SCHEMA: &str = "v1";

/// The body of `POST /run` and `POST /run-stream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPayload {
    /// Always [`PAYLOAD_SCHEMA`].
    pub schema: String,
    /// The execution's id.
    pub execution_id: String,
    /// The processor meant to answer.
    #[serde(rename = "ref")]
    pub processor_ref: ProcessorRef,
    /// The mode to run in.
    pub mode: Mode,
    /// The inputs, already validated against the processor's schema.
    pub inputs: Value,
    /// The expanded write prefix, ending in `/`.
    pub write_prefix: String,
}

/// The body of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Always true when the server answers.
    pub ok: bool,
    /// The image digest the processor was started with.
    pub image_digest: String,
    /// The processor's ref.
    #[serde(rename = "ref")]
    pub processor_ref: ProcessorRef,
}
