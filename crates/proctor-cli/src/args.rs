//! Command-line arguments, and the validated configuration they become before anything
//! runs. Parsing here is pure: no file is read and no environment variable is consulted
//! except the documented `env` fallbacks of path flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use proctor_contract::Mode;
use serde_json::Value;

/// Run containerized processors and keep checkable evidence of every run.
///
/// Exit codes: 0 success; 1 internal error; 2 usage error; 10 and above a canonical error
/// (`ERR_…`, see the README).
#[derive(Debug, Parser)]
#[command(name = "proctor", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one processor and print its envelope.
    Run(Box<RunArgs>),
    /// Inspect the processor registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
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
    /// Print one line of JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The registry root holding `<ns>/<name>/<version>/registry.yaml`.
    #[arg(
        long,
        value_name = "DIR",
        env = "PROCTOR_REGISTRY_ROOT",
        default_value = "./processors"
    )]
    registry_root: PathBuf,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("inputs").required(true).args(["inputs_json", "inputs_file"])))]
struct RunArgs {
    /// The processor, `ns/name@version` (e.g. `llm/litellm@1`).
    #[arg(long = "ref", value_name = "REF")]
    processor_ref: String,
    /// Where the processor runs.
    #[arg(long, value_enum)]
    adapter: AdapterKind,
    /// `mock` is hermetic and deterministic; `real` uses secrets and the network.
    #[arg(long, value_enum, default_value_t = ModeArg::Mock)]
    mode: ModeArg,
    /// Build the image from source instead of running the pinned digest.
    #[arg(long)]
    build: bool,
    /// Where outputs go; must contain `{execution_id}` and lie under `/artifacts/`.
    #[arg(long, value_name = "P")]
    write_prefix: String,
    /// The inputs payload as JSON text.
    #[arg(long, value_name = "JSON")]
    inputs_json: Option<String>,
    /// A file holding the inputs payload as JSON.
    #[arg(long, value_name = "FILE")]
    inputs_file: Option<PathBuf>,
    /// Adapter-specific options, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    adapter_opts_json: Option<Value>,
    /// Limit for the run in seconds, from container creation to the envelope; image builds
    /// and pulls are not counted (default: the registry's `runtime.timeout_s`).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Print only the envelope, as one line of JSON, on stdout.
    #[arg(long)]
    json: bool,
    /// Host directory backing the world's `/artifacts/`.
    #[arg(
        long,
        value_name = "DIR",
        env = "PROCTOR_ARTIFACTS_ROOT",
        default_value = "./.proctor/artifacts"
    )]
    artifacts_root: PathBuf,
    /// The registry root holding `<ns>/<name>/<version>/registry.yaml`.
    #[arg(
        long,
        value_name = "DIR",
        env = "PROCTOR_REGISTRY_ROOT",
        default_value = "./processors"
    )]
    registry_root: PathBuf,
    /// After a success, copy the outputs and the index here, mirroring world paths.
    #[arg(long, value_name = "DIR")]
    save_dir: Option<PathBuf>,
}

/// The adapters `--adapter` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AdapterKind {
    /// The Docker engine on this machine.
    Local,
    /// Modal's cloud (not available yet).
    Modal,
}

impl AdapterKind {
    /// The name given to `--adapter`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Local => "local",
            AdapterKind::Modal => "modal",
        }
    }
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

/// Where the inputs payload comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputsSource {
    /// `--inputs-json`.
    Inline(String),
    /// `--inputs-file`.
    File(PathBuf),
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

/// A validated `proctor run`.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
    /// `--ref` as given; parsed after the CI guard.
    pub(crate) processor_ref: String,
    pub(crate) adapter: AdapterKind,
    pub(crate) mode: Mode,
    pub(crate) build: bool,
    /// `--write-prefix` before expansion.
    pub(crate) write_prefix: String,
    pub(crate) inputs: InputsSource,
    pub(crate) adapter_options: Value,
    pub(crate) timeout: Option<Duration>,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) artifacts_root: PathBuf,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
    pub(crate) save_dir: Option<PathBuf>,
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

/// What to do.
#[derive(Debug, Clone)]
pub(crate) enum Config {
    Run(Box<RunConfig>),
    Registry(RegistryConfig),
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make `{}` absolute", path.display()))
}

impl Cli {
    /// The validated configuration.
    pub(crate) fn into_config(self) -> anyhow::Result<Config> {
        Ok(match self.command {
            Command::Run(run) => Config::Run(Box::new(RunConfig {
                processor_ref: run.processor_ref,
                adapter: run.adapter,
                mode: match run.mode {
                    ModeArg::Mock => Mode::Mock,
                    ModeArg::Real => Mode::Real,
                },
                build: run.build,
                write_prefix: run.write_prefix,
                inputs: match (run.inputs_json, run.inputs_file) {
                    (Some(json), _) => InputsSource::Inline(json),
                    (None, Some(file)) => InputsSource::File(file),
                    (None, None) => {
                        anyhow::bail!("one of --inputs-json and --inputs-file is required")
                    }
                },
                adapter_options: run
                    .adapter_opts_json
                    .unwrap_or_else(|| Value::Object(Default::default())),
                timeout: run.timeout.map(Duration::from_secs),
                format: OutputFormat::from_flag(run.json),
                artifacts_root: absolute(&run.artifacts_root)?,
                registry_root: absolute(&run.registry_root)?,
                save_dir: run.save_dir,
            })),
            Command::Registry(RegistryCommand::List { common }) => {
                Config::Registry(RegistryConfig {
                    show: None,
                    format: OutputFormat::from_flag(common.json),
                    registry_root: absolute(&common.registry_root)?,
                })
            }
            Command::Registry(RegistryCommand::Show {
                processor_ref,
                common,
            }) => Config::Registry(RegistryConfig {
                show: Some(processor_ref),
                format: OutputFormat::from_flag(common.json),
                registry_root: absolute(&common.registry_root)?,
            }),
        })
    }

    /// The output format asked for, known even when the configuration is not valid.
    pub(crate) fn format(&self) -> OutputFormat {
        match &self.command {
            Command::Run(run) => OutputFormat::from_flag(run.json),
            Command::Registry(RegistryCommand::List { common })
            | Command::Registry(RegistryCommand::Show { common, .. }) => {
                OutputFormat::from_flag(common.json)
            }
        }
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
    fn run_defaults_to_mock_and_human_output() {
        let run = run_config(&[]);
        assert_eq!(run.mode, Mode::Mock);
        assert_eq!(run.format, OutputFormat::Human);
        assert_eq!(run.inputs, InputsSource::Inline("{}".into()));
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
    fn bad_flags_are_usage_errors() {
        let with = |extra: &[&str]| {
            let args: Vec<&str> = RUN.iter().chain(extra).copied().collect();
            parse(&args).unwrap_err().exit_code()
        };
        assert_eq!(with(&["--mode", "dry"]), 2);
        assert_eq!(with(&["--mode", "REAL"]), 2);
        assert_eq!(with(&["--timeout", "0"]), 2);
        assert_eq!(with(&["--adapter-opts-json", "[1]"]), 2);
        assert_eq!(with(&["--adapter-opts-json", "{"]), 2);
        assert_eq!(with(&["--inputs-file", "x.json"]), 2);
        assert_eq!(
            parse(&["run", "--ref", "a/b@1"]).unwrap_err().exit_code(),
            2
        );
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
}
