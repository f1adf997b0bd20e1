//! The Modal deploy target: workspace, environment and the options a deployment needs,
//! read from the environment (`PROCTOR_MODAL_*`) or built by the caller.

use std::collections::BTreeMap;

use proctor_contract::{CanonError, ErrorCode};

/// Longest host prefix (`<workspace>[-<env>]`) accepted, so that every endpoint label keeps
/// at least 17 characters of the 63 a DNS label allows (`<prefix>--<label>`).
pub const MAX_HOST_PREFIX: usize = 44;

/// Where and how processors are deployed on Modal.
///
/// The endpoint of a processor is `https://<workspace>[-<env>]--<label>.modal.run`
/// (see [`crate::ModalNames`] for the label), unless [`ModalTarget::base_url`] overrides it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModalTarget {
    /// The Modal workspace name, as it appears in endpoint hosts.
    pub workspace: Option<String>,
    /// The Modal environment (`modal deploy -e ENV`); `None` uses the profile's default.
    pub environment: Option<String>,
    /// Whether endpoint hosts carry `-<env>` after the workspace. Modal adds it when a
    /// workspace has several environments, except for the one without a web suffix.
    pub suffix_env: bool,
    /// An endpoint base URL that replaces the Modal one (tests, self-hosted gateways).
    /// `{label}` and `{app}` in it are replaced by the processor's label and app name.
    pub base_url: Option<String>,
    /// The Modal secret holding `REGISTRY_USERNAME` / `REGISTRY_PASSWORD` for pulling
    /// pinned images from a private registry.
    pub registry_secret: Option<String>,
    /// A Modal volume mounted at `/artifacts` to keep outputs and receipts; without it the
    /// processor writes them to `/tmp/artifacts`, which lives as long as its container.
    pub artifacts_volume: Option<String>,
    /// The World's S3-compatible store (`s3://bucket[/prefix][?endpoint=URL]`) deployed
    /// processors write their evidence to, where proctor checks it after each run.
    pub world_store: Option<String>,
    /// The Modal secret holding the store's `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`; [`ModalTarget::DEFAULT_STORE_SECRET`] when unset.
    pub store_secret: Option<String>,
}

impl ModalTarget {
    /// Variable naming the workspace.
    pub const ENV_WORKSPACE: &'static str = "PROCTOR_MODAL_WORKSPACE";
    /// Variable naming the environment.
    pub const ENV_ENVIRONMENT: &'static str = "PROCTOR_MODAL_ENVIRONMENT";
    /// Variable saying whether hosts carry `-<env>` (`true`/`false`, default `true` when an
    /// environment is named).
    pub const ENV_SUFFIX_ENV: &'static str = "PROCTOR_MODAL_SUFFIX_ENV";
    /// Variable overriding the endpoint base URL.
    pub const ENV_BASE_URL: &'static str = "PROCTOR_MODAL_BASE_URL";
    /// Variable naming the private-registry Modal secret.
    pub const ENV_REGISTRY_SECRET: &'static str = "PROCTOR_MODAL_REGISTRY_SECRET";
    /// Variable naming the artifacts volume.
    pub const ENV_ARTIFACTS_VOLUME: &'static str = "PROCTOR_MODAL_ARTIFACTS_VOLUME";
    /// Variable naming the World's store: the one the engine checks evidence in, and the
    /// one a deployed processor writes to (the same variable in its container).
    pub const ENV_WORLD_STORE: &'static str = "PROCTOR_STORE_URL";
    /// Variable naming the Modal secret with the store's credentials.
    pub const ENV_STORE_SECRET: &'static str = "PROCTOR_MODAL_STORE_SECRET";
    /// The Modal secret with the store's credentials, by convention.
    pub const DEFAULT_STORE_SECRET: &'static str = "proctor-world-store";

