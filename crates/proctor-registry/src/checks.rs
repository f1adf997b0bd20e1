//! The per-run checks a registry entry answers: inputs against the schema, required secrets
//! against the environment, and the pinned image for a platform.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proctor_contract::{
    ARTIFACT_SCHEMA_ID, CanonError, ErrorCode, PinnedReference, Platform, artifact_schema,
};
use serde_json::Value;

use crate::ProcessorSpec;

/// Compiles an inputs JSON Schema, explaining why it is not one. Its top level must describe
/// an object (`type: object`): an inputs payload is always a JSON object, whatever the
/// processor. It may refer to the input artifact fragment,
/// [`proctor_contract::ARTIFACT_SCHEMA_REF`], and to nothing else outside itself: nothing
/// is fetched.
pub(crate) fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(
            "its top level must describe an object (`type: object`): inputs are always a JSON object"
                .to_owned(),
        );
    }
    jsonschema::options()
        .with_registry(shared_schemas())
        .build(schema)
        .map_err(|error| error.to_string())
}

/// The schemas every inputs schema may refer to: the input artifact document.
fn shared_schemas() -> &'static jsonschema::Registry<'static> {
    static SHARED: OnceLock<jsonschema::Registry<'static>> = OnceLock::new();
    SHARED.get_or_init(|| {
        jsonschema::Registry::new()
            .add(
                ARTIFACT_SCHEMA_ID,
                jsonschema::Resource::from_contents(artifact_schema()),
            )
            .and_then(jsonschema::RegistryBuilder::prepare)
            .expect("the input artifact schema is a valid resource")
    })
}

/// Why `instance` fails `validator`, naming the first failing JSON pointer; `None` when
/// it is valid. Instance values are masked so inputs never leak into messages.
pub(crate) fn schema_violation(
    validator: &jsonschema::Validator,
    instance: &Value,
) -> Option<String> {
    let mut errors = validator.iter_errors(instance);
    let first = errors.next()?;
    let pointer = first.instance_path();
    let location = if pointer.is_empty() {
        "at the root".to_owned()
    } else {
        format!("at `{pointer}`")
    };
    let more = errors.count();
    let tail = if more == 0 {
        String::new()
    } else {
        format!(" (and {more} more)")
    };
    Some(format!("{location}: {}{tail}", first.masked()))
}

/// Validates an inputs payload against the processor's schema: `ERR_INPUTS` naming the
/// failing JSON pointer (the instance path).
pub fn validate_inputs(spec: &ProcessorSpec, inputs: &Value) -> Result<(), CanonError> {
    let validator = compile_schema(&spec.inputs).map_err(|why| {
        CanonError::new(
            ErrorCode::Registry,
            format!(
                "{}: inputs schema does not compile: {why}",
                spec.processor_ref
            ),
        )
    })?;
    match schema_violation(&validator, inputs) {
        None => Ok(()),
        Some(why) => Err(CanonError::new(
            ErrorCode::Inputs,
            format!("{why}; see `proctor registry show {}`", spec.processor_ref),
        )),
    }
}

