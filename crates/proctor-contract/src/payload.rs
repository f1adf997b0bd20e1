//! What the orchestrator sends a processor, and what `/healthz` answers.

use std::num::NonZeroU32;

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

/// The body of `GET /healthz`, answered with [`HealthState::http_status`]: 200 while the
/// processor serves runs (`ready`, `busy`), 503 while it cannot (`starting`,
/// `setup_failed`). An answer without `state` or `concurrency` (a processor written before
/// they existed) reads as `ready` with a concurrency of 1.
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
    /// What the processor can do now.
    #[serde(default)]
    pub state: HealthState,
    /// How many `/run` and `/run-stream` requests it serves at once; one more is answered
    /// with HTTP 409 and `ERR_PROCESSOR_BUSY`.
    #[serde(default = "single_slot")]
    pub concurrency: NonZeroU32,
    /// For `setup_failed`: the last lines the processor logged, oldest first, secrets
    /// redacted; empty (and omitted) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

impl Health {
    /// A `ready` answer with one slot: what a processor that serves one run at a time and
    /// has no set-up reports.
    pub fn ready(image_digest: impl Into<String>, processor_ref: ProcessorRef) -> Health {
        Health {
            ok: true,
            image_digest: image_digest.into(),
            processor_ref,
            state: HealthState::Ready,
            concurrency: single_slot(),
            log_tail: Vec::new(),
        }
    }
}

fn single_slot() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// What a processor can do when `/healthz` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Its set-up is still running; `/run` answers busy until it ends.
    Starting,
    /// A slot is free: the next `/run` is served.
    #[default]
    Ready,
    /// Every slot is taken: `/run` answers busy until a run ends.
    Busy,
    /// Its set-up failed; it never serves a run (`log_tail` says why).
    SetupFailed,
}

impl HealthState {
    /// The HTTP status `/healthz` answers with: 200 for `ready` and `busy`, 503 for
    /// `starting` and `setup_failed`.
    pub fn http_status(self) -> u16 {
        match self {
            HealthState::Ready | HealthState::Busy => 200,
            HealthState::Starting | HealthState::SetupFailed => 503,
        }
    }

    /// The state's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Starting => "starting",
            HealthState::Ready => "ready",
            HealthState::Busy => "busy",
            HealthState::SetupFailed => "setup_failed",
        }
    }
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

    #[test]
    fn health_without_state_reads_as_ready_with_one_slot() {
        let health: Health = serde_json::from_value(
            json!({"ok": true, "image_digest": "sha256:ab", "ref": "text/stats@1"}),
        )
        .unwrap();
        assert_eq!(health.state, HealthState::Ready);
        assert_eq!(health.concurrency.get(), 1);
        assert!(health.log_tail.is_empty());
        assert_eq!(
            serde_json::to_value(&health).unwrap(),
            json!({
                "ok": true,
                "image_digest": "sha256:ab",
                "ref": "text/stats@1",
                "state": "ready",
                "concurrency": 1,
            })
        );
    }

    #[test]
    fn health_states_round_trip_with_their_statuses() {
        for (state, status) in [
            (HealthState::Starting, 503),
            (HealthState::Ready, 200),
            (HealthState::Busy, 200),
            (HealthState::SetupFailed, 503),
        ] {
            assert_eq!(state.http_status(), status);
            let value = json!({
                "ok": true,
                "image_digest": "sha256:ab",
                "ref": "text/stats@1",
                "state": state.as_str(),
                "concurrency": 4,
                "log_tail": ["model load failed"],
            });
            let health: Health = serde_json::from_value(value.clone()).unwrap();
            assert_eq!((health.state, health.concurrency.get()), (state, 4));
            assert_eq!(serde_json::to_value(&health).unwrap(), value);
        }
        let zero =
            json!({"ok": true, "image_digest": "d", "ref": "text/stats@1", "concurrency": 0});
        assert!(serde_json::from_value::<Health>(zero).is_err());
        let unknown =
            json!({"ok": true, "image_digest": "d", "ref": "text/stats@1", "state": "sleepy"});
        assert!(serde_json::from_value::<Health>(unknown).is_err());
    }
}
