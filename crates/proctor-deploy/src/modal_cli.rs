//! The `modal` command-line client: found on `PATH` with credentials, or Modal is not
//! configured. Runs `modal deploy` and `modal secret list`; its output is redacted before it
//! reaches an error or a log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use proctor_contract::{CanonError, ErrorCode, Redactor};
use tokio::process::Command;

use crate::{GeneratedApp, ModalTarget};

/// Variables holding Modal API credentials (not the endpoint proxy-auth tokens).
const ENV_TOKEN_ID: &str = "MODAL_TOKEN_ID";
const ENV_TOKEN_SECRET: &str = "MODAL_TOKEN_SECRET";
/// Variable overriding where the `modal` client keeps its profiles.
const ENV_CONFIG_PATH: &str = "MODAL_CONFIG_PATH";
/// Lines of a failing command's stderr kept in the error.
const ERROR_TAIL_LINES: usize = 12;

/// A `modal` client ready to act: the executable exists and credentials are present.
#[derive(Debug, Clone)]
pub struct ModalCli {
    program: PathBuf,
    env: BTreeMap<String, String>,
    redactor: Redactor,
}

/// The outcome of a successful `modal deploy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The deployed app.
    pub app: String,
    /// The tag the deployment carries ([`GeneratedApp::deploy_tag`]).
    pub tag: String,
    /// What `modal deploy` printed, redacted.
    pub output: String,
}

impl ModalCli {
    /// Finds `modal` on `PATH` and checks for credentials (`MODAL_TOKEN_ID` and
    /// `MODAL_TOKEN_SECRET`, or a `token_id` in `MODAL_CONFIG_PATH` / `~/.modal.toml`), all
    /// read from `env`, which is also the whole environment the commands run with. Either
    /// missing is `ERR_DEPLOY_TARGET` saying that Modal is not configured.
    pub fn discover(env: &BTreeMap<String, String>) -> Result<ModalCli, CanonError> {
        let not_configured = |why: &str| {
            CanonError::new(
                ErrorCode::DeployTarget,
                format!("modal is not configured: {why}"),
            )
        };
        let program = env
            .get("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(path).collect::<Vec<_>>())
            .map(|dir| dir.join("modal"))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                not_configured(
                    "the `modal` command is not on PATH (pip install modal, see scripts/setup.sh)",
                )
            })?;
        if !has_credentials(env) {
            return Err(not_configured(
                "no Modal credentials (set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, or run `modal token set`)",
            ));
        }
        let secret_values = env
            .iter()
            .filter(|(name, _)| {
                name.starts_with("MODAL_") && (name.contains("TOKEN") || name.contains("SECRET"))
            })
            .map(|(_, value)| value.clone());
        Ok(ModalCli {
            program,
            env: env.clone(),
            redactor: Redactor::new(secret_values),
        })
    }

    /// Runs `modal deploy [-e ENV] --tag <tag> <file>` for a written app. A non-zero exit —
    /// Modal unreachable, credentials refused, image build failed — is `ERR_DEPLOY` with the
    /// redacted end of its output; there is no success without Modal saying so.
    pub async fn deploy(
        &self,
        app: &GeneratedApp,
        file: &Path,
        target: &ModalTarget,
    ) -> Result<Deployment, CanonError> {
        let tag = app.deploy_tag();
        let mut args: Vec<String> = vec!["deploy".into()];
        push_environment(&mut args, target);
        args.extend(["--tag".into(), tag.clone(), file.display().to_string()]);
        tracing::info!(event = "deploy.start", app = %app.names.app, tag = %tag, "deploying to modal");
        match self.run(&args).await {
            Ok(output) => {
                tracing::info!(event = "deploy.settle", app = %app.names.app, tag = %tag, "deployed");
                Ok(Deployment {
                    app: app.names.app.clone(),
                    tag,
                    output,
                })
            }
            Err(why) => {
                tracing::error!(event = "deploy.fail", app = %app.names.app, tag = %tag, "deploy failed");
                Err(CanonError::new(
                    ErrorCode::Deploy,
                    format!("`modal deploy` of {} failed: {why}", app.names.app),
                ))
            }
        }
    }

    /// The names of the secrets in the target environment (`modal secret list --json`); a
    /// failure is `ERR_DEPLOY` with the redacted end of its output.
    pub async fn secret_names(&self, target: &ModalTarget) -> Result<BTreeSet<String>, CanonError> {
        let mut args: Vec<String> = vec!["secret".into(), "list".into()];
        push_environment(&mut args, target);
        args.push("--json".into());
        let failed = |why: String| {
            CanonError::new(
                ErrorCode::Deploy,
                format!("`modal secret list` failed: {why}"),
            )
        };
        let output = self.run(&args).await.map_err(failed)?;
        #[derive(serde::Deserialize)]
        struct Row {
            name: String,
        }
        let rows: Vec<Row> = serde_json::from_str(&output).map_err(|error| {
            failed(format!("its output is not the expected JSON list: {error}"))
        })?;
        Ok(rows.into_iter().map(|row| row.name).collect())
    }

    /// Runs `modal ARGS` with the discovered environment; stdout when it exits 0, else why.
    async fn run(&self, args: &[String]) -> Result<String, String> {
        let output = Command::new(&self.program)
            .args(args)
            .env_clear()
            .envs(&self.env)
            // Plain output: no colour codes or progress spinners in what we parse and keep.
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|error| format!("cannot run {}: {error}", self.program.display()))?;
        let stdout = self
            .redactor
            .redact(&String::from_utf8_lossy(&output.stdout))
            .into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let stderr = self
            .redactor
            .redact(&String::from_utf8_lossy(&output.stderr))
            .into_owned();
        let text = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        let tail = lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..].join("\n");
        Err(format!("{} ({})", tail.trim(), output.status))
    }
}

