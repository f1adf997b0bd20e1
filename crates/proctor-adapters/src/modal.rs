//! The Modal adapter: runs a processor on its Modal deployment over HTTPS and brings back
//! the same envelope the local adapter would.
//!
//! A run goes: take the expected digest (the registry entry's linux/amd64 pin; Modal runs
//! pinned images only, so `--build` and local image IDs are refused) → resolve the endpoint
//! with the deploy naming convention ([`Endpoint::resolve`] over `PROCTOR_MODAL_WORKSPACE`
//! and `PROCTOR_MODAL_ENVIRONMENT`, or the `PROCTOR_MODAL_BASE_URL` override for tests and
//! self-hosted gateways) → `GET /healthz`, which must name the processor and the pinned
//! digest, so a drifted deployment is `ERR_IMAGE_DRIFT` before it gets the payload →
//! `POST /run` with the payload the local adapter sends (or `/run-stream` with
//! `{"stream": true}`, the envelope coming in the `done` event) → the local adapter's
//! envelope checks (execution id, index path, output paths, digest). Everything after the
//! endpoint is resolved is bounded by the invocation's timeout, and the whole run races the
//! caller's cancellation token (`ERR_INTERRUPTED`; nothing is left on this host to clean).
//!
//! # Where the artifacts are
//!
//! The processor runs inside Modal and writes its outputs, outputs index and receipts
//! straight into the World's S3-compatible store (its deployment sets `PROCTOR_STORE_URL`
//! and attaches the store's credentials secret, see `proctor_deploy::generate_app`), under
//! the same world paths as a local run; never on this host: [`Invocation::staging`] is not
//! used. The adapter brings back the checked envelope; the engine then checks the evidence
//! in the store before it records a success. Input artifacts cannot reach a deployment yet
//! (the processor reads them from files), so a run with any
//! ([`Staging::input_files`](crate::Staging::input_files)) is refused with
//! `ERR_MODAL_INVOCATION` before any request.
//!
//! # Proxy auth and secrets
//!
//! Deployed endpoints require proxy auth: the adapter sends `Modal-Key` and `Modal-Secret`
//! from `MODAL_PROXY_TOKEN_ID` and `MODAL_PROXY_TOKEN_SECRET` ([`ProxyAuth`]). Without them
//! requests go out bare and Modal's 401 becomes `ERR_MODAL_INVOCATION` naming the
//! variables. The processor's own secrets live in Modal secrets (`proctor deploy` declares
//! them), so [`Invocation::env`] is never sent. Neither the token values nor the values in
//! [`Invocation::env`] are logged, and every error detail is redacted for both.
//!
//! # Failures
//!
//! Transport failures (refused connection, DNS), the timeout, redirects, bodies that are not
//! envelopes, and 4xx or 5xx answers that are not the processor's error envelope for this
//! execution (Modal's own 401, 404, 502, …) are `ERR_MODAL_INVOCATION`. The processor's
//! error envelope passes through whatever its HTTP status, as it does locally. A run is a
//! success only when a success envelope came back and passed every check.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use proctor_contract::{CanonError, Envelope, ErrorCode, Health, PinnedReference, Redactor};
use proctor_deploy::{Endpoint, ModalTarget, ProxyAuth};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::envelope_check::check_envelope;
use crate::transport::{
    Answer, BusyBackoff, MAX_HEALTH_BACKOFF, ResponseLimits, is_busy, reports_starting,
};
use crate::{Adapter, ImageSource, Invocation};

/// How many characters of an answer that is not an envelope an error quotes.
const QUOTED_CHARS: usize = 200;
/// The media type of a `/run-stream` answer.
const EVENT_STREAM: &str = "text/event-stream";

/// Runs processors on their Modal deployments (or a gateway standing in for them).
#[derive(Debug, Clone)]
pub struct ModalAdapter {
    target: ModalTarget,
    auth: Option<ProxyAuth>,
    http: reqwest::Client,
}

/// The Modal adapter's options (`--adapter-opts-json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModalOptions {
    /// Post to `/run-stream` and take the envelope from its `done` event.
    #[serde(default)]
    stream: bool,
}

