//! Writing world paths onto the directory that backs `/artifacts/`: every file atomically
//! ([`proctor_fs::write_atomically`]), and all files or none; or, for a run configured with
//! the World's object store, into that store under the same world paths
//! ([`write_evidence_to_store`]).
//!
//! World path `/artifacts/x/y` is the file `{root}/x/y`, its canonical text taken verbatim.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proctor_contract::{CanonError, ErrorCode, Facet, WorldPath};
use proctor_store::ArtifactStore;

/// A file to write: where in the world, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedFile {
    /// Its world path, under `/artifacts/`.
    pub(crate) path: WorldPath,
    /// Its bytes.
    pub(crate) bytes: Vec<u8>,
}

/// The filesystem path backing an `/artifacts/` world path.
pub(crate) fn fs_path(root: &Path, path: &WorldPath) -> PathBuf {
    let relative = path.relative();
    root.join(relative.strip_prefix("artifacts/").unwrap_or(relative))
}

/// A run's evidence, checked to fit side by side: its outputs and index, and the paths its
/// receipt is written to once they are on disk.
#[derive(Debug)]
pub(crate) struct Layout {
    files: Vec<PlannedFile>,
    receipt_paths: Vec<WorldPath>,
}

/// Checks that `files` and the receipt at each of `receipt_paths` can all be written side
/// by side: each under `/artifacts/`, no path written twice with different bytes (a receipt
/// path is never another file's), no path both a file and a directory. Exact repeats are
/// dropped.
pub(crate) fn check_layout(
    files: Vec<PlannedFile>,
    receipt_paths: Vec<WorldPath>,
) -> Result<Layout, CanonError> {
    let mut by_path: BTreeMap<WorldPath, Vec<u8>> = BTreeMap::new();
    let receipt_paths: BTreeSet<WorldPath> = receipt_paths.into_iter().collect();
    let twice = |path: &WorldPath| {
        CanonError::new(
            ErrorCode::BadPath,
            format!("`{path}` would be written twice with different bytes"),
        )
    };
    for path in files.iter().map(|file| &file.path).chain(&receipt_paths) {
        if path.facet() != Facet::Artifacts {
            return Err(CanonError::new(
                ErrorCode::BadPath,
                format!("`{path}` is not under /artifacts/"),
            ));
        }
    }
    for file in files {
        if receipt_paths.contains(&file.path) {
            return Err(twice(&file.path));
        }
        match by_path.get(&file.path) {
            Some(bytes) if *bytes != file.bytes => return Err(twice(&file.path)),
            Some(_) => {}
            None => {
                by_path.insert(file.path, file.bytes);
            }
        }
    }
    let names: BTreeSet<&str> = by_path
        .keys()
        .chain(&receipt_paths)
        .map(WorldPath::as_str)
        .collect();
    for name in &names {
        let mut ancestor = *name;
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            if names.contains(parent) {
                return Err(CanonError::new(
                    ErrorCode::BadPath,
                    format!("`{parent}` would be both a file and the directory of `{name}`"),
                ));
            }
            ancestor = parent;
        }
    }
    Ok(Layout {
        files: by_path
            .into_iter()
            .map(|(path, bytes)| PlannedFile { path, bytes })
            .collect(),
        receipt_paths: receipt_paths.into_iter().collect(),
    })
}

/// Writes the layout's files under `root`, in order, then calls `receipt` — once they are
/// all on disk — for the receipt's bytes and writes them at each receipt path; returns what
/// `receipt` returned beside its bytes. On the first failure (or `receipt`'s error),
/// removes what this call wrote and the directories it created; a failed write is reported
/// as `ERR_OUTPUT_WRITE`.
pub(crate) fn write_evidence<T>(
    root: &Path,
    layout: Layout,
    receipt: impl FnOnce() -> Result<(Vec<u8>, T), CanonError>,
) -> Result<T, CanonError> {
    let mut journal = Journal::default();
    let written = write_each(root, layout.files, &mut journal).and_then(|()| {
        let (bytes, made) = receipt()?;
        let receipts = layout.receipt_paths.into_iter().map(|path| PlannedFile {
            path,
            bytes: bytes.clone(),
        });
        write_each(root, receipts, &mut journal).map(|()| made)
    });
    if written.is_err() {
        journal.roll_back();
    }
    written
}