/// Looks up every required secret with `lookup` (the environment, usually) and returns
/// them by name; an absent or empty one is `ERR_MISSING_SECRET` naming it. Values never
/// appear in errors.
pub fn check_secrets(
    spec: &ProcessorSpec,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, CanonError> {
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for name in &spec.secrets.required {
        match lookup(name).filter(|value| !value.is_empty()) {
            Some(value) => {
                found.insert(name.clone(), value);
            }
            None => missing.push(name.as_str()),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(CanonError::new(
            ErrorCode::MissingSecret,
            format!(
                "{} (needed by {} in real mode; set it in the environment)",
                missing.join(", "),
                spec.processor_ref
            ),
        ))
    }
}

/// The pinned reference `REGISTRY/REPO@sha256:<64 hex>` for `platform`, in the one grammar
/// `proctor pin` writes ([`PinnedReference`]); a missing pin, a placeholder or a tag instead
/// of a digest is `ERR_IMAGE_UNPINNED`.
pub fn pinned_image(
    spec: &ProcessorSpec,
    platform: Platform,
) -> Result<PinnedReference, CanonError> {
    let unpinned = |why: String| {
        CanonError::new(
            ErrorCode::ImageUnpinned,
            format!(
                "{} for {}: {why}; pin a digest in registry.yaml or pass --build",
                spec.processor_ref,
                platform.as_str()
            ),
        )
    };
    let pin = match platform {
        Platform::Amd64 => &spec.image.platforms.amd64,
        Platform::Arm64 => &spec.image.platforms.arm64,
    };
    let Some(reference) = pin else {
        return Err(unpinned("no digest in image.platforms".to_owned()));
    };
    let pinned: PinnedReference = reference.parse().map_err(|_| {
        let last_segment = reference.rsplit('/').next().unwrap_or_default();
        let why = if !reference.contains('@') && last_segment.contains(':') {
            "is a tag, not a digest"
        } else {
            "is not REGISTRY/REPO@sha256:<64 hex>"
        };
        unpinned(format!("`{reference}` {why}"))
    })?;
    if pinned.digest().is_placeholder() {
        return Err(unpinned(format!("`{reference}` is a placeholder digest")));
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::tests::sample_spec;

    const DIGEST: &str = "3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

    #[test]
    fn inputs_matching_the_schema_pass() {
        let spec = sample_spec();
        assert!(validate_inputs(&spec, &json!({"schema": "v1", "params": {}})).is_ok());
        assert!(validate_inputs(&spec, &json!({"schema": "v1", "params": {"n": 3}})).is_ok());
    }

    #[test]
    fn inputs_schemas_may_say_a_property_is_an_artifact_of_some_media_types() {
        let mut spec = sample_spec();
        spec.inputs = json!({
            "type": "object",
            "properties": {
                "doc": {"$ref": proctor_contract::ARTIFACT_SCHEMA_REF},
                "text": {
                    "$ref": proctor_contract::ARTIFACT_SCHEMA_REF,
                    "properties": {"mime": {"enum": ["text/plain", "text/markdown"]}},
                },
            },
        });
        let artifact = |mime: &str| {
            json!({
                "$artifact": "/artifacts/inputs/b3:00/a.txt",
                "cid": format!("b3:{}", "0".repeat(64)),
                "mime": mime,
            })
        };
        assert!(validate_inputs(&spec, &json!({"doc": artifact("image/png")})).is_ok());
        assert!(validate_inputs(&spec, &json!({"text": artifact("text/markdown")})).is_ok());
        for (inputs, pointer) in [
            (json!({"text": artifact("image/png")}), "/text/mime"),
            (json!({"doc": "inline"}), "/doc"),
            (json!({"doc": {"$artifact": "/artifacts/a"}}), "/doc"),
        ] {
            let err = validate_inputs(&spec, &inputs).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Inputs, "{inputs}");
            assert!(err.message().contains(&format!("at `{pointer}`")), "{err}");
        }
        let mut fetching = spec;
        fetching.inputs["properties"]["x"] = json!({"$ref": "https://example.com/x.json"});
        let err = validate_inputs(&fetching, &json!({})).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Registry, "{err}");
    }

    #[test]
    fn inputs_failing_the_schema_name_the_pointer() {
        let spec = sample_spec();
        let err =
            validate_inputs(&spec, &json!({"schema": "v1", "params": {"n": "three"}})).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Inputs);
        assert!(
            err.message()
                .starts_with("invalid inputs payload: at `/params/n`"),
            "{err}"
        );
        assert!(
            !err.message().contains("three"),
            "instance values are masked: {err}"
        );
        let err = validate_inputs(&spec, &json!([])).unwrap_err();
        assert!(err.message().contains("at the root"), "{err}");
        let err =
            validate_inputs(&spec, &json!({"schema": "v2", "params": {}, "x": 1})).unwrap_err();
        assert!(err.message().contains("more)"), "{err}");
    }

    #[test]
    fn inputs_schemas_whose_top_level_is_not_an_object_are_refused_at_load() {
        let sample = crate::spec::tests::SAMPLE_YAML;
        let inputs_start = sample.find("inputs:\n").unwrap();
        let inputs_end = sample.find("outputs:\n").unwrap();
        for schema in [
            "{}",
            "{type: array}",
            "{type: [object, array]}",
            "{properties: {schema: {const: v1}}}",
            "true",
        ] {
            let yaml = format!(
                "{}inputs: {schema}\n{}",
                &sample[..inputs_start],
                &sample[inputs_end..]
            );
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("text/stats/1");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("registry.yaml"), yaml).unwrap();
            let err = crate::Registry::load(root.path()).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Registry, "{schema}: {err}");
            assert!(err.message().contains("`type: object`"), "{schema}: {err}");
        }
    }

    #[test]
    fn present_secrets_are_returned_by_name() {
        let mut spec = sample_spec();
        spec.secrets.required = vec!["API_KEY".into()];
        let found = check_secrets(&spec, |name| (name == "API_KEY").then(|| "v4lue".into()));
        assert_eq!(
            found.unwrap().get("API_KEY").map(String::as_str),
            Some("v4lue")
        );
        spec.secrets.required.clear();
        assert!(check_secrets(&spec, |_| None).unwrap().is_empty());
    }

    #[test]
    fn missing_or_empty_secrets_are_named_without_values() {
        let mut spec = sample_spec();
        spec.secrets.required = vec!["API_KEY".into(), "OTHER_TOKEN".into()];
        let err = check_secrets(&spec, |name| (name == "API_KEY").then(String::new)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MissingSecret);
        assert!(
            err.message()
                .starts_with("missing required secret: API_KEY, OTHER_TOKEN")
        );
        let err =
            check_secrets(&spec, |name| (name == "API_KEY").then(|| "s3cr3t".into())).unwrap_err();
        assert!(err.message().contains("OTHER_TOKEN") && !err.message().contains("s3cr3t"));
    }

    #[test]
    fn pinned_digests_are_returned() {
        let mut spec = sample_spec();
        let amd = format!("127.0.0.1:5000/text-stats@sha256:{DIGEST}");
        let arm = format!("ghcr.io/acme/text-stats@sha256:{DIGEST}");
        spec.image.platforms.amd64 = Some(amd.clone());
        spec.image.platforms.arm64 = Some(arm.clone());
        assert_eq!(
            pinned_image(&spec, Platform::Amd64).unwrap().to_string(),
            amd
        );
        assert_eq!(
            pinned_image(&spec, Platform::Arm64).unwrap().to_string(),
            arm
        );
        let pinned = pinned_image(&spec, Platform::Arm64).unwrap();
        assert_eq!(pinned.host(), "ghcr.io");
        assert_eq!(pinned.digest().hex(), DIGEST);
    }

    #[test]
    fn pins_on_ipv6_hosts_are_pinned() {
        // `proctor pin` writes these; the check must accept what it writes.
        for host in ["[::1]:5000", "[::1]", "[fd00::2]:443", "localhost:5000"] {
            let mut spec = sample_spec();
            let reference = format!("{host}/acme/x@sha256:{DIGEST}");
            spec.image.platforms.amd64 = Some(reference.clone());
            assert_eq!(
                pinned_image(&spec, Platform::Amd64).unwrap().to_string(),
                reference
            );
        }
    }

    #[test]
    fn missing_placeholder_and_tagged_pins_are_unpinned() {
        let cases = [
            (None, "no digest"),
            (
                Some("REGISTRY/REPO@sha256:<64 hex>".to_owned()),
                "is not REGISTRY/REPO",
            ),
            (
                Some(format!("registry.example/repo@sha256:{}", "0".repeat(64))),
                "placeholder",
            ),
            (
                Some(format!("registry/repo@sha256:{DIGEST}")),
                "is not REGISTRY",
            ),
            (Some("127.0.0.1:5000/text-stats:1.0".to_owned()), "is a tag"),
            (
                Some(format!("127.0.0.1:5000/text-stats:1@sha256:{DIGEST}")),
                "is not REGISTRY",
            ),
            (
                Some(format!("text-stats@sha256:{DIGEST}")),
                "is not REGISTRY",
            ),
            (
                Some("registry/repo@sha256:abc".to_owned()),
                "is not REGISTRY",
            ),
        ];
        for (pin, why) in cases {
            let mut spec = sample_spec();
            spec.image.platforms.amd64 = pin.clone();
            let err = pinned_image(&spec, Platform::Amd64).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ImageUnpinned, "{pin:?}");
            assert!(
                err.message()
                    .starts_with("image not pinned: text/stats@1 for amd64")
            );
            assert!(err.message().contains(why), "{pin:?}: {err}");
        }
    }
}
