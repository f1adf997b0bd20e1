//! llm/litellm@1: chat completion through any OpenAI-compatible endpoint (OpenAI, a LiteLLM
//! proxy, vLLM, Ollama).
//!
//! Inputs: `{"schema":"v1","params":{"model":…,"messages":[{"role":…,"content":…}],
//! "temperature":…,"max_tokens":…}}`.
//! - `mock`: no network. `params` may be empty: the model defaults to [`MOCK_MODEL`] and the
//!   messages to one user message [`MOCK_PROMPT`]. The reply is derived from the messages
//!   through the inputs-seeded generator, so the same inputs give the same bytes.
//! - `real`: `POST {OPENAI_BASE_URL or https://api.openai.com/v1}/chat/completions` with
//!   `Authorization: Bearer $OPENAI_API_KEY`; `model` and `messages` are required. A
//!   `user:pass@` in `OPENAI_BASE_URL` is dropped: the key is the only credential sent, and
//!   no error quotes the userinfo.
//!
//! Outputs: `text/response.txt` (the reply) and `metadata.json` (model, finish reason,
//! token counts); usage carries `prompt_tokens`, `completion_tokens`, `total_tokens`.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod mock;
mod openai;

use proctor_contract::{Mode, Usage};
use proctor_sdk::openai::Message;
pub use proctor_sdk::openai::{API_KEY_SECRET, BASE_URL_VAR, DEFAULT_BASE_URL};
use proctor_sdk::{
    Context, ProcessorDefinition, Provider, ProviderError, ProviderFuture, ProviderOutput,
    ProviderResult,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// This processor's ref.
pub const PROCESSOR_REF: &str = "llm/litellm@1";
/// The model `mock` mode answers as when `params.model` is absent.
pub const MOCK_MODEL: &str = "mock-gpt";
/// The user message `mock` mode answers when `params.messages` is absent or empty.
pub const MOCK_PROMPT: &str = "Hello from proctor";

/// The processor: requires `OPENAI_API_KEY` in `real` mode, passes `OPENAI_BASE_URL`
/// through.
pub fn definition() -> ProcessorDefinition {
    let processor_ref = PROCESSOR_REF
        .parse()
        .expect("the processor ref literal is valid");
    ProcessorDefinition::new(processor_ref, ChatCompletion)
        .with_required_secrets([API_KEY_SECRET])
        .with_passthrough_env([BASE_URL_VAR])
}

/// The inputs payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    schema: String,
    params: Params,
}

/// Chat completion parameters, as the endpoint takes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
}

/// What a completion produced, mock or real.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Completion {
    #[serde(skip)]
    text: String,
    model: String,
    finish_reason: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// The provider.
struct ChatCompletion;

impl Provider for ChatCompletion {
    fn run<'a>(&'a self, context: &'a Context, inputs: Value) -> ProviderFuture<'a> {
        Box::pin(complete(context, inputs))
    }
}

async fn complete(context: &Context, inputs: Value) -> Result<ProviderResult, ProviderError> {
    let inputs: Inputs = serde_json::from_value(inputs).map_err(ProviderError::inputs)?;
    if inputs.schema != "v1" {
        return Err(ProviderError::inputs(format!(
            "schema must be `v1`, not `{}`",
            inputs.schema
        )));
    }
    let completion = match context.mode() {
        Mode::Mock => mock::complete(context, inputs.params),
        Mode::Real => openai::complete(context, inputs.params).await?,
    };
    let usage = Usage::from([
        ("prompt_tokens".to_owned(), completion.prompt_tokens),
        ("completion_tokens".to_owned(), completion.completion_tokens),
        ("total_tokens".to_owned(), completion.total_tokens),
    ]);
    Ok(ProviderResult {
        outputs: vec![
            ProviderOutput::text("text/response.txt", completion.text.clone()),
            ProviderOutput::json("metadata.json", &completion)?,
        ],
        processor_info: format!(
            "{PROCESSOR_REF} {} model={}",
            context.mode(),
            completion.model
        ),
        usage,
    })
}
