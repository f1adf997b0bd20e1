//! The reader a provider gets for its run's input artifacts: it hands over an artifact's
//! bytes only once they match the content id its inputs name, and remembers what it handed
//! over for the receipt's `artifacts_read`.
//!
//! Only artifacts the run's inputs name can be read (a provider cannot make up a
//! `$artifact` object to reach other files), never through a symbolic link, and a file that
//! is not a regular file is refused. The bytes are hashed as they are read, so a file
//! changed after the orchestrator stored it — or swapped while it is read — is refused with
//! `ERR_ARTIFACT_MISMATCH`, never used.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use proctor_contract::{ArtifactRead, ArtifactRef, CanonError, CidHasher, ErrorCode};

use crate::artifacts::fs_path;

/// The chunk the reader hashes by.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// One run's input artifacts and what was read of them.
#[derive(Debug, Default)]
pub(crate) struct ArtifactReader {
    root: PathBuf,
    inputs: BTreeSet<ArtifactRef>,
    reads: Mutex<BTreeSet<ArtifactRead>>,
}

impl ArtifactReader {
    /// A reader of `inputs`, the artifacts the run's inputs name, in the directory `root`
    /// that backs world `/artifacts/`.
    pub(crate) fn new(root: PathBuf, inputs: Vec<ArtifactRef>) -> ArtifactReader {
        ArtifactReader {
            root,
            inputs: inputs.into_iter().collect(),
            reads: Mutex::default(),
        }
    }

    /// The bytes of `artifact`, checked against its content id: `ERR_INPUTS` for an artifact
    /// the run's inputs do not name, `ERR_NOT_FOUND` for a missing or unreadable file (or a
    /// link, or not a regular file), `ERR_ARTIFACT_MISMATCH` for other bytes.
    pub(crate) fn read(&self, artifact: &ArtifactRef) -> Result<Vec<u8>, CanonError> {
        let path = &artifact.path;
        if !self.inputs.contains(artifact) {
            return Err(CanonError::new(
                ErrorCode::Inputs,
                format!("`{path}` is not an input artifact of this run"),
            ));
        }
        let unreadable = |error: io::Error| {
            CanonError::new(
                ErrorCode::NotFound,
                format!("input artifact `{path}`: {error}"),
            )
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(fs_path(&self.root, path))
            .map_err(unreadable)?;
        if !file.metadata().map_err(unreadable)?.is_file() {
            return Err(unreadable(io::Error::other("not a regular file")));
        }
        let mut bytes = Vec::new();
        let mut hasher = CidHasher::default();
        let mut reader = file;
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let read = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(unreadable(error)),
            };
            hasher.update(&chunk[..read]);
            bytes.extend_from_slice(&chunk[..read]);
        }
        let found = hasher.finish();
        if found != artifact.cid {
            return Err(CanonError::new(
                ErrorCode::ArtifactMismatch,
                format!(
                    "`{path}` is {found} ({} bytes); the inputs name {}",
                    hasher.len(),
                    artifact.cid
                ),
            ));
        }
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(artifact.read());
        Ok(bytes)
    }

    /// What was read so far, sorted by path, each once: the receipt's `artifacts_read`.
    pub(crate) fn reads(&self) -> Vec<ArtifactRead> {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use proctor_contract::{attachment_path, cid};

    use super::*;

    /// A reader over `root` with one stored artifact, `notes.txt` holding `bytes`.
    fn stored(root: &std::path::Path, bytes: &[u8]) -> (ArtifactReader, ArtifactRef) {
        let cid = cid(bytes);
        let artifact = ArtifactRef {
            path: attachment_path(&cid, "notes.txt").unwrap(),
            cid,
            mime: "text/plain".to_owned(),
        };
        let file = fs_path(root, &artifact.path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, bytes).unwrap();
        let reader = ArtifactReader::new(root.to_owned(), vec![artifact.clone()]);
        (reader, artifact)
    }

    #[test]
    fn matching_bytes_are_handed_over_and_recorded() {
        let root = tempfile::tempdir().unwrap();
        let (reader, artifact) = stored(root.path(), b"hello\n");
        assert!(reader.reads().is_empty());
        assert_eq!(reader.read(&artifact).unwrap(), b"hello\n");
        assert_eq!(reader.read(&artifact).unwrap(), b"hello\n");
        assert_eq!(reader.reads(), vec![artifact.read()]);
    }

    #[test]
    fn tampered_bytes_are_refused_and_not_recorded() {
        let root = tempfile::tempdir().unwrap();
        let (reader, artifact) = stored(root.path(), b"hello\n");
        std::fs::write(fs_path(root.path(), &artifact.path), b"jello\n").unwrap();
        let error = reader.read(&artifact).unwrap_err();
        assert_eq!(error.code(), ErrorCode::ArtifactMismatch);
        assert!(
            error
                .message()
                .starts_with("input artifact does not match its content id: `/artifacts/inputs/"),
            "{error}"
        );
        assert!(reader.reads().is_empty());
    }

    #[test]
    fn artifacts_outside_the_inputs_links_and_missing_files_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let (reader, artifact) = stored(root.path(), b"hello\n");
        let forged = ArtifactRef {
            mime: "text/csv".to_owned(),
            ..artifact.clone()
        };
        assert_eq!(reader.read(&forged).unwrap_err().code(), ErrorCode::Inputs);

        let file = fs_path(root.path(), &artifact.path);
        let moved = root.path().join("elsewhere");
        std::fs::rename(&file, &moved).unwrap();
        assert_eq!(
            reader.read(&artifact).unwrap_err().code(),
            ErrorCode::NotFound
        );
        symlink(&moved, &file).unwrap();
        assert_eq!(
            reader.read(&artifact).unwrap_err().code(),
            ErrorCode::NotFound
        );
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let error = reader.read(&artifact).unwrap_err();
        assert_eq!(error.code(), ErrorCode::NotFound, "{error}");
        assert!(reader.reads().is_empty());
    }
}
