//! Where a deployed processor answers, and the proxy-auth credentials its endpoint requires.

use std::collections::BTreeMap;
use std::fmt;

use proctor_contract::{CanonError, ErrorCode, ProcessorRef};

use crate::{ModalNames, ModalTarget};

/// The deployed web endpoint of one processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The processor's Modal names.
    pub names: ModalNames,
    /// The base URL, without a trailing `/`: `https://<workspace>[-<env>]--<label>.modal.run`
    /// or the expanded override.
    pub base_url: String,
}

impl Endpoint {
    /// Resolves the endpoint of `processor_ref` on `target`: the override base URL when set
    /// (with `{label}` and `{app}` expanded), else the Modal URL built from the workspace.
    /// Neither is `ERR_DEPLOY_TARGET`.
    pub fn resolve(
        processor_ref: &ProcessorRef,
        target: &ModalTarget,
    ) -> Result<Endpoint, CanonError> {
        let names = ModalNames::derive(processor_ref, target);
        let base_url = if let Some(base_url) = &target.base_url {
            base_url
                .replace("{label}", &names.label)
                .replace("{app}", &names.app)
        } else if let Some(prefix) = target.host_prefix() {
            format!("https://{prefix}--{}.modal.run", names.label)
        } else {
            return Err(CanonError::new(
                ErrorCode::DeployTarget,
                format!(
                    "no Modal workspace for {processor_ref}; set {} (and {} when the workspace has \
                     several environments), or {} for a gateway",
                    ModalTarget::ENV_WORKSPACE,
                    ModalTarget::ENV_ENVIRONMENT,
                    ModalTarget::ENV_BASE_URL
                ),
            ));
        };
        Ok(Endpoint {
            names,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The URL of `path` (e.g. `/healthz`, `/run`) on this endpoint.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }
}

/// Proxy-auth credentials for endpoints deployed with `requires_proxy_auth=True`: the token
/// id goes in header `Modal-Key`, the secret in `Modal-Secret`. Never printed: `Debug`
/// masks both.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    token_id: String,
    token_secret: String,
}

impl ProxyAuth {
    /// Variable holding the proxy-auth token id.
    pub const ENV_TOKEN_ID: &'static str = "MODAL_PROXY_TOKEN_ID";
    /// Variable holding the proxy-auth token secret.
    pub const ENV_TOKEN_SECRET: &'static str = "MODAL_PROXY_TOKEN_SECRET";
    /// Header carrying the token id.
    pub const HEADER_KEY: &'static str = "Modal-Key";
    /// Header carrying the token secret.
    pub const HEADER_SECRET: &'static str = "Modal-Secret";

    /// Credentials from a token id and secret.
    pub fn new(token_id: impl Into<String>, token_secret: impl Into<String>) -> ProxyAuth {
        ProxyAuth {
            token_id: token_id.into(),
            token_secret: token_secret.into(),
        }
    }

    /// Reads [`Self::ENV_TOKEN_ID`] and [`Self::ENV_TOKEN_SECRET`]: `None` when neither is
    /// set, `ERR_MISSING_SECRET` naming the other when only one is.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Option<ProxyAuth>, CanonError> {
        let get = |name: &str| env.get(name).filter(|value| !value.is_empty());
        match (get(Self::ENV_TOKEN_ID), get(Self::ENV_TOKEN_SECRET)) {
            (None, None) => Ok(None),
            (Some(id), Some(secret)) => Ok(Some(ProxyAuth::new(id, secret))),
            (Some(_), None) => Err(missing(Self::ENV_TOKEN_SECRET)),
            (None, Some(_)) => Err(missing(Self::ENV_TOKEN_ID)),
        }
    }

    /// Adds both headers to a request.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header(Self::HEADER_KEY, &self.token_id)
            .header(Self::HEADER_SECRET, &self.token_secret)
    }

    /// Both values, for a `Redactor` that masks them wherever they might appear.
    pub fn secret_values(&self) -> [String; 2] {
        [self.token_id.clone(), self.token_secret.clone()]
    }
}

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("token_id", &"[REDACTED]")
            .field("token_secret", &"[REDACTED]")
            .finish()
    }
}