impl ModalOptions {
    /// Parses the options; `null` means none. Unknown keys are refused.
    fn parse(value: &serde_json::Value) -> Result<ModalOptions, CanonError> {
        if value.is_null() {
            return Ok(ModalOptions::default());
        }
        serde_json::from_value(value.clone()).map_err(|error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("invalid modal adapter options: {error}; known: stream (true|false)"),
            )
        })
    }
}

impl ModalAdapter {
    /// Reads the deploy target (`PROCTOR_MODAL_*`, see [`ModalTarget::from_env`]) and the
    /// proxy-auth credentials ([`ProxyAuth::from_env`]) from `env`: the process environment,
    /// or a test's. An invalid target is `ERR_DEPLOY_TARGET`, half a credential pair
    /// `ERR_MISSING_SECRET`.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<ModalAdapter, CanonError> {
        ModalAdapter::new(ModalTarget::from_env(env)?, ProxyAuth::from_env(env)?)
    }

    /// An adapter for the processors deployed on `target`, authenticating with `auth` when
    /// given. Redirects are never followed, so the credentials go to the endpoint only.
    pub fn new(target: ModalTarget, auth: Option<ProxyAuth>) -> Result<ModalAdapter, CanonError> {
        let http = proctor_tls::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| {
                CanonError::new(
                    ErrorCode::ModalInvocation,
                    format!("cannot build the HTTP client: {error}"),
                )
            })?;
        Ok(ModalAdapter { target, auth, http })
    }

    /// The whole run, unless `cancel` fires first.
    async fn invoke_modal(
        &self,
        invocation: &Invocation,
        cancel: &CancellationToken,
    ) -> Result<Envelope, CanonError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(CanonError::new(
                ErrorCode::Interrupted,
                format!(
                    "{} was cancelled before its Modal deployment answered",
                    invocation.payload.processor_ref
                ),
            )),
            outcome = self.run(invocation) => outcome,
        }
    }

    /// Checks that need no network, then the conversation within the timeout.
    async fn run(&self, invocation: &Invocation) -> Result<Envelope, CanonError> {
        if let Some(input) = invocation.staging.input_files().first() {
            return Err(CanonError::new(
                ErrorCode::ModalInvocation,
                format!(
                    "input artifact `{}` is read from a file, which a Modal deployment cannot \
                     read yet; run with --adapter local",
                    input.path
                ),
            ));
        }
        let options = ModalOptions::parse(&invocation.options)?;
        let conversation = Conversation::new(self, invocation)?;
        tracing::info!(
            event = "modal.invoke",
            execution_id = %invocation.payload.execution_id,
            r#ref = %invocation.payload.processor_ref,
            app = %conversation.endpoint.names.app,
            endpoint = %conversation.redactor.redact(&conversation.endpoint.base_url),
            stream = options.stream,
            proxy_auth = self.auth.is_some(),
        );
        match tokio::time::timeout(invocation.timeout, conversation.run(options)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(conversation.failure(format!(
                "no envelope from {} within {:?}",
                conversation.endpoint.base_url, invocation.timeout
            ))),
        }
    }
}

impl Adapter for ModalAdapter {
    fn name(&self) -> &'static str {
        "modal"
    }

    fn invoke<'a>(
        &'a self,
        invocation: &'a Invocation,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Envelope, CanonError>> {
        Box::pin(self.invoke_modal(invocation, cancel))
    }
}

