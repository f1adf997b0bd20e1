//! Arguments of the ledger's commands, and the validated configuration they become: the
//! ledger flags of `proctor run`, `proctor ledger show|verify|budget` and `proctor verify`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use proctor_engine::RecoverScope;
use proctor_ledger::DEFAULT_LEDGER_URL;

use super::{
    ArtifactsRootArg, Globals, OutputFormat, RegistryRootArg, StoreLocation, store_location,
};

/// `--ledger`, shared by `run`, `ledger …`, `verify` and `plan …`.
#[derive(Debug, Args)]
pub(super) struct LedgerUrlArg {
    /// The ledger: `sqlite://PATH` (relative to the working directory; `sqlite:///abs` for
    /// an absolute path) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (default:
    /// `.proctor/ledger.db` in the project root).
    #[arg(long = "ledger", value_name = "URL", env = "PROCTOR_LEDGER_URL")]
    pub(super) url: Option<String>,
}

impl LedgerUrlArg {
    /// The URL given, else the project's SQLite ledger.
    pub(super) fn resolve(self, globals: &Globals) -> String {
        self.url.unwrap_or_else(|| {
            let relative = DEFAULT_LEDGER_URL.trim_start_matches("sqlite://");
            format!("sqlite://{}", globals.project_root.join(relative).display())
        })
    }
}

/// The ledger flags of `proctor run`.
#[derive(Debug, Args)]
pub(super) struct RunLedgerArgs {
    /// The plan whose hash chain records the run.
    #[arg(long, value_name = "KEY", default_value = "default")]
    plan: String,
    /// Micro-USD reserved from the plan's budget before the run (refused with
    /// `ERR_BUDGET_EXCEEDED` when the budget cannot cover it). Mock runs spend nothing;
    /// real runs that reach the adapter spend their whole reservation.
    #[arg(long, value_name = "N", default_value_t = 0)]
    reserve_micro_usd: u64,
    #[command(flatten)]
    ledger: LedgerUrlArg,
}

impl RunLedgerArgs {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> RunLedgerConfig {
        RunLedgerConfig {
            url: self.ledger.resolve(globals),
            plan: self.plan,
            reserve_micro_usd: self.reserve_micro_usd,
        }
    }
}

