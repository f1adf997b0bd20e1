//! Building a processor image from its Dockerfile (`--build` of an entry whose `build` has
//! no `cargo_package`): the container engine builds it, with no network, from a build
//! context the host assembles.
//!
//! The context is the entry's `build.context` directory (caches and hidden entries left
//! out), sent as a tar whose entries all carry the same owner, mode bits and time, so an
//! unchanged context is an unchanged context. For a Python processor (`build.python`) the
//! host adds `wheels/`: the wheels of the context's `requirements.txt` and of the Python SDK
//! (`sdk/python` in the workspace) with everything they depend on, for that CPython on the
//! build platform, which its Dockerfile installs with `pip install --no-index`. They are
//! downloaded once per requirements, SDK source, Python version and platform, into
//! `target/proctor-wheels/<key>/` of the workspace.
//!
//! The engine builds with `networkmode: none` and the caller's build arguments (e.g.
//! `BASE_IMAGE`, for a base image that cannot be pulled) and tags the image
//! `proctor/<ns>-<name>:<version>`, labelled with its ref; the run starts it by image ID.
//! pip's and the engine's output are captured, never printed: their last lines explain an
//! `ERR_BUILD`. Dropping the build (the run was cancelled or timed out) kills pip and
//! closes the engine's build request, which stops the build.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures_util::StreamExt;
use proctor_contract::{CanonError, Platform, ProcessorRef, Progress, ProgressUnit};
use proctor_registry::Build;

use crate::image_build::{BuiltImage, Tail, build_error, has_image, image_tag};
use crate::local::LABEL_REF;

/// Where the Python SDK's source lives in the workspace.
const PYTHON_SDK_DIR: &str = "sdk/python";
/// Where downloaded wheels are kept, in the workspace.
const WHEELS_CACHE_DIR: &str = "target/proctor-wheels";
/// The build context's directory of wheels, as the Dockerfile copies it.
const WHEELS_DIR: &str = "wheels";
/// The newest glibc minor version a wheel may need: Debian bookworm's glibc 2.36, the base
/// of `python:3.11-slim` and of `scripts/python-base.sh`.
const GLIBC_MINOR_MAX: u32 = 36;
/// The oldest manylinux glibc minor version (manylinux2014 is glibc 2.17).
const GLIBC_MINOR_MIN: u32 = 17;
/// Bumped when what a wheels directory holds changes, so old cache entries are not reused.
const WHEELS_LAYOUT: &str = "proctor-wheels/1";

/// What the local adapter builds Dockerfile processors with
/// ([`crate::LocalAdapter::with_dockerfile_builds`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerfileBuilds {
    /// The registry root holding `<ns>/<name>/<version>/registry.yaml`: a processor's
    /// `build.context` is relative to its entry's directory.
    pub registry_root: PathBuf,
    /// Build arguments (`--build-arg KEY=VALUE`), such as `BASE_IMAGE`, the base image of
    /// the Python processors' Dockerfiles.
    pub build_args: BTreeMap<String, String>,
}

/// What to build: one processor's Dockerfile, for the engine's platform.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DockerfileBuild<'a> {
    /// The processor.
    pub(crate) processor_ref: &'a ProcessorRef,
    /// Its registry entry's `build` section.
    pub(crate) build: &'a Build,
    /// The directory of its `registry.yaml`, which `build.context` is relative to.
    pub(crate) dir: &'a Path,
    /// The workspace: the Python SDK's source and the wheels cache.
    pub(crate) workspace_root: &'a Path,
    /// The platform the engine builds for.
    pub(crate) platform: Platform,
    /// `--build-arg` values (`ARG`s of the Dockerfile).
    pub(crate) build_args: &'a BTreeMap<String, String>,
    /// Hears of each build step (`Step N/M`) and each line of the engine's output.
    pub(crate) progress: &'a Progress,
}

