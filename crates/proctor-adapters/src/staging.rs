//! Staging: the only host directories a run's container may write, the input files it may
//! read, and the user it runs as.
//!
//! A [`Staging`] is one execution's fresh private directory (mode 0700) holding two
//! subdirectories that proctor creates and hands to the container user: the container sees
//! one writable at its expanded write prefix, the other at
//! `/artifacts/execution/{execution_id}/`. Besides them it sees the run's input artifacts
//! ([`InputFile`]), each a read-only file at its world path. Nothing else of the World is
//! mounted, so a processor cannot touch another execution's evidence; the caller checks the
//! staged files and commits them to the World's store once the envelope is back. The whole
//! directory is removed when the [`Staging`] is dropped; the input files are the World's and
//! stay.
//!
//! Proctor changes the owner only of directories it created itself: the staging
//! subdirectories and the socket directory.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use proctor_contract::{CanonError, ErrorCode, WorldPath};

/// The user processors run as when proctor runs as root.
const UNPRIVILEGED_ID: u32 = 65532;
/// Mode of every directory proctor creates for a run: its owner only.
pub(crate) const PRIVATE_MODE: u32 = 0o700;

/// An input artifact a run's container sees, read-only, at its world path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Its world path, where the container sees it.
    pub path: WorldPath,
    /// The host file that backs it in the World's store.
    pub source: PathBuf,
}

/// One execution's staging area on the host; removed on drop.
///
/// Create it before the [`Invocation`](crate::Invocation) and keep it until its files are
/// checked and committed.
#[derive(Debug)]
pub struct Staging {
    execution_id: String,
    root: PathBuf,
    prefix_dir: PathBuf,
    execution_dir: PathBuf,
    input_files: Vec<InputFile>,
}

impl Staging {
    /// A staging area for `execution_id` in the system's temporary directory.
    pub fn create(execution_id: &str) -> Result<Staging, CanonError> {
        Staging::create_in(&std::env::temp_dir(), execution_id)
    }

    /// A staging area for `execution_id` in `parent`, which must exist and is left as it
    /// is. The id must be one canonical world-path segment, as it names
    /// `/artifacts/execution/{execution_id}/`.
    pub fn create_in(parent: &Path, execution_id: &str) -> Result<Staging, CanonError> {
        let receipt = WorldPath::execution_receipt(execution_id)?;
        if execution_id.contains('/')
            || receipt.as_str() != format!("/artifacts/execution/{execution_id}/receipt.json")
        {
            return Err(CanonError::new(
                ErrorCode::BadPath,
                format!("execution id `{execution_id}` is not one canonical path segment"),
            ));
        }
        let failed = |what: &str, error: std::io::Error| {
            CanonError::new(
                ErrorCode::AdapterInvocation,
                format!(
                    "cannot create the staging area in {}: {what}: {error}",
                    parent.display()
                ),
            )
        };
        let dir = tempfile::Builder::new()
            .prefix("proctor-staging-")
            .permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))
            .tempdir_in(parent)
            .map_err(|error| failed("its directory", error))?;
        let user = container_user()?;
        let prefix_dir = dir.path().join("prefix");
        let execution_dir = dir.path().join("execution");
        for subdir in [&prefix_dir, &execution_dir] {
            std::fs::DirBuilder::new()
                .mode(PRIVATE_MODE)
                .create(subdir)
                .and_then(|()| hand_over(subdir, user))
                .map_err(|error| failed(&subdir.display().to_string(), error))?;
        }
        Ok(Staging {
            execution_id: execution_id.to_owned(),
            root: dir.keep(),
            prefix_dir,
            execution_dir,
            input_files: Vec::new(),
        })
    }

    /// This area with `input_files`, the run's input artifacts, which its container sees
    /// read-only at their world paths. A local run with input files always gets a container
    /// of its own, never a warm one, whose `/artifacts` would outlive the run.
    pub fn with_input_files(mut self, input_files: Vec<InputFile>) -> Staging {
        self.input_files = input_files;
        self
    }

    /// The run's input artifacts.
    pub fn input_files(&self) -> &[InputFile] {
        &self.input_files
    }

    /// The execution this area stages.
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// Host directory the container sees at its expanded write prefix: outputs, index and
    /// receipt.
    pub fn prefix_dir(&self) -> &Path {
        &self.prefix_dir
    }

    /// Host directory the container sees at `/artifacts/execution/{execution_id}/`: the
    /// second receipt copy.
    pub fn execution_dir(&self) -> &Path {
        &self.execution_dir
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        remove_private_dir(&self.root);
    }
}

/// Removes a directory proctor created for a container, and everything the container left
/// in it, never following a link. Best effort: a failure is logged.
pub(crate) fn remove_private_dir(root: &Path) {
    if std::fs::remove_dir_all(root).is_ok() {
        return;
    }
    // A processor running as proctor's own user may leave directories it cannot write;
    // as their owner, proctor gives itself write access back and tries once more.
    restore_owner_access(root);
    if let Err(error) = std::fs::remove_dir_all(root) {
        tracing::warn!(
            event = "staging.remove_failed",
            path = %root.display(),
            error = %error,
        );
    }
}

