//! A run's inputs payload, from wherever its request says: JSON text, a file or stdin (each
//! read up to the inputs limit), a parsed value, one of the registry entry's examples, or —
//! given none — its `smoke` example; then the request's `params` set on top, each value read
//! as `cog predict -i` reads it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use proctor_contract::{CanonError, ErrorCode};
use proctor_registry::ProcessorSpec;
use serde_json::{Map, Value};

use crate::deploy::SMOKE_EXAMPLE;

/// Where a run's inputs come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// JSON text, as `--inputs-json` gives it.
    Text(String),
    /// A file holding JSON, as `--inputs-file` names it.
    File(PathBuf),
    /// JSON read from standard input, as `--inputs-file -` asks.
    Stdin,
    /// An already parsed value (plans, servers).
    Value(Value),
    /// The inputs of the registry entry's example of this name, as `--example` names it.
    Example(String),
    /// None given: the registry entry's `smoke` example, when it has one.
    NotGiven,
}

/// The payload of a run of `spec`: a JSON object with no key twice at any depth, at most
/// `max_bytes` whatever its source (a file or stdin is never read past it, whatever kind of
/// file it is; a parsed value or an example is measured as JSON), with each of `params` set
/// in its `params` object (created when absent), the value read by [`param_value`].
/// Anything else is `ERR_INPUTS` naming what is wrong: an unknown example names the
/// examples there are, no inputs at all (and no default example) the flags that give them.
pub(crate) fn resolve_inputs(
    source: &Inputs,
    params: &BTreeMap<String, String>,
    spec: &ProcessorSpec,
    max_bytes: u64,
) -> Result<Map<String, Value>, CanonError> {
    let examples = || spec.examples.keys().cloned().collect::<Vec<_>>().join(", ");
    let example = |name: &str| spec.examples.get(name).map(|example| &example.inputs);
    let (bytes, origin) = match source {
        Inputs::Value(value) => return with_params(object_within(value, max_bytes)?, params),
        Inputs::Example(name) => {
            let Some(inputs) = example(name) else {
                return Err(invalid(format!(
                    "{} has no example `{name}`; its examples: {}",
                    spec.processor_ref,
                    examples()
                )));
            };
            return with_params(object_within(inputs, max_bytes)?, params);
        }
        Inputs::NotGiven => {
            let Some(inputs) = example(SMOKE_EXAMPLE) else {
                return Err(invalid(format!(
                    "no inputs given and {} has no `{SMOKE_EXAMPLE}` example; give them \
                     with --inputs-json JSON, --inputs-file FILE (`-` for stdin) or \
                     --example NAME (its examples: {})",
                    spec.processor_ref,
                    examples()
                )));
            };
            return with_params(object_within(inputs, max_bytes)?, params);
        }
        Inputs::Text(text) => {
            let origin = "--inputs-json".to_owned();
            if u64::try_from(text.len()).map_or(true, |len| len > max_bytes) {
                return Err(too_large(&origin, max_bytes));
            }
            (text.as_bytes().to_vec(), origin)
        }
        Inputs::File(path) => {
            let origin = format!("--inputs-file `{}`", path.display());
            let file = std::fs::File::open(path)
                .map_err(|e| invalid(format!("cannot read {origin}: {e}")))?;
            (read_bounded(file, &origin, max_bytes)?, origin)
        }
        Inputs::Stdin => {
            let origin = "--inputs-file - (stdin)".to_owned();
            (
                read_bounded(std::io::stdin().lock(), &origin, max_bytes)?,
                origin,
            )
        }
    };
    let inputs = proctor_contract::parse_inputs(&bytes)
        .map_err(|why| invalid(format!("{origin}: {why}")))?;
    with_params(inputs, params)
}

/// A parsed payload as an object of at most `max_bytes` as JSON.
fn object_within(value: &Value, max_bytes: u64) -> Result<Map<String, Value>, CanonError> {
    let size = serde_json::to_vec(value).map_or(u64::MAX, |bytes| bytes.len() as u64);
    if size > max_bytes {
        return Err(too_large("the inputs payload", max_bytes));
    }
    proctor_contract::inputs_object(value.clone()).map_err(|why| invalid(format!("inputs: {why}")))
}

