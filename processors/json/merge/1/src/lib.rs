//! json/merge@1: merges JSON documents, given as JSON texts, into one document that lists
//! them in order. A plan feeds it upstream outputs through `$from` references, which
//! resolve to each output's bytes as a string. Pure: `mock` and `real` give the same bytes.
//!
//! Inputs: `{"schema":"v1","documents":["{…}", …]}`. Output: `merged.json` =
//! `{"documents":[…]}`, each document parsed, in the order given. A document that is not
//! JSON is `ERR_INPUTS` naming its index.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

use proctor_contract::Usage;
use proctor_sdk::{Context, ProcessorDefinition, ProviderError, ProviderOutput, ProviderResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// This processor's ref.
pub const PROCESSOR_REF: &str = "json/merge@1";
/// The output holding the merged document, relative to `{write_prefix}outputs/`.
pub const MERGED_OUTPUT: &str = "merged.json";

/// The processor: no secrets, no pass-through variables.
pub fn definition() -> ProcessorDefinition {
    let processor_ref = PROCESSOR_REF
        .parse()
        .expect("the processor ref literal is valid");
    ProcessorDefinition::new(processor_ref, provide)
}

/// The inputs payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    schema: String,
    documents: Vec<String>,
}

/// `merged.json`.
#[derive(Debug, PartialEq, Serialize)]
struct Merged {
    documents: Vec<Value>,
}

fn provide(_: &Context, inputs: Value) -> Result<ProviderResult, ProviderError> {
    let inputs: Inputs = serde_json::from_value(inputs).map_err(ProviderError::inputs)?;
    if inputs.schema != "v1" {
        return Err(ProviderError::inputs(format!(
            "schema must be `v1`, not `{}`",
            inputs.schema
        )));
    }
    let merged = merge(&inputs.documents)?;
    let input_bytes: usize = inputs.documents.iter().map(String::len).sum();
    Ok(ProviderResult {
        outputs: vec![ProviderOutput::json(MERGED_OUTPUT, &merged)?],
        processor_info: PROCESSOR_REF.to_owned(),
        usage: Usage::from([
            ("documents".to_owned(), merged.documents.len() as u64),
            ("input_bytes".to_owned(), input_bytes as u64),
        ]),
    })
}

/// Each document parsed, in order; the first that is not JSON is an inputs error. The
/// message names its index and where the parse stopped, never its content.
fn merge(documents: &[String]) -> Result<Merged, ProviderError> {
    let documents = documents
        .iter()
        .enumerate()
        .map(|(index, text)| {
            serde_json::from_str(text)
                .map_err(|e| ProviderError::inputs(format!("documents[{index}] is not JSON: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Merged { documents })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn texts(documents: &[&str]) -> Vec<String> {
        documents.iter().map(|d| (*d).to_owned()).collect()
    }

    #[test]
    fn keeps_the_documents_in_the_order_given() {
        let merged = merge(&texts(&[r#"{"b": 2, "a": 1}"#, "[1, 2]", "\"x\"", "null"])).unwrap();
        assert_eq!(
            merged.documents,
            [
                json!({"b": 2, "a": 1}),
                json!([1, 2]),
                json!("x"),
                json!(null)
            ]
        );
        let reversed = merge(&texts(&["null", "\"x\""])).unwrap();
        assert_eq!(reversed.documents, [json!(null), json!("x")]);
        assert!(merge(&[]).unwrap().documents.is_empty());
    }

    #[test]
    fn a_document_that_is_not_json_is_an_inputs_error_naming_its_index() {
        for (documents, index) in [
            (texts(&["{}", "{\"secret\": "]), 1),
            (texts(&["words, not JSON"]), 0),
            (texts(&["{}", "[]", "{} {}"]), 2),
            (texts(&["{}", ""]), 1),
        ] {
            let ProviderError::Inputs(message) = merge(&documents).unwrap_err() else {
                panic!("an inputs error");
            };
            assert!(
                message.starts_with(&format!("documents[{index}] is not JSON: ")),
                "{message}"
            );
            assert!(!message.contains("secret"), "{message}");
        }
    }
}
