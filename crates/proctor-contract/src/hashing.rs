//! Canonical JSON (RFC 8785, JCS), BLAKE3 content ids, inputs hashes and env fingerprints.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema name of [`InputsHash`]: JCS bytes hashed with BLAKE3.
pub const HASH_SCHEMA: &str = "jcs-blake3-v1";

/// Serializes `value` as RFC 8785 canonical JSON: sorted keys (by UTF-16 code units),
/// no insignificant white space, ECMAScript number formatting, minimal string escapes.
pub fn canonical_json(value: &Value) -> String {
    serde_jcs::to_string(value).expect("a serde_json::Value always serializes")
}

/// The content id of `bytes`: `b3:` followed by the lowercase hex BLAKE3 digest.
pub fn cid(bytes: &[u8]) -> String {
    let mut hasher = CidHasher::default();
    hasher.update(bytes);
    hasher.finish()
}

/// A content id computed chunk by chunk, for bytes that are streamed; gives [`cid`] of
/// their concatenation.
#[derive(Debug, Clone, Default)]
pub struct CidHasher {
    hasher: blake3::Hasher,
    len: u64,
}

impl CidHasher {
    /// Adds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
    }

    /// How many bytes were added.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The content id, `b3:…`.
    pub fn finish(&self) -> String {
        format!("b3:{}", self.hasher.finalize().to_hex())
    }
}

/// The hash of an inputs payload, independent of key order and formatting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsHash {
    /// Always [`HASH_SCHEMA`].
    pub hash_schema: String,
    /// Lowercase hex BLAKE3 of the JCS bytes.
    pub value: String,
}

/// Hashes `inputs` as `BLAKE3(JCS(inputs))`.
pub fn inputs_hash(inputs: &Value) -> InputsHash {
    let digest = blake3::hash(canonical_json(inputs).as_bytes());
    InputsHash {
        hash_schema: HASH_SCHEMA.to_owned(),
        value: digest.to_hex().to_string(),
    }
}

/// Formats an environment fingerprint: `k=v` pairs sorted by key, joined by `;`.
///
/// Callers pass secret *names* only (e.g. `secrets=OPENAI_API_KEY`), never values.
pub fn env_fingerprint<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> String {
    let mut pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn cid_has_prefix_and_is_blake3() {
        assert_eq!(
            cid(b""),
            "b3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn inputs_hash_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "a" : {"x":"s","y":[1, 2]}, "b":1.0 }"#).unwrap();
        assert_eq!(inputs_hash(&a), inputs_hash(&b));
        assert_eq!(inputs_hash(&a).hash_schema, "jcs-blake3-v1");
        assert_ne!(inputs_hash(&a), inputs_hash(&json!({"b":2})));
    }

    #[test]
    fn fingerprint_sorts_keys() {
        let fp = env_fingerprint([("mode", "mock"), ("image_digest", "sha256:ab"), ("b", "")]);
        assert_eq!(fp, "b=;image_digest=sha256:ab;mode=mock");
    }

    /// Any JSON value: nested arrays and objects of every leaf kind.
    pub(crate) fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e15f64..1e15).prop_map(Value::from),
            "[a-zA-Z0-9 é\u{1F600}\"\\\\\n\t]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z\u{e9}\u{1F600}]{0,5}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn reversed_keys(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reversed_keys(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(reversed_keys).collect()),
            other => other.clone(),
        }
    }

    proptest! {
        #[test]
        fn jcs_is_independent_of_key_order_and_reparses(value in arbitrary_json()) {
            let canonical = canonical_json(&value);
            prop_assert_eq!(&canonical, &canonical_json(&reversed_keys(&value)));
            let reparsed: Value = serde_json::from_str(&canonical).unwrap();
            prop_assert_eq!(canonical_json(&reparsed), canonical);
            prop_assert_eq!(inputs_hash(&value), inputs_hash(&reversed_keys(&value)));
        }
    }
}
