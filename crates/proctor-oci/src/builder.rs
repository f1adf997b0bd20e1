//! `build`: compiles the processor for each platform and writes a multi-arch OCI image
//! layout, ready for `push`; `build_docker_archive`: the same for one platform, packed for
//! `docker load`. No container engine is involved.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use proctor_contract::{CanonError, ErrorCode, ProcessorRef, Progress, ProgressUnit};

use crate::compile::{CompileJob, compile};
use crate::docker_archive::docker_archive;
use crate::image::{ImageSettings, image_index, platform_image, uncompressed_image};
use crate::layout::write_layout;
use crate::platform::Platform;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// The processor, e.g. `text/stats@1`; its version becomes the image tag.
    pub processor_ref: ProcessorRef,
    /// The Cargo package of the processor binary (`build.cargo_package` in registry.yaml).
    pub cargo_package: String,
    /// The port the processor listens on (`build.port`), exposed by the image.
    pub port: u16,
    /// The Cargo workspace root the package is built in.
    pub workspace_root: PathBuf,
    /// The platforms to build; a pin needs [`Platform::ALL`].
    pub platforms: Vec<Platform>,
    /// The OCI image layout directory to write, see [`crate::layout_dir`].
    pub layout_dir: PathBuf,
}

/// A built multi-arch image, written as an OCI image layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The layout directory.
    pub layout_dir: PathBuf,
    /// The digest of the image index, `sha256:…`.
    pub index_digest: String,
    /// One entry per platform, in [`Platform::ALL`] order.
    pub platforms: Vec<BuiltPlatform>,
}

/// One platform of a built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPlatform {
    /// The platform.
    pub platform: Platform,
    /// The digest of the platform's image manifest, `sha256:…`.
    pub manifest_digest: String,
    /// The statically linked binary the image holds as `/processor`.
    pub binary: PathBuf,
    /// Time spent in `cargo build` for this platform.
    pub compile_time: Duration,
}

/// Compiles `request.cargo_package` as a static binary for each platform and writes the
/// image layout: per platform a single-layer image (`/processor`, user 65532, the port
/// exposed), plus an image index listing them. The same sources give the same digests.
/// `progress` hears of each step (compile, assemble per platform, then the layout) and of
/// each compile's crates.
///
/// Errors: `ERR_BUILD` with cargo's failure, a missing toolchain (and its fix), or a
/// binary that is not statically linked for its platform.
pub fn build(request: &BuildRequest, progress: &Progress) -> Result<BuiltImage, CanonError> {
    let mut platforms = request.platforms.clone();
    platforms.sort();
    platforms.dedup();
    if platforms.is_empty() {
        return Err(CanonError::new(ErrorCode::Build, "no platform to build"));
    }
    let started = Instant::now();
    tracing::info!(event = "oci.build.start", processor_ref = %request.processor_ref);
    let steps = progress.start(
        format!("building {}", request.processor_ref),
        ProgressUnit::Steps,
        Some(platforms.len() as u64 * 2 + 1),
    );
    let settings = ImageSettings {
        processor_ref: &request.processor_ref,
        port: request.port,
    };
    let mut images = Vec::new();
    let mut built = Vec::new();
    for platform in platforms {
        let compile_started = Instant::now();
        let job = CompileJob {
            workspace_root: &request.workspace_root,
            cargo_package: &request.cargo_package,
            platform,
            cancel: None,
            progress,
        };
        steps.message(format!("compiling for {platform}"));
        let binary = compile(job)?;
        let compile_time = compile_started.elapsed();
        steps.advance(1);
        steps.message(format!("assembling the {platform} image"));
        let image = platform_image(&binary.bytes, platform, settings)?;
        steps.advance(1);
        tracing::info!(
            event = "oci.build.platform",
            platform = %platform,
            manifest_digest = %image.manifest.digest,
            compile_ms = compile_time.as_millis() as u64,
        );
        built.push(BuiltPlatform {
            platform,
            manifest_digest: image.manifest.digest.to_string(),
            binary: binary.path,
            compile_time,
        });
        images.push(image);
    }
    steps.message("writing the image layout");
    let index = image_index(&images)?;
    write_layout(&request.layout_dir, &request.processor_ref, &index, &images)?;
    steps.advance(1);
    drop(steps);
    tracing::info!(
        event = "oci.build.settle",
        processor_ref = %request.processor_ref,
        index_digest = %index.digest,
        duration_ms = started.elapsed().as_millis() as u64,
    );
    Ok(BuiltImage {
        layout_dir: request.layout_dir.clone(),
        index_digest: index.digest.to_string(),
        platforms: built,
    })
}

/// What [`build_docker_archive`] builds: one processor, for one platform.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveRequest<'a> {
    /// The processor, e.g. `text/stats@1`.
    pub processor_ref: &'a ProcessorRef,
    /// The Cargo package of the processor binary (`build.cargo_package` in registry.yaml).
    pub cargo_package: &'a str,
    /// The port the processor listens on (`build.port`), exposed by the image.
    pub port: u16,
    /// The Cargo workspace root the package is built in.
    pub workspace_root: &'a Path,
    /// The platform to build.
    pub platform: Platform,
    /// Set from another thread to stop the compile: the compiler's process group is
    /// stopped and the build fails with `ERR_INTERRUPTED`.
    pub cancel: Option<&'a AtomicBool>,
    /// Where the compile reports the crates it has built and cargo's own output.
    pub progress: &'a Progress,
}

/// One platform's image, packed for `docker load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerArchive {
    /// The digest of the image config, `sha256:…`: the ID of the image an engine loads from
    /// [`DockerArchive::bytes`], and the config digest of this platform's image in the layout
    /// [`build`] writes from the same sources.
    pub config_digest: String,
    /// The docker-archive tar: `manifest.json`, the config and the uncompressed layer.
    pub bytes: Vec<u8>,
    /// Time spent in `cargo build`.
    pub compile_time: Duration,
}

/// Compiles `request.platform`'s binary and assembles its image config exactly as [`build`]
/// does, and packs the image as a docker-archive instead of writing a layout.
///
/// Errors: `ERR_BUILD`, as for [`build`].
pub fn build_docker_archive(request: &ArchiveRequest<'_>) -> Result<DockerArchive, CanonError> {
    let compile_started = Instant::now();
    let binary = compile(CompileJob {
        workspace_root: request.workspace_root,
        cargo_package: request.cargo_package,
        platform: request.platform,
        cancel: request.cancel,
        progress: request.progress,
    })?;
    let compile_time = compile_started.elapsed();
    let settings = ImageSettings {
        processor_ref: request.processor_ref,
        port: request.port,
    };
    let image = uncompressed_image(&binary.bytes, request.platform, settings)?;
    Ok(DockerArchive {
        config_digest: image.config.digest.to_string(),
        bytes: docker_archive(&image)?,
        compile_time,
    })
}