/// `inputs` with each `key` of `params` set in its `params`, the value read by
/// [`param_value`]; a `params` that is not an object is refused.
fn with_params(
    mut inputs: Map<String, Value>,
    params: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, CanonError> {
    if params.is_empty() {
        return Ok(inputs);
    }
    let target = inputs
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(target) = target else {
        return Err(invalid(format!(
            "-i sets keys of the inputs' `params`, which is {target} here, not an object"
        )));
    };
    for (key, text) in params {
        target.insert(key.clone(), param_value(key, text)?);
    }
    Ok(inputs)
}

/// A `-i key=value` value as `cog predict -i` reads it: the JSON value the text holds when
/// it is JSON (a number, `true`, `[1,2]`, `{"a":1}`, `"quoted"`), else the text itself as a
/// string. JSON with a key twice is refused, as in any payload.
fn param_value(key: &str, text: &str) -> Result<Value, CanonError> {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return Ok(Value::String(text.to_owned()));
    }
    proctor_contract::parse_json_value(text.as_bytes())
        .map_err(|why| invalid(format!("-i {key}: {why}")))
}

/// At most `max_bytes` of `source`, never reading past one byte more; more is `ERR_INPUTS`
/// naming `origin` and the flag that raises the limit.
fn read_bounded(source: impl Read, origin: &str, max_bytes: u64) -> Result<Vec<u8>, CanonError> {
    let mut bytes = Vec::new();
    source
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(format!("cannot read {origin}: {e}")))?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > max_bytes) {
        return Err(too_large(origin, max_bytes));
    }
    Ok(bytes)
}

/// `ERR_INPUTS` with `why`.
fn invalid(why: String) -> CanonError {
    CanonError::new(ErrorCode::Inputs, why)
}

