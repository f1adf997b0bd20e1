//! Byte-reproducible OCI images for one static binary: a single gzip layer holding
//! `/processor`, an image config, a manifest per platform, and an index listing them.
//!
//! Every JSON document is serialized as canonical JSON (sorted keys, no white space) and
//! every timestamp is fixed, so the same binary always gives the same digests.

use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use oci_spec::image::{
    ConfigBuilder, Descriptor, DescriptorBuilder, Digest, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use proctor_contract::{CanonError, ErrorCode, ProcessorRef, canonical_json};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::platform::{Platform, oci_arch};

/// The path of the processor binary inside the image.
pub(crate) const ENTRYPOINT: &str = "/processor";
/// The user the processor runs as: non-root.
pub(crate) const USER: &str = "65532:65532";
/// The fixed creation time of every image (the Unix epoch), for reproducibility.
pub(crate) const CREATED: &str = "1970-01-01T00:00:00Z";
/// The OCI annotation, and image label, carrying the processor ref.
pub(crate) const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The image label carrying the processor ref, under the name the local adapter also gives
/// it on the containers it runs.
pub const REF_LABEL: &str = "proctor.ref";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    /// `sha256:<hex>` of `bytes`.
    pub(crate) digest: Digest,
    /// The media type of the blob.
    pub(crate) media_type: MediaType,
    /// The content.
    pub(crate) bytes: Vec<u8>,
}

impl Blob {
    /// Wraps `bytes`, computing their digest.
    pub(crate) fn new(media_type: MediaType, bytes: Vec<u8>) -> Result<Blob, CanonError> {
        let digest = sha256_digest(&bytes)?;
        Ok(Blob {
            digest,
            media_type,
            bytes,
        })
    }

    /// Wraps a JSON document serialized as canonical JSON.
    fn json(media_type: MediaType, document: &impl Serialize) -> Result<Blob, CanonError> {
        let value = serde_json::to_value(document).map_err(|err| invalid(err.to_string()))?;
        Blob::new(media_type, canonical_json(&value).into_bytes())
    }

    /// The descriptor pointing at this blob.
    pub(crate) fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.size(), self.digest.clone())
    }

    /// The size in bytes.
    pub(crate) fn size(&self) -> u64 {
        // A usize always fits in a u64 on the 64-bit hosts proctor supports.
        self.bytes.len() as u64
    }
}

/// The blobs of one platform's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlatformImage {
    /// The platform.
    pub(crate) platform: Platform,
    /// The gzip layer holding `/processor`.
    pub(crate) layer: Blob,
    /// The image config.
    pub(crate) config: Blob,
    /// The image manifest; its digest is what a pin names.
    pub(crate) manifest: Blob,
}

/// What goes into every image, besides the binary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageSettings<'a> {
    /// The processor ref, recorded as the image title and the [`REF_LABEL`] label.
    pub(crate) processor_ref: &'a ProcessorRef,
    /// The port the processor listens on.
    pub(crate) port: u16,
}

/// An image before compression: its layer as a plain tar, and its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UncompressedImage {
    /// The tar holding `/processor`; its digest is the config's `rootfs.diff_ids[0]`.
    pub(crate) layer: Blob,
    /// The image config, as in the [`PlatformImage`] of the same binary.
    pub(crate) config: Blob,
}

/// Builds the image of `binary` for `platform`: its [`uncompressed_image`], the layer
/// gzipped, and a manifest.
pub(crate) fn platform_image(
    binary: &[u8],
    platform: Platform,
    settings: ImageSettings<'_>,
) -> Result<PlatformImage, CanonError> {
    let UncompressedImage { layer, config } = uncompressed_image(binary, platform, settings)?;
    let layer = Blob::new(MediaType::ImageLayerGzip, gzip(&layer.bytes)?)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor())
        .layers(vec![layer.descriptor()])
        .build()
        .map_err(|err| invalid(err.to_string()))?;
    let manifest = Blob::json(MediaType::ImageManifest, &manifest)?;
    Ok(PlatformImage {
        platform,
        layer,
        config,
        manifest,
    })
}

/// Builds the layer tar of `binary` and the config of its image for `platform`, which
/// decide the config digest; compressing the layer is left to [`platform_image`].
pub(crate) fn uncompressed_image(
    binary: &[u8],
    platform: Platform,
    settings: ImageSettings<'_>,
) -> Result<UncompressedImage, CanonError> {
    let layer = Blob::new(MediaType::ImageLayer, layer_tar(binary)?)?;
    let config = ConfigBuilder::default()
        .user(USER)
        .exposed_ports(vec![format!("{}/tcp", settings.port)])
        .env(vec![PATH_ENV.to_owned()])
        .entrypoint(vec![ENTRYPOINT.to_owned()])
        .labels(HashMap::from([
            (
                TITLE_ANNOTATION.to_owned(),
                settings.processor_ref.to_string(),
            ),
            (REF_LABEL.to_owned(), settings.processor_ref.to_string()),
        ]))
        .build()
        .map_err(|err| invalid(err.to_string()))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![layer.digest.to_string()])
        .build()
        .map_err(|err| invalid(err.to_string()))?;
    let configuration = ImageConfigurationBuilder::default()
        .created(CREATED)
        .architecture(oci_arch(platform))
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .build()
        .map_err(|err| invalid(err.to_string()))?;
    let config = Blob::json(MediaType::ImageConfig, &configuration)?;
    Ok(UncompressedImage { layer, config })
}

