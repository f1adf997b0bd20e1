//! `real` completions: one call to an OpenAI-compatible `/chat/completions` endpoint.

use std::time::Duration;

use proctor_sdk::{Context, ProviderError};
use serde::{Deserialize, Serialize};

use crate::{API_KEY_SECRET, BASE_URL_VAR, Completion, DEFAULT_BASE_URL, Message, Params};

/// Limit for connecting to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for the whole call; the runtime timeout of the run bounds it further.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of an error answer's body an error message quotes, in bytes, counted after
/// redaction.
const QUOTED_BODY_BYTES: usize = 500;

/// The request body.
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
}

/// The parts of the answer used; other fields are ignored.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: AnswerMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AnswerMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// Calls the endpoint with the key as a bearer token. Error messages are redacted of the
/// key, of the base URL and of any credentials, before anything is cut.
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
    let key = context
        .secret(API_KEY_SECRET)
        .ok_or_else(|| ProviderError::failed(format!("{API_KEY_SECRET} is not available")))?;
    let base_url =
        base_url_without_userinfo(context.env(BASE_URL_VAR).unwrap_or(DEFAULT_BASE_URL))?;
    let url = format!(
        "{}/chat/completions",
        base_url.as_str().trim_end_matches('/')
    );
    let redactor = context.redactor();
    let failed = |what: String| ProviderError::failed(redactor.redact(&what));

    let request = ChatRequest {
        model: &model,
        messages: &messages,
        temperature: params.temperature,
        max_tokens: params.max_tokens,
    };
    let response = client()
        .map_err(|e| failed(format!("cannot set up the HTTP client: {e}")))?
        .post(&url)
        .bearer_auth(key)
        .json(&request)
        .send()
        .await
        .map_err(|e| failed(format!("cannot reach {url}: {}", error_chain(&e))))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| {
        failed(format!(
            "cannot read the answer of {url}: {}",
            error_chain(&e)
        ))
    })?;
    if !status.is_success() {
        let quoted = redactor.truncate_redacted(&body, QUOTED_BODY_BYTES);
        return Err(failed(format!("{url} answered {status}: {quoted}")));
    }
    let answer: ChatResponse = serde_json::from_str(&body)
        .map_err(|e| failed(format!("{url} answered with an unexpected body: {e}")))?;
    let Some(choice) = answer.choices.into_iter().next() else {
        return Err(failed(format!("{url} answered with no choices")));
    };
    let usage = answer.usage.unwrap_or(TokenUsage {
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: None,
    });
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

/// The endpoint's base URL without its userinfo. Credentials in `OPENAI_BASE_URL` would
/// make the client send them as Basic authentication in place of the key, and would be
/// quoted in error messages; the key is the only credential sent. Errors quote neither the
/// value nor its userinfo.
fn base_url_without_userinfo(value: &str) -> Result<reqwest::Url, ProviderError> {
    let invalid = |why: String| ProviderError::failed(format!("{BASE_URL_VAR} {why}"));
    let mut url =
        reqwest::Url::parse(value).map_err(|e| invalid(format!("is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "must be an http or https URL, not {}",
            url.scheme()
        )));
    }
    url.set_username("")
        .and_then(|()| url.set_password(None))
        .map_err(|()| invalid("has no host".to_owned()))?;
    Ok(url)
}

/// An error and its causes, `: `-joined (reqwest's own message leaves the cause out).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// An HTTP client trusting the bundled Mozilla roots on top of the system's, so TLS works
/// on an image with no certificate store.
fn client() -> reqwest::Result<reqwest::Client> {
    let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der.as_ref()).ok());
    reqwest::Client::builder()
        .tls_certs_merge(bundled)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
}
