//! `$from` references: `{"$from": "ID:outputs/PATH"}` anywhere as a value of a transition's
//! inputs names an output of the upstream transition `ID`, relative to its outputs directory.
//!
//! A reference implies a dependency on `ID`; at admission it resolves to the bytes of that
//! output as UTF-8 text, or, written `{"$from": "ID:outputs/PATH", "as": "artifact"}`, to
//! the output's `$artifact` object (world path, content id and media type, as its outputs
//! index records them), which the processor reads like an attachment (see
//! [`crate::apply`]). Parsing is strict: the id follows the transition-id rule
//! (segments joined by `/` for a transition a planner proposed, namespaced under its id), the
//! path has no empty, `.` or `..` segment and no backslash, so that it can only name a
//! file below the upstream execution's outputs directory.

use std::fmt;

use proctor_contract::{CanonError, ErrorCode};
use serde_json::Value;

/// The key that marks a reference object.
pub const FROM_KEY: &str = "$from";

/// The key beside [`FROM_KEY`] that chooses what a reference resolves to: `text` (the
/// default) or `artifact`.
pub const AS_KEY: &str = "as";

/// The longest reference text accepted, in bytes.
pub const MAX_REFERENCE_BYTES: usize = 1024;

/// One parsed `$from` reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FromRef {
    /// The upstream transition's id.
    pub transition: String,
    /// The output's path below the upstream execution's `outputs/` directory.
    pub path: String,
    /// Whether it resolves to the output's `$artifact` object (`"as": "artifact"`) rather
    /// than its text.
    pub as_artifact: bool,
}

impl FromRef {
    /// Parses `ID:outputs/PATH`; `ERR_PLAN` saying what is wrong.
    pub fn parse(text: &str) -> Result<FromRef, CanonError> {
        let invalid = |why: &str| {
            CanonError::new(
                ErrorCode::Plan,
                format!("`$from` reference {text:?}: {why}; expected `ID:outputs/PATH`"),
            )
        };
        if text.len() > MAX_REFERENCE_BYTES {
            return Err(invalid("too long"));
        }
        let (transition, rest) = text.split_once(':').ok_or_else(|| invalid("no `:`"))?;
        if !transition.split('/').all(is_transition_id) {
            return Err(invalid(
                "the transition id is not `[a-z0-9][a-z0-9_-]{0,63}`, or such ids joined by `/`",
            ));
        }
        let path = rest
            .strip_prefix("outputs/")
            .ok_or_else(|| invalid("the path does not start with `outputs/`"))?;
        if path.is_empty() {
            return Err(invalid("no path after `outputs/`"));
        }
        if path.contains('\\') || path.chars().any(char::is_control) {
            return Err(invalid("the path holds a backslash or a control character"));
        }
        if path
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(invalid("the path has an empty, `.` or `..` segment"));
        }
        Ok(FromRef {
            transition: transition.to_owned(),
            path: path.to_owned(),
            as_artifact: false,
        })
    }

    /// The reference object that reads back as this reference.
    pub fn to_value(&self) -> Value {
        let mut object =
            serde_json::Map::from_iter([(FROM_KEY.to_owned(), self.to_string().into())]);
        if self.as_artifact {
            object.insert(AS_KEY.to_owned(), "artifact".into());
        }
        Value::Object(object)
    }
}

impl fmt::Display for FromRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:outputs/{}", self.transition, self.path)
    }
}

/// Whether `id` is a transition id as a plan writes it: `[a-z0-9][a-z0-9_-]{0,63}`.
pub(crate) fn is_transition_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The reference `value` is, if it is a reference object: `Ok(None)` for any other value,
/// `ERR_PLAN` for an object that holds `$from` beside keys other than `as`, an `as` other
/// than `text` or `artifact`, or a `$from` that is not a valid reference string.
pub(crate) fn as_reference(value: &Value) -> Result<Option<FromRef>, CanonError> {
    let Value::Object(object) = value else {
        return Ok(None);
    };
    let Some(reference) = object.get(FROM_KEY) else {
        return Ok(None);
    };
    if object.keys().any(|key| key != FROM_KEY && key != AS_KEY) {
        return Err(CanonError::new(
            ErrorCode::Plan,
            "a `$from` object must hold no other key than `as`",
        ));
    }
    let as_artifact = match object.get(AS_KEY).map(|form| form.as_str()) {
        None | Some(Some("text")) => false,
        Some(Some("artifact")) => true,
        Some(_) => {
            return Err(CanonError::new(
                ErrorCode::Plan,
                "`as` beside `$from` must be `text` or `artifact`",
            ));
        }
    };
    let text = reference.as_str().ok_or_else(|| {
        CanonError::new(
            ErrorCode::Plan,
            "`$from` must be a string `ID:outputs/PATH`",
        )
    })?;
    FromRef::parse(text).map(|reference| {
        Some(FromRef {
            as_artifact,
            ..reference
        })
    })
}