/// Builds the image index listing every platform manifest with its platform.
pub(crate) fn image_index(images: &[PlatformImage]) -> Result<Blob, CanonError> {
    let manifests = images
        .iter()
        .map(|image| {
            let platform = PlatformBuilder::default()
                .architecture(oci_arch(image.platform))
                .os(Os::Linux)
                .build()
                .map_err(|err| invalid(err.to_string()))?;
            DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .digest(image.manifest.digest.clone())
                .size(image.manifest.size())
                .platform(platform)
                .build()
                .map_err(|err| invalid(err.to_string()))
        })
        .collect::<Result<Vec<_>, CanonError>>()?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|err| invalid(err.to_string()))?;
    Blob::json(MediaType::ImageIndex, &index)
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> Result<Digest, CanonError> {
    let hex = hex::encode(Sha256::digest(bytes));
    format!("sha256:{hex}")
        .parse()
        .map_err(|err: oci_spec::OciSpecError| invalid(err.to_string()))
}

/// A tar holding only `processor`: mode 0755, owned by root, mtime 0.
fn layer_tar(binary: &[u8]) -> Result<Vec<u8>, CanonError> {
    let mut header = tar::Header::new_ustar();
    header.set_size(binary.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, ENTRYPOINT.trim_start_matches('/'), binary)
        .and_then(|()| builder.into_inner())
        .map_err(|err| invalid(format!("writing the layer tar: {err}")))
}

/// Gzip with a fixed level and a header without a timestamp or file name.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, CanonError> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|err| invalid(format!("compressing the layer: {err}")))
}

fn invalid(detail: String) -> CanonError {
    CanonError::new(
        ErrorCode::Build,
        format!("assembling the OCI image: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;
    use serde_json::Value;

    use super::*;

    fn settings(processor_ref: &ProcessorRef) -> ImageSettings<'_> {
        ImageSettings {
            processor_ref,
            port: 8000,
        }
    }

    #[test]
    fn same_binary_gives_same_digests() {
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let first = platform_image(b"binary", Platform::Amd64, settings(&processor_ref)).unwrap();
        let second = platform_image(b"binary", Platform::Amd64, settings(&processor_ref)).unwrap();
        assert_eq!(first, second);
        let other = platform_image(b"binary2", Platform::Amd64, settings(&processor_ref)).unwrap();
        assert_ne!(first.manifest.digest, other.manifest.digest);
        let arm = platform_image(b"binary", Platform::Arm64, settings(&processor_ref)).unwrap();
        assert_eq!(first.layer, arm.layer);
        assert_ne!(first.config.digest, arm.config.digest);
    }

    #[test]
    fn layer_holds_only_the_processor_owned_by_root() {
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let image =
            platform_image(b"\x7fELF...", Platform::Amd64, settings(&processor_ref)).unwrap();
        let mut tar = Vec::new();
        GzDecoder::new(image.layer.bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                let path = header.path().unwrap().into_owned();
                (
                    path,
                    header.mode().unwrap(),
                    header.uid().unwrap(),
                    header.mtime().unwrap(),
                    content,
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![("processor".into(), 0o755, 0, 0, b"\x7fELF...".to_vec())]
        );

        let config: Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            sha256_digest(&tar).unwrap().to_string()
        );
    }

    #[test]
    fn config_manifest_and_index_have_the_expected_fields() {
        let processor_ref: ProcessorRef = "llm/litellm@1".parse().unwrap();
        let images: Vec<_> = Platform::ALL
            .into_iter()
            .map(|platform| {
                let settings = ImageSettings {
                    processor_ref: &processor_ref,
                    port: 8123,
                };
                platform_image(b"bin", platform, settings).unwrap()
            })
            .collect();
        let config: Value = serde_json::from_slice(&images[1].config.bytes).unwrap();
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["created"], CREATED);
        assert_eq!(config["config"]["User"], USER);
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/processor"])
        );
        assert_eq!(
            config["config"]["ExposedPorts"],
            serde_json::json!({"8123/tcp": {}})
        );
        assert_eq!(
            config["config"]["Labels"],
            serde_json::json!({TITLE_ANNOTATION: "llm/litellm@1", REF_LABEL: "llm/litellm@1"})
        );
        assert!(
            config["config"]["Env"][0]
                .as_str()
                .unwrap()
                .starts_with("PATH=")
        );

        let manifest: Value = serde_json::from_slice(&images[0].manifest.bytes).unwrap();
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            manifest["config"]["digest"],
            images[0].config.digest.to_string()
        );
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );

        let index = image_index(&images).unwrap();
        let index: Value = serde_json::from_slice(&index.bytes).unwrap();
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            index["manifests"][0]["platform"],
            serde_json::json!({"architecture": "amd64", "os": "linux"})
        );
        assert_eq!(index["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(
            index["manifests"][1]["digest"],
            images[1].manifest.digest.to_string()
        );
    }

    #[test]
    fn documents_are_canonical_json() {
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let image = platform_image(b"bin", Platform::Amd64, settings(&processor_ref)).unwrap();
        let value: Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(
            canonical_json(&value).as_bytes(),
            image.config.bytes.as_slice()
        );
    }

    #[test]
    fn the_uncompressed_image_has_the_config_of_the_platform_image() {
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        for platform in Platform::ALL {
            let settings = settings(&processor_ref);
            let image = platform_image(b"bin", platform, settings).unwrap();
            let uncompressed = uncompressed_image(b"bin", platform, settings).unwrap();
            assert_eq!(uncompressed.config, image.config);
            let mut tar = Vec::new();
            GzDecoder::new(image.layer.bytes.as_slice())
                .read_to_end(&mut tar)
                .unwrap();
            assert_eq!(uncompressed.layer.bytes, tar);
            assert_eq!(uncompressed.layer.media_type, MediaType::ImageLayer);
        }
    }
}
