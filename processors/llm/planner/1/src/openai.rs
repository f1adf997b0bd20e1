//! One call to an OpenAI-compatible `/chat/completions` endpoint, with the settings of
//! `llm/litellm@1`: the key as a bearer token, the base URL without userinfo, bundled TLS
//! roots, errors redacted before they are cut.

use std::time::Duration;

use proctor_contract::Usage;
use proctor_sdk::{Context, ProviderError};
use serde::{Deserialize, Serialize};

use crate::{API_KEY_SECRET, BASE_URL_VAR, DEFAULT_BASE_URL};

/// Limit for connecting to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for the whole call; the runtime timeout of the run bounds it further.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of an answer an error message quotes, in bytes, counted after redaction.
const QUOTED_BODY_BYTES: usize = 500;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Message {
    role: &'static str,
    content: String,
}

impl Message {
    pub(crate) fn new(role: &'static str, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// The request body: deterministic sampling.
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    temperature: f64,
}

/// The parts of the answer used; other fields are ignored.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: AnswerMessage,
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
}

/// The first choice's text and the token counts (`prompt_tokens`, `completion_tokens`,
/// `total_tokens`).
pub(crate) async fn complete(
    context: &Context,
    model: &str,
    messages: &[Message],
) -> Result<(String, Usage), ProviderError> {
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
        model,
        messages,
        temperature: 0.0,
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
    let Some(text) = answer
        .choices
        .into_iter()
        .next()
        .and_then(|choice| choice.message.content)
    else {
        return Err(failed(format!("{url} answered with no message")));
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

/// The endpoint's base URL without its userinfo, so the key is the only credential sent
/// and no error quotes another. Errors quote neither the value nor its userinfo.
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
