//! One call to an OpenAI-compatible `/chat/completions` endpoint through
//! [`proctor_sdk::openai`], with deterministic sampling.

use proctor_contract::Usage;
use proctor_sdk::openai::{ChatRequest, Endpoint, Message};
use proctor_sdk::{Context, ProviderError};

/// The first choice's text and the token counts (`prompt_tokens`, `completion_tokens`,
/// `total_tokens`).
pub(crate) async fn complete(
    context: &Context,
    model: &str,
    messages: &[Message],
) -> Result<(String, Usage), ProviderError> {
    let endpoint = Endpoint::from_context(context)?;
    let answer = endpoint
        .chat(&ChatRequest {
            model,
            messages,
            temperature: Some(0.0),
            max_tokens: None,
        })
        .await?;
    let Some(text) = answer
        .choices
        .into_iter()
        .next()
        .and_then(|choice| choice.message.content)
    else {
        return Err(endpoint.answered("answered with no message"));
    };
    let (prompt, completion) = answer
        .usage
        .map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens));
    let usage = Usage::from([
        ("prompt_tokens".to_owned(), prompt),
        ("completion_tokens".to_owned(), completion),
        ("total_tokens".to_owned(), prompt + completion),
    ]);
    Ok((text, usage))
}
