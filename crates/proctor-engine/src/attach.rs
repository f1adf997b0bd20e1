//! Attachments and input artifacts: files a run reads, resolved before any container.
//!
//! A run's attachments (`--attach NAME=PATH`, a plan transition's `attach:`) are checked
//! against the `{"$attach": NAME}` references of its inputs — every reference names an
//! attachment, every attachment is referenced, names are unique — and only then stored:
//! each file is streamed into the World's store once, content-addressed, at
//! `/artifacts/inputs/{cid}/{file name}` (the same bytes under the same name are stored
//! once; a stored copy that no longer matches is written again). The file must be a regular
//! file (a link to one is followed; a directory, FIFO, socket or device is refused without
//! being read) of at most [`Limits::max_attachment_bytes`](crate::Limits). It is hashed
//! first, then streamed into the store from the same open file and hashed again as it goes:
//! a file that changes meanwhile is refused and nothing of it is stored. Its media type is
//! guessed from its file name's extension (`mime_guess`, the same answer whatever the
//! bytes, so a plan can check it before the file exists), `application/octet-stream` when
//! there is none.
//!
//! Every reference then becomes the artifact's `$artifact` object, so the inputs hash
//! covers its content id. Every other `$artifact` object of the inputs (a plan's
//! `{"$from": …, "as": "artifact"}`) must name an artifact the World's store holds with
//! those bytes. A failure is `ERR_INPUTS` (or `ERR_ARTIFACT_MISMATCH` for stored bytes that
//! do not match), before schema validation and before any ledger record or container. What
//! was stored stays: it is content-addressed and complete.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::BytesMut;
use futures_util::{StreamExt as _, TryStreamExt as _};
use proctor_adapters::InputFile;
use proctor_contract::{
    ArtifactRef, CanonError, CidHasher, ErrorCode, WorldPath, WritePrefix, attachment_path,
    check_attachment_name, check_attachment_references, input_artifacts, resolve_attachments,
};
use proctor_store::{ArtifactStore, ByteStream, FsStore, StoreError};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::Engine;

/// How many bytes of an attachment are read at a time.
const CHUNK_BYTES: usize = 1024 * 1024;

/// A file given to a run as an input, under the name its inputs refer to it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name `{"$attach": NAME}` refers to: 1-64 characters of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// The file, absolute or relative to the current directory.
    pub path: PathBuf,
}

impl FromStr for Attachment {
    type Err = String;

    /// `NAME=PATH`, split at the first `=`; the name is checked when the run starts.
    fn from_str(text: &str) -> Result<Attachment, String> {
        match text.split_once('=') {
            Some((name, path)) if !path.is_empty() => Ok(Attachment {
                name: name.to_owned(),
                path: PathBuf::from(path),
            }),
            _ => Err(format!("`{text}` is not NAME=PATH")),
        }
    }
}

fn invalid(detail: impl Into<String>) -> CanonError {
    CanonError::new(ErrorCode::Inputs, detail)
}

/// The media type of a file named `path`, by its extension.
pub fn attachment_mime(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_owned()
}

impl Engine {
    /// Stores each of `attachments` in the World's store, content-addressed (see the
    /// module documentation), and gives the `$artifact` reference of each by name. The
    /// names must be valid and unique; a file that is not a regular file, or is larger than
    /// the engine's `max_attachment_bytes`, is `ERR_INPUTS`.
    pub async fn store_attachments(
        &self,
        attachments: &[Attachment],
    ) -> Result<BTreeMap<String, ArtifactRef>, CanonError> {
        check_names(attachments)?;
        let max_bytes = self.config().limits.max_attachment_bytes;
        let mut stored = BTreeMap::new();
        for attachment in attachments {
            let artifact = store_attachment(self.store().as_ref(), attachment, max_bytes).await?;
            stored.insert(attachment.name.clone(), artifact);
        }
        Ok(stored)
    }
}

/// Valid names, each once.
fn check_names(attachments: &[Attachment]) -> Result<(), CanonError> {
    let mut seen = std::collections::BTreeSet::new();
    for attachment in attachments {
        check_attachment_name(&attachment.name)?;
        if !seen.insert(attachment.name.as_str()) {
            return Err(invalid(format!(
                "attachment `{}` is given twice",
                attachment.name
            )));
        }
    }
    Ok(())
}

