//! Arguments of the commands that take a processor from source to an accepted pin —
//! `build`, `push`, `pin`, `lane pr` and `lane main` — and the validated configurations they
//! become. Like the rest of the argument parsing this is pure: only the documented `env`
//! fallbacks are read.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use proctor_contract::Platform;
use proctor_engine::{Lane, LaneChain, LaneRequest, LaneStep, MainLaneSettings};
use proctor_oci::RegistryTarget;
use serde_json::Value;

use super::ledger_args::RunLedgerArgs;
use super::{ArtifactsRootArg, Globals, OutputFormat, RegistryRootArg, parse_json_object};

/// The registry `proctor lane main` pushes to when neither `--registry` nor
/// `PROCTOR_LANE_REGISTRY` names one: the loopback registry `scripts/setup.sh` starts.
pub(super) const DEFAULT_LANE_REGISTRY: &str = "127.0.0.1:5000/proctor/lane";

/// `--oci-root`: where built image layouts live.
#[derive(Debug, Args)]
struct OciRootArg {
    /// Directory holding the built image layouts, one per processor version (default:
    /// `.proctor/oci/` in the project root).
    #[arg(long, value_name = "DIR", env = "PROCTOR_OCI_ROOT")]
    oci_root: Option<PathBuf>,
}

impl OciRootArg {
    fn resolve(&self, globals: &Globals) -> anyhow::Result<PathBuf> {
        globals.path_or_default(self.oci_root.as_deref(), ".proctor/oci")
    }
}

/// `--platform linux/amd64,linux/arm64`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlatformList(Vec<Platform>);

fn parse_platforms(raw: &str) -> Result<PlatformList, String> {
    Platform::parse_list(raw)
        .map(PlatformList)
        .map_err(|e| e.to_string())
}

pub(super) fn parse_registry_target(raw: &str) -> Result<RegistryTarget, String> {
    raw.parse()
        .map_err(|e: proctor_oci::InvalidRegistry| e.to_string())
}

/// `proctor build`.
#[derive(Debug, Args)]
pub(super) struct BuildArgs {
    /// The processor, `ns/name@version`.
    #[arg(long = "ref", value_name = "REF")]
    processor_ref: String,
    /// The platforms to build, comma-separated; a pin needs both.
    #[arg(
        long,
        value_name = "PLATFORMS",
        default_value = "linux/amd64,linux/arm64",
        value_parser = parse_platforms
    )]
    platform: PlatformList,
    #[command(flatten)]
    registry_root: RegistryRootArg,
    #[command(flatten)]
    oci_root: OciRootArg,
}

/// `proctor push`.
#[derive(Debug, Args)]
pub(super) struct PushArgs {
    /// The processor, `ns/name@version`, built with `proctor build`.
    #[arg(long = "ref", value_name = "REF")]
    processor_ref: String,
    /// Where to push, `HOST/OWNER/REPO`; the image goes to `HOST/OWNER/REPO/<ns>-<name>`
    /// (credentials: `PROCTOR_REGISTRY_USERNAME` / `PROCTOR_REGISTRY_PASSWORD`, else the
    /// docker config).
    #[arg(long, value_name = "HOST/OWNER/REPO", value_parser = parse_registry_target)]
    registry: RegistryTarget,
    /// The lane; the pr lane never pushes.
    #[arg(long, env = "PROCTOR_LANE", value_parser = super::lane_parser())]
    lane: Option<Lane>,
    #[command(flatten)]
    oci_root: OciRootArg,
}

/// `proctor pin`.
#[derive(Debug, Args)]
pub(super) struct PinArgs {
    /// The processor, `ns/name@version`.
    #[arg(long = "ref", value_name = "REF")]
    processor_ref: String,
    /// Read the image index from `HOST/OWNER/REPO/<ns>-<name>` (by the digest of the last
    /// push there, else by the version tag). Default: where the last `proctor push` of the
    /// built layout went.
    #[arg(long, value_name = "HOST/OWNER/REPO", value_parser = parse_registry_target)]
    registry: Option<RegistryTarget>,
    /// The lane; the pr lane never pins.
    #[arg(long, env = "PROCTOR_LANE", value_parser = super::lane_parser())]
    lane: Option<Lane>,
    #[command(flatten)]
    registry_root: RegistryRootArg,
    #[command(flatten)]
    oci_root: OciRootArg,
}