/// Puts the layout's files into `store`, in order, then calls `receipt` — once they are all
/// stored — for the receipt's bytes and puts them at each receipt path; returns what
/// `receipt` returned beside its bytes. Each put is atomic (an object is visible whole or
/// not at all), so a reader finding the receipts finds everything before them. On the
/// first failure (or `receipt`'s error), deletes what this call put; a failed put is
/// reported as `ERR_OUTPUT_WRITE`.
pub(crate) async fn write_evidence_to_store<T>(
    store: &dyn ArtifactStore,
    layout: Layout,
    receipt: impl FnOnce() -> Result<(Vec<u8>, T), CanonError>,
) -> Result<T, CanonError> {
    let mut put: Vec<WorldPath> = Vec::new();
    let written = async {
        let files = layout
            .files
            .into_iter()
            .map(|file| (file.path, Bytes::from(file.bytes)));
        put_each(store, files, &mut put).await?;
        let (bytes, made) = receipt()?;
        let bytes = Bytes::from(bytes);
        let receipts = layout
            .receipt_paths
            .into_iter()
            .map(|path| (path, bytes.clone()));
        put_each(store, receipts, &mut put).await?;
        Ok(made)
    }
    .await;
    if written.is_err() {
        for path in put.iter().rev() {
            if let Err(error) = store.delete(path).await {
                tracing::warn!(event = "artifacts.rollback_failed", path = %path, %error);
            }
        }
    }
    written
}

/// Puts each object, recording each path put in `put`.
async fn put_each(
    store: &dyn ArtifactStore,
    objects: impl IntoIterator<Item = (WorldPath, Bytes)>,
    put: &mut Vec<WorldPath>,
) -> Result<(), CanonError> {
    for (path, bytes) in objects {
        store.put(&path, bytes).await.map_err(|error| {
            CanonError::new(
                ErrorCode::OutputWrite,
                format!("`{path}` in {}: {error}", store.location()),
            )
        })?;
        put.push(path);
    }
    Ok(())
}

/// Writes each file, recording what it changed in `journal`.
fn write_each(
    root: &Path,
    files: impl IntoIterator<Item = PlannedFile>,
    journal: &mut Journal,
) -> Result<(), CanonError> {
    for file in files {
        write_one(root, &file, journal).map_err(|error| {
            CanonError::new(ErrorCode::OutputWrite, format!("`{}`: {error}", file.path))
        })?;
    }
    Ok(())
}

/// What one [`write_evidence`] call has changed so far.
#[derive(Default)]
struct Journal {
    created_dirs: Vec<PathBuf>,
    written_files: Vec<PathBuf>,
}

impl Journal {
    /// Undoes everything recorded, newest first. Best effort: a failure to undo is logged.
    fn roll_back(self) {
        for file in self.written_files.into_iter().rev() {
            if let Err(error) = fs::remove_file(&file) {
                tracing::warn!(event = "artifacts.rollback_failed", path = %file.display(), %error);
            }
        }
        for dir in self.created_dirs.into_iter().rev() {
            if let Err(error) = fs::remove_dir(&dir) {
                tracing::warn!(event = "artifacts.rollback_failed", path = %dir.display(), %error);
            }
        }
    }
}

fn write_one(root: &Path, file: &PlannedFile, journal: &mut Journal) -> io::Result<()> {
    let target = fs_path(root, &file.path);
    let Some(dir) = target.parent() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
    };
    create_dirs(dir, journal)?;
    let existed = fs::symlink_metadata(&target).is_ok();
    let written = proctor_fs::write_atomically(&target, &file.bytes, None);
    // A failure after the rename (syncing the directory) leaves the new file in place.
    if written.is_ok() || (!existed && fs::symlink_metadata(&target).is_ok()) {
        journal.written_files.push(target);
    }
    written
}