/// Adds `-e ENV` when the target names an environment.
fn push_environment(args: &mut Vec<String>, target: &ModalTarget) {
    if let Some(environment) = &target.environment {
        args.extend(["-e".into(), environment.clone()]);
    }
}

/// Whether `env` carries Modal API credentials, directly or through a profile file.
fn has_credentials(env: &BTreeMap<String, String>) -> bool {
    let set = |name: &str| env.get(name).is_some_and(|value| !value.is_empty());
    if set(ENV_TOKEN_ID) && set(ENV_TOKEN_SECRET) {
        return true;
    }
    let config = match (env.get(ENV_CONFIG_PATH), env.get("HOME")) {
        (Some(path), _) if !path.is_empty() => PathBuf::from(path),
        (_, Some(home)) => Path::new(home).join(".modal.toml"),
        _ => return false,
    };
    std::fs::read_to_string(config).is_ok_and(|text| {
        text.lines()
            .any(|line| line.trim_start().starts_with("token_id"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn credentials_come_from_tokens_or_a_profile_file() {
        let home = tempfile::tempdir().unwrap();
        let home_str = home.path().to_str().unwrap();
        assert!(!has_credentials(&env(&[("HOME", home_str)])));
        assert!(!has_credentials(&env(&[
            ("HOME", home_str),
            ("MODAL_TOKEN_ID", "ak-x")
        ])));
        assert!(has_credentials(&env(&[
            ("MODAL_TOKEN_ID", "ak-x"),
            ("MODAL_TOKEN_SECRET", "as-y")
        ])));
        std::fs::write(
            home.path().join(".modal.toml"),
            "[default]\nserver_url = \"x\"\n",
        )
        .unwrap();
        assert!(
            !has_credentials(&env(&[("HOME", home_str)])),
            "a profile without a token"
        );
        std::fs::write(
            home.path().join(".modal.toml"),
            "[acme]\ntoken_id = \"ak-1\"\n",
        )
        .unwrap();
        assert!(has_credentials(&env(&[("HOME", home_str)])));
        let other = home.path().join("other.toml");
        assert!(!has_credentials(&env(&[
            ("HOME", home_str),
            ("MODAL_CONFIG_PATH", other.to_str().unwrap())
        ])));
    }

    #[test]
    fn a_missing_cli_is_not_configured() {
        let empty = tempfile::tempdir().unwrap();
        let err = ModalCli::discover(&env(&[
            ("PATH", empty.path().to_str().unwrap()),
            ("MODAL_TOKEN_ID", "ak-x"),
            ("MODAL_TOKEN_SECRET", "as-y"),
        ]))
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::DeployTarget);
        assert!(err.message().starts_with(
            "no deploy target configured: modal is not configured: the `modal` command"
        ));
    }

    #[test]
    fn environments_become_the_e_flag() {
        let mut args = vec![];
        push_environment(&mut args, &ModalTarget::default());
        assert!(args.is_empty());
        push_environment(
            &mut args,
            &ModalTarget {
                environment: Some("dev".into()),
                ..ModalTarget::default()
            },
        );
        assert_eq!(args, ["-e", "dev"]);
    }
}
