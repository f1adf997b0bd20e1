//! The OCI image layout directory that sits between `build` and `push`:
//! `oci-layout`, `index.json` (one entry: the multi-arch image index, annotated with the
//! processor ref and the tag) and `blobs/sha256/<hex>`.
//!
//! Writing replaces the whole directory at once (temp dir + rename); reading verifies every
//! blob against its digest.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, Digest, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType, OciLayoutBuilder,
};
use proctor_contract::{CanonError, ErrorCode, ProcessorRef, canonical_json};

use crate::image::{Blob, PlatformImage, TITLE_ANNOTATION, sha256_digest};
use crate::platform::Platform;

/// The annotation naming the tag of the image index in `index.json`.
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The layout directory of a processor under `oci_root` (e.g. `.proctor/oci`):
/// `<oci_root>/<ns>-<name>-<version>`.
pub fn layout_dir(oci_root: &Path, processor_ref: &ProcessorRef) -> PathBuf {
    oci_root.join(format!(
        "{}-{}",
        processor_ref.image_name(),
        processor_ref.version()
    ))
}

/// Writes the layout for `images` and their `index`, replacing any previous one at `dir`.
pub(crate) fn write_layout(
    dir: &Path,
    processor_ref: &ProcessorRef,
    index: &Blob,
    images: &[PlatformImage],
) -> Result<(), CanonError> {
    let failed = |what: &str, err: &dyn std::fmt::Display| {
        CanonError::new(
            ErrorCode::Build,
            format!("writing the image layout {}: {what}: {err}", dir.display()),
        )
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|err| failed("creating its parent", &err))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)
        .map_err(|err| failed("creating a staging directory", &err))?;
    let blobs = staging.path().join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|err| failed("creating blobs/sha256", &err))?;
    let all_blobs = images
        .iter()
        .flat_map(|image| [&image.layer, &image.config, &image.manifest])
        .chain([index]);
    for blob in all_blobs {
        fs::write(blobs.join(blob.digest.digest()), &blob.bytes)
            .map_err(|err| failed("writing a blob", &err))?;
    }
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(|err| failed("oci-layout", &err))?;
    let layout = serde_json::to_vec(&layout).map_err(|err| failed("oci-layout", &err))?;
    fs::write(staging.path().join("oci-layout"), layout)
        .map_err(|err| failed("oci-layout", &err))?;
    let mut entry = index.descriptor();
    entry.set_annotations(Some(HashMap::from([
        (
            REF_NAME_ANNOTATION.to_owned(),
            processor_ref.version().to_owned(),
        ),
        (TITLE_ANNOTATION.to_owned(), processor_ref.to_string()),
    ])));
    let top = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![entry])
        .build()
        .map_err(|err| failed("index.json", &err))?;
    let top = serde_json::to_value(&top).map_err(|err| failed("index.json", &err))?;
    fs::write(staging.path().join("index.json"), canonical_json(&top))
        .map_err(|err| failed("index.json", &err))?;

    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|err| failed("removing the previous layout", &err))?;
    }
    let staged = staging.keep();
    fs::rename(&staged, dir).map_err(|err| {
        // Best effort: do not leave the staging directory behind.
        let _ = fs::remove_dir_all(&staged);
        failed("moving the layout into place", &err)
    })
}

/// One platform image read back from a layout.
#[derive(Debug, Clone)]
pub(crate) struct StoredManifest {
    /// The platform the index lists it for.
    pub(crate) platform: Platform,
    /// The manifest blob.
    pub(crate) manifest: Blob,
    /// The blobs the manifest references: config first, then layers.
    pub(crate) blobs: Vec<Blob>,
}

/// A built image read back from its layout, every blob verified.
#[derive(Debug, Clone)]
pub(crate) struct StoredImage {
    /// The processor the image was built for.
    pub(crate) processor_ref: ProcessorRef,
    /// The tag to push the index under (the processor version).
    pub(crate) tag: String,
    /// The image index blob.
    pub(crate) index: Blob,
    /// The platform images, in index order.
    pub(crate) manifests: Vec<StoredManifest>,
}

impl StoredImage {
    /// Total bytes of every blob, manifests and index included.
    pub(crate) fn total_bytes(&self) -> u64 {
        let platform_bytes: u64 = self
            .manifests
            .iter()
            .map(|m| m.manifest.size() + m.blobs.iter().map(Blob::size).sum::<u64>())
            .sum();
        platform_bytes + self.index.size()
    }
}