/// A run's inputs with its attachments stored and resolved, and every input artifact they
/// name, sorted by path.
pub(crate) struct ResolvedInputs {
    /// The inputs, every `$attach` replaced by its `$artifact` object.
    pub(crate) inputs: Value,
    /// Every input artifact the inputs name.
    pub(crate) artifacts: Vec<ArtifactRef>,
}

/// Checks the references against `attachments`, stores them, rewrites the references and
/// checks every other input artifact against the World's store (see the module docs).
pub(crate) async fn resolve_inputs(
    engine: &Engine,
    attachments: &[Attachment],
    inputs: Value,
) -> Result<ResolvedInputs, CanonError> {
    check_names(attachments)?;
    check_attachment_references(&inputs, attachments.iter().map(|a| a.name.as_str()))?;
    let stored = engine.store_attachments(attachments).await?;
    let inputs = resolve_attachments(&inputs, &stored)?;
    let artifacts = input_artifacts(&inputs)?;
    for artifact in &artifacts {
        if !stored.values().any(|attached| attached == artifact) {
            check_stored(engine.store().as_ref(), artifact).await?;
        }
    }
    Ok(ResolvedInputs { inputs, artifacts })
}

/// An input artifact must lie apart from what the run writes: outside its write prefix and
/// its execution directory.
pub(crate) fn check_apart(
    artifacts: &[ArtifactRef],
    prefix: &WritePrefix,
    execution_id: &str,
) -> Result<(), CanonError> {
    let execution_dir = format!("/artifacts/execution/{execution_id}/");
    match artifacts.iter().find(|artifact| {
        prefix.path().covers(&artifact.path) || artifact.path.as_str().starts_with(&execution_dir)
    }) {
        Some(artifact) => Err(invalid(format!(
            "input artifact `{}` lies where the run writes (`{prefix}` or `{execution_dir}`)",
            artifact.path
        ))),
        None => Ok(()),
    }
}

/// The host files behind `artifacts` in the filesystem World at `artifacts_root`, for the
/// local adapter to mount read-only.
pub(crate) fn input_files(artifacts_root: &Path, artifacts: &[ArtifactRef]) -> Vec<InputFile> {
    let world = FsStore::new(artifacts_root);
    artifacts
        .iter()
        .map(|artifact| InputFile {
            path: artifact.path.clone(),
            source: world.file_path(&artifact.path),
        })
        .collect()
}

/// Copies of `artifacts` fetched from the World's `store` into the directory `fetched`, for
/// the local adapter to mount read-only when the World is not a directory of this host (an
/// S3 store): each streamed to its own file and checked against its content id on the way
/// (`ERR_ARTIFACT_MISMATCH` otherwise).
pub(crate) async fn fetch_input_files(
    store: &dyn ArtifactStore,
    artifacts: &[ArtifactRef],
    fetched: &Path,
) -> Result<Vec<InputFile>, CanonError> {
    let mut files = Vec::with_capacity(artifacts.len());
    for (number, artifact) in artifacts.iter().enumerate() {
        let source = fetched.join(number.to_string());
        let unreadable = |why: String| {
            invalid(format!(
                "input artifact `{}` cannot be fetched from {}: {why}",
                artifact.path,
                store.location()
            ))
        };
        let mut stream = store
            .get_stream(&artifact.path)
            .await
            .map_err(|error| unreadable(error.to_string()))?;
        let mut file = tokio::fs::File::create(&source)
            .await
            .map_err(|error| unreadable(error.to_string()))?;
        let mut hasher = CidHasher::default();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|error| unreadable(error.to_string()))?
        {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|error| unreadable(error.to_string()))?;
        }
        file.flush()
            .await
            .map_err(|error| unreadable(error.to_string()))?;
        let found = hasher.finish();
        if found != artifact.cid {
            return Err(CanonError::new(
                ErrorCode::ArtifactMismatch,
                format!(
                    "`{}` is {found} in {}; the inputs name {}",
                    artifact.path,
                    store.location(),
                    artifact.cid
                ),
            ));
        }
        files.push(InputFile {
            path: artifact.path.clone(),
            source,
        });
    }
    Ok(files)
}

