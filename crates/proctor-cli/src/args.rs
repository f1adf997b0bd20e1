//! Command-line arguments, and the validated configuration they become before anything
//! runs. Parsing here is pure: no file is read and no environment variable is consulted
//! except the documented `env` fallbacks of flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use proctor_contract::Mode;
use proctor_engine::{AdapterKind, Attachment, DeployTarget, Inputs, Lane, Limits};
use serde_json::Value;

mod doctor_args;
mod lane_args;
mod ledger_args;
mod plan_args;
mod processor_args;
mod serve_args;

use doctor_args::DoctorArgs;
pub(crate) use doctor_args::DoctorConfig;
use lane_args::{BuildArgs, LaneCommand, PinArgs, PushArgs};
pub(crate) use lane_args::{BuildConfig, ImageConfig, LaneConfig, PinConfig, PushConfig};
pub(crate) use ledger_args::{LedgerAction, LedgerConfig, RunLedgerConfig, VerifyConfig};
use ledger_args::{LedgerCommand, RunLedgerArgs, VerifyArgs};
use plan_args::PlanCommand;
pub(crate) use plan_args::{PlanApplyConfig, PlanConfig};
use processor_args::{ConformArgs, NewArgs};
pub(crate) use processor_args::{ConformConfig, NewConfig};
use serve_args::ServeArgs;
pub(crate) use serve_args::ServeConfig;

/// Run containerized processors and keep checkable evidence of every run.
///
/// Exit codes: 0 success; 1 internal error; 2 usage error; 10 and above a canonical error
/// (`ERR_…`, see the README).
#[derive(Debug, Parser)]
#[command(name = "proctor", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes, before or after its name.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Print exactly one line of JSON on stdout (the envelope for `run`), and JSON log lines
    /// on stderr.
    #[arg(long, global = true)]
    json: bool,
    /// Log lines on stderr: `human` (short status lines) or `json` (one object per line).
    /// Default: `human` on a terminal, `json` otherwise or under `--json`.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// More log detail (repeatable: `-v` debug, `-vv` trace); `-v` also shows cargo's own
    /// output while a processor compiles. `PROCTOR_LOG` (an env filter, e.g.
    /// `proctor_engine=debug`) overrides both.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Errors only on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// The Cargo workspace that compiles processors, for every command that builds
    /// (default: the nearest directory holding a `Cargo.lock` above the registry root). The
    /// project root — where `processors/` and `.proctor/` are — is found upward from the
    /// working directory, as cargo and git find theirs.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "PROCTOR_WORKSPACE_ROOT"
    )]
    pub(crate) workspace_root: Option<PathBuf>,
}

/// How log lines on stderr look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Short status lines for people.
    Human,
    /// One JSON object per line.
    Json,
}

/// How loud stderr is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// Status lines and warnings.
    Normal,
    /// `-v`: debug detail, and cargo's own output while compiling.
    Verbose,
    /// `-vv`: everything.
    Trace,
}

impl GlobalArgs {
    /// The stdout format.
    pub(crate) fn output_format(&self) -> OutputFormat {
        OutputFormat::from_flag(self.json)
    }

    /// The log line format: as asked, else JSON under `--json` or when stderr is not a
    /// terminal.
    pub(crate) fn log_format(&self, stderr_is_terminal: bool) -> LogFormat {
        match self.log_format {
            Some(format) => format,
            None if self.json || !stderr_is_terminal => LogFormat::Json,
            None => LogFormat::Human,
        }
    }

