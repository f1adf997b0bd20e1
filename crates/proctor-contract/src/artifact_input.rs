//! Input artifacts: files a run reads, named in its inputs by content.
//!
//! A caller attaches a file under a name (`--attach NAME=PATH`, a plan's `attach:`) and
//! writes `{"$attach": "NAME"}` wherever the inputs need it. The file is stored once in the
//! World at `/artifacts/inputs/{cid}/{file name}`, and every reference becomes the
//! [`ArtifactRef`] object `{"$artifact": "<world path>", "cid": "b3:…", "mime": "…"}`, so
//! the inputs hash covers the file's content id. A provider reads an artifact through its
//! SDK, which checks the bytes against the content id first; its receipt names what it read
//! ([`ArtifactRead`]). An inputs schema says a property is an artifact with
//! [`ARTIFACT_SCHEMA_REF`], the `$defs` fragment of [`artifact_schema`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{CanonError, ErrorCode, SelectorKind, WorldPath};

/// The key of a reference to an attachment: `{"$attach": "NAME"}`.
pub const ATTACH_KEY: &str = "$attach";
/// The key of an input artifact object: `{"$artifact": "<world path>", …}`.
pub const ARTIFACT_KEY: &str = "$artifact";
/// Where attachments are stored: `/artifacts/inputs/{cid}/{file name}`.
pub const INPUTS_PREFIX: &str = "/artifacts/inputs/";
/// The `$id` of the schema document holding the `$artifact` fragment.
pub const ARTIFACT_SCHEMA_ID: &str = "https://proctor.dev/schemas/artifact.schema.json";
/// What an inputs schema writes to say a property is an input artifact:
/// `{"$ref": ARTIFACT_SCHEMA_REF}`, with `properties: {mime: {enum: […]}}` beside it to
/// accept only some media types.
pub const ARTIFACT_SCHEMA_REF: &str =
    "https://proctor.dev/schemas/artifact.schema.json#/$defs/artifact";
/// The longest attachment name, in bytes.
pub const MAX_ATTACHMENT_NAME_BYTES: usize = 64;

/// An input artifact as the inputs carry it: where it lies in the World, its content id
/// and its media type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    /// Its world path, under `/artifacts/`.
    #[serde(rename = "$artifact")]
    pub path: WorldPath,
    /// The content id of its bytes, `b3:…`.
    pub cid: String,
    /// Its media type.
    pub mime: String,
}

impl ArtifactRef {
    /// The `$artifact` object.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("an artifact reference always serializes")
    }

    /// What a receipt records when the artifact was read.
    pub fn read(&self) -> ArtifactRead {
        ArtifactRead {
            path: self.path.clone(),
            cid: self.cid.clone(),
        }
    }
}

/// An input artifact a provider read, as its receipt's `artifacts_read` lists it (sorted by
/// path, each once).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRead {
    /// Its world path.
    pub path: WorldPath,
    /// The content id its bytes matched, `b3:…`.
    pub cid: String,
}

fn invalid(detail: impl Into<String>) -> CanonError {
    CanonError::new(ErrorCode::Inputs, detail)
}

/// Checks an attachment name: 1 to [`MAX_ATTACHMENT_NAME_BYTES`] characters of
/// `[A-Za-z0-9_.-]`; anything else is `ERR_INPUTS`.
pub fn check_attachment_name(name: &str) -> Result<(), CanonError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !name.is_empty() && name.len() <= MAX_ATTACHMENT_NAME_BYTES && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(invalid(format!(
            "attachment name `{name}` must be 1-{MAX_ATTACHMENT_NAME_BYTES} characters of \
             [A-Za-z0-9_.-]"
        )))
    }
}

/// Where an attachment with content id `cid` and file name `file_name` is stored:
/// `/artifacts/inputs/{cid}/{file_name}`. The name must be one canonical world-path segment
/// as it is (`ERR_INPUTS` otherwise), so the container sees the file under its own name.
pub fn attachment_path(cid: &str, file_name: &str) -> Result<WorldPath, CanonError> {
    let raw = format!("{INPUTS_PREFIX}{cid}/{file_name}");
    let refused = || {
        invalid(format!(
            "file name `{file_name}` cannot name an input artifact as it is (one path segment \
             of NFC text, no `%`, control character, `.` or `..`); rename the file"
        ))
    };
    if file_name.is_empty() || file_name.contains(['/', '%']) {
        return Err(refused());
    }
    match WorldPath::parse(&raw) {
        Ok(path) if path.as_str() == raw && path.kind() == SelectorKind::Exact => Ok(path),
        _ => Err(refused()),
    }
}

