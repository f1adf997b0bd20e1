//! What a processor supplies — a [`Provider`] that turns inputs into outputs — and what the
//! SDK hands it: a [`Context`] per run.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use proctor_contract::{
    ArtifactRead, ArtifactRef, CanonError, InputsHash, Mode, ProcessorRef, Redactor, Usage,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;
use serde_json::Value;

use crate::input_artifacts::ArtifactReader;
use crate::setup::{SetupFuture, SetupLog, SetupStep};

/// The future a [`Provider`] returns.
pub type ProviderFuture<'a> = BoxFuture<'a, Result<ProviderResult, ProviderError>>;

/// Turns one run's inputs into outputs.
///
/// Any `Fn(&Context, Value) -> Result<ProviderResult, ProviderError>` is a provider; a type
/// that needs to await (an HTTP call) implements the trait itself.
pub trait Provider: Send + Sync + 'static {
    /// Runs once for one execution. `inputs` is the payload's `inputs` object, as sent.
    fn run<'a>(&'a self, context: &'a Context, inputs: Value) -> ProviderFuture<'a>;
}

impl<F> Provider for F
where
    F: Fn(&Context, Value) -> Result<ProviderResult, ProviderError> + Send + Sync + 'static,
{
    fn run<'a>(&'a self, context: &'a Context, inputs: Value) -> ProviderFuture<'a> {
        Box::pin(std::future::ready(self(context, inputs)))
    }
}

/// Why a provider could not produce its outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The inputs are unusable; answered as `ERR_INPUTS` (HTTP 400).
    #[error("{0}")]
    Inputs(String),
    /// The provider or its upstream failed; answered as `ERR_PROVIDER` (HTTP 502). The SDK
    /// masks the processor's secret and pass-through values in it, but only the provider
    /// knows where its upstream's text was cut: redact before cutting
    /// ([`Context::redactor`]).
    #[error("{0}")]
    Failed(String),
    /// A canonical error the SDK raised for the provider, answered with its own code: an
    /// input artifact that [`Context::read_artifact`] refused (`ERR_ARTIFACT_MISMATCH`,
    /// `ERR_NOT_FOUND`, `ERR_INPUTS`).
    #[error("{0}")]
    Canon(CanonError),
}

impl ProviderError {
    /// Unusable inputs, with what was wrong.
    pub fn inputs(detail: impl fmt::Display) -> ProviderError {
        ProviderError::Inputs(detail.to_string())
    }

    /// A provider failure, with what went wrong.
    pub fn failed(detail: impl fmt::Display) -> ProviderError {
        ProviderError::Failed(detail.to_string())
    }
}

/// One output file, named relative to `{write_prefix}outputs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOutput {
    /// Relative path such as `text/response.txt`; anything escaping `outputs/` is refused.
    pub path: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Its media type.
    pub mime: String,
}

impl ProviderOutput {
    /// An output with explicit bytes and media type.
    pub fn new(path: impl Into<String>, bytes: Vec<u8>, mime: impl Into<String>) -> ProviderOutput {
        ProviderOutput {
            path: path.into(),
            bytes,
            mime: mime.into(),
        }
    }

    /// A `text/plain` output.
    pub fn text(path: impl Into<String>, text: impl Into<String>) -> ProviderOutput {
        ProviderOutput::new(path, text.into().into_bytes(), "text/plain")
    }

    /// An `application/json` output: pretty-printed, with a final newline.
    pub fn json(
        path: impl Into<String>,
        value: &impl Serialize,
    ) -> Result<ProviderOutput, ProviderError> {
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| ProviderError::failed(format!("cannot serialize output: {e}")))?;
        bytes.push(b'\n');
        Ok(ProviderOutput::new(path, bytes, "application/json"))
    }
}

/// What a provider produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderResult {
    /// The output files; the SDK writes them and builds the index.
    pub outputs: Vec<ProviderOutput>,
    /// What the provider says about itself (model, version), recorded in the receipt.
    pub processor_info: String,
    /// Usage counters (tokens, calls), recorded in the receipt.
    pub usage: Usage,
}

/// Everything a provider may know about its run.
///
/// Secrets and pass-through variables are present in `real` mode only; in `mock` mode
/// the provider gets none, even when the process environment holds them.
pub struct Context {
    execution_id: String,
    processor_ref: ProcessorRef,
    mode: Mode,
    inputs_hash: InputsHash,
    secrets: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    artifacts: ArtifactReader,
}

