//! Server configuration, read from the container's environment.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;

use crate::SdkError;

/// Listen port variable; default [`DEFAULT_PORT`].
pub const ENV_PORT: &str = "PROCTOR_PORT";
/// Listen address variable; default `0.0.0.0`.
pub const ENV_BIND: &str = "PROCTOR_BIND";
/// Unix socket to listen on instead of `PROCTOR_BIND:PROCTOR_PORT` (set by the local adapter
/// in `mock` mode, where the container has no network).
pub const ENV_SOCKET: &str = "PROCTOR_SOCKET";
/// The image digest or ID the container was started from. Required: without it the
/// processor serves `/healthz` (`setup_failed`, saying why) but refuses every run.
pub const ENV_IMAGE_DIGEST: &str = "PROCTOR_IMAGE_DIGEST";
/// The CPU cores the container may use (the registry's `runtime.cpu`), as the adapter set
/// them; part of the env fingerprint when set.
pub const ENV_CPU: &str = "PROCTOR_CPU";
/// The container's memory limit in GiB (`runtime.memory_gb`); part of the env fingerprint
/// when set.
pub const ENV_MEMORY_GB: &str = "PROCTOR_MEMORY_GB";
/// The GPU the container was given (`runtime.gpu`), set only when one was requested; part
/// of the env fingerprint when set.
pub const ENV_GPU: &str = "PROCTOR_GPU";
/// The directory backing world `/artifacts/`; default `/artifacts`.
pub const ENV_ARTIFACTS_ROOT: &str = "PROCTOR_ARTIFACTS_ROOT";
/// How many `/run` and `/run-stream` requests the processor serves at once, overriding
/// what its `main` declares ([`crate::ProcessorDefinition::with_concurrency`]); at least 1.
pub const ENV_CONCURRENCY: &str = "PROCTOR_CONCURRENCY";
/// The World's object store the run's evidence is written to instead of the directory
/// behind `/artifacts/`: `s3://bucket[/key/prefix][?endpoint=URL&region=R]`, with
/// credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (see
/// [`proctor_store::open_with_env`]). Set by a Modal deployment, whose container storage
/// nobody else can read.
pub const ENV_STORE_URL: &str = "PROCTOR_STORE_URL";
/// The port a processor listens on when [`ENV_PORT`] is unset.
pub const DEFAULT_PORT: u16 = 8000;

/// How a processor server runs.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port to listen on.
    pub port: u16,
    /// Reported by `/healthz`, envelopes and receipts; `None` when [`ENV_IMAGE_DIGEST`] is
    /// unset, and then every run is refused.
    pub image_digest: Option<String>,
    /// Filesystem directory backing world `/artifacts/`.
    pub artifacts_root: PathBuf,
    /// [`ENV_CONCURRENCY`]: overrides the processor's declared concurrency when set.
    pub concurrency: Option<NonZeroU32>,
    /// [`ENV_STORE_URL`]: the object store evidence is written to, when set.
    pub store_url: Option<String>,
    /// The process environment; secrets and pass-through variables are taken from it in
    /// `real` mode only.
    pub environment: BTreeMap<String, String>,
}

