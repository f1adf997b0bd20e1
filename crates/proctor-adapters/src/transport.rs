//! HTTP to a processor, over its unix socket (`mock`) or a loopback port (`real`), and the
//! bounded body reading every adapter uses.

use std::path::PathBuf;
use std::time::Duration;

use proctor_contract::{
    CanonError, Envelope, ErrorCode, Health, HealthState, ProcessorRef, RunPayload,
};

/// Pause between two `/healthz` attempts while a processor is expected to come up: most
/// answer within tens of milliseconds of their start, and an attempt costs little.
const FAST_HEALTH_POLL: Duration = Duration::from_millis(4);
/// How long the fast poll lasts; after it the pause doubles, up to [`MAX_HEALTH_BACKOFF`].
const FAST_HEALTH_WINDOW: Duration = Duration::from_secs(1);
/// Longest pause between two `/healthz` attempts.
pub(crate) const MAX_HEALTH_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait for one `/healthz` answer before trying again.
const HEALTH_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// First pause before posting again a payload a processor answered busy; it doubles up
/// to [`MAX_BUSY_BACKOFF`].
const FIRST_BUSY_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause before posting again a payload a processor answered busy.
const MAX_BUSY_BACKOFF: Duration = Duration::from_millis(200);

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

/// What one `POST /run` got back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RunAnswer {
    /// The processor answered the run: the status and the body (at most the envelope limit).
    Answered {
        /// The HTTP status.
        status: u16,
        /// The body, an envelope if the processor keeps the contract.
        body: Vec<u8>,
    },
    /// HTTP 409 with `ERR_PROCESSOR_BUSY`: every run slot was taken (or set-up had not
    /// ended); nothing ran, the same payload may be posted again or elsewhere.
    Busy,
}

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
        let builder = proctor_tls::http_client_builder().no_proxy();
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
    /// until the processor answers as `expected`, ready or busy, and returns that answer
    /// (its concurrency says how many runs it serves at once). It keeps polling while the
    /// processor is `starting` or not answering, and fails at once on `setup_failed`, with
    /// the log tail the processor reported. Unbounded: the caller bounds it (run timeout,
    /// container exit).
    pub(crate) async fn wait_healthy(&self, expected: &ProcessorRef) -> Result<Health, CanonError> {
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
            if let Ok(response) = answer {
                let success = response.status().is_success();
                let body = self.limits.read_body(response, Answer::Health).await;
                match (success, body) {
                    (true, Err(why)) => {
                        return Err(CanonError::new(
                            ErrorCode::AdapterInvocation,
                            format!("/healthz: cannot read the answer: {why}"),
                        ));
                    }
                    (true, Ok(bytes)) => {
                        let health = check_health(&bytes, expected)?;
                        if health.state != HealthState::Starting {
                            return Ok(health);
                        }
                    }
                    (false, Ok(bytes)) => refuse_failed_setup(&bytes, expected)?,
                    (false, Err(_)) => {}
                }
            }
            tokio::time::sleep(backoff).await;
            if started.elapsed() > FAST_HEALTH_WINDOW {
                backoff = (backoff * 2).min(MAX_HEALTH_BACKOFF);
            }
        }
    }

    /// Posts the payload to `/run` until the processor takes it: a busy answer is followed
    /// by a short pause ([`BusyBackoff`]) and the same payload again, never by a failure. Unbounded: the caller bounds it (run
    /// timeout, cancellation, container exit). Returns the status and the body.
    pub(crate) async fn post_run(
        &self,
        payload: &RunPayload,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let mut backoff = BusyBackoff::default();
        loop {
            match self.try_post_run(payload).await? {
                RunAnswer::Answered { status, body } => return Ok((status, body)),
                RunAnswer::Busy => backoff.pause(&payload.execution_id).await,
            }
        }
    }

    /// Posts the payload to `/run` once: the answer, or [`RunAnswer::Busy`] when the
    /// processor has no free slot (a caller with other containers may try one of them).
    pub(crate) async fn try_post_run(
        &self,
        payload: &RunPayload,
    ) -> Result<RunAnswer, TransportError> {
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
        if is_busy(status, &body) {
            return Ok(RunAnswer::Busy);
        }
        Ok(RunAnswer::Answered { status, body })
    }
}

