//! Storage errors: one enum, each variant naming the path or location involved.

use proctor_contract::{CanonError, ErrorCode, WorldPath};

/// Why a storage operation failed. Messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No artifact at this path.
    #[error("artifact not found: `{path}`")]
    NotFound {
        /// The path that was asked for.
        path: WorldPath,
    },
    /// The path is not a valid selector for this operation (kind mismatch or bad path).
    #[error(transparent)]
    Path(#[from] CanonError),
    /// The path lies outside `/artifacts/`, the only facet a store holds.
    #[error("an artifact store holds /artifacts/ paths only: `{path}`")]
    OutsideArtifacts {
        /// The refused path.
        path: WorldPath,
    },
    /// The filesystem entry is a symbolic link or not a regular file or directory.
    #[error(
        "`{path}` goes through a symbolic link or special file; stores read regular files only"
    )]
    NotRegular {
        /// The refused path.
        path: WorldPath,
    },
    /// The store location could not be understood.
    #[error("invalid store location `{location}`: {reason}")]
    Location {
        /// The location, with any credentials removed.
        location: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An S3 store was asked for without credentials in the environment.
    #[error("s3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    MissingCredentials,
    /// An execution id that cannot name `/artifacts/execution/{id}/receipt.json`.
    #[error("invalid execution id `{execution_id}`: it must be one non-empty path segment")]
    ExecutionId {
        /// The refused id.
        execution_id: String,
    },
    /// An execution's receipt exists but cannot be used (unparsable, bad index path).
    #[error("invalid receipt `{path}`: {reason}")]
    Receipt {
        /// Where the receipt was read.
        path: WorldPath,
        /// What is wrong with it.
        reason: String,
    },
    /// A local filesystem operation failed.
    #[error("{operation} `{path}` failed: {source}")]
    Io {
        /// What was being done (`put`, `get`, `list`, …).
        operation: &'static str,
        /// The world path or file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The object storage service failed or refused the request.
    #[error("{operation} `{path}` in {store} failed: {source}")]
    Backend {
        /// What was being done (`put`, `get`, `list`, …).
        operation: &'static str,
        /// The world path involved.
        path: String,
        /// Which store (location without credentials).
        store: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Whether the error says the artifact does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// Every store failure as the canonical error a user sees: a missing artifact is
/// `ERR_NOT_FOUND`, a path outside `/artifacts/` or an unusable execution id `ERR_BAD_PATH`,
/// missing S3 credentials `ERR_MISSING_SECRET`, anything else `ERR_STORE`.
impl From<StoreError> for CanonError {
    fn from(error: StoreError) -> CanonError {
        match error {
            StoreError::NotFound { path } => {
                CanonError::new(ErrorCode::NotFound, format!("`{path}`"))
            }
            StoreError::Path(error) => error,
            StoreError::MissingCredentials => CanonError::new(
                ErrorCode::MissingSecret,
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the S3 store's credentials)",
            ),
            error @ (StoreError::OutsideArtifacts { .. } | StoreError::ExecutionId { .. }) => {
                CanonError::new(ErrorCode::BadPath, error.to_string())
            }
            error => CanonError::new(ErrorCode::Store, error.to_string()),
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
    fn store_errors_become_canonical_codes() {
        let not_found = CanonError::from(StoreError::NotFound {
            path: path("/artifacts/a"),
        });
        assert_eq!(not_found.code(), ErrorCode::NotFound);
        assert_eq!(not_found.message(), "artifact not found: `/artifacts/a`");
        let outside = CanonError::from(StoreError::OutsideArtifacts {
            path: path("/streams/a"),
        });
        assert_eq!(outside.code(), ErrorCode::BadPath);
        assert!(
            outside.message().contains("/artifacts/ paths only"),
            "{outside}"
        );
        assert_eq!(
            CanonError::from(StoreError::MissingCredentials).code(),
            ErrorCode::MissingSecret
        );
        let location = CanonError::from(StoreError::Location {
            location: "gs://x".into(),
            reason: "unknown scheme".into(),
        });
        assert_eq!(location.code(), ErrorCode::Store);
        assert_eq!(
            location.message(),
            "artifact store error: invalid store location `gs://x`: unknown scheme"
        );
    }
}
