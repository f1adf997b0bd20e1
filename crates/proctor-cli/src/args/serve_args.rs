//! Arguments of `proctor serve` and the validated configuration they become. Pure, like the
//! rest of the argument parsing: only the documented `env` fallbacks are read.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use proctor_engine::{EngineConfig, Limits};

use super::ledger_args::LedgerUrlArg;
use super::{ArtifactsRootArg, Globals, OutputFormat, RegistryRootArg, parse_key_value};

/// The project's state directory, below the project root: the token file lives there.
const STATE_DIR: &str = ".proctor";

/// `proctor serve`.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Where to listen, `IP:PORT` (loopback by default; port 0 picks a free one, and the
    /// printed URL names it).
    #[arg(long, value_name = "ADDR", default_value = proctor_server::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// How many submitted runs execute at once; later submissions wait their turn in the
    /// order they came (a plan's transitions are bounded by its own `max_parallel`).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_running: u16,
    /// Keep up to N warm containers per image: a container serves later runs of the same
    /// image, mode, environment and adapter options, and all are removed at shutdown. 0
    /// gives every run a fresh container.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=64))]
    warm_per_image: u8,
    #[command(flatten)]
    registry_root: RegistryRootArg,
    #[command(flatten)]
    artifacts_root: ArtifactsRootArg,
    #[command(flatten)]
    ledger: LedgerUrlArg,
    /// A build argument of the Dockerfile builds of submitted `build` runs, as `docker
    /// build` takes it (repeatable), e.g. `BASE_IMAGE=proctor-python-base:bookworm`.
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    build_args: Vec<(String, String)>,
    /// Replace the token in `.proctor/serve-token` with a fresh one, print it and exit
    /// without serving; a running server accepts only the new token from its next request.
    #[arg(long)]
    rotate_token: bool,
}

/// A validated `proctor serve`.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    /// What the server runs with; `engine.env` is filled in when the command runs.
    pub(crate) server: proctor_server::ServeConfig,
    /// `--rotate-token`: rotate, print, exit.
    pub(crate) rotate_token: bool,
    pub(crate) format: OutputFormat,
}

impl ServeArgs {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<ServeConfig> {
        let registry_root = self.registry_root.resolve(globals)?;
        Ok(ServeConfig {
            server: proctor_server::ServeConfig {
                addr: self.addr,
                engine: EngineConfig {
                    artifacts_root: self.artifacts_root.resolve(globals)?,
                    ledger_url: self.ledger.resolve(globals),
                    env: Default::default(),
                    limits: Limits::default(),
                    registry_root: registry_root.clone(),
                },
                cargo_workspace: globals.cargo_workspace(&registry_root),
                build_args: self.build_args.into_iter().collect(),
                state_dir: state_dir(globals),
                max_running: usize::from(self.max_running),
                warm_per_kind: usize::from(self.warm_per_image),
            },
            rotate_token: self.rotate_token,
            format: globals.format,
        })
    }
}

/// `.proctor` in the project root.
fn state_dir(globals: &Globals) -> PathBuf {
    globals.project_root.join(STATE_DIR)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser;

    use super::super::{Cli, Config};
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let argv = std::iter::once("proctor").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.into_config().unwrap())
    }

    fn serve_config(args: &[&str]) -> ServeConfig {
        match parse(args).unwrap() {
            Config::Serve(config) => *config,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn serve_defaults_to_loopback_four_runs_and_one_warm_container() {
        let config = serve_config(&["serve"]);
        let server = &config.server;
        assert_eq!(server.addr.to_string(), proctor_server::DEFAULT_ADDR);
        assert!(server.addr.ip().is_loopback());
        assert_eq!(server.max_running, 4);
        assert_eq!(server.warm_per_kind, 1);
        assert!(server.build_args.is_empty());
        assert!(!config.rotate_token);
        assert_eq!(config.format, OutputFormat::Human);
        assert!(server.state_dir.is_absolute() && server.state_dir.ends_with(".proctor"));
        assert!(server.engine.registry_root.ends_with("processors"));
        assert!(server.engine.artifacts_root.ends_with(".proctor/artifacts"));
        assert!(server.engine.ledger_url.starts_with("sqlite://"));
        assert!(
            server.engine.env.is_empty(),
            "the environment is read when the command runs"
        );
    }

    #[test]
    fn serve_flags_become_the_server_config() {
        let config = serve_config(&[
            "serve",
            "--json",
            "--addr",
            "127.0.0.1:0",
            "--max-running",
            "2",
            "--warm-per-image",
            "0",
            "--ledger",
            "sqlite:///tmp/l.db",
            "--build-arg",
            "BASE_IMAGE=a",
            "--build-arg",
            "BASE_IMAGE=b",
            "--rotate-token",
        ]);
        assert_eq!(config.format, OutputFormat::Json);
        assert!(config.rotate_token);
        assert_eq!(config.server.addr.port(), 0);
        assert_eq!(config.server.max_running, 2);
        assert_eq!(config.server.warm_per_kind, 0);
        assert_eq!(config.server.engine.ledger_url, "sqlite:///tmp/l.db");
        assert_eq!(
            config.server.build_args,
            BTreeMap::from([("BASE_IMAGE".to_owned(), "b".to_owned())])
        );
    }

    #[test]
    fn bad_serve_flags_are_usage_errors() {
        for bad in [
            &["serve", "--addr", "localhost"][..],
            &["serve", "--addr", "127.0.0.1"],
            &["serve", "--max-running", "0"],
            &["serve", "--warm-per-image", "65"],
            &["serve", "--build-arg", "NOEQUALS"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