    /// Reads the target from `PROCTOR_MODAL_*` variables (empty values count as unset) and
    /// checks it; an invalid value is `ERR_DEPLOY_TARGET` naming the variable.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<ModalTarget, CanonError> {
        let get = |name: &str| env.get(name).filter(|value| !value.is_empty()).cloned();
        let environment = get(Self::ENV_ENVIRONMENT);
        let suffix_env = match get(Self::ENV_SUFFIX_ENV).as_deref() {
            None => environment.is_some(),
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(invalid(
                    Self::ENV_SUFFIX_ENV,
                    &format!("`{other}` is not true or false"),
                ));
            }
        };
        let target = ModalTarget {
            workspace: get(Self::ENV_WORKSPACE),
            environment,
            suffix_env,
            base_url: get(Self::ENV_BASE_URL),
            registry_secret: get(Self::ENV_REGISTRY_SECRET),
            artifacts_volume: get(Self::ENV_ARTIFACTS_VOLUME),
            world_store: get(Self::ENV_WORLD_STORE),
            store_secret: get(Self::ENV_STORE_SECRET),
        };
        target.validate()?;
        Ok(target)
    }

    /// Checks every value against Modal's naming rules: workspace and environment names,
    /// secret and volume names (≤ 64 of `[a-zA-Z0-9-_.]`), the host prefix length
    /// ([`MAX_HOST_PREFIX`]) and the base URL scheme.
    pub fn validate(&self) -> Result<(), CanonError> {
        if let Some(workspace) = &self.workspace
            && (workspace.is_empty() || !workspace.chars().all(is_name_char))
        {
            return Err(invalid(
                Self::ENV_WORKSPACE,
                &format!("`{workspace}` is not a workspace name"),
            ));
        }
        if let Some(environment) = &self.environment
            && !is_environment_name(environment)
        {
            return Err(invalid(
                Self::ENV_ENVIRONMENT,
                &format!("`{environment}` is not a Modal environment name"),
            ));
        }
        for (variable, name) in [
            (Self::ENV_REGISTRY_SECRET, &self.registry_secret),
            (Self::ENV_ARTIFACTS_VOLUME, &self.artifacts_volume),
            (Self::ENV_STORE_SECRET, &self.store_secret),
        ] {
            if let Some(name) = name
                && !is_object_name(name)
            {
                return Err(invalid(
                    variable,
                    &format!("`{name}` is not a Modal object name (≤ 64 of [a-zA-Z0-9-_.])"),
                ));
            }
        }
        if let Some(prefix) = self.host_prefix()
            && prefix.len() > MAX_HOST_PREFIX
        {
            return Err(invalid(
                Self::ENV_WORKSPACE,
                &format!("host prefix `{prefix}` is longer than {MAX_HOST_PREFIX} characters"),
            ));
        }
        if let Some(store) = &self.world_store
            && !store.starts_with("s3://")
        {
            return Err(invalid(
                Self::ENV_WORLD_STORE,
                "must be an s3:// location: a deployment cannot reach this host's files",
            ));
        }
        if let Some(base_url) = &self.base_url
            && !(base_url.starts_with("http://") || base_url.starts_with("https://"))
        {
            return Err(invalid(
                Self::ENV_BASE_URL,
                "must start with http:// or https://",
            ));
        }
        Ok(())
    }

    /// The Modal secret with the World store's credentials.
    pub fn store_secret_name(&self) -> &str {
        self.store_secret
            .as_deref()
            .unwrap_or(Self::DEFAULT_STORE_SECRET)
    }

    /// `<workspace>[-<env>]` as it appears before `--` in endpoint hosts: lowercased, every
    /// character other than letters, digits and dashes turned into a dash. `None` without a
    /// workspace.
    pub fn host_prefix(&self) -> Option<String> {
        let workspace = self.workspace.as_deref()?;
        let prefix = match (&self.environment, self.suffix_env) {
            (Some(environment), true) => format!("{workspace}-{environment}"),
            _ => workspace.to_owned(),
        };
        Some(dns_slug(&prefix))
    }
}

/// `ERR_DEPLOY_TARGET` for a bad value of `variable`.
fn invalid(variable: &str, why: &str) -> CanonError {
    CanonError::new(ErrorCode::DeployTarget, format!("{variable} {why}"))
}

/// A character Modal allows in object names.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A Modal object name (app, secret, volume): ≤ 64 of `[a-zA-Z0-9-_.]`, not an app id.
pub(crate) fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(is_name_char)
        && !name.starts_with("ap-")
}

/// A Modal environment name: ≤ 64, alphanumeric first, then `[a-zA-Z0-9-_]`, not `en-…`.
fn is_environment_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.to_ascii_lowercase().starts_with("en-")
}

