//! Running a pinned image: `REGISTRY/REPO@sha256:…`, pulled by digest when absent locally,
//! and verified to carry that digest before any container starts.

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use proctor_contract::{CanonError, ErrorCode, PinnedReference};

use crate::local::{engine_error, is_not_found};

/// A pinned image present in the local engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinnedImage {
    /// The local image ID to create the container from.
    pub(crate) image_id: String,
    /// The pinned manifest digest, `sha256:…`: the expected `meta.image_digest`.
    pub(crate) digest: String,
}

/// Makes sure the pinned image is present (pulling it by digest if not) and carries the
/// pinned digest. A placeholder digest pins nothing: `ERR_IMAGE_UNPINNED`.
pub(crate) async fn ensure_pinned_image(
    docker: &Docker,
    pinned: &PinnedReference,
) -> Result<PinnedImage, CanonError> {
    if pinned.digest().is_placeholder() {
        return Err(CanonError::new(
            ErrorCode::ImageUnpinned,
            format!("`{pinned}` is a placeholder digest; pin a digest or pass --build"),
        ));
    }
    let digest = pinned.digest().to_string();
    let reference = pinned.to_string();
    let reference = reference.as_str();
    let image = match docker.inspect_image(reference).await {
        Ok(image) => image,
        Err(error) if is_not_found(&error) => {
            pull(docker, reference).await?;
            docker.inspect_image(reference).await.map_err(|error| {
                engine_error(&format!("inspecting pulled image {reference}"), error)
            })?
        }
        Err(error) => {
            return Err(engine_error(
                &format!("inspecting image {reference}"),
                error,
            ));
        }
    };
    let suffix = format!("@{digest}");
    let carries_digest = image
        .repo_digests
        .iter()
        .flatten()
        .any(|repo_digest| repo_digest.ends_with(&suffix));
    let image_id = image.id.unwrap_or_default();
    if !carries_digest || image_id.is_empty() {
        return Err(CanonError::new(
            ErrorCode::ImageDrift,
            format!("local image for {reference} does not carry the pinned digest {digest}"),
        ));
    }
    Ok(PinnedImage { image_id, digest })
}

/// Pulls `reference` by digest.
async fn pull(docker: &Docker, reference: &str) -> Result<(), CanonError> {
    tracing::info!(event = "image.pull", reference = %reference);
    let options = CreateImageOptionsBuilder::default()
        .from_image(reference)
        .build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(item) = progress.next().await {
        item.map_err(|error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("pulling {reference} failed: {error}"),
            )
        })?;
    }
    Ok(())
}
