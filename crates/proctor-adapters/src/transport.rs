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

/// Bounds on the answers read from a processor, each checked while the body arrives: a
/// larger one is refused with the adapter's code, never read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// The largest envelope, in bytes: a `/run` body, one `/run-stream` event, or an error
    /// answer to `/run` (default [`ResponseLimits::DEFAULT_MAX_ENVELOPE_BYTES`]).
    pub max_envelope_bytes: u64,
    /// The largest `/healthz` body, in bytes (default
    /// [`ResponseLimits::DEFAULT_MAX_HEALTH_BYTES`]).
    pub max_health_bytes: u64,
}

impl ResponseLimits {
    /// 16 MiB.
    pub const DEFAULT_MAX_ENVELOPE_BYTES: u64 = 16 * 1024 * 1024;
    /// 64 KiB.
    pub const DEFAULT_MAX_HEALTH_BYTES: u64 = 64 * 1024;

    /// The limit on `answer`, in bytes.
    pub(crate) fn max_bytes(&self, answer: Answer) -> u64 {
        match answer {
            Answer::Envelope => self.max_envelope_bytes,
            Answer::Health => self.max_health_bytes,
        }
    }

    /// Why an `answer` over its limit is refused, naming the limit and what raises it.
    pub(crate) fn over_limit(&self, answer: Answer) -> String {
        let (what, flag, env) = match answer {
            Answer::Envelope => (
                "envelope",
                "--max-envelope-bytes",
                "PROCTOR_MAX_ENVELOPE_BYTES",
            ),
            Answer::Health => ("/healthz", "--max-health-bytes", "PROCTOR_MAX_HEALTH_BYTES"),
        };
        format!(
            "the answer is larger than the {}-byte {what} limit; raise {flag} ({env}) to allow it",
            self.max_bytes(answer)
        )
    }

    /// Reads a whole `answer` body, never more than its limit; the error says why not.
    pub(crate) async fn read_body(
        &self,
        mut response: reqwest::Response,
        answer: Answer,
    ) -> Result<Vec<u8>, String> {
        let limit = self.max_bytes(answer);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
            let len = u64::try_from(body.len().saturating_add(chunk.len())).unwrap_or(u64::MAX);
            if len > limit {
                return Err(self.over_limit(answer));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl Default for ResponseLimits {
    fn default() -> ResponseLimits {
        ResponseLimits {
            max_envelope_bytes: ResponseLimits::DEFAULT_MAX_ENVELOPE_BYTES,
            max_health_bytes: ResponseLimits::DEFAULT_MAX_HEALTH_BYTES,
        }
    }
}

/// Which of a processor's answers a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The answer to `/run` or `/run-stream`.
    Envelope,
    /// The answer to `/healthz`.
    Health,
}

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
    limits: ResponseLimits,
}

impl ProcessorClient {
    /// A client for `endpoint` that reads answers up to `limits`; proxies are never used.
    pub(crate) fn new(
        endpoint: &Endpoint,
        limits: ResponseLimits,
    ) -> Result<ProcessorClient, CanonError> {
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
        Ok(ProcessorClient {
            http,
            base_url,
            limits,
        })
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
                let bytes = self
                    .limits
                    .read_body(response, Answer::Health)
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

    /// Posts the payload to `/run` and returns the status and body (at most the envelope
    /// limit).
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
        let body = self
            .limits
            .read_body(response, Answer::Envelope)
            .await
            .map_err(|why| TransportError(format!("POST /run: {why}")))?;
        Ok((status, body))
    }
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
        let limits = ResponseLimits {
            max_health_bytes: 1024,
            ..ResponseLimits::default()
        };
        let huge = "x".repeat(4096);
        let app =
            axum::Router::new().route("/healthz", axum::routing::get(move || async move { huge }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = ProcessorClient::new(&Endpoint::Loopback(port), limits).unwrap();
        let error = client
            .wait_healthy(&"text/stats@1".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert!(
            error
                .message()
                .contains("larger than the 1024-byte /healthz limit; raise --max-health-bytes"),
            "{error}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn an_envelope_over_its_limit_is_refused_and_one_at_it_is_read() {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route(
            "/run",
            axum::routing::post(|body: String| async move { "x".repeat(body.len()) }),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let payload: RunPayload = serde_json::from_value(serde_json::json!({
            "schema": "v1",
            "execution_id": "e1",
            "ref": "text/stats@1",
            "mode": "mock",
            "inputs": {},
            "write_prefix": "/artifacts/o/e1/",
        }))
        .unwrap();
        let size = serde_json::to_vec(&payload).unwrap().len() as u64;
        let client = |max_envelope_bytes| {
            let limits = ResponseLimits {
                max_envelope_bytes,
                ..ResponseLimits::default()
            };
            ProcessorClient::new(&Endpoint::Loopback(port), limits).unwrap()
        };
        let (status, body) = client(size).post_run(&payload).await.unwrap();
        assert_eq!((status, body.len() as u64), (200, size));
        let refused = client(size - 1).post_run(&payload).await.unwrap_err();
        assert!(
            refused.0.contains(&format!(
                "larger than the {}-byte envelope limit; raise --max-envelope-bytes \
                 (PROCTOR_MAX_ENVELOPE_BYTES)",
                size - 1
            )),
            "{}",
            refused.0
        );
        server.abort();
    }
}