impl ProcessorClient {
    /// Sends `GET path`, or `POST path` with `body` as `(content type, bytes)`, and reads
    /// the whole answer whatever its status — bounded as a `/healthz` answer for
    /// `/healthz`, as an envelope otherwise — for a caller that judges answers itself.
    pub(crate) async fn exchange(
        &self,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let url = format!("{}{path}", self.base_url);
        let request = match body {
            None => self.http.get(url),
            Some((content_type, bytes)) => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
        };
        let failed = |why: String| TransportError(format!("{path}: {why}"));
        let response = request
            .send()
            .await
            .map_err(|error| failed(error.to_string()))?;
        let status = response.status().as_u16();
        let answer = match path {
            "/healthz" => Answer::Health,
            _ => Answer::Envelope,
        };
        let body = self
            .limits
            .read_body(response, answer)
            .await
            .map_err(failed)?;
        Ok((status, body))
    }
}

/// The pauses before posting again a payload a processor answered busy: doubling from
/// [`FIRST_BUSY_BACKOFF`] to [`MAX_BUSY_BACKOFF`].
#[derive(Debug)]
pub(crate) struct BusyBackoff(Duration);

impl Default for BusyBackoff {
    fn default() -> BusyBackoff {
        BusyBackoff(FIRST_BUSY_BACKOFF)
    }
}

impl BusyBackoff {
    /// Waits the next pause before the run `execution_id` is posted again.
    pub(crate) async fn pause(&mut self, execution_id: &str) {
        tracing::info!(
            event = "processor.busy",
            execution_id = %execution_id,
            retry_in_ms = self.0.as_millis() as u64,
        );
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_BUSY_BACKOFF);
    }
}

/// Whether a `/run` answer is the busy one: 409 with an `ERR_PROCESSOR_BUSY` envelope.
pub(crate) fn is_busy(status: u16, body: &[u8]) -> bool {
    status == 409
        && matches!(
            Envelope::from_slice(body),
            Ok(Envelope::Error(error)) if error.error.code == ErrorCode::ProcessorBusy
        )
}

/// Whether a `/healthz` answer is a health document in the state `starting`.
pub(crate) fn reports_starting(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Health>(bytes)
        .is_ok_and(|health| health.state == HealthState::Starting)
}

/// Fails on a non-success `/healthz` answer that reports `setup_failed` for `expected`,
/// quoting its log tail; any other (`starting`, or not a health document) is waited out.
fn refuse_failed_setup(bytes: &[u8], expected: &ProcessorRef) -> Result<(), CanonError> {
    match serde_json::from_slice::<Health>(bytes) {
        Ok(health)
            if health.state == HealthState::SetupFailed && &health.processor_ref == expected =>
        {
            Err(setup_failed(&health))
        }
        _ => Ok(()),
    }
}

/// The error for a processor whose set-up failed, with the log tail it reported.
fn setup_failed(health: &Health) -> CanonError {
    CanonError::new(
        ErrorCode::AdapterInvocation,
        format!(
            "/healthz: {} reports setup_failed; last log lines:\n{}",
            health.processor_ref,
            health.log_tail.join("\n")
        ),
    )
}

