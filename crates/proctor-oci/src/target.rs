//! Where images go: a registry target `HOST/OWNER/REPO` (the GHCR convention) and the
//! repository each processor gets under it, `HOST/OWNER/REPO/<ns>-<name>`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::LazyLock;

use oci_client::Reference;
use proctor_contract::ProcessorRef;
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A repository path component, as the distribution spec allows it.
static PATH_COMPONENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$").expect("the pattern is valid")
});
/// A registry host: a DNS name or IPv4 address, or a bracketed IPv6 address, with an
/// optional port.
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
        .expect("the pattern is valid")
});

/// A registry location given as `HOST/OWNER/REPO` (e.g. `ghcr.io/acme/proctor` or
/// `127.0.0.1:5000/acme/proctor`); processors are pushed to repositories beneath it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryTarget {
    host: String,
    namespace: String,
}

/// A registry target or repository that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid registry `{raw}`: {why}; expected HOST/OWNER/REPO, e.g. ghcr.io/acme/proctor")]
pub struct InvalidRegistry {
    raw: String,
    why: &'static str,
}

impl RegistryTarget {
    /// The registry host, with its port if any (e.g. `127.0.0.1:5000`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path beneath the host (e.g. `acme/proctor`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The repository of `processor_ref`: `HOST/OWNER/REPO/<ns>-<name>`.
    pub fn repository(&self, processor_ref: &ProcessorRef) -> ImageRepository {
        ImageRepository {
            host: self.host.clone(),
            path: format!("{}/{}", self.namespace, processor_ref.image_name()),
        }
    }
}

impl FromStr for RegistryTarget {
    type Err = InvalidRegistry;

    fn from_str(raw: &str) -> Result<RegistryTarget, InvalidRegistry> {
        let (host, namespace) = split_host(raw)?;
        // Host names are case-insensitive; pinned references spell them in lowercase.
        Ok(RegistryTarget {
            host: host.to_ascii_lowercase(),
            namespace: namespace.to_owned(),
        })
    }
}

impl fmt::Display for RegistryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.namespace)
    }
}

/// One image repository, `HOST/PATH` (e.g. `127.0.0.1:5000/acme/proctor/text-stats`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRepository {
    host: String,
    path: String,
}

impl ImageRepository {
    /// The registry host, with its port if any.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path on the registry (e.g. `acme/proctor/text-stats`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The pinned reference of `digest` in this repository: `HOST/PATH@sha256:…`.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{self}@{digest}")
    }

    /// Whether the registry is on this machine, where it is spoken to over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }

    /// The distribution-API reference of `tag`.
    pub(crate) fn by_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), self.path.clone(), tag.to_owned())
    }

    /// The distribution-API reference of `digest`.
    pub(crate) fn by_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(self.host.clone(), self.path.clone(), digest.to_owned())
    }
}

impl FromStr for ImageRepository {
    type Err = InvalidRegistry;

    fn from_str(raw: &str) -> Result<ImageRepository, InvalidRegistry> {
        let (host, path) = split_host(raw)?;
        Ok(ImageRepository {
            host: host.to_ascii_lowercase(),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for ImageRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

impl Serialize for ImageRepository {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRepository {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ImageRepository, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Splits `HOST/PATH`, checking both halves.
fn split_host(raw: &str) -> Result<(&str, &str), InvalidRegistry> {
    let invalid = |why| InvalidRegistry {
        raw: raw.to_owned(),
        why,
    };
    let (host, path) = raw
        .split_once('/')
        .ok_or_else(|| invalid("it has no repository path"))?;
    if !HOST.is_match(host) {
        return Err(invalid("the host is not a valid host[:port]"));
    }
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(invalid(
            "the first component must be a registry host such as ghcr.io",
        ));
    }
    if !path
        .split('/')
        .all(|component| PATH_COMPONENT.is_match(component))
    {
        return Err(invalid(
            "repository path components must be lowercase [a-z0-9._-]",
        ));
    }
    Ok((host, path))
}

/// Whether `host` (with an optional port) names this machine.
fn is_loopback_host(host: &str) -> bool {
    let without_port = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.split(':').next().unwrap_or(host),
    };
    without_port.eq_ignore_ascii_case("localhost")
        || without_port
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        || without_port
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_follow_the_ghcr_convention() {
        let target: RegistryTarget = "127.0.0.1:5000/acme/proctor".parse().unwrap();
        assert_eq!(
            (target.host(), target.namespace()),
            ("127.0.0.1:5000", "acme/proctor")
        );
        let processor_ref: ProcessorRef = "llm/litellm@1".parse().unwrap();
        let repository = target.repository(&processor_ref);
        assert_eq!(repository.path(), "acme/proctor/llm-litellm");
        assert_eq!(
            repository.to_string(),
            "127.0.0.1:5000/acme/proctor/llm-litellm"
        );
        assert_eq!(
            repository.pinned("sha256:ab"),
            "127.0.0.1:5000/acme/proctor/llm-litellm@sha256:ab"
        );
        assert_eq!(
            repository.by_tag("1").whole(),
            "127.0.0.1:5000/acme/proctor/llm-litellm:1"
        );
        assert!(repository.is_loopback());
        let parsed: ImageRepository = repository.to_string().parse().unwrap();
        assert_eq!(parsed, repository);
        assert_eq!(
            serde_json::to_string(&repository).unwrap(),
            "\"127.0.0.1:5000/acme/proctor/llm-litellm\""
        );
    }

    #[test]
    fn refuses_malformed_targets() {
        for raw in [
            "",
            "ghcr.io",
            "ghcr.io/",
            "acme/proctor",
            "ghcr.io/Acme/proctor",
            "ghcr.io//x",
            "ghcr.io/acme/-x",
            "https://ghcr.io/acme",
            "ghcr.io/acme/proctor/",
            "ghc r.io/a",
        ] {
            let err = raw.parse::<RegistryTarget>().unwrap_err();
            assert!(err.to_string().contains("HOST/OWNER/REPO"), "{raw}");
        }
        assert!("ghcr.io/acme".parse::<RegistryTarget>().is_ok());
        let upper: RegistryTarget = "GHCR.io/acme/proctor".parse().unwrap();
        assert_eq!(upper.host(), "ghcr.io");
        assert!(
            "localhost:5000/a_b/c.d/e-f"
                .parse::<RegistryTarget>()
                .is_ok()
        );
        assert!("[::1]:5000/acme/proctor".parse::<RegistryTarget>().is_ok());
    }

    #[test]
    fn detects_loopback_hosts() {
        for host in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
