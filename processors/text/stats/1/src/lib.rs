//! text/stats@1: word, line and character counts of a text, plus its normalized form and
//! a word-frequency table. The text comes inline or as an attached UTF-8 file (an input
//! artifact, read through the SDK's checked reader). Pure: `mock` and `real` give the same
//! bytes.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

use std::collections::BTreeMap;

use proctor_contract::{ArtifactRef, Usage};
use proctor_sdk::{Context, ProcessorDefinition, ProviderError, ProviderOutput, ProviderResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

/// This processor's ref.
pub const PROCESSOR_REF: &str = "text/stats@1";
/// How many top words `stats.json` lists when `top_n` is not given.
pub const DEFAULT_TOP_N: usize = 10;

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
    text: Text,
    #[serde(default)]
    top_n: Option<usize>,
}

/// Where the text comes from.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Text {
    /// The text itself.
    Inline(String),
    /// An attached file holding it, as UTF-8.
    Attached(ArtifactRef),
}

impl Text {
    /// The text, reading an attached file through the context's checked reader.
    fn read(self, context: &Context) -> Result<String, ProviderError> {
        match self {
            Text::Inline(text) => Ok(text),
            Text::Attached(artifact) => {
                let bytes = context.read_artifact(&artifact)?;
                String::from_utf8(bytes).map_err(|_| {
                    ProviderError::inputs(format!("/text: `{}` is not UTF-8 text", artifact.path))
                })
            }
        }
    }
}

/// `stats.json`.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct Stats {
    chars: usize,
    bytes: usize,
    lines: usize,
    words: usize,
    unique_words: usize,
    top_words: Vec<WordCount>,
}

/// One word and how often it occurs.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct WordCount {
    word: String,
    count: usize,
}

fn provide(context: &Context, inputs: Value) -> Result<ProviderResult, ProviderError> {
    let inputs: Inputs = serde_json::from_value(inputs).map_err(ProviderError::inputs)?;
    if inputs.schema != "v1" {
        return Err(ProviderError::inputs(format!(
            "schema must be `v1`, not `{}`",
            inputs.schema
        )));
    }
    let text = inputs.text.read(context)?;
    let normalized = normalize(&text);
    let frequencies = word_frequencies(&normalized);
    let top_n = inputs.top_n.unwrap_or(DEFAULT_TOP_N);
    let stats = Stats {
        chars: text.chars().count(),
        bytes: text.len(),
        lines: text.lines().count(),
        words: frequencies.iter().map(|entry| entry.count).sum(),
        unique_words: frequencies.len(),
        top_words: frequencies
            .iter()
            .take(top_n)
            .map(|e| WordCount {
                word: e.word.clone(),
                count: e.count,
            })
            .collect(),
    };
    let mut csv = String::from("word,count\n");
    for entry in &frequencies {
        csv.push_str(&format!("{},{}\n", entry.word, entry.count));
    }
    Ok(ProviderResult {
        outputs: vec![
            ProviderOutput::json("stats.json", &stats)?,
            ProviderOutput::text("normalized.txt", normalized),
            ProviderOutput::new("words.csv", csv.into_bytes(), "text/csv"),
        ],
        processor_info: format!("{PROCESSOR_REF} (unicode NFC, lowercase)"),
        usage: Usage::from([("input_bytes".to_owned(), text.len() as u64)]),
    })
}

/// NFC, lowercase, white space collapsed to single spaces, one final newline (none for a
/// text without words).
fn normalize(text: &str) -> String {
    let lowered: String = text.nfc().collect::<String>().to_lowercase();
    let mut joined = lowered.split_whitespace().collect::<Vec<_>>().join(" ");
    if !joined.is_empty() {
        joined.push('\n');
    }
    joined
}

/// Words of a normalized text — runs of letters, digits and inner apostrophes — with
/// their counts, most frequent first, ties in alphabetical order.
fn word_frequencies(normalized: &str) -> Vec<WordCount> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let words = normalized
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|word| word.trim_matches('\''))
        .filter(|word| !word.is_empty());
    for word in words {
        *counts.entry(word).or_default() += 1;
    }
    let mut frequencies: Vec<WordCount> = counts
        .into_iter()
        .map(|(word, count)| WordCount {
            word: word.to_owned(),
            count,
        })
        .collect();
    frequencies.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
    frequencies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_composition_and_white_space() {
        assert_eq!(normalize("  Cafe\u{301}\tAU\n\n lait  "), "café au lait\n");
        assert_eq!(normalize(" \n\t"), "");
    }

    #[test]
    fn counts_words_most_frequent_first() {
        let frequencies = word_frequencies(&normalize("The cat, the DOG; the cat's 'toy'. 2 dogs"));
        let pairs: Vec<(&str, usize)> = frequencies
            .iter()
            .map(|e| (e.word.as_str(), e.count))
            .collect();
        assert_eq!(
            pairs,
            [
                ("the", 3),
                ("2", 1),
                ("cat", 1),
                ("cat's", 1),
                ("dog", 1),
                ("dogs", 1),
                ("toy", 1)
            ]
        );
    }
}