    /// `-q`, `-v` and `-vv`.
    pub(crate) fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            (false, _) => Verbosity::Trace,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one processor and print its envelope.
    Run(Box<RunArgs>),
    /// Inspect the processor registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Browse the world's artifacts and publish executions to another store.
    #[command(subcommand)]
    World(WorldCommand),
    /// Generate the deploy target's app for pinned processors and deploy it.
    Deploy(DeployArgs),
    /// Compare the image each deployment runs with its pin.
    Drift(DriftArgs),
    /// Plan the secrets a deploy target must hold.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Show, verify and budget the ledger's plans and their hash-chained events.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Check one execution's evidence: outputs, receipts, ledger records and pin.
    Verify(VerifyArgs),
    /// Build a processor's multi-arch image (linux/amd64, linux/arm64) into an OCI layout.
    Build(BuildArgs),
    /// Push a built image and its multi-arch index to an OCI registry.
    Push(PushArgs),
    /// Pin a pushed image's digests in the processor's registry.yaml.
    Pin(PinArgs),
    /// Run a lane's chain: `pr` (smoke runs built from source) or `main` (Build & Pin →
    /// Acceptance → Deploy → Drift).
    #[command(subcommand)]
    Lane(LaneCommand),
    /// Apply a plan (a graph of transitions gated by predicates), or show its state.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Check that a processor image honours the container contract, check by named check.
    Conform(Box<ConformArgs>),
    /// Write a new processor, in Rust or Python, that passes `proctor conform` as it is.
    New(NewArgs),
    /// Check this machine: container engine, OCI registry, ledger, artifacts root, each
    /// processor's pins and secrets (by name), Modal; with what to do about each failure.
    Doctor(DoctorArgs),
    /// Serve the World over HTTP: a JSON API under /v1 (runs, plans, executions, outputs,
    /// the ledger, drift, live events) and a dashboard, on loopback, behind the token in
    /// `.proctor/serve-token`.
    Serve(Box<ServeArgs>),
    /// Print the shell completion script: `proctor completions bash > …` (see the README).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page, in roff: `proctor man | man -l -` (see the README).
    Man {
        /// The page: `proctor` (the default), or a command's, as the SUBCOMMANDS sections
        /// name them (`proctor-ledger-verify`, or `ledger-verify`).
        #[arg(value_name = "PAGE", default_value = "proctor", value_parser = crate::completions_command::parse_man_page)]
        page: String,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// List every processor version.
    List {
        #[command(flatten)]
        common: RegistryArgs,
    },
    /// Show one processor version in full.
    Show {
        /// The processor, `ns/name@version`.
        #[arg(value_name = "REF")]
        processor_ref: String,
        #[command(flatten)]
        common: RegistryArgs,
    },
}

#[derive(Debug, Args)]
struct RegistryArgs {
    #[command(flatten)]
    registry_root: RegistryRootArg,
}

/// `--registry-root`, shared by every command that reads the registry.
#[derive(Debug, Args)]
struct RegistryRootArg {
    /// The registry root holding `<ns>/<name>/<version>/registry.yaml`.
    /// (default: `processors/` in the project root).
    #[arg(long, value_name = "DIR", env = "PROCTOR_REGISTRY_ROOT")]
    registry_root: Option<PathBuf>,
}

impl RegistryRootArg {
    fn resolve(&self, globals: &Globals) -> anyhow::Result<PathBuf> {
        globals.path_or_default(self.registry_root.as_deref(), "processors")
    }
}

/// `--artifacts-root`, shared by `run` and the default store of `world`.
#[derive(Debug, Args)]
struct ArtifactsRootArg {
    /// Host directory backing the world's `/artifacts/` (default: `.proctor/artifacts/` in
    /// the project root).
    #[arg(long, value_name = "DIR", env = "PROCTOR_ARTIFACTS_ROOT")]
    artifacts_root: Option<PathBuf>,
}

impl ArtifactsRootArg {
    fn resolve(&self, globals: &Globals) -> anyhow::Result<PathBuf> {
        globals.path_or_default(self.artifacts_root.as_deref(), ".proctor/artifacts")
    }
}

#[derive(Debug, Subcommand)]
enum WorldCommand {
    /// List the artifacts below a world path, with their sizes.
    Ls {
        /// A prefix (`/artifacts/outputs/`) or an exact path; an exact path that is a
        /// directory lists like its prefix.
        #[arg(value_name = "PREFIX")]
        selector: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the bytes of one artifact to stdout, as stored.
    Cat {
        /// The artifact's world path, e.g. `/artifacts/outputs/demo/<id>/outputs.json`.
        #[arg(value_name = "PATH")]
        path: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Copy an execution's outputs, index and receipts to another store.
    Sync {
        /// The execution to copy.
        execution_id: String,
        /// The destination store, e.g. `s3://bucket/prefix?endpoint=URL`.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The source store (default: the artifacts root).
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        #[command(flatten)]
        artifacts_root: ArtifactsRootArg,
    },
}

/// Which store `world ls` and `world cat` read.
#[derive(Debug, Args)]
struct StoreArgs {
    /// The store: `file:///abs/dir`, a directory, or `s3://bucket/prefix?endpoint=URL`
    /// (credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`). Default: the
    /// World's store that runs use, `PROCTOR_STORE_URL`, else the artifacts root.
    #[arg(long, value_name = "URL", env = "PROCTOR_STORE_URL")]
    store: Option<String>,
    #[command(flatten)]
    artifacts_root: ArtifactsRootArg,
}

impl StoreArgs {
    fn resolve(&self, globals: &Globals) -> anyhow::Result<StoreLocation> {
        store_location(self.store.as_deref(), &self.artifacts_root, globals)
    }
}

/// `--store URL` when given, else the artifacts root.
fn store_location(
    given: Option<&str>,
    artifacts_root: &ArtifactsRootArg,
    globals: &Globals,
) -> anyhow::Result<StoreLocation> {
    Ok(match given {
        Some(location) => StoreLocation::Url(location.to_owned()),
        None => StoreLocation::ArtifactsRoot(artifacts_root.resolve(globals)?),
    })
}

/// `--target`: the engine's deploy targets, by name.
fn target_parser() -> impl TypedValueParser<Value = DeployTarget> {
    PossibleValuesParser::new(DeployTarget::ALL.map(DeployTarget::as_str))
        .try_map(|name| name.parse())
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// Where to deploy: `modal`.
    #[arg(long, value_parser = target_parser())]
    target: DeployTarget,
    /// The processor, `ns/name@version` (default: every processor in the registry).
    #[arg(long = "ref", value_name = "REF")]
    processor_ref: Option<String>,
    /// Write and print the generated app without deploying it (nor validating it).
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    registry_root: RegistryRootArg,
    // The World and the ledger that record each new deployment's mock smoke run.
    #[command(flatten)]
    artifacts_root: ArtifactsRootArg,
    #[command(flatten)]
    ledger: RunLedgerArgs,
}

#[derive(Debug, Args)]
struct DriftArgs {
    /// Where the processors are deployed: `modal`.
    #[arg(long, value_parser = target_parser(), default_value = "modal")]
    target: DeployTarget,
    /// The processor, `ns/name@version` (default: every processor in the registry).
    #[arg(long = "ref", value_name = "REF")]
    processor_ref: Option<String>,
    /// Seconds to wait for each endpoint's `/healthz`.
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    #[command(flatten)]
    registry_root: RegistryRootArg,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// List the secrets each processor needs in the target, and which are missing (names
    /// only).
    Plan {
        /// The deploy target: `modal`.
        #[arg(long, value_parser = target_parser())]
        target: DeployTarget,
        /// The processor, `ns/name@version` (default: every processor in the registry).
        #[arg(long = "ref", value_name = "REF")]
        processor_ref: Option<String>,
        #[command(flatten)]
        registry_root: RegistryRootArg,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("processor").required(true).args(["processor_ref", "ref_flag"])))]
#[command(group(ArgGroup::new("inputs").args(["inputs_json", "inputs_file", "example"])))]
struct RunArgs {
    /// The processor, `ns/name@version` (e.g. `llm/litellm@1`).
    #[arg(value_name = "REF")]
    processor_ref: Option<String>,
    /// The processor, as the positional `REF` (for scripts).
    #[arg(long = "ref", value_name = "REF")]
    ref_flag: Option<String>,
    /// Where the processor runs: `local` or `modal`.
    #[arg(long, value_parser = adapter_parser(), default_value = "local")]
    adapter: AdapterKind,
    /// `mock` is hermetic and deterministic; `real` uses secrets and the network.
    #[arg(long, value_enum, default_value_t = ModeArg::Mock)]
    mode: ModeArg,
    /// Build the image from source instead of running the pinned digest.
    #[arg(long)]
    build: bool,
    /// A build argument of a Dockerfile build, as `docker build` takes it (repeatable), e.g.
    /// `BASE_IMAGE=proctor-python-base:bookworm`.
    #[arg(long = "build-arg", value_name = "KEY=VALUE", requires = "build", value_parser = parse_key_value)]
    build_args: Vec<(String, String)>,
    /// Where outputs go; must contain `{execution_id}` and lie under `/artifacts/`
    /// (default: `/artifacts/outputs/NS/NAME/VERSION/{execution_id}/`).
    #[arg(long, value_name = "P")]
    write_prefix: Option<String>,
    /// The inputs payload as JSON text.
    #[arg(long, value_name = "JSON")]
    inputs_json: Option<String>,
    /// A file holding the inputs payload as JSON; `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    inputs_file: Option<PathBuf>,
    /// The inputs of the registry entry's example of this name (`proctor registry show REF`
    /// lists them). With no inputs flag at all, the `smoke` example's.
    #[arg(long, value_name = "NAME")]
    example: Option<String>,
    /// Sets `params.KEY` in the inputs (repeatable; a key given twice keeps the last), as
    /// `cog predict -i` does: VALUE is read as JSON when it is JSON (`3`, `true`, `[1]`,
    /// `{"a":1}`, `"7"`), else taken as a string.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    params: Vec<(String, String)>,
    /// The largest inputs payload read from `--inputs-json` or `--inputs-file`, in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PROCTOR_MAX_INPUTS_BYTES",
        default_value_t = Limits::DEFAULT_MAX_INPUTS_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_inputs_bytes: u64,
    /// The largest envelope read from the processor (its `/run` answer or one
    /// `/run-stream` event), in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PROCTOR_MAX_ENVELOPE_BYTES",
        default_value_t = Limits::default().responses.max_envelope_bytes,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_envelope_bytes: u64,
    /// The largest `/healthz` answer read from the processor, in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PROCTOR_MAX_HEALTH_BYTES",
        default_value_t = Limits::default().responses.max_health_bytes,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_health_bytes: u64,
    /// The largest output file an execution may write, in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PROCTOR_MAX_OUTPUT_BYTES",
        default_value_t = Limits::DEFAULT_MAX_OUTPUT_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_output_bytes: u64,
    /// The largest sum of the output files of one execution, in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PROCTOR_MAX_OUTPUTS_TOTAL_BYTES",
        default_value_t = Limits::DEFAULT_MAX_OUTPUTS_TOTAL_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_outputs_total_bytes: u64,
    /// The most output files one execution may write.
    #[arg(
        long,
        value_name = "N",
        env = "PROCTOR_MAX_OUTPUTS",
        default_value_t = Limits::DEFAULT_MAX_OUTPUTS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_outputs: u64,
    /// Adapter-specific options, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    adapter_opts_json: Option<Value>,
    /// Limit for the run in seconds, from container creation to the envelope; image builds
    /// and pulls are not counted (default: the registry's `runtime.timeout_s`; at most
    /// 604800, 7 days).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    #[command(flatten)]
    artifacts_root: ArtifactsRootArg,
    #[command(flatten)]
    registry_root: RegistryRootArg,
    /// After a success, copy the outputs and the index here, mirroring world paths.
    #[arg(long, value_name = "DIR")]
    save_dir: Option<PathBuf>,
    #[command(flatten)]
    ledger: RunLedgerArgs,
    /// The lane whose rules the run follows: `pr` (`--build`, mock only) or `main` (pinned
    /// images only). Selects no mode.
    #[arg(long, env = "PROCTOR_LANE", value_parser = lane_parser())]
    lane: Option<Lane>,
    /// Answer from the memo cache: when an earlier successful execution of the same
    /// processor, image, mode and inputs still verifies, print its outputs (the envelope's
    /// `memo_source` names it) and start no container. Local adapter only.
    #[arg(long)]
    memo: bool,
    /// A file the inputs refer to as `{"$attach": "NAME"}` (repeatable): stored once in the
    /// World under its content id, and given to the processor read-only.
    #[arg(long = "attach", value_name = "NAME=PATH")]
    attach: Vec<Attachment>,
    /// The largest file `--attach` takes, in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PROCTOR_MAX_ATTACHMENT_BYTES",
        default_value_t = Limits::DEFAULT_MAX_ATTACHMENT_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_attachment_bytes: u64,
}

impl RunArgs {
    /// The validated configuration.
    fn into_config(self, globals: &Globals) -> anyhow::Result<RunConfig> {
        let limits = run_limits(&self);
        let artifacts_root = self.artifacts_root.resolve(globals)?;
        let registry_root = self.registry_root.resolve(globals)?;
        let ledger = self.ledger.into_config(globals);
        Ok(RunConfig {
            processor_ref: self
                .processor_ref
                .or(self.ref_flag)
                .context("a processor REF is required")?,
            adapter: self.adapter,
            mode: match self.mode {
                ModeArg::Mock => Mode::Mock,
                ModeArg::Real => Mode::Real,
            },
            build: self.build,
            build_args: self.build_args.into_iter().collect(),
            cargo_workspace: globals.cargo_workspace(&registry_root),
            write_prefix: self.write_prefix,
            inputs: match (self.inputs_json, self.inputs_file, self.example) {
                (Some(json), _, _) => Inputs::Text(json),
                (None, Some(file), _) if file.as_os_str() == "-" => Inputs::Stdin,
                (None, Some(file), _) => Inputs::File(file),
                (None, None, Some(name)) => Inputs::Example(name),
                (None, None, None) => Inputs::NotGiven,
            },
            params: self.params.into_iter().collect(),
            limits,
            adapter_options: self
                .adapter_opts_json
                .unwrap_or_else(|| Value::Object(Default::default())),
            timeout: self.timeout.map(Duration::from_secs),
            format: globals.format,
            evidence_flags: evidence_flags(globals, &artifacts_root, &ledger.url, &registry_root)?,
            artifacts_root,
            registry_root,
            save_dir: self.save_dir,
            ledger,
            lane: self.lane,
            memo: self.memo,
            attachments: self.attach,
        })
    }
}

/// The run's limits, from their flags.
fn run_limits(run: &RunArgs) -> Limits {
    let mut limits = Limits {
        max_inputs_bytes: run.max_inputs_bytes,
        max_output_bytes: run.max_output_bytes,
        max_outputs_total_bytes: run.max_outputs_total_bytes,
        max_outputs: run.max_outputs,
        max_attachment_bytes: run.max_attachment_bytes,
        ..Limits::default()
    };
    limits.responses.max_envelope_bytes = run.max_envelope_bytes;
    limits.responses.max_health_bytes = run.max_health_bytes;
    limits
}

/// `--adapter`: the engine's adapter kinds, by name.
fn adapter_parser() -> impl TypedValueParser<Value = AdapterKind> {
    PossibleValuesParser::new(AdapterKind::ALL.map(AdapterKind::as_str))
        .try_map(|name| name.parse())
}

/// `--lane` and `PROCTOR_LANE`: the engine's lanes, by name.
pub(crate) fn lane_parser() -> impl TypedValueParser<Value = Lane> {
    PossibleValuesParser::new(Lane::ALL.map(Lane::as_str)).try_map(|name| name.parse())
}

/// `--mode`, kept apart from [`Mode`] so clap lists the two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Mock,
    Real,
}

fn parse_json_object(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("must be a JSON object".to_owned()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    /// A short summary for people.
    Human,
    /// One line of JSON.
    Json,
}

impl OutputFormat {
    fn from_flag(json: bool) -> OutputFormat {
        if json {
            OutputFormat::Json
        } else {
            OutputFormat::Human
        }
    }
}

/// The global flags as every command's configuration needs them.
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    pub(crate) format: OutputFormat,
    /// Absolute: [`find_project_root`] from the working directory.
    pub(crate) project_root: PathBuf,
    /// `--workspace-root` / `PROCTOR_WORKSPACE_ROOT`, absolute, when given.
    workspace_root: Option<PathBuf>,
}

impl Globals {
    /// Resolves the global flags; finds the project root when none is given.
    fn new(global: &GlobalArgs) -> anyhow::Result<Globals> {
        let workspace_root = global.workspace_root.as_deref().map(absolute).transpose()?;
        let project_root = find_project_root(&absolute(Path::new("."))?);
        Ok(Globals {
            format: global.output_format(),
            project_root,
            workspace_root,
        })
    }

