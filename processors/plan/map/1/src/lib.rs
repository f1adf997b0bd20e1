//! plan/map@1: a deterministic planner. It splits a text into chunks and proposes, in
//! `plan/transitions.json`, one transition per chunk (`chunk-0000`, `chunk-0001`, …, each
//! running `ref` over `{"schema":"v1","text":CHUNK}`) plus `merge`, a `json/merge@1`
//! transition after all of them whose documents are the chunks' `output` files, in order,
//! as `$from` references. Pure: `mock` and `real` give the same bytes.
//!
//! Chunks hold at most `chunk_chars` characters and concatenate back to the text exactly:
//! a chunk that is not the last ends just after the last white space in the second half of
//! its window of `chunk_chars` characters, or, when there is none, after exactly
//! `chunk_chars` characters (never inside a character). More than [`MAX_CHUNKS`] chunks is
//! `ERR_INPUTS`.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

use proctor_contract::{Mode, ProcessorRef, Usage, WritePrefix};
use proctor_sdk::{Context, ProcessorDefinition, ProviderError, ProviderOutput, ProviderResult};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// This processor's ref.
pub const PROCESSOR_REF: &str = "plan/map@1";
/// The proposal output, relative to `{write_prefix}outputs/`.
pub use proctor_contract::PROPOSAL_OUTPUT;
/// The most chunks one proposal holds.
pub const MAX_CHUNKS: usize = 1000;
/// The chunk size, in characters, when `chunk_chars` is not given.
pub const DEFAULT_CHUNK_CHARS: usize = 2000;
/// The largest `chunk_chars`.
pub const MAX_CHUNK_CHARS: usize = 100_000;
/// The processor each chunk runs when `ref` is not given.
pub const DEFAULT_CHUNK_REF: &str = "text/stats@1";
/// The chunk output merged when `output` is not given: `text/stats@1`'s statistics.
pub const DEFAULT_CHUNK_OUTPUT: &str = "stats.json";
/// The processor of the `merge` transition.
pub const MERGE_REF: &str = "json/merge@1";
/// The id of the `merge` transition.
pub const MERGE_ID: &str = "merge";

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
    text: String,
    #[serde(default = "default_chunk_chars")]
    chunk_chars: usize,
    #[serde(rename = "ref", default = "default_chunk_ref")]
    chunk_ref: String,
    #[serde(default = "default_chunk_output")]
    output: String,
    #[serde(default)]
    mode: Mode,
}

fn default_chunk_chars() -> usize {
    DEFAULT_CHUNK_CHARS
}

fn default_chunk_ref() -> String {
    DEFAULT_CHUNK_REF.to_owned()
}

fn default_chunk_output() -> String {
    DEFAULT_CHUNK_OUTPUT.to_owned()
}

/// `plan/transitions.json`.
#[derive(Debug, Serialize)]
struct Proposal {
    transitions: Vec<Transition>,
}

/// One proposed transition, in the plan file's transition schema.
#[derive(Debug, Serialize)]
struct Transition {
    id: String,
    #[serde(rename = "ref")]
    processor_ref: String,
    mode: Mode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    after: Vec<String>,
    inputs: Value,
}

fn provide(_: &Context, inputs: Value) -> Result<ProviderResult, ProviderError> {
    let inputs: Inputs = serde_json::from_value(inputs).map_err(ProviderError::inputs)?;
    check(&inputs)?;
    let chunks = chunks(&inputs.text, inputs.chunk_chars);
    if chunks.len() > MAX_CHUNKS {
        return Err(ProviderError::inputs(format!(
            "the text makes {} chunks of at most {} characters, more than {MAX_CHUNKS}; \
             raise chunk_chars",
            chunks.len(),
            inputs.chunk_chars
        )));
    }
    let proposal = propose(&inputs, &chunks);
    Ok(ProviderResult {
        outputs: vec![ProviderOutput::json(PROPOSAL_OUTPUT, &proposal)?],
        processor_info: format!(
            "{PROCESSOR_REF} (chunks of at most {} chars)",
            inputs.chunk_chars
        ),
        usage: Usage::from([
            ("input_bytes".to_owned(), inputs.text.len() as u64),
            ("chunks".to_owned(), chunks.len() as u64),
        ]),
    })
}

