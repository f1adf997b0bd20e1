//! `pin`: reads an image index back from the registry, checks that it lists every platform
//! and that every platform image resolves, and writes the digests into `registry.yaml`.
//!
//! Refusals are canonical (`ERR_PIN`, `ERR_REGISTRY_UNREACHABLE`) and leave the file as it
//! was.

use std::fmt;
use std::path::Path;

use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::{Reference, RegistryOperation};
use oci_spec::image::{ImageIndex, ImageManifest, Os};
use proctor_contract::{CanonError, Digest, ErrorCode, ImageRepository, PinnedReference};

use crate::pin_file::{locate_image_block, with_pins, write_keeping_mode};
use crate::platform::{Platform, oci_arch};
use crate::remote::{Remote, is_not_found, registry_error};
use crate::target::DistributionReference;

/// Where `pin` reads the image index from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSource {
    /// The repository, `HOST/OWNER/REPO/<ns>-<name>`.
    pub repository: ImageRepository,
    /// The index's tag or digest in that repository.
    pub reference: IndexReference,
}

/// A tag or a digest naming an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexReference {
    /// A tag such as `1`.
    Tag(String),
    /// A digest `sha256:…`.
    Digest(String),
}

impl IndexSource {
    fn reference(&self) -> Reference {
        match &self.reference {
            IndexReference::Tag(tag) => self.repository.by_tag(tag),
            IndexReference::Digest(digest) => self.repository.by_digest(digest),
        }
    }
}

impl fmt::Display for IndexSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            IndexReference::Tag(tag) => write!(f, "{}:{tag}", self.repository),
            IndexReference::Digest(digest) => write!(f, "{}@{digest}", self.repository),
        }
    }
}

/// The three pinned references `registry.yaml` holds, each `HOST/REPO@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    /// The multi-arch image index.
    pub index: PinnedReference,
    /// The linux/amd64 image manifest.
    pub amd64: PinnedReference,
    /// The linux/arm64 image manifest.
    pub arm64: PinnedReference,
}

/// Reads the image index at `source` and returns the pins, after checking that the index
/// lists exactly one manifest for each of linux/amd64 and linux/arm64 and that each manifest,
/// its config and its layers resolve in the registry.
pub async fn resolve_pins(source: &IndexSource) -> Result<Pins, CanonError> {
    let refuse = |detail: String| CanonError::new(ErrorCode::Pin, format!("{source}: {detail}"));
    let remote = Remote::new(&source.repository, ErrorCode::Pin)?;
    let reference = source.reference();
    remote
        .check(&reference, RegistryOperation::Pull, ErrorCode::Pin)
        .await?;
    let (bytes, index_digest) = remote
        .client
        .pull_manifest_raw(
            &reference,
            &remote.auth,
            &[OCI_IMAGE_INDEX_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE],
        )
        .await
        .map_err(|err| not_resolving(&reference, &err, "the image index"))?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|err| refuse(format!("not an image index: {err}")))?;
    let index_digest: Digest = index_digest
        .parse()
        .map_err(|err| refuse(format!("the image index: {err}")))?;
    let mut digests = Vec::new();
    for platform in Platform::ALL {
        let listed: Vec<_> = index
            .manifests()
            .iter()
            .filter(|entry| {
                entry.platform().as_ref().is_some_and(|p| {
                    *p.os() == Os::Linux && *p.architecture() == oci_arch(platform)
                })
            })
            .collect();
        let [entry] = listed.as_slice() else {
            return Err(refuse(if listed.is_empty() {
                format!("the index does not list {platform}")
            } else {
                format!("the index lists {platform} {} times", listed.len())
            }));
        };
        let digest: Digest = entry
            .digest()
            .to_string()
            .parse()
            .map_err(|err| refuse(format!("the {platform} entry: {err}")))?;
        let reference = source.repository.by_digest(&digest.to_string());
        check_platform_image(&remote, &reference, platform).await?;
        digests.push(digest);
    }
    let [amd64, arm64] = <[Digest; 2]>::try_from(digests)
        .map_err(|_| refuse("internal: expected two platforms".to_owned()))?;
    Ok(Pins {
        index: source.repository.pinned(index_digest),
        amd64: source.repository.pinned(amd64),
        arm64: source.repository.pinned(arm64),
    })
}

/// Checks that the manifest at `reference` resolves (its bytes match its digest), is an
/// image manifest for `platform`'s architecture, and that its config and layers exist.
async fn check_platform_image(
    remote: &Remote,
    reference: &Reference,
    platform: Platform,
) -> Result<(), CanonError> {
    let what = format!("the {platform} manifest");
    let (bytes, _) = remote
        .client
        .pull_manifest_raw(
            reference,
            &remote.auth,
            &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE],
        )
        .await
        .map_err(|err| not_resolving(reference, &err, &what))?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|err| {
        CanonError::new(
            ErrorCode::Pin,
            format!(
                "{}: {what} is not an image manifest: {err}",
                reference.whole()
            ),
        )
    })?;
    for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
        let exists = remote
            .client
            .blob_exists(reference, blob.digest().as_ref())
            .await
            .map_err(|err| registry_error(ErrorCode::Pin, reference, &err))?;
        if !exists {
            return Err(CanonError::new(
                ErrorCode::Pin,
                format!(
                    "{}: blob {} of {what} does not resolve",
                    reference.whole(),
                    blob.digest()
                ),
            ));
        }
    }
    Ok(())
}

fn not_resolving(
    reference: &Reference,
    err: &oci_client::errors::OciDistributionError,
    what: &str,
) -> CanonError {
    if is_not_found(err) {
        CanonError::new(
            ErrorCode::Pin,
            format!(
                "{}: {what} does not resolve in the registry",
                reference.whole()
            ),
        )
    } else {
        registry_error(ErrorCode::Pin, reference, err)
    }
}

/// Pins `registry_yaml` to the image index at `source`: checks the file's `image:` block,
/// resolves the pins ([`resolve_pins`]), then replaces the three values `image.index`,
/// `image.platforms.amd64` and `image.platforms.arm64` in place — atomically, the rest of the
/// file byte for byte as it was. On any refusal the file is left untouched.
pub async fn pin(registry_yaml: &Path, source: &IndexSource) -> Result<Pins, CanonError> {
    let text = std::fs::read_to_string(registry_yaml).map_err(|err| {
        CanonError::new(
            ErrorCode::Pin,
            format!("reading {}: {err}", registry_yaml.display()),
        )
    })?;
    locate_image_block(&text).map_err(|err| in_file(registry_yaml, err))?;
    let pins = resolve_pins(source).await?;
    let pinned = with_pins(&text, &pins).map_err(|err| in_file(registry_yaml, err))?;
    if pinned != text {
        write_keeping_mode(registry_yaml, pinned.as_bytes()).map_err(|err| {
            CanonError::new(
                ErrorCode::Pin,
                format!("writing {}: {err}", registry_yaml.display()),
            )
        })?;
    }
    tracing::info!(event = "oci.pin.settle", file = %registry_yaml.display(), index = %pins.index);
    Ok(pins)
}

fn in_file(path: &Path, err: CanonError) -> CanonError {
    CanonError::new(err.code(), format!("{}: {}", path.display(), err.detail()))
}
