//! Envelopes: the one JSON document every run answers with, whatever the adapter or mode.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{CanonError, ErrorCode, Mode, OutputEntry, WorldPath};

/// Run metadata of a success envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuccessMeta {
    /// The image the processor ran from (`sha256:…` image ID or pinned digest).
    pub image_digest: String,
    /// Sorted `k=v;…` fingerprint of the environment.
    pub env_fingerprint: String,
    /// Wall time of the run inside the processor.
    pub duration_ms: u64,
    /// The mode it ran in.
    pub mode: Mode,
}

/// Run metadata of an error envelope; the image is unknown when the run failed before one
/// was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorMeta {
    /// The image, when one had been chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The fingerprint, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_fingerprint: Option<String>,
    /// Wall time until the failure.
    pub duration_ms: u64,
    /// The mode requested.
    pub mode: Mode,
}

/// A successful run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuccessEnvelope {
    /// Always `"success"`.
    pub status: SuccessStatus,
    /// The execution's id.
    pub execution_id: String,
    /// Every output, sorted by path (the index's entries).
    pub outputs: Vec<OutputEntry>,
    /// `{write_prefix}outputs.json`.
    pub index_path: WorldPath,
    /// Run metadata.
    pub meta: SuccessMeta,
    /// For a memo hit, the earlier execution whose verified outputs answered the run (no
    /// processor ran for it); absent for an execution that ran. Only the engine sets it:
    /// a processor's envelope that names one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo_source: Option<String>,
}

/// The code and message of a failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The canonical code.
    pub code: ErrorCode,
    /// The message, starting with the code's stable fragment.
    pub message: String,
}

impl ErrorBody {
    /// The canonical error this body carries: its code, and its message less the leading
    /// fragment, so that [`CanonError::message`] gives the message back.
    pub fn to_canon_error(&self) -> CanonError {
        let fragment = self.code.fragment();
        let detail = self
            .message
            .strip_prefix(fragment)
            .map(|rest| rest.strip_prefix(": ").unwrap_or(rest))
            .unwrap_or(&self.message);
        CanonError::new(self.code, detail)
    }
}

/// A failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorEnvelope {
    /// Always `"error"`.
    pub status: ErrorStatus,
    /// The execution's id.
    pub execution_id: String,
    /// What went wrong.
    pub error: ErrorBody,
    /// Run metadata.
    pub meta: ErrorMeta,
}

/// The literal `"success"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuccessStatus {
    /// `"success"`.
    #[serde(rename = "success")]
    Success,
}

/// The literal `"error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorStatus {
    /// `"error"`.
    #[serde(rename = "error")]
    Error,
}

/// A success or error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Envelope {
    /// `status: "success"`.
    Success(SuccessEnvelope),
    /// `status: "error"`.
    Error(ErrorEnvelope),
}

impl Envelope {
    /// An error envelope for `error`.
    pub fn error(
        execution_id: &str,
        error: &CanonError,
        mode: Mode,
        duration_ms: u64,
        image_digest: Option<String>,
    ) -> Envelope {
        Envelope::Error(ErrorEnvelope {
            status: ErrorStatus::Error,
            execution_id: execution_id.to_owned(),
            error: ErrorBody {
                code: error.code(),
                message: error.message(),
            },
            meta: ErrorMeta {
                image_digest,
                env_fingerprint: None,
                duration_ms,
                mode,
            },
        })
    }

    /// A success envelope.
    pub fn success(
        execution_id: &str,
        outputs: Vec<OutputEntry>,
        index_path: WorldPath,
        meta: SuccessMeta,
    ) -> Envelope {
        Envelope::Success(SuccessEnvelope {
            status: SuccessStatus::Success,
            execution_id: execution_id.to_owned(),
            outputs,
            index_path,
            meta,
            memo_source: None,
        })
    }

