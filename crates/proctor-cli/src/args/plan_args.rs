//! Arguments of `proctor plan apply|status|graph`, and the validated configuration they
//! become.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use proctor_plan::GraphFormat;

use super::ledger_args::LedgerUrlArg;
use super::{ArtifactsRootArg, Globals, OutputFormat, RegistryRootArg};

/// `proctor plan …`.
#[derive(Debug, Subcommand)]
pub(super) enum PlanCommand {
    /// Check a plan file whole, then run its ready transitions concurrently through the
    /// engine; exits 0 when every transition succeeded or was skipped, else with the first
    /// failure's code.
    Apply(ApplyArgs),
    /// Show each transition's state as the ledger recorded the plan's last apply.
    Status {
        /// The plan key.
        key: String,
        #[command(flatten)]
        ledger: LedgerUrlArg,
    },
    /// Print the plan's graph, each transition with its state.
    Graph {
        /// The plan key.
        key: String,
        /// `mermaid` or `dot`.
        #[arg(long, value_enum, default_value_t = GraphFormatArg::Mermaid)]
        format: GraphFormatArg,
        #[command(flatten)]
        ledger: LedgerUrlArg,
    },
}

/// `proctor plan apply`.
#[derive(Debug, Args)]
pub(super) struct ApplyArgs {
    /// The plan file, YAML or JSON.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// At most this many transitions at once (overrides `policy.max_parallel`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    max_parallel: Option<u32>,
    /// Keep up to N warm containers per image: a container serves later transitions of
    /// the same image, mode, environment and adapter options, and all are removed at the
    /// end. 0 gives every transition a fresh container.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u8).range(0..=64))]
    warm_per_image: u8,
    /// Check the plan and print its admission order; run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Build every processor's image from source instead of running its pinned digest.
    #[arg(long)]
    build: bool,
    /// Adapter-specific options for every transition, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = super::parse_json_object)]
    adapter_opts_json: Option<serde_json::Value>,
    #[command(flatten)]
    artifacts_root: ArtifactsRootArg,
    #[command(flatten)]
    registry_root: RegistryRootArg,
    #[command(flatten)]
    ledger: LedgerUrlArg,
}

/// `--format` of `plan graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum GraphFormatArg {
    Mermaid,
    Dot,
}

/// A validated `proctor plan …`.
#[derive(Debug, Clone)]
pub(crate) enum PlanConfig {
    /// `plan apply`.
    Apply(Box<PlanApplyConfig>),
    /// `plan status`.
    Status {
        key: String,
        format: OutputFormat,
        ledger_url: String,
    },
    /// `plan graph`.
    Graph {
        key: String,
        format: GraphFormat,
        ledger_url: String,
        /// JSON: the graph's text inside one line of JSON.
        output: OutputFormat,
    },
}

/// A validated `proctor plan apply`.
#[derive(Debug, Clone)]
pub(crate) struct PlanApplyConfig {
    pub(crate) file: PathBuf,
    pub(crate) max_parallel: Option<u32>,
    /// 0: no warm containers.
    pub(crate) warm_per_image: usize,
    pub(crate) dry_run: bool,
    pub(crate) build: bool,
    pub(crate) adapter_options: serde_json::Value,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) artifacts_root: PathBuf,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
    /// The Cargo workspace that compiles processors for `--build` (absolute).
    pub(crate) cargo_workspace: PathBuf,
    pub(crate) ledger_url: String,
}

impl PlanCommand {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<PlanConfig> {
        Ok(match self {
            PlanCommand::Apply(apply) => PlanConfig::Apply(Box::new(PlanApplyConfig {
                file: apply.file,
                max_parallel: apply.max_parallel,
                warm_per_image: usize::from(apply.warm_per_image),
                dry_run: apply.dry_run,
                build: apply.build,
                adapter_options: apply
                    .adapter_opts_json
                    .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
                format: globals.format,
                artifacts_root: apply.artifacts_root.resolve(globals)?,
                cargo_workspace: globals.cargo_workspace(&apply.registry_root.resolve(globals)?),
                registry_root: apply.registry_root.resolve(globals)?,
                ledger_url: apply.ledger.resolve(globals),
            })),
            PlanCommand::Status { key, ledger } => PlanConfig::Status {
                key,
                format: globals.format,
                ledger_url: ledger.resolve(globals),
            },
            PlanCommand::Graph {
                key,
                format,
                ledger,
            } => PlanConfig::Graph {
                key,
                format: match format {
                    GraphFormatArg::Mermaid => GraphFormat::Mermaid,
                    GraphFormatArg::Dot => GraphFormat::Dot,
                },
                ledger_url: ledger.resolve(globals),
                output: globals.format,
            },
        })
    }
}