    /// `given` made absolute, else `default` below the project root.
    fn path_or_default(&self, given: Option<&Path>, default: &str) -> anyhow::Result<PathBuf> {
        match given {
            Some(path) => absolute(path),
            None => Ok(self.project_root.join(default)),
        }
    }

    /// The Cargo workspace that compiles processors: `--workspace-root`, else the nearest
    /// directory holding a `Cargo.lock` above the registry root.
    fn cargo_workspace(&self, registry_root: &Path) -> PathBuf {
        self.workspace_root
            .clone()
            .unwrap_or_else(|| proctor_engine::workspace_root(registry_root))
    }
}

/// The project root, found as cargo and git find theirs: the nearest of `start` and its
/// ancestors that holds `processors/` or `.proctor/`; `start` itself when none does.
pub(crate) fn find_project_root(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|dir| dir.join("processors").is_dir() || dir.join(".proctor").is_dir())
        .unwrap_or(start)
        .to_path_buf()
}

/// A validated `proctor run`.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
    /// `REF` (or `--ref`) as given; parsed after the CI guard.
    pub(crate) processor_ref: String,
    pub(crate) adapter: AdapterKind,
    pub(crate) mode: Mode,
    pub(crate) build: bool,
    /// `--build-arg`s; a key given twice keeps its last value.
    pub(crate) build_args: BTreeMap<String, String>,
    /// The Cargo workspace that compiles the processor for `--build` (absolute).
    pub(crate) cargo_workspace: PathBuf,
    /// `--write-prefix` before expansion; `None` for the ref's default.
    pub(crate) write_prefix: Option<String>,
    pub(crate) inputs: Inputs,
    /// `-i KEY=VALUE`s; a key given twice keeps its last value.
    pub(crate) params: BTreeMap<String, String>,
    /// `--max-inputs-bytes` / `PROCTOR_MAX_INPUTS_BYTES`.
    pub(crate) limits: Limits,
    pub(crate) adapter_options: Value,
    pub(crate) timeout: Option<Duration>,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) artifacts_root: PathBuf,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
    /// What `verify` and `world cat` need to be told to find this run's evidence
    /// ([`evidence_flags`]), as `(flag, value)`.
    pub(crate) evidence_flags: Vec<(&'static str, String)>,
    pub(crate) save_dir: Option<PathBuf>,
    /// Where and how the run is recorded.
    pub(crate) ledger: RunLedgerConfig,
    /// `--lane` / `PROCTOR_LANE`.
    pub(crate) lane: Option<Lane>,
    /// `--memo`.
    pub(crate) memo: bool,
    /// `--attach`, in the order given.
    pub(crate) attachments: Vec<Attachment>,
}