    /// Validates a JSON value as an envelope: exactly the fields above, no others, with
    /// canonical, sorted output paths. Anything else is `ERR_ENVELOPE`.
    pub fn validate(value: &Value) -> Result<Envelope, CanonError> {
        let invalid = |why: String| CanonError::new(ErrorCode::Envelope, why);
        let status = value.get("status").and_then(Value::as_str);
        let envelope = match status {
            Some("success") => Envelope::Success(
                serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?,
            ),
            Some("error") => Envelope::Error(
                serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?,
            ),
            _ => {
                return Err(invalid(
                    "status must be \"success\" or \"error\"".to_owned(),
                ));
            }
        };
        match &envelope {
            Envelope::Success(success) => {
                for pair in success.outputs.windows(2) {
                    if pair[0].path == pair[1].path {
                        return Err(CanonError::new(
                            ErrorCode::OutputDuplicate,
                            format!("`{}` is listed twice", pair[0].path),
                        ));
                    }
                    if pair[0].path > pair[1].path {
                        return Err(invalid("outputs must be sorted by path".into()));
                    }
                }
            }
            Envelope::Error(error) => {
                if !error.error.message.contains(error.error.code.fragment()) {
                    return Err(invalid("error message lacks its code's fragment".into()));
                }
            }
        }
        Ok(envelope)
    }