/// Builds the image with the engine behind `docker` and returns its ID and tag.
pub(crate) async fn build_dockerfile_image(
    docker: &Docker,
    job: &DockerfileBuild<'_>,
) -> Result<BuiltImage, CanonError> {
    let started = Instant::now();
    let (repository, version) = image_tag(job.processor_ref);
    let tag = format!("{repository}:{version}");
    let task = job.progress.start(
        format!("building {tag} from its Dockerfile"),
        ProgressUnit::Steps,
        None,
    );
    let context_dir = job.dir.join(&job.build.context);
    let wheels = match &job.build.python {
        Some(python) => {
            task.message("fetching the Python wheels");
            Some(python_wheels(job.workspace_root, &context_dir, python, job.platform).await?)
        }
        None => None,
    };
    task.message("packing the build context");
    let context = tokio::task::spawn_blocking(move || context_tar(&context_dir, wheels.as_deref()))
        .await
        .map_err(|error| build_error(format!("the build context task failed: {error}")))??;
    let build_args: HashMap<&str, &str> = job
        .build_args
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let labels = HashMap::from([(LABEL_REF, job.processor_ref.to_string())]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(&job.build.dockerfile)
        .t(&tag)
        .networkmode("none")
        .buildargs(&build_args)
        .labels(&labels)
        .rm(true)
        .forcerm(true)
        .build();
    let context_bytes = context.len();
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
        let lines = info.stream.iter().flat_map(|text| text.lines());
        for line in lines.filter(|line| !line.trim().is_empty()) {
            tracing::debug!(event = "image.build.output", line = %line);
            task.output(line);
            if let Some(total) = build_step_total(line) {
                task.set_total(total);
                task.advance(1);
                task.message(line);
            }
            output.push(line);
        }
        if let Some(id) = info.aux.and_then(|aux| aux.id) {
            image_id = Some(id);
        }
    }
    drop(task);
    let Some(id) = image_id else {
        return Err(build_error(format!(
            "docker build of {tag} named no image{}",
            output.render()
        )));
    };
    if !has_image(docker, &id).await? {
        return Err(build_error(format!(
            "docker build of {tag} reported image {id}, which the engine does not have"
        )));
    }
    tracing::info!(
        event = "image.built",
        processor_ref = %job.processor_ref,
        image_id = %id,
        tag = %tag,
        context_bytes,
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    Ok(BuiltImage { id, tag })
}

/// `M` of a classic builder's `Step N/M : INSTRUCTION` line, which starts step `N`.
fn build_step_total(line: &str) -> Option<u64> {
    let (_, total) = line
        .strip_prefix("Step ")?
        .split_once(" :")?
        .0
        .split_once('/')?;
    total.parse().ok()
}

/// The pip platform tags of manylinux wheels that run on `platform` under glibc 2.36.
fn wheel_platforms(platform: Platform) -> Vec<String> {
    let arch = match platform {
        Platform::Amd64 => "x86_64",
        Platform::Arm64 => "aarch64",
    };
    let mut tags = vec![format!("manylinux2014_{arch}")];
    tags.extend(
        (GLIBC_MINOR_MIN..=GLIBC_MINOR_MAX).map(|minor| format!("manylinux_2_{minor}_{arch}")),
    );
    tags
}

/// The directory of wheels a Python processor installs, downloaded now unless the cache
/// holds them.
async fn python_wheels(
    workspace_root: &Path,
    context_dir: &Path,
    python: &str,
    platform: Platform,
) -> Result<PathBuf, CanonError> {
    let started = Instant::now();
    let sdk = workspace_root.join(PYTHON_SDK_DIR);
    if !sdk.join("pyproject.toml").is_file() {
        return Err(build_error(format!(
            "the Python SDK is not at {}: a Python processor is built in the workspace that \
             holds it",
            sdk.display()
        )));
    }
    let requirements = context_dir.join(Build::PYTHON_REQUIREMENTS);
    let platforms = wheel_platforms(platform);
    let key = {
        let (sdk, requirements) = (sdk.clone(), requirements.clone());
        let parts = format!("{WHEELS_LAYOUT}\n{python}\n{}", platforms.join(" "));
        tokio::task::spawn_blocking(move || wheels_key(&parts, &requirements, &sdk))
            .await
            .map_err(|error| build_error(format!("the wheels key task failed: {error}")))??
    };
    let cache = workspace_root.join(WHEELS_CACHE_DIR);
    let dir = cache.join(&key);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&cache)
        .map_err(|error| build_error(format!("cannot create {}: {error}", cache.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(&cache)
        .map_err(|error| {
            build_error(format!(
                "cannot create a directory in {}: {error}",
                cache.display()
            ))
        })?;
    let sdk_copy = scratch.path().join("sdk-source");
    let sdk_dir = scratch.path().join("sdk");
    let downloaded = scratch.path().join(WHEELS_DIR);
    {
        let (sdk, sdk_copy) = (sdk.clone(), sdk_copy.clone());
        tokio::task::spawn_blocking(move || copy_sources(&sdk, &sdk_copy))
            .await
            .map_err(|error| build_error(format!("the SDK copy task failed: {error}")))??;
    }
    pip(&[
        "wheel".as_ref(),
        "--no-deps".as_ref(),
        "--wheel-dir".as_ref(),
        sdk_dir.as_os_str(),
        sdk_copy.as_os_str(),
    ])
    .await?;
    let sdk_wheel = only_wheel(&sdk_dir)?;
    let mut download: Vec<&OsStr> = vec![
        "download".as_ref(),
        "--only-binary=:all:".as_ref(),
        "--implementation".as_ref(),
        "cp".as_ref(),
        "--python-version".as_ref(),
        python.as_ref(),
        "--dest".as_ref(),
        downloaded.as_os_str(),
        "--requirement".as_ref(),
        requirements.as_os_str(),
        sdk_wheel.as_os_str(),
    ];
    for tag in &platforms {
        download.extend([OsStr::new("--platform"), OsStr::new(tag)]);
    }
    pip(&download).await?;
    // Another build may have filled the same entry meanwhile: either copy will do.
    if let Err(error) = std::fs::rename(&downloaded, &dir)
        && !dir.is_dir()
    {
        return Err(build_error(format!(
            "cannot move the wheels into {}: {error}",
            dir.display()
        )));
    }
    tracing::info!(
        event = "image.wheels",
        python = %python,
        platform = %platform,
        dir = %dir.display(),
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    Ok(dir)
}

/// Top-level directories of the Python SDK that its wheel is not built from.
const SDK_NON_SOURCES: &[&str] = &["tests", "build", "dist"];

/// Copies the Python SDK's sources (what [`wheels_key`] hashes) to `to`, where its wheel is
/// built: the build leaves nothing in the workspace, and two builds never share a
/// directory.
fn copy_sources(sdk: &Path, to: &Path) -> Result<(), CanonError> {
    for relative in source_files(sdk, SDK_NON_SOURCES)? {
        let target = to.join(&relative);
        let copied = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::copy(sdk.join(&relative), &target));
        copied.map_err(|error| {
            build_error(format!("cannot copy {relative} of the Python SDK: {error}"))
        })?;
    }
    Ok(())
}

/// The cache key of a wheels directory: BLAKE3 of `parts`, the requirements and the SDK's
/// source files (relative path and bytes, in path order), as 32 hex digits.
fn wheels_key(parts: &str, requirements: &Path, sdk: &Path) -> Result<String, CanonError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|error| build_error(format!("cannot read {}: {error}", path.display())))
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(parts.as_bytes());
    hasher.update(b"\0requirements\0");
    hasher.update(&read(requirements)?);
    for relative in source_files(sdk, SDK_NON_SOURCES)? {
        let bytes = read(&sdk.join(&relative))?;
        hasher.update(b"\0");
        hasher.update(relative.as_bytes());
        hasher.update(b"\0");
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().to_hex()[..32].to_owned())
}

/// Runs `python3 -m pip ARGS`; its output explains a failure.
async fn pip(args: &[&OsStr]) -> Result<(), CanonError> {
    let mut command = tokio::process::Command::new("python3");
    command
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let what = format!(
        "python3 -m pip {}",
        args.first()
            .map(|arg| arg.to_string_lossy())
            .unwrap_or_default()
    );
    let output = command
        .output()
        .await
        .map_err(|error| build_error(format!("cannot run {what}: {error}")))?;
    if output.status.success() {
        return Ok(());
    }
    let mut tail = Tail::default();
    let text = [output.stdout, output.stderr].concat();
    for line in String::from_utf8_lossy(&text).lines() {
        if !line.trim().is_empty() {
            tail.push(line);
        }
    }
    Err(build_error(format!(
        "{what} failed ({}){}",
        output.status,
        tail.render()
    )))
}

/// The one wheel in `dir`.
fn only_wheel(dir: &Path) -> Result<PathBuf, CanonError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| build_error(format!("cannot read {}: {error}", dir.display())))?;
    let wheels: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .collect();
    match wheels.as_slice() {
        [wheel] => Ok(wheel.clone()),
        _ => Err(build_error(format!(
            "expected one wheel of the Python SDK in {}, found {}",
            dir.display(),
            wheels.len()
        ))),
    }
}