impl ServerConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<ServerConfig, SdkError> {
        ServerConfig::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// Reads the configuration from the given variables (the process environment, or a
    /// test's).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ServerConfig, SdkError> {
        let environment: BTreeMap<String, String> = vars.into_iter().collect();
        let var = |name: &str| environment.get(name).filter(|value| !value.is_empty());
        let invalid = |name: &'static str, value: &str, reason: String| SdkError::Config {
            name,
            value: value.to_owned(),
            reason,
        };
        let port = match var(ENV_PORT) {
            Some(raw) => raw
                .parse()
                .map_err(|e| invalid(ENV_PORT, raw, format!("{e}")))?,
            None => DEFAULT_PORT,
        };
        let bind = match var(ENV_BIND) {
            Some(raw) => raw
                .parse()
                .map_err(|e| invalid(ENV_BIND, raw, format!("{e}")))?,
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let image_digest = var(ENV_IMAGE_DIGEST).cloned();
        let artifacts_root =
            PathBuf::from(var(ENV_ARTIFACTS_ROOT).map_or("/artifacts", String::as_str));
        let concurrency = var(ENV_CONCURRENCY)
            .map(|raw| {
                raw.parse()
                    .map_err(|e| invalid(ENV_CONCURRENCY, raw, format!("{e}; at least 1")))
            })
            .transpose()?;
        let store_url = var(ENV_STORE_URL).cloned();
        Ok(ServerConfig {
            bind,
            port,
            image_digest,
            artifacts_root,
            concurrency,
            store_url,
            environment,
        })
    }

    /// `bind:port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The runtime limits the adapter set ([`ENV_CPU`], [`ENV_MEMORY_GB`], [`ENV_GPU`]), as
    /// env-fingerprint pairs (`cpu`, `memory_gb`, `gpu`); a variable that is unset is left out.
    pub(crate) fn runtime_limits(&self) -> Vec<(&'static str, &str)> {
        [
            ("cpu", ENV_CPU),
            ("memory_gb", ENV_MEMORY_GB),
            ("gpu", ENV_GPU),
        ]
        .into_iter()
        .filter_map(|(key, name)| Some((key, self.var(name)?)))
        .collect()
    }

    /// The non-empty value of variable `name`.
    pub(crate) fn var(&self, name: &str) -> Option<&str> {
        self.environment
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("image_digest", &self.image_digest)
            .field("artifacts_root", &self.artifacts_root)
            .field("concurrency", &self.concurrency)
            .field("store_url", &self.store_url)
            .field(
                "environment",
                &format_args!("[{} variables]", self.environment.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_apply_when_unset() {
        let config = ServerConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(config.socket_addr().to_string(), "0.0.0.0:8000");
        assert_eq!(config.image_digest, None);
        assert!(config.runtime_limits().is_empty());
        assert_eq!(config.artifacts_root, PathBuf::from("/artifacts"));
        assert_eq!(config.concurrency, None);
        assert_eq!(config.store_url, None);
    }

    #[test]
    fn reads_every_variable() {
        let config = ServerConfig::from_vars(vars(&[
            ("PROCTOR_PORT", "9001"),
            ("PROCTOR_BIND", "127.0.0.1"),
            ("PROCTOR_IMAGE_DIGEST", "sha256:ab"),
            ("PROCTOR_ARTIFACTS_ROOT", "/tmp/a"),
            ("PROCTOR_CONCURRENCY", "3"),
            ("PROCTOR_STORE_URL", "s3://world/team"),
            ("PROCTOR_CPU", "0.5"),
            ("PROCTOR_MEMORY_GB", "2"),
            ("PROCTOR_GPU", "A100"),
            ("OPENAI_API_KEY", "sk-very-secret"),
        ]))
        .unwrap();
        assert_eq!(config.concurrency.map(NonZeroU32::get), Some(3));
        assert_eq!(config.store_url.as_deref(), Some("s3://world/team"));
        assert_eq!(config.socket_addr().to_string(), "127.0.0.1:9001");
        assert_eq!(config.image_digest.as_deref(), Some("sha256:ab"));
        assert_eq!(
            config.runtime_limits(),
            [("cpu", "0.5"), ("memory_gb", "2"), ("gpu", "A100")]
        );
        assert_eq!(config.artifacts_root, PathBuf::from("/tmp/a"));
        assert_eq!(config.var("OPENAI_API_KEY"), Some("sk-very-secret"));
        assert!(!format!("{config:?}").contains("sk-very-secret"));
    }

    #[test]
    fn refuses_bad_port_bind_and_concurrency() {
        for pairs in [
            [("PROCTOR_PORT", "eighty")],
            [("PROCTOR_BIND", "localhost")],
            [("PROCTOR_CONCURRENCY", "0")],
            [("PROCTOR_CONCURRENCY", "-1")],
        ] {
            let err = ServerConfig::from_vars(vars(&pairs)).unwrap_err();
            assert!(err.to_string().contains(pairs[0].0), "{err}");
        }
    }
}