/// Stores one attachment once; see the module documentation.
async fn store_attachment(
    store: &dyn ArtifactStore,
    attachment: &Attachment,
    max_bytes: u64,
) -> Result<ArtifactRef, CanonError> {
    let origin = format!(
        "attachment `{}` (`{}`)",
        attachment.name,
        attachment.path.display()
    );
    let file_name = attachment
        .path
        .file_name()
        .and_then(OsStr::to_str)
        .ok_or_else(|| invalid(format!("{origin} has no UTF-8 file name")))?;
    let (path, reading) = (attachment.path.clone(), origin.clone());
    let (file, cid, size) =
        tokio::task::spawn_blocking(move || hash_file(&path, &reading, max_bytes))
            .await
            .map_err(|error| {
                CanonError::new(ErrorCode::Internal, format!("{origin}: {error}"))
            })??;
    let artifact = ArtifactRef {
        path: attachment_path(&cid, file_name)
            .map_err(|e| invalid(format!("{origin}: {}", e.detail())))?,
        cid,
        mime: attachment_mime(&attachment.path),
    };
    if streamed_cid(store, &artifact.path).await.as_deref() == Some(artifact.cid.as_str()) {
        tracing::debug!(event = "attach.stored_before", path = %artifact.path);
        return Ok(artifact);
    }
    let changed = Arc::new(AtomicBool::new(false));
    let stream = verified_stream(file, &artifact, size, Arc::clone(&changed));
    match store.put_stream(&artifact.path, stream).await {
        Ok(()) => {
            tracing::info!(
                event = "attach.stored",
                name = %attachment.name,
                path = %artifact.path,
                size_bytes = size,
            );
            Ok(artifact)
        }
        Err(_) if changed.load(Ordering::SeqCst) => Err(invalid(format!(
            "{origin} changed while it was stored; attach it again once it is complete"
        ))),
        Err(error) => Err(error.into()),
    }
}

/// Opens `path` (following a link), refuses anything but a regular file of at most
/// `max_bytes`, and hashes it; gives the open file, rewound, its content id and size.
fn hash_file(path: &Path, origin: &str, max_bytes: u64) -> Result<(File, String, u64), CanonError> {
    let unreadable = |error: std::io::Error| invalid(format!("cannot read {origin}: {error}"));
    let too_large = |size: u64| {
        invalid(format!(
            "{origin} is {size} bytes, larger than {max_bytes} bytes; raise \
             --max-attachment-bytes (PROCTOR_MAX_ATTACHMENT_BYTES) to allow it"
        ))
    };
    // Non-blocking, so that opening a FIFO does not wait for a writer.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(invalid(format!(
            "{origin} is not a regular file (a directory, FIFO, socket or device)"
        )));
    }
    if metadata.len() > max_bytes {
        return Err(too_large(metadata.len()));
    }
    let mut hasher = CidHasher::default();
    let mut chunk = vec![0u8; CHUNK_BYTES];
    loop {
        let read = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(unreadable(error)),
        };
        hasher.update(&chunk[..read]);
        if hasher.len() > max_bytes {
            return Err(too_large(hasher.len()));
        }
    }
    file.rewind().map_err(unreadable)?;
    Ok((file, hasher.finish(), hasher.len()))
}

/// The bytes of `file` as a stream that fails at its end — setting `changed` — when they
/// are not `size` bytes with the artifact's content id, so the store never commits them.
fn verified_stream(
    file: File,
    artifact: &ArtifactRef,
    size: u64,
    changed: Arc<AtomicBool>,
) -> ByteStream {
    let (cid, path) = (artifact.cid.clone(), artifact.path.to_string());
    let state = (tokio::fs::File::from_std(file), CidHasher::default());
    futures_util::stream::try_unfold(state, move |(mut file, mut hasher)| {
        let (cid, path, changed) = (cid.clone(), path.clone(), Arc::clone(&changed));
        async move {
            let mut chunk = BytesMut::with_capacity(CHUNK_BYTES);
            let read = file
                .read_buf(&mut chunk)
                .await
                .map_err(|source| StoreError::Io {
                    operation: "attach",
                    path: path.clone(),
                    source,
                })?;
            if read == 0 {
                if hasher.finish() != cid || hasher.len() != size {
                    changed.store(true, Ordering::SeqCst);
                    return Err(StoreError::Io {
                        operation: "attach",
                        path,
                        source: std::io::Error::other("the file changed while it was stored"),
                    });
                }
                return Ok(None);
            }
            hasher.update(&chunk);
            if hasher.len() > size {
                changed.store(true, Ordering::SeqCst);
                return Err(StoreError::Io {
                    operation: "attach",
                    path,
                    source: std::io::Error::other("the file grew while it was stored"),
                });
            }
            Ok(Some((chunk.freeze(), (file, hasher))))
        }
    })
    .boxed()
}

