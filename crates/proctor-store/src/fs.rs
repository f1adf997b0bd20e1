//! The local filesystem store: world path `/artifacts/x/y` is the file `{root}/x/y`, the
//! layout processors see under `/artifacts`.
//!
//! Writes are atomic ([`proctor_fs::AtomicFile`]), so a reader never sees a part, and
//! listings skip the writes in progress. Nothing below the root is followed through a
//! symbolic link: a container that writes the root cannot make the host read or write
//! elsewhere.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};
use proctor_contract::{SelectorKind, WorldPath};
use proctor_fs::AtomicFile;
use tokio_util::io::ReaderStream;

use crate::store::{canonical_from_relative, require};
use crate::{ArtifactStore, ByteStream, ObjectInfo, StoreError};

/// An artifact store in a local directory that backs world `/artifacts/`.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store rooted at `root` (made absolute against the current directory). The
    /// directory is created by the first write.
    pub fn new(root: impl Into<PathBuf>) -> FsStore {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        FsStore { root }
    }

    /// The directory that backs `/artifacts/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that backs the exact path `path` (`{root}/x/y` for `/artifacts/x/y`),
    /// whether or not it exists.
    pub fn file_path(&self, path: &WorldPath) -> PathBuf {
        self.root.join(Self::below_root(path))
    }

    /// The path below the root (`x/y` for `/artifacts/x/y`, empty for `/artifacts/`).
    fn below_root(path: &WorldPath) -> &str {
        path.as_str()
            .strip_prefix("/artifacts/")
            .unwrap_or_default()
    }

    /// Runs blocking filesystem work off the async runtime.
    async fn blocking<T: Send + 'static>(
        operation: &'static str,
        path: &WorldPath,
        work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|join| StoreError::Io {
                operation,
                path: path.to_string(),
                source: io::Error::other(join),
            })?
    }
}

/// What a path below the root turned out to be, walking it without following links.
enum Entry {
    /// Nothing there (or a parent is missing or a regular file).
    Missing,
    /// A regular file of this size.
    File(u64),
    /// A directory.
    Dir,
}

/// Looks at `{root}/{below}` one component at a time, refusing symbolic links and special
/// files anywhere below the root.
fn inspect(root: &Path, below: &str, world: &WorldPath) -> Result<Entry, StoreError> {
    let mut current = root.to_path_buf();
    let segments: Vec<&str> = below.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return match fs::metadata(root) {
            Ok(meta) if meta.is_dir() => Ok(Entry::Dir),
            Ok(_) => Err(StoreError::NotRegular {
                path: world.clone(),
            }),
            Err(e) if is_missing(&e) => Ok(Entry::Missing),
            Err(e) => Err(io_error("stat", world, e)),
        };
    }
    for (i, segment) in segments.iter().enumerate() {
        current.push(segment);
        let meta = match fs::symlink_metadata(&current) {
            Ok(meta) => meta,
            Err(e) if is_missing(&e) => return Ok(Entry::Missing),
            Err(e) => return Err(io_error("stat", world, e)),
        };
        let last = i + 1 == segments.len();
        let kind = meta.file_type();
        if kind.is_dir() {
            if last {
                return Ok(Entry::Dir);
            }
        } else if kind.is_file() {
            return Ok(if last {
                Entry::File(meta.len())
            } else {
                Entry::Missing
            });
        } else {
            return Err(StoreError::NotRegular {
                path: world.clone(),
            });
        }
    }
    Ok(Entry::Missing)
}

fn is_missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn io_error(operation: &'static str, path: &WorldPath, source: io::Error) -> StoreError {
    StoreError::Io {
        operation,
        path: path.to_string(),
        source,
    }
}

/// The mode of every file the store writes.
const READ_ONLY_MODE: u32 = 0o444;

/// How many bytes of a streamed put are gathered before they are written.
const STREAM_WRITE_BYTES: usize = 1024 * 1024;

