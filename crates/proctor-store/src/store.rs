//! The storage trait every backend implements, and the path rules they share.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use proctor_contract::{CanonError, ErrorCode, Facet, SelectorKind, WorldPath};
use serde::Serialize;

use crate::StoreError;

/// A stream of an object's bytes, chunk by chunk.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// One stored artifact, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    /// Its canonical world path.
    pub path: WorldPath,
    /// Its length in bytes.
    pub size_bytes: u64,
}

/// Storage for world paths under `/artifacts/`.
///
/// Exact paths (no trailing `/`) name artifacts; prefix selectors (trailing `/`) name
/// everything below them, on segment boundaries: `/artifacts/a/` never covers
/// `/artifacts/ab`. Writes are atomic: a reader sees the old bytes, the new bytes, or
/// nothing, never a part. On the filesystem a path cannot be both an artifact and the parent
/// of others (`/artifacts/a` and `/artifacts/a/b`); such a put fails there.
#[async_trait]
pub trait ArtifactStore: fmt::Debug + Send + Sync {
    /// Where the store lives, for people and logs: `file:///…` or `s3://bucket/prefix`.
    /// Never carries credentials.
    fn location(&self) -> String;

    /// Stores `bytes` at the exact path `path`, replacing what was there, atomically.
    async fn put(&self, path: &WorldPath, bytes: Bytes) -> Result<(), StoreError>;

    /// Stores the bytes of `stream` at the exact path `path`, replacing what was there,
    /// atomically: an error from the stream or the store leaves the old bytes or nothing,
    /// never a part. Memory holds a part of the stream at a time, never all of it.
    async fn put_stream(&self, path: &WorldPath, stream: ByteStream) -> Result<(), StoreError>;

    /// Reads the artifact at the exact path `path`.
    async fn get(&self, path: &WorldPath) -> Result<Bytes, StoreError>;

    /// The bytes at `path` as a stream of chunks, for copies that must not hold a whole
    /// file in memory; errors as [`ArtifactStore::get`].
    async fn get_stream(&self, path: &WorldPath) -> Result<ByteStream, StoreError>;

    /// The size of the artifact at the exact path `path`, without reading it.
    async fn head(&self, path: &WorldPath) -> Result<ObjectInfo, StoreError>;

    /// Every artifact below the prefix selector `prefix`, at any depth, sorted by path.
    /// A prefix with nothing below it gives an empty list.
    async fn list(&self, prefix: &WorldPath) -> Result<Vec<ObjectInfo>, StoreError>;

    /// Removes the artifact at the exact path `path`; removing a missing artifact succeeds.
    async fn delete(&self, path: &WorldPath) -> Result<(), StoreError>;
}

/// Requires `path` to lie under `/artifacts/` and be of `kind`.
pub(crate) fn require(path: &WorldPath, kind: SelectorKind) -> Result<(), StoreError> {
    if path.facet() != Facet::Artifacts {
        return Err(StoreError::OutsideArtifacts { path: path.clone() });
    }
    if path.kind() != kind {
        let want = match kind {
            SelectorKind::Exact => "an exact path (no trailing /)",
            SelectorKind::Prefix => "a prefix (trailing /)",
        };
        return Err(CanonError::new(
            ErrorCode::SelectorKindMismatch,
            format!("expected {want}: `{path}`"),
        )
        .into());
    }
    Ok(())
}

/// The world path named by `relative` (`artifacts/x/y`, as stored), if it is canonical.
/// Stored names that canonicalize to something else cannot be addressed, so listings skip
/// them.
pub(crate) fn canonical_from_relative(relative: &str) -> Option<WorldPath> {
    let raw = format!("/{relative}");
    match WorldPath::parse(&raw) {
        Ok(path) if path.as_str() == raw && path.kind() == SelectorKind::Exact => Some(path),
        _ => {
            tracing::debug!(name = %raw, "store.skip_non_canonical");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> WorldPath {
        WorldPath::parse(raw).unwrap()
    }

    #[test]
    fn require_checks_facet_and_kind() {
        assert!(require(&path("/artifacts/a"), SelectorKind::Exact).is_ok());
        assert!(require(&path("/artifacts/a/"), SelectorKind::Prefix).is_ok());
        assert!(matches!(
            require(&path("/streams/a"), SelectorKind::Exact),
            Err(StoreError::OutsideArtifacts { .. })
        ));
        let Err(StoreError::Path(err)) = require(&path("/artifacts/a/"), SelectorKind::Exact)
        else {
            panic!("expected a selector error");
        };
        assert_eq!(err.code(), ErrorCode::SelectorKindMismatch);
    }

    #[test]
    fn only_canonical_names_are_listed() {
        assert_eq!(
            canonical_from_relative("artifacts/a/b"),
            Some(path("/artifacts/a/b"))
        );
        assert_eq!(
            canonical_from_relative("artifacts/100%25"),
            Some(path("/artifacts/100%25"))
        );
        assert_eq!(canonical_from_relative("artifacts/a%2Fb"), None);
        assert_eq!(canonical_from_relative("artifacts/cafe\u{301}"), None);
        assert_eq!(canonical_from_relative("artifacts/a%41"), None);
    }
}
