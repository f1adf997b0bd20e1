//! Image references, with one grammar for every crate that writes or checks them:
//!
//! ```text
//! pinned reference  = repository "@" digest          e.g. ghcr.io/acme/proctor/text-stats@sha256:…
//! repository        = host "/" path                  e.g. [::1]:5000/acme/proctor/text-stats
//! host              = (dns-name | "[" ipv6 "]") [":" port]
//! path              = component *("/" component)
//! component         = [a-z0-9]+ *(("." | "_" | "__" | "-"+) [a-z0-9]+)
//! ```
//!
//! A DNS name is dot-separated labels of letters, digits and inner hyphens (an IPv4 address
//! is one); the host must be recognizable as a registry — it has a dot, a port or brackets,
//! or it is `localhost` — so `acme/proctor` is never read as a host `acme`. Hosts are
//! case-insensitive and kept in lowercase. No tag is ever part of a pinned reference.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Digest;

/// A repository path component, as the distribution spec allows it.
static PATH_COMPONENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$").expect("the pattern is valid")
});
/// A DNS name (or IPv4 address): dot-separated labels of letters, digits and inner hyphens.
static DNS_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")
        .expect("the pattern is valid")
});

/// Text that is not an image repository or pinned reference, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{raw}`: {why}")]
pub struct InvalidReference {
    raw: String,
    why: &'static str,
}

impl InvalidReference {
    fn new(raw: &str, why: &'static str) -> InvalidReference {
        InvalidReference {
            raw: raw.to_owned(),
            why,
        }
    }

    /// The text that was refused.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// What is wrong with it, e.g. `the host is not a valid host[:port]`.
    pub fn why(&self) -> &'static str {
        self.why
    }
}

/// An image repository on a registry, `HOST/PATH`
/// (e.g. `127.0.0.1:5000/acme/proctor/text-stats`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRepository {
    host: String,
    path: String,
}

impl ImageRepository {
    /// The registry host, with its port if any (e.g. `127.0.0.1:5000`, `[::1]:5000`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path on the registry (e.g. `acme/proctor/text-stats`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// This repository with one more path component, e.g. `…/proctor` joined with
    /// `text-stats`.
    pub fn join(&self, component: &str) -> Result<ImageRepository, InvalidReference> {
        let path = format!("{}/{component}", self.path);
        check_path(&path)
            .map_err(|why| InvalidReference::new(&format!("{self}/{component}"), why))?;
        Ok(ImageRepository {
            host: self.host.clone(),
            path,
        })
    }

    /// The pinned reference of `digest` in this repository: `HOST/PATH@sha256:…`.
    pub fn pinned(&self, digest: Digest) -> PinnedReference {
        PinnedReference {
            repository: self.clone(),
            digest,
        }
    }

    /// Whether the registry is on this machine (`localhost`, `127.0.0.0/8`, `[::1]`), where
    /// it is spoken to over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let without_port = match self.host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => self.host.split(':').next().unwrap_or(&self.host),
        };
        without_port == "localhost"
            || without_port
                .parse::<Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
            || without_port
                .parse::<Ipv6Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl FromStr for ImageRepository {
    type Err = InvalidReference;

    fn from_str(raw: &str) -> Result<ImageRepository, InvalidReference> {
        let invalid = |why| InvalidReference::new(raw, why);
        let (host, path) = raw
            .split_once('/')
            .ok_or_else(|| invalid("it has no repository path"))?;
        check_host(host).map_err(invalid)?;
        check_path(path).map_err(invalid)?;
        Ok(ImageRepository {
            host: host.to_ascii_lowercase(),
            path: path.to_owned(),
        })
    }
}

/// Checks `HOST[:PORT]`, where HOST is a DNS name, an IPv4 address or a bracketed IPv6
/// address that names a registry.
fn check_host(host: &str) -> Result<(), &'static str> {
    let not_a_host = "the host is not a valid host[:port]";
    let (name, port) = match host.strip_prefix('[') {
        Some(bracketed) => {
            let (address, rest) = bracketed.split_once(']').ok_or(not_a_host)?;
            address.parse::<Ipv6Addr>().map_err(|_| not_a_host)?;
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or(not_a_host)?),
            };
            (None, port)
        }
        None => match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        },
    };
    if port.is_some_and(|port| {
        !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err()
    }) {
        return Err(not_a_host);
    }
    if let Some(name) = name {
        if !DNS_NAME.is_match(name) {
            return Err(not_a_host);
        }
        if !(name.contains('.') || port.is_some() || name.eq_ignore_ascii_case("localhost")) {
            return Err("the first component must be a registry host such as ghcr.io");
        }
    }
    Ok(())
}

/// Checks a repository path: one or more `/`-separated components.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path
        .split('/')
        .all(|component| PATH_COMPONENT.is_match(component))
    {
        Ok(())
    } else {
        Err("repository path components must be lowercase [a-z0-9._-]")
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

/// An image named by its digest, `HOST[:PORT]/PATH@sha256:<64 hex>`: what `registry.yaml`
/// pins and what a run pulls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PinnedReference {
    repository: ImageRepository,
    digest: Digest,
}

