//! Registry credentials: `PROCTOR_REGISTRY_USERNAME` / `PROCTOR_REGISTRY_PASSWORD`, else the
//! `auths` entry for the host in the docker config (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`), else anonymous. Credential helpers (`credsStore`) are not run.
//!
//! Values are handed to the registry client only; they are never logged or put in errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// Env var holding the registry user name.
pub const USERNAME_ENV: &str = "PROCTOR_REGISTRY_USERNAME";
/// Env var holding the registry password or token.
pub const PASSWORD_ENV: &str = "PROCTOR_REGISTRY_PASSWORD";

/// The credentials for `host`, and where they came from (for logs).
pub(crate) fn registry_auth(host: &str) -> (RegistryAuth, &'static str) {
    if let (Ok(username), Ok(password)) = (std::env::var(USERNAME_ENV), std::env::var(PASSWORD_ENV))
    {
        return (RegistryAuth::Basic(username, password), "env");
    }
    let from_config = docker_config_path()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|config| docker_config_auth(&config, host));
    match from_config {
        Some((username, password)) => (RegistryAuth::Basic(username, password), "docker-config"),
        None => (RegistryAuth::Anonymous, "anonymous"),
    }
}

fn docker_config_path() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))?;
    Some(dir.join("config.json"))
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The user name and password the docker config `config` holds for `host`. Keys may carry a
/// scheme and a path (`https://index.docker.io/v1/`).
fn docker_config_auth(config: &str, host: &str) -> Option<(String, String)> {
    let config: DockerConfig = serde_json::from_str(config).ok()?;
    let entry = config.auths.iter().find_map(|(key, entry)| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let key_host = key.split('/').next().unwrap_or(key);
        key_host.eq_ignore_ascii_case(host).then_some(entry)
    })?;
    if let Some(encoded) = &entry.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (username, password) = decoded.split_once(':')?;
        return Some((username.to_owned(), password.to_owned()));
    }
    Some((entry.username.clone()?, entry.password.clone()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_base64_auth_for_the_host() {
        // "user:pa:ss" — a password may itself contain a colon.
        let config = r#"{"auths":{"https://ghcr.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},"other.io":{"auth":"eDp5"}}}"#;
        assert_eq!(
            docker_config_auth(config, "ghcr.io"),
            Some(("user".to_owned(), "pa:ss".to_owned()))
        );
        assert_eq!(docker_config_auth(config, "127.0.0.1:5000"), None);
    }

    #[test]
    fn reads_plain_fields_and_ignores_garbage() {
        let config = r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            docker_config_auth(config, "127.0.0.1:5000"),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(docker_config_auth("not json", "ghcr.io"), None);
        assert_eq!(
            docker_config_auth(r#"{"credsStore":"desktop"}"#, "ghcr.io"),
            None
        );
        let broken = r#"{"auths":{"ghcr.io":{"auth":"!!!"}}}"#;
        assert_eq!(docker_config_auth(broken, "ghcr.io"), None);
    }
}