impl Context {
    /// A context; `secrets` and `env` are dropped in `mock` mode.
    pub(crate) fn new(
        execution_id: String,
        processor_ref: ProcessorRef,
        mode: Mode,
        inputs_hash: InputsHash,
        secrets: BTreeMap<String, String>,
        env: BTreeMap<String, String>,
    ) -> Context {
        let (secrets, env) = match mode {
            Mode::Real => (secrets, env),
            Mode::Mock => (BTreeMap::new(), BTreeMap::new()),
        };
        Context {
            execution_id,
            processor_ref,
            mode,
            inputs_hash,
            secrets,
            env,
            artifacts: ArtifactReader::default(),
        }
    }

    /// This context, reading the run's input artifacts with `artifacts`.
    pub(crate) fn with_artifacts(self, artifacts: ArtifactReader) -> Context {
        Context { artifacts, ..self }
    }

    /// The bytes of the input artifact `artifact` — a `$artifact` object of this run's
    /// inputs, as [`ArtifactRef`] deserializes it — once they match its content id. A
    /// mismatch is `ERR_ARTIFACT_MISMATCH`, never silently used; an artifact the inputs do
    /// not name is `ERR_INPUTS`; a missing file is `ERR_NOT_FOUND`. What it hands over is
    /// listed in the receipt's `artifacts_read`.
    pub fn read_artifact(&self, artifact: &ArtifactRef) -> Result<Vec<u8>, ProviderError> {
        self.artifacts.read(artifact).map_err(ProviderError::Canon)
    }

    /// The input artifacts read so far, for the receipt.
    pub(crate) fn artifacts_read(&self) -> Vec<ArtifactRead> {
        self.artifacts.reads()
    }

    /// The mode of this run.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The execution's id. Never feed it into mock output: mock output must be byte-stable.
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// The processor's ref.
    pub fn processor_ref(&self) -> &ProcessorRef {
        &self.processor_ref
    }

    /// The hash of the inputs (JCS + BLAKE3).
    pub fn inputs_hash(&self) -> &InputsHash {
        &self.inputs_hash
    }

    /// A required secret's value; `None` in `mock` mode.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).map(String::as_str)
    }

    /// The names of the secrets present, sorted.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }

    /// A declared pass-through variable's value; `None` in `mock` mode or when unset.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// A fresh random generator seeded from the inputs hash: the same inputs give the same
    /// stream on every run, so mock output derived from it is byte-stable. Each call starts
    /// the stream anew.
    pub fn seeded_rng(&self) -> ChaCha20Rng {
        let mut seed = [0u8; 32];
        if let Ok(bytes) = hex::decode(&self.inputs_hash.value) {
            for (slot, byte) in seed.iter_mut().zip(bytes) {
                *slot = byte;
            }
        }
        ChaCha20Rng::from_seed(seed)
    }

    /// A redactor masking this run's secret and pass-through values (and every shape of
    /// credential), for text that leaves the provider: error messages quoting an upstream
    /// answer. Redact before cutting ([`Redactor::truncate_redacted`]).
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.secrets.values().chain(self.env.values()).cloned())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("execution_id", &self.execution_id)
            .field("processor_ref", &self.processor_ref)
            .field("mode", &self.mode)
            .field("inputs_hash", &self.inputs_hash.value)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A processor: its ref, the secret and variable names it needs, how many runs it serves
/// at once, its optional set-up step, and its provider.
#[derive(Clone)]
pub struct ProcessorDefinition {
    processor_ref: ProcessorRef,
    required_secrets: Vec<String>,
    passthrough_env: Vec<String>,
    concurrency: NonZeroU32,
    setup: Option<SetupStep>,
    provider: Arc<dyn Provider>,
}

impl ProcessorDefinition {
    /// A processor with no secrets and no pass-through variables.
    pub fn new(processor_ref: ProcessorRef, provider: impl Provider) -> ProcessorDefinition {
        ProcessorDefinition {
            processor_ref,
            required_secrets: Vec::new(),
            passthrough_env: Vec::new(),
            concurrency: NonZeroU32::MIN,
            setup: None,
            provider: Arc::new(provider),
        }
    }

    /// Declares how many `/run` and `/run-stream` requests the processor serves at once
    /// (default 1); `PROCTOR_CONCURRENCY` overrides it. One more is answered with HTTP 409
    /// and `ERR_PROCESSOR_BUSY`.
    pub fn with_concurrency(mut self, concurrency: NonZeroU32) -> ProcessorDefinition {
        self.concurrency = concurrency;
        self
    }

