//! Canonical errors inside JSON reports: `{"code","message"}`, the shape of an error
//! envelope's body, or `null`.

use proctor_contract::{CanonError, ErrorBody};
use serde::{Serialize, Serializer};

/// Serializes an optional canonical error as its [`ErrorBody`], or `null`.
pub(crate) fn serialize<S: Serializer>(
    error: &Option<CanonError>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    error.as_ref().map(body).serialize(serializer)
}

/// The body of `error`: its code and full message.
pub(crate) fn body(error: &CanonError) -> ErrorBody {
    ErrorBody {
        code: error.code(),
        message: error.message(),
    }
}