    /// Parses and validates envelope bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Envelope, CanonError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| CanonError::new(ErrorCode::Envelope, format!("not JSON: {e}")))?;
        Envelope::validate(&value)
    }

    /// The execution id.
    pub fn execution_id(&self) -> &str {
        match self {
            Envelope::Success(success) => &success.execution_id,
            Envelope::Error(error) => &error.execution_id,
        }
    }

    /// One line of compact JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::world_path::tests::raw_world_paths;

    fn success() -> Value {
        json!({
            "status": "success",
            "execution_id": "e1",
            "outputs": [
                {"path": "/artifacts/o/e1/outputs/a.txt", "cid": "b3:00", "size_bytes": 3, "mime": "text/plain"},
                {"path": "/artifacts/o/e1/outputs/b.json", "cid": "b3:01", "size_bytes": 2, "mime": "application/json"}
            ],
            "index_path": "/artifacts/o/e1/outputs.json",
            "meta": {"image_digest": "sha256:ab", "env_fingerprint": "mode=mock", "duration_ms": 5, "mode": "mock"}
        })
    }

    #[test]
    fn a_memo_hit_names_its_source_and_others_omit_it() {
        let mut hit = success();
        hit["memo_source"] = json!("e0");
        let Envelope::Success(envelope) = Envelope::validate(&hit).unwrap() else {
            panic!("a success envelope");
        };
        assert_eq!(envelope.memo_source.as_deref(), Some("e0"));
        let again: Value =
            serde_json::from_str(&Envelope::Success(envelope).to_json_line()).unwrap();
        assert_eq!(again, hit);
        let ran = Envelope::validate(&success()).unwrap();
        assert!(!ran.to_json_line().contains("memo_source"));
    }

    #[test]
    fn accepts_and_round_trips_envelopes() {
        let envelope = Envelope::validate(&success()).unwrap();
        let again: Value = serde_json::from_str(&envelope.to_json_line()).unwrap();
        assert_eq!(again, success());
        let error = Envelope::error(
            "e1",
            &CanonError::new(ErrorCode::Inputs, "/params"),
            Mode::Mock,
            1,
            None,
        );
        let value: Value = serde_json::from_str(&error.to_json_line()).unwrap();
        assert_eq!(Envelope::validate(&value).unwrap(), error);
        assert_eq!(value["error"]["code"], "ERR_INPUTS");
    }

    #[test]
    fn rejects_anything_else() {
        let mut extra = success();
        extra["extra"] = json!(1);
        let mut unsorted = success();
        unsorted["outputs"].as_array_mut().unwrap().reverse();
        let mut bad_status = success();
        bad_status["status"] = json!("ok");
        let mut missing_meta = success();
        missing_meta["meta"]
            .as_object_mut()
            .unwrap()
            .remove("image_digest");
        let mut bad_mode = success();
        bad_mode["meta"]["mode"] = json!("dry");
        let mut bad_path = success();
        bad_path["index_path"] = json!("/tmp/outputs.json");
        let bad_error = json!({"status":"error","execution_id":"e","error":{"code":"ERR_INPUTS","message":"nope"},"meta":{"duration_ms":1,"mode":"mock"}});
        for value in [
            extra,
            unsorted,
            bad_status,
            missing_meta,
            bad_mode,
            bad_path,
            bad_error,
        ] {
            assert_eq!(
                Envelope::validate(&value).unwrap_err().code(),
                ErrorCode::Envelope,
                "{value}"
            );
        }
        assert_eq!(
            Envelope::from_slice(b"<html>").unwrap_err().code(),
            ErrorCode::Envelope
        );
    }

    #[test]
    fn outputs_equal_after_normalization_are_duplicates() {
        let mut twins = success();
        twins["outputs"][0]["path"] = json!("/artifacts/o/e1/outputs/caf\u{e9}.txt");
        twins["outputs"][1]["path"] = json!("/artifacts/o/e1/outputs/cafe\u{301}.txt");
        let error = Envelope::validate(&twins).unwrap_err();
        assert_eq!(error.code(), ErrorCode::OutputDuplicate, "{error}");
        assert!(
            error
                .to_string()
                .contains("duplicate output after canonicalization")
        );
    }

    /// Any JSON value, nested a few levels.
    fn json_values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// Values an envelope field may plausibly hold, so that mutated envelopes are often
    /// still valid, plus any JSON value at all.
    fn field_values() -> impl Strategy<Value = Value> {
        let code = proptest::sample::select(ErrorCode::ALL);
        prop_oneof![
            json_values(),
            raw_world_paths().prop_map(Value::String),
            prop_oneof![Just("mock"), Just("real"), Just("success"), Just("error")]
                .prop_map(Value::from),
            code.clone().prop_map(|code| json!(code)),
            (code, ".{0,12}").prop_map(|(code, rest)| json!(format!("{}{rest}", code.fragment()))),
            any::<u64>().prop_map(Value::from),
        ]
    }

    /// Where a mutation may land: every field of both envelope shapes, and one unknown.
    const FIELDS: &[&str] = &[
        "/status",
        "/execution_id",
        "/outputs",
        "/outputs/0",
        "/outputs/0/path",
        "/outputs/1/path",
        "/outputs/0/size_bytes",
        "/outputs/1/mime",
        "/index_path",
        "/meta",
        "/meta/image_digest",
        "/meta/env_fingerprint",
        "/meta/duration_ms",
        "/meta/mode",
        "/error",
        "/error/code",
        "/error/message",
        "/extra",
    ];

    /// `value` with the field at `pointer` replaced by `replacement`, or removed when
    /// `replacement` is `None` (a field whose parent is missing is left alone).
    fn mutate(value: &mut Value, pointer: &str, replacement: Option<Value>) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let Some(parent) = value.pointer_mut(parent) else {
            return;
        };
        match (parent, replacement) {
            (Value::Object(map), Some(new)) => {
                map.insert(key.to_owned(), new);
            }
            (Value::Object(map), None) => {
                map.remove(key);
            }
            (Value::Array(items), replacement) => {
                if let Ok(at) = key.parse::<usize>()
                    && at < items.len()
                {
                    match replacement {
                        Some(new) => items[at] = new,
                        None => {
                            items.remove(at);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Valid envelopes of both shapes with a few fields replaced or removed.
    fn mutated_envelopes() -> impl Strategy<Value = Value> {
        let error = serde_json::to_value(Envelope::error(
            "e1",
            &CanonError::new(ErrorCode::Inputs, "/params"),
            Mode::Real,
            7,
            Some("sha256:ab".to_owned()),
        ))
        .unwrap();
        let mutations = proptest::collection::vec(
            (
                proptest::sample::select(FIELDS),
                proptest::option::weighted(0.8, field_values()),
            ),
            0..4,
        );
        (prop_oneof![Just(success()), Just(error)], mutations).prop_map(|(mut value, edits)| {
            for (pointer, replacement) in edits {
                mutate(&mut value, pointer, replacement);
            }
            value
        })
    }

    /// An accepted envelope comes back unchanged from its own JSON line.
    fn assert_round_trips(envelope: &Envelope) -> Result<(), TestCaseError> {
        let line = envelope.to_json_line();
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(&Envelope::from_slice(line.as_bytes()).unwrap(), envelope);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_bytes_are_parsed_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(envelope) = Envelope::from_slice(&bytes) {
                assert_round_trips(&envelope)?;
            }
        }

        #[test]
        fn any_json_value_is_validated_without_panic(value in prop_oneof![json_values(), mutated_envelopes()]) {
            let bytes = serde_json::to_vec(&value).unwrap();
            match Envelope::from_slice(&bytes) {
                Ok(envelope) => assert_round_trips(&envelope)?,
                Err(error) => prop_assert!(
                    matches!(error.code(), ErrorCode::Envelope | ErrorCode::OutputDuplicate),
                    "{}", error
                ),
            }
        }
    }
}
