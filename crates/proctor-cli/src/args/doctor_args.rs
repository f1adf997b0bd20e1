//! Arguments of `proctor doctor` and the validated configuration they become. Pure, like
//! the rest of the argument parsing: only the documented `env` fallbacks are read.

use clap::Args;
use proctor_engine::DoctorRequest;
use proctor_oci::RegistryTarget;

use super::lane_args::{DEFAULT_LANE_REGISTRY, parse_registry_target};
use super::ledger_args::LedgerUrlArg;
use super::{ArtifactsRootArg, Globals, OutputFormat, RegistryRootArg};

/// `proctor doctor`.
#[derive(Debug, Args)]
pub(super) struct DoctorArgs {
    /// The OCI registry whose `/v2/` must answer, `HOST/OWNER/REPO`: where `lane main`
    /// pushes.
    #[arg(
        long,
        value_name = "HOST/OWNER/REPO",
        env = "PROCTOR_LANE_REGISTRY",
        default_value = DEFAULT_LANE_REGISTRY,
        value_parser = parse_registry_target
    )]
    registry: RegistryTarget,
    #[command(flatten)]
    registry_root: RegistryRootArg,
    #[command(flatten)]
    artifacts_root: ArtifactsRootArg,
    #[command(flatten)]
    ledger: LedgerUrlArg,
    /// Also check that every chain still holds the head of the ledger's latest signed
    /// checkpoint, with this Ed25519 public key (as `ledger verify --public-key`).
    #[arg(long, value_name = "PATH_OR_PEM", env = "PROCTOR_LEDGER_PUBLIC_KEY")]
    public_key: Option<String>,
}

/// A validated `proctor doctor`.
#[derive(Debug, Clone)]
pub(crate) struct DoctorConfig {
    /// What to check; `env` is filled in when the command runs.
    pub(crate) request: DoctorRequest,
    pub(crate) format: OutputFormat,
}

impl DoctorArgs {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<DoctorConfig> {
        Ok(DoctorConfig {
            request: DoctorRequest {
                registry_root: self.registry_root.resolve(globals)?,
                artifacts_root: self.artifacts_root.resolve(globals)?,
                ledger_url: self.ledger.resolve(globals),
                ledger_public_key: self.public_key,
                oci_registry: self.registry,
                env: Default::default(),
            },
            format: globals.format,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Config};
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let argv = std::iter::once("proctor").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.into_config().unwrap())
    }

    #[test]
    fn doctor_takes_the_lane_registry_and_the_project_paths() {
        match parse(&["doctor", "--json"]).unwrap() {
            Config::Doctor(config) => {
                assert_eq!(config.format, OutputFormat::Json);
                assert!(config.request.registry_root.ends_with("processors"));
                assert!(
                    config
                        .request
                        .artifacts_root
                        .ends_with(".proctor/artifacts")
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["doctor", "--registry", "ghcr.io/acme/proctor"]).unwrap() {
            Config::Doctor(config) => {
                assert_eq!(config.request.oci_registry.host(), "ghcr.io");
                assert_eq!(config.format, OutputFormat::Human);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&["doctor", "--registry", "no-path"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
