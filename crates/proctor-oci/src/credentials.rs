//! Registry credentials, for pushes and pins here and for the local engine's pulls of pinned
//! images. In order:
//!
//! 1. `PROCTOR_REGISTRY_USERNAME` / `PROCTOR_REGISTRY_PASSWORD`, both set and not empty;
//! 2. the docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), read as
//!    the Docker CLI reads it (the `docker_credential` crate): the host's `credHelpers`
//!    entry, its `auths` entry (`auth` or `identitytoken`), then `credsStore`. A helper is
//!    the program `docker-credential-<name>` on `PATH`, asked with `get` and the host on
//!    stdin; one that answers "credentials not found" knows none for the host. An `auths`
//!    entry may also hold plain `username` / `password` fields;
//! 3. anonymous.
//!
//! A configured helper that cannot be run or fails is an error naming it, never a silent
//! anonymous request. An unreadable config file is skipped with a warning, as before helpers
//! were read. Values are handed to the registry client or the engine only; they are never
//! logged or put in errors.

use std::fmt;
use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};
use proctor_contract::{CanonError, ErrorCode};

/// Env var holding the registry user name.
pub const USERNAME_ENV: &str = "PROCTOR_REGISTRY_USERNAME";
/// Env var holding the registry password or token.
pub const PASSWORD_ENV: &str = "PROCTOR_REGISTRY_PASSWORD";

/// What a helper prints when it holds nothing for the host (docker-credential-helpers).
const NOT_FOUND: &str = "credentials not found";

/// Credentials for one registry host. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryCredential {
    /// A user name and a password (or a token used as one).
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An identity token (a helper's `<token>` user): a refresh token for the registry's
    /// token service.
    IdentityToken(String),
}

impl fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryCredential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            RegistryCredential::IdentityToken(_) => f.write_str("IdentityToken(..)"),
        }
    }
}

/// Where credentials came from, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `PROCTOR_REGISTRY_USERNAME` / `PROCTOR_REGISTRY_PASSWORD`.
    Env,
    /// The docker config: an `auths` entry or a credential helper.
    DockerConfig,
    /// None found.
    Anonymous,
}

impl CredentialSource {
    /// `env`, `docker-config` or `anonymous`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialSource::Env => "env",
            CredentialSource::DockerConfig => "docker-config",
            CredentialSource::Anonymous => "anonymous",
        }
    }
}

/// The credentials for registry `host` (`ghcr.io`, `127.0.0.1:5000`) and where they came
/// from. A helper that cannot be run or fails is `context` (the caller's code: `ERR_PUSH`,
/// `ERR_PIN`, `ERR_ADAPTER_INVOCATION`) naming the helper.
pub fn registry_credential(
    host: &str,
    context: ErrorCode,
) -> Result<(Option<RegistryCredential>, CredentialSource), CanonError> {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let (Some(username), Some(password)) = (variable(USERNAME_ENV), variable(PASSWORD_ENV)) {
        let credential = RegistryCredential::Basic { username, password };
        return Ok((Some(credential), CredentialSource::Env));
    }
    let Some(path) = docker_config_path() else {
        return Ok((None, CredentialSource::Anonymous));
    };
    let config = match std::fs::read_to_string(&path) {
        Ok(config) => config,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((None, CredentialSource::Anonymous));
        }
        Err(error) => {
            tracing::warn!(
                event = "oci.credentials.config_unreadable",
                file = %path.display(),
                error = %error,
            );
            return Ok((None, CredentialSource::Anonymous));
        }
    };
    let found = config_credential(&config, host).map_err(|why| {
        CanonError::new(
            context,
            format!("credentials for {host} from {}: {why}", path.display()),
        )
    })?;
    Ok(match found {
        Some(credential) => (Some(credential), CredentialSource::DockerConfig),
        None => (None, CredentialSource::Anonymous),
    })
}

fn docker_config_path() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))?;
    Some(dir.join("config.json"))
}

