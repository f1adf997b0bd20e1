//! `json.schema_ok@1` and `json.path@1`: one JSON artifact, read whole up to
//! [`MAX_JSON_BYTES`], checked against a JSON Schema or an RFC 9535 JSONPath query.

use futures_util::StreamExt;
use proctor_contract::{CanonError, WorldPath};
use serde::Deserialize;
use serde_json::Value;
use serde_json_path::JsonPath;

use super::{PathArg, PathRole, PredicateContext, Verdict, parse_args, plan_error};

pub(super) const SCHEMA_OK_ID: &str = "json.schema_ok@1";
pub(super) const PATH_ID: &str = "json.path@1";

/// The largest JSON document the JSON predicates read (8 MiB); a larger one is a false
/// verdict, so a gate never holds on a document it did not read whole.
pub const MAX_JSON_BYTES: u64 = 8 * 1024 * 1024;

/// The longest detail a JSON verdict carries, in characters.
const MAX_DETAIL_CHARS: usize = 200;

/// `json.schema_ok@1 {path, schema}`: the artifact at `path` is JSON valid against `schema`.
#[derive(Debug, Clone)]
pub(super) struct SchemaOk {
    pub(super) path: PathArg,
    validator: jsonschema::Validator,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaOkArgs {
    path: String,
    schema: Value,
}

impl SchemaOk {
    pub(super) fn parse(args: &Value) -> Result<SchemaOk, CanonError> {
        let SchemaOkArgs { path, schema } = parse_args(SCHEMA_OK_ID, args)?;
        let validator = jsonschema::validator_for(&schema).map_err(|err| {
            plan_error(
                SCHEMA_OK_ID,
                format!("`schema` does not compile: {}", short(&err.to_string())),
            )
        })?;
        Ok(SchemaOk {
            path: PathArg::parse(SCHEMA_OK_ID, "path", path, PathRole::Artifact)?,
            validator,
        })
    }

    pub(super) async fn evaluate(
        &self,
        id: &str,
        cx: &PredicateContext<'_>,
    ) -> Result<Verdict, CanonError> {
        let path = self.path.expand(id, cx.outputs)?;
        let document = match read_json(cx, &path).await? {
            Ok(document) => document,
            Err(verdict) => return Ok(verdict),
        };
        let mut errors = self.validator.iter_errors(&document);
        let Some(first) = errors.next() else {
            return Ok(Verdict::new(true, format!("`{path}` matches the schema")));
        };
        let pointer = first.instance_path().to_string();
        let location = if pointer.is_empty() {
            "the root".to_owned()
        } else {
            format!("`{pointer}`")
        };
        let more = match errors.count() {
            0 => String::new(),
            more => format!(" (and {more} more)"),
        };
        Ok(Verdict::new(
            false,
            short(&format!("at {location}: {}{more}", first.masked())),
        ))
    }
}

/// `json.path@1 {path, query, equals}`: the RFC 9535 `query` selects exactly one node of
/// the artifact at `path`, and it equals `equals` (numbers compared by value, objects
/// regardless of key order).
#[derive(Debug, Clone)]
pub(super) struct PathEquals {
    pub(super) path: PathArg,
    query_text: String,
    query: JsonPath,
    equals: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathEqualsArgs {
    path: String,
    query: String,
    equals: Value,
}

impl PathEquals {
    pub(super) fn parse(args: &Value) -> Result<PathEquals, CanonError> {
        let PathEqualsArgs {
            path,
            query,
            equals,
        } = parse_args(PATH_ID, args)?;
        let parsed = JsonPath::parse(&query).map_err(|err| {
            plan_error(
                PATH_ID,
                format!(
                    "`query` is not an RFC 9535 JSONPath: {}",
                    short(&err.to_string())
                ),
            )
        })?;
        Ok(PathEquals {
            path: PathArg::parse(PATH_ID, "path", path, PathRole::Artifact)?,
            query_text: query,
            query: parsed,
            equals,
        })
    }

