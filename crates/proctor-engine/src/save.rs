//! `save_dir`: copies a success's outputs and index out of the committed World, mirroring
//! world paths (`/artifacts/x` → `DIR/artifacts/x`).
//!
//! The copy streams from the World's store, checks every file against the envelope (size and
//! content id) on the way, and writes each one atomically ([`proctor_fs::AtomicFile`]), so a
//! failed copy leaves no partial file. Nothing is followed
//! through a link: every existing directory on the way must be a real directory, and a
//! destination inside the artifacts root is refused before any work.

use std::fs;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use futures_util::StreamExt as _;
use proctor_contract::{CanonError, CidHasher, ErrorCode, SuccessEnvelope, WorldPath};
use proctor_fs::AtomicFile;
use proctor_store::ArtifactStore;

fn save_error(detail: String) -> CanonError {
    CanonError::new(ErrorCode::OutputWrite, detail)
}

/// Refuses a save directory inside the artifacts root (after resolving both, so a link or a
/// `..` cannot hide it): the World is written only by commits.
pub(crate) fn check_destination(artifacts_root: &Path, save_dir: &Path) -> Result<(), CanonError> {
    let world = resolve(artifacts_root);
    let destination = resolve(save_dir);
    if destination.starts_with(&world) {
        return Err(save_error(format!(
            "--save-dir `{}` is inside the artifacts root `{}`; choose a directory outside it",
            save_dir.display(),
            artifacts_root.display()
        )));
    }
    Ok(())
}

/// `path` made absolute with its longest existing ancestor resolved through links and the
/// rest appended lexically (`..` removed).
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(resolved) = existing.canonicalize() {
            let mut resolved = resolved;
            for component in rest.iter().rev() {
                match component {
                    Component::ParentDir => {
                        resolved.pop();
                    }
                    Component::Normal(name) => resolved.push(name),
                    _ => {}
                }
            }
            return resolved;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Copies every output and the index of `envelope` from `store` to `save_dir`.
pub(crate) async fn save_outputs(
    store: &dyn ArtifactStore,
    artifacts_root: &Path,
    envelope: &SuccessEnvelope,
    save_dir: &Path,
) -> Result<(), CanonError> {
    check_destination(artifacts_root, save_dir)?;
    for output in &envelope.outputs {
        copy(
            store,
            &output.path,
            save_dir,
            Some((output.size_bytes, &output.cid)),
        )
        .await?;
    }
    copy(store, &envelope.index_path, save_dir, None).await
}

/// Streams one world path into `save_dir`, checking size and content id when given.
async fn copy(
    store: &dyn ArtifactStore,
    path: &WorldPath,
    save_dir: &Path,
    expected: Option<(u64, &str)>,
) -> Result<(), CanonError> {
    let target = save_dir.join(path.relative());
    let dir = target
        .parent()
        .ok_or_else(|| save_error(format!("`{path}` has no directory")))?;
    create_dirs_without_links(save_dir, dir)?;
    let cannot_write =
        |e: std::io::Error| save_error(format!("cannot write `{}`: {e}", target.display()));
    // Dropped on an early return, the file removes its temporary name.
    let mut file = AtomicFile::create(&target)
        .map_err(|e| save_error(format!("cannot create `{}`: {e}", target.display())))?;
    let mut stream = store
        .get_stream(path)
        .await
        .map_err(|e| save_error(format!("cannot read `{path}` from the World: {e}")))?;
    let mut hasher = CidHasher::default();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| save_error(format!("cannot read `{path}` from the World: {e}")))?;
        hasher.update(&chunk);
        // A file grown past its size in the envelope is refused at once, not copied whole.
        if let Some((size_bytes, _)) = expected
            && hasher.len() > size_bytes
        {
            return Err(mismatch(path));
        }
        file.write_all(&chunk).map_err(cannot_write)?;
    }
    if let Some((size_bytes, cid)) = expected
        && (hasher.len() != size_bytes || hasher.finish() != cid)
    {
        return Err(mismatch(path));
    }
    file.commit().map_err(cannot_write)
}

fn mismatch(path: &WorldPath) -> CanonError {
    save_error(format!(
        "`{path}` in the World does not match its size and cid in the envelope"
    ))
}

