//! The one TLS crypto provider of every proctor process: rustls on ring.
//!
//! reqwest, object_store, oci-client and bollard build their TLS configurations from the
//! process-wide rustls provider. The workspace links ring alone, the provider that builds
//! fastest (no C toolchain beyond `cc`, no cmake), so `cargo tree -i aws-lc-rs` finds
//! nothing; a process installs it before it builds its first client, through this crate.

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

/// Installs ring as the process-wide rustls crypto provider. Safe to call any number of
/// times: the first call installs it, later ones find it there.
pub fn install_crypto_provider() {
    // An error means a provider is installed already; ring is the only one linked.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder that can build: the crypto provider is installed first.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_build_after_any_number_of_installs() {
        install_crypto_provider();
        assert!(http_client_builder().build().is_ok());
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
