//! What the orchestrator sends a processor, and what `/healthz` answers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Mode, ProcessorRef, WorldPath};

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
    /// The upstream outputs the inputs were resolved from (a plan's `$from` references);
    /// omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<UpstreamOutput>,
}

/// An upstream execution's output that a run's inputs were resolved from. Its bytes are
/// already part of the inputs, so it names where they came from and is not hashed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOutput {
    /// The upstream execution that produced the output.
    pub execution_id: String,
    /// The output's world path.
    pub path: WorldPath,
    /// The output's content id, as its execution's outputs index records it.
    pub cid: String,
}

/// The output, relative to `{write_prefix}outputs/`, in which a planner processor proposes
/// transitions: `{"transitions": [TRANSITION, ...]}`. Every planner declares it.
pub const PROPOSAL_OUTPUT: &str = "plan/transitions.json";

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn payload(upstream: Vec<UpstreamOutput>) -> RunPayload {
        RunPayload {
            schema: PAYLOAD_SCHEMA.to_owned(),
            execution_id: "e2".to_owned(),
            processor_ref: "text/stats@1".parse().unwrap(),
            mode: Mode::Mock,
            inputs: json!({"schema": "v1"}),
            write_prefix: "/artifacts/o/e2/".to_owned(),
            upstream,
        }
    }

    #[test]
    fn no_upstream_is_omitted_and_reads_back_empty() {
        let value = serde_json::to_value(payload(vec![])).unwrap();
        assert_eq!(
            value,
            json!({
                "schema": "v1",
                "execution_id": "e2",
                "ref": "text/stats@1",
                "mode": "mock",
                "inputs": {"schema": "v1"},
                "write_prefix": "/artifacts/o/e2/",
            })
        );
        assert_eq!(
            serde_json::from_value::<RunPayload>(value).unwrap(),
            payload(vec![])
        );
    }

    #[test]
    fn upstream_round_trips_and_refuses_unknown_fields() {
        let upstream = UpstreamOutput {
            execution_id: "e1".to_owned(),
            path: WorldPath::parse("/artifacts/o/e1/outputs/a.txt").unwrap(),
            cid: "b3:ff".to_owned(),
        };
        let with = payload(vec![upstream]);
        let value = serde_json::to_value(&with).unwrap();
        assert_eq!(
            value["upstream"],
            json!([{"execution_id": "e1", "path": "/artifacts/o/e1/outputs/a.txt", "cid": "b3:ff"}])
        );
        assert_eq!(
            serde_json::from_value::<RunPayload>(value.clone()).unwrap(),
            with
        );

        let mut extra = value;
        extra["upstream"][0]["transition"] = json!("stats");
        assert!(serde_json::from_value::<RunPayload>(extra).is_err());
    }
}