/// Lowercase letters, digits and single dashes, no dash at either end.
pub(crate) fn dns_slug(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
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
    fn reads_the_target_from_the_environment() {
        let target = ModalTarget::from_env(&env(&[
            ("PROCTOR_MODAL_WORKSPACE", "Acme_Labs"),
            ("PROCTOR_MODAL_ENVIRONMENT", "staging"),
            ("PROCTOR_MODAL_REGISTRY_SECRET", "ghcr-pull"),
            ("PROCTOR_MODAL_ARTIFACTS_VOLUME", ""),
        ]))
        .unwrap();
        assert_eq!(target.workspace.as_deref(), Some("Acme_Labs"));
        assert!(
            target.suffix_env,
            "naming an environment suffixes hosts by default"
        );
        assert_eq!(target.host_prefix().as_deref(), Some("acme-labs-staging"));
        assert_eq!(target.registry_secret.as_deref(), Some("ghcr-pull"));
        assert_eq!(target.artifacts_volume, None, "empty values count as unset");
        assert_eq!(target.store_secret_name(), "proctor-world-store");

        let target = ModalTarget::from_env(&env(&[
            (
                "PROCTOR_STORE_URL",
                "s3://world/team?endpoint=https://s3.example",
            ),
            ("PROCTOR_MODAL_STORE_SECRET", "team-store"),
        ]))
        .unwrap();
        assert_eq!(
            target.world_store.as_deref(),
            Some("s3://world/team?endpoint=https://s3.example")
        );
        assert_eq!(target.store_secret_name(), "team-store");

        let target = ModalTarget::from_env(&env(&[
            ("PROCTOR_MODAL_WORKSPACE", "acme"),
            ("PROCTOR_MODAL_ENVIRONMENT", "main"),
            ("PROCTOR_MODAL_SUFFIX_ENV", "false"),
        ]))
        .unwrap();
        assert_eq!(target.host_prefix().as_deref(), Some("acme"));
        assert_eq!(
            ModalTarget::from_env(&env(&[])).unwrap(),
            ModalTarget::default()
        );
        assert_eq!(ModalTarget::default().host_prefix(), None);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("PROCTOR_MODAL_SUFFIX_ENV", "maybe")],
                "PROCTOR_MODAL_SUFFIX_ENV `maybe`",
            ),
            (
                &[("PROCTOR_MODAL_WORKSPACE", "a b")],
                "PROCTOR_MODAL_WORKSPACE",
            ),
            (
                &[("PROCTOR_STORE_URL", "/var/world")],
                "PROCTOR_STORE_URL must be an s3:// location",
            ),
            (
                &[("PROCTOR_MODAL_STORE_SECRET", "a b")],
                "PROCTOR_MODAL_STORE_SECRET",
            ),
            (
                &[("PROCTOR_MODAL_ENVIRONMENT", "en-x")],
                "PROCTOR_MODAL_ENVIRONMENT",
            ),
            (
                &[("PROCTOR_MODAL_ENVIRONMENT", "-x")],
                "PROCTOR_MODAL_ENVIRONMENT",
            ),
            (
                &[("PROCTOR_MODAL_REGISTRY_SECRET", "a/b")],
                "PROCTOR_MODAL_REGISTRY_SECRET",
            ),
            (
                &[("PROCTOR_MODAL_ARTIFACTS_VOLUME", "ap-123")],
                "PROCTOR_MODAL_ARTIFACTS_VOLUME",
            ),
            (
                &[("PROCTOR_MODAL_BASE_URL", "ftp://x")],
                "PROCTOR_MODAL_BASE_URL must start",
            ),
            (
                &[("PROCTOR_MODAL_WORKSPACE", &"w".repeat(45))],
                "longer than 44",
            ),
        ];
        for (pairs, expected) in cases {
            let err = ModalTarget::from_env(&env(pairs)).unwrap_err();
            assert_eq!(err.code(), ErrorCode::DeployTarget, "{pairs:?}");
            assert!(
                err.message().starts_with("no deploy target configured: "),
                "{err}"
            );
            assert!(err.message().contains(expected), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn slugs_are_dns_safe() {
        assert_eq!(dns_slug("Acme__Labs.-x-"), "acme-labs-x");
        assert_eq!(dns_slug("-a"), "a");
        assert_eq!(dns_slug("ok-1"), "ok-1");
    }
}