/// `proctor lane …`.
#[derive(Debug, Subcommand)]
pub(super) enum LaneCommand {
    /// The pull-request chain: each processor built from source and run twice on its smoke
    /// inputs in mock mode, checking envelope, index, receipts and byte-stability. No
    /// registry, no secrets.
    Pr(LanePrArgs),
    /// The main-branch chain, serialized: Build & Pin (both platforms, push, pin in
    /// registry.yaml) → Acceptance (smoke inputs, mock mode, pinned images) → Deploy → Drift.
    /// Stops at the first failing step with its canonical error.
    Main(LaneMainArgs),
}

/// What both lane chains take.
#[derive(Debug, Args)]
struct LaneCommonArgs {
    /// A processor, `ns/name@version`; repeat for several (default: every processor in the
    /// registry for `pr`, every Cargo processor for `main`, which names those it leaves out).
    #[arg(long = "ref", value_name = "REF")]
    processor_refs: Vec<String>,
    /// Must name the same lane as the command when given; `PROCTOR_LANE` set for a whole
    /// job keeps the other chain from running there.
    #[arg(long, env = "PROCTOR_LANE", value_parser = super::lane_parser())]
    lane: Option<Lane>,
    /// Adapter options for every smoke run, a JSON object (as `run --adapter-opts-json`).
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    adapter_opts_json: Option<Value>,
    #[command(flatten)]
    registry_root: RegistryRootArg,
    #[command(flatten)]
    artifacts_root: ArtifactsRootArg,
    /// Where and how the smoke runs are recorded, as `proctor run` records them.
    #[command(flatten)]
    ledger: RunLedgerArgs,
}

/// `proctor lane pr`.
#[derive(Debug, Args)]
pub(super) struct LanePrArgs {
    #[command(flatten)]
    common: LaneCommonArgs,
}

/// `proctor lane main`.
#[derive(Debug, Args)]
pub(super) struct LaneMainArgs {
    #[command(flatten)]
    common: LaneCommonArgs,
    /// Where Build & Pin pushes, `HOST/OWNER/REPO`.
    #[arg(
        long,
        value_name = "HOST/OWNER/REPO",
        env = "PROCTOR_LANE_REGISTRY",
        default_value = DEFAULT_LANE_REGISTRY,
        value_parser = parse_registry_target
    )]
    registry: RegistryTarget,
    /// The first step to run; earlier ones are not run (e.g. `deploy` after a run that
    /// stopped `--until acceptance` and committed its pins).
    #[arg(long, value_name = "STEP", default_value = "build-pin", value_parser = main_step_parser())]
    from: LaneStep,
    /// The last step to run; later ones are reported as not run.
    #[arg(long, value_name = "STEP", default_value = "drift", value_parser = main_step_parser())]
    until: LaneStep,
    #[command(flatten)]
    oci_root: OciRootArg,
}

/// `--from` and `--until`: the main chain's steps, by name (`build-pin`, `acceptance`,
/// `deploy`, `drift`).
fn main_step_parser() -> impl TypedValueParser<Value = LaneStep> {
    PossibleValuesParser::new(LaneStep::MAIN.map(LaneStep::as_str)).try_map(|name| name.parse())
}

/// A validated `build`, `push` or `pin`.
#[derive(Debug, Clone)]
pub(crate) enum ImageConfig {
    /// `proctor build`.
    Build(BuildConfig),
    /// `proctor push`.
    Push(PushConfig),
    /// `proctor pin`.
    Pin(PinConfig),
}

/// A validated `proctor build`.
#[derive(Debug, Clone)]
pub(crate) struct BuildConfig {
    /// `--ref` as given.
    pub(crate) processor_ref: String,
    pub(crate) platforms: Vec<Platform>,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
    /// Absolute.
    pub(crate) oci_root: PathBuf,
    /// Absolute.
    pub(crate) workspace_root: PathBuf,
}

