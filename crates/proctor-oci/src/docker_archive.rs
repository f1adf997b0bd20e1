//! One platform image as a docker-archive: the tar `docker save` writes and `docker load`
//! reads, which every Docker engine accepts (an OCI layout archive needs Docker 25 or
//! later). It holds the image's config and its layer, uncompressed as `docker save` writes
//! it, under `blobs/sha256/<hex>`, and a `manifest.json` naming them; no tag, the loader
//! gives it one.
//!
//! An engine stores the config as it finds it, so the loaded image ID is the config digest,
//! the one the image's OCI manifest names; leaving the layer uncompressed spares gzip.

use proctor_contract::{CanonError, ErrorCode};
use serde::Serialize;

use crate::image::{Blob, UncompressedImage};

/// The entry of `manifest.json` for one image.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    /// The path of the config blob.
    config: String,
    /// The paths of the layer blobs, base layer first.
    layers: Vec<String>,
}

/// Packs `image` as a docker-archive tar; the same image gives the same bytes.
pub(crate) fn docker_archive(image: &UncompressedImage) -> Result<Vec<u8>, CanonError> {
    let manifest = vec![ManifestEntry {
        config: blob_path(&image.config),
        layers: vec![blob_path(&image.layer)],
    }];
    let manifest = serde_json::to_vec(&manifest).map_err(|err| failed(&err))?;
    let mut archive = tar::Builder::new(Vec::new());
    let entries = [
        (blob_path(&image.config), image.config.bytes.as_slice()),
        (blob_path(&image.layer), image.layer.bytes.as_slice()),
        ("manifest.json".to_owned(), manifest.as_slice()),
    ];
    for (path, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        archive
            .append_data(&mut header, path, bytes)
            .map_err(|err| failed(&err))?;
    }
    archive.into_inner().map_err(|err| failed(&err))
}

/// `blobs/sha256/<hex>`, where an OCI layout keeps the blob too.
fn blob_path(blob: &Blob) -> String {
    format!(
        "blobs/{}/{}",
        blob.digest.algorithm().as_ref(),
        blob.digest.digest()
    )
}

fn failed(err: &dyn std::fmt::Display) -> CanonError {
    CanonError::new(
        ErrorCode::Build,
        format!("writing the docker-archive: {err}"),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use proctor_contract::ProcessorRef;
    use serde_json::{Value, json};

    use super::*;
    use crate::image::{ImageSettings, uncompressed_image};
    use crate::platform::Platform;

    fn image() -> UncompressedImage {
        let processor_ref: ProcessorRef = "text/stats@1".parse().unwrap();
        let settings = ImageSettings {
            processor_ref: &processor_ref,
            port: 8000,
        };
        uncompressed_image(b"\x7fELF", Platform::Amd64, settings).unwrap()
    }

    /// Every entry of a tar: path → content.
    fn entries(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
        tar::Archive::new(archive)
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                (entry.path().unwrap().display().to_string(), content)
            })
            .collect()
    }

    #[test]
    fn the_archive_holds_the_image_blobs_and_names_them() {
        let image = image();
        let archive = docker_archive(&image).unwrap();
        let entries = entries(&archive);
        let config = format!("blobs/sha256/{}", image.config.digest.digest());
        let layer = format!("blobs/sha256/{}", image.layer.digest.digest());
        assert_eq!(entries[&config], image.config.bytes);
        assert_eq!(entries[&layer], image.layer.bytes);
        let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
        assert_eq!(manifest, json!([{"Config": config, "Layers": [layer]}]));
        assert_eq!(entries.len(), 3);
        assert_eq!(docker_archive(&image).unwrap(), archive, "deterministic");
    }
}