/// The credentials the docker config text `config` gives for `host`, running its helpers;
/// `Err` says why a configured helper or entry could not give them.
fn config_credential(config: &str, host: &str) -> Result<Option<RegistryCredential>, String> {
    match docker_credential::get_credential_from_reader(config.as_bytes(), host) {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Some(RegistryCredential::Basic { username, password }))
        }
        Ok(DockerCredential::IdentityToken(token)) => {
            Ok(Some(RegistryCredential::IdentityToken(token)))
        }
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
        Err(CredentialRetrievalError::HelperFailure {
            helper,
            stdout,
            stderr,
        }) => {
            if stdout.contains(NOT_FOUND) || stderr.contains(NOT_FOUND) {
                return Ok(None);
            }
            Err(format!(
                "credential helper `{helper}` failed: {}",
                last_line(&stderr).unwrap_or("no message")
            ))
        }
        Err(CredentialRetrievalError::HelperCommunicationError) => Err(
            "the credential helper it names (`credHelpers` or `credsStore`) cannot be run: \
             is docker-credential-<name> on PATH?"
                .to_owned(),
        ),
        Err(CredentialRetrievalError::MalformedHelperResponse) => Err(
            "the credential helper answered with something other than {\"Username\", \"Secret\"}"
                .to_owned(),
        ),
        Err(CredentialRetrievalError::CredentialDecodingError) => {
            Err("its `auths` entry is not base64 of `user:password`".to_owned())
        }
        Err(CredentialRetrievalError::CredentialMismatchError) => Err(
            "its `auths` entry's `auth` disagrees with its `username` and `password`".to_owned(),
        ),
        Err(
            CredentialRetrievalError::ConfigReadError | CredentialRetrievalError::ConfigNotFound,
        ) => Err("not a docker config (JSON)".to_owned()),
    }
}

/// The last non-empty line of a helper's stderr, trimmed.
fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(username: &str, password: &str) -> Option<RegistryCredential> {
        Some(RegistryCredential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    #[test]
    fn reads_base64_auth_for_the_host() {
        // "user:pa:ss" — a password may itself contain a colon.
        let config = r#"{"auths":{"https://ghcr.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},"other.io":{"auth":"eDp5"}}}"#;
        assert_eq!(
            config_credential(config, "ghcr.io"),
            Ok(basic("user", "pa:ss"))
        );
        assert_eq!(config_credential(config, "other.io"), Ok(basic("x", "y")));
        assert_eq!(config_credential(config, "127.0.0.1:5000"), Ok(None));
    }

    #[test]
    fn reads_plain_fields_and_identity_tokens() {
        let config = r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            config_credential(config, "127.0.0.1:5000"),
            Ok(basic("u", "p"))
        );
        let config = r#"{"auths":{"acr.io":{"identitytoken":"refresh-me"}}}"#;
        let token = config_credential(config, "acr.io").unwrap().unwrap();
        assert_eq!(
            token,
            RegistryCredential::IdentityToken("refresh-me".to_owned())
        );
        assert_eq!(format!("{token:?}"), "IdentityToken(..)", "never shown");
        let basic = basic("u", "hidden-value").unwrap();
        assert!(!format!("{basic:?}").contains("hidden-value"));
    }

    #[test]
    fn a_helper_named_for_the_host_is_asked_before_any_auths_entry() {
        // The helper does not exist: asking it is an error naming the setting, not a
        // fallback to the `auths` entry or to anonymous.
        let config = r#"{"auths":{"ghcr.io":{"auth":"eDp5"}},
                         "credHelpers":{"ghcr.io":"proctor-test-absent"}}"#;
        let why = config_credential(config, "ghcr.io").unwrap_err();
        assert!(
            why.contains("credHelpers") && why.contains("on PATH"),
            "{why}"
        );
        // Another host is not sent to that helper.
        assert_eq!(config_credential(config, "other.io"), Ok(None));

        // credsStore serves every host without an entry of its own.
        let config = r#"{"auths":{"ghcr.io":{"auth":"eDp5"}},"credsStore":"proctor-test-absent"}"#;
        assert_eq!(config_credential(config, "ghcr.io"), Ok(basic("x", "y")));
        assert!(config_credential(config, "other.io").is_err());
    }

    #[test]
    fn broken_configs_are_errors_that_name_the_problem() {
        assert_eq!(
            config_credential("not json", "ghcr.io"),
            Err("not a docker config (JSON)".to_owned())
        );
        let broken = r#"{"auths":{"ghcr.io":{"auth":"!!!"}}}"#;
        assert!(
            config_credential(broken, "ghcr.io")
                .unwrap_err()
                .contains("base64")
        );
        assert_eq!(last_line("first\nlast line \n\n"), Some("last line"));
        assert_eq!(last_line(""), None);
    }
}