/// The digest the deployment must report: the entry's linux/amd64 pin, whatever the host's
/// platform (Modal runs amd64; the reference in [`ImageSource::Pinned`] is the host's pin,
/// for the local engine). Builds and local image IDs exist on this host only.
fn expected_digest(invocation: &Invocation) -> Result<String, CanonError> {
    let processor_ref = &invocation.payload.processor_ref;
    match &invocation.image {
        ImageSource::Build { .. } => Err(CanonError::new(
            ErrorCode::AdapterInvocation,
            format!(
                "--build is local-only: Modal runs the linux/amd64 image pinned for {processor_ref} \
                 in registry.yaml; run without --build, or use --adapter local"
            ),
        )),
        ImageSource::Local { image_id } => Err(CanonError::new(
            ErrorCode::AdapterInvocation,
            format!(
                "image {image_id} exists in the local engine only: Modal runs the linux/amd64 \
                 image pinned for {processor_ref} in registry.yaml"
            ),
        )),
        ImageSource::Pinned { .. } => {
            let pin = invocation.spec.image.platforms.amd64.as_deref();
            let pinned = pin
                .and_then(|reference| reference.parse::<PinnedReference>().ok())
                .filter(|pinned| !pinned.digest().is_placeholder());
            match pinned {
                Some(pinned) => Ok(pinned.digest().to_string()),
                None => {
                    let why = match pin {
                        None => "no linux/amd64 pin".to_owned(),
                        Some(reference) => {
                            format!("`{reference}` is not REGISTRY/REPO@sha256:<64 hex>")
                        }
                    };
                    Err(CanonError::new(
                        ErrorCode::ImageUnpinned,
                        format!(
                            "{processor_ref}: {why}; Modal runs pinned images only: push the image, \
                             pin it in registry.yaml (image.platforms.amd64) and deploy it with \
                             `proctor deploy --target modal --ref {processor_ref}`"
                        ),
                    ))
                }
            }
        }
    }
}

/// One run's exchange with its endpoint.
struct Conversation<'a> {
    adapter: &'a ModalAdapter,
    invocation: &'a Invocation,
    /// Masks the proxy-auth token and the invocation's environment values.
    redactor: Redactor,
    endpoint: Endpoint,
    expected_digest: String,
}

