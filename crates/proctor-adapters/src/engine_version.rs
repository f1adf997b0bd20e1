//! Which container engine the local adapter reaches, and what it runs: what `proctor doctor`
//! reports about the engine.

use proctor_contract::{CanonError, Redactor};

use crate::engine::BollardEngine;

/// The Docker engine the local adapter talks to, as it describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    /// Where it was reached: `DOCKER_HOST` (redacted), or the default socket.
    pub address: String,
    /// The engine's version, e.g. `26.1.5`.
    pub version: String,
    /// The newest API version it speaks, e.g. `1.45`.
    pub api_version: String,
    /// Its platform, e.g. `linux/amd64`.
    pub platform: String,
}

/// Connects to the engine exactly as [`crate::LocalAdapter::connect`] does (`DOCKER_HOST`,
/// `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`, else the local socket) and asks for its
/// version. An engine that cannot be reached is the adapter's `ERR_ADAPTER_INVOCATION`,
/// saying where it was looked for.
pub async fn engine_version() -> Result<EngineVersion, CanonError> {
    let answer = BollardEngine::connect()?.version().await?;
    let known = |value: Option<String>| value.unwrap_or_else(|| "unknown".to_owned());
    Ok(EngineVersion {
        address: engine_address(std::env::var("DOCKER_HOST").ok().as_deref()),
        version: known(answer.version),
        api_version: known(answer.api_version),
        platform: format!("{}/{}", known(answer.os), known(answer.arch)),
    })
}

/// `DOCKER_HOST` as set, credentials masked, or the socket used without it.
fn engine_address(docker_host: Option<&str>) -> String {
    match docker_host.filter(|host| !host.is_empty()) {
        Some(host) => Redactor::default().redact(host).into_owned(),
        None => "unix:///var/run/docker.sock".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_docker_host_without_credentials_or_the_default_socket() {
        assert_eq!(engine_address(None), "unix:///var/run/docker.sock");
        assert_eq!(engine_address(Some("")), "unix:///var/run/docker.sock");
        assert_eq!(
            engine_address(Some("tcp://10.0.0.2:2376")),
            "tcp://10.0.0.2:2376"
        );
        let address = engine_address(Some("tcp://admin:hunter2@10.0.0.2:2376"));
        assert!(!address.contains("hunter2"), "{address}");
    }
}