    pub(super) async fn evaluate(
        &self,
        id: &str,
        cx: &PredicateContext<'_>,
    ) -> Result<Verdict, CanonError> {
        let path = self.path.expand(id, cx.outputs)?;
        let document = match read_json(cx, &path).await? {
            Ok(document) => document,
            Err(verdict) => return Ok(verdict),
        };
        let query = short(&self.query_text);
        let nodes = self.query.query(&document);
        let node = match nodes.exactly_one() {
            Ok(node) => node,
            Err(_) => {
                return Ok(Verdict::new(
                    false,
                    format!("`{query}` selected {} nodes, not exactly one", nodes.len()),
                ));
            }
        };
        Ok(if json_equal(node, &self.equals) {
            Verdict::new(true, format!("`{query}` equals the expected value"))
        } else if kind(node) != kind(&self.equals) {
            Verdict::new(
                false,
                format!(
                    "`{query}` is {}, expected {}",
                    kind(node),
                    kind(&self.equals)
                ),
            )
        } else {
            Verdict::new(
                false,
                format!("`{query}` is {} other than the expected one", kind(node)),
            )
        })
    }
}

/// The JSON document at `path`, or the false verdict saying why there is none to check:
/// missing, larger than [`MAX_JSON_BYTES`], or not JSON. Store failures are errors.
async fn read_json(
    cx: &PredicateContext<'_>,
    path: &WorldPath,
) -> Result<Result<Value, Verdict>, CanonError> {
    let missing = || Ok(Err(Verdict::new(false, format!("`{path}` does not exist"))));
    let too_large = |size: u64| {
        Ok(Err(Verdict::new(
            false,
            format!("`{path}` is {size} bytes, over the {MAX_JSON_BYTES}-byte limit for JSON"),
        )))
    };
    let size = match cx.store.head(path).await {
        Ok(info) => info.size_bytes,
        Err(err) if err.is_not_found() => return missing(),
        Err(err) => return Err(err.into()),
    };
    if size > MAX_JSON_BYTES {
        return too_large(size);
    }
    let mut stream = match cx.store.get_stream(path).await {
        Ok(stream) => stream,
        Err(err) if err.is_not_found() => return missing(),
        Err(err) => return Err(err.into()),
    };
    // The artifact may have been replaced since `head`: the limit holds on what is read.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
        let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if read > MAX_JSON_BYTES {
            return too_large(read);
        }
    }
    Ok(serde_json::from_slice(&bytes)
        .map_err(|err| Verdict::new(false, format!("`{path}` is not JSON: {err}"))))
}

/// JSON equality: numbers by value (`1` equals `1.0`), objects regardless of key order.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(key, x)| ys.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => a == b,
    }
}

