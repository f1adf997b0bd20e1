//! Atomic file writes: the bytes go to a temporary file in the target's directory, the file
//! is flushed to disk, renamed over the target, and the directory is flushed too. A reader
//! sees the old file or the new one, never a part, and a crash after success keeps the new
//! one.
//!
//! Temporary names start with [`TEMP_FILE_PREFIX`], are opened with `O_CREAT | O_EXCL |
//! O_NOFOLLOW` (never through a link, never an existing file), and are removed when a write
//! is abandoned. Directories are the caller's: nothing here creates one.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// File names starting with this are writes in progress; listings skip them.
pub const TEMP_FILE_PREFIX: &str = ".proctor-tmp-";

/// Writes `bytes` to `path` atomically. With `mode`, the file gets exactly those permission
/// bits; without, those a new file gets (`0o666` less the umask).
pub fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    if let Some(mode) = mode {
        file.set_mode(mode)?;
    }
    file.commit()
}

/// A file being written to a temporary name beside its target, which replaces the target
/// on [`AtomicFile::commit`]. Dropped without a commit, it removes the temporary file and
/// leaves the target as it was.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// Tells apart the temporary files of concurrent writes within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Opens a new temporary file in the directory of `path`, which must exist.
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        if path.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` names no file", path.display()),
            ));
        }
        let dir = directory_of(path);
        loop {
            let temp = dir.join(format!(
                "{TEMP_FILE_PREFIX}{}-{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&temp);
            match opened {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file,
                        temp,
                        target: path.to_owned(),
                        committed: false,
                    });
                }
                // Another process with the same id (in another container) got there first.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Gives the file exactly the permission bits `mode`.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        self.file.set_permissions(Permissions::from_mode(mode))
    }

    /// Flushes the file to disk, renames it over the target and flushes the directory. An
    /// error while flushing the directory leaves the new file in place.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        File::open(directory_of(&self.target))?.sync_all()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the error that abandoned the write matters more.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The directory `path` is in; `.` for a bare file name.
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_a_new_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomically(&path, b"hello", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(names(dir.path()), ["a.txt"]);
    }

    #[test]
    fn replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["a.txt"]);
    }

    #[test]
    fn sets_the_mode_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let read_only = dir.path().join("read-only");
        write_atomically(&read_only, b"x", Some(0o444)).unwrap();
        assert_eq!(mode_of(&read_only), 0o444);
        let executable = dir.path().join("executable");
        write_atomically(&executable, b"x", Some(0o755)).unwrap();
        assert_eq!(mode_of(&executable), 0o755);
    }

    #[test]
    fn replaces_a_link_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"untouched").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        write_atomically(&link, b"new", None).unwrap();
        assert_eq!(fs::read(&elsewhere).unwrap(), b"untouched");
        assert!(fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(fs::read(&link).unwrap(), b"new");
    }

    #[test]
    fn streams_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("streamed");
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"one ").unwrap();
        file.write_all(b"two").unwrap();
        assert!(!path.exists(), "the target appears only on commit");
        let [temp] = names(dir.path()).try_into().unwrap();
        assert!(temp.starts_with(TEMP_FILE_PREFIX));
        file.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one two");
        assert_eq!(names(dir.path()), ["streamed"]);
    }

    #[test]
    fn dropping_without_commit_removes_the_temporary_file_and_keeps_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kept");
        fs::write(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"abandoned").unwrap();
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["kept"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("occupied");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        write_atomically(&path, b"x", None).unwrap_err();
        assert_eq!(names(dir.path()), ["occupied"]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = write_atomically(&dir.path().join("missing/a"), b"x", None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        let error = write_atomically(Path::new("/"), b"x", None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