/// `ERR_MISSING_SECRET` for a proxy-auth variable set without its pair.
fn missing(name: &str) -> CanonError {
    CanonError::new(
        ErrorCode::MissingSecret,
        format!(
            "{name} (proxy auth needs both {} and {})",
            ProxyAuth::ENV_TOKEN_ID,
            ProxyAuth::ENV_TOKEN_SECRET
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(workspace: Option<&str>, env: Option<&str>, base_url: Option<&str>) -> ModalTarget {
        ModalTarget {
            workspace: workspace.map(str::to_owned),
            environment: env.map(str::to_owned),
            suffix_env: env.is_some(),
            base_url: base_url.map(str::to_owned),
            ..ModalTarget::default()
        }
    }

    fn resolve(target: &ModalTarget) -> Result<Endpoint, CanonError> {
        Endpoint::resolve(&"llm/litellm@1".parse().unwrap(), target)
    }

    #[test]
    fn modal_urls_follow_workspace_and_environment() {
        let endpoint = resolve(&target(Some("acme"), None, None)).unwrap();
        assert_eq!(endpoint.base_url, "https://acme--llm-litellm-v1.modal.run");
        assert_eq!(
            endpoint.url("/healthz"),
            "https://acme--llm-litellm-v1.modal.run/healthz"
        );
        let endpoint = resolve(&target(Some("Acme"), Some("dev_2"), None)).unwrap();
        assert_eq!(
            endpoint.base_url,
            "https://acme-dev-2--llm-litellm-v1.modal.run"
        );
        let mut unsuffixed = target(Some("acme"), Some("main"), None);
        unsuffixed.suffix_env = false;
        assert_eq!(
            resolve(&unsuffixed).unwrap().base_url,
            "https://acme--llm-litellm-v1.modal.run"
        );
    }

    #[test]
    fn the_override_wins_and_expands_placeholders() {
        let endpoint = resolve(&target(Some("acme"), None, Some("http://127.0.0.1:9/"))).unwrap();
        assert_eq!(endpoint.url("run"), "http://127.0.0.1:9/run");
        let endpoint = resolve(&target(
            None,
            None,
            Some("https://gw.example/{app}/{label}"),
        ))
        .unwrap();
        assert_eq!(
            endpoint.base_url,
            "https://gw.example/proctor-llm-litellm-v1/llm-litellm-v1"
        );
    }

    #[test]
    fn no_workspace_and_no_override_is_no_target() {
        let err = resolve(&target(None, Some("main"), None)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::DeployTarget);
        assert!(
            err.message()
                .starts_with("no deploy target configured: no Modal workspace")
        );
        assert!(err.message().contains("PROCTOR_MODAL_WORKSPACE"), "{err}");
    }

    #[test]
    fn proxy_auth_comes_in_pairs_and_never_prints() {
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(ProxyAuth::from_env(&env(&[])).unwrap(), None);
        let auth = ProxyAuth::from_env(&env(&[
            ("MODAL_PROXY_TOKEN_ID", "wk-idvalue123"),
            ("MODAL_PROXY_TOKEN_SECRET", "ws-secretvalue456"),
        ]))
        .unwrap()
        .unwrap();
        let shown = format!("{auth:?}");
        assert!(
            !shown.contains("idvalue123") && !shown.contains("secretvalue456"),
            "{shown}"
        );
        let err =
            ProxyAuth::from_env(&env(&[("MODAL_PROXY_TOKEN_ID", "wk-idvalue123")])).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MissingSecret);
        assert!(
            err.message()
                .starts_with("missing required secret: MODAL_PROXY_TOKEN_SECRET")
        );
        assert!(!err.message().contains("idvalue123"));
        let err = ProxyAuth::from_env(&env(&[("MODAL_PROXY_TOKEN_SECRET", "x")])).unwrap_err();
        assert!(
            err.message()
                .starts_with("missing required secret: MODAL_PROXY_TOKEN_ID")
        );
    }
}
