//! One run, from request bytes to envelope: validate the payload, call the provider, check
//! its outputs, then write outputs, index and receipts — all or nothing — and answer.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use axum::http::StatusCode;
use futures_util::FutureExt;
use proctor_contract::{
    CanonError, Envelope, ErrorCode, Health, HealthState, Mode, OutputsIndex, PAYLOAD_SCHEMA,
    Receipt, Redactor, RunPayload, SuccessMeta, WorldPath, WritePrefix, cid, env_fingerprint,
    input_artifacts, inputs_hash,
};
use proctor_store::ArtifactStore;
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::artifacts::{PlannedFile, check_layout, write_evidence, write_evidence_to_store};
use crate::config::{ENV_IMAGE_DIGEST, ENV_STORE_URL};
use crate::input_artifacts::ArtifactReader;
use crate::setup::{Readiness, SetupLog};
use crate::{Context, ProcessorDefinition, ProviderError, ServerConfig};

/// The store credentials an error must never carry.
const STORE_SECRETS: [&str; 2] = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];
/// Longest accepted execution id.
const MAX_EXECUTION_ID_BYTES: usize = 128;
/// Longest detail of an error envelope's message, in bytes, counted after redaction.
const MAX_ERROR_DETAIL_BYTES: usize = 4096;
/// Longest line of a failed set-up's log tail, in bytes, counted after redaction.
const MAX_SETUP_LINE_BYTES: usize = 512;

/// What a run answers: an HTTP status and the envelope that is the body.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// 200 on success; 4xx/5xx with an error envelope otherwise.
    pub(crate) status: StatusCode,
    /// The envelope.
    pub(crate) envelope: Envelope,
}

/// Steps of a run, reported as SSE `progress` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The payload was valid.
    Accepted,
    /// The provider was called.
    ProviderStarted,
    /// The provider returned outputs.
    ProviderFinished,
    /// Outputs, index and receipts are on disk.
    OutputsWritten,
}

impl Stage {
    /// The stage's name in progress events.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stage::Accepted => "accepted",
            Stage::ProviderStarted => "provider_started",
            Stage::ProviderFinished => "provider_finished",
            Stage::OutputsWritten => "outputs_written",
        }
    }
}

/// A payload that passed every check, ready to run.
#[derive(Debug)]
pub(crate) struct Accepted {
    payload: RunPayload,
    prefix: WritePrefix,
    started: Instant,
    image_digest: String,
}

impl Accepted {
    /// The execution's id.
    pub(crate) fn execution_id(&self) -> &str {
        &self.payload.execution_id
    }

    /// The mode requested.
    pub(crate) fn mode(&self) -> Mode {
        self.payload.mode
    }

    /// When the request arrived.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }
}

/// A failed step: the status to answer with and the canonical error.
struct Failure {
    status: StatusCode,
    error: CanonError,
}

impl Failure {
    fn new(status: StatusCode, error: CanonError) -> Failure {
        Failure { status, error }
    }

    fn inputs(status: StatusCode, detail: impl Into<String>) -> Failure {
        Failure::new(status, CanonError::new(ErrorCode::Inputs, detail))
    }
}

/// Runs payloads for one processor.
#[derive(Debug)]
pub(crate) struct Runner {
    config: ServerConfig,
    definition: ProcessorDefinition,
    /// Masks the values of the processor's secrets and pass-through variables found in
    /// the environment, whatever the mode, in every error it answers.
    redactor: Redactor,
    /// How many runs are served at once.
    concurrency: NonZeroU32,
    /// One permit per run served at once; a run holds one until it has answered.
    slots: Arc<Semaphore>,
    /// What the set-up step left.
    readiness: RwLock<Readiness>,
    /// The World's object store evidence is written to ([`ENV_STORE_URL`]); the directory
    /// behind `/artifacts/` without one.
    store: Option<Arc<dyn ArtifactStore>>,
}

