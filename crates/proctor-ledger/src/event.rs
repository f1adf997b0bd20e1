//! Events and their hash chain: the kinds with their wire names, events to append, events
//! as stored, and the chain hash `BLAKE3(prev_hash bytes || JCS(payload))`.
//!
//! The stored payload is the whole event body as RFC 8785 canonical JSON: the caller's
//! fields plus `kind`, `at` (the timestamp) and, when the event belongs to an execution,
//! `execution_id`. The `kind`, `created_at` and `execution_id` columns repeat those fields
//! for queries; verification checks that they agree, so every column is covered by the hash.

use std::fmt;

use proctor_contract::{OutputEntry, canonical_json};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::clock::Timestamp;
use crate::error::{LedgerError, Result};

/// The `prev_hash` of the first event of every plan: 32 zero bytes, as hex.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Payload keys the ledger sets itself.
const RESERVED_KEYS: [&str; 3] = ["kind", "at", "execution_id"];

macro_rules! event_kinds {
    ($($variant:ident => ($wire:literal, $doc:literal),)*) => {
        /// What an event records. Serialized as its wire name, e.g. `execution.start`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $(
                #[doc = concat!("`", $wire, "`: ", $doc)]
                #[serde(rename = $wire)]
                $variant,
            )*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $wire,)* }
            }

            /// Parses a wire name.
            pub fn from_wire(name: &str) -> Option<EventKind> {
                match name { $($wire => Some(EventKind::$variant),)* _ => None }
            }
        }
    };
}

event_kinds! {
    ExecutionStart => ("execution.start", "an execution was recorded before its invocation"),
    ExecutionSettleSuccess => ("execution.settle.success", "an execution ended with a success envelope"),
    ExecutionSettleFailure => ("execution.settle.failure", "an execution ended with a canonical error"),
    ArtifactProduce => ("artifact.produce", "an execution produced an output"),
    BudgetSet => ("budget.set", "a plan's budget was set or removed"),
    BudgetReserve => ("budget.reserve", "an amount was reserved for an execution"),
    BudgetSettle => ("budget.settle", "an execution's reservation was replaced by its actual cost"),
    PredicateCheck => ("predicate.check", "a predicate was checked against an execution"),
    LeaseAcquire => ("lease.acquire", "an execution leased a write path"),
    LeaseRelease => ("lease.release", "a write-path lease was released"),
}

impl EventKind {
    /// Whether [`crate::Ledger::append`] accepts this kind. The others keep tables in step
    /// with the chain and are appended only by their own operations (`record_start`,
    /// `reserve`, `acquire_lease`, …).
    pub fn is_free(self) -> bool {
        matches!(self, EventKind::ArtifactProduce | EventKind::PredicateCheck)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append: its kind, the execution it belongs to, and its own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    kind: EventKind,
    execution_id: Option<String>,
    fields: Map<String, Value>,
}

impl NewEvent {
    /// An event of a free kind (see [`EventKind::is_free`]) with `fields`; the keys `kind`,
    /// `at` and `execution_id` are the ledger's and are refused.
    pub fn new(
        kind: EventKind,
        execution_id: Option<&str>,
        fields: Map<String, Value>,
    ) -> Result<NewEvent> {
        if !kind.is_free() {
            return Err(LedgerError::ledger(format!(
                "`{kind}` events are appended by their own ledger operation, not by append"
            )));
        }
        if let Some(key) = RESERVED_KEYS.iter().find(|key| fields.contains_key(**key)) {
            return Err(LedgerError::ledger(format!(
                "payload key `{key}` is set by the ledger; rename the field"
            )));
        }
        Ok(NewEvent::internal(kind, execution_id, fields))
    }

    /// `artifact.produce`: `execution_id` produced `output` (path, cid, size, mime).
    pub fn artifact_produce(execution_id: &str, output: &OutputEntry) -> NewEvent {
        NewEvent::internal(
            EventKind::ArtifactProduce,
            Some(execution_id),
            object(json!({
                "path": output.path,
                "cid": output.cid,
                "size_bytes": output.size_bytes,
                "mime": output.mime,
            })),
        )
    }

    /// `predicate.check`: `predicate` was checked against `execution_id` and `passed` or not.
    pub fn predicate_check(
        execution_id: &str,
        predicate: &str,
        passed: bool,
        detail: &str,
    ) -> NewEvent {
        NewEvent::internal(
            EventKind::PredicateCheck,
            Some(execution_id),
            object(json!({"predicate": predicate, "passed": passed, "detail": detail})),
        )
    }

    /// Any kind, for the ledger's own operations.
    pub(crate) fn internal(
        kind: EventKind,
        execution_id: Option<&str>,
        fields: Map<String, Value>,
    ) -> NewEvent {
        NewEvent {
            kind,
            execution_id: execution_id.map(str::to_owned),
            fields,
        }
    }

