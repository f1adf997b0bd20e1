//! Building a processor image from source (`--build`).
//!
//! Three steps: `proctor_oci::compile` (`cargo build --release -p <build.cargo_package>
//! --target <triple>` with `+crt-static`) gives a statically linked binary; a tar build
//! context holds the processor's `build.context` files (minus `target/` directories) plus that
//! binary as `processor`; the engine builds the Dockerfile from that context. The image ID
//! (`sha256:…`) is what a run starts from and the digest the envelope must report.
//!
//! The engine's build output is captured, never written to stdout: the last lines explain an
//! `ERR_BUILD`. Entries of the context carry fixed owners and
//! times, so an unchanged binary hits the engine's build cache and yields the same image ID.

use std::collections::{HashMap, VecDeque};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures_util::StreamExt;
use proctor_contract::{CanonError, ErrorCode};
use proctor_registry::{Platform, ProcessorSpec};

use crate::local::LABEL_REF;
use crate::platform::{oci_build_platform, oci_platform};

/// How many trailing output lines an `ERR_BUILD` carries.
const TAIL_LINES: usize = 20;
/// The name of the binary inside the build context, as the Dockerfile copies it.
const CONTEXT_BINARY: &str = "processor";

/// What to build: one processor, for one platform.
#[derive(Debug, Clone, Copy)]
pub struct ImageBuild<'a> {
    /// The processor's registry entry (its `build` section says how).
    pub spec: &'a ProcessorSpec,
    /// The directory holding its `registry.yaml`; `build.context` is relative to it.
    pub processor_dir: &'a Path,
    /// The Cargo workspace root that builds `build.cargo_package`.
    pub workspace_root: &'a Path,
    /// The platform to build for.
    pub platform: Platform,
}

/// An image built from source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The image ID, `sha256:…`: run by it, and expect it as `meta.image_digest`.
    pub id: String,
    /// The local tag it also carries, `proctor/<ns>-<name>:<version>`.
    pub tag: String,
}

