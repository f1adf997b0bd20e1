//! The server's access token: 32 random bytes, hex-encoded, kept in
//! `{state_dir}/serve-token` with mode 0600. Created on the first start (and shown once
//! then), replaced by [`rotate_token`]. A running server reads the file again when it
//! changes, so a rotation takes effect without a restart and the old token stops working.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use proctor_contract::{CanonError, ErrorCode};

/// The token file's name in the project's state directory.
pub const TOKEN_FILE_NAME: &str = "serve-token";

/// The token file's permission bits: the owner alone reads and writes it.
const TOKEN_MODE: u32 = 0o600;

/// Replaces the token in `state_dir` with a fresh one and returns it. A server using the
/// file accepts only the new token from its next request on.
pub fn rotate_token(state_dir: &Path) -> Result<String, CanonError> {
    let path = state_dir.join(TOKEN_FILE_NAME);
    let token = fresh_token()?;
    write_token(&path, &token)?;
    Ok(token)
}

/// The token file a server checks requests against.
#[derive(Debug)]
pub(crate) struct TokenFile {
    path: PathBuf,
    /// The token and the file's modification time when it was read.
    current: Mutex<(String, Option<SystemTime>)>,
}

impl TokenFile {
    /// The token file in `state_dir`, created (with a fresh token, returned beside it)
    /// when absent. A file that is not the owner's alone is refused.
    pub(crate) fn load_or_create(
        state_dir: &Path,
    ) -> Result<(TokenFile, Option<String>), CanonError> {
        let path = state_dir.join(TOKEN_FILE_NAME);
        let created = match fs::symlink_metadata(&path) {
            Ok(_) => None,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(state_dir).map_err(|e| token_error(state_dir, &e))?;
                let token = fresh_token()?;
                write_token(&path, &token)?;
                Some(token)
            }
            Err(error) => return Err(token_error(&path, &error)),
        };
        let current = read_token(&path)?;
        Ok((
            TokenFile {
                path,
                current: Mutex::new(current),
            },
            created,
        ))
    }

    /// Where the token is kept.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `presented` is the current token, compared in constant time. The file is
    /// read again when its modification time changed; a file that became unreadable
    /// refuses every token.
    pub(crate) fn accepts(&self, presented: &str) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let modified = fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified.is_none() {
            return false;
        }
        if modified != current.1 {
            match read_token(&self.path) {
                Ok(fresh) => *current = fresh,
                Err(error) => {
                    tracing::error!(event = "serve.token_unreadable", error = %error);
                    return false;
                }
            }
        }
        // blake3's `Hash` compares in constant time.
        blake3::hash(presented.as_bytes()) == blake3::hash(current.0.as_bytes())
    }
}

fn fresh_token() -> Result<String, CanonError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        CanonError::new(ErrorCode::Serve, format!("no randomness for a token: {e}"))
    })?;
    Ok(hex::encode(bytes))
}

fn write_token(path: &Path, token: &str) -> Result<(), CanonError> {
    proctor_fs::write_atomically(path, format!("{token}\n").as_bytes(), Some(TOKEN_MODE))
        .map_err(|e| token_error(path, &e))
}

/// The token in `path` and the file's modification time; refused unless it is a regular
/// file readable by its owner alone.
fn read_token(path: &Path) -> Result<(String, Option<SystemTime>), CanonError> {
    let metadata = fs::symlink_metadata(path).map_err(|e| token_error(path, &e))?;
    if !metadata.is_file() {
        return Err(CanonError::new(
            ErrorCode::Serve,
            format!("token file `{}` is not a regular file", path.display()),
        ));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(CanonError::new(
            ErrorCode::Serve,
            format!(
                "token file `{}` is readable by others (mode {:o}); `chmod 600` it or rotate the token",
                path.display(),
                metadata.permissions().mode() & 0o777
            ),
        ));
    }
    let text = fs::read_to_string(path).map_err(|e| token_error(path, &e))?;
    let token = text.trim().to_owned();
    if token.len() < 32 {
        return Err(CanonError::new(
            ErrorCode::Serve,
            format!("token file `{}` holds no token; rotate it", path.display()),
        ));
    }
    Ok((token, metadata.modified().ok()))
}

fn token_error(path: &Path, error: &io::Error) -> CanonError {
    CanonError::new(
        ErrorCode::Serve,
        format!("token file `{}`: {error}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_start_creates_an_owner_only_token_shown_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".proctor");
        let (file, shown) = TokenFile::load_or_create(&state).unwrap();
        let token = shown.expect("created on first start");
        assert_eq!(token.len(), 64);
        let mode = fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(file.accepts(&token));
        assert!(!file.accepts("wrong"));
        assert!(!file.accepts(""));
        let (again, shown) = TokenFile::load_or_create(&state).unwrap();
        assert_eq!(shown, None, "an existing token is never shown again");
        assert!(again.accepts(&token));
    }

    #[test]
    fn a_rotation_takes_effect_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (file, shown) = TokenFile::load_or_create(dir.path()).unwrap();
        let old = shown.unwrap();
        assert!(file.accepts(&old));
        // Modification times can be coarse: make the change visible.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let new = rotate_token(dir.path()).unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(file.path())
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_ne!(old, new);
        assert!(file.accepts(&new));
        assert!(!file.accepts(&old));
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = TokenFile::load_or_create(dir.path()).unwrap();
        fs::set_permissions(file.path(), fs::Permissions::from_mode(0o644)).unwrap();
        let error = TokenFile::load_or_create(dir.path()).unwrap_err();
        assert_eq!(error.code(), ErrorCode::Serve);
        assert!(error.message().contains("chmod 600"), "{error}");
    }
}
