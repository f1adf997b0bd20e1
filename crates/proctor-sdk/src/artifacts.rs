//! Writing world paths onto the directory that backs `/artifacts/`: every file atomically
//! ([`proctor_fs::write_atomically`]), and all files or none.
//!
//! World path `/artifacts/x/y` is the file `{root}/x/y`, its canonical text taken verbatim.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, ErrorCode, Facet, WorldPath};

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

/// Checks that the files can all be written side by side: each under `/artifacts/`, no
/// path written twice with different bytes, no path both a file and a directory. Returns
/// the files with exact repeats removed.
pub(crate) fn check_layout(files: Vec<PlannedFile>) -> Result<Vec<PlannedFile>, CanonError> {
    let mut by_path: BTreeMap<WorldPath, Vec<u8>> = BTreeMap::new();
    for file in files {
        if file.path.facet() != Facet::Artifacts {
            return Err(CanonError::new(
                ErrorCode::BadPath,
                format!("`{}` is not under /artifacts/", file.path),
            ));
        }
        match by_path.get(&file.path) {
            Some(bytes) if *bytes != file.bytes => {
                return Err(CanonError::new(
                    ErrorCode::BadPath,
                    format!(
                        "`{}` would be written twice with different bytes",
                        file.path
                    ),
                ));
            }
            Some(_) => {}
            None => {
                by_path.insert(file.path, file.bytes);
            }
        }
    }
    let names: BTreeSet<&str> = by_path.keys().map(WorldPath::as_str).collect();
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
    Ok(by_path
        .into_iter()
        .map(|(path, bytes)| PlannedFile { path, bytes })
        .collect())
}

/// Writes every file under `root`, in order. On the first failure, removes what this call
/// wrote and the directories it created, and reports `ERR_OUTPUT_WRITE`.
pub(crate) fn write_all(root: &Path, files: &[PlannedFile]) -> Result<(), CanonError> {
    let mut journal = Journal::default();
    for file in files {
        if let Err(error) = write_one(root, file, &mut journal) {
            journal.roll_back();
            return Err(CanonError::new(
                ErrorCode::OutputWrite,
                format!("`{}`: {error}", file.path),
            ));
        }
    }
    Ok(())
}

/// What one [`write_all`] call has changed so far.
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

    #[test]
    fn writes_files_and_leaves_no_temp_files() {
        let root = tempfile::tempdir().unwrap();
        let files = [
            planned("/artifacts/o/a/b.txt", b"ab"),
            planned("/artifacts/o/c.txt", b"c"),
        ];
        write_all(root.path(), &files).unwrap();
        assert_eq!(fs::read(root.path().join("o/a/b.txt")).unwrap(), b"ab");
        assert_eq!(listing(root.path()), ["o", "o/a", "o/a/b.txt", "o/c.txt"]);
    }

    #[test]
    fn a_failure_midway_removes_what_was_written() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("o/blocked")).unwrap();
        let files = [
            planned("/artifacts/o/new/a.txt", b"a"),
            planned("/artifacts/o/top.txt", b"t"),
            planned("/artifacts/o/blocked", b"x"),
        ];
        let err = write_all(root.path(), &files).unwrap_err();
        assert_eq!(err.code(), ErrorCode::OutputWrite);
        assert_eq!(listing(root.path()), ["o", "o/blocked"]);
    }

    #[test]
    fn layout_refuses_conflicts_and_drops_exact_repeats() {
        let same = check_layout(vec![
            planned("/artifacts/a", b"1"),
            planned("/artifacts/a", b"1"),
        ]);
        assert_eq!(same.unwrap().len(), 1);
        for files in [
            vec![planned("/artifacts/a", b"1"), planned("/artifacts/a", b"2")],
            vec![
                planned("/artifacts/a", b"1"),
                planned("/artifacts/a/b", b"2"),
            ],
            vec![planned("/streams/s", b"1")],
        ] {
            assert_eq!(check_layout(files).unwrap_err().code(), ErrorCode::BadPath);
        }
    }
}