/// `proctor ledger …`.
#[derive(Debug, Subcommand)]
pub(super) enum LedgerCommand {
    /// Show a plan's budget and its events.
    Show {
        /// The plan, e.g. `default`.
        plan: String,
        #[command(flatten)]
        ledger: LedgerUrlArg,
    },
    /// Recompute hash chains and report the first broken seq of each plan.
    Verify {
        /// The plan to verify (default: every plan).
        plan: Option<String>,
        /// Also check the chains against the latest signed checkpoint, with this Ed25519
        /// public key: a PEM file (`-----BEGIN PUBLIC KEY-----`, as `ledger keygen` writes
        /// it) or the PEM text itself. Without it, checkpoints are not checked.
        #[arg(long, value_name = "PATH_OR_PEM", env = "PROCTOR_LEDGER_PUBLIC_KEY")]
        public_key: Option<String>,
        #[command(flatten)]
        ledger: LedgerUrlArg,
    },
    /// Sign every plan's chain head with an Ed25519 key and append the checkpoint to the
    /// ledger; `ledger verify --public-key` then notices a chain rewritten since.
    Checkpoint {
        /// The private key: a PKCS#8 PEM file only its owner may read (mode 0600), kept
        /// outside the ledger.
        #[arg(long, value_name = "PATH", env = "PROCTOR_LEDGER_SIGNING_KEY")]
        key: PathBuf,
        #[command(flatten)]
        ledger: LedgerUrlArg,
    },
    /// Create an Ed25519 key pair for checkpoints: the private key at PATH (PKCS#8 PEM,
    /// mode 0600, never over an existing file) and the public key at PATH.pub.
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Settle the executions left running by a process that is gone from this host (killed,
    /// crashed, rebooted): remove their containers, release their leases and reservations,
    /// and record them as `ERR_ABANDONED`.
    Recover {
        /// The plan whose executions to recover (default: every plan).
        plan: Option<String>,
        /// Recover this execution alone, unless its process still runs on this host: the
        /// way to settle one whose process ran on another host.
        #[arg(long, value_name = "ID", conflicts_with = "plan")]
        execution: Option<String>,
        #[command(flatten)]
        ledger: LedgerUrlArg,
    },
    /// Set or remove a plan's budget (the plan is created when absent).
    Budget {
        /// The plan, e.g. `default`.
        plan: String,
        /// The budget in micro-USD.
        #[arg(long, value_name = "N", required_unless_present = "unset")]
        set: Option<u64>,
        /// Remove the budget: the plan has no limit.
        #[arg(long, conflicts_with = "set")]
        unset: bool,
        #[command(flatten)]
        ledger: LedgerUrlArg,
    },
}

impl LedgerCommand {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> LedgerConfig {
        let (action, ledger) = match self {
            LedgerCommand::Show { plan, ledger } => (LedgerAction::Show { plan }, ledger),
            LedgerCommand::Verify {
                plan,
                public_key,
                ledger,
            } => (LedgerAction::Verify { plan, public_key }, ledger),
            LedgerCommand::Checkpoint { key, ledger } => (LedgerAction::Checkpoint { key }, ledger),
            // keygen opens no ledger.
            LedgerCommand::Keygen { out } => (
                LedgerAction::Keygen { out },
                LedgerUrlArg {
                    url: Some(String::new()),
                },
            ),
            LedgerCommand::Recover {
                plan,
                execution,
                ledger,
            } => {
                let scope = match (execution, plan) {
                    (Some(execution_id), _) => RecoverScope::Execution(execution_id),
                    (None, Some(plan)) => RecoverScope::Plan(plan),
                    (None, None) => RecoverScope::AllPlans,
                };
                (LedgerAction::Recover { scope }, ledger)
            }
            LedgerCommand::Budget {
                plan,
                set,
                unset: _,
                ledger,
            } => (
                LedgerAction::Budget {
                    plan,
                    budget_micro_usd: set,
                },
                ledger,
            ),
        };
        LedgerConfig {
            action,
            url: ledger.resolve(globals),
            format: globals.format,
        }
    }
}

/// `proctor verify EXECUTION_ID`.
#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// The execution to verify.
    execution_id: String,
    /// The store holding its artifacts: `file:///abs/dir`, a directory, or
    /// `s3://bucket/prefix?endpoint=URL` (default: the World's store that runs use,
    /// `PROCTOR_STORE_URL`, else the artifacts root).
    #[arg(long, value_name = "URL", env = "PROCTOR_STORE_URL")]
    store: Option<String>,
    #[command(flatten)]
    ledger: LedgerUrlArg,
    #[command(flatten)]
    artifacts_root: ArtifactsRootArg,
    #[command(flatten)]
    registry_root: RegistryRootArg,
}

impl VerifyArgs {
    /// The validated configuration.
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<VerifyConfig> {
        Ok(VerifyConfig {
            store: store_location(self.store.as_deref(), &self.artifacts_root, globals)?,
            registry_root: self.registry_root.resolve(globals)?,
            ledger_url: self.ledger.resolve(globals),
            format: globals.format,
            execution_id: self.execution_id,
        })
    }
}

/// How `proctor run` records itself in the ledger.
#[derive(Debug, Clone)]
pub(crate) struct RunLedgerConfig {
    /// `--ledger`.
    pub(crate) url: String,
    /// `--plan`.
    pub(crate) plan: String,
    /// `--reserve-micro-usd`.
    pub(crate) reserve_micro_usd: u64,
}

/// What `proctor ledger` does.
#[derive(Debug, Clone)]
pub(crate) enum LedgerAction {
    /// `ledger show PLAN`.
    Show { plan: String },
    /// `ledger verify [PLAN] [--public-key KEY]`; `None` for every plan, and for no
    /// checkpoint check.
    Verify {
        plan: Option<String>,
        public_key: Option<String>,
    },
    /// `ledger checkpoint --key PATH`.
    Checkpoint { key: PathBuf },
    /// `ledger keygen --out PATH`.
    Keygen { out: PathBuf },
    /// `ledger recover [PLAN] [--execution ID]`.
    Recover { scope: RecoverScope },
    /// `ledger budget PLAN --set N | --unset`; `None` removes the budget.
    Budget {
        plan: String,
        budget_micro_usd: Option<u64>,
    },
}

