//! Building a processor image from source (`--build`).
//!
//! [`proctor_oci::build_docker_archive`] compiles the processor's static binary and
//! assembles its image with the code of `proctor build`, so the image config is byte for byte
//! the one `proctor build` writes into the OCI layout for that platform. The engine loads the
//! image as a docker-archive (`POST /images/load`) and keeps the config bytes, so the image ID
//! — what a run starts from and the digest its envelope must report — is the config digest:
//! the pr lane runs the image the main lane pins. An image the engine already has under that
//! ID is not loaded again; either way it is tagged `proctor/<ns>-<name>:<version>`.
//!
//! Cargo's output and the engine's are captured, never written to stdout: their last lines
//! explain an `ERR_BUILD`, and the compile reports to the caller's progress. A build whose run stops (cancelled, timed out) stops its compiler's
//! process group rather than waiting for the compile.
//!
//! An entry whose `build` has no `cargo_package` is built by the container engine from its
//! Dockerfile instead ([`crate::dockerfile_build`]), with the adapter's build arguments.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::{ImportImageOptionsBuilder, TagImageOptionsBuilder};
use bytes::Bytes;
use futures_util::StreamExt;
use proctor_contract::{CanonError, ErrorCode, Platform, ProcessorRef, Progress};
use proctor_oci::{ArchiveRequest, DockerArchive, build_docker_archive};
use proctor_registry::ProcessorSpec;

use crate::local::is_not_found;

/// How many trailing lines of the engine's output an `ERR_BUILD` carries.
const TAIL_LINES: usize = 20;

/// What to build: one processor, for one platform.
#[derive(Debug, Clone, Copy)]
pub struct ImageBuild<'a> {
    /// The processor's registry entry (its `build` section names the package and the port).
    pub spec: &'a ProcessorSpec,
    /// The workspace root: it compiles `build.cargo_package`, and holds the Python SDK and
    /// the wheels cache for a Dockerfile build of a Python processor.
    pub workspace_root: &'a Path,
    /// The platform to build for.
    pub platform: Platform,
}

/// An image built from source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The image ID, `sha256:…`, which is its config digest: run by it, and expect it as
    /// `meta.image_digest`.
    pub id: String,
    /// The local tag it also carries, `proctor/<ns>-<name>:<version>`.
    pub tag: String,
}

/// Builds the processor's image and makes sure the engine behind `docker` has it, tagged;
/// the compile reports to `progress`.
pub(crate) async fn build_image(
    docker: &Docker,
    build: &ImageBuild<'_>,
    progress: &Progress,
) -> Result<BuiltImage, CanonError> {
    let started = Instant::now();
    let processor_ref = &build.spec.processor_ref;
    let Some(cargo_package) = build.spec.build.cargo_package.as_deref() else {
        return Err(build_error(format!(
            "{processor_ref} has no build.cargo_package: it is built from its Dockerfile"
        )));
    };
    let (repository, version) = image_tag(processor_ref);
    let tag = format!("{repository}:{version}");
    let archive = assemble(build, cargo_package, progress).await?;
    let id = archive.config_digest;
    let loaded = !has_image(docker, &id).await?;
    if loaded {
        load(docker, archive.bytes, &tag).await?;
        if !has_image(docker, &id).await? {
            return Err(build_error(format!(
                "the engine did not load {tag} as image {id}, its config digest; \
                 --build needs an engine whose image IDs are config digests"
            )));
        }
    }
    let options = TagImageOptionsBuilder::default()
        .repo(&repository)
        .tag(version)
        .build();
    docker
        .tag_image(&id, Some(options))
        .await
        .map_err(|error| build_error(format!("tagging {id} as {tag}: {error}")))?;
    tracing::info!(
        event = "image.built",
        processor_ref = %processor_ref,
        image_id = %id,
        tag = %tag,
        loaded,
        compile_ms = u64::try_from(archive.compile_time.as_millis()).unwrap_or(u64::MAX),
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    Ok(BuiltImage { id, tag })
}

/// Compiles the binary and assembles the image, off the async runtime. Dropping the
/// future (the run was cancelled or timed out) stops the compiler's process group; the
/// blocking task reaps it.
async fn assemble(
    build: &ImageBuild<'_>,
    cargo_package: &str,
    progress: &Progress,
) -> Result<DockerArchive, CanonError> {
    let processor_ref = build.spec.processor_ref.clone();
    let package = cargo_package.to_owned();
    let port = build.spec.build.port;
    let workspace_root = build.workspace_root.to_path_buf();
    let platform = build.platform;
    tracing::info!(event = "image.compile", package = %package, platform = %platform);
    let stop = StopOnDrop::default();
    let cancel = Arc::clone(&stop.0);
    let progress = progress.clone();
    tokio::task::spawn_blocking(move || {
        build_docker_archive(&ArchiveRequest {
            processor_ref: &processor_ref,
            cargo_package: &package,
            port,
            workspace_root: &workspace_root,
            platform,
            cancel: Some(&cancel),
            progress: &progress,
        })
    })
    .await
    .map_err(|error| build_error(format!("the image build task failed: {error}")))?
}

/// Sets its flag when dropped: the compile it was handed to stops.
#[derive(Default)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The repository and tag a processor's built image carries: `proctor/<ns>-<name>` and its
/// version.
pub(crate) fn image_tag(processor_ref: &ProcessorRef) -> (String, &str) {
    (
        format!("proctor/{}", processor_ref.image_name()),
        processor_ref.version(),
    )
}

/// Whether the engine has an image with exactly this ID.
pub(crate) async fn has_image(docker: &Docker, id: &str) -> Result<bool, CanonError> {
    match docker.inspect_image(id).await {
        Ok(image) => Ok(image.id.as_deref() == Some(id)),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(build_error(format!("inspecting image {id}: {error}"))),
    }
}

/// Loads a docker-archive into the engine, capturing its output.
async fn load(docker: &Docker, archive: Vec<u8>, tag: &str) -> Result<(), CanonError> {
    let options = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut output = Tail::default();
    let mut stream = docker.import_image(options, bollard::body_full(Bytes::from(archive)), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|error| {
            build_error(format!(
                "docker load of {tag} failed: {error}{}",
                output.render()
            ))
        })?;
        let lines = info.stream.iter().flat_map(|text| text.lines());
        for line in lines.filter(|line| !line.trim().is_empty()) {
            tracing::debug!(event = "image.load.output", line = %line);
            output.push(line);
        }
    }
    Ok(())
}

pub(crate) fn build_error(detail: String) -> CanonError {
    CanonError::new(ErrorCode::Build, detail)
}

/// The last [`TAIL_LINES`] lines of a tool's output.
#[derive(Default)]
pub(crate) struct Tail(VecDeque<String>);

impl Tail {
    pub(crate) fn push(&mut self, line: &str) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }

    /// `"; last output:\n…"`, or nothing when there was none.
    pub(crate) fn render(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            let lines: Vec<&str> = self.0.iter().map(String::as_str).collect();
            format!("; last output:\n{}", lines.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_images_carry_the_ref_label_of_containers() {
        assert_eq!(proctor_oci::REF_LABEL, crate::LABEL_REF);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut tail = Tail::default();
        assert_eq!(tail.render(), "");
        for n in 0..30 {
            tail.push(&format!("line {n}"));
        }
        let rendered = tail.render();
        assert!(
            rendered.starts_with("; last output:\nline 10\n"),
            "{rendered}"
        );
        assert!(rendered.ends_with("line 29"));
    }
}