impl<'a> Conversation<'a> {
    /// Prepares the run of `invocation`: its expected digest (`--build`, local image IDs
    /// and missing pins are refused) and its endpoint (`ERR_DEPLOY_TARGET` without one).
    fn new(
        adapter: &'a ModalAdapter,
        invocation: &'a Invocation,
    ) -> Result<Conversation<'a>, CanonError> {
        let expected_digest = expected_digest(invocation)?;
        let endpoint = Endpoint::resolve(&invocation.payload.processor_ref, &adapter.target)?;
        let redactor = Redactor::new(
            adapter
                .auth
                .iter()
                .flat_map(ProxyAuth::secret_values)
                .chain(invocation.env.values().cloned()),
        );
        Ok(Conversation {
            adapter,
            invocation,
            redactor,
            endpoint,
            expected_digest,
        })
    }

    /// Health, then the payload, then the envelope checks.
    async fn run(&self, options: ModalOptions) -> Result<Envelope, CanonError> {
        self.check_health().await?;
        tracing::debug!(
            event = "modal.healthy",
            execution_id = %self.invocation.payload.execution_id,
        );
        let path = if options.stream {
            "/run-stream"
        } else {
            "/run"
        };
        let url = self.endpoint.url(path);
        // A busy answer (409, `ERR_PROCESSOR_BUSY`) is waited out and posted again, within
        // the run's timeout and cancellation.
        let mut backoff = BusyBackoff::default();
        loop {
            let (status, body) = self.post(&url, options).await?;
            if !is_busy(status, &body) {
                return self.judge(&url, status, &body);
            }
            backoff.pause(&self.invocation.payload.execution_id).await;
        }
    }

    /// Posts the payload to `url` once: the status and the envelope's bytes (the `done`
    /// event's data for a stream).
    async fn post(&self, url: &str, options: ModalOptions) -> Result<(u16, Vec<u8>), CanonError> {
        let mut request = self
            .request(reqwest::Method::POST, url)
            .json(&self.invocation.payload);
        if options.stream {
            request = request.header(ACCEPT, EVENT_STREAM);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.failure(format!("POST {url}: {}", error_chain(&error))))?;
        let status = response.status().as_u16();
        let body = if options.stream && is_success(status) {
            let media_type = media_type(&response);
            if !media_type.starts_with(EVENT_STREAM) {
                return Err(self.failure(format!(
                    "POST {url} answered HTTP {status} with `{media_type}`, not {EVENT_STREAM}"
                )));
            }
            self.done_event(response, url).await?
        } else {
            self.invocation
                .limits
                .read_body(response, Answer::Envelope)
                .await
                .map_err(|why| self.failure(format!("POST {url}: {why}")))?
        };
        Ok((status, body))
    }

    /// `GET /healthz`: the endpoint must answer as the processor, started from the pin.
    /// A processor still `starting` (its set-up running) is asked again, within the run's
    /// timeout and cancellation.
    async fn check_health(&self) -> Result<(), CanonError> {
        let url = self.endpoint.url("/healthz");
        let (status, body) = loop {
            let response = self
                .request(reqwest::Method::GET, &url)
                .send()
                .await
                .map_err(|error| self.failure(format!("GET {url}: {}", error_chain(&error))))?;
            let status = response.status().as_u16();
            let body = self
                .invocation
                .limits
                .read_body(response, Answer::Health)
                .await
                .map_err(|why| self.failure(format!("GET {url}: {why}")))?;
            if is_success(status) || !reports_starting(&body) {
                break (status, body);
            }
            tokio::time::sleep(MAX_HEALTH_BACKOFF).await;
        };
        if !is_success(status) {
            return Err(self.refusal("GET", &url, status, &body));
        }
        let health: Health = serde_json::from_slice(&body).map_err(|error| {
            self.failure(format!(
                "GET {url}: not a health document ({error}): {}",
                quote(&body)
            ))
        })?;
        if !health.ok {
            return Err(self.failure(format!("GET {url}: the processor reports ok=false")));
        }
        let expected_ref = &self.invocation.payload.processor_ref;
        if &health.processor_ref != expected_ref || health.image_digest != self.expected_digest {
            return Err(self.redacted(CanonError::new(
                ErrorCode::ImageDrift,
                format!(
                    "{url} serves {} from {}, the pin is {expected_ref} from {}; redeploy with \
                     `proctor deploy --target modal --ref {expected_ref}`",
                    health.processor_ref, health.image_digest, self.expected_digest
                ),
            )));
        }
        Ok(())
    }

    /// Reads a `/run-stream` answer up to its `done` event and returns that event's data;
    /// `progress` events are logged.
    async fn done_event(
        &self,
        mut response: reqwest::Response,
        url: &str,
    ) -> Result<Vec<u8>, CanonError> {
        let mut parser = SseParser::new(self.invocation.limits);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.failure(format!("POST {url}: {}", error_chain(&error))))?
        {
            let events = parser
                .feed(&chunk)
                .map_err(|why| self.failure(format!("POST {url}: {why}")))?;
            for sse in events {
                match sse.name.as_str() {
                    "done" => return Ok(sse.data.into_bytes()),
                    "progress" => tracing::debug!(
                        event = "modal.progress",
                        execution_id = %self.invocation.payload.execution_id,
                        data = %self.redactor.redact(&sse.data),
                    ),
                    _ => {}
                }
            }
        }
        Err(self.failure(format!(
            "POST {url}: the event stream ended without a done event"
        )))
    }

    /// The verdict on an answer: the processor's error envelope passes through at any
    /// status; anything else must be a 2xx passing the envelope checks.
    fn judge(&self, url: &str, status: u16, body: &[u8]) -> Result<Envelope, CanonError> {
        let payload = &self.invocation.payload;
        if !is_success(status) {
            return match Envelope::from_slice(body) {
                Ok(envelope @ Envelope::Error(_))
                    if envelope.execution_id() == payload.execution_id =>
                {
                    Ok(envelope)
                }
                _ => Err(self.refusal("POST", url, status, body)),
            };
        }
        check_envelope(
            status,
            body,
            payload,
            &self.expected_digest,
            ErrorCode::ModalInvocation,
        )
        .map_err(|error| {
            self.redacted(CanonError::new(
                error.code(),
                format!("POST {url}: {}", error.detail()),
            ))
        })
    }

    /// A request to `url`, with the proxy-auth headers when configured.
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.adapter.http.request(method, url);
        match &self.adapter.auth {
            Some(auth) => auth.apply(request),
            None => request,
        }
    }

    /// `ERR_MODAL_INVOCATION` with a redacted detail.
    fn failure(&self, detail: String) -> CanonError {
        self.redacted(CanonError::new(ErrorCode::ModalInvocation, detail))
    }

    /// `error` with its detail redacted.
    fn redacted(&self, error: CanonError) -> CanonError {
        CanonError::new(error.code(), self.redactor.redact(error.detail()))
    }

    /// The error for a non-2xx answer that is not the processor's: status, quoted body and
    /// what to do about it.
    fn refusal(&self, method: &str, url: &str, status: u16, body: &[u8]) -> CanonError {
        let processor_ref = &self.invocation.payload.processor_ref;
        let hint = match (status, self.adapter.auth.is_some()) {
            (401 | 403, false) => format!(
                "; the endpoint requires proxy auth: set {} and {}",
                ProxyAuth::ENV_TOKEN_ID,
                ProxyAuth::ENV_TOKEN_SECRET
            ),
            (401 | 403, true) => format!(
                "; the proxy-auth token in {} and {} was refused",
                ProxyAuth::ENV_TOKEN_ID,
                ProxyAuth::ENV_TOKEN_SECRET
            ),
            (404, _) => format!(
                "; is {processor_ref} deployed as app {}? (`proctor deploy --target modal --ref \
                 {processor_ref}`)",
                self.endpoint.names.app
            ),
            _ => String::new(),
        };
        self.failure(format!(
            "{method} {url} answered HTTP {status}: {}{hint}",
            quote(body)
        ))
    }
}

