//! `proctor run`: every check in its fixed order, each before any later work, then the
//! adapter.
//!
//! Order: CI guard → lane rules ([`crate::lane`]) → ref → registry → inputs (JSON, then
//! schema) → secrets (`real` only) → write prefix → image source (pinned digest unless
//! `--build`) → payload → ledger (start, budget reservation, write-prefix lease; see
//! [`crate::run_ledger`]) → adapter.
//! Every run logs `execution.start` and then exactly one of `execution.settle` or
//! `execution.fail`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proctor_adapters::{Adapter, ImageSource, Invocation, LocalAdapter, host_platform};
use proctor_contract::{
    CanonError, Envelope, ErrorCode, Mode, PAYLOAD_SCHEMA, ProcessorRef, RunPayload, WritePrefix,
    ci_guard,
};
use proctor_registry::{ProcessorSpec, Registry, check_secrets, pinned_reference, validate_inputs};
use serde_json::Value;

use crate::args::{AdapterKind, InputsSource, RunConfig};
use crate::save::save_outputs;

/// How a run ended.
#[derive(Debug)]
pub(crate) struct RunOutcome {
    /// The envelope to print: the processor's, or one the CLI built for its own error.
    pub(crate) envelope: Envelope,
    /// Where `--save-dir` put the outputs, when it was given and the run succeeded.
    pub(crate) saved_to: Option<PathBuf>,
}

impl RunOutcome {
    /// 0 for a success, the code's exit code for an error envelope.
    pub(crate) fn exit_code(&self) -> i32 {
        match &self.envelope {
            Envelope::Success(_) => 0,
            Envelope::Error(error) => error.error.code.exit_code(),
        }
    }
}

/// Runs one processor as configured; never fails outright: every failure becomes an error
/// envelope.
pub(crate) fn run(config: &RunConfig) -> RunOutcome {
    let execution_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    tracing::info!(
        event = "execution.start",
        execution_id = %execution_id,
        r#ref = %config.processor_ref,
        mode = %config.mode,
        adapter = config.adapter.as_str(),
    );
    let result =
        execute(config, &execution_id).and_then(|envelope| match (&envelope, &config.save_dir) {
            (Envelope::Success(success), Some(save_dir)) => {
                save_outputs(success, &config.artifacts_root, save_dir)?;
                Ok((envelope, Some(save_dir.clone())))
            }
            _ => Ok((envelope, None)),
        });
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (envelope, saved_to) = match result {
        Ok(done) => done,
        Err(error) => (
            Envelope::error(&execution_id, &error, config.mode, duration_ms, None),
            None,
        ),
    };
    match &envelope {
        Envelope::Success(success) => tracing::info!(
            event = "execution.settle",
            execution_id = %execution_id,
            r#ref = %config.processor_ref,
            mode = %config.mode,
            adapter = config.adapter.as_str(),
            index_path = %success.index_path,
            outputs = success.outputs.len(),
            duration_ms,
        ),
        Envelope::Error(error) => tracing::error!(
            event = "execution.fail",
            execution_id = %execution_id,
            r#ref = %config.processor_ref,
            mode = %config.mode,
            adapter = config.adapter.as_str(),
            code = %error.error.code,
            message = %error.error.message,
            duration_ms,
        ),
    }
    RunOutcome { envelope, saved_to }
}