/// The file that will back `world` once written: refused when a parent is a file.
fn put_target(root: &Path, world: &WorldPath) -> Result<PathBuf, StoreError> {
    let below = FsStore::below_root(world);
    let parent = below.rsplit_once('/').map_or("", |(dir, _)| dir);
    if let Entry::File(_) = inspect(root, parent, world)? {
        return Err(io_error(
            "put",
            world,
            io::Error::other("a parent is a file"),
        ));
    }
    Ok(root.join(below))
}

/// Opens the atomic write of `target`, creating its directory.
fn create_atomically(target: &Path) -> io::Result<AtomicFile> {
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::other("target has no parent"))?;
    fs::create_dir_all(dir)?;
    AtomicFile::create(target)
}

/// Makes the written file read-only and puts it in place. Committed evidence is read-only:
/// changing it is a new write, never an edit.
fn commit_read_only(file: AtomicFile) -> io::Result<()> {
    file.set_mode(READ_ONLY_MODE)?;
    file.commit()
}

/// Writes `bytes` to `target` atomically and read-only, creating its directory.
fn write_read_only(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_atomically(target)?;
    file.write_all(bytes)?;
    commit_read_only(file)
}

/// Collects every regular file below `dir` (whose world prefix is `prefix`), skipping
/// links, special files, writes in progress and names that are not canonical.
fn walk(dir: &Path, prefix: &str, found: &mut Vec<ObjectInfo>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let kind = entry.file_type()?;
        let relative = format!("{prefix}{name}");
        if kind.is_dir() {
            walk(&entry.path(), &format!("{relative}/"), found)?;
        } else if kind.is_file()
            && !name.starts_with(proctor_fs::TEMP_FILE_PREFIX)
            && let Some(path) = canonical_from_relative(&relative)
        {
            found.push(ObjectInfo {
                path,
                size_bytes: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl ArtifactStore for FsStore {
    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, path: &WorldPath, bytes: Bytes) -> Result<(), StoreError> {
        require(path, SelectorKind::Exact)?;
        let (root, world) = (self.root.clone(), path.clone());
        let size_bytes = bytes.len();
        Self::blocking("put", path, move || {
            let target = put_target(&root, &world)?;
            write_read_only(&target, &bytes).map_err(|e| io_error("put", &world, e))
        })
        .await?;
        tracing::debug!(store = %self.location(), path = %path, size_bytes, "store.put");
        Ok(())
    }

    async fn put_stream(&self, path: &WorldPath, mut stream: ByteStream) -> Result<(), StoreError> {
        require(path, SelectorKind::Exact)?;
        let (root, world) = (self.root.clone(), path.clone());
        // Dropped on any error below, the file removes its temporary name.
        let mut file = Self::blocking("put", path, move || {
            let target = put_target(&root, &world)?;
            create_atomically(&target).map_err(|e| io_error("put", &world, e))
        })
        .await?;
        let mut size_bytes = 0u64;
        let mut pending = BytesMut::new();
        loop {
            let next = stream.next().await.transpose()?;
            if let Some(chunk) = &next {
                size_bytes += chunk.len() as u64;
                pending.extend_from_slice(chunk);
                if pending.len() < STREAM_WRITE_BYTES {
                    continue;
                }
            }
            let part = pending.split().freeze();
            let world = path.clone();
            file = Self::blocking("put", path, move || {
                file.write_all(&part)
                    .map(|()| file)
                    .map_err(|e| io_error("put", &world, e))
            })
            .await?;
            if next.is_none() {
                break;
            }
        }
        let world = path.clone();
        Self::blocking("put", path, move || {
            commit_read_only(file).map_err(|e| io_error("put", &world, e))
        })
        .await?;
        tracing::debug!(store = %self.location(), path = %path, size_bytes, "store.put");
        Ok(())
    }

    async fn get(&self, path: &WorldPath) -> Result<Bytes, StoreError> {
        require(path, SelectorKind::Exact)?;
        let (root, world) = (self.root.clone(), path.clone());
        Self::blocking("get", path, move || {
            let below = Self::below_root(&world);
            match inspect(&root, below, &world)? {
                Entry::File(_) => match fs::read(root.join(below)) {
                    Ok(bytes) => Ok(Bytes::from(bytes)),
                    Err(e) if is_missing(&e) => Err(StoreError::NotFound { path: world }),
                    Err(e) => Err(io_error("get", &world, e)),
                },
                Entry::Missing | Entry::Dir => Err(StoreError::NotFound { path: world }),
            }
        })
        .await
    }

    async fn get_stream(&self, path: &WorldPath) -> Result<ByteStream, StoreError> {
        require(path, SelectorKind::Exact)?;
        let (root, world) = (self.root.clone(), path.clone());
        let file = Self::blocking("get", path, move || {
            let below = Self::below_root(&world);
            match inspect(&root, below, &world)? {
                Entry::File(_) => OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(root.join(below))
                    .map_err(|e| match is_missing(&e) {
                        true => StoreError::NotFound { path: world },
                        false => io_error("get", &world, e),
                    }),
                Entry::Missing | Entry::Dir => Err(StoreError::NotFound { path: world }),
            }
        })
        .await?;
        let world = path.clone();
        Ok(ReaderStream::new(tokio::fs::File::from_std(file))
            .map_err(move |e| io_error("get", &world, e))
            .boxed())
    }

    async fn head(&self, path: &WorldPath) -> Result<ObjectInfo, StoreError> {
        require(path, SelectorKind::Exact)?;
        let (root, world) = (self.root.clone(), path.clone());
        Self::blocking("head", path, move || {
            match inspect(&root, Self::below_root(&world), &world)? {
                Entry::File(size_bytes) => Ok(ObjectInfo {
                    path: world,
                    size_bytes,
                }),
                Entry::Missing | Entry::Dir => Err(StoreError::NotFound { path: world }),
            }
        })
        .await
    }

    async fn list(&self, prefix: &WorldPath) -> Result<Vec<ObjectInfo>, StoreError> {
        require(prefix, SelectorKind::Prefix)?;
        let (root, world) = (self.root.clone(), prefix.clone());
        Self::blocking("list", prefix, move || {
            let below = Self::below_root(&world);
            let mut found = Vec::new();
            if let Entry::Dir = inspect(&root, below, &world)? {
                walk(&root.join(below), world.relative(), &mut found)
                    .map_err(|e| io_error("list", &world, e))?;
            }
            found.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(found)
        })
        .await
    }

    async fn delete(&self, path: &WorldPath) -> Result<(), StoreError> {
        require(path, SelectorKind::Exact)?;
        let (root, world) = (self.root.clone(), path.clone());
        Self::blocking("delete", path, move || {
            let below = Self::below_root(&world);
            match inspect(&root, below, &world)? {
                Entry::File(_) => match fs::remove_file(root.join(below)) {
                    Err(e) if !is_missing(&e) => Err(io_error("delete", &world, e)),
                    _ => Ok(()),
                },
                Entry::Missing | Entry::Dir => Ok(()),
            }
        })
        .await?;
        tracing::debug!(store = %self.location(), path = %path, "store.delete");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_world_paths_below_the_root() {
        let path = WorldPath::parse("/artifacts/x/y").unwrap();
        assert_eq!(FsStore::below_root(&path), "x/y");
        assert_eq!(
            FsStore::below_root(&WorldPath::parse("/artifacts/").unwrap()),
            ""
        );
    }

    #[test]
    fn relative_roots_become_absolute() {
        let store = FsStore::new("some/dir");
        assert!(store.root().is_absolute());
        assert!(store.location().starts_with("file:///"));
        assert!(store.location().ends_with("/some/dir"));
    }
}