/// Whether a directory entry stays out of build contexts and cache keys: hidden entries and
/// Python's caches.
fn is_left_out(name: &str) -> bool {
    name.starts_with('.') || name == "__pycache__" || name.ends_with(".egg-info")
}

/// The regular files below `root`, as `/`-separated relative paths in order, leaving out
/// [`is_left_out`] entries and the top-level directories `skip`. A link or special file is
/// an error: what is built is what the directory holds.
fn source_files(root: &Path, skip: &[&str]) -> Result<Vec<String>, CanonError> {
    let mut files = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|error| build_error(format!("cannot read {}: {error}", dir.display())))?;
        for entry in entries {
            let entry = entry
                .map_err(|error| build_error(format!("cannot read {}: {error}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_left_out(&name) || (prefix.is_empty() && skip.contains(&name.as_str())) {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(|error| {
                build_error(format!("cannot read {}: {error}", entry.path().display()))
            })?;
            if kind.is_dir() {
                pending.push((entry.path(), format!("{relative}/")));
            } else if kind.is_file() {
                files.push(relative);
            } else {
                return Err(build_error(format!(
                    "{} is neither a file nor a directory; a build context holds only those",
                    entry.path().display()
                )));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The build context as a tar: the files of `context_dir`, then those of `wheels` under
/// `wheels/`; every entry owned by root, dated 0, mode 0644 or (executable) 0755.
fn context_tar(context_dir: &Path, wheels: Option<&Path>) -> Result<Vec<u8>, CanonError> {
    let mut sources: Vec<(String, PathBuf)> = source_files(context_dir, &[WHEELS_DIR])?
        .into_iter()
        .map(|relative| (relative.clone(), context_dir.join(relative)))
        .collect();
    if let Some(wheels) = wheels {
        sources.extend(
            source_files(wheels, &[])?
                .into_iter()
                .map(|relative| (format!("{WHEELS_DIR}/{relative}"), wheels.join(relative))),
        );
    }
    let mut archive = tar::Builder::new(Vec::new());
    for (name, path) in &sources {
        let failed =
            |error: std::io::Error| build_error(format!("cannot add {}: {error}", path.display()));
        let file = std::fs::File::open(path).map_err(failed)?;
        let metadata = file.metadata().map_err(failed)?;
        let executable = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o111;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(metadata.len());
        header.set_mode(if executable == 0 { 0o644 } else { 0o755 });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        archive
            .append_data(&mut header, name, file)
            .map_err(failed)?;
    }
    archive
        .into_inner()
        .map_err(|error| build_error(format!("cannot finish the build context: {error}")))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(path: &Path, contents: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    /// `(path, mode, mtime, bytes)` of each entry.
    fn entries(tar: &[u8]) -> Vec<(String, u32, u64, String)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                let header = entry.header();
                (
                    entry.path().unwrap().display().to_string(),
                    header.mode().unwrap(),
                    header.mtime().unwrap(),
                    text,
                )
            })
            .collect()
    }

    #[test]
    fn the_context_holds_the_sources_and_the_wheels_in_one_fixed_form() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("context");
        write(&context.join("Dockerfile"), "FROM scratch\n");
        write(&context.join("main.py"), "print()\n");
        write(&context.join("pkg/run.sh"), "#!/bin/sh\n");
        std::fs::set_permissions(
            context.join("pkg/run.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        write(&context.join("__pycache__/main.pyc"), "cache");
        write(&context.join(".pytest_cache/x"), "cache");
        write(&context.join("wheels/stale.whl"), "left by hand");
        let wheels = dir.path().join("wheels");
        write(&wheels.join("a-1-py3-none-any.whl"), "wheel");

        let tar = context_tar(&context, Some(&wheels)).unwrap();
        let listed = entries(&tar);
        assert_eq!(
            listed,
            [
                ("Dockerfile".into(), 0o644, 0, "FROM scratch\n".into()),
                ("main.py".into(), 0o644, 0, "print()\n".into()),
                ("pkg/run.sh".into(), 0o755, 0, "#!/bin/sh\n".into()),
                (
                    "wheels/a-1-py3-none-any.whl".into(),
                    0o644,
                    0,
                    "wheel".into()
                ),
            ]
        );
        assert_eq!(tar, context_tar(&context, Some(&wheels)).unwrap());
    }

    #[test]
    fn a_link_in_the_context_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("Dockerfile"), "FROM scratch\n");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let error = context_tar(dir.path(), None).unwrap_err();
        assert_eq!(error.code(), proctor_contract::ErrorCode::Build);
        assert!(
            error.detail().contains("neither a file nor a directory"),
            "{error}"
        );
    }

    #[test]
    fn the_wheels_key_follows_requirements_and_sdk_sources_but_not_their_tests() {
        let dir = tempfile::tempdir().unwrap();
        let requirements = dir.path().join("requirements.txt");
        let sdk = dir.path().join("sdk");
        write(&requirements, "litellm==1.0.0\n");
        write(&sdk.join("pyproject.toml"), "[project]\n");
        write(&sdk.join("src/sdk/__init__.py"), "");
        let key = || wheels_key("3.11", &requirements, &sdk).unwrap();
        let first = key();
        assert_eq!(first.len(), 32);
        write(&sdk.join("tests/test_x.py"), "def test(): pass\n");
        write(&sdk.join("src/sdk/__pycache__/x.pyc"), "cache");
        write(&sdk.join("build/lib/sdk/__init__.py"), "");
        assert_eq!(
            key(),
            first,
            "tests, builds and caches do not change the wheels"
        );
        let copy = dir.path().join("copy");
        copy_sources(&sdk, &copy).unwrap();
        assert_eq!(
            source_files(&copy, &[]).unwrap(),
            ["pyproject.toml", "src/sdk/__init__.py"],
            "the wheel is built from what the key hashes"
        );
        write(&sdk.join("src/sdk/__init__.py"), "VERSION = 2\n");
        let changed_sdk = key();
        assert_ne!(changed_sdk, first);
        write(&requirements, "litellm==1.0.1\n");
        assert_ne!(key(), changed_sdk);
        assert_ne!(
            wheels_key("3.12", &requirements, &sdk).unwrap(),
            key(),
            "another Python, other wheels"
        );
    }

    #[test]
    fn build_steps_come_from_the_classic_builders_step_lines() {
        assert_eq!(build_step_total("Step 2/7 : COPY . /app"), Some(7));
        assert_eq!(build_step_total("Step 10/12 :"), Some(12));
        assert_eq!(build_step_total(" ---> Running in 1f2e"), None);
        assert_eq!(build_step_total("Step x : nothing"), None);
    }

    #[test]
    fn wheel_platforms_run_on_bookworm_glibc() {
        let tags = wheel_platforms(Platform::Amd64);
        assert_eq!(tags[0], "manylinux2014_x86_64");
        assert!(tags.contains(&"manylinux_2_28_x86_64".to_owned()));
        assert_eq!(tags.last().unwrap(), "manylinux_2_36_x86_64");
        assert!(
            wheel_platforms(Platform::Arm64)
                .iter()
                .all(|tag| tag.ends_with("_aarch64"))
        );
    }
}