/// The checks, in order, then the adapter.
fn execute(config: &RunConfig, execution_id: &str) -> Result<Envelope, CanonError> {
    ci_guard(config.mode, std::env::var("CI").ok().as_deref())?;
    crate::lane::check_run(config.lane, config.mode, config.build)?;
    let processor_ref: ProcessorRef = config.processor_ref.parse()?;
    let registry = Registry::load(&config.registry_root)?;
    let entry = registry.get(&processor_ref)?;
    let spec = entry.spec();
    let inputs = read_inputs(&config.inputs)?;
    validate_inputs(spec, &inputs)?;
    let env = match config.mode {
        Mode::Real => real_mode_env(spec)?,
        Mode::Mock => BTreeMap::new(),
    };
    let write_prefix = WritePrefix::expand(&config.write_prefix, execution_id)?;
    let image = if config.build {
        ImageSource::Build {
            processor_dir: entry.dir().to_path_buf(),
            workspace_root: workspace_root(&config.registry_root),
        }
    } else {
        ImageSource::Pinned {
            reference: pinned_reference(spec, host_platform()?)?,
        }
    };
    let invocation = Invocation {
        payload: RunPayload {
            schema: PAYLOAD_SCHEMA.to_owned(),
            execution_id: execution_id.to_owned(),
            processor_ref,
            mode: config.mode,
            inputs,
            write_prefix: write_prefix.as_str().to_owned(),
        },
        spec: spec.clone(),
        image,
        artifacts_root: config.artifacts_root.clone(),
        timeout: config
            .timeout
            .unwrap_or(Duration::from_secs(spec.runtime.timeout_s)),
        env,
        options: config.adapter_options.clone(),
    };
    crate::run_ledger::record_run(config, &invocation, |invocation| {
        invoke(config.adapter, invocation)
    })
}

/// The inputs payload, parsed; unreadable or non-JSON input is `ERR_INPUTS`.
fn read_inputs(source: &InputsSource) -> Result<Value, CanonError> {
    let (text, origin) = match source {
        InputsSource::Inline(text) => (text.clone(), "--inputs-json".to_owned()),
        InputsSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CanonError::new(
                    ErrorCode::Inputs,
                    format!("cannot read --inputs-file `{}`: {e}", path.display()),
                )
            })?;
            (text, format!("--inputs-file `{}`", path.display()))
        }
    };
    serde_json::from_str(&text)
        .map_err(|e| CanonError::new(ErrorCode::Inputs, format!("{origin} is not JSON: {e}")))
}

/// `real` mode's container environment: the required secrets (all present, or
/// `ERR_MISSING_SECRET`) plus the spec's pass-through variables that are set.
fn real_mode_env(spec: &ProcessorSpec) -> Result<BTreeMap<String, String>, CanonError> {
    let mut env = check_secrets(spec, |name| std::env::var(name).ok())?;
    for name in &spec.env {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.clone(), value);
        }
    }
    Ok(env)
}

/// The Cargo workspace that builds processors: the nearest ancestor of the registry root
/// holding a `Cargo.lock`, else the registry root's parent.
pub(crate) fn workspace_root(registry_root: &Path) -> PathBuf {
    let parent = registry_root.parent().unwrap_or(registry_root);
    parent
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(parent)
        .to_path_buf()
}

/// Hands the invocation to the adapter named by `--adapter` and waits for its envelope.
fn invoke(kind: AdapterKind, invocation: &Invocation) -> Result<Envelope, CanonError> {
    let unavailable = |why: String| CanonError::new(ErrorCode::AdapterInvocation, why);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            unavailable(format!(
                "{}: cannot start the async runtime: {e}",
                kind.as_str()
            ))
        })?;
    runtime.block_on(async {
        match kind {
            AdapterKind::Local => {
                let adapter = LocalAdapter::connect().await?;
                adapter.invoke(invocation).await
            }
            AdapterKind::Modal => {
                // The deploy target (`PROCTOR_MODAL_*`) and the proxy-auth token
                // (`MODAL_PROXY_TOKEN_*`) come from the host environment.
                let env = crate::deploy_commands::host_env();
                let adapter = proctor_adapters::ModalAdapter::from_env(&env)?;
                adapter.invoke(invocation).await
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_root_is_the_nearest_directory_with_a_lockfile() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures/processors");
        std::fs::create_dir_all(&fixtures).unwrap();
        assert_eq!(workspace_root(&fixtures), dir.path().join("fixtures"));
        std::fs::write(dir.path().join("Cargo.lock"), "").unwrap();
        assert_eq!(workspace_root(&fixtures), dir.path());
        assert_eq!(workspace_root(&dir.path().join("processors")), dir.path());
    }
}