    /// Declares a set-up step, run once when the server starts. Until it ends `/healthz`
    /// answers `starting` and `/run` answers busy; if it fails, `/healthz` answers
    /// `setup_failed` with the last lines it logged to its [`SetupLog`] and its error,
    /// redacted, and `/run` is refused with `ERR_PROVIDER`.
    pub fn with_setup<F, Fut>(mut self, setup: F) -> ProcessorDefinition
    where
        F: Fn(SetupLog) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ProviderError>> + Send + 'static,
    {
        self.setup = Some(Arc::new(move |log| -> SetupFuture { Box::pin(setup(log)) }));
        self
    }

    /// Declares secrets that must be present in `real` mode (`secrets.required` in
    /// `registry.yaml`).
    pub fn with_required_secrets<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> ProcessorDefinition {
        self.required_secrets
            .extend(names.into_iter().map(Into::into));
        self.required_secrets.sort();
        self.required_secrets.dedup();
        self
    }

    /// Declares non-secret variables handed to the provider in `real` mode (`env` in
    /// `registry.yaml`).
    pub fn with_passthrough_env<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> ProcessorDefinition {
        self.passthrough_env
            .extend(names.into_iter().map(Into::into));
        self.passthrough_env.sort();
        self.passthrough_env.dedup();
        self
    }

    /// The processor's ref.
    pub fn processor_ref(&self) -> &ProcessorRef {
        &self.processor_ref
    }

    /// Secret names required in `real` mode, sorted.
    pub fn required_secrets(&self) -> &[String] {
        &self.required_secrets
    }

    /// Pass-through variable names, sorted.
    pub fn passthrough_env(&self) -> &[String] {
        &self.passthrough_env
    }

    /// How many runs it declares it serves at once.
    pub fn concurrency(&self) -> NonZeroU32 {
        self.concurrency
    }

    /// The provider.
    pub(crate) fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    /// The set-up step, if any.
    pub(crate) fn setup(&self) -> Option<&SetupStep> {
        self.setup.as_ref()
    }
}

impl fmt::Debug for ProcessorDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorDefinition")
            .field("processor_ref", &self.processor_ref)
            .field("required_secrets", &self.required_secrets)
            .field("passthrough_env", &self.passthrough_env)
            .field("concurrency", &self.concurrency)
            .field("setup", &self.setup.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use proctor_contract::inputs_hash;
    use rand_chacha::rand_core::Rng;
    use serde_json::json;

    use super::*;

    fn context(mode: Mode, inputs: &Value) -> Context {
        Context::new(
            "e1".to_owned(),
            "test/echo@1".parse().unwrap(),
            mode,
            inputs_hash(inputs),
            BTreeMap::from([("API_KEY".to_owned(), "sk-secret-value".to_owned())]),
            BTreeMap::from([("BASE_URL".to_owned(), "http://x".to_owned())]),
        )
    }

    #[test]
    fn mock_context_has_no_secrets_or_env() {
        let mock = context(Mode::Mock, &json!({}));
        assert_eq!(mock.secret("API_KEY"), None);
        assert_eq!(mock.env("BASE_URL"), None);
        assert_eq!(mock.secret_names().count(), 0);
        let real = context(Mode::Real, &json!({}));
        assert_eq!(real.secret("API_KEY"), Some("sk-secret-value"));
        assert_eq!(real.env("BASE_URL"), Some("http://x"));
        assert!(!format!("{real:?}").contains("sk-secret-value"));
        assert_eq!(
            real.redactor().redact("key sk-secret-value at http://x/v1"),
            "key [REDACTED] at [REDACTED]/v1"
        );
        assert_eq!(mock.redactor().redact("sk-secret-value"), "sk-secret-value");
    }

    #[test]
    fn rng_depends_on_inputs_only() {
        let first = context(Mode::Mock, &json!({"a": 1, "b": 2}))
            .seeded_rng()
            .next_u64();
        let reordered = context(Mode::Real, &json!({"b": 2, "a": 1}))
            .seeded_rng()
            .next_u64();
        let other = context(Mode::Mock, &json!({"a": 2}))
            .seeded_rng()
            .next_u64();
        assert_eq!(first, reordered);
        assert_ne!(first, other);
    }

    #[test]
    fn definition_sorts_names_and_json_outputs_end_in_newline() {
        let provider = |_: &Context, _: Value| Ok(ProviderResult::default());
        let definition = ProcessorDefinition::new("test/echo@1".parse().unwrap(), provider)
            .with_required_secrets(["B", "A", "B"])
            .with_passthrough_env(["URL"]);
        assert_eq!(definition.required_secrets(), ["A", "B"]);
        assert_eq!(definition.passthrough_env(), ["URL"]);
        let output = ProviderOutput::json("m.json", &json!({"k": 1})).unwrap();
        assert_eq!(output.bytes, b"{\n  \"k\": 1\n}\n");
        assert_eq!(output.mime, "application/json");
    }
}