impl Runner {
    /// A runner for `definition` configured by `config`.
    pub(crate) fn new(config: ServerConfig, definition: ProcessorDefinition) -> Runner {
        let redactor = Redactor::new(
            definition
                .required_secrets()
                .iter()
                .chain(definition.passthrough_env())
                .map(String::as_str)
                .chain(STORE_SECRETS)
                .filter_map(|name| config.var(name))
                .map(str::to_owned),
        );
        let concurrency = config.concurrency.unwrap_or(definition.concurrency());
        let store = config.store_url.as_deref().map(|location| {
            proctor_store::open_with_env(location, |name| config.var(name).map(str::to_owned))
                .map_err(|error| format!("{ENV_STORE_URL}: {error}"))
        });
        let readiness = match (&config.image_digest, &store, definition.setup()) {
            (None, _, _) => Readiness::Failed(vec![missing_digest().detail().to_owned()]),
            (Some(_), Some(Err(why)), _) => {
                Readiness::Failed(vec![redactor.redact(why).into_owned()])
            }
            (Some(_), _, Some(_)) => Readiness::Starting,
            (Some(_), _, None) => Readiness::Ready,
        };
        let store = store.and_then(Result::ok);
        Runner {
            config,
            definition,
            redactor,
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency.get() as usize)),
            readiness: RwLock::new(readiness),
            store,
        }
    }

    /// Runs the processor's set-up step, if any, and records how it ended.
    pub(crate) async fn set_up(&self) {
        if let Readiness::Failed(tail) = &*self
            .readiness
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            tracing::error!(event = "setup.fail", log_tail = ?tail);
            return;
        }
        let Some(setup) = self.definition.setup() else {
            return;
        };
        tracing::info!(event = "setup.start");
        let log = SetupLog::default();
        let ended = AssertUnwindSafe(setup(log.clone())).catch_unwind().await;
        let readiness = match ended {
            Ok(Ok(())) => {
                tracing::info!(event = "setup.done");
                Readiness::Ready
            }
            Ok(Err(error)) => self.setup_failed(&log, format!("set-up failed: {error}")),
            Err(_) => self.setup_failed(&log, "set-up failed: the set-up step panicked".into()),
        };
        *self
            .readiness
            .write()
            .unwrap_or_else(PoisonError::into_inner) = readiness;
    }

    /// The failed readiness: the set-up log's last lines and `why`, redacted and cut.
    fn setup_failed(&self, log: &SetupLog, why: String) -> Readiness {
        log.push(why);
        let tail: Vec<String> = log
            .tail()
            .iter()
            .map(|line| self.redactor.truncate_redacted(line, MAX_SETUP_LINE_BYTES))
            .collect();
        tracing::error!(event = "setup.fail", log_tail = ?tail);
        Readiness::Failed(tail)
    }

    /// What `/healthz` answers now.
    pub(crate) fn health(&self) -> Health {
        let readiness = self
            .readiness
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (state, log_tail) = match readiness {
            Readiness::Starting => (HealthState::Starting, Vec::new()),
            Readiness::Failed(tail) => (HealthState::SetupFailed, tail),
            Readiness::Ready if self.slots.available_permits() == 0 => {
                (HealthState::Busy, Vec::new())
            }
            Readiness::Ready => (HealthState::Ready, Vec::new()),
        };
        Health {
            state,
            concurrency: self.concurrency,
            log_tail,
            ..Health::ready(
                self.config.image_digest.clone().unwrap_or_default(),
                self.definition.processor_ref().clone(),
            )
        }
    }

    /// Takes a slot for an accepted run, held until the run has answered; when set-up has
    /// not ended or every slot is taken, the busy answer (409), and after a failed set-up,
    /// a refusal (503).
    pub(crate) fn claim_slot(
        &self,
        accepted: &Accepted,
    ) -> Result<OwnedSemaphorePermit, Box<Outcome>> {
        let refuse = |status, code, detail: String| {
            let failure = Failure::new(status, CanonError::new(code, detail));
            Box::new(self.fail(
                accepted.execution_id(),
                accepted.mode(),
                accepted.started(),
                None,
                failure,
            ))
        };
        match &*self
            .readiness
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Readiness::Ready => {}
            Readiness::Starting => {
                return Err(refuse(
                    StatusCode::CONFLICT,
                    ErrorCode::ProcessorBusy,
                    "set-up has not finished; try again".to_owned(),
                ));
            }
            Readiness::Failed(tail) => {
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Provider,
                    tail.last().cloned().unwrap_or_default(),
                ));
            }
        }
        Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            refuse(
                StatusCode::CONFLICT,
                ErrorCode::ProcessorBusy,
                format!(
                    "all {} run slots are taken; try again when one ends",
                    self.concurrency
                ),
            )
        })
    }

    /// Checks a request: an image digest to run from (else 500 `ERR_IMAGE_UNPINNED`), JSON
    /// content type (else 415), a JSON body (else 400), a valid `RunPayload` for this
    /// processor with schema `v1`, a usable execution id and a valid write prefix, its
    /// `{execution_id}` expanded (else 400). Errors come back as finished outcomes.
    pub(crate) fn accept(
        &self,
        content_type: Option<&str>,
        body: Result<&[u8], String>,
        started: Instant,
    ) -> Result<Accepted, Box<Outcome>> {
        let parsed: Option<Value> = body
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice(b).ok());
        let hint_id = parsed
            .as_ref()
            .and_then(|v| v.get("execution_id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let hint_mode = parsed
            .as_ref()
            .and_then(|v| v.get("mode"))
            .and_then(Value::as_str)
            .and_then(|m| m.parse().ok())
            .unwrap_or_default();
        let fail = |failure| Box::new(self.fail(&hint_id, hint_mode, started, None, failure));
        let Some(image_digest) = self.config.image_digest.clone() else {
            return Err(fail(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                missing_digest(),
            )));
        };
        self.validate(content_type, body, parsed)
            .map_err(fail)
            .map(|(payload, prefix)| Accepted {
                payload,
                prefix,
                started,
                image_digest,
            })
    }

    fn validate(
        &self,
        content_type: Option<&str>,
        body: Result<&[u8], String>,
        parsed: Option<Value>,
    ) -> Result<(RunPayload, WritePrefix), Failure> {
        let media_type = content_type.unwrap_or_default();
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(Failure::inputs(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type must be application/json, not `{media_type}`"),
            ));
        }
        let body = body.map_err(|e| {
            Failure::inputs(StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))
        })?;
        let value = match parsed {
            Some(value) => value,
            None => {
                let why = serde_json::from_slice::<Value>(body)
                    .err()
                    .map(|e| e.to_string());
                return Err(Failure::inputs(
                    StatusCode::BAD_REQUEST,
                    format!("body is not JSON: {}", why.unwrap_or_default()),
                ));
            }
        };
        let payload: RunPayload = serde_json::from_value(value)
            .map_err(|e| Failure::inputs(StatusCode::BAD_REQUEST, format!("run payload: {e}")))?;
        if payload.schema != PAYLOAD_SCHEMA {
            return Err(Failure::inputs(
                StatusCode::BAD_REQUEST,
                format!(
                    "run payload schema must be `{PAYLOAD_SCHEMA}`, not `{}`",
                    payload.schema
                ),
            ));
        }
        if payload.processor_ref != *self.definition.processor_ref() {
            return Err(Failure::inputs(
                StatusCode::BAD_REQUEST,
                format!(
                    "payload is for `{}` but this processor is `{}`",
                    payload.processor_ref,
                    self.definition.processor_ref()
                ),
            ));
        }
        check_execution_id(&payload.execution_id)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e))?;
        if !payload.inputs.is_object() {
            return Err(Failure::inputs(
                StatusCode::BAD_REQUEST,
                "inputs must be a JSON object",
            ));
        }
        let prefix = WritePrefix::receive(&payload.write_prefix, &payload.execution_id)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e))?;
        Ok((payload, prefix))
    }

    /// Runs an accepted payload to its envelope, reporting each stage to `progress`.
    pub(crate) async fn execute(
        &self,
        accepted: Accepted,
        progress: &(dyn Fn(Stage) + Send + Sync),
    ) -> Outcome {
        let Accepted {
            payload,
            prefix,
            started,
            image_digest,
        } = accepted;
        progress(Stage::Accepted);
        tracing::info!(
            event = "run.start",
            execution_id = %payload.execution_id,
            processor_ref = %payload.processor_ref,
            mode = %payload.mode,
        );
        let secrets = self.secrets_for(payload.mode);
        let secret_names: Vec<&str> = secrets.keys().map(String::as_str).collect();
        let processor_ref = payload.processor_ref.to_string();
        let secret_names = secret_names.join(",");
        let fingerprint = env_fingerprint(
            [
                ("image_digest", image_digest.as_str()),
                ("mode", payload.mode.as_str()),
                ("ref", &processor_ref),
                ("secrets", &secret_names),
            ]
            .into_iter()
            .chain(self.config.runtime_limits()),
        );
        let execution_id = payload.execution_id.clone();
        let mode = payload.mode;
        let run = Run {
            payload,
            prefix,
            image_digest,
            fingerprint: fingerprint.clone(),
            started,
        };
        match self.produce(run, secrets, progress).await {
            Ok(envelope) => {
                tracing::info!(
                    event = "run.settle",
                    execution_id = %execution_id,
                    duration_ms = match &envelope {
                        Envelope::Success(success) => success.meta.duration_ms,
                        Envelope::Error(error) => error.meta.duration_ms,
                    },
                );
                Outcome {
                    status: StatusCode::OK,
                    envelope,
                }
            }
            Err(failure) => self.fail(&execution_id, mode, started, Some(fingerprint), failure),
        }
    }

    /// The outcome of a run whose task stopped before answering (an SDK panic).
    pub(crate) fn stopped(
        &self,
        execution_id: &str,
        mode: Mode,
        started: Instant,
        why: impl std::fmt::Display,
    ) -> Outcome {
        let error = CanonError::new(ErrorCode::Provider, format!("run stopped: {why}"));
        let failure = Failure::new(StatusCode::INTERNAL_SERVER_ERROR, error);
        self.fail(execution_id, mode, started, None, failure)
    }

    /// An error outcome, logged. Its detail — often the provider's or its upstream's
    /// words — is redacted, then cut to [`MAX_ERROR_DETAIL_BYTES`].
    fn fail(
        &self,
        execution_id: &str,
        mode: Mode,
        started: Instant,
        fingerprint: Option<String>,
        failure: Failure,
    ) -> Outcome {
        let error = CanonError::new(
            failure.error.code(),
            self.redactor
                .truncate_redacted(failure.error.detail(), MAX_ERROR_DETAIL_BYTES),
        );
        tracing::warn!(
            event = "run.fail",
            execution_id = %execution_id,
            code = %error.code(),
            message = %error.message(),
            status = failure.status.as_u16(),
        );
        let mut envelope = Envelope::error(
            execution_id,
            &error,
            mode,
            duration_ms(started),
            self.config.image_digest.clone(),
        );
        if let Envelope::Error(error) = &mut envelope {
            error.meta.env_fingerprint = fingerprint;
        }
        Outcome {
            status: failure.status,
            envelope,
        }
    }

    /// The required secrets present in the environment; none in `mock` mode.
    fn secrets_for(&self, mode: Mode) -> BTreeMap<String, String> {
        if mode == Mode::Mock {
            return BTreeMap::new();
        }
        self.definition
            .required_secrets()
            .iter()
            .filter_map(|name| Some((name.clone(), self.config.var(name)?.to_owned())))
            .collect()
    }

    async fn produce(
        &self,
        run: Run,
        secrets: BTreeMap<String, String>,
        progress: &(dyn Fn(Stage) + Send + Sync),
    ) -> Result<Envelope, Failure> {
        let Run {
            payload,
            prefix,
            image_digest,
            fingerprint,
            started,
        } = run;
        if payload.mode == Mode::Real
            && let Some(missing) = self
                .definition
                .required_secrets()
                .iter()
                .find(|name| !secrets.contains_key(*name))
        {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                CanonError::new(ErrorCode::MissingSecret, missing.clone()),
            ));
        }
        let env: BTreeMap<String, String> = self
            .definition
            .passthrough_env()
            .iter()
            .filter_map(|name| Some((name.clone(), self.config.var(name)?.to_owned())))
            .collect();
        let hash = inputs_hash(&payload.inputs);
        let artifacts = input_artifacts(&payload.inputs)
            .map_err(|error| Failure::new(StatusCode::BAD_REQUEST, error))?;
        let context = Context::new(
            payload.execution_id.clone(),
            payload.processor_ref.clone(),
            payload.mode,
            hash.clone(),
            secrets,
            env,
        )
        .with_artifacts(ArtifactReader::new(
            self.config.artifacts_root.clone(),
            artifacts,
        ));

        progress(Stage::ProviderStarted);
        let result = AssertUnwindSafe(self.definition.provider().run(&context, payload.inputs))
            .catch_unwind()
            .await
            .map_err(|_| {
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    CanonError::new(ErrorCode::Provider, "the provider panicked"),
                )
            })?
            .map_err(|error| match error {
                ProviderError::Inputs(detail) => Failure::inputs(StatusCode::BAD_REQUEST, detail),
                ProviderError::Failed(detail) => Failure::new(
                    StatusCode::BAD_GATEWAY,
                    CanonError::new(ErrorCode::Provider, detail),
                ),
                ProviderError::Canon(error) => Failure::new(canon_status(error.code()), error),
            })?;
        progress(Stage::ProviderFinished);

        let invalid_output = |error| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, error);
        let mut files = Vec::with_capacity(result.outputs.len() + 3);
        let mut entries = Vec::with_capacity(result.outputs.len());
        for output in result.outputs {
            let path = prefix.output_path(&output.path).map_err(invalid_output)?;
            check_media_type(&path, &output.mime).map_err(invalid_output)?;
            entries.push((
                path.to_string(),
                cid(&output.bytes),
                output.bytes.len() as u64,
                output.mime,
            ));
            files.push(PlannedFile {
                path,
                bytes: output.bytes,
            });
        }
        let index = OutputsIndex::build(entries).map_err(invalid_output)?;
        files.push(PlannedFile {
            path: prefix.index_path(),
            bytes: index.to_bytes(),
        });
        let execution_receipt =
            WorldPath::execution_receipt(&payload.execution_id).map_err(invalid_output)?;
        let layout = check_layout(files, vec![prefix.receipt_path(), execution_receipt])
            .map_err(invalid_output)?;
        let mut receipt = Receipt {
            execution_id: payload.execution_id.clone(),
            processor_ref: payload.processor_ref.clone(),
            image_digest: image_digest.clone(),
            env_fingerprint: fingerprint.clone(),
            inputs_hash: hash.value,
            hash_schema: hash.hash_schema,
            outputs_index: prefix.index_path(),
            processor_info: result.processor_info,
            usage: result.usage,
            timestamp_utc: String::new(),
            duration_ms: 0,
            mode: payload.mode,
            upstream: payload.upstream,
            artifacts_read: context.artifacts_read(),
        };

        // Stamped once the outputs and the index are written.
        let stamp = move || {
            receipt.duration_ms = duration_ms(started);
            receipt.timestamp_utc = timestamp_utc()?;
            Ok((receipt.to_bytes(), receipt.duration_ms))
        };
        let duration_ms = match &self.store {
            Some(store) => write_evidence_to_store(store.as_ref(), layout, stamp)
                .await
                .map_err(invalid_output)?,
            None => {
                let root = self.config.artifacts_root.clone();
                tokio::task::spawn_blocking(move || write_evidence(&root, layout, stamp))
                    .await
                    .map_err(|e| {
                        invalid_output(CanonError::new(
                            ErrorCode::OutputWrite,
                            format!("writer stopped: {e}"),
                        ))
                    })?
                    .map_err(invalid_output)?
            }
        };
        progress(Stage::OutputsWritten);

        Ok(Envelope::success(
            &payload.execution_id,
            index.outputs,
            prefix.index_path(),
            SuccessMeta {
                image_digest,
                env_fingerprint: fingerprint,
                duration_ms,
                mode: payload.mode,
            },
        ))
    }
}

