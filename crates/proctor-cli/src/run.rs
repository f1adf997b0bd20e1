//! `proctor run`: the validated configuration becomes one [`RunRequest`] for the engine.

use proctor_engine::{CancellationToken, Engine, EngineConfig, RunOutcome, RunRequest};

use crate::args::RunConfig;
use crate::progress::{ProgressOptions, reporter};

/// Runs one processor as configured through the engine; never fails outright: every
/// failure is an error envelope. Its image build or pull shows progress on a terminal.
pub(crate) async fn run(config: &RunConfig, cancel: &CancellationToken) -> RunOutcome {
    let engine = Engine::new(EngineConfig {
        registry_root: config.registry_root.clone(),
        artifacts_root: config.artifacts_root.clone(),
        ledger_url: config.ledger.url.clone(),
        env: crate::deploy_commands::host_env(),
        limits: config.limits,
    })
    .with_build_args(config.build_args.clone())
    .with_cargo_workspace(config.cargo_workspace.clone())
    .with_progress(reporter(ProgressOptions::for_output(config.format)));
    let request = RunRequest {
        processor_ref: config.processor_ref.clone(),
        adapter: config.adapter,
        mode: config.mode,
        build: config.build,
        write_prefix: config.write_prefix.clone(),
        inputs: config.inputs.clone(),
        params: config.params.clone(),
        adapter_options: config.adapter_options.clone(),
        timeout: config.timeout,
        save_dir: config.save_dir.clone(),
        plan: config.ledger.plan.clone(),
        reserve_micro_usd: config.ledger.reserve_micro_usd,
        lane: config.lane,
        upstream: Vec::new(),
        attachments: config.attachments.clone(),
        memo: config.memo,
    };
    let outcome = engine.run(&request, cancel).await;
    engine.close().await;
    outcome
}
