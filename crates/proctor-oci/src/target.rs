//! Where images go: a registry target `HOST/OWNER/REPO` (the GHCR convention) and the
//! repository each processor gets under it, `HOST/OWNER/REPO/<ns>-<name>`. Both follow the
//! one repository grammar of [`proctor_contract::ImageRepository`].

use std::fmt;
use std::str::FromStr;

use oci_client::Reference;
use proctor_contract::{ImageRepository, InvalidReference, ProcessorRef};

/// A registry location given as `HOST/OWNER/REPO` (e.g. `ghcr.io/acme/proctor`,
/// `127.0.0.1:5000/acme/proctor` or `[::1]:5000/acme/proctor`); processors are pushed to
/// repositories beneath it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryTarget {
    location: ImageRepository,
}

/// A registry target that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid registry `{}`: {}; expected HOST/OWNER/REPO, e.g. ghcr.io/acme/proctor",
    .0.raw(),
    .0.why()
)]
pub struct InvalidRegistry(InvalidReference);

impl RegistryTarget {
    /// The registry host, with its port if any (e.g. `127.0.0.1:5000`).
    pub fn host(&self) -> &str {
        self.location.host()
    }

    /// The repository path beneath the host (e.g. `acme/proctor`).
    pub fn namespace(&self) -> &str {
        self.location.path()
    }

    /// The repository of `processor_ref`: `HOST/OWNER/REPO/<ns>-<name>`. A processor name
    /// the distribution grammar does not allow as a path component (e.g. one ending in `_`)
    /// is refused.
    pub fn repository(
        &self,
        processor_ref: &ProcessorRef,
    ) -> Result<ImageRepository, InvalidReference> {
        self.location.join(&processor_ref.image_name())
    }
}

impl FromStr for RegistryTarget {
    type Err = InvalidRegistry;

    fn from_str(raw: &str) -> Result<RegistryTarget, InvalidRegistry> {
        Ok(RegistryTarget {
            location: raw.parse().map_err(InvalidRegistry)?,
        })
    }
}

impl fmt::Display for RegistryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.location.fmt(f)
    }
}

/// The distribution-API references of a repository's tags and digests.
pub(crate) trait DistributionReference {
    /// The reference of `tag`.
    fn by_tag(&self, tag: &str) -> Reference;

    /// The reference of `digest` (`sha256:…`).
    fn by_digest(&self, digest: &str) -> Reference;
}

impl DistributionReference for ImageRepository {
    fn by_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.host().to_owned(),
            self.path().to_owned(),
            tag.to_owned(),
        )
    }

    fn by_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.host().to_owned(),
            self.path().to_owned(),
            digest.to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use proctor_contract::Digest;

    use super::*;

    #[test]
    fn repositories_follow_the_ghcr_convention() {
        let target: RegistryTarget = "127.0.0.1:5000/acme/proctor".parse().unwrap();
        assert_eq!(
            (target.host(), target.namespace()),
            ("127.0.0.1:5000", "acme/proctor")
        );
        let processor_ref: ProcessorRef = "llm/litellm@1".parse().unwrap();
        let repository = target.repository(&processor_ref).unwrap();
        assert_eq!(repository.path(), "acme/proctor/llm-litellm");
        assert_eq!(
            repository.to_string(),
            "127.0.0.1:5000/acme/proctor/llm-litellm"
        );
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(
            repository.pinned(digest.clone()).to_string(),
            format!("127.0.0.1:5000/acme/proctor/llm-litellm@{digest}")
        );
        assert_eq!(
            repository.by_tag("1").whole(),
            "127.0.0.1:5000/acme/proctor/llm-litellm:1"
        );
        assert_eq!(
            repository.by_digest(&digest.to_string()).whole(),
            format!("127.0.0.1:5000/acme/proctor/llm-litellm@{digest}")
        );
        let unnameable: ProcessorRef = "llm/lite_@1".parse().unwrap();
        assert!(target.repository(&unnameable).is_err());
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
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid registry `{raw}`: ")),
                "{err}"
            );
        }
        assert!("ghcr.io/acme".parse::<RegistryTarget>().is_ok());
        let upper: RegistryTarget = "GHCR.io/acme/proctor".parse().unwrap();
        assert_eq!(upper.host(), "ghcr.io");
        assert!(
            "localhost:5000/a_b/c.d/e-f"
                .parse::<RegistryTarget>()
                .is_ok()
        );
        let ipv6: RegistryTarget = "[::1]:5000/acme/proctor".parse().unwrap();
        assert_eq!(ipv6.to_string(), "[::1]:5000/acme/proctor");
    }
}