/// A validated `proctor push`.
#[derive(Debug, Clone)]
pub(crate) struct PushConfig {
    /// `--ref` as given.
    pub(crate) processor_ref: String,
    pub(crate) registry: RegistryTarget,
    pub(crate) lane: Option<Lane>,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) oci_root: PathBuf,
}

/// A validated `proctor pin`.
#[derive(Debug, Clone)]
pub(crate) struct PinConfig {
    /// `--ref` as given.
    pub(crate) processor_ref: String,
    pub(crate) registry: Option<RegistryTarget>,
    pub(crate) lane: Option<Lane>,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
    /// Absolute.
    pub(crate) oci_root: PathBuf,
}

/// A validated `proctor lane pr|main`: the engine's request, and the World it runs in.
#[derive(Debug, Clone)]
pub(crate) struct LaneConfig {
    pub(crate) request: LaneRequest,
    pub(crate) format: OutputFormat,
    /// Absolute.
    pub(crate) registry_root: PathBuf,
    /// Absolute.
    pub(crate) artifacts_root: PathBuf,
    /// The Cargo workspace that compiles the `pr` lane's processors (absolute).
    pub(crate) cargo_workspace: PathBuf,
    /// `--ledger`.
    pub(crate) ledger_url: String,
}

impl BuildArgs {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<ImageConfig> {
        let registry_root = self.registry_root.resolve(globals)?;
        Ok(ImageConfig::Build(BuildConfig {
            processor_ref: self.processor_ref,
            platforms: self.platform.0,
            format: globals.format,
            workspace_root: globals.cargo_workspace(&registry_root),
            registry_root,
            oci_root: self.oci_root.resolve(globals)?,
        }))
    }
}

impl PushArgs {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<ImageConfig> {
        Ok(ImageConfig::Push(PushConfig {
            processor_ref: self.processor_ref,
            registry: self.registry,
            lane: self.lane,
            format: globals.format,
            oci_root: self.oci_root.resolve(globals)?,
        }))
    }
}

impl PinArgs {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<ImageConfig> {
        Ok(ImageConfig::Pin(PinConfig {
            processor_ref: self.processor_ref,
            registry: self.registry,
            lane: self.lane,
            format: globals.format,
            registry_root: self.registry_root.resolve(globals)?,
            oci_root: self.oci_root.resolve(globals)?,
        }))
    }
}

impl LaneCommonArgs {
    fn into_config(self, chain: LaneChain, globals: &Globals) -> anyhow::Result<LaneConfig> {
        let format = globals.format;
        let ledger = self.ledger.into_config(globals);
        Ok(LaneConfig {
            request: LaneRequest {
                chain,
                job_lane: self.lane,
                processor_refs: self.processor_refs,
                adapter_options: self
                    .adapter_opts_json
                    .unwrap_or_else(|| Value::Object(Default::default())),
                plan: ledger.plan,
                reserve_micro_usd: ledger.reserve_micro_usd,
            },
            format,
            cargo_workspace: globals.cargo_workspace(&self.registry_root.resolve(globals)?),
            registry_root: self.registry_root.resolve(globals)?,
            artifacts_root: self.artifacts_root.resolve(globals)?,
            ledger_url: ledger.url,
        })
    }
}

impl LaneCommand {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<LaneConfig> {
        match self {
            LaneCommand::Pr(args) => args.common.into_config(LaneChain::Pr, globals),
            LaneCommand::Main(args) => {
                let registry_root = args.common.registry_root.resolve(globals)?;
                let main = MainLaneSettings {
                    registry: args.registry,
                    from: args.from,
                    until: args.until,
                    oci_root: args.oci_root.resolve(globals)?,
                    workspace_root: globals.cargo_workspace(&registry_root),
                    project_root: globals.project_root.clone(),
                };
                args.common.into_config(LaneChain::Main(main), globals)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Config};

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut argv = vec!["proctor"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.into_config().unwrap())
    }