/// `ERR_INPUTS` for inputs from `origin` above `max_bytes`.
fn too_large(origin: &str, max_bytes: u64) -> CanonError {
    invalid(format!(
        "{origin} is larger than {max_bytes} bytes; raise --max-inputs-bytes \
         (PROCTOR_MAX_INPUTS_BYTES) to allow it"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `text/stats@1` as the workspace's registry holds it: examples `smoke` and
    /// `top_three`.
    fn stats_spec() -> ProcessorSpec {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../processors");
        let registry = proctor_registry::Registry::load(&root).unwrap();
        let processor_ref = "text/stats@1".parse().unwrap();
        registry.get(&processor_ref).unwrap().spec().clone()
    }

    fn read_inputs(source: &Inputs, max_bytes: u64) -> Result<Map<String, Value>, CanonError> {
        resolve_inputs(source, &BTreeMap::new(), &stats_spec(), max_bytes)
    }

    fn with(params: &[(&str, &str)], base: Value) -> Result<Value, CanonError> {
        let params = params
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        resolve_inputs(&Inputs::Value(base), &params, &stats_spec(), 1 << 20).map(Value::Object)
    }

    #[test]
    fn examples_are_named_or_the_smoke_example_is_the_default() {
        let spec = stats_spec();
        let resolve = |source: &Inputs| {
            resolve_inputs(source, &BTreeMap::new(), &spec, 1 << 20).map(Value::Object)
        };
        let top_three = resolve(&Inputs::Example("top_three".into())).unwrap();
        assert_eq!(top_three, spec.examples["top_three"].inputs);
        let smoke = resolve(&Inputs::NotGiven).unwrap();
        assert_eq!(smoke, spec.examples[SMOKE_EXAMPLE].inputs);

        let unknown = resolve(&Inputs::Example("nope".into())).unwrap_err();
        assert_eq!(unknown.code(), ErrorCode::Inputs);
        assert!(
            unknown
                .message()
                .contains("text/stats@1 has no example `nope`; its examples: smoke, top_three"),
            "{unknown}"
        );

        let mut without_smoke = spec.clone();
        without_smoke.examples.remove(SMOKE_EXAMPLE);
        let none = resolve_inputs(&Inputs::NotGiven, &BTreeMap::new(), &without_smoke, 1 << 20)
            .unwrap_err();
        assert_eq!(none.code(), ErrorCode::Inputs);
        for flag in [
            "--inputs-json",
            "--inputs-file",
            "--example NAME",
            "top_three",
        ] {
            assert!(none.message().contains(flag), "{flag}: {none}");
        }
        let small = resolve_inputs(&Inputs::Example("smoke".into()), &BTreeMap::new(), &spec, 8)
            .unwrap_err();
        assert!(small.message().contains("larger than 8 bytes"), "{small}");
    }

    #[test]
    fn params_are_set_on_top_read_as_json_when_they_are_json() {
        let base = json!({"schema": "v1", "params": {"model": "m", "n": 1}});
        let set = with(
            &[
                ("n", "2"),
                ("temperature", "0.5"),
                ("stream", "true"),
                ("stop", r#"["a","b"]"#),
                ("extra", r#"{"k":null}"#),
                ("quoted", r#""7""#),
                ("text", "hello world"),
                ("empty", ""),
                ("almost", "{not json"),
            ],
            base,
        )
        .unwrap();
        assert_eq!(
            set,
            json!({"schema": "v1", "params": {
                "model": "m", "n": 2, "temperature": 0.5, "stream": true,
                "stop": ["a", "b"], "extra": {"k": null}, "quoted": "7",
                "text": "hello world", "empty": "", "almost": "{not json",
            }})
        );
        assert_eq!(
            with(&[("n", "3")], json!({"schema": "v1"})).unwrap(),
            json!({"schema": "v1", "params": {"n": 3}}),
            "a missing params object is created"
        );
        let twice = with(&[("o", r#"{"a":1,"a":2}"#)], json!({})).unwrap_err();
        assert_eq!(twice.code(), ErrorCode::Inputs);
        assert!(twice.message().contains("-i o: "), "{twice}");
        assert!(twice.message().contains("duplicate key at `/a`"), "{twice}");
        let not_object = with(&[("n", "1")], json!({"params": [1]})).unwrap_err();
        assert!(
            not_object.message().contains("not an object"),
            "{not_object}"
        );
    }

    fn refusal(source: &Inputs, max_bytes: u64) -> String {
        let err = read_inputs(source, max_bytes).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Inputs, "{err}");
        assert!(err.message().starts_with("invalid inputs payload"), "{err}");
        err.message()
    }

    #[test]
    fn inputs_are_a_json_object_from_any_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("inputs.json");
        std::fs::write(&file, r#"{"schema":"v1","params":{}}"#).unwrap();
        let expected = json!({"schema": "v1", "params": {}});
        for source in [
            Inputs::Text(r#"{"schema":"v1","params":{}}"#.to_owned()),
            Inputs::File(file),
            Inputs::Value(expected.clone()),
        ] {
            assert_eq!(Value::Object(read_inputs(&source, 64).unwrap()), expected);
        }
    }

    #[test]
    fn duplicate_keys_and_non_objects_are_refused_from_every_source() {
        let duplicated = Inputs::Text(r#"{"params":{"n":1,"n":2}}"#.to_owned());
        assert!(refusal(&duplicated, 64).contains(
            "--inputs-json: not JSON without duplicate keys: duplicate key at `/params/n`"
        ));
        let array = Inputs::Text("[1]".to_owned());
        assert!(refusal(&array, 64).contains("must be a JSON object, not an array"));
        let value = Inputs::Value(json!("text"));
        assert!(refusal(&value, 64).contains("must be a JSON object, not a string"));
    }

    #[test]
    fn inputs_past_the_limit_are_refused_and_files_are_read_only_up_to_it() {
        let text = Inputs::Text(r#"{"a":"0123456789"}"#.to_owned());
        assert!(read_inputs(&text, 18).is_ok());
        assert!(refusal(&text, 17).contains("--inputs-json is larger than 17 bytes"));
        let value = Inputs::Value(json!({"a": "0123456789"}));
        assert!(read_inputs(&value, 18).is_ok());
        assert!(refusal(&value, 17).contains("the inputs payload is larger than 17 bytes"));
        let zero = refusal(
            &Inputs::File("/dev/zero".into()),
            crate::Limits::DEFAULT_MAX_INPUTS_BYTES,
        );
        assert!(
            zero.contains("--inputs-file `/dev/zero` is larger than 8388608 bytes"),
            "{zero}"
        );
        let missing = refusal(&Inputs::File("/nonexistent/inputs.json".into()), 64);
        assert!(missing.contains("cannot read --inputs-file"), "{missing}");
    }
}
