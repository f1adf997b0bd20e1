//! `real` completions: one call to an OpenAI-compatible `/chat/completions` endpoint
//! through [`proctor_sdk::openai`].

use proctor_sdk::openai::{ChatRequest, Endpoint};
use proctor_sdk::{Context, ProviderError};

use crate::{Completion, Params};

/// Asks the endpoint for a completion of `params`, which must name the model and hold
/// messages.
pub(crate) async fn complete(
    context: &Context,
    params: Params,
) -> Result<Completion, ProviderError> {
    let (Some(model), Some(messages)) = (params.model, params.messages.filter(|m| !m.is_empty()))
    else {
        return Err(ProviderError::inputs(
            "real mode needs params.model and a non-empty params.messages",
        ));
    };
    let endpoint = Endpoint::from_context(context)?;
    let answer = endpoint
        .chat(&ChatRequest {
            model: &model,
            messages: &messages,
            temperature: params.temperature,
            max_tokens: params.max_tokens,
        })
        .await?;
    let Some(choice) = answer.choices.into_iter().next() else {
        return Err(endpoint.answered("answered with no choices"));
    };
    let usage = answer.usage.unwrap_or_default();
    Ok(Completion {
        text: choice.message.content.unwrap_or_default(),
        model: answer.model.unwrap_or(model),
        finish_reason: choice.finish_reason.unwrap_or_else(|| "unknown".to_owned()),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage
            .total_tokens
            .unwrap_or(usage.prompt_tokens + usage.completion_tokens),
    })
}
