//! Events and their hash chain: events to append, events as stored, and the chain hash
//! `BLAKE3(prev_hash bytes || JCS(payload))`. Each kind's typed payload is
//! [`proctor_contract::LedgerEvent`].
//!
//! The stored payload is the whole event body as RFC 8785 canonical JSON: the kind's fields
//! plus `kind`, `at` (the timestamp) and, when the event belongs to an execution,
//! `execution_id`. The `kind`, `created_at` and `execution_id` columns repeat those fields
//! for queries; verification checks that they agree, so every column is covered by the hash.

use proctor_contract::{
    EventKind, LedgerEvent, OutputEntry, PredicateCheckEvent, Redactor, canonical_json,
};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::error::{LedgerError, Result};

/// The `prev_hash` of the first event of every plan: 32 zero bytes, as hex.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Payload keys the ledger sets itself, around the kind's fields.
const RESERVED_KEYS: [&str; 3] = ["kind", "at", "execution_id"];

/// Whether [`crate::Ledger::append`] accepts events of `kind`. The others keep tables in
/// step with the chain and are appended only by their own operations (`record_start`,
/// `reserve`, `acquire_lease`, …).
pub(crate) fn is_free(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ArtifactProduce
            | EventKind::PredicateCheck
            | EventKind::PlanApplied
            | EventKind::TransitionRun
            | EventKind::TransitionSkipped
            | EventKind::PredicateRegressed
            | EventKind::PlanProposed
    )
}

/// An event to append: its typed payload and the execution it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    execution_id: Option<String>,
    event: LedgerEvent,
}

impl NewEvent {
    /// An event of a kind [`crate::Ledger::append`] accepts (`artifact.produce`,
    /// `predicate.check`); the other kinds are written by their own ledger operations.
    pub fn new(execution_id: Option<&str>, event: LedgerEvent) -> Result<NewEvent> {
        if !is_free(event.kind()) {
            return Err(LedgerError::ledger(format!(
                "`{}` events are appended by their own ledger operation, not by append",
                event.kind()
            )));
        }
        Ok(NewEvent::internal(execution_id, event))
    }

    /// `artifact.produce`: `execution_id` produced `output` (path, cid, size, mime).
    pub fn artifact_produce(execution_id: &str, output: &OutputEntry) -> NewEvent {
        NewEvent::internal(
            Some(execution_id),
            LedgerEvent::ArtifactProduce(output.clone()),
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
            Some(execution_id),
            LedgerEvent::PredicateCheck(PredicateCheckEvent {
                predicate: predicate.to_owned(),
                passed,
                detail: detail.to_owned(),
            }),
        )
    }

    /// Any kind, for the ledger's own operations.
    pub(crate) fn internal(execution_id: Option<&str>, event: LedgerEvent) -> NewEvent {
        NewEvent {
            execution_id: execution_id.map(str::to_owned),
            event,
        }
    }

    /// The kind.
    pub fn kind(&self) -> EventKind {
        self.event.kind()
    }

    /// The execution it belongs to.
    pub fn execution_id(&self) -> Option<&str> {
        self.execution_id.as_deref()
    }

    /// The typed payload.
    pub fn event(&self) -> &LedgerEvent {
        &self.event
    }

    /// The canonical payload text stamped with `at`.
    pub(crate) fn payload(&self, at: &Timestamp, redactor: &Redactor) -> Result<String> {
        let mut body = self.event.fields().map_err(|e| {
            LedgerError::ledger(format!("serializing a `{}` event: {e}", self.kind()))
        })?;
        body.insert("kind".to_owned(), Value::from(self.kind().as_str()));
        body.insert("at".to_owned(), Value::from(at.as_str()));
        if let Some(execution_id) = &self.execution_id {
            body.insert(
                "execution_id".to_owned(),
                Value::from(execution_id.as_str()),
            );
        }
        Ok(canonical_json(&redactor.redact_json(&Value::Object(body))))
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

    /// The payload parsed as JSON, read by key. Prefer [`Event::ledger_event`], which gives
    /// the kind's typed fields.
    pub fn payload_json(&self) -> std::result::Result<Value, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }

    /// The typed payload: the fields of the kind the payload names. A payload that is not
    /// JSON, names no known kind or does not hold that kind's fields is `ERR_LEDGER`, naming
    /// the event.
    pub fn ledger_event(&self) -> Result<LedgerEvent> {
        decode_payload(&self.payload)
            .map(|decoded| decoded.event)
            .map_err(|why| undecodable(&self.plan, self.seq, &why))
    }
}

/// A stored payload read back: its typed fields and the execution it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedPayload {
    /// The kind's typed fields.
    pub(crate) event: LedgerEvent,
    /// The payload's `execution_id`, if any.
    pub(crate) execution_id: Option<String>,
}