/// Every reference in `inputs`, in document order (duplicates kept).
pub(crate) fn references(inputs: &Value) -> Result<Vec<FromRef>, CanonError> {
    let mut found = Vec::new();
    let mut visit = |reference: &FromRef| -> Result<Value, CanonError> {
        found.push(reference.clone());
        Ok(Value::Null)
    };
    replace_references(inputs, &mut visit)?;
    Ok(found)
}

/// `inputs` with every reference object replaced by what `replace` gives for it.
pub(crate) fn replace_references(
    inputs: &Value,
    replace: &mut dyn FnMut(&FromRef) -> Result<Value, CanonError>,
) -> Result<Value, CanonError> {
    if let Some(reference) = as_reference(inputs)? {
        return replace(&reference);
    }
    Ok(match inputs {
        Value::Object(object) => {
            let mut replaced = serde_json::Map::with_capacity(object.len());
            for (key, value) in object {
                replaced.insert(key.clone(), replace_references(value, replace)?);
            }
            Value::Object(replaced)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| replace_references(item, replace))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_a_reference() {
        let reference = FromRef::parse("stats:outputs/sub/normalized.txt").unwrap();
        assert_eq!(reference.transition, "stats");
        assert_eq!(reference.path, "sub/normalized.txt");
        assert_eq!(reference.to_string(), "stats:outputs/sub/normalized.txt");
        let namespaced = FromRef::parse("map/chunk-0001:outputs/stats.json").unwrap();
        assert_eq!(namespaced.transition, "map/chunk-0001");
    }

    #[test]
    fn refuses_malformed_references() {
        for text in [
            "",
            "stats",
            "stats:",
            "stats:outputs/",
            "stats:outputs",
            "stats:inputs/a",
            "Stats:outputs/a",
            "-x:outputs/a",
            "stats:outputs//a",
            "stats:outputs/a/",
            "stats:outputs/../a",
            "stats:outputs/./a",
            "stats:outputs/a\\b",
            "stats:outputs/a\nb",
            "a//b:outputs/c",
            "/a:outputs/c",
            "a/:outputs/c",
        ] {
            let err = FromRef::parse(text).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Plan, "{text:?}");
            assert!(err.message().starts_with("invalid plan: `$from`"), "{err}");
        }
    }

    #[test]
    fn finds_and_replaces_nested_references() {
        let inputs = json!({
            "schema": "v1",
            "params": {"messages": [{"content": {"$from": "a:outputs/x.txt"}}]},
            "more": [{"$from": "b:outputs/y/z.json"}, 3],
        });
        let found = references(&inputs).unwrap();
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["a:outputs/x.txt", "b:outputs/y/z.json"]
        );
        let replaced =
            replace_references(&inputs, &mut |r| Ok(Value::from(r.transition.clone()))).unwrap();
        assert_eq!(
            replaced,
            json!({"schema": "v1", "params": {"messages": [{"content": "a"}]}, "more": ["b", 3]})
        );
    }

    #[test]
    fn a_reference_may_ask_for_the_outputs_artifact() {
        let inputs = json!({
            "a": {"$from": "up:outputs/x.txt", "as": "artifact"},
            "b": {"$from": "up:outputs/x.txt", "as": "text"},
            "c": {"$from": "up:outputs/x.txt"},
        });
        let found = references(&inputs).unwrap();
        assert_eq!(
            found.iter().map(|r| r.as_artifact).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert_eq!(found[0].to_value(), inputs["a"]);
        assert_eq!(found[2].to_value(), inputs["c"]);
        let bad = json!({"a": {"$from": "up:outputs/x.txt", "as": "bytes"}});
        assert!(
            references(&bad)
                .unwrap_err()
                .message()
                .contains("`text` or `artifact`")
        );
    }

    #[test]
    fn refuses_mixed_or_non_string_reference_objects() {
        let mixed = json!({"x": {"$from": "a:outputs/x", "other": 1}});
        assert!(
            references(&mixed)
                .unwrap_err()
                .message()
                .contains("no other key")
        );
        let number = json!({"x": {"$from": 3}});
        assert!(
            references(&number)
                .unwrap_err()
                .message()
                .contains("must be a string")
        );
    }

    proptest! {
        #[test]
        fn valid_references_round_trip(
            id in "[a-z0-9][a-z0-9_-]{0,63}",
            segments in prop::collection::vec("[A-Za-z0-9_.-]{1,12}", 1..5),
        ) {
            prop_assume!(segments.iter().all(|s| s != "." && s != ".."));
            let text = format!("{id}:outputs/{}", segments.join("/"));
            let parsed = FromRef::parse(&text).unwrap();
            prop_assert_eq!(&parsed.transition, &id);
            prop_assert_eq!(parsed.to_string(), text);
        }

        #[test]
        fn any_text_parses_or_is_refused_as_a_plan_error(text in "\\PC{0,80}") {
            match FromRef::parse(&text) {
                Ok(parsed) => {
                    prop_assert_eq!(parsed.to_string(), text);
                    prop_assert!(!parsed.path.split('/').any(|s| s.is_empty() || s == ".."));
                }
                Err(err) => prop_assert_eq!(err.code(), ErrorCode::Plan),
            }
        }
    }
}