/// Checks a successful `/healthz` answer: a [`Health`] document naming the expected
/// processor, in a state that answers 200 or `starting`.
fn check_health(bytes: &[u8], expected: &ProcessorRef) -> Result<Health, CanonError> {
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
    if health.state == HealthState::SetupFailed {
        return Err(setup_failed(&health));
    }
    Ok(health)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_must_name_the_expected_processor() {
        let expected: ProcessorRef = "text/stats@1".parse().unwrap();
        let good = br#"{"ok":true,"image_digest":"sha256:ab","ref":"text/stats@1"}"#;
        assert_eq!(
            check_health(good, &expected).unwrap(),
            Health::ready("sha256:ab", expected.clone())
        );
        let other = br#"{"ok":true,"image_digest":"sha256:ab","ref":"llm/litellm@1"}"#;
        let not_ok = br#"{"ok":false,"image_digest":"sha256:ab","ref":"text/stats@1"}"#;
        for bytes in [&other[..], &not_ok[..], b"<html>"] {
            let err = check_health(bytes, &expected).unwrap_err();
            assert_eq!(err.code(), ErrorCode::AdapterInvocation);
            assert!(err.message().contains("/healthz"), "{err}");
        }
    }

    /// Serves `router` on an ephemeral loopback port; a client for it.
    async fn serve(router: axum::Router) -> (ProcessorClient, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let client =
            ProcessorClient::new(&Endpoint::Loopback(port), ResponseLimits::default()).unwrap();
        (client, server)
    }

    /// A handler answering the `n`th request with `answers[n]` (the last one after that).
    fn scripted(
        answers: Vec<(u16, String)>,
    ) -> impl Fn() -> std::future::Ready<(axum::http::StatusCode, String)> + Clone {
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        move || {
            let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, body) = answers[n.min(answers.len() - 1)].clone();
            std::future::ready((axum::http::StatusCode::from_u16(status).unwrap(), body))
        }
    }

    fn health(state: HealthState, concurrency: u32, log_tail: &[&str]) -> String {
        let health = Health {
            state,
            concurrency: concurrency.try_into().unwrap(),
            log_tail: log_tail.iter().map(|line| (*line).to_owned()).collect(),
            ..Health::ready("sha256:ab", "text/stats@1".parse().unwrap())
        };
        serde_json::to_string(&health).unwrap()
    }

    fn payload() -> RunPayload {
        serde_json::from_value(serde_json::json!({
            "schema": "v1",
            "execution_id": "e1",
            "ref": "text/stats@1",
            "mode": "mock",
            "inputs": {},
            "write_prefix": "/artifacts/o/e1/",
        }))
        .unwrap()
    }

    fn error_envelope(code: ErrorCode) -> String {
        let error = CanonError::new(code, "");
        Envelope::error("e1", &error, proctor_contract::Mode::Mock, 0, None).to_json_line()
    }

    #[tokio::test]
    async fn health_is_awaited_through_starting_and_reports_state_and_concurrency() {
        let answers = vec![
            (503, "not up yet".to_owned()),
            (503, health(HealthState::Starting, 3, &[])),
            (200, health(HealthState::Starting, 3, &[])),
            (200, health(HealthState::Busy, 3, &[])),
        ];
        let router = axum::Router::new().route("/healthz", axum::routing::get(scripted(answers)));
        let (client, server) = serve(router).await;
        let health = client
            .wait_healthy(&"text/stats@1".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(
            (health.state, health.concurrency.get()),
            (HealthState::Busy, 3)
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_failed_setup_fails_the_wait_at_once_with_its_log_tail() {
        let tail = ["loading weights", "set-up failed: [REDACTED] answered 401"];
        let answers = vec![
            (503, health(HealthState::Starting, 1, &[])),
            (503, health(HealthState::SetupFailed, 1, &tail)),
            (200, health(HealthState::Ready, 1, &[])),
        ];
        let router = axum::Router::new().route("/healthz", axum::routing::get(scripted(answers)));
        let (client, server) = serve(router).await;
        let error = client
            .wait_healthy(&"text/stats@1".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert!(
            error.message().ends_with(
                "/healthz: text/stats@1 reports setup_failed; last log lines:\n\
                 loading weights\nset-up failed: [REDACTED] answered 401"
            ),
            "{error}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_busy_answer_is_typed_and_post_run_posts_again_until_served() {
        let answers = vec![
            (409, error_envelope(ErrorCode::ProcessorBusy)),
            (409, error_envelope(ErrorCode::ProcessorBusy)),
            (409, error_envelope(ErrorCode::ProcessorBusy)),
            (200, "served".to_owned()),
        ];
        let router = axum::Router::new().route("/run", axum::routing::post(scripted(answers)));
        let (client, server) = serve(router).await;
        assert_eq!(
            client.try_post_run(&payload()).await.unwrap(),
            RunAnswer::Busy
        );
        let (status, body) = client.post_run(&payload()).await.unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"served"[..]));
        server.abort();
    }

    #[tokio::test]
    async fn a_409_that_is_not_busy_is_an_answer() {
        let conflict = error_envelope(ErrorCode::Inputs);
        let answers = vec![(409, conflict.clone())];
        let router = axum::Router::new().route("/run", axum::routing::post(scripted(answers)));
        let (client, server) = serve(router).await;
        let answer = client.try_post_run(&payload()).await.unwrap();
        assert_eq!(
            answer,
            RunAnswer::Answered {
                status: 409,
                body: conflict.into_bytes()
            }
        );
        server.abort();
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