/// A validated `proctor ledger …`.
#[derive(Debug, Clone)]
pub(crate) struct LedgerConfig {
    pub(crate) action: LedgerAction,
    /// `--ledger` (empty for `keygen`, which opens none).
    pub(crate) url: String,
    pub(crate) format: OutputFormat,
}

/// A validated `proctor verify`.
#[derive(Debug, Clone)]
pub(crate) struct VerifyConfig {
    pub(crate) execution_id: String,
    /// Where the artifacts are.
    pub(crate) store: StoreLocation,
    /// Absolute; read for the pin of pinned runs.
    pub(crate) registry_root: PathBuf,
    /// `--ledger`.
    pub(crate) ledger_url: String,
    pub(crate) format: OutputFormat,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::super::{Cli, Config};
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut argv = vec!["proctor"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.into_config().unwrap())
    }

    #[test]
    fn ledger_commands_parse() {
        match parse(&["ledger", "show", "p1", "--json"]).unwrap() {
            Config::Ledger(config) => {
                assert!(matches!(config.action, LedgerAction::Show { plan } if plan == "p1"));
                assert_eq!(config.format, OutputFormat::Json);
                // The default ledger is the project root's, whatever the working directory.
                let project_root =
                    crate::args::find_project_root(&std::env::current_dir().unwrap());
                assert_eq!(
                    config.url,
                    format!("sqlite://{}/.proctor/ledger.db", project_root.display())
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["ledger", "verify", "--ledger", "sqlite:///tmp/l.db"]).unwrap() {
            Config::Ledger(config) => {
                assert!(matches!(
                    config.action,
                    LedgerAction::Verify {
                        plan: None,
                        public_key: None
                    }
                ));
                assert_eq!(config.url, "sqlite:///tmp/l.db");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["ledger", "budget", "p", "--set", "5"]).unwrap() {
            Config::Ledger(config) => assert!(matches!(
                config.action,
                LedgerAction::Budget {
                    budget_micro_usd: Some(5),
                    ..
                }
            )),
            other => panic!("{other:?}"),
        }
        match parse(&["ledger", "budget", "p", "--unset"]).unwrap() {
            Config::Ledger(config) => assert!(matches!(
                config.action,
                LedgerAction::Budget {
                    budget_micro_usd: None,
                    ..
                }
            )),
            other => panic!("{other:?}"),
        }
        for bad in [
            &["ledger", "budget", "p"][..],
            &["ledger", "budget", "p", "--set", "5", "--unset"],
            &["ledger", "budget", "p", "--set", "-1"],
            &["ledger", "show"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn checkpoint_commands_parse() {
        match parse(&["ledger", "verify", "p", "--public-key", "k.pub"]).unwrap() {
            Config::Ledger(config) => assert!(matches!(
                config.action,
                LedgerAction::Verify { plan: Some(plan), public_key: Some(key) }
                    if plan == "p" && key == "k.pub"
            )),
            other => panic!("{other:?}"),
        }
        match parse(&["ledger", "checkpoint", "--key", "k.pem", "--json"]).unwrap() {
            Config::Ledger(config) => {
                assert!(matches!(
                    config.action,
                    LedgerAction::Checkpoint { key } if key == Path::new("k.pem")
                ));
                assert_eq!(config.format, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["ledger", "keygen", "--out", "k.pem"]).unwrap() {
            Config::Ledger(config) => assert!(matches!(
                config.action,
                LedgerAction::Keygen { out } if out == Path::new("k.pem")
            )),
            other => panic!("{other:?}"),
        }
        for bad in [
            &["ledger", "keygen"][..],
            &["ledger", "keygen", "--out", "k", "--ledger", "sqlite://x"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn verify_defaults_to_the_artifacts_root() {
        match parse(&["verify", "e1"]).unwrap() {
            Config::Verify(config) => {
                assert_eq!(config.execution_id, "e1");
                assert!(matches!(
                    config.store,
                    StoreLocation::ArtifactsRoot(root) if root.is_absolute()
                ));
                assert!(config.registry_root.ends_with("processors"));
                assert_eq!(config.format, OutputFormat::Human);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["verify", "e1", "--store", "s3://b/p", "--json"]).unwrap() {
            Config::Verify(config) => {
                assert_eq!(config.store, StoreLocation::Url("s3://b/p".to_owned()));
                assert_eq!(config.format, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
    }
}