/// Whether `status` is 2xx.
fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The answer's `Content-Type`, or `(none)`.
fn media_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .map_or("(none)".to_owned(), |value| {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        })
}

/// The first [`QUOTED_CHARS`] characters of a body, on one line.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return "(empty body)".to_owned();
    }
    let line = words.join(" ");
    match line.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// An error and its sources, `outer: inner: …` (reqwest's own message names only the URL).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SseEvent {
    /// The `event:` field, `message` when absent.
    name: String,
    /// The `data:` lines, joined by newlines.
    data: String,
}

/// Splits a `text/event-stream` body into events as chunks arrive: `event:` and `data:`
/// fields, comments and other fields ignored, lines ending in LF or CRLF, an event
/// dispatched at a blank line.
#[derive(Debug)]
struct SseParser {
    /// Bounds one event by the envelope limit.
    limits: ResponseLimits,
    /// Bytes of a line not yet complete.
    pending: Vec<u8>,
    /// The current event's name, if given.
    name: Option<String>,
    /// The current event's data lines.
    data: Vec<String>,
    /// Bytes held by `data`.
    data_len: usize,
}

impl SseParser {
    /// A parser whose events are at most the envelope limit of `limits`.
    fn new(limits: ResponseLimits) -> SseParser {
        SseParser {
            limits,
            pending: Vec::new(),
            name: None,
            data: Vec::new(),
            data_len: 0,
        }
    }