/// The HTTP status of a canonical error the SDK raised for a provider: 400 for inputs it
/// refused or could not find, 422 for an input artifact whose bytes do not match, 502
/// otherwise.
fn canon_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Inputs | ErrorCode::NotFound => StatusCode::BAD_REQUEST,
        ErrorCode::ArtifactMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// An accepted run on its way to the provider, with what its receipt and envelope state.
struct Run {
    payload: RunPayload,
    prefix: WritePrefix,
    image_digest: String,
    fingerprint: String,
    started: Instant,
}

/// Why a processor started without [`ENV_IMAGE_DIGEST`] refuses every run: its envelopes
/// and receipts could not name the image they came from.
fn missing_digest() -> CanonError {
    CanonError::new(
        ErrorCode::ImageUnpinned,
        format!("{ENV_IMAGE_DIGEST} is unset; a processor runs only from an image it can name"),
    )
}

/// Milliseconds since `started` (the request's arrival), rounded up: a run that took any
/// time at all is at least 1 ms.
fn duration_ms(started: Instant) -> u64 {
    let elapsed = started.elapsed();
    let whole = elapsed.as_millis() + u128::from(!elapsed.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(whole).unwrap_or(u64::MAX)
}

/// Now, as RFC 3339 UTC with milliseconds (`2026-01-01T00:00:00.000Z`); a clock that reads
/// before 1970 or beyond year 9999 is an `ERR_INTERNAL` error, never a made-up time.
fn timestamp_utc() -> Result<String, CanonError> {
    format_utc(SystemTime::now())
}

fn format_utc(now: SystemTime) -> Result<String, CanonError> {
    let clock = |why: String| CanonError::new(ErrorCode::Internal, format!("system clock: {why}"));
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| clock(format!("reads before 1970 ({e})")))?;
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from(now)
        .format(&format)
        .map_err(|e| clock(e.to_string()))
}