/// The attachment name `value` refers to, if it is a reference object; `ERR_INPUTS` for an
/// object holding `$attach` beside other keys or a `$attach` that is not a string.
fn as_attach(value: &Value) -> Result<Option<&str>, CanonError> {
    let Value::Object(object) = value else {
        return Ok(None);
    };
    let Some(name) = object.get(ATTACH_KEY) else {
        return Ok(None);
    };
    if object.len() != 1 {
        return Err(invalid("a `$attach` object must hold no other key"));
    }
    let name = name
        .as_str()
        .ok_or_else(|| invalid("`$attach` must be the name of an attachment (a string)"))?;
    Ok(Some(name))
}

/// `value` with every `$attach` reference replaced by what `replace` gives for its name.
fn replace_attachments(
    value: &Value,
    replace: &mut dyn FnMut(&str) -> Result<Value, CanonError>,
) -> Result<Value, CanonError> {
    if let Some(name) = as_attach(value)? {
        return replace(name);
    }
    Ok(match value {
        Value::Object(object) => {
            let mut replaced = Map::with_capacity(object.len());
            for (key, item) in object {
                replaced.insert(key.clone(), replace_attachments(item, replace)?);
            }
            Value::Object(replaced)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| replace_attachments(item, replace))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// The attachment names `inputs` refers to with `{"$attach": NAME}`, anywhere.
pub fn attachment_references(inputs: &Value) -> Result<BTreeSet<String>, CanonError> {
    let mut names = BTreeSet::new();
    replace_attachments(inputs, &mut |name| {
        names.insert(name.to_owned());
        Ok(Value::Null)
    })?;
    Ok(names)
}

/// Checks that the references of `inputs` and the attachments `names` agree: every
/// reference names an attachment and every attachment is referenced (`ERR_INPUTS` naming
/// the first that is not).
pub fn check_attachment_references<'a>(
    inputs: &Value,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), CanonError> {
    let referenced = attachment_references(inputs)?;
    let given: BTreeSet<&str> = names.into_iter().collect();
    if let Some(unknown) = referenced
        .iter()
        .find(|name| !given.contains(name.as_str()))
    {
        return Err(invalid(format!(
            "`{{\"$attach\": \"{unknown}\"}}` names no attachment; attach a file as \
             `{unknown}`"
        )));
    }
    if let Some(unused) = given.iter().find(|name| !referenced.contains(**name)) {
        return Err(invalid(format!(
            "attachment `{unused}` is never referenced; refer to it with \
             `{{\"$attach\": \"{unused}\"}}`"
        )));
    }
    Ok(())
}

/// `inputs` with every `{"$attach": NAME}` replaced by the `$artifact` object of
/// `attached[NAME]`; the references and the attachments must agree as
/// [`check_attachment_references`] requires.
pub fn resolve_attachments(
    inputs: &Value,
    attached: &BTreeMap<String, ArtifactRef>,
) -> Result<Value, CanonError> {
    check_attachment_references(inputs, attached.keys().map(String::as_str))?;
    replace_attachments(inputs, &mut |name| Ok(attached[name].to_value()))
}

/// Every input artifact `inputs` names, sorted by path, each once: each object holding
/// `$artifact` must be exactly an [`ArtifactRef`], and one path must not carry two content
/// ids. Anything else is `ERR_INPUTS`.
pub fn input_artifacts(inputs: &Value) -> Result<Vec<ArtifactRef>, CanonError> {
    let mut found: BTreeMap<WorldPath, ArtifactRef> = BTreeMap::new();
    let mut pending = vec![inputs];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) if object.contains_key(ARTIFACT_KEY) => {
                let artifact: ArtifactRef =
                    serde_json::from_value(value.clone()).map_err(|error| {
                        invalid(format!(
                            "a `$artifact` object must be exactly {{\"$artifact\": \
                             \"/artifacts/…\", \"cid\": \"b3:…\", \"mime\": \"…\"}}: {error}"
                        ))
                    })?;
                check_artifact(&artifact)?;
                match found.get(&artifact.path) {
                    Some(seen) if seen.cid != artifact.cid => {
                        return Err(invalid(format!(
                            "input artifact `{}` is named with two content ids",
                            artifact.path
                        )));
                    }
                    Some(_) => {}
                    None => {
                        found.insert(artifact.path.clone(), artifact);
                    }
                }
            }
            Value::Object(object) => pending.extend(object.values()),
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    Ok(found.into_values().collect())
}

/// An artifact reference names an exact path under `/artifacts/`, a BLAKE3 content id and a
/// `type/subtype` media type.
fn check_artifact(artifact: &ArtifactRef) -> Result<(), CanonError> {
    let path = &artifact.path;
    if !path.as_str().starts_with("/artifacts/") || path.as_str().ends_with('/') {
        return Err(invalid(format!(
            "input artifact `{path}` must be an exact path under /artifacts/"
        )));
    }
    let hex = artifact.cid.strip_prefix("b3:").unwrap_or_default();
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(format!(
            "input artifact `{path}`: content id `{}` is not `b3:` and 64 lowercase hex digits",
            artifact.cid
        )));
    }
    let media_type = artifact.mime.split(';').next().unwrap_or_default();
    let well_formed = media_type
        .split_once('/')
        .is_some_and(|(kind, sub)| !kind.is_empty() && !sub.is_empty())
        && artifact
            .mime
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ');
    if !well_formed {
        return Err(invalid(format!(
            "input artifact `{path}`: media type `{}` is not `type/subtype`",
            artifact.mime
        )));
    }
    Ok(())
}