/// Creates `dir` below `root` one component at a time; an existing component must be a
/// real directory, never a link.
fn create_dirs_without_links(root: &Path, dir: &Path) -> Result<(), CanonError> {
    fs::create_dir_all(root)
        .map_err(|e| save_error(format!("cannot create `{}`: {e}", root.display())))?;
    let below = dir.strip_prefix(root).map_err(|_| {
        save_error(format!(
            "`{}` is not below `{}`",
            dir.display(),
            root.display()
        ))
    })?;
    let mut current = root.to_path_buf();
    for component in below.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(save_error(format!(
                    "`{}` exists and is not a directory; the copy never goes through a link",
                    current.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(|e| {
                    save_error(format!("cannot create `{}`: {e}", current.display()))
                })?;
            }
            Err(e) => {
                return Err(save_error(format!(
                    "cannot inspect `{}`: {e}",
                    current.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use bytes::Bytes;
    use proctor_contract::{Envelope, Mode, OutputsIndex, SuccessMeta, WritePrefix, cid};
    use proctor_store::FsStore;

    use super::*;

    async fn committed(world: &Path, files: &[(&str, &[u8])]) -> SuccessEnvelope {
        let store = FsStore::new(world);
        let prefix = WritePrefix::expand("/artifacts/o/{execution_id}/", "e1").unwrap();
        let index = OutputsIndex::build(files.iter().map(|(name, bytes)| {
            (
                prefix.output_path(name).unwrap().to_string(),
                cid(bytes),
                bytes.len() as u64,
                "text/plain".to_owned(),
            )
        }))
        .unwrap();
        for (name, bytes) in files {
            let path = prefix.output_path(name).unwrap();
            store
                .put(&path, Bytes::copy_from_slice(bytes))
                .await
                .unwrap();
        }
        store
            .put(&prefix.index_path(), Bytes::from(index.to_bytes()))
            .await
            .unwrap();
        let meta = SuccessMeta {
            image_digest: "sha256:00".into(),
            env_fingerprint: "mode=mock".into(),
            duration_ms: 1,
            mode: Mode::Mock,
        };
        match Envelope::success("e1", index.outputs, prefix.index_path(), meta) {
            Envelope::Success(success) => success,
            Envelope::Error(_) => unreachable!(),
        }
    }

    #[tokio::test]
    async fn copies_outputs_and_index_mirroring_world_paths() {
        let world = tempfile::tempdir().unwrap();
        let save = tempfile::tempdir().unwrap();
        let envelope = committed(world.path(), &[("a.txt", b"one"), ("d/b.txt", b"two")]).await;
        let store = FsStore::new(world.path());
        save_outputs(&store, world.path(), &envelope, save.path())
            .await
            .unwrap();
        let saved = save.path().join("artifacts/o/e1");
        assert_eq!(fs::read(saved.join("outputs/a.txt")).unwrap(), b"one");
        assert_eq!(fs::read(saved.join("outputs/d/b.txt")).unwrap(), b"two");
        assert!(saved.join("outputs.json").is_file());
    }

    #[tokio::test]
    async fn a_changed_or_grown_world_file_is_refused_and_leaves_nothing() {
        let changed = b"ONE".to_vec();
        let grown = b"one".repeat(100_000);
        for replacement in [changed, grown] {
            let world = tempfile::tempdir().unwrap();
            let save = tempfile::tempdir().unwrap();
            let envelope = committed(world.path(), &[("a.txt", b"one")]).await;
            let host = world.path().join("o/e1/outputs/a.txt");
            fs::remove_file(&host).unwrap();
            fs::write(&host, replacement).unwrap();
            let store = FsStore::new(world.path());
            let error = save_outputs(&store, world.path(), &envelope, save.path())
                .await
                .unwrap_err();
            assert_eq!(error.code(), ErrorCode::OutputWrite);
            assert!(
                error.message().contains("does not match its size"),
                "{error}"
            );
            let dir = save.path().join("artifacts/o/e1/outputs");
            assert_eq!(fs::read_dir(dir).unwrap().count(), 0, "no partial file");
        }
    }

    #[tokio::test]
    async fn the_copy_never_goes_through_a_link() {
        let world = tempfile::tempdir().unwrap();
        let save = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let envelope = committed(world.path(), &[("a.txt", b"one")]).await;
        symlink(elsewhere.path(), save.path().join("artifacts")).unwrap();
        let store = FsStore::new(world.path());
        let error = save_outputs(&store, world.path(), &envelope, save.path())
            .await
            .unwrap_err();
        assert!(
            error.message().contains("never goes through a link"),
            "{error}"
        );
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_destination_inside_the_artifacts_root_is_refused() {
        let world = tempfile::tempdir().unwrap();
        let inside = world.path().join("later/dir");
        let error = check_destination(world.path(), &inside).unwrap_err();
        assert_eq!(error.code(), ErrorCode::OutputWrite);
        let sneaky = world.path().join("x/../y");
        assert!(check_destination(world.path(), &sneaky).is_err());
        let outside = tempfile::tempdir().unwrap();
        symlink(world.path(), outside.path().join("link")).unwrap();
        assert!(check_destination(world.path(), &outside.path().join("link/d")).is_err());
        assert!(check_destination(world.path(), outside.path()).is_ok());
    }
}
