//! The S3-compatible object storage store, through the `object_store` crate.
//!
//! The object key of world path `/artifacts/x/y` is `artifacts/x/y`, after the store's key
//! prefix when it has one (`team/runs/artifacts/x/y`). A put is one `PutObject` request, which
//! S3 makes visible whole or not at all; a streamed put is a multipart upload, visible once
//! it completes and aborted on any error. Plain `http://` endpoints are accepted on loopback
//! only, so credentials never cross a network in clear text.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    Certificate, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use proctor_contract::{SelectorKind, WorldPath};

use crate::store::{canonical_from_relative, require};
use crate::{ArtifactStore, ByteStream, ObjectInfo, StoreError};

/// How many parts of a streamed put are uploaded at once.
const UPLOAD_CONCURRENCY: usize = 4;

/// Everything needed to reach a bucket. `Debug` hides the secrets.
#[derive(Clone)]
pub struct S3Options {
    /// The bucket name.
    pub bucket: String,
    /// Segments put before every key, without leading or trailing `/` (may be empty).
    pub key_prefix: String,
    /// A custom endpoint such as `http://127.0.0.1:9000`; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The signing region, e.g. `us-east-1`.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("key_prefix", &self.key_prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &"******")
            .field("secret_access_key", &"******")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "******"),
            )
            .finish()
    }
}

/// An artifact store in an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<dyn ObjectStore>,
    bucket: String,
    key_prefix: String,
    endpoint: Option<String>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("key_prefix", &self.key_prefix)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds a client for `options`. No request is sent until the first operation.
    pub fn new(options: S3Options) -> Result<S3Store, StoreError> {
        let location = format!("s3://{}/{}", options.bucket, options.key_prefix);
        let bad = |reason: String| StoreError::Location {
            location: location.clone(),
            reason,
        };
        if options.bucket.is_empty() {
            return Err(bad("the bucket name is empty".to_owned()));
        }
        if options.key_prefix.split('/').any(|s| s == "." || s == "..")
            || options.key_prefix.starts_with('/')
            || options.key_prefix.ends_with('/')
            || options.key_prefix.contains("//")
        {
            return Err(bad(
                "the key prefix must be plain segments joined by `/`".to_owned()
            ));
        }
        // object_store's HTTPS client uses the process-wide provider, and trusts the bundled
        // Mozilla roots on top of the system's: a processor's image has no certificate store.
        proctor_tls::install_crypto_provider();
        let client_options = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter_map(|der| Certificate::from_der(der.as_ref()).ok())
            .fold(ClientOptions::new(), ClientOptions::with_root_certificate);
        let mut builder = AmazonS3Builder::new()
            .with_client_options(client_options)
            .with_bucket_name(&options.bucket)
            .with_region(&options.region)
            .with_access_key_id(&options.access_key_id)
            .with_secret_access_key(&options.secret_access_key)
            .with_disable_bulk_delete(true)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            });
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &options.endpoint {
            let plain_http = check_endpoint(endpoint).map_err(bad)?;
            builder = builder.with_endpoint(endpoint).with_allow_http(plain_http);
        }
        let inner = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(S3Store {
            inner: Arc::new(inner),
            bucket: options.bucket,
            key_prefix: options.key_prefix,
            endpoint: options.endpoint,
        })
    }

    /// The object key of a world path (the store's key prefix, then the path without its
    /// leading `/`; a prefix selector loses its trailing `/`).
    fn key(&self, path: &WorldPath) -> Result<Path, StoreError> {
        let relative = path.relative().trim_end_matches('/');
        let key = if self.key_prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.key_prefix)
        };
        Path::parse(&key).map_err(|e| self.backend("key", path, e))
    }

    /// The world path an object key names, if it is a canonical one below the key prefix.
    fn world_path(&self, key: &Path) -> Option<WorldPath> {
        let key = key.as_ref();
        let relative = if self.key_prefix.is_empty() {
            key
        } else {
            key.strip_prefix(&self.key_prefix)?.strip_prefix('/')?
        };
        canonical_from_relative(relative)
    }

    fn backend(
        &self,
        operation: &'static str,
        path: &WorldPath,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Backend {
            operation,
            path: path.to_string(),
            store: self.location(),
            source: Box::new(source),
        }
    }

    /// Starts reading the object at the exact path `path`.
    async fn fetch(&self, path: &WorldPath) -> Result<object_store::GetResult, StoreError> {
        require(path, SelectorKind::Exact)?;
        self.inner
            .get(&self.key(path)?)
            .await
            .map_err(|e| self.map_error("get", path, e))
    }

    /// Maps an `object_store` error. Only a missing object is "not found": a 404 naming a
    /// missing bucket, or answering a put, is a backend failure.
    fn map_error(
        &self,
        operation: &'static str,
        path: &WorldPath,
        err: object_store::Error,
    ) -> StoreError {
        match err {
            object_store::Error::NotFound { ref source, .. }
                if operation != "put" && !source.to_string().contains("NoSuchBucket") =>
            {
                StoreError::NotFound { path: path.clone() }
            }
            other => self.backend(operation, path, other),
        }
    }
}

