//! The one way an inputs payload is read from JSON text: a JSON object, with no key twice
//! at any depth, so a payload can never be read two ways (one parser keeping the first
//! value, another the last) and hashes to one canonical form.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// JSON text that is not an inputs payload: not JSON, a repeated key, or a top level that
/// is not an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInputs(String);

/// Parses an inputs payload: JSON text whose top level is an object and in which no object
/// holds a key twice (the error names the repeated key's JSON pointer).
pub fn parse_inputs(json: &[u8]) -> Result<Map<String, Value>, InvalidInputs> {
    inputs_object(parse_json_value(json)?)
}

/// Parses one JSON value of any kind in which no object holds a key twice (the error names
/// the repeated key's JSON pointer): the rule of [`parse_inputs`] for a part of a payload.
pub fn parse_json_value(json: &[u8]) -> Result<Value, InvalidInputs> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    UniqueKeys { pointer: "" }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| InvalidInputs(format!("not JSON without duplicate keys: {e}")))
}

/// An already parsed inputs payload as an object; any other JSON value is refused, naming
/// its kind.
pub fn inputs_object(value: Value) -> Result<Map<String, Value>, InvalidInputs> {
    let kind = match value {
        Value::Object(object) => return Ok(object),
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
    };
    Err(InvalidInputs(format!(
        "the top level must be a JSON object, not {kind}"
    )))
}

/// A JSON value at `pointer` (RFC 6901) that refuses an object with a repeated key.
#[derive(Clone, Copy)]
struct UniqueKeys<'a> {
    pointer: &'a str,
}

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("non-finite number at `{}`", self.pointer)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut array = Vec::new();
        loop {
            let pointer = format!("{}/{}", self.pointer, array.len());
            match items.next_element_seed(UniqueKeys { pointer: &pointer })? {
                Some(item) => array.push(item),
                None => return Ok(Value::Array(array)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            let pointer = format!("{}/{}", self.pointer, pointer_token(&key));
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key at `{pointer}`")));
            }
            let value = entries.next_value_seed(UniqueKeys { pointer: &pointer })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// `key` escaped as one JSON pointer reference token (`~` → `~0`, `/` → `~1`).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::hashing::tests::arbitrary_json;

    fn refusal(json: &str) -> String {
        parse_inputs(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn objects_parse_to_the_same_value_serde_json_gives() {
        let text = r#"{"schema":"v1","params":{"n":3,"x":[1.5,null,true,{"a":"b"}]}}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            Value::Object(parse_inputs(text.as_bytes()).unwrap()),
            expected
        );
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_pointer() {
        assert!(refusal(r#"{"a":1,"a":2}"#).contains("duplicate key at `/a`"));
        let nested = refusal(r#"{"p":{"x":[0,{"k/~":1,"k/~":1}]}}"#);
        assert!(
            nested.contains("duplicate key at `/p/x/1/k~1~0`"),
            "{nested}"
        );
        let escaped = refusal(r#"{"a":1,"\u0061":2}"#);
        assert!(escaped.contains("duplicate key at `/a`"), "{escaped}");
    }

    #[test]
    fn json_values_of_any_kind_parse_but_never_with_a_key_twice() {
        assert_eq!(parse_json_value(b"[1,\"a\"]").unwrap(), json!([1, "a"]));
        assert_eq!(parse_json_value(b" 2.5 ").unwrap(), json!(2.5));
        let twice = parse_json_value(br#"[{"k":1,"k":2}]"#).unwrap_err();
        assert!(
            twice.to_string().contains("duplicate key at `/0/k`"),
            "{twice}"
        );
        assert!(parse_json_value(b"1 2").is_err());
    }

    #[test]
    fn top_levels_other_than_an_object_are_refused() {
        for (text, kind) in [
            ("[]", "an array"),
            ("null", "null"),
            ("1", "a number"),
            ("\"x\"", "a string"),
            ("true", "a boolean"),
        ] {
            assert!(refusal(text).contains(&format!("not {kind}")), "{text}");
        }
        assert_eq!(inputs_object(json!({"a": 1})).unwrap()["a"], 1);
    }

    #[test]
    fn text_that_is_not_one_json_value_is_refused() {
        for text in ["", "{", "{} {}", "{\"a\":1,}", "\u{feff}{}"] {
            assert!(refusal(text).contains("not JSON"), "{text:?}");
        }
    }

    /// `object` serialized with its first key written twice.
    fn with_first_key_repeated(object: &Map<String, Value>) -> Option<String> {
        let (key, value) = object.iter().next()?;
        let body = serde_json::to_string(object).unwrap();
        let repeated = format!(
            "{}:{},",
            serde_json::to_string(key).unwrap(),
            serde_json::to_string(value).unwrap()
        );
        Some(format!("{{{repeated}{}", &body[1..]))
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        for open in ["[", "{\"a\":"] {
            let text = format!("{{\"a\":{}", open.repeat(100_000));
            assert!(
                refusal(&text).contains("recursion limit exceeded"),
                "{open}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_bytes_are_an_inputs_object_or_refused(bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..128),
            "[\\[\\]{}\":,0-9a-z\\\\ .eE+-]{0,64}".prop_map(String::into_bytes),
        ]) {
            if let Ok(object) = parse_inputs(&bytes) {
                let text = serde_json::to_vec(&object).unwrap();
                prop_assert_eq!(&parse_inputs(&text).unwrap(), &object);
            }
        }
    }

    proptest! {
        #[test]
        fn serialized_objects_are_accepted_and_a_repeated_key_refused(
            value in arbitrary_json(),
            key in "[a-z/~]{0,4}",
        ) {
            let object = match value {
                Value::Object(object) => object,
                other => Map::from_iter([(key, other)]),
            };
            let text = serde_json::to_string(&object).unwrap();
            prop_assert_eq!(&parse_inputs(text.as_bytes()).unwrap(), &object);
            let pretty = serde_json::to_string_pretty(&object).unwrap();
            prop_assert_eq!(&parse_inputs(pretty.as_bytes()).unwrap(), &object);
            if let Some(duplicated) = with_first_key_repeated(&object) {
                let refusal = parse_inputs(duplicated.as_bytes()).unwrap_err().to_string();
                prop_assert!(refusal.contains("duplicate key at `/"), "{}", refusal);
            }
        }
    }
}