/// Builds the processor's binary, then its image, in the engine behind `docker`.
pub(crate) async fn build_image(
    docker: &Docker,
    build: &ImageBuild<'_>,
) -> Result<BuiltImage, CanonError> {
    let started = Instant::now();
    let processor_ref = &build.spec.processor_ref;
    let binary = compile_binary(build).await?;
    let context_dir = build.processor_dir.join(&build.spec.build.context);
    let dockerfile = build.spec.build.dockerfile.clone();
    let context =
        tokio::task::spawn_blocking(move || context_tar(&context_dir, &dockerfile, &binary))
            .await
            .map_err(|error| build_error(format!("packing the build context failed: {error}")))??;
    let tag = format!(
        "proctor/{}:{}",
        processor_ref.image_name(),
        processor_ref.version()
    );
    let labels = HashMap::from([(LABEL_REF.to_owned(), processor_ref.to_string())]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(&build.spec.build.dockerfile)
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .platform(&oci_platform(build.platform))
        .build();
    let mut output = Tail::default();
    let mut image_id = None;
    let mut stream = docker.build_image(
        options,
        None,
        Some(bollard::body_full(Bytes::from(context))),
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|error| {
            build_error(format!(
                "docker build of {tag} failed: {error}{}",
                output.render()
            ))
        })?;
        if let Some(text) = info.stream {
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .for_each(|line| output.push(line));
        }
        if let Some(id) = info.aux.and_then(|aux| aux.id) {
            image_id = Some(id);
        }
    }
    let id = match image_id {
        Some(id) => id,
        None => docker
            .inspect_image(&tag)
            .await
            .ok()
            .and_then(|image| image.id)
            .ok_or_else(|| {
                build_error(format!(
                    "docker build of {tag} gave no image ID{}",
                    output.render()
                ))
            })?,
    };
    tracing::info!(
        event = "image.built",
        processor_ref = %processor_ref,
        image_id = %id,
        tag = %tag,
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    Ok(BuiltImage { id, tag })
}

/// Compiles the processor's statically linked binary (the same step `proctor build` takes)
/// and returns its path.
async fn compile_binary(build: &ImageBuild<'_>) -> Result<PathBuf, CanonError> {
    let package = build.spec.build.cargo_package.clone();
    let workspace_root = build.workspace_root.to_path_buf();
    let platform = oci_build_platform(build.platform);
    tracing::info!(event = "image.compile", package = %package, platform = %platform);
    let compiled = tokio::task::spawn_blocking(move || {
        proctor_oci::compile(proctor_oci::CompileJob {
            workspace_root: &workspace_root,
            cargo_package: &package,
            platform,
        })
    })
    .await
    .map_err(|error| build_error(format!("the compile task failed: {error}")))??;
    Ok(compiled.path)
}

/// Packs the build context: every file under `context_dir` except `target/` directories
/// and a stale `processor`, then `binary` as `processor`.
fn context_tar(context_dir: &Path, dockerfile: &str, binary: &Path) -> Result<Vec<u8>, CanonError> {
    let io_error = |path: &Path, error: std::io::Error| {
        build_error(format!("build context: {}: {error}", path.display()))
    };
    if !context_dir.join(dockerfile).is_file() {
        return Err(build_error(format!(
            "build context {} has no Dockerfile `{dockerfile}`",
            context_dir.display()
        )));
    }
    let mut files = Vec::new();
    collect_files(context_dir, Path::new(""), &mut files)
        .map_err(|error| io_error(context_dir, error))?;
    let mut archive = tar::Builder::new(Vec::new());
    for relative in files {
        if relative == Path::new(CONTEXT_BINARY) {
            continue;
        }
        let path = context_dir.join(&relative);
        let file = std::fs::File::open(&path).map_err(|error| io_error(&path, error))?;
        append_file(&mut archive, &relative, file).map_err(|error| io_error(&path, error))?;
    }
    let file = std::fs::File::open(binary).map_err(|error| io_error(binary, error))?;
    append_file(&mut archive, Path::new(CONTEXT_BINARY), file)
        .map_err(|error| io_error(binary, error))?;
    archive
        .into_inner()
        .map_err(|error| io_error(context_dir, error))
}

/// Lists regular files under `dir` (relative to the context root), sorted, skipping
/// directories named `target`.
fn collect_files(root: &Path, relative: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(root.join(relative))?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let file_type = entry.file_type()?;
        let path = relative.join(entry.file_name());
        if file_type.is_dir() {
            if entry.file_name() != "target" {
                collect_files(root, &path, files)?;
            }
        } else if file_type.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// Appends one file with fixed owner and time; executables keep their execute bits.
fn append_file(
    archive: &mut tar::Builder<Vec<u8>>,
    name: &Path,
    mut file: std::fs::File,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = file.metadata()?;
    let executable = metadata.permissions().mode() & 0o111 != 0;
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or_default());
    file.read_to_end(&mut bytes)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(if executable { 0o755 } else { 0o644 });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    archive.append_data(&mut header, name, bytes.as_slice())
}

fn build_error(detail: String) -> CanonError {
    CanonError::new(ErrorCode::Build, detail)
}

/// The last [`TAIL_LINES`] lines of a tool's output.
#[derive(Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &str) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }

    /// `"; last output:\n…"`, or nothing when there was none.
    fn render(&self) -> String {
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
    fn context_skips_target_dirs_and_adds_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::create_dir_all(root.join("target/release")).unwrap();
        std::fs::write(root.join("target/release/big"), "x").unwrap();
        std::fs::write(root.join("processor"), "stale").unwrap();
        let binary = root.join("built");
        std::fs::write(&binary, "ELF").unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();

        let bytes = context_tar(root, "Dockerfile", &binary).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            let header = entry.header();
            let name = entry.path().unwrap().display().to_string();
            entries.push((
                name,
                header.mode().unwrap(),
                header.mtime().unwrap(),
                content,
            ));
        }
        let names: Vec<&str> = entries.iter().map(|(name, ..)| name.as_str()).collect();
        assert_eq!(names, ["Dockerfile", "built", "src/main.rs", "processor"]);
        assert_eq!(
            entries[3],
            ("processor".to_owned(), 0o755, 0, "ELF".to_owned())
        );
        assert_eq!(entries[0].1, 0o644);
        assert_eq!(
            context_tar(root, "Dockerfile", &binary).unwrap(),
            bytes,
            "packing is deterministic"
        );
    }

    #[test]
    fn context_without_its_dockerfile_is_a_build_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = context_tar(dir.path(), "Dockerfile", Path::new("/nonexistent")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Build);
        assert!(err.message().contains("has no Dockerfile"), "{err}");
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