/// The schema document whose `$defs/artifact` describes an [`ArtifactRef`] object; its
/// `$id` is [`ARTIFACT_SCHEMA_ID`]. Validators register it so that inputs schemas can refer
/// to [`ARTIFACT_SCHEMA_REF`].
pub fn artifact_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": ARTIFACT_SCHEMA_ID,
        "title": "proctor input artifact",
        "$defs": {
            "artifact": {
                "description": "A file in the World, as `{\"$attach\": NAME}` resolves: its world path, content id and media type. Add `properties: {mime: {enum: [...]}}` beside the `$ref` to accept only some media types.",
                "type": "object",
                "additionalProperties": false,
                "required": [ARTIFACT_KEY, "cid", "mime"],
                "properties": {
                    ARTIFACT_KEY: {"type": "string", "pattern": "^/artifacts/.*[^/]$"},
                    "cid": {"type": "string", "pattern": "^b3:[0-9a-f]{64}$"},
                    "mime": {"type": "string", "pattern": "^[^/;\\s]+/[^/;\\s]+"}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cid;
    use crate::hashing::tests::arbitrary_json;

    fn artifact(name: &str, bytes: &[u8]) -> ArtifactRef {
        let cid = cid(bytes);
        ArtifactRef {
            path: attachment_path(&cid, name).unwrap(),
            cid,
            mime: "text/plain".to_owned(),
        }
    }

    fn refusal(result: Result<impl std::fmt::Debug, CanonError>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Inputs, "{error}");
        assert!(
            error.message().starts_with("invalid inputs payload"),
            "{error}"
        );
        error.message()
    }

    #[test]
    fn attachments_are_stored_under_their_content_id_and_file_name() {
        let cid = cid(b"hello");
        let path = attachment_path(&cid, "notes.txt").unwrap();
        assert_eq!(path.as_str(), format!("/artifacts/inputs/{cid}/notes.txt"));
        for bad in ["", ".", "..", "a/b", "100%", "a\nb", "cafe\u{301}.txt"] {
            assert!(
                refusal(attachment_path(&cid, bad)).contains("rename the file"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn attachment_names_are_short_plain_words() {
        for good in ["text", "a.b_c-1", &"x".repeat(64)] {
            assert!(check_attachment_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a=b", "é", &"x".repeat(65)] {
            assert!(refusal(check_attachment_name(bad)).contains("attachment name"));
        }
    }

    #[test]
    fn references_resolve_to_artifact_objects_anywhere() {
        let doc = artifact("doc.txt", b"doc");
        let inputs = json!({
            "schema": "v1",
            "text": {"$attach": "doc"},
            "more": [{"deep": {"$attach": "doc"}}, 3],
        });
        let attached = BTreeMap::from([("doc".to_owned(), doc.clone())]);
        let resolved = resolve_attachments(&inputs, &attached).unwrap();
        assert_eq!(resolved["text"], doc.to_value());
        assert_eq!(resolved["more"][0]["deep"], doc.to_value());
        assert_eq!(resolved["more"][1], 3);
        assert_eq!(
            resolved["text"],
            json!({"$artifact": doc.path.as_str(), "cid": doc.cid, "mime": "text/plain"})
        );
        assert_eq!(input_artifacts(&resolved).unwrap(), vec![doc]);
    }

    #[test]
    fn references_and_attachments_must_agree() {
        let attached = BTreeMap::from([("doc".to_owned(), artifact("d.txt", b"d"))]);
        let unknown = json!({"a": {"$attach": "other"}, "b": {"$attach": "doc"}});
        assert!(refusal(resolve_attachments(&unknown, &attached)).contains("names no attachment"));
        let unused = json!({"a": "inline"});
        assert!(refusal(resolve_attachments(&unused, &attached)).contains("never referenced"));
        let mixed = json!({"a": {"$attach": "doc", "x": 1}});
        assert!(refusal(resolve_attachments(&mixed, &attached)).contains("no other key"));
        let number = json!({"a": {"$attach": 1}});
        assert!(refusal(resolve_attachments(&number, &attached)).contains("a string"));
    }

    #[test]
    fn artifact_objects_must_be_exact_and_consistent() {
        let doc = artifact("d.txt", b"d");
        let mut extra = doc.to_value();
        extra["size"] = json!(1);
        assert!(refusal(input_artifacts(&json!({"a": extra}))).contains("must be exactly"));
        let other = ArtifactRef {
            cid: cid(b"e"),
            ..doc.clone()
        };
        let twice = json!([doc.to_value(), other.to_value()]);
        assert!(refusal(input_artifacts(&twice)).contains("two content ids"));
        for (field, value, why) in [
            ("$artifact", "/streams/x", "under /artifacts/"),
            ("$artifact", "/artifacts/x/", "exact path"),
            ("cid", "b3:00", "64 lowercase hex"),
            ("mime", "text", "type/subtype"),
        ] {
            let mut bad = doc.to_value();
            bad[field] = json!(value);
            assert!(refusal(input_artifacts(&bad)).contains(why), "{field}");
        }
        let same = json!([doc.to_value(), {"x": doc.to_value()}]);
        assert_eq!(input_artifacts(&same).unwrap(), vec![doc]);
    }

    #[test]
    fn the_schema_fragment_names_its_fields() {
        let schema = artifact_schema();
        assert_eq!(schema["$id"], ARTIFACT_SCHEMA_ID);
        let fragment = &schema["$defs"]["artifact"];
        assert_eq!(fragment["required"], json!(["$artifact", "cid", "mime"]));
        assert!(ARTIFACT_SCHEMA_REF.starts_with(ARTIFACT_SCHEMA_ID));
        assert_eq!(
            serde_json::to_value(artifact("d.txt", b"d").read()).unwrap()["cid"],
            cid(b"d")
        );
    }

    /// `value` with some of its leaves replaced by references to `names`, chosen by `picks`.
    fn with_references(value: &Value, names: &[String], picks: &mut Vec<usize>) -> Value {
        match value {
            Value::Object(object) => Value::Object(
                object
                    .iter()
                    .map(|(k, v)| (k.clone(), with_references(v, names, picks)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| with_references(item, names, picks))
                    .collect(),
            ),
            leaf => match picks.pop() {
                Some(pick) if pick < names.len() => json!({ ATTACH_KEY: names[pick] }),
                _ => leaf.clone(),
            },
        }
    }

    proptest! {
        #[test]
        fn the_rewrite_replaces_every_reference_and_nothing_else(
            value in arbitrary_json(),
            picks in prop::collection::vec(0usize..6, 0..24),
        ) {
            let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
            let attached: BTreeMap<String, ArtifactRef> = names
                .iter()
                .map(|name| (name.clone(), artifact(&format!("{name}.txt"), name.as_bytes())))
                .collect();
            let inputs = with_references(&value, &names, &mut picks.clone());
            let referenced = attachment_references(&inputs).unwrap();
            let used: BTreeMap<String, ArtifactRef> = attached
                .into_iter()
                .filter(|(name, _)| referenced.contains(name))
                .collect();
            let resolved = resolve_attachments(&inputs, &used).unwrap();
            prop_assert!(attachment_references(&resolved).unwrap().is_empty());
            let mut expected: Vec<ArtifactRef> = used.values().cloned().collect();
            expected.sort_by(|a, b| a.path.cmp(&b.path));
            prop_assert_eq!(input_artifacts(&resolved).unwrap(), expected);
            // Putting the references back gives the inputs again.
            let mut back = resolved.clone();
            restore(&mut back, &used);
            prop_assert_eq!(back, inputs);
        }
    }

    /// Replaces each `$artifact` object of `attached` by the reference to its name.
    fn restore(value: &mut Value, attached: &BTreeMap<String, ArtifactRef>) {
        if let Some((name, _)) = attached.iter().find(|(_, a)| a.to_value() == *value) {
            *value = json!({ ATTACH_KEY: name });
            return;
        }
        match value {
            Value::Object(object) => object.values_mut().for_each(|v| restore(v, attached)),
            Value::Array(items) => items.iter_mut().for_each(|v| restore(v, attached)),
            _ => {}
        }
    }
}