/// An execution id becomes one path segment: 1–128 bytes of `[A-Za-z0-9._-]`, not `.` or
/// `..`.
fn check_execution_id(execution_id: &str) -> Result<(), CanonError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let valid = !execution_id.is_empty()
        && execution_id.len() <= MAX_EXECUTION_ID_BYTES
        && execution_id.chars().all(allowed)
        && execution_id != "."
        && execution_id != "..";
    if valid {
        Ok(())
    } else {
        Err(CanonError::new(
            ErrorCode::Inputs,
            format!(
                "execution_id must be 1-{MAX_EXECUTION_ID_BYTES} characters of [A-Za-z0-9._-]: `{execution_id}`"
            ),
        ))
    }
}

/// A media type is `type/subtype` with optional parameters, printable ASCII only.
fn check_media_type(path: &WorldPath, mime: &str) -> Result<(), CanonError> {
    let essence = mime.split(';').next().unwrap_or_default();
    let valid = essence
        .split_once('/')
        .is_some_and(|(kind, sub)| !kind.is_empty() && !sub.is_empty())
        && mime.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if valid {
        Ok(())
    } else {
        Err(CanonError::new(
            ErrorCode::Provider,
            format!("output `{path}` has invalid media type `{mime}`"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_are_single_safe_segments() {
        for good in ["e1", "0f8e6c2a-1b2c-4d5e-8f90-123456789abc", "a.b_c"] {
            assert!(check_execution_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(129)] {
            assert_eq!(
                check_execution_id(bad).unwrap_err().code(),
                ErrorCode::Inputs,
                "{bad}"
            );
        }
    }

    #[test]
    fn media_types_need_type_and_subtype() {
        let path = WorldPath::parse("/artifacts/a").unwrap();
        for good in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/vnd.x+json",
        ] {
            assert!(check_media_type(&path, good).is_ok(), "{good}");
        }
        for bad in ["", "text", "/plain", "text/", "text/plain\n"] {
            assert!(check_media_type(&path, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let stamp = timestamp_utc().unwrap();
        assert_eq!(stamp.len(), "2026-01-01T00:00:00.000Z".len(), "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
        let epoch = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1);
        assert_eq!(format_utc(epoch).unwrap(), "1970-01-01T00:00:00.001Z");
    }

    #[test]
    fn a_clock_before_1970_is_an_error_not_a_time() {
        let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1);
        let err = format_utc(before).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Internal);
        assert!(err.detail().contains("before 1970"), "{err}");
    }

    #[test]
    fn durations_round_up_to_whole_milliseconds() {
        let started = Instant::now()
            .checked_sub(std::time::Duration::from_micros(10))
            .unwrap();
        assert!(duration_ms(started) >= 1);
    }
}
