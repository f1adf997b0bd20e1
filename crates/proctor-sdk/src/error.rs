//! Errors of the server itself (configuration, listening); run failures are envelopes.

use std::io;
use std::net::SocketAddr;

/// Why a processor server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// A `PROCTOR_*` variable has an unusable value.
    #[error("{name}=`{value}` is invalid: {reason}")]
    Config {
        /// The variable.
        name: &'static str,
        /// Its value (never a secret: only `PROCTOR_*` variables are checked).
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server failed: {0}")]
    Serve(#[source] io::Error),
}
