//! Running a pinned image: `REGISTRY/REPO@sha256:…`, pulled by digest when absent locally,
//! and verified to carry that digest before any container starts. A pull reports its bytes
//! (each layer's download, as the engine tells them) to the caller's progress, and hands
//! the engine the registry's credentials as `proctor push` finds them
//! ([`proctor_oci::registry_credential`]: the `PROCTOR_REGISTRY_*` variables, the docker
//! config's `auths`, `credHelpers` and `credsStore`).

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use proctor_contract::{CanonError, ErrorCode, PinnedReference, Progress, ProgressUnit};
use proctor_oci::{RegistryCredential, registry_credential};

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
    progress: &Progress,
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
            pull(docker, pinned, progress).await?;
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

/// Pulls `pinned` by digest, reporting the bytes downloaded to `progress`.
async fn pull(
    docker: &Docker,
    pinned: &PinnedReference,
    progress: &Progress,
) -> Result<(), CanonError> {
    let reference = pinned.to_string();
    let host = pinned.host();
    let (credential, source) = registry_credential(host, ErrorCode::AdapterInvocation)?;
    tracing::info!(
        event = "image.pull",
        reference = %reference,
        credentials = source.as_str(),
    );
    let options = CreateImageOptionsBuilder::default()
        .from_image(&reference)
        .build();
    let credentials = credential.map(|credential| engine_credentials(host, credential));
    // The repository's last segment and the digest's first 12 digits: short enough for a
    // terminal line.
    let name = pinned.repository().rsplit('/').next().unwrap_or_default();
    let short_digest = pinned.digest().hex().get(..12).unwrap_or_default();
    let task = progress.start(
        format!("pulling {name}@{short_digest}"),
        ProgressUnit::Bytes,
        None,
    );
    let mut tally = PullTally::default();
    let mut stream = docker.create_image(Some(options), None, credentials);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!("pulling {reference} failed: {error}"),
            )
        })?;
        let (total, arrived) = tally.observe(&info);
        if let Some(total) = total {
            task.set_total(total);
        }
        if arrived > 0 {
            task.advance(arrived);
        }
        if let Some(layer) = tally.layer_status(&info) {
            task.message(layer);
        }
    }
    Ok(())
}

/// `credential` as the engine takes it for a pull from `host` (`X-Registry-Auth`).
fn engine_credentials(host: &str, credential: RegistryCredential) -> DockerCredentials {
    let serveraddress = Some(host.to_owned());
    match credential {
        RegistryCredential::Basic { username, password } => DockerCredentials {
            username: Some(username),
            password: Some(password),
            serveraddress,
            ..DockerCredentials::default()
        },
        RegistryCredential::IdentityToken(token) => DockerCredentials {
            identitytoken: Some(token),
            serveraddress,
            ..DockerCredentials::default()
        },
    }
}

/// The engine's status of a layer whose download is under way, with its bytes.
const DOWNLOADING: &str = "Downloading";
/// The engine's status of a layer whose download is done.
const DOWNLOAD_COMPLETE: &str = "Download complete";

/// A pull's bytes, from the engine's progress messages: per layer, its download size (known
/// once the download starts) and how much of it has arrived.
#[derive(Debug, Default)]
struct PullTally {
    /// Layer id → (bytes arrived, bytes in all).
    layers: BTreeMap<String, (u64, u64)>,
}

impl PullTally {
    /// Takes one progress message; returns the pull's new total when it changed, and the
    /// bytes that arrived since the previous message.
    fn observe(&mut self, info: &CreateImageInfo) -> (Option<u64>, u64) {
        let (Some(layer), Some(status)) = (&info.id, info.status.as_deref()) else {
            return (None, 0);
        };
        let before = self.total();
        let arrived = match status {
            DOWNLOADING => {
                let detail = info.progress_detail.as_ref();
                let bytes = |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok());
                let current = detail.and_then(|d| bytes(d.current)).unwrap_or(0);
                let size = detail.and_then(|d| bytes(d.total));
                let (seen, total) = self.layers.entry(layer.clone()).or_default();
                if let Some(size) = size {
                    *total = size.max(*total);
                }
                let arrived = current.saturating_sub(*seen);
                *seen = (*seen).max(current);
                arrived
            }
            DOWNLOAD_COMPLETE => match self.layers.get_mut(layer) {
                Some((seen, total)) => {
                    let arrived = total.saturating_sub(*seen);
                    *seen = *total;
                    arrived
                }
                None => 0,
            },
            _ => 0,
        };
        let after = self.total();
        ((after != before).then_some(after), arrived)
    }

    /// `STATUS LAYER` of a message about a layer this pull counts, except the download's
    /// byte counts, which the task's position shows.
    fn layer_status(&self, info: &CreateImageInfo) -> Option<String> {
        let (Some(layer), Some(status)) = (&info.id, info.status.as_deref()) else {
            return None;
        };
        (status != DOWNLOADING && self.layers.contains_key(layer))
            .then(|| format!("{status} {layer}"))
    }

    fn total(&self) -> u64 {
        self.layers.values().map(|(_, total)| total).sum()
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::ProgressDetail;

    use super::*;

    fn message(layer: &str, status: &str, bytes: Option<(i64, i64)>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(layer.to_owned()),
            status: Some(status.to_owned()),
            progress_detail: bytes.map(|(current, total)| ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pull_counts_each_layer_download_once() {
        let mut tally = PullTally::default();
        let seen: Vec<(Option<u64>, u64)> = [
            message("a", "Pulling fs layer", None),
            message("a", DOWNLOADING, Some((100, 1000))),
            message("b", DOWNLOADING, Some((50, 500))),
            message("a", DOWNLOADING, Some((600, 1000))),
            message("a", DOWNLOAD_COMPLETE, None),
            // Extraction has bytes too; they were counted as they arrived.
            message("a", "Extracting", Some((1000, 1000))),
            message("b", DOWNLOAD_COMPLETE, None),
            message("b", "Pull complete", None),
            message("c", "Already exists", None),
        ]
        .iter()
        .map(|info| tally.observe(info))
        .collect();
        assert_eq!(
            seen,
            [
                (None, 0),
                (Some(1000), 100),
                (Some(1500), 50),
                (None, 500),
                (None, 400),
                (None, 0),
                (None, 450),
                (None, 0),
                (None, 0),
            ]
        );
        let arrived: u64 = seen.iter().map(|(_, arrived)| arrived).sum();
        assert_eq!(arrived, tally.total());
        assert_eq!(
            tally
                .layer_status(&message("a", "Pull complete", None))
                .as_deref(),
            Some("Pull complete a")
        );
        // Neither the download's byte counts nor the reference's own lines are layer news.
        assert_eq!(
            tally.layer_status(&message("a", DOWNLOADING, Some((1, 2)))),
            None
        );
        assert_eq!(
            tally.layer_status(&message("sha256:ab", "Pulling from x/y", None)),
            None
        );
    }

    #[test]
    fn messages_without_a_layer_count_nothing() {
        let mut tally = PullTally::default();
        let digest = CreateImageInfo {
            status: Some("Digest: sha256:…".to_owned()),
            ..Default::default()
        };
        assert_eq!(tally.observe(&digest), (None, 0));
    }
}