    /// The kind.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The execution it belongs to.
    pub fn execution_id(&self) -> Option<&str> {
        self.execution_id.as_deref()
    }

    /// The canonical payload text stamped with `at`.
    pub(crate) fn payload(&self, at: &Timestamp) -> String {
        let mut body = self.fields.clone();
        body.insert("kind".to_owned(), Value::from(self.kind.as_str()));
        body.insert("at".to_owned(), Value::from(at.as_str()));
        if let Some(execution_id) = &self.execution_id {
            body.insert(
                "execution_id".to_owned(),
                Value::from(execution_id.as_str()),
            );
        }
        canonical_json(&Value::Object(body))
    }
}

/// The object inside `value` (callers pass `json!({…})` literals).
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => Map::from_iter([("value".to_owned(), other)]),
    }
}

/// The chain hash of a payload following `prev`: `BLAKE3(prev bytes || payload)`.
pub(crate) fn chain_hash(prev: &blake3::Hash, payload: &str) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev.as_bytes());
    hasher.update(payload.as_bytes());
    hasher.finalize()
}

/// The hash every chain starts from.
pub(crate) fn genesis() -> blake3::Hash {
    blake3::Hash::from_bytes([0; 32])
}

/// Where an appended event landed in its plan's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appended {
    /// Its sequence number (the first event of a plan is 1).
    pub seq: u64,
    /// Its `this_hash`, lowercase hex.
    pub this_hash: String,
}

/// An event as stored, column by column (nothing is trusted: see
/// [`crate::Ledger::verify_chain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The plan whose chain holds it.
    pub plan: String,
    /// Its position in the chain.
    pub seq: u64,
    /// The `kind` column (see [`Event::kind`]).
    #[serde(rename = "kind")]
    pub kind_name: String,
    /// The execution it belongs to, if any.
    pub execution_id: Option<String>,
    /// The payload text (canonical JSON as appended); serialized as JSON when it parses.
    #[serde(serialize_with = "payload_as_json")]
    pub payload: String,
    /// The previous event's `this_hash` (or [`GENESIS_HASH`]).
    pub prev_hash: String,
    /// `BLAKE3(prev_hash bytes || payload)`, hex.
    pub this_hash: String,
    /// When it was appended.
    pub created_at: String,
}

impl Event {
    /// The kind, when the stored name is a known one.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_wire(&self.kind_name)
    }

    /// The payload parsed as JSON.
    pub fn payload_json(&self) -> std::result::Result<Value, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}

fn payload_as_json<S: Serializer>(
    payload: &str,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match serde_json::from_str::<Value>(payload) {
        Ok(value) => value.serialize(serializer),
        Err(_) => serializer.serialize_str(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_wire_names() {
        for &kind in EventKind::ALL {
            assert_eq!(EventKind::from_wire(kind.as_str()), Some(kind));
            let wire = serde_json::to_string(&kind).unwrap();
            assert_eq!(wire, format!("\"{kind}\""));
        }
        for wire in [
            "execution.start",
            "execution.settle.success",
            "execution.settle.failure",
            "artifact.produce",
            "budget.reserve",
            "budget.settle",
            "predicate.check",
            "lease.acquire",
            "lease.release",
        ] {
            assert!(EventKind::from_wire(wire).is_some(), "{wire}");
        }
    }

    #[test]
    fn genesis_is_32_zero_bytes() {
        assert_eq!(genesis().to_hex().as_str(), GENESIS_HASH);
    }

    #[test]
    fn chain_hash_is_blake3_of_prev_bytes_then_payload() {
        let payload = r#"{"a":1}"#;
        let mut bytes = vec![0u8; 32];
        bytes.extend_from_slice(payload.as_bytes());
        assert_eq!(chain_hash(&genesis(), payload), blake3::hash(&bytes));
    }

    #[test]
    fn payload_is_canonical_and_stamped() {
        let fields = object(json!({"z": 1, "b": [true, null]}));
        let event = NewEvent::new(EventKind::PredicateCheck, Some("e1"), fields).unwrap();
        let at = Timestamp::now();
        let payload = event.payload(&at);
        let expected = format!(
            r#"{{"at":"{}","b":[true,null],"execution_id":"e1","kind":"predicate.check","z":1}}"#,
            at.as_str()
        );
        assert_eq!(payload, expected);
    }

    #[test]
    fn append_refuses_managed_kinds_and_reserved_keys() {
        let err = NewEvent::new(EventKind::BudgetReserve, None, Map::new()).unwrap_err();
        assert_eq!(err.code(), proctor_contract::ErrorCode::Ledger);
        let err = NewEvent::new(
            EventKind::ArtifactProduce,
            None,
            object(json!({"kind": "x"})),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`kind`"));
    }
}