/// Adds owner read, write and search permission to `root` and every directory below it,
/// never following a link. Best effort: what cannot be changed is skipped.
fn restore_owner_access(root: &Path) {
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !metadata.is_dir() {
            continue;
        }
        let mode = metadata.mode() | PRIVATE_MODE;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            pending.extend(entries.filter_map(Result::ok).map(|entry| entry.path()));
        }
    }
}

/// The `uid:gid` processors run as: [`UNPRIVILEGED_ID`] when proctor runs as root, else
/// proctor's own effective ids (so both sides can read and remove what it writes).
pub(crate) fn container_user() -> Result<(u32, u32), CanonError> {
    let (uid, gid) = effective_ids()?;
    Ok(if uid == 0 {
        (UNPRIVILEGED_ID, UNPRIVILEGED_ID)
    } else {
        (uid, gid)
    })
}

/// Gives a directory proctor just created to the container user (a change only when
/// proctor runs as root; otherwise both are the same user).
pub(crate) fn hand_over(dir: &Path, user: (u32, u32)) -> std::io::Result<()> {
    if std::fs::symlink_metadata(dir)?.uid() == user.0 {
        return Ok(());
    }
    std::os::unix::fs::chown(dir, Some(user.0), Some(user.1))
}

/// This process's effective uid and gid: the owner of `/proc/self` (procfs gives each
/// process directory its effective ids).
fn effective_ids() -> Result<(u32, u32), CanonError> {
    let metadata = std::fs::metadata("/proc/self").map_err(|error| {
        CanonError::new(
            ErrorCode::AdapterInvocation,
            format!("cannot read /proc/self for the user id: {error}"),
        )
    })?;
    Ok((metadata.uid(), metadata.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_runs_processors_unprivileged() {
        let (uid, gid) = effective_ids().unwrap();
        let user = container_user().unwrap();
        if uid == 0 {
            assert_eq!(user, (UNPRIVILEGED_ID, UNPRIVILEGED_ID));
        } else {
            assert_eq!(user, (uid, gid));
        }
    }

    #[test]
    fn staging_is_private_handed_over_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o751)).unwrap();
        let before = std::fs::metadata(parent.path()).unwrap();
        let staging = Staging::create_in(parent.path(), "e-1").unwrap();
        assert_eq!(staging.execution_id(), "e-1");
        let root = staging.prefix_dir().parent().unwrap().to_owned();
        assert_eq!(root.parent(), Some(parent.path()));
        assert_eq!(staging.execution_dir().parent(), Some(root.as_path()));
        let (uid, _) = effective_ids().unwrap();
        let root_metadata = std::fs::metadata(&root).unwrap();
        assert_eq!(root_metadata.mode() & 0o7777, PRIVATE_MODE);
        assert_eq!(root_metadata.uid(), uid);
        let user = container_user().unwrap();
        for dir in [staging.prefix_dir(), staging.execution_dir()] {
            let metadata = std::fs::metadata(dir).unwrap();
            assert_eq!(metadata.mode() & 0o7777, PRIVATE_MODE, "{}", dir.display());
            assert_eq!((metadata.uid(), metadata.gid()), user, "{}", dir.display());
        }
        // What a processor may leave behind: a directory without write permission, and a
        // link out of the area.
        let locked = staging.prefix_dir().join("outputs/locked");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::write(locked.join("file"), b"x").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        let outside = parent.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, staging.execution_dir().join("link")).unwrap();
        drop(staging);
        assert!(!root.exists(), "the staging area is left");
        assert!(outside.is_dir(), "removal followed a link");
        let after = std::fs::metadata(parent.path()).unwrap();
        assert_eq!(
            (after.uid(), after.gid(), after.mode()),
            (before.uid(), before.gid(), before.mode()),
            "the parent changed"
        );
    }

    #[test]
    fn execution_ids_must_be_one_canonical_segment() {
        let parent = tempfile::tempdir().unwrap();
        for bad in ["", "a/b", "..", "100%", "a\nb"] {
            let error = Staging::create_in(parent.path(), bad).unwrap_err();
            assert!(
                matches!(
                    error.code(),
                    ErrorCode::BadPath | ErrorCode::DotSegments | ErrorCode::PercentDecode
                ),
                "{bad:?}: {error}"
            );
        }
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_parent_is_an_adapter_invocation_error() {
        let parent = tempfile::tempdir().unwrap();
        let error = Staging::create_in(&parent.path().join("absent"), "e-1").unwrap_err();
        assert_eq!(error.code(), ErrorCode::AdapterInvocation);
        assert!(error.message().contains("staging area"), "{error}");
    }
}
