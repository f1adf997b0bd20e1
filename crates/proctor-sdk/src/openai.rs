//! An OpenAI-compatible chat client (feature `openai`) for providers that call
//! `/chat/completions`: OpenAI, a LiteLLM proxy, vLLM, Ollama.
//!
//! The key ([`API_KEY_SECRET`]) is sent as a bearer token and is the only credential sent:
//! the userinfo of the base URL ([`BASE_URL_VAR`], default [`DEFAULT_BASE_URL`]) is dropped.
//! TLS trusts the bundled Mozilla roots on top of the system's, and DNS has a resolver of
//! its own, so a static binary works on an empty image. Every error message is redacted of
//! the run's secret and pass-through values, and of any credential, before it is cut.

use std::fmt;
use std::time::Duration;

use proctor_contract::Redactor;
use serde::{Deserialize, Serialize};

use crate::{Context, ProviderError};

/// The secret holding the endpoint's API key.
pub const API_KEY_SECRET: &str = "OPENAI_API_KEY";
/// The pass-through variable naming the endpoint's base URL.
pub const BASE_URL_VAR: &str = "OPENAI_BASE_URL";
/// The base URL used when [`BASE_URL_VAR`] is unset.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Limit for connecting to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for the whole call; the runtime timeout of the run bounds it further.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of an error answer's body an error message quotes, in bytes, counted after
/// redaction.
const QUOTED_BODY_BYTES: usize = 500;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The message's text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The request body; absent sampling settings are left out, so the endpoint's defaults
/// apply.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    /// The model asked.
    pub model: &'a str,
    /// The conversation.
    pub messages: &'a [Message],
    /// The sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The most tokens the answer may hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

/// The parts of an answer providers use; other fields are ignored.
#[derive(Debug, Deserialize)]
pub struct ChatAnswer {
    /// The model that answered, when the endpoint says.
    #[serde(default)]
    pub model: Option<String>,
    /// The choices, first one first.
    pub choices: Vec<Choice>,
    /// The token counts, when the endpoint says.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

/// One choice of an answer.
#[derive(Debug, Deserialize)]
pub struct Choice {
    /// The choice's message.
    pub message: AnswerMessage,
    /// Why the model stopped, when the endpoint says.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The message of a [`Choice`].
#[derive(Debug, Deserialize)]
pub struct AnswerMessage {
    /// Its text; absent when the model wrote none.
    #[serde(default)]
    pub content: Option<String>,
}

/// An answer's token counts; absent counts are 0.
#[derive(Debug, Default, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the request.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    #[serde(default)]
    pub completion_tokens: u64,
    /// The total, when the endpoint says.
    #[serde(default)]
    pub total_tokens: Option<u64>,
}

/// The run's endpoint: `{base URL}/chat/completions`, the key, and the run's redactor.
pub struct Endpoint {
    url: String,
    key: String,
    redactor: Redactor,
}

impl Endpoint {
    /// The endpoint of a `real` run: the key from [`API_KEY_SECRET`], the base URL from
    /// [`BASE_URL_VAR`] or [`DEFAULT_BASE_URL`], without its userinfo. Errors quote neither
    /// the key, nor the base URL, nor its userinfo.
    pub fn from_context(context: &Context) -> Result<Endpoint, ProviderError> {
        let key = context
            .secret(API_KEY_SECRET)
            .ok_or_else(|| ProviderError::failed(format!("{API_KEY_SECRET} is not available")))?;
        let base_url =
            base_url_without_userinfo(context.env(BASE_URL_VAR).unwrap_or(DEFAULT_BASE_URL))?;
        Ok(Endpoint {
            url: format!(
                "{}/chat/completions",
                base_url.as_str().trim_end_matches('/')
            ),
            key: key.to_owned(),
            redactor: context.redactor(),
        })
    }