    /// Feeds a chunk; returns the events it completed. An event over the envelope limit,
    /// or a line that is not UTF-8, is refused.
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let raw = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(raw)
                .map_err(|error| format!("event stream line is not UTF-8: {error}"))?;
            if line.is_empty() {
                let name = self.name.take().unwrap_or_else(|| "message".to_owned());
                let data = std::mem::take(&mut self.data);
                self.data_len = 0;
                if !data.is_empty() {
                    events.push(SseEvent {
                        name,
                        data: data.join("\n"),
                    });
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.name = Some(value.to_owned()),
                "data" => {
                    self.data_len = self.data_len.saturating_add(value.len() + 1);
                    self.data.push(value.to_owned());
                }
                _ => {}
            }
        }
        let held = u64::try_from(self.pending.len().saturating_add(self.data_len));
        if held.map_or(true, |held| held > self.limits.max_envelope_bytes) {
            return Err(format!(
                "event stream event: {}",
                self.limits.over_limit(Answer::Envelope)
            ));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use proctor_contract::Mode;
    use serde_json::{Value, json};

    use super::*;

    const PIN_HEX: &str = "ab";

    fn digest() -> String {
        format!("sha256:{}", PIN_HEX.repeat(32))
    }

    fn invocation(image: ImageSource, amd64: Option<String>) -> Invocation {
        let mut invocation = crate::testing::invocation(Mode::Mock);
        invocation.spec.image.platforms.amd64 = amd64;
        invocation.image = image;
        invocation.env = BTreeMap::from([("OPENAI_API_KEY".into(), "sk-processor-secret".into())]);
        invocation
    }

    fn pinned() -> Invocation {
        invocation(
            ImageSource::Pinned {
                reference: format!("r.io/x@sha256:{}", "cd".repeat(32))
                    .parse()
                    .unwrap(),
            },
            Some(format!("127.0.0.1:5000/proctor/text-stats@{}", digest())),
        )
    }

    fn conversation<'a>(adapter: &'a ModalAdapter, invocation: &'a Invocation) -> Conversation<'a> {
        Conversation::new(adapter, invocation).unwrap()
    }

    fn adapter(auth: bool) -> ModalAdapter {
        let target = ModalTarget {
            workspace: Some("acme".into()),
            ..ModalTarget::default()
        };
        let auth = auth.then(|| ProxyAuth::new("wk-token-id-value", "ws-token-secret-value"));
        ModalAdapter::new(target, auth).unwrap()
    }

    #[tokio::test]
    async fn input_artifacts_are_refused_before_any_request() {
        let mut invocation = pinned();
        let staging = crate::Staging::create(&invocation.payload.execution_id)
            .unwrap()
            .with_input_files(vec![crate::InputFile {
                path: proctor_contract::WorldPath::parse("/artifacts/inputs/b3:00/a.txt").unwrap(),
                source: "/world/inputs/b3:00/a.txt".into(),
            }]);
        invocation.staging = std::sync::Arc::new(staging);
        // No endpoint is reachable: the refusal comes before any request.
        let error = adapter(true)
            .invoke(&invocation, &CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::ModalInvocation);
        assert!(
            error.message().contains("`/artifacts/inputs/b3:00/a.txt`"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_run_is_interrupted_before_any_request() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let error = adapter(true).invoke(&pinned(), &cancel).await.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Interrupted);
        assert_eq!(
            error.detail(),
            "text/stats@1 was cancelled before its Modal deployment answered"
        );
    }

    #[tokio::test]
    async fn a_starting_processor_is_asked_again_and_a_busy_answer_posted_again() {
        let health = json!({"ok": true, "image_digest": digest(), "ref": "text/stats@1"});
        let mut starting = health.clone();
        starting["state"] = json!("starting");
        let health_asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let asked = std::sync::Arc::clone(&health_asked);
        let busy = json!({
            "status": "error",
            "execution_id": "e1",
            "error": {"code": "ERR_PROCESSOR_BUSY", "message": "processor busy"},
            "meta": {"duration_ms": 0, "mode": "mock"}
        });
        let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&posts);
        let app = axum::Router::new()
            .route(
                "/healthz",
                axum::routing::get(move || {
                    let (status, body) =
                        if asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                            (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                starting.clone(),
                            )
                        } else {
                            (axum::http::StatusCode::OK, health.clone())
                        };
                    async move { (status, axum::Json(body)) }
                }),
            )
            .route(
                "/run",
                axum::routing::post(move || {
                    let first_two = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2;
                    let (status, body) = if first_two {
                        (axum::http::StatusCode::CONFLICT, busy.clone())
                    } else {
                        (axum::http::StatusCode::BAD_GATEWAY, error_envelope("e1"))
                    };
                    async move { (status, axum::Json(body)) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let target = ModalTarget {
            base_url: Some(format!("http://127.0.0.1:{port}")),
            ..ModalTarget::default()
        };
        let adapter = ModalAdapter::new(target, None).unwrap();
        let mut invocation = pinned();
        invocation.payload.execution_id = "e1".to_owned();
        let answer = adapter
            .invoke(&invocation, &CancellationToken::new())
            .await
            .unwrap();
        let Envelope::Error(error) = answer else {
            panic!("expected the provider's error envelope, got {answer:?}")
        };
        assert_eq!(error.error.code, ErrorCode::Provider);
        assert_eq!(health_asked.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 3);
        server.abort();
    }

    fn bytes(value: &Value) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    fn error_envelope(execution_id: &str) -> Value {
        json!({
            "status": "error",
            "execution_id": execution_id,
            "error": {"code": "ERR_PROVIDER", "message": "provider failed: upstream 500"},
            "meta": {"duration_ms": 3, "mode": "mock"}
        })
    }

    #[test]
    fn the_expected_digest_is_the_amd64_pin() {
        assert_eq!(expected_digest(&pinned()).unwrap(), digest());
    }

    #[test]
    fn no_workspace_and_no_base_url_is_no_deploy_target() {
        let adapter = ModalAdapter::from_env(&BTreeMap::new()).unwrap();
        let invocation = pinned();
        let err = Conversation::new(&adapter, &invocation).err().unwrap();
        assert_eq!(err.code(), ErrorCode::DeployTarget);
    }

    #[test]
    fn builds_local_images_and_missing_pins_are_refused() {
        let build = invocation(
            ImageSource::Build {
                workspace_root: "w".into(),
            },
            None,
        );
        let err = expected_digest(&build).unwrap_err();
        assert_eq!(err.code(), ErrorCode::AdapterInvocation);
        assert!(err.message().contains("--build is local-only"), "{err}");

        let local = invocation(
            ImageSource::Local {
                image_id: "sha256:ef".into(),
            },
            None,
        );
        let err = expected_digest(&local).unwrap_err();
        assert_eq!(err.code(), ErrorCode::AdapterInvocation);
        assert!(err.message().contains("local engine only"), "{err}");

        for amd64 in [None, Some("r/x:latest".to_owned())] {
            let unpinned = invocation(
                ImageSource::Pinned {
                    reference: format!("r.io/x@sha256:{}", "cd".repeat(32))
                        .parse()
                        .unwrap(),
                },
                amd64,
            );
            let err = expected_digest(&unpinned).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ImageUnpinned);
            assert!(err.message().starts_with("image not pinned: text/stats@1"));
            assert!(!err.message().contains("--build"), "{err}");
        }
    }

    #[test]
    fn options_are_strict() {
        assert_eq!(
            ModalOptions::parse(&json!(null)).unwrap(),
            ModalOptions::default()
        );
        assert!(
            ModalOptions::parse(&json!({"stream": true}))
                .unwrap()
                .stream
        );
        for bad in [json!({"labels": {}}), json!({"stream": "yes"}), json!([1])] {
            let err = ModalOptions::parse(&bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::AdapterInvocation);
            assert!(
                err.message().contains("invalid modal adapter options"),
                "{err}"
            );
        }
    }

    #[test]
    fn processor_error_envelopes_pass_through_at_any_status() {
        let adapter = adapter(true);
        let invocation = pinned();
        let conversation = conversation(&adapter, &invocation);
        for status in [200, 400, 502] {
            let envelope = conversation
                .judge("u", status, &bytes(&error_envelope("e1")))
                .unwrap();
            assert_eq!(
                serde_json::to_value(&envelope).unwrap(),
                error_envelope("e1")
            );
        }
        let err = conversation
            .judge("u", 502, &bytes(&error_envelope("e2")))
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ModalInvocation);
    }

    #[test]
    fn other_non_2xx_answers_are_modal_invocation_errors_with_a_hint() {
        let invocation = pinned();
        let bare = adapter(false);
        let err = conversation(&bare, &invocation).refusal(
            "GET",
            "https://x/healthz",
            401,
            b"modal-http: missing credentials for proxy authorization",
        );
        assert_eq!(err.code(), ErrorCode::ModalInvocation);
        assert_eq!(
            err.message(),
            "modal invocation failed: GET https://x/healthz answered HTTP 401: modal-http: \
             missing credentials for proxy authorization; the endpoint requires proxy auth: set \
             MODAL_PROXY_TOKEN_ID and MODAL_PROXY_TOKEN_SECRET"
        );
        let authed = adapter(true);
        let conversation = conversation(&authed, &invocation);
        let err = conversation.judge("u", 404, b"").unwrap_err();
        assert!(
            err.message()
                .contains("(empty body); is text/stats@1 deployed as app proctor-text-stats-v1?"),
            "{err}"
        );
        let err = conversation
            .judge("u", 503, b"<html>\n  <b>Service Unavailable</b>\n</html>")
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ModalInvocation);
        assert!(
            err.message()
                .ends_with("HTTP 503: <html> <b>Service Unavailable</b> </html>"),
            "{err}"
        );
    }

    #[test]
    fn answers_get_the_local_checks_under_the_modal_code() {
        let adapter = adapter(true);
        let invocation = pinned();
        let conversation = conversation(&adapter, &invocation);
        let err = conversation.judge("u", 200, b"<html>").unwrap_err();
        assert_eq!(err.code(), ErrorCode::ModalInvocation);
        assert!(err.message().contains("without a valid envelope"), "{err}");
        let success = |image_digest: &str, index_path: &str| {
            bytes(&json!({
                "status": "success",
                "execution_id": "e1",
                "outputs": [],
                "index_path": index_path,
                "meta": {"image_digest": image_digest, "env_fingerprint": "f", "duration_ms": 1, "mode": "mock"}
            }))
        };
        let good = success(&digest(), "/artifacts/o/e1/outputs.json");
        assert!(matches!(
            conversation.judge("u", 200, &good),
            Ok(Envelope::Success(_))
        ));
        let moved = success(&digest(), "/artifacts/x/outputs.json");
        let err = conversation.judge("u", 200, &moved).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ModalInvocation);
        assert!(err.message().contains("invalid index_path root"), "{err}");
        let drifted = success("sha256:ef", "/artifacts/o/e1/outputs.json");
        let err = conversation.judge("u", 200, &drifted).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ImageDrift);
        let err = conversation.judge("u", 500, &good).unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::ModalInvocation,
            "a success needs a 2xx"
        );
    }

    #[test]
    fn details_never_carry_token_or_processor_secrets() {
        let adapter = adapter(true);
        let invocation = pinned();
        let conversation = conversation(&adapter, &invocation);
        let err = conversation
            .judge(
                "u",
                500,
                b"echo ws-token-secret-value wk-token-id-value sk-processor-secret",
            )
            .unwrap_err();
        let message = err.message();
        for secret in [
            "ws-token-secret-value",
            "wk-token-id-value",
            "sk-processor-secret",
        ] {
            assert!(!message.contains(secret), "{message}");
        }
        assert!(message.contains("[REDACTED]"), "{message}");
    }

    #[test]
    fn long_bodies_are_quoted_short() {
        let quoted = quote("é".repeat(500).as_bytes());
        assert_eq!(quoted.chars().count(), QUOTED_CHARS + 1);
        assert!(quoted.ends_with('…'));
        assert_eq!(quote(b" \n "), "(empty body)");
    }

    #[test]
    fn sse_events_are_split_across_chunks() {
        let stream = b": keep-alive\n\nevent: progress\ndata: {\"stage\":\"accepted\"}\n\nevent: done\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:plain\n\n";
        for split in [1, 7, stream.len()] {
            let mut parser = SseParser::new(ResponseLimits::default());
            let events: Vec<SseEvent> = stream
                .chunks(split)
                .flat_map(|chunk| parser.feed(chunk).unwrap())
                .collect();
            assert_eq!(
                events,
                [
                    SseEvent {
                        name: "progress".into(),
                        data: "{\"stage\":\"accepted\"}".into()
                    },
                    SseEvent {
                        name: "done".into(),
                        data: "{\"a\":\n1}".into()
                    },
                    SseEvent {
                        name: "message".into(),
                        data: "plain".into()
                    },
                ],
                "chunks of {split}"
            );
        }
    }

    #[test]
    fn sse_refuses_oversized_events_and_bad_text() {
        let limits = ResponseLimits {
            max_envelope_bytes: 64,
            ..ResponseLimits::default()
        };
        let mut parser = SseParser::new(limits);
        assert!(parser.feed(&[b'a'; 64]).unwrap().is_empty());
        let mut parser = SseParser::new(limits);
        let error = parser.feed(&[b'a'; 65]).unwrap_err();
        assert!(
            error.contains("larger than the 64-byte envelope limit; raise --max-envelope-bytes"),
            "{error}"
        );
        let mut parser = SseParser::new(limits);
        assert!(
            parser
                .feed(b"data: \xff\n")
                .unwrap_err()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn error_chains_name_the_cause() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped = Wrapper(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(
            error_chain(&wrapped),
            "error sending request: connection refused"
        );
    }
}