    #[test]
    fn build_defaults_to_both_platforms_under_dot_proctor() {
        match parse(&["build", "--ref", "text/stats@1"]).unwrap() {
            Config::Image(ImageConfig::Build(build)) => {
                assert_eq!(build.platforms, Platform::ALL.to_vec());
                assert_eq!(build.format, OutputFormat::Human);
                assert!(build.oci_root.is_absolute() && build.oci_root.ends_with(".proctor/oci"));
                assert!(build.workspace_root.is_absolute());
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "build",
            "--ref",
            "a/b@1",
            "--platform",
            "linux/amd64",
            "--json",
        ])
        .unwrap()
        {
            Config::Image(ImageConfig::Build(build)) => {
                assert_eq!(build.platforms, vec![Platform::Amd64]);
                assert_eq!(build.format, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn push_and_pin_take_a_registry_target() {
        match parse(&[
            "push",
            "--ref",
            "a/b@1",
            "--registry",
            "ghcr.io/acme/proctor",
        ])
        .unwrap()
        {
            Config::Image(ImageConfig::Push(push)) => {
                assert_eq!(push.registry.to_string(), "ghcr.io/acme/proctor");
                assert_eq!(push.lane, None);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["pin", "--ref", "a/b@1", "--lane", "main"]).unwrap() {
            Config::Image(ImageConfig::Pin(pin)) => {
                assert_eq!(pin.registry, None);
                assert_eq!(pin.lane, Some(Lane::Main));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lane_main_defaults_to_the_whole_chain_on_the_loopback_registry() {
        match parse(&["lane", "main", "--ref", "a/b@1", "--ref", "c/d@2"]).unwrap() {
            Config::Lane(lane) => {
                let request = &lane.request;
                assert_eq!(request.chain.lane(), Lane::Main);
                assert_eq!(request.processor_refs, ["a/b@1", "c/d@2"]);
                assert_eq!(request.adapter_options, serde_json::json!({}));
                assert_eq!(
                    (request.plan.as_str(), request.reserve_micro_usd),
                    ("default", 0)
                );
                let LaneChain::Main(main) = &request.chain else {
                    panic!("{request:?}")
                };
                assert_eq!(main.registry.to_string(), DEFAULT_LANE_REGISTRY);
                assert_eq!(
                    (main.from, main.until),
                    (LaneStep::BuildPin, LaneStep::Drift)
                );
                assert!(main.project_root.is_absolute());
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "lane", "main", "--from", "deploy", "--until", "deploy", "--plan", "ci",
        ])
        .unwrap()
        {
            Config::Lane(lane) => {
                let LaneChain::Main(main) = &lane.request.chain else {
                    panic!("{lane:?}")
                };
                assert_eq!(
                    (main.from, main.until),
                    (LaneStep::Deploy, LaneStep::Deploy)
                );
                assert_eq!(lane.request.plan, "ci");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["lane", "pr", "--json", "--lane", "pr"]).unwrap() {
            Config::Lane(lane) => {
                let request = &lane.request;
                assert_eq!(
                    (request.chain.lane(), request.job_lane),
                    (Lane::Pr, Some(Lane::Pr))
                );
                assert!(request.processor_refs.is_empty());
                assert_eq!(lane.format, OutputFormat::Json);
                assert!(lane.registry_root.is_absolute() && lane.artifacts_root.is_absolute());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["build", "--ref", "a/b@1", "--platform", "linux/s390x"][..],
            &["build", "--ref", "a/b@1", "--platform", ""],
            &["push", "--ref", "a/b@1"],
            &["push", "--ref", "a/b@1", "--registry", "acme/proctor"],
            &["pin", "--ref", "a/b@1", "--registry", "ghcr.io/Acme/x"],
            &["lane", "main", "--until", "smoke"],
            &["lane", "main", "--lane", "real"],
            &["lane", "pr", "--registry", "ghcr.io/acme/proctor"],
            &["lane", "pr", "--adapter-opts-json", "[]"],
            &["lane"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
