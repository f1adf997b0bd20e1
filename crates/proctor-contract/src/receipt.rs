//! Receipts: the evidence a processor leaves of one execution. Receipts are not outputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ArtifactRead, EXECUTION_ID_PLACEHOLDER, Mode, ProcessorRef, UpstreamOutput, WorldPath,
};

/// Named usage counters (tokens, milliseconds, calls).
pub type Usage = BTreeMap<String, u64>;

/// `receipt.json`, written under the write prefix and under
/// `/artifacts/execution/{execution_id}/`, byte-identical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The execution's id.
    pub execution_id: String,
    /// The processor that ran.
    pub processor_ref: ProcessorRef,
    /// The image it ran from.
    pub image_digest: String,
    /// Sorted `k=v;…` fingerprint, secret names only.
    pub env_fingerprint: String,
    /// Hex BLAKE3 of the JCS inputs.
    pub inputs_hash: String,
    /// The schema of `inputs_hash` (`jcs-blake3-v1`).
    pub hash_schema: String,
    /// World path of the outputs index.
    pub outputs_index: WorldPath,
    /// What the provider says about itself (model, version).
    pub processor_info: String,
    /// Usage counters.
    pub usage: Usage,
    /// RFC 3339 UTC time the run finished.
    pub timestamp_utc: String,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// The mode it ran in.
    pub mode: Mode,
    /// The upstream outputs its inputs were resolved from, as the payload named them;
    /// omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<UpstreamOutput>,
    /// The input artifacts the provider read through its SDK's reader, each checked against
    /// its content id: sorted by path, each once; omitted when none was read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts_read: Vec<ArtifactRead>,
}

impl Receipt {
    /// The part of the receipt that two runs of the same inputs share: everything but
    /// `timestamp_utc`, `duration_ms`, `usage` and the execution's id, which is replaced by
    /// `{execution_id}` wherever it appears in a path.
    pub fn stable_part(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("a receipt always serializes");
        let map = value.as_object_mut().expect("a receipt is an object");
        for volatile in ["timestamp_utc", "duration_ms", "usage", "execution_id"] {
            map.remove(volatile);
        }
        let index = self
            .outputs_index
            .as_str()
            .replace(&self.execution_id, EXECUTION_ID_PLACEHOLDER);
        map.insert("outputs_index".to_owned(), Value::String(index));
        value
    }

    /// The exact bytes written to both receipt locations.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a receipt always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(execution_id: &str, duration_ms: u64) -> Receipt {
        Receipt {
            execution_id: execution_id.to_owned(),
            processor_ref: "llm/litellm@1".parse().unwrap(),
            image_digest: "sha256:ab".to_owned(),
            env_fingerprint: "mode=mock".to_owned(),
            inputs_hash: "00".to_owned(),
            hash_schema: "jcs-blake3-v1".to_owned(),
            outputs_index: WorldPath::parse(&format!("/artifacts/o/{execution_id}/outputs.json"))
                .unwrap(),
            processor_info: "mock".to_owned(),
            usage: Usage::from([("tokens".to_owned(), duration_ms)]),
            timestamp_utc: format!("2026-01-01T00:00:0{duration_ms}Z"),
            duration_ms,
            mode: Mode::Mock,
            upstream: Vec::new(),
            artifacts_read: Vec::new(),
        }
    }

    #[test]
    fn stable_part_ignores_volatile_fields() {
        let a = receipt("e1", 1);
        let b = receipt("e2", 2);
        assert_ne!(a, b);
        assert_eq!(a.stable_part(), b.stable_part());
        assert_eq!(
            a.stable_part()["outputs_index"],
            "/artifacts/o/{execution_id}/outputs.json"
        );
        assert!(a.stable_part().get("timestamp_utc").is_none());
    }

    #[test]
    fn round_trips_with_every_field() {
        let a = receipt("e1", 1);
        let value: Value = serde_json::from_slice(&a.to_bytes()).unwrap();
        for field in [
            "execution_id",
            "processor_ref",
            "image_digest",
            "env_fingerprint",
            "inputs_hash",
            "hash_schema",
            "outputs_index",
            "processor_info",
            "usage",
            "timestamp_utc",
            "duration_ms",
            "mode",
        ] {
            assert!(value.get(field).is_some(), "{field}");
        }
        assert!(value.get("upstream").is_none());
        assert!(value.get("artifacts_read").is_none());
        assert_eq!(serde_json::from_value::<Receipt>(value).unwrap(), a);
    }

    #[test]
    fn upstream_is_written_when_present_and_round_trips() {
        let mut a = receipt("e2", 1);
        a.upstream = vec![UpstreamOutput {
            execution_id: "e1".to_owned(),
            path: WorldPath::parse("/artifacts/o/e1/outputs/a.txt").unwrap(),
            cid: "b3:ff".to_owned(),
        }];
        let value: Value = serde_json::from_slice(&a.to_bytes()).unwrap();
        assert_eq!(value["upstream"][0]["execution_id"], "e1");
        assert_eq!(
            value["upstream"][0]["path"],
            "/artifacts/o/e1/outputs/a.txt"
        );
        assert_eq!(value["upstream"][0]["cid"], "b3:ff");
        assert_eq!(a.stable_part()["upstream"], value["upstream"]);
        assert_eq!(serde_json::from_value::<Receipt>(value).unwrap(), a);
    }

    #[test]
    fn artifacts_read_come_last_and_are_stable() {
        let mut a = receipt("e1", 1);
        a.artifacts_read = vec![ArtifactRead {
            path: WorldPath::parse("/artifacts/inputs/b3:00/a.txt").unwrap(),
            cid: "b3:00".to_owned(),
        }];
        let text = String::from_utf8(a.to_bytes()).unwrap();
        assert!(
            text.ends_with(
                r#","mode":"mock","artifacts_read":[{"path":"/artifacts/inputs/b3:00/a.txt","cid":"b3:00"}]}"#
            ),
            "{text}"
        );
        assert_eq!(
            a.stable_part()["artifacts_read"],
            serde_json::json!([{"path": "/artifacts/inputs/b3:00/a.txt", "cid": "b3:00"}])
        );
        assert_eq!(serde_json::from_slice::<Receipt>(&a.to_bytes()).unwrap(), a);
    }
}
