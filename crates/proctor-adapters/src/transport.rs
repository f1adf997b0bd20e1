//! HTTP to a processor, over its unix socket (`mock`) or a loopback port (`real`), and the
//! bounded body reading every adapter uses.

use std::path::PathBuf;
use std::time::Duration;

use proctor_contract::{CanonError, ErrorCode, Health, ProcessorRef, RunPayload};

/// Pause between two `/healthz` attempts while a processor is expected to come up: most
/// answer within tens of milliseconds of their start, and an attempt costs little.
const FAST_HEALTH_POLL: Duration = Duration::from_millis(4);
/// How long the fast poll lasts; after it the pause doubles, up to [`MAX_HEALTH_BACKOFF`].
const FAST_HEALTH_WINDOW: Duration = Duration::from_secs(1);
/// Longest pause between two `/healthz` attempts.
const MAX_HEALTH_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait for one `/healthz` answer before trying again.
const HEALTH_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest envelope accepted from a processor.
pub(crate) const MAX_ENVELOPE_BYTES: usize = 16 * 1024 * 1024;
/// Largest `/healthz` answer accepted from a processor.
const MAX_HEALTH_BYTES: usize = 64 * 1024;

/// Where a processor's HTTP server answers, seen from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket on the host (the container has no network).
    Socket(PathBuf),
    /// `127.0.0.1:<port>`.
    Loopback(u16),
}

/// A failed `/run` request: the transport broke before a whole answer arrived.
#[derive(Debug)]
pub(crate) struct TransportError(pub(crate) String);

/// An HTTP client bound to one processor.
pub(crate) struct ProcessorClient {
    http: reqwest::Client,
    base_url: String,
}

impl ProcessorClient {
    /// A client for `endpoint`; proxies are never used.
    pub(crate) fn new(endpoint: &Endpoint) -> Result<ProcessorClient, CanonError> {
        let builder = reqwest::Client::builder().no_proxy();
        let (builder, base_url) = match endpoint {
            Endpoint::Socket(path) => (
                builder.unix_socket(path.clone()),
                "http://processor".to_owned(),
            ),
            Endpoint::Loopback(port) => (builder, format!("http://127.0.0.1:{port}")),
        };
        let http = builder.build().map_err(|error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("cannot build the HTTP client: {error}"),
            )
        })?;
        Ok(ProcessorClient { http, base_url })
    }

    /// Polls `GET /healthz` (every few milliseconds at first, then with a growing backoff)
    /// until the processor answers
    /// healthy as `expected`. Unbounded: the caller bounds it (run timeout, container exit).
    pub(crate) async fn wait_healthy(&self, expected: &ProcessorRef) -> Result<(), CanonError> {
        let url = format!("{}/healthz", self.base_url);
        let started = tokio::time::Instant::now();
        let mut backoff = FAST_HEALTH_POLL;
        loop {
            let answer = self
                .http
                .get(&url)
                .timeout(HEALTH_ATTEMPT_TIMEOUT)
                .send()
                .await;
            if let Ok(response) = answer
                && response.status().is_success()
            {
                let bytes = read_body_up_to(response, MAX_HEALTH_BYTES)
                    .await
                    .map_err(|why| {
                        CanonError::new(
                            ErrorCode::AdapterInvocation,
                            format!("/healthz: cannot read the answer: {why}"),
                        )
                    })?;
                return check_health(&bytes, expected);
            }
            tokio::time::sleep(backoff).await;
            if started.elapsed() > FAST_HEALTH_WINDOW {
                backoff = (backoff * 2).min(MAX_HEALTH_BACKOFF);
            }
        }
    }

    /// Posts the payload to `/run` and returns the status and body (at most
    /// [`MAX_ENVELOPE_BYTES`]).
    pub(crate) async fn post_run(
        &self,
        payload: &RunPayload,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let url = format!("{}/run", self.base_url);
        let response = self
            .http
            .post(url)
            .json(payload)
            .send()
            .await
            .map_err(|error| TransportError(format!("POST /run: {error}")))?;
        let status = response.status().as_u16();
        let body = read_body(response)
            .await
            .map_err(|why| TransportError(format!("POST /run: {why}")))?;
        Ok((status, body))
    }
}

/// Reads a whole answer body, at most [`MAX_ENVELOPE_BYTES`]; the error says why not.
pub(crate) async fn read_body(response: reqwest::Response) -> Result<Vec<u8>, String> {
    read_body_up_to(response, MAX_ENVELOPE_BYTES).await
}

/// Reads a whole answer body, at most `limit` bytes; the error says why not.
async fn read_body_up_to(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks a `/healthz` answer: a [`Health`] document naming the expected processor.
fn check_health(bytes: &[u8], expected: &ProcessorRef) -> Result<(), CanonError> {
    let invalid =
        |why: String| CanonError::new(ErrorCode::AdapterInvocation, format!("/healthz: {why}"));
    let health: Health = serde_json::from_slice(bytes)
        .map_err(|error| invalid(format!("not a health document: {error}")))?;
    if !health.ok {
        return Err(invalid("processor reports ok=false".to_owned()));
    }
    if &health.processor_ref != expected {
        return Err(invalid(format!(
            "processor answers as {}, expected {expected}",
            health.processor_ref
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_must_name_the_expected_processor() {
        let expected: ProcessorRef = "text/stats@1".parse().unwrap();
        let good = br#"{"ok":true,"image_digest":"sha256:ab","ref":"text/stats@1"}"#;
        assert!(check_health(good, &expected).is_ok());
        let other = br#"{"ok":true,"image_digest":"sha256:ab","ref":"llm/litellm@1"}"#;
        let not_ok = br#"{"ok":false,"image_digest":"sha256:ab","ref":"text/stats@1"}"#;
        for bytes in [&other[..], &not_ok[..], b"<html>"] {
            let err = check_health(bytes, &expected).unwrap_err();
            assert_eq!(err.code(), ErrorCode::AdapterInvocation);
            assert!(err.message().contains("/healthz"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_oversized_health_answer_is_refused_not_read_whole() {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let huge = "x".repeat(MAX_HEALTH_BYTES * 4);
        let app =
            axum::Router::new().route("/healthz", axum::routing::get(move || async move { huge }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = ProcessorClient::new(&Endpoint::Loopback(port)).unwrap();
        let error = client
            .wait_healthy(&"text/stats@1".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert!(
            error
                .message()
                .contains("cannot read the answer: answer larger than"),
            "{error}"
        );
        server.abort();
    }
}