/// The JSON type of a value, with its article, for details that must not quote values.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` cut to [`MAX_DETAIL_CHARS`] characters, marked with `…` when cut.
fn short(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{Fixture, assert_refused, predicate};
    use super::*;

    fn stats_schema() -> Value {
        json!({
            "type": "object",
            "required": ["words"],
            "properties": {"words": {"type": "integer", "minimum": 0}},
        })
    }

    #[tokio::test]
    async fn schema_ok_true_false_missing_not_json() {
        let fixture = Fixture::new().await;
        fixture
            .put("/artifacts/o/good.json", br#"{"words": 4}"#)
            .await;
        fixture
            .put("/artifacts/o/bad.json", br#"{"words": "secret-value"}"#)
            .await;
        fixture.put("/artifacts/o/text.txt", b"secret-text").await;
        let check = |path: &str| {
            predicate(
                "json.schema_ok@1",
                json!({"path": path, "schema": stats_schema()}),
            )
        };

        let verdict = check("/artifacts/o/good.json")
            .evaluate(&fixture.admission())
            .await
            .unwrap();
        assert!(verdict.holds, "{verdict:?}");

        let verdict = check("/artifacts/o/bad.json")
            .evaluate(&fixture.admission())
            .await
            .unwrap();
        assert!(!verdict.holds);
        assert!(verdict.detail.starts_with("at `/words`: "), "{verdict:?}");
        assert!(!verdict.detail.contains("secret-value"), "{verdict:?}");

        let verdict = check("/artifacts/o/none.json")
            .evaluate(&fixture.admission())
            .await
            .unwrap();
        assert!(!verdict.holds);
        assert!(verdict.detail.contains("does not exist"), "{verdict:?}");

        let verdict = check("/artifacts/o/text.txt")
            .evaluate(&fixture.admission())
            .await
            .unwrap();
        assert!(!verdict.holds);
        assert!(verdict.detail.contains("is not JSON"), "{verdict:?}");
        assert!(!verdict.detail.contains("secret"), "{verdict:?}");
    }

    #[tokio::test]
    async fn documents_over_the_limit_are_false() {
        let fixture = Fixture::new().await;
        let size = usize::try_from(MAX_JSON_BYTES).unwrap() + 1;
        let mut big = vec![b' '; size];
        big[0] = b'1';
        fixture.put("/artifacts/big.json", &big).await;
        for predicate in [
            predicate(
                "json.schema_ok@1",
                json!({"path": "/artifacts/big.json", "schema": {}}),
            ),
            predicate(
                "json.path@1",
                json!({"path": "/artifacts/big.json", "query": "$", "equals": 1}),
            ),
        ] {
            let verdict = predicate.evaluate(&fixture.admission()).await.unwrap();
            assert!(!verdict.holds);
            assert_eq!(
                verdict.detail,
                format!(
                    "`/artifacts/big.json` is {size} bytes, over the 8388608-byte limit for JSON"
                )
            );
        }
    }

    #[tokio::test]
    async fn path_equals_true_false_missing() {
        let fixture = Fixture::new().await;
        fixture
            .put(
                "/artifacts/plans/p/t/e1/outputs/stats.json",
                br#"{"words": 4, "ratio": 0.5, "tags": ["a", "b"], "meta": {"x": 1, "y": 2}}"#,
            )
            .await;
        let cx = fixture.success("/artifacts/plans/p/t/e1/outputs");
        let check = |query: &str, equals: Value| {
            predicate(
                "json.path@1",
                json!({"path": "{outputs}/stats.json", "query": query, "equals": equals}),
            )
        };
        for (query, equals) in [
            ("$.words", json!(4)),
            ("$.words", json!(4.0)),
            ("$.ratio", json!(0.5)),
            ("$.tags[1]", json!("b")),
            ("$.meta", json!({"y": 2, "x": 1})),
            ("$.tags[?@ == 'a']", json!("a")),
        ] {
            let verdict = check(query, equals).evaluate(&cx).await.unwrap();
            assert!(verdict.holds, "{query}: {verdict:?}");
            assert_eq!(
                verdict.detail,
                format!("`{query}` equals the expected value")
            );
        }
        for (query, equals, detail) in [
            (
                "$.words",
                json!(5),
                "`$.words` is a number other than the expected one",
            ),
            (
                "$.words",
                json!("4"),
                "`$.words` is a number, expected a string",
            ),
            (
                "$.tags[*]",
                json!("a"),
                "`$.tags[*]` selected 2 nodes, not exactly one",
            ),
            (
                "$.missing",
                json!(null),
                "`$.missing` selected 0 nodes, not exactly one",
            ),
        ] {
            let verdict = check(query, equals).evaluate(&cx).await.unwrap();
            assert!(!verdict.holds, "{query}");
            assert_eq!(verdict.detail, detail);
        }
        let missing = fixture.success("/artifacts/plans/p/t/e2/outputs");
        let verdict = check("$.words", json!(4)).evaluate(&missing).await.unwrap();
        assert!(!verdict.holds);
        assert!(verdict.detail.contains("does not exist"), "{verdict:?}");
    }

    #[test]
    fn bad_args_name_the_predicate_and_the_problem() {
        for (id, args, why) in [
            (
                "json.schema_ok@1",
                json!({"path": "/artifacts/a"}),
                "missing field `schema`",
            ),
            (
                "json.schema_ok@1",
                json!({"path": "/artifacts/a", "schema": {"type": "nope"}}),
                "`schema` does not compile",
            ),
            (
                "json.schema_ok@1",
                json!({"path": "/artifacts/a", "schema": {"$ref": "https://example.com/s.json"}}),
                "`schema` does not compile",
            ),
            (
                "json.path@1",
                json!({"path": "/artifacts/a", "query": "$["}),
                "missing field `equals`",
            ),
            (
                "json.path@1",
                json!({"path": "/artifacts/a", "query": "$[", "equals": 1}),
                "`query` is not an RFC 9535 JSONPath",
            ),
            (
                "json.path@1",
                json!({"path": "/artifacts/a", "query": "a.b", "equals": 1}),
                "`query` is not an RFC 9535 JSONPath",
            ),
            (
                "json.path@1",
                json!({"path": "/artifacts/a", "query": 1, "equals": 1}),
                "invalid type",
            ),
        ] {
            assert_refused(id, args, why);
        }
    }

    #[test]
    fn equality_is_by_json_value() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_equal(&json!(-1), &json!(1)));
        assert!(!json_equal(&json!([1, 2]), &json!([2, 1])));
        assert!(json_equal(
            &json!({"a": [1], "b": null}),
            &json!({"b": null, "a": [1.0]})
        ));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }

    #[test]
    fn details_are_cut_short() {
        let long = "x".repeat(MAX_DETAIL_CHARS + 10);
        assert_eq!(short(&long).chars().count(), MAX_DETAIL_CHARS + 1);
        assert_eq!(short("é"), "é");
    }
}