/// What the schema says and serde cannot: the version, the ranges, a valid ref and a
/// canonical output path.
fn check(inputs: &Inputs) -> Result<(), ProviderError> {
    if inputs.schema != "v1" {
        return Err(ProviderError::inputs(format!(
            "schema must be `v1`, not `{}`",
            inputs.schema
        )));
    }
    if inputs.text.is_empty() {
        return Err(ProviderError::inputs("text is empty"));
    }
    if !(1..=MAX_CHUNK_CHARS).contains(&inputs.chunk_chars) {
        return Err(ProviderError::inputs(format!(
            "chunk_chars must be from 1 to {MAX_CHUNK_CHARS}, not {}",
            inputs.chunk_chars
        )));
    }
    inputs
        .chunk_ref
        .parse::<ProcessorRef>()
        .map_err(|e| ProviderError::inputs(format!("ref: {}", e.message())))?;
    let prefix = WritePrefix::expand("/artifacts/plan/map/{execution_id}/", "check")
        .map_err(|e| ProviderError::failed(e.message()))?;
    let canonical = prefix.output_path(&inputs.output).ok().and_then(|path| {
        path.as_str()
            .strip_prefix(prefix.outputs_dir().as_str())
            .map(str::to_owned)
    });
    if canonical.as_deref() != Some(inputs.output.as_str()) {
        return Err(ProviderError::inputs(format!(
            "output `{}` is not a canonical path relative to outputs/",
            inputs.output
        )));
    }
    Ok(())
}

/// The proposal: one transition per chunk, then `merge` after all of them.
fn propose(inputs: &Inputs, chunks: &[&str]) -> Proposal {
    let ids: Vec<String> = (0..chunks.len()).map(|i| format!("chunk-{i:04}")).collect();
    let mut transitions: Vec<Transition> = ids
        .iter()
        .zip(chunks)
        .map(|(id, chunk)| Transition {
            id: id.clone(),
            processor_ref: inputs.chunk_ref.clone(),
            mode: inputs.mode,
            after: Vec::new(),
            inputs: json!({"schema": "v1", "text": chunk}),
        })
        .collect();
    let documents: Vec<Value> = ids
        .iter()
        .map(|id| json!({"$from": format!("{id}:outputs/{}", inputs.output)}))
        .collect();
    transitions.push(Transition {
        id: MERGE_ID.to_owned(),
        processor_ref: MERGE_REF.to_owned(),
        mode: inputs.mode,
        after: ids,
        inputs: json!({"schema": "v1", "documents": documents}),
    });
    Proposal { transitions }
}