    /// Posts `request` and returns the answer. A failure to connect, an answer that is not
    /// a success (quoting at most 500 bytes of it) or one that does not parse is
    /// `ERR_PROVIDER`.
    pub async fn chat(&self, request: &ChatRequest<'_>) -> Result<ChatAnswer, ProviderError> {
        let url = &self.url;
        let response = client()
            .map_err(|e| self.failed(format!("cannot set up the HTTP client: {e}")))?
            .post(url)
            .bearer_auth(&self.key)
            .json(request)
            .send()
            .await
            .map_err(|e| self.failed(format!("cannot reach {url}: {}", error_chain(&e))))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            self.failed(format!(
                "cannot read the answer of {url}: {}",
                error_chain(&e)
            ))
        })?;
        if !status.is_success() {
            let quoted = self.redactor.truncate_redacted(&body, QUOTED_BODY_BYTES);
            return Err(self.failed(format!("{url} answered {status}: {quoted}")));
        }
        serde_json::from_str(&body)
            .map_err(|e| self.failed(format!("{url} answered with an unexpected body: {e}")))
    }

    /// `ERR_PROVIDER` saying the endpoint `{url} {what}`, redacted: for an answer the
    /// provider cannot use.
    pub fn answered(&self, what: &str) -> ProviderError {
        self.failed(format!("{} {what}", self.url))
    }

    fn failed(&self, what: String) -> ProviderError {
        ProviderError::failed(self.redactor.redact(&what))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.redactor.redact(&self.url))
            .finish_non_exhaustive()
    }
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
    proctor_tls::http_client_builder()
        .tls_certs_merge(bundled)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proctor_contract::{Mode, inputs_hash};
    use serde_json::json;

    use super::*;
    use crate::testing::FakeChatEndpoint;

    const KEY: &str = "sk-test-0123456789abcdefghijklmn";

    /// A `real` context holding the key and, when given, the base URL.
    fn context(base_url: Option<&str>) -> Context {
        Context::new(
            "e1".to_owned(),
            "test/chat@1".parse().unwrap(),
            Mode::Real,
            inputs_hash(&json!({})),
            BTreeMap::from([(API_KEY_SECRET.to_owned(), KEY.to_owned())]),
            base_url
                .map(|url| (BASE_URL_VAR.to_owned(), url.to_owned()))
                .into_iter()
                .collect(),
        )
    }

    /// The message of an `ERR_PROVIDER` failure.
    fn message(error: ProviderError) -> String {
        match error {
            ProviderError::Failed(message) => message,
            ProviderError::Inputs(message) => panic!("not a provider failure: {message}"),
            ProviderError::Canon(error) => panic!("not a provider failure: {error}"),
        }
    }

    #[test]
    fn a_request_leaves_absent_sampling_settings_out() {
        let messages = [Message::new("user", "hi")];
        let mut request = ChatRequest {
            model: "m",
            messages: &messages,
            temperature: None,
            max_tokens: None,
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#
        );
        request.temperature = Some(0.0);
        request.max_tokens = Some(64);
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.0,"max_tokens":64}"#
        );
    }

    #[test]
    fn the_base_url_loses_its_userinfo_and_must_be_http() {
        let url = base_url_without_userinfo("https://user:pass@proxy.example/v1").unwrap();
        assert_eq!(url.as_str(), "https://proxy.example/v1");
        let refused = message(base_url_without_userinfo("ftp://user:pass@host/").unwrap_err());
        assert!(
            refused.contains("OPENAI_BASE_URL must be an http or https URL, not ftp"),
            "{refused}"
        );
        assert!(!refused.contains("pass"), "{refused}");
        let invalid = message(base_url_without_userinfo("not a url").unwrap_err());
        assert!(
            invalid.contains("OPENAI_BASE_URL is not a valid URL"),
            "{invalid}"
        );
    }

    #[test]
    fn an_endpoint_needs_the_key_and_defaults_its_base_url() {
        let endpoint = Endpoint::from_context(&context(None)).unwrap();
        assert_eq!(endpoint.url, "https://api.openai.com/v1/chat/completions");
        assert!(!format!("{endpoint:?}").contains(KEY));
        let trailing = Endpoint::from_context(&context(Some("http://127.0.0.1:9/v1/"))).unwrap();
        assert_eq!(trailing.url, "http://127.0.0.1:9/v1/chat/completions");
        let keyless = Context::new(
            "e1".to_owned(),
            "test/chat@1".parse().unwrap(),
            Mode::Real,
            inputs_hash(&json!({})),
            BTreeMap::new(),
            BTreeMap::new(),
        );
        let missing = message(Endpoint::from_context(&keyless).unwrap_err());
        assert!(
            missing.contains("OPENAI_API_KEY is not available"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn chat_sends_the_key_alone_and_parses_the_answer() {
        let answer = json!({
            "model": "fake-model-1",
            "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        });
        let fake = FakeChatEndpoint::start(200, answer).await;
        let base_url = format!("http://proxy-user:proxy-pass@{}/v1", fake.addr());
        let endpoint = Endpoint::from_context(&context(Some(&base_url))).unwrap();
        let messages = [Message::new("user", "hi")];
        let request = ChatRequest {
            model: "m",
            messages: &messages,
            temperature: Some(0.0),
            max_tokens: None,
        };
        let answer = endpoint.chat(&request).await.unwrap();
        assert_eq!(answer.model.as_deref(), Some("fake-model-1"));
        assert_eq!(answer.choices[0].message.content.as_deref(), Some("ok"));
        assert_eq!(answer.choices[0].finish_reason.as_deref(), Some("stop"));
        let usage = answer.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 3));
        assert_eq!(usage.total_tokens, None);
        assert_eq!(
            fake.requests(),
            vec![(
                Some(format!("Bearer {KEY}")),
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0})
            )]
        );
        let unusable = message(endpoint.answered("answered with no choices"));
        assert_eq!(
            unusable,
            format!(
                "http://{}/v1/chat/completions answered with no choices",
                fake.addr()
            )
        );
    }

    #[tokio::test]
    async fn endpoint_errors_are_redacted_and_name_their_cause() {
        let echo = json!({"error": format!("bad key {KEY}")});
        let fake = FakeChatEndpoint::start(401, echo).await;
        let endpoint = Endpoint::from_context(&context(Some(&fake.base_url()))).unwrap();
        let request = ChatRequest {
            model: "m",
            messages: &[],
            temperature: None,
            max_tokens: None,
        };
        let denied = message(endpoint.chat(&request).await.unwrap_err());
        assert!(denied.contains("answered 401 Unauthorized"), "{denied}");
        assert!(denied.contains("bad key [REDACTED]"), "{denied}");
        assert!(!denied.contains(KEY), "{denied}");

        let garbled = FakeChatEndpoint::start(200, json!({"choices": "none"})).await;
        let endpoint = Endpoint::from_context(&context(Some(&garbled.base_url()))).unwrap();
        let unexpected = message(endpoint.chat(&request).await.unwrap_err());
        assert!(
            unexpected.contains("answered with an unexpected body"),
            "{unexpected}"
        );

        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let endpoint =
            Endpoint::from_context(&context(Some(&format!("http://{closed}/v1")))).unwrap();
        let unreachable = message(endpoint.chat(&request).await.unwrap_err());
        assert!(
            unreachable.contains("cannot reach [REDACTED]/chat/completions: "),
            "{unreachable}"
        );
    }
}