/// Reads the layout at `dir`.
pub(crate) fn read_layout(dir: &Path) -> Result<StoredImage, CanonError> {
    let invalid = |detail: String| {
        CanonError::new(
            ErrorCode::Push,
            format!("image layout {}: {detail}", dir.display()),
        )
    };
    let top = fs::read(dir.join("index.json")).map_err(|err| {
        invalid(format!(
            "cannot read index.json ({err}); build the image first with `proctor build`"
        ))
    })?;
    let top: ImageIndex =
        serde_json::from_slice(&top).map_err(|err| invalid(format!("index.json: {err}")))?;
    let [entry] = top.manifests().as_slice() else {
        return Err(invalid(
            "index.json must list exactly one image index".to_owned(),
        ));
    };
    let annotation = |key: &str| {
        entry
            .annotations()
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let tag = annotation(REF_NAME_ANNOTATION)
        .ok_or_else(|| invalid(format!("index.json lacks {REF_NAME_ANNOTATION}")))?;
    let processor_ref: ProcessorRef = annotation(TITLE_ANNOTATION)
        .ok_or_else(|| invalid(format!("index.json lacks {TITLE_ANNOTATION}")))?
        .parse()
        .map_err(|err: CanonError| invalid(err.message()))?;
    let index = read_blob(dir, entry).map_err(invalid)?;
    let parsed: ImageIndex = serde_json::from_slice(&index.bytes)
        .map_err(|err| invalid(format!("image index: {err}")))?;
    let manifests = parsed
        .manifests()
        .iter()
        .map(|descriptor| {
            let platform = descriptor
                .platform()
                .as_ref()
                .and_then(|p| p.architecture().to_string().parse::<Platform>().ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "index entry {} has no known platform",
                        descriptor.digest()
                    ))
                })?;
            let manifest = read_blob(dir, descriptor).map_err(invalid)?;
            let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes)
                .map_err(|err| invalid(format!("manifest {}: {err}", descriptor.digest())))?;
            let blobs = std::iter::once(parsed.config())
                .chain(parsed.layers())
                .map(|d| read_blob(dir, d).map_err(invalid))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(StoredManifest {
                platform,
                manifest,
                blobs,
            })
        })
        .collect::<Result<Vec<_>, CanonError>>()?;
    Ok(StoredImage {
        processor_ref,
        tag,
        index,
        manifests,
    })
}

/// Reads the blob `descriptor` points at and checks its size and digest.
fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Blob, String> {
    let digest: &Digest = descriptor.digest();
    let path = dir
        .join("blobs")
        .join(digest.algorithm().as_ref())
        .join(digest.digest());
    let bytes = fs::read(&path).map_err(|err| format!("cannot read blob {digest}: {err}"))?;
    let actual = sha256_digest(&bytes).map_err(|err| err.message())?;
    if &actual != digest || bytes.len() as u64 != descriptor.size() {
        return Err(format!(
            "blob {digest} is corrupt (its content hashes to {actual})"
        ));
    }
    Ok(Blob {
        digest: digest.clone(),
        media_type: descriptor.media_type().clone(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageSettings, image_index, platform_image};

    fn build_into(dir: &Path) -> (Blob, Vec<PlatformImage>) {
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let settings = ImageSettings {
            processor_ref: &processor_ref,
            port: 8000,
        };
        let images: Vec<_> = Platform::ALL
            .into_iter()
            .map(|platform| {
                platform_image(platform.as_str().as_bytes(), platform, settings).unwrap()
            })
            .collect();
        let index = image_index(&images).unwrap();
        write_layout(dir, &processor_ref, &index, &images).unwrap();
        (index, images)
    }

    #[test]
    fn layout_round_trips() {
        let root = tempfile::tempdir().unwrap();
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let dir = layout_dir(root.path(), &processor_ref);
        assert!(dir.ends_with("text-stats-1"));
        let (index, images) = build_into(&dir);
        build_into(&dir); // rebuilding replaces the directory in place
        let stored = read_layout(&dir).unwrap();
        assert_eq!(stored.processor_ref, processor_ref);
        assert_eq!(stored.tag, "1");
        assert_eq!(stored.index, index);
        assert_eq!(stored.manifests.len(), 2);
        for (stored, built) in stored.manifests.iter().zip(&images) {
            assert_eq!(stored.platform, built.platform);
            assert_eq!(stored.manifest, built.manifest);
            assert_eq!(
                stored.blobs,
                vec![built.config.clone(), built.layer.clone()]
            );
        }
        assert_eq!(
            fs::read_to_string(dir.join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let leftovers: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec!["text-stats-1"]);
    }

    #[test]
    fn corrupt_or_missing_layouts_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let err = read_layout(&root.path().join("absent")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Push);
        assert!(err.message().contains("proctor build"));

        let dir = root.path().join("layout");
        let (_, images) = build_into(&dir);
        let layer = dir
            .join("blobs/sha256")
            .join(images[1].layer.digest.digest());
        fs::write(&layer, b"tampered").unwrap();
        let err = read_layout(&dir).unwrap_err();
        assert!(err.message().contains("corrupt"), "{err}");
    }
}