/// A validated `proctor registry …`.
#[derive(Debug, Clone)]
pub(crate) struct RegistryConfig {
    /// `Some(ref)` for `show`, `None` for `list`.
    pub(crate) show: Option<String>,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
}

/// Where an artifact store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreLocation {
    /// The filesystem store at the artifacts root (absolute), the default.
    ArtifactsRoot(PathBuf),
    /// A location as given: `file://…`, a directory, or `s3://…`.
    Url(String),
}

/// A validated `proctor world …`.
#[derive(Debug, Clone)]
pub(crate) enum WorldConfig {
    /// `world ls`.
    Ls {
        /// The selector as given; parsed as a world path when the command runs.
        selector: String,
        store: StoreLocation,
        format: OutputFormat,
    },
    /// `world cat`.
    Cat {
        /// The path as given; parsed as a world path when the command runs.
        path: String,
        store: StoreLocation,
        /// JSON: the bytes inside one line of JSON instead of as they are.
        format: OutputFormat,
    },
    /// `world sync`.
    Sync {
        execution_id: String,
        from: StoreLocation,
        to: StoreLocation,
        format: OutputFormat,
    },
}

/// A validated `proctor deploy`.
#[derive(Debug, Clone)]
pub(crate) struct DeployConfig {
    pub(crate) target: DeployTarget,
    /// `--ref` as given; `None` for every processor.
    pub(crate) processor_ref: Option<String>,
    pub(crate) dry_run: bool,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
    /// The directory generated apps are written below (the current one), absolute.
    pub(crate) project_root: PathBuf,
    /// Absolute.
    pub(crate) artifacts_root: PathBuf,
    /// How the validation runs are recorded.
    pub(crate) ledger: RunLedgerConfig,
}