/// Accepts `https://…` anywhere and `http://…` on loopback; answers whether it is plain
/// HTTP.
fn check_endpoint(endpoint: &str) -> Result<bool, String> {
    let url = url::Url::parse(endpoint).map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the endpoint must not carry credentials; use AWS_ACCESS_KEY_ID and \
                    AWS_SECRET_ACCESS_KEY"
                .to_owned(),
        );
    }
    match url.scheme() {
        "https" => Ok(false),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if loopback {
                Ok(true)
            } else {
                Err(format!(
                    "plain http is allowed for loopback endpoints only: `{endpoint}`"
                ))
            }
        }
        other => Err(format!(
            "endpoint scheme must be http or https, not `{other}`"
        )),
    }
}

#[async_trait]
impl ArtifactStore for S3Store {
    fn location(&self) -> String {
        let mut location = format!("s3://{}/{}", self.bucket, self.key_prefix);
        if let Some(endpoint) = &self.endpoint {
            location.push_str(&format!("?endpoint={endpoint}"));
        }
        location
    }

    async fn put(&self, path: &WorldPath, bytes: Bytes) -> Result<(), StoreError> {
        require(path, SelectorKind::Exact)?;
        let size_bytes = bytes.len();
        self.inner
            .put(&self.key(path)?, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| self.map_error("put", path, e))?;
        tracing::debug!(store = %self.location(), path = %path, size_bytes, "store.put");
        Ok(())
    }

