//! The distribution-API client proctor uses (oci-client), configured for one registry host,
//! and the mapping of its failures onto canonical errors.
//!
//! Loopback registries are spoken to over plain HTTP, every other one over HTTPS.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use proctor_contract::{CanonError, ErrorCode, ImageRepository};

use crate::credentials::{PASSWORD_ENV, RegistryCredential, USERNAME_ENV, registry_credential};

/// How long to wait for a TCP connection before calling the registry unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read may stall before the request fails.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A client for one registry host, with its credentials.
pub(crate) struct Remote {
    pub(crate) client: Client,
    pub(crate) auth: RegistryAuth,
}

impl Remote {
    /// A client for `repository`'s host, with the credentials found for it; a credential
    /// helper that fails, or one that gives an identity token (which the distribution
    /// client cannot exchange), is `context`.
    pub(crate) fn new(
        repository: &ImageRepository,
        context: ErrorCode,
    ) -> Result<Remote, CanonError> {
        let protocol = if repository.is_loopback() {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        // oci-client's HTTPS client uses the process-wide provider.
        proctor_tls::install_crypto_provider();
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            // Proctor picks platforms itself; an index is never silently resolved.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let host = repository.host();
        let (credential, source) = registry_credential(host, context)?;
        let auth = match credential {
            None => RegistryAuth::Anonymous,
            Some(RegistryCredential::Basic { username, password }) => {
                RegistryAuth::Basic(username, password)
            }
            Some(RegistryCredential::IdentityToken(_)) => {
                return Err(CanonError::new(
                    context,
                    format!(
                        "the docker config gives an identity token for {host}, which pushes and \
                         pins cannot use; set {USERNAME_ENV} and {PASSWORD_ENV}"
                    ),
                ));
            }
        };
        tracing::debug!(
            registry = host,
            credentials = source.as_str(),
            "oci.registry.client"
        );
        Ok(Remote {
            client: Client::new(config),
            auth,
        })
    }

    /// Checks that the registry answers (and authenticates) before any other request.
    pub(crate) async fn check(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        context: ErrorCode,
    ) -> Result<(), CanonError> {
        self.client
            .auth(reference, &self.auth, operation)
            .await
            .map(|_| ())
            .map_err(|err| registry_error(context, reference, &err))
    }
}

/// Whether `err` says the thing asked for is not in the registry.
pub(crate) fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}

/// Whether `err` means the registry could not be reached at all.
fn is_unreachable(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::RequestError(err) => err.is_connect() || err.is_timeout(),
        OciDistributionError::ServerError { code, .. } => matches!(code, 502..=504),
        _ => false,
    }
}

/// The canonical error for a failed request about `reference`: unreachable registries get
/// `ERR_REGISTRY_UNREACHABLE`, everything else `context` (`ERR_PUSH` or `ERR_PIN`).
pub(crate) fn registry_error(
    context: ErrorCode,
    reference: &Reference,
    err: &OciDistributionError,
) -> CanonError {
    if is_unreachable(err) {
        return CanonError::new(
            ErrorCode::RegistryUnreachable,
            format!(
                "{}: {err}; is the registry running?",
                reference.resolve_registry()
            ),
        );
    }
    CanonError::new(context, format!("{}: {err}", reference.whole()))
}