/// A validated `proctor drift`.
#[derive(Debug, Clone)]
pub(crate) struct DriftConfig {
    pub(crate) target: DeployTarget,
    /// `--ref` as given; `None` for every processor.
    pub(crate) processor_ref: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
}

/// A validated `proctor secrets plan`.
#[derive(Debug, Clone)]
pub(crate) struct SecretsPlanConfig {
    pub(crate) target: DeployTarget,
    /// `--ref` as given; `None` for every processor.
    pub(crate) processor_ref: Option<String>,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
}

/// What to do.
#[derive(Debug, Clone)]
pub(crate) enum Config {
    Run(Box<RunConfig>),
    Registry(RegistryConfig),
    World(WorldConfig),
    Deploy(DeployConfig),
    Drift(DriftConfig),
    SecretsPlan(SecretsPlanConfig),
    Ledger(LedgerConfig),
    Verify(Box<VerifyConfig>),
    Image(ImageConfig),
    Lane(Box<LaneConfig>),
    Plan(PlanConfig),
    Conform(Box<ConformConfig>),
    New(NewConfig),
    Doctor(DoctorConfig),
    Serve(Box<ServeConfig>),
    Completions {
        shell: clap_complete::Shell,
        format: OutputFormat,
    },
    Man {
        page: String,
        format: OutputFormat,
    },
}

/// The flags that point `proctor verify` and `proctor world cat` at a run's evidence: each
/// of `--artifacts-root`, `--ledger` and `--registry-root` whose value is not the project's
/// default, in that order. A ledger URL that may hold credentials (`user:pass@host`) is left
/// out, so that none is ever printed.
fn evidence_flags(
    globals: &Globals,
    artifacts_root: &Path,
    ledger_url: &str,
    registry_root: &Path,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut flags = Vec::new();
    if artifacts_root
        != (ArtifactsRootArg {
            artifacts_root: None,
        })
        .resolve(globals)?
    {
        flags.push(("--artifacts-root", artifacts_root.display().to_string()));
    }
    let default_ledger = ledger_args::LedgerUrlArg { url: None }.resolve(globals);
    if ledger_url != default_ledger && !ledger_url.contains('@') {
        flags.push(("--ledger", ledger_url.to_owned()));
    }
    if registry_root
        != (RegistryRootArg {
            registry_root: None,
        })
        .resolve(globals)?
    {
        flags.push(("--registry-root", registry_root.display().to_string()));
    }
    Ok(flags)
}