/// Creates `dir` and its missing ancestors, recording each directory created.
fn create_dirs(dir: &Path, journal: &mut Journal) -> io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => journal.created_dirs.push(dir.to_owned()),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(path: &str, bytes: &[u8]) -> PlannedFile {
        PlannedFile {
            path: WorldPath::parse(path).unwrap(),
            bytes: bytes.to_vec(),
        }
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(root).unwrap().display().to_string());
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn maps_world_paths_under_the_root() {
        let path = WorldPath::parse("/artifacts/o/e1/outputs/100%25.txt").unwrap();
        assert_eq!(
            fs_path(Path::new("/r"), &path),
            PathBuf::from("/r/o/e1/outputs/100%25.txt")
        );
    }

    fn receipt(bytes: &[u8]) -> impl FnOnce() -> Result<(Vec<u8>, ()), CanonError> {
        let bytes = bytes.to_vec();
        move || Ok((bytes, ()))
    }

    fn layout(files: Vec<PlannedFile>, receipts: &[&str]) -> Result<Layout, CanonError> {
        let receipts = receipts.iter().map(|p| WorldPath::parse(p).unwrap());
        check_layout(files, receipts.collect())
    }

    #[test]
    fn writes_files_then_receipts_and_leaves_no_temp_files() {
        let root = tempfile::tempdir().unwrap();
        let files = vec![
            planned("/artifacts/o/a/b.txt", b"ab"),
            planned("/artifacts/o/c.txt", b"c"),
        ];
        let layout = layout(files, &["/artifacts/o/r.json", "/artifacts/x/r.json"]).unwrap();
        let root_path = root.path().to_owned();
        let seen = write_evidence(root.path(), layout, move || {
            // The receipt is made once every other file is on disk.
            Ok((b"r".to_vec(), root_path.join("o/c.txt").is_file()))
        })
        .unwrap();
        assert!(seen);
        assert_eq!(fs::read(root.path().join("o/a/b.txt")).unwrap(), b"ab");
        assert_eq!(fs::read(root.path().join("x/r.json")).unwrap(), b"r");
        assert_eq!(
            listing(root.path()),
            [
                "o",
                "o/a",
                "o/a/b.txt",
                "o/c.txt",
                "o/r.json",
                "x",
                "x/r.json"
            ]
        );
    }

    #[tokio::test]
    async fn the_store_gets_every_file_then_the_receipts_or_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = proctor_store::FsStore::new(root.path());
        let files = vec![
            planned("/artifacts/o/outputs/a.txt", b"a"),
            planned("/artifacts/o/outputs.json", b"[]"),
        ];
        let receipts = [
            "/artifacts/o/receipt.json",
            "/artifacts/execution/e/receipt.json",
        ];
        let written = layout(files.clone(), &receipts).unwrap();
        let probe = store.clone();
        let seen = write_evidence_to_store(&store, written, move || {
            // The receipt is made once every other file is stored.
            Ok((b"r".to_vec(), probe.file_path(&files[0].path).is_file()))
        })
        .await
        .unwrap();
        assert!(seen);
        assert_eq!(
            listing(root.path()),
            [
                "execution",
                "execution/e",
                "execution/e/receipt.json",
                "o",
                "o/outputs",
                "o/outputs.json",
                "o/outputs/a.txt",
                "o/receipt.json",
            ]
        );

        let fresh = tempfile::tempdir().unwrap();
        let store = proctor_store::FsStore::new(fresh.path());
        let refused = layout(vec![planned("/artifacts/p/outputs/a.txt", b"a")], &receipts).unwrap();
        let clock = || Err(CanonError::new(ErrorCode::Internal, "no clock"));
        let err = write_evidence_to_store::<()>(&store, refused, clock)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Internal);
        let everything = WorldPath::parse("/artifacts/").unwrap();
        assert!(store.list(&everything).await.unwrap().is_empty());
    }

    #[test]
    fn a_failure_midway_removes_what_was_written() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("o/blocked")).unwrap();
        let files = vec![
            planned("/artifacts/o/new/a.txt", b"a"),
            planned("/artifacts/o/top.txt", b"t"),
        ];
        let blocked = layout(files.clone(), &["/artifacts/o/blocked"]).unwrap();
        let err = write_evidence(root.path(), blocked, receipt(b"r")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::OutputWrite);
        assert_eq!(listing(root.path()), ["o", "o/blocked"]);

        let refused = layout(files, &["/artifacts/o/r.json"]).unwrap();
        let clock = || Err(CanonError::new(ErrorCode::Internal, "no clock"));
        let err = write_evidence::<()>(root.path(), refused, clock).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Internal);
        assert_eq!(listing(root.path()), ["o", "o/blocked"]);
    }

    #[test]
    fn layout_refuses_conflicts_and_drops_exact_repeats() {
        let same = layout(
            vec![planned("/artifacts/a", b"1"), planned("/artifacts/a", b"1")],
            &["/artifacts/r", "/artifacts/r"],
        )
        .unwrap();
        assert_eq!((same.files.len(), same.receipt_paths.len()), (1, 1));
        for (files, receipts) in [
            (
                vec![planned("/artifacts/a", b"1"), planned("/artifacts/a", b"2")],
                &[][..],
            ),
            (
                vec![
                    planned("/artifacts/a", b"1"),
                    planned("/artifacts/a/b", b"2"),
                ],
                &[],
            ),
            (vec![planned("/streams/s", b"1")], &[]),
            (vec![planned("/artifacts/r", b"")], &["/artifacts/r"]),
            (vec![planned("/artifacts/r/x", b"")], &["/artifacts/r"]),
            (vec![], &["/streams/r"]),
        ] {
            let err = layout(files, receipts).unwrap_err();
            assert_eq!(err.code(), ErrorCode::BadPath, "{receipts:?}");
        }
    }
}