/// The content id of the bytes stored at `path`, hashed as they stream; `None` when they
/// cannot be read.
pub(crate) async fn streamed_cid(store: &dyn ArtifactStore, path: &WorldPath) -> Option<String> {
    let mut stream = store.get_stream(path).await.ok()?;
    let mut hasher = CidHasher::default();
    while let Some(chunk) = stream.try_next().await.ok()? {
        hasher.update(&chunk);
    }
    Some(hasher.finish())
}

/// An input artifact the run did not attach must be in the World's store with its bytes.
async fn check_stored(store: &dyn ArtifactStore, artifact: &ArtifactRef) -> Result<(), CanonError> {
    match streamed_cid(store, &artifact.path).await {
        Some(found) if found == artifact.cid => Ok(()),
        Some(found) => Err(CanonError::new(
            ErrorCode::ArtifactMismatch,
            format!(
                "`{}` is {found} in {}; the inputs name {}",
                artifact.path,
                store.location(),
                artifact.cid
            ),
        )),
        None => Err(invalid(format!(
            "input artifact `{}` cannot be read from {}",
            artifact.path,
            store.location()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use proctor_contract::cid;

    use super::*;

    fn attachment(name: &str, path: &Path) -> Attachment {
        Attachment {
            name: name.to_owned(),
            path: path.to_owned(),
        }
    }

    fn refusal(result: Result<impl std::fmt::Debug, CanonError>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Inputs, "{error}");
        error.message()
    }

    #[tokio::test]
    async fn input_artifacts_are_fetched_from_the_store_checked_against_their_cid() {
        let world = tempfile::tempdir().unwrap();
        let store = FsStore::new(world.path());
        let path = WorldPath::parse("/artifacts/o/e1/outputs/a.txt").unwrap();
        store
            .put(&path, bytes::Bytes::from_static(b"hello"))
            .await
            .unwrap();
        let artifact = ArtifactRef {
            path: path.clone(),
            cid: cid(b"hello"),
            mime: "text/plain".to_owned(),
        };
        let fetched = tempfile::tempdir().unwrap();
        let files = fetch_input_files(&store, std::slice::from_ref(&artifact), fetched.path())
            .await
            .unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, path);
        assert_eq!(std::fs::read(&files[0].source).unwrap(), b"hello");

        let changed = ArtifactRef {
            cid: cid(b"other"),
            ..artifact
        };
        let error = fetch_input_files(&store, &[changed], fetched.path())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::ArtifactMismatch, "{error}");
    }

    #[test]
    fn attachments_parse_as_name_equals_path() {
        let parsed: Attachment = "doc=dir/a=b.txt".parse().unwrap();
        assert_eq!(parsed, attachment("doc", Path::new("dir/a=b.txt")));
        for bad in ["doc", "doc=", ""] {
            assert!(bad.parse::<Attachment>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn media_types_come_from_the_extension() {
        assert_eq!(attachment_mime(Path::new("a/notes.txt")), "text/plain");
        assert_eq!(attachment_mime(Path::new("photo.PNG")), "image/png");
        assert_eq!(attachment_mime(Path::new("data.json")), "application/json");
        assert_eq!(
            attachment_mime(Path::new("no-extension")),
            "application/octet-stream"
        );
    }

    #[test]
    fn names_must_be_valid_and_unique() {
        let file = Path::new("x.txt");
        assert!(check_names(&[attachment("a", file), attachment("b", file)]).is_ok());
        let twice = refusal(check_names(&[attachment("a", file), attachment("a", file)]));
        assert!(twice.contains("given twice"), "{twice}");
        assert!(refusal(check_names(&[attachment("a b", file)])).contains("attachment name"));
    }

    #[tokio::test]
    async fn a_file_is_stored_once_under_its_content_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().join("world"));
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, b"some notes\n").unwrap();
        let first = store_attachment(&store, &attachment("n", &file), 64)
            .await
            .unwrap();
        let expected = format!("/artifacts/inputs/{}/notes.txt", cid(b"some notes\n"));
        assert_eq!(first.path.as_str(), expected);
        assert_eq!(first.mime, "text/plain");
        let stored = store.file_path(&first.path);
        let modified = std::fs::metadata(&stored).unwrap().modified().unwrap();
        let second = store_attachment(&store, &attachment("other", &file), 64)
            .await
            .unwrap();
        assert_eq!(second, first);
        assert_eq!(
            std::fs::metadata(&stored).unwrap().modified().unwrap(),
            modified,
            "stored once, not written again"
        );
        // A stored copy that no longer matches is written again.
        std::fs::remove_file(&stored).unwrap();
        std::fs::write(&stored, b"tampered\n").unwrap();
        store_attachment(&store, &attachment("n", &file), 64)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&stored).unwrap(), b"some notes\n");
    }

    #[tokio::test]
    async fn only_regular_files_within_the_limit_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let world = dir.path().join("world");
        let store = FsStore::new(&world);
        let file = dir.path().join("big.txt");
        std::fs::write(&file, b"0123456789").unwrap();
        let over = refusal(store_attachment(&store, &attachment("big", &file), 9).await);
        assert!(over.contains("--max-attachment-bytes"), "{over}");
        assert!(
            store_attachment(&store, &attachment("big", &file), 10)
                .await
                .is_ok()
        );

        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let link_to_dir = dir.path().join("link");
        symlink(dir.path(), &link_to_dir).unwrap();
        for path in [fifo.as_path(), dir.path(), link_to_dir.as_path()] {
            let refused = refusal(store_attachment(&store, &attachment("x", path), 64).await);
            assert!(refused.contains("not a regular file"), "{refused}");
        }
        let missing = refusal(
            store_attachment(&store, &attachment("x", &dir.path().join("absent")), 64).await,
        );
        assert!(missing.contains("cannot read attachment `x`"), "{missing}");
        let link_to_file = dir.path().join("link.txt");
        symlink(&file, &link_to_file).unwrap();
        let linked = store_attachment(&store, &attachment("x", &link_to_file), 64)
            .await
            .unwrap();
        assert_eq!(linked.cid, cid(b"0123456789"));
    }

    #[tokio::test]
    async fn a_file_that_changes_while_it_is_stored_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().join("world"));
        let file = dir.path().join("moving.txt");
        std::fs::write(&file, b"before").unwrap();
        let (open, cid, size) = hash_file(&file, "it", 64).unwrap();
        std::fs::write(&file, b"after!").unwrap();
        let artifact = ArtifactRef {
            path: attachment_path(&cid, "moving.txt").unwrap(),
            cid,
            mime: "text/plain".to_owned(),
        };
        let changed = Arc::new(AtomicBool::new(false));
        let stream = verified_stream(open, &artifact, size, Arc::clone(&changed));
        assert!(store.put_stream(&artifact.path, stream).await.is_err());
        assert!(changed.load(Ordering::SeqCst));
        assert!(store.get(&artifact.path).await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn artifacts_not_attached_must_be_stored_with_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        let artifact = ArtifactRef {
            path: WorldPath::parse("/artifacts/o/e1/outputs/a.txt").unwrap(),
            cid: cid(b"a"),
            mime: "text/plain".to_owned(),
        };
        let missing = refusal(check_stored(&store, &artifact).await);
        assert!(missing.contains("cannot be read"), "{missing}");
        store.put(&artifact.path, "b".into()).await.unwrap();
        let error = check_stored(&store, &artifact).await.unwrap_err();
        assert_eq!(error.code(), ErrorCode::ArtifactMismatch, "{error}");
        store.delete(&artifact.path).await.unwrap();
        store.put(&artifact.path, "a".into()).await.unwrap();
        assert!(check_stored(&store, &artifact).await.is_ok());
    }

    #[test]
    fn artifacts_must_lie_apart_from_what_the_run_writes() {
        let prefix = WritePrefix::expand("/artifacts/o/{execution_id}/", "e1").unwrap();
        let at = |raw: &str| ArtifactRef {
            path: WorldPath::parse(raw).unwrap(),
            cid: cid(b""),
            mime: "text/plain".to_owned(),
        };
        assert!(check_apart(&[at("/artifacts/o/e0/outputs/a")], &prefix, "e1").is_ok());
        for inside in ["/artifacts/o/e1/outputs/a", "/artifacts/execution/e1/x"] {
            let refused = refusal(check_apart(&[at(inside)], &prefix, "e1"));
            assert!(refused.contains("lies where the run writes"), "{refused}");
        }
    }
}