    async fn put_stream(&self, path: &WorldPath, mut stream: ByteStream) -> Result<(), StoreError> {
        require(path, SelectorKind::Exact)?;
        let upload = self
            .inner
            .put_multipart(&self.key(path)?)
            .await
            .map_err(|e| self.map_error("put", path, e))?;
        let mut writer = WriteMultipart::new(upload);
        let mut size_bytes = 0u64;
        let written = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                size_bytes += chunk.len() as u64;
                writer
                    .wait_for_capacity(UPLOAD_CONCURRENCY)
                    .await
                    .map_err(|e| self.map_error("put", path, e))?;
                writer.put(chunk);
            }
            Ok::<(), StoreError>(())
        }
        .await;
        match written {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| self.map_error("put", path, e))?;
            }
            Err(error) => {
                // Best effort: the error that stopped the upload matters more.
                let _ = writer.abort().await;
                return Err(error);
            }
        }
        tracing::debug!(store = %self.location(), path = %path, size_bytes, "store.put");
        Ok(())
    }

    async fn get(&self, path: &WorldPath) -> Result<Bytes, StoreError> {
        self.fetch(path)
            .await?
            .bytes()
            .await
            .map_err(|e| self.map_error("get", path, e))
    }

    async fn get_stream(&self, path: &WorldPath) -> Result<ByteStream, StoreError> {
        let result = self.fetch(path).await?;
        let (store, world) = (self.clone(), path.clone());
        Ok(result
            .into_stream()
            .map_err(move |e| store.map_error("get", &world, e))
            .boxed())
    }

    async fn head(&self, path: &WorldPath) -> Result<ObjectInfo, StoreError> {
        require(path, SelectorKind::Exact)?;
        let meta = self
            .inner
            .head(&self.key(path)?)
            .await
            .map_err(|e| self.map_error("head", path, e))?;
        Ok(ObjectInfo {
            path: path.clone(),
            size_bytes: meta.size,
        })
    }

    async fn list(&self, prefix: &WorldPath) -> Result<Vec<ObjectInfo>, StoreError> {
        require(prefix, SelectorKind::Prefix)?;
        let metas: Vec<_> = self
            .inner
            .list(Some(&self.key(prefix)?))
            .try_collect()
            .await
            .map_err(|e| self.backend("list", prefix, e))?;
        let mut found: Vec<ObjectInfo> = metas
            .into_iter()
            .filter_map(|meta| {
                let path = self.world_path(&meta.location)?;
                prefix.covers(&path).then_some(ObjectInfo {
                    path,
                    size_bytes: meta.size,
                })
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    async fn delete(&self, path: &WorldPath) -> Result<(), StoreError> {
        require(path, SelectorKind::Exact)?;
        if let Err(e) = self.inner.delete(&self.key(path)?).await {
            let err = self.map_error("delete", path, e);
            if !err.is_not_found() {
                return Err(err);
            }
        }
        tracing::debug!(store = %self.location(), path = %path, "store.delete");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(key_prefix: &str, endpoint: Option<&str>) -> S3Options {
        S3Options {
            bucket: "bucket".to_owned(),
            key_prefix: key_prefix.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            region: "us-east-1".to_owned(),
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "very-secret-value".to_owned(),
            session_token: Some("session-token-value".to_owned()),
        }
    }

    #[test]
    fn keys_are_world_paths_without_the_leading_slash() {
        let store = S3Store::new(options("team/runs", None)).unwrap();
        let path = WorldPath::parse("/artifacts/o/e1/outputs.json").unwrap();
        assert_eq!(
            store.key(&path).unwrap().as_ref(),
            "team/runs/artifacts/o/e1/outputs.json"
        );
        let back = store.world_path(&store.key(&path).unwrap()).unwrap();
        assert_eq!(back, path);
        let prefix = WorldPath::parse("/artifacts/o/").unwrap();
        assert_eq!(
            store.key(&prefix).unwrap().as_ref(),
            "team/runs/artifacts/o"
        );
        let bare = S3Store::new(options("", None)).unwrap();
        assert_eq!(
            bare.key(&path).unwrap().as_ref(),
            "artifacts/o/e1/outputs.json"
        );
        assert_eq!(store.world_path(&Path::from("other/artifacts/x")), None);
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:9000",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            assert_eq!(check_endpoint(ok), Ok(true), "{ok}");
        }
        assert_eq!(check_endpoint("https://s3.example.com"), Ok(false));
        assert!(
            check_endpoint("http://10.0.0.1:9000")
                .unwrap_err()
                .contains("loopback")
        );
        assert!(check_endpoint("ftp://127.0.0.1").is_err());
        assert!(check_endpoint("http://user:pw@127.0.0.1:9000").is_err());
    }

    #[test]
    fn bad_options_are_refused() {
        for prefix in ["/x", "x/", "a//b", "a/../b"] {
            assert!(S3Store::new(options(prefix, None)).is_err(), "{prefix}");
        }
        let mut no_bucket = options("", None);
        no_bucket.bucket.clear();
        assert!(S3Store::new(no_bucket).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let options = options("p", Some("http://127.0.0.1:9000"));
        let store = S3Store::new(options.clone()).unwrap();
        for text in [
            format!("{options:?}"),
            format!("{store:?}"),
            store.location(),
        ] {
            assert!(!text.contains("very-secret-value"), "{text}");
            assert!(!text.contains("session-token-value"), "{text}");
            assert!(!text.contains("AKIDEXAMPLE"), "{text}");
        }
    }
}