/// `text` in chunks of at most `max_chars` (at least 1) characters that concatenate back
/// to it; see the module documentation for where a chunk ends.
fn chunks(text: &str, max_chars: usize) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some((window_end, _)) = rest.char_indices().nth(max_chars) else {
            chunks.push(rest);
            break;
        };
        let window = &rest[..window_end];
        let second_half = window
            .char_indices()
            .nth(max_chars / 2)
            .map_or(0, |(offset, _)| offset);
        let cut = window[second_half..]
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(window_end, |(offset, c)| {
                second_half + offset + c.len_utf8()
            });
        let (chunk, remainder) = rest.split_at(cut);
        chunks.push(chunk);
        rest = remainder;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cuts_after_white_space_in_the_second_half_or_at_the_limit() {
        assert_eq!(chunks("aaaa bbbb cccc", 7), ["aaaa ", "bbbb ", "cccc"]);
        assert_eq!(chunks("a bbbbbbbbb", 6), ["a bbbb", "bbbbb"]);
        assert_eq!(chunks("abcdefgh", 3), ["abc", "def", "gh"]);
        assert_eq!(chunks("ab  cd", 3), ["ab ", " cd"]);
        assert_eq!(chunks("éèê ü", 2), ["éè", "ê ", "ü"]);
        assert_eq!(chunks("short", 2000), ["short"]);
        assert!(chunks("", 3).is_empty());
    }

    fn inputs(text: &str, chunk_chars: usize) -> Inputs {
        Inputs {
            schema: "v1".to_owned(),
            text: text.to_owned(),
            chunk_chars,
            chunk_ref: DEFAULT_CHUNK_REF.to_owned(),
            output: DEFAULT_CHUNK_OUTPUT.to_owned(),
            mode: Mode::Mock,
        }
    }

    #[test]
    fn proposes_one_transition_per_chunk_and_a_merge_after_them() {
        let inputs = inputs("one two three", 5);
        let proposal = serde_json::to_value(propose(&inputs, &chunks(&inputs.text, 5))).unwrap();
        assert_eq!(
            proposal,
            json!({"transitions": [
                {"id": "chunk-0000", "ref": "text/stats@1", "mode": "mock",
                 "inputs": {"schema": "v1", "text": "one "}},
                {"id": "chunk-0001", "ref": "text/stats@1", "mode": "mock",
                 "inputs": {"schema": "v1", "text": "two "}},
                {"id": "chunk-0002", "ref": "text/stats@1", "mode": "mock",
                 "inputs": {"schema": "v1", "text": "three"}},
                {"id": "merge", "ref": "json/merge@1", "mode": "mock",
                 "after": ["chunk-0000", "chunk-0001", "chunk-0002"],
                 "inputs": {"schema": "v1", "documents": [
                     {"$from": "chunk-0000:outputs/stats.json"},
                     {"$from": "chunk-0001:outputs/stats.json"},
                     {"$from": "chunk-0002:outputs/stats.json"}]}}
            ]})
        );
    }

    #[test]
    fn refuses_what_the_schema_cannot_say() {
        type Mutation = fn(&mut Inputs);
        let cases: [(Mutation, &str); 6] = [
            (|i| i.schema = "v2".to_owned(), "schema must be `v1`"),
            (|i| i.text.clear(), "text is empty"),
            (
                |i| i.chunk_chars = 0,
                "chunk_chars must be from 1 to 100000",
            ),
            (|i| i.chunk_chars = 100_001, "chunk_chars must be from 1"),
            (
                |i| i.chunk_ref = "stats".to_owned(),
                "ref: invalid processor ref",
            ),
            (
                |i| i.output = "../stats.json".to_owned(),
                "output `../stats.json` is not",
            ),
        ];
        for (mutate, why) in cases {
            let mut inputs = inputs("text", 10);
            mutate(&mut inputs);
            let ProviderError::Inputs(message) = check(&inputs).unwrap_err() else {
                panic!("an inputs error for {why}");
            };
            assert!(message.contains(why), "{message} should say {why}");
        }
        for output in ["/stats.json", "a//b.json", "a/./b.json", ""] {
            let mut inputs = inputs("text", 10);
            inputs.output = output.to_owned();
            assert!(check(&inputs).is_err(), "{output:?}");
        }
        let mut nested = inputs("text", 10);
        nested.output = "text/response.txt".to_owned();
        check(&nested).unwrap();
    }

    proptest! {
        #[test]
        fn chunks_rebuild_the_text_within_the_limit_and_deterministically(
            text in "(\\PC|[ \\t\\n\u{a0}\u{3000}]){0,400}",
            max_chars in 1usize..40,
        ) {
            let split = chunks(&text, max_chars);
            prop_assert_eq!(split.concat(), text.clone());
            prop_assert_eq!(&split, &chunks(&text, max_chars));
            for (index, chunk) in split.iter().enumerate() {
                let length = chunk.chars().count();
                prop_assert!((1..=max_chars).contains(&length));
                let last = index + 1 == split.len();
                // A chunk cut early ends with white space, in the second half of its window.
                if !last && length < max_chars {
                    prop_assert!(chunk.ends_with(char::is_whitespace));
                    prop_assert!(length > max_chars / 2);
                }
            }
        }
    }
}