impl PinnedReference {
    /// The registry host, with its port if any.
    pub fn host(&self) -> &str {
        self.repository.host()
    }

    /// The repository path on the registry (e.g. `acme/proctor/text-stats`).
    pub fn repository(&self) -> &str {
        self.repository.path()
    }

    /// The manifest digest the reference pins.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl FromStr for PinnedReference {
    type Err = InvalidReference;

    fn from_str(raw: &str) -> Result<PinnedReference, InvalidReference> {
        let (repository, digest) = raw
            .split_once('@')
            .ok_or_else(|| InvalidReference::new(raw, "it names no digest (@sha256:…)"))?;
        if repository
            .split_once('/')
            .is_some_and(|(_, path)| path.contains(':'))
        {
            return Err(InvalidReference::new(raw, "a pinned reference has no tag"));
        }
        let repository: ImageRepository = repository
            .parse()
            .map_err(|err: InvalidReference| InvalidReference::new(raw, err.why))?;
        let digest = digest.parse().map_err(|_| {
            InvalidReference::new(raw, "the digest is not sha256:<64 lowercase hex>")
        })?;
        Ok(PinnedReference { repository, digest })
    }
}

impl fmt::Display for PinnedReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, self.digest)
    }
}

impl Serialize for PinnedReference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PinnedReference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PinnedReference, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HEX: &str = "3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

    fn pinned(raw: &str) -> Result<PinnedReference, InvalidReference> {
        raw.parse()
    }

    #[test]
    fn pinned_references_accept_every_kind_of_host() {
        for (host, path) in [
            ("ghcr.io", "acme/proctor/text-stats"),
            ("127.0.0.1:5000", "text-stats"),
            ("localhost", "a_b/c.d/e-f"),
            ("localhost:5000", "a__b/c---d"),
            ("[::1]:5000", "acme/x"),
            ("[::1]", "acme/x"),
            ("[fd00::2]:443", "acme/x"),
            ("registry-1.example.com:65535", "x"),
        ] {
            let raw = format!("{host}/{path}@sha256:{HEX}");
            let reference = pinned(&raw).unwrap_or_else(|err| panic!("{raw}: {err}"));
            assert_eq!(reference.host(), host);
            assert_eq!(reference.repository(), path);
            assert_eq!(reference.digest().hex(), HEX);
            assert_eq!(reference.to_string(), raw);
        }
    }

    #[test]
    fn hosts_are_kept_in_lowercase() {
        let reference = pinned(&format!("GHCR.io/acme/x@sha256:{HEX}")).unwrap();
        assert_eq!(reference.host(), "ghcr.io");
        let reference = pinned(&format!("[::ABCD]:5000/acme/x@sha256:{HEX}")).unwrap();
        assert_eq!(reference.host(), "[::abcd]:5000");
    }

    #[test]
    fn pinned_references_refuse_everything_else() {
        let zeros = "0".repeat(64);
        let cases = [
            (
                "127.0.0.1:5000/text-stats:1.0".to_owned(),
                "names no digest",
            ),
            (
                format!("127.0.0.1:5000/text-stats:1@sha256:{HEX}"),
                "no tag",
            ),
            (format!("text-stats@sha256:{HEX}"), "no repository path"),
            (format!("registry/repo@sha256:{HEX}"), "registry host"),
            (format!("ghcr.io/Acme/x@sha256:{HEX}"), "lowercase"),
            (format!("ghcr.io/acme/-x@sha256:{HEX}"), "lowercase"),
            (format!("ghcr.io//x@sha256:{HEX}"), "lowercase"),
            (format!("ghcr.io/x/@sha256:{HEX}"), "lowercase"),
            (format!("ghcr.io/x_@sha256:{HEX}"), "lowercase"),
            (format!("ghc r.io/x@sha256:{HEX}"), "host[:port]"),
            (format!("-ghcr.io/x@sha256:{HEX}"), "host[:port]"),
            (format!("ghcr.io:/x@sha256:{HEX}"), "host[:port]"),
            (format!("ghcr.io:99999/x@sha256:{HEX}"), "host[:port]"),
            (format!("ghcr.io:+80/x@sha256:{HEX}"), "host[:port]"),
            (format!("[::1/x@sha256:{HEX}"), "host[:port]"),
            (format!("[::1]5000/x@sha256:{HEX}"), "host[:port]"),
            (format!("[not-ipv6]:5000/x@sha256:{HEX}"), "host[:port]"),
            (format!("::1:5000/x@sha256:{HEX}"), "host[:port]"),
            (format!("https://ghcr.io/x@sha256:{HEX}"), "host[:port]"),
            ("ghcr.io/x@sha256:abc".to_owned(), "the digest"),
            (
                format!("ghcr.io/x@sha256:{}", HEX.to_uppercase()),
                "the digest",
            ),
            (format!("ghcr.io/x@sha256:{HEX}@sha256:{HEX}"), "the digest"),
            ("REGISTRY/REPO@sha256:<64 hex>".to_owned(), "registry host"),
            (format!("ghcr.io/x@sha256:{zeros} "), "the digest"),
            (String::new(), "names no digest"),
        ];
        for (raw, why) in cases {
            let err = pinned(&raw)
                .err()
                .unwrap_or_else(|| panic!("accepted {raw}"));
            assert_eq!(err.raw(), raw);
            assert!(err.why().contains(why), "{raw}: {err}");
            assert!(
                err.to_string().starts_with("invalid image reference"),
                "{err}"
            );
        }
    }

    #[test]
    fn repositories_join_pin_and_know_loopback_hosts() {
        let repository: ImageRepository = "[::1]:5000/acme/proctor".parse().unwrap();
        let joined = repository.join("text-stats").unwrap();
        assert_eq!(joined.to_string(), "[::1]:5000/acme/proctor/text-stats");
        assert_eq!(joined.path(), "acme/proctor/text-stats");
        let err = repository.join("a_").unwrap_err();
        assert_eq!(err.raw(), "[::1]:5000/acme/proctor/a_");
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        let reference = joined.pinned(digest.clone());
        assert_eq!(
            reference.to_string(),
            format!("[::1]:5000/acme/proctor/text-stats@sha256:{HEX}")
        );
        assert_eq!(pinned(&reference.to_string()).unwrap(), reference);
        assert_eq!(reference.digest(), &digest);

        let loopback = |host: &str| {
            format!("{host}/x")
                .parse::<ImageRepository>()
                .unwrap()
                .is_loopback()
        };
        for host in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(loopback(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!loopback(host), "{host}");
        }
    }

    #[test]
    fn serialize_as_strings() {
        let raw = format!("[::1]:5000/acme/x@sha256:{HEX}");
        let reference = pinned(&raw).unwrap();
        let json = serde_json::to_string(&reference).unwrap();
        assert_eq!(json, format!("\"{raw}\""));
        assert_eq!(
            serde_json::from_str::<PinnedReference>(&json).unwrap(),
            reference
        );
        assert!(serde_json::from_str::<PinnedReference>("\"acme/x@sha256:ab\"").is_err());
        let repository: ImageRepository = serde_json::from_str("\"ghcr.io/acme/x\"").unwrap();
        assert_eq!(
            serde_json::to_string(&repository).unwrap(),
            "\"ghcr.io/acme/x\""
        );
    }

    /// A host of any of the accepted kinds, as written in a reference.
    fn host() -> impl Strategy<Value = String> {
        let port = prop::option::of(any::<u16>());
        let dns = "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){1,3}";
        prop_oneof![
            (dns, port.clone()).prop_map(|(name, port)| with_port(name, port)),
            (any::<[u8; 4]>(), port.clone())
                .prop_map(|(ip, port)| { with_port(Ipv4Addr::from(ip).to_string(), port) }),
            (any::<[u16; 8]>(), port.clone())
                .prop_map(|(ip, port)| { with_port(format!("[{}]", Ipv6Addr::from(ip)), port) }),
            port.prop_map(|port| with_port("localhost".to_owned(), port)),
        ]
    }

    fn with_port(host: String, port: Option<u16>) -> String {
        match port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// A repository path of one to four components.
    fn path() -> impl Strategy<Value = String> {
        let component = "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}";
        prop::collection::vec(component, 1..5).prop_map(|components| components.join("/"))
    }

    proptest! {
        #[test]
        fn pinned_references_round_trip(host in host(), path in path(), hex in "[0-9a-f]{64}") {
            // A bare dotless DNS name without a port is not a registry host.
            prop_assume!(host.contains(['.', ':', '[']) || host == "localhost");
            let raw = format!("{host}/{path}@sha256:{hex}");
            let reference = pinned(&raw).map_err(|err| TestCaseError::fail(err.to_string()))?;
            prop_assert_eq!(reference.host(), host.as_str());
            prop_assert_eq!(reference.repository(), path.as_str());
            prop_assert_eq!(reference.digest().hex(), hex.as_str());
            prop_assert_eq!(reference.to_string(), raw);
            let again: PinnedReference = reference.to_string().parse().unwrap();
            prop_assert_eq!(again, reference);
        }

        #[test]
        fn parsing_never_panics(raw in "\\PC{0,80}") {
            let _ = pinned(&raw);
            let _ = raw.parse::<ImageRepository>();
        }

        #[test]
        fn a_changed_digest_is_refused(host in host(), path in path(), hex in "[0-9a-f]{63}") {
            let raw = format!("{host}/{path}@sha256:{hex}");
            prop_assert!(pinned(&raw).is_err());
        }
    }
}
