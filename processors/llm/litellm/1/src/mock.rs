//! `mock` completions: no network; a fixed template plus words drawn from the
//! inputs-seeded generator, so the same inputs always give the same reply.

use proctor_sdk::Context;
use rand::RngExt;

use crate::{Completion, MOCK_MODEL, MOCK_PROMPT, Message, Params};

/// Words the mock reply draws from.
const VOCABULARY: &[&str] = &[
    "artifact",
    "bright",
    "careful",
    "deterministic",
    "evidence",
    "fast",
    "gentle",
    "hash",
    "index",
    "journal",
    "kind",
    "ledger",
    "mock",
    "note",
    "output",
    "proctor",
    "quiet",
    "receipt",
    "steady",
    "trace",
    "useful",
    "verified",
    "worker",
    "yes",
];

/// How many drawn words the reply carries.
const DRAWN_WORDS: usize = 12;

/// The longest quote of the last user message, in characters.
const QUOTE_CHARS: usize = 80;

/// A deterministic reply to `params` (defaults fill what is absent).
pub(crate) fn complete(context: &Context, params: Params) -> Completion {
    let model = params.model.unwrap_or_else(|| MOCK_MODEL.to_owned());
    let messages = match params.messages {
        Some(messages) if !messages.is_empty() => messages,
        _ => vec![Message {
            role: "user".to_owned(),
            content: MOCK_PROMPT.to_owned(),
        }],
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or("", |m| m.content.as_str());
    let quote: String = last_user
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(QUOTE_CHARS)
        .collect();
    let mut rng = context.seeded_rng();
    let drawn: Vec<&str> = (0..DRAWN_WORDS)
        .map(|_| VOCABULARY[rng.random_range(0..VOCABULARY.len())])
        .collect();
    let text = format!(
        "Mock reply from {model} to {} message(s). You said: \"{quote}\". {}.\n",
        messages.len(),
        drawn.join(" ")
    );
    let prompt_tokens = messages.iter().map(|m| word_count(&m.content)).sum();
    let completion_tokens = word_count(&text);
    Completion {
        text,
        model,
        finish_reason: "stop".to_owned(),
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

/// White-space separated words, the mock's token count.
fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}
