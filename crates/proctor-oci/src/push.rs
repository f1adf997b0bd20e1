//! `push`: uploads a built image layout to a distribution registry — every platform's blobs
//! and manifest by digest, then the image index under the processor version as tag — and
//! records what was pushed next to the layout so `pin` can find it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use oci_client::RegistryOperation;
use proctor_contract::{
    CanonError, ErrorCode, ImageRepository, ProcessorRef, Progress, ProgressUnit,
};
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::image::Blob;
use crate::layout::read_layout;
use crate::pin::{IndexReference, IndexSource};
use crate::platform::Platform;
use crate::remote::{Remote, registry_error};
use crate::target::{DistributionReference, RegistryTarget};

/// The file, inside the layout directory, that records the last push of that layout.
const PUSH_RECORD: &str = "proctor-push.json";

/// What a push left in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushedImage {
    /// The processor the image belongs to.
    pub processor_ref: ProcessorRef,
    /// The repository, `HOST/OWNER/REPO/<ns>-<name>`.
    pub repository: ImageRepository,
    /// The tag the index was pushed under (the processor version).
    pub tag: String,
    /// The digest of the image index, `sha256:…`.
    pub index_digest: String,
    /// The digest of each platform manifest.
    pub platforms: BTreeMap<Platform, String>,
}

impl PushedImage {
    /// Where `pin` reads the index from: this push's repository, by index digest.
    pub fn index_source(&self) -> IndexSource {
        IndexSource {
            repository: self.repository.clone(),
            reference: IndexReference::Digest(self.index_digest.clone()),
        }
    }

    /// The record of the last push of the layout at `layout_dir`, if it was pushed since it
    /// was built (building replaces the layout and drops the record).
    pub fn load(layout_dir: &Path) -> Result<Option<PushedImage>, CanonError> {
        let path = layout_dir.join(PUSH_RECORD);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(CanonError::new(
                    ErrorCode::Pin,
                    format!("reading {}: {err}", path.display()),
                ));
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| CanonError::new(ErrorCode::Pin, format!("{}: {err}", path.display())))
    }

    fn save(&self, layout_dir: &Path) -> Result<(), CanonError> {
        let failed = |err: &dyn std::fmt::Display| {
            CanonError::new(
                ErrorCode::Push,
                format!("recording the push in {}: {err}", layout_dir.display()),
            )
        };
        let text = serde_json::to_string_pretty(self).map_err(|err| failed(&err))?;
        proctor_fs::write_atomically(&layout_dir.join(PUSH_RECORD), text.as_bytes(), None)
            .map_err(|err| failed(&err))
    }
}

/// Pushes the image layout at `layout_dir` to its repository under `target`: each platform's
/// layer and config blobs (skipping those the registry already has), each platform manifest by
/// digest, then the image index tagged with the processor version. `progress` hears of the
/// bytes pushed, a blob the registry already has counting as pushed.
///
/// Errors: `ERR_REGISTRY_UNREACHABLE` when the registry does not answer (checked before any
/// upload), `ERR_PUSH` for a missing or corrupt layout or a refused upload.
pub async fn push(
    layout_dir: &Path,
    target: &RegistryTarget,
    progress: &Progress,
) -> Result<PushedImage, CanonError> {
    let started = Instant::now();
    let image = read_layout(layout_dir)?;
    let repository = target.repository(&image.processor_ref).map_err(|err| {
        CanonError::new(
            ErrorCode::Push,
            format!(
                "{} has no repository under {target}: {err}",
                image.processor_ref
            ),
        )
    })?;
    let remote = Remote::new(&repository, ErrorCode::Push)?;
    let tag_reference = repository.by_tag(&image.tag);
    remote
        .check(&tag_reference, RegistryOperation::Push, ErrorCode::Push)
        .await?;
    tracing::info!(event = "oci.push.start", repository = %repository, tag = %image.tag);

    let bytes = progress.start(
        format!("pushing {repository}:{}", image.tag),
        ProgressUnit::Bytes,
        Some(image.total_bytes()),
    );
    let mut platforms = BTreeMap::new();
    for stored in &image.manifests {
        let reference = repository.by_digest(stored.manifest.digest.as_ref());
        for blob in &stored.blobs {
            let exists = remote
                .client
                .blob_exists(&reference, blob.digest.as_ref())
                .await
                .map_err(|err| registry_error(ErrorCode::Push, &reference, &err))?;
            if !exists {
                remote
                    .client
                    .push_blob(&reference, blob.bytes.clone(), blob.digest.as_ref())
                    .await
                    .map_err(|err| registry_error(ErrorCode::Push, &reference, &err))?;
            }
            bytes.advance(blob.size());
        }
        push_manifest(&remote, &reference, &stored.manifest).await?;
        bytes.advance(stored.manifest.size());
        platforms.insert(stored.platform, stored.manifest.digest.to_string());
    }
    push_manifest(&remote, &tag_reference, &image.index).await?;
    bytes.advance(image.index.size());
    drop(bytes);

    let pushed = PushedImage {
        processor_ref: image.processor_ref,
        repository,
        tag: image.tag,
        index_digest: image.index.digest.to_string(),
        platforms,
    };
    pushed.save(layout_dir)?;
    tracing::info!(
        event = "oci.push.settle",
        repository = %pushed.repository,
        index_digest = %pushed.index_digest,
        duration_ms = started.elapsed().as_millis() as u64,
    );
    Ok(pushed)
}

async fn push_manifest(
    remote: &Remote,
    reference: &oci_client::Reference,
    manifest: &Blob,
) -> Result<(), CanonError> {
    let content_type = HeaderValue::from_str(manifest.media_type.as_ref())
        .map_err(|err| CanonError::new(ErrorCode::Push, format!("media type: {err}")))?;
    // The exact bytes from the layout, so the registry stores the digests that were built.
    remote
        .client
        .push_manifest_raw(reference, manifest.bytes.clone(), content_type)
        .await
        .map(|_| ())
        .map_err(|err| registry_error(ErrorCode::Push, reference, &err))
}