/// Reads a stored payload: the fields of the kind it names and its `execution_id`. The
/// error says why the payload does not decode.
pub(crate) fn decode_payload(payload: &str) -> std::result::Result<DecodedPayload, String> {
    let mut body: Map<String, Value> = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    let kind = match body.get("kind") {
        Some(Value::String(name)) => {
            EventKind::from_wire(name).ok_or_else(|| format!("unknown kind `{name}`"))?
        }
        _ => return Err("no `kind`".to_owned()),
    };
    let execution_id = match body.get("execution_id") {
        Some(Value::String(execution_id)) => Some(execution_id.clone()),
        _ => None,
    };
    for key in RESERVED_KEYS {
        body.remove(key);
    }
    let event = LedgerEvent::from_fields(kind, body).map_err(|e| format!("`{kind}`: {e}"))?;
    Ok(DecodedPayload {
        event,
        execution_id,
    })
}

/// `ERR_LEDGER` for the event at `seq` of `plan` whose payload does not decode, and why.
pub(crate) fn undecodable(plan: &str, seq: u64, why: &str) -> LedgerError {
    LedgerError::ledger(format!(
        "event seq {seq} of plan `{plan}` does not decode: {why}"
    ))
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
    use proctor_contract::{BudgetSetEvent, WorldPath};

    use super::*;

    fn stored(payload: String) -> Event {
        Event {
            plan: "p".to_owned(),
            seq: 3,
            kind_name: String::new(),
            execution_id: None,
            payload,
            prev_hash: GENESIS_HASH.to_owned(),
            this_hash: GENESIS_HASH.to_owned(),
            created_at: String::new(),
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
        let event = NewEvent::predicate_check("e1", "smoke", true, "ok");
        let at = Timestamp::now();
        let payload = event.payload(&at, &Redactor::default()).unwrap();
        let expected = format!(
            r#"{{"at":"{}","detail":"ok","execution_id":"e1","kind":"predicate.check","passed":true,"predicate":"smoke"}}"#,
            at.as_str()
        );
        assert_eq!(payload, expected);
        let output = OutputEntry {
            path: WorldPath::parse("/artifacts/o/e1/outputs/a.txt").unwrap(),
            cid: "b3:ab".to_owned(),
            size_bytes: 3,
            mime: "text/plain".to_owned(),
        };
        let payload = NewEvent::artifact_produce("e1", &output)
            .payload(&at, &Redactor::default())
            .unwrap();
        let expected = format!(
            r#"{{"at":"{}","cid":"b3:ab","execution_id":"e1","kind":"artifact.produce","mime":"text/plain","path":"/artifacts/o/e1/outputs/a.txt","size_bytes":3}}"#,
            at.as_str()
        );
        assert_eq!(payload, expected);
    }

    #[test]
    fn stored_payloads_decode_to_their_typed_event() {
        let at = Timestamp::now();
        let event = NewEvent::predicate_check("e1", "smoke", false, "none");
        let decoded = stored(event.payload(&at, &Redactor::default()).unwrap())
            .ledger_event()
            .unwrap();
        assert_eq!(&decoded, event.event());

        for (payload, why) in [
            ("not json".to_owned(), "does not decode"),
            (r#"{"at":"x"}"#.to_owned(), "no `kind`"),
            (r#"{"kind":"execution.pause"}"#.to_owned(), "unknown kind"),
            (
                r#"{"kind":"predicate.check","predicate":"p"}"#.to_owned(),
                "`predicate.check`",
            ),
        ] {
            let err = stored(payload.clone()).ledger_event().unwrap_err();
            assert_eq!(err.code(), proctor_contract::ErrorCode::Ledger);
            assert!(err.to_string().contains("event seq 3 of plan `p`"), "{err}");
            assert!(err.to_string().contains(why), "{payload}: {err}");
        }
    }

    #[test]
    fn append_refuses_managed_kinds() {
        let err = NewEvent::new(
            None,
            LedgerEvent::BudgetSet(BudgetSetEvent {
                budget_micro_usd: None,
            }),
        )
        .unwrap_err();
        assert_eq!(err.code(), proctor_contract::ErrorCode::Ledger);
        assert!(err.to_string().contains("`budget.set`"), "{err}");
        assert!(is_free(EventKind::ArtifactProduce) && is_free(EventKind::PredicateCheck));
        let free = EventKind::ALL.iter().filter(|kind| is_free(**kind)).count();
        // artifact.produce, predicate.check and the five plan events.
        assert_eq!(free, 7);
    }

    #[test]
    fn payloads_never_carry_a_registered_value_or_a_credential() {
        let redactor = Redactor::new(["s3cr3t-value".to_owned()]);
        let event = NewEvent::predicate_check(
            "e1",
            "smoke",
            false,
            "provider said s3cr3t-value; Authorization: Bearer abc.def",
        );
        let payload = event.payload(&Timestamp::now(), &redactor).unwrap();
        assert!(!payload.contains("s3cr3t-value"), "{payload}");
        assert!(!payload.contains("abc.def"), "{payload}");
        assert!(payload.contains("\"execution_id\":\"e1\""), "{payload}");
    }
}