/// `KEY=VALUE` (`--build-arg`, `-i`), split at the first `=`; the key must not be empty.
fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{raw}` is not KEY=VALUE")),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make `{}` absolute", path.display()))
}

impl Cli {
    /// The validated configuration.
    pub(crate) fn into_config(self) -> anyhow::Result<Config> {
        let globals = Globals::new(&self.global)?;
        let format = globals.format;
        Ok(match self.command {
            Command::Run(run) => Config::Run(Box::new(run.into_config(&globals)?)),
            Command::Registry(RegistryCommand::List { common }) => {
                Config::Registry(RegistryConfig {
                    show: None,
                    format,
                    registry_root: common.registry_root.resolve(&globals)?,
                })
            }
            Command::Registry(RegistryCommand::Show {
                processor_ref,
                common,
            }) => Config::Registry(RegistryConfig {
                show: Some(processor_ref),
                format,
                registry_root: common.registry_root.resolve(&globals)?,
            }),
            Command::World(WorldCommand::Ls { selector, store }) => {
                Config::World(WorldConfig::Ls {
                    selector,
                    store: store.resolve(&globals)?,
                    format,
                })
            }
            Command::World(WorldCommand::Cat { path, store }) => Config::World(WorldConfig::Cat {
                path,
                store: store.resolve(&globals)?,
                format,
            }),
            Command::World(WorldCommand::Sync {
                execution_id,
                to,
                from,
                artifacts_root,
            }) => Config::World(WorldConfig::Sync {
                execution_id,
                from: store_location(from.as_deref(), &artifacts_root, &globals)?,
                to: StoreLocation::Url(to),
                format,
            }),
            Command::Deploy(deploy) => Config::Deploy(DeployConfig {
                target: deploy.target,
                processor_ref: deploy.processor_ref,
                dry_run: deploy.dry_run,
                format,
                registry_root: deploy.registry_root.resolve(&globals)?,
                project_root: globals.project_root.clone(),
                artifacts_root: deploy.artifacts_root.resolve(&globals)?,
                ledger: deploy.ledger.into_config(&globals),
            }),
            Command::Drift(drift) => Config::Drift(DriftConfig {
                target: drift.target,
                processor_ref: drift.processor_ref,
                timeout: Duration::from_secs(drift.timeout),
                format,
                registry_root: drift.registry_root.resolve(&globals)?,
            }),
            Command::Secrets(SecretsCommand::Plan {
                target,
                processor_ref,
                registry_root,
            }) => Config::SecretsPlan(SecretsPlanConfig {
                target,
                processor_ref,
                format,
                registry_root: registry_root.resolve(&globals)?,
            }),
            Command::Ledger(ledger) => Config::Ledger(ledger.into_config(&globals)),
            Command::Verify(verify) => Config::Verify(Box::new(verify.into_config(&globals)?)),
            Command::Build(build) => Config::Image(build.into_config(&globals)?),
            Command::Push(push) => Config::Image(push.into_config(&globals)?),
            Command::Pin(pin) => Config::Image(pin.into_config(&globals)?),
            Command::Lane(lane) => Config::Lane(Box::new(lane.into_config(&globals)?)),
            Command::Plan(plan) => Config::Plan(plan.into_config(&globals)?),
            Command::Conform(conform) => Config::Conform(Box::new(conform.into_config(&globals)?)),
            Command::New(new) => Config::New(new.into_config(&globals)?),
            Command::Doctor(doctor) => Config::Doctor(doctor.into_config(&globals)?),
            Command::Serve(serve) => Config::Serve(Box::new(serve.into_config(&globals)?)),
            Command::Completions { shell } => Config::Completions { shell, format },
            Command::Man { page } => Config::Man { page, format },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut argv = vec!["proctor"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.into_config().unwrap())
    }

    const RUN: &[&str] = &[
        "run",
        "--ref",
        "text/stats@1",
        "--adapter",
        "local",
        "--write-prefix",
        "/artifacts/o/{execution_id}",
        "--inputs-json",
        "{}",
    ];

    fn run_config(extra: &[&str]) -> RunConfig {
        let args: Vec<&str> = RUN.iter().chain(extra).copied().collect();
        match parse(&args).unwrap() {
            Config::Run(run) => *run,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn attachments_are_repeated_name_path_pairs_with_a_size_limit() {
        let run = run_config(&[]);
        assert!(run.attachments.is_empty());
        assert_eq!(
            run.limits.max_attachment_bytes,
            Limits::DEFAULT_MAX_ATTACHMENT_BYTES
        );
        let run = run_config(&[
            "--attach",
            "doc=notes.txt",
            "--attach",
            "img=a=b.png",
            "--max-attachment-bytes",
            "10",
        ]);
        let pairs: Vec<(&str, &str)> = run
            .attachments
            .iter()
            .map(|a| (a.name.as_str(), a.path.to_str().unwrap()))
            .collect();
        assert_eq!(pairs, [("doc", "notes.txt"), ("img", "a=b.png")]);
        assert_eq!(run.limits.max_attachment_bytes, 10);
        for bad in [&["--attach", "doc"][..], &["--attach", "doc="]] {
            let args: Vec<&str> = RUN.iter().chain(bad).copied().collect();
            assert_eq!(parse(&args).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn run_defaults_to_mock_and_human_output() {
        let run = run_config(&[]);
        assert_eq!(run.mode, Mode::Mock);
        assert_eq!(run.format, OutputFormat::Human);
        assert_eq!(run.inputs, Inputs::Text("{}".into()));
        assert_eq!(run.adapter_options, serde_json::json!({}));
        assert!(run.artifacts_root.is_absolute() && run.registry_root.is_absolute());
        assert!(run.registry_root.ends_with("processors"));
    }

    #[test]
    fn run_flags_become_config() {
        let run = run_config(&[
            "--mode",
            "real",
            "--json",
            "--timeout",
            "5",
            "--adapter-opts-json",
            r#"{"a":1}"#,
            "--build",
        ]);
        assert_eq!(run.mode, Mode::Real);
        assert_eq!(run.format, OutputFormat::Json);
        assert_eq!(run.timeout, Some(Duration::from_secs(5)));
        assert_eq!(run.adapter_options, serde_json::json!({"a": 1}));
        assert!(run.build);
    }

    #[test]
    fn build_args_need_build_and_keep_the_last_value_of_a_key() {
        assert!(run_config(&[]).build_args.is_empty());
        let run = run_config(&[
            "--build",
            "--build-arg",
            "BASE_IMAGE=a",
            "--build-arg",
            "EMPTY=",
            "--build-arg",
            "BASE_IMAGE=b=c",
        ]);
        assert_eq!(
            run.build_args,
            BTreeMap::from([
                ("BASE_IMAGE".to_owned(), "b=c".to_owned()),
                ("EMPTY".to_owned(), String::new()),
            ])
        );
        for bad in [
            &["--build-arg", "A=1"][..],
            &["--build", "--build-arg", "=1"],
            &["--build", "--build-arg", "A"],
        ] {
            let args: Vec<&str> = RUN.iter().chain(bad).copied().collect();
            assert_eq!(parse(&args).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn limit_flags_become_the_run_limits() {
        assert_eq!(run_config(&[]).limits, Limits::default());
        // Above 7 days parses; the engine refuses it (ERR_INPUTS) before any ledger work.
        assert_eq!(
            run_config(&["--timeout", "18446744073709551615"]).timeout,
            Some(Duration::from_secs(u64::MAX))
        );
        let run = run_config(&[
            "--max-envelope-bytes",
            "1",
            "--max-health-bytes",
            "2",
            "--max-output-bytes",
            "3",
            "--max-outputs-total-bytes",
            "4",
            "--max-outputs",
            "5",
        ]);
        let mut expected = Limits {
            max_output_bytes: 3,
            max_outputs_total_bytes: 4,
            max_outputs: 5,
            ..Limits::default()
        };
        expected.responses.max_envelope_bytes = 1;
        expected.responses.max_health_bytes = 2;
        assert_eq!(run.limits, expected);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let with = |extra: &[&str]| {
            let args: Vec<&str> = RUN.iter().chain(extra).copied().collect();
            parse(&args).unwrap_err().exit_code()
        };
        assert_eq!(with(&["--mode", "dry"]), 2);
        assert_eq!(with(&["--mode", "REAL"]), 2);
        assert_eq!(with(&["--timeout", "0"]), 2);
        for timeout in [
            "99999999999999999999",
            "18446744073709551616",
            "1e999",
            "-1",
            "NaN",
            "1.5",
            "",
        ] {
            assert_eq!(with(&["--timeout", timeout]), 2, "--timeout {timeout:?}");
        }
        for limit in [
            "--max-envelope-bytes",
            "--max-health-bytes",
            "--max-output-bytes",
            "--max-outputs-total-bytes",
            "--max-outputs",
        ] {
            for value in ["0", "-1", "99999999999999999999", "x"] {
                assert_eq!(with(&[limit, value]), 2, "{limit} {value}");
            }
        }
        assert_eq!(with(&["--adapter-opts-json", "[1]"]), 2);
        assert_eq!(with(&["--adapter-opts-json", "{"]), 2);
        assert_eq!(with(&["--inputs-file", "x.json"]), 2);
        assert_eq!(with(&["--example", "smoke"]), 2);
        assert_eq!(with(&["--adapter", "aws"]), 2);
    }

    /// `proctor run` with `args` only.
    fn short_run(args: &[&str]) -> Result<RunConfig, clap::Error> {
        let argv: Vec<&str> = ["run"].iter().chain(args).copied().collect();
        parse(&argv).map(|config| match config {
            Config::Run(run) => *run,
            other => panic!("not a run: {other:?}"),
        })
    }

    #[test]
    fn a_run_needs_only_its_ref_positional_or_flag() {
        for args in [&["llm/litellm@1"][..], &["--ref", "llm/litellm@1"]] {
            let run = short_run(args).unwrap();
            assert_eq!(run.processor_ref, "llm/litellm@1");
            assert_eq!(run.adapter, AdapterKind::Local);
            assert_eq!(run.mode, Mode::Mock);
            assert_eq!(run.write_prefix, None);
            assert_eq!(run.inputs, Inputs::NotGiven);
            assert!(run.params.is_empty());
        }
        let run = short_run(&[
            "a/b@1",
            "--adapter",
            "modal",
            "--write-prefix",
            "/artifacts/x/{execution_id}",
        ])
        .unwrap();
        assert_eq!(run.adapter, AdapterKind::Modal);
        assert_eq!(
            run.write_prefix.as_deref(),
            Some("/artifacts/x/{execution_id}")
        );
        for bad in [&[][..], &["a/b@1", "--ref", "a/b@1"], &["a/b@1", "c/d@1"]] {
            assert_eq!(short_run(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn inputs_come_from_one_source_and_params_go_on_top() {
        let inputs = |args: &[&str]| {
            let args: Vec<&str> = ["a/b@1"].iter().chain(args).copied().collect();
            short_run(&args).map(|run| run.inputs)
        };
        assert_eq!(
            inputs(&["--example", "chat"]).unwrap(),
            Inputs::Example("chat".into())
        );
        assert_eq!(inputs(&["--inputs-file", "-"]).unwrap(), Inputs::Stdin);
        assert_eq!(
            inputs(&["--inputs-file", "./-"]).unwrap(),
            Inputs::File("./-".into())
        );
        assert_eq!(
            inputs(&["--inputs-json", "{}"]).unwrap(),
            Inputs::Text("{}".into())
        );
        for bad in [
            &["--example", "chat", "--inputs-json", "{}"][..],
            &["--example", "chat", "--inputs-file", "-"],
            &["--inputs-json", "{}", "--inputs-file", "-"],
        ] {
            assert_eq!(inputs(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }

        let run = short_run(&[
            "a/b@1",
            "--example",
            "chat",
            "-i",
            "n=1",
            "-i",
            "model=m=2",
            "--input",
            "n=[3]",
            "-i",
            "empty=",
        ])
        .unwrap();
        assert_eq!(run.inputs, Inputs::Example("chat".into()));
        assert_eq!(
            run.params,
            BTreeMap::from([
                ("empty".to_owned(), String::new()),
                ("model".to_owned(), "m=2".to_owned()),
                ("n".to_owned(), "[3]".to_owned()),
            ])
        );
        for bad in [&["a/b@1", "-i", "n"][..], &["a/b@1", "-i", "=1"]] {
            assert_eq!(short_run(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn runs_name_the_flags_that_find_their_evidence_unless_they_are_defaults() {
        let flags = |args: &[&str]| {
            let args: Vec<&str> = ["a/b@1"].iter().chain(args).copied().collect();
            short_run(&args).unwrap().evidence_flags
        };
        assert!(flags(&[]).is_empty());
        assert!(flags(&["--workspace-root", "ws"]).is_empty());
        let given = flags(&[
            "--artifacts-root",
            "/a",
            "--ledger",
            "sqlite:///l.db",
            "--registry-root",
            "/r",
        ]);
        assert_eq!(
            given,
            [
                ("--artifacts-root", "/a".to_owned()),
                ("--ledger", "sqlite:///l.db".to_owned()),
                ("--registry-root", "/r".to_owned()),
            ]
        );
        assert!(
            flags(&["--ledger", "postgres://u:secret@h/db"]).is_empty(),
            "credentials are never printed"
        );
    }

    #[test]
    fn build_runs_compile_in_the_workspace_root_when_one_is_given() {
        let run = short_run(&["a/b@1", "--registry-root", "/r/processors"]).unwrap();
        assert_eq!(
            run.cargo_workspace,
            proctor_engine::workspace_root(Path::new("/r/processors"))
        );
        let run = short_run(&["a/b@1", "--workspace-root", "ws", "--build"]).unwrap();
        assert!(run.cargo_workspace.is_absolute() && run.cargo_workspace.ends_with("ws"));
        match parse(&[
            "plan",
            "apply",
            "p.yaml",
            "--build",
            "--workspace-root",
            "ws",
        ])
        .unwrap()
        {
            Config::Plan(PlanConfig::Apply(apply)) => {
                assert!(
                    apply.cargo_workspace.is_absolute() && apply.cargo_workspace.ends_with("ws")
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["lane", "pr", "--workspace-root", "ws"]).unwrap() {
            Config::Lane(lane) => {
                assert!(lane.cargo_workspace.is_absolute() && lane.cargo_workspace.ends_with("ws"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registry_commands_parse() {
        match parse(&["registry", "show", "llm/litellm@1", "--json"]).unwrap() {
            Config::Registry(config) => {
                assert_eq!(config.show.as_deref(), Some("llm/litellm@1"));
                assert_eq!(config.format, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["registry", "list"]).unwrap() {
            Config::Registry(config) => assert_eq!(config.show, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn world_commands_default_to_the_artifacts_root() {
        match parse(&["world", "ls", "/artifacts/", "--artifacts-root", "arts"]).unwrap() {
            Config::World(WorldConfig::Ls {
                selector,
                store: StoreLocation::ArtifactsRoot(root),
                format: OutputFormat::Human,
            }) => {
                assert_eq!(selector, "/artifacts/");
                assert!(root.is_absolute() && root.ends_with("arts"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["world", "cat", "/artifacts/a", "--store", "s3://b/p"]).unwrap() {
            Config::World(WorldConfig::Cat { path, store, .. }) => {
                assert_eq!(path, "/artifacts/a");
                assert_eq!(store, StoreLocation::Url("s3://b/p".into()));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["world", "sync", "e1", "--to", "s3://b", "--json"]).unwrap() {
            Config::World(WorldConfig::Sync {
                execution_id,
                from: StoreLocation::ArtifactsRoot(root),
                to,
                format: OutputFormat::Json,
            }) => {
                assert_eq!(execution_id, "e1");
                assert!(root.ends_with(".proctor/artifacts"));
                assert_eq!(to, StoreLocation::Url("s3://b".into()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&["world", "sync", "e1"]).unwrap_err().exit_code(),
            2,
            "--to is required"
        );
    }

    #[test]
    fn deploy_target_commands_parse() {
        match parse(&["deploy", "--target", "modal", "--dry-run"]).unwrap() {
            Config::Deploy(config) => {
                assert_eq!(config.target, DeployTarget::Modal);
                assert_eq!(config.processor_ref, None);
                assert!(config.dry_run && config.project_root.is_absolute());
            }
            other => panic!("{other:?}"),
        }
        match parse(&["drift", "--ref", "a/b@1", "--json"]).unwrap() {
            Config::Drift(config) => {
                assert_eq!(config.target, DeployTarget::Modal);
                assert_eq!(config.processor_ref.as_deref(), Some("a/b@1"));
                assert_eq!(config.timeout, Duration::from_secs(10));
                assert_eq!(config.format, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["secrets", "plan", "--target", "modal"]).unwrap() {
            Config::SecretsPlan(config) => assert_eq!(config.format, OutputFormat::Human),
            other => panic!("{other:?}"),
        }
        for bad in [
            &["deploy", "--dry-run"][..],
            &["deploy", "--target", "aws"],
            &["drift", "--timeout", "0"],
            &["secrets", "plan"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
