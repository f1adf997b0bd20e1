//! Opening a store from a location string.
//!
//! - `file:///abs/path` or a plain path (`./.proctor/artifacts`) → [`FsStore`];
//! - `s3://bucket[/key/prefix][?endpoint=URL&region=R]` → [`S3Store`], with credentials
//!   from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, the region
//!   from `region=`, `AWS_REGION` or `AWS_DEFAULT_REGION` (default `us-east-1`), and the
//!   endpoint from `endpoint=` or `AWS_ENDPOINT_URL` (default: AWS).
//!
//! Credentials are never read from the location itself.

use std::sync::Arc;

use crate::{ArtifactStore, FsStore, S3Options, S3Store, StoreError};

/// The region used when neither the location nor the environment names one.
const DEFAULT_REGION: &str = "us-east-1";

/// Opens the store at `location`, reading S3 settings from the process environment.
pub fn open(location: &str) -> Result<Arc<dyn ArtifactStore>, StoreError> {
    open_with_env(location, |name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })
}

/// Opens the store at `location`, reading S3 settings through `env` (a variable's value by
/// name), so callers and tests choose where settings come from.
pub fn open_with_env(
    location: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ArtifactStore>, StoreError> {
    let bad = |reason: &str| StoreError::Location {
        location: without_credentials(location),
        reason: reason.to_owned(),
    };
    if location.is_empty() {
        return Err(bad("it is empty"));
    }
    if !location.contains("://") {
        return Ok(Arc::new(FsStore::new(location)));
    }
    let url = url::Url::parse(location).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials do not belong in the location; set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY",
        ));
    }
    match url.scheme() {
        "file" => {
            if url.query().is_some() {
                return Err(bad("a file location takes no query"));
            }
            let path = url
                .to_file_path()
                .map_err(|()| bad("use file:///absolute/path"))?;
            Ok(Arc::new(FsStore::new(path)))
        }
        "s3" => {
            let bucket = url.host_str().unwrap_or_default().to_owned();
            if bucket.is_empty() {
                return Err(bad("name the bucket: s3://bucket/prefix"));
            }
            let mut endpoint = env("AWS_ENDPOINT_URL");
            let mut region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
            for (key, value) in url.query_pairs() {
                match key.as_ref() {
                    "endpoint" => endpoint = Some(value.into_owned()),
                    "region" => region = Some(value.into_owned()),
                    other => return Err(bad(&format!("unknown query key `{other}`"))),
                }
            }
            let (Some(access_key_id), Some(secret_access_key)) =
                (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
            else {
                return Err(StoreError::MissingCredentials);
            };
            let options = S3Options {
                bucket,
                key_prefix: url.path().trim_matches('/').to_owned(),
                endpoint,
                region: region.unwrap_or_else(|| DEFAULT_REGION.to_owned()),
                access_key_id,
                secret_access_key,
                session_token: env("AWS_SESSION_TOKEN"),
            };
            Ok(Arc::new(S3Store::new(options)?))
        }
        other => Err(bad(&format!(
            "unknown scheme `{other}`; use file:// or s3://"
        ))),
    }
}

/// The location with any `user:password@` part removed, safe to show.
fn without_credentials(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            // Both setters only fail for URLs that cannot carry credentials at all.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("very-secret-value".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn plain_paths_and_file_urls_open_the_filesystem() {
        let store = open_with_env("/tmp/x", env).unwrap();
        assert_eq!(store.location(), "file:///tmp/x");
        let store = open_with_env("file:///tmp/y", env).unwrap();
        assert_eq!(store.location(), "file:///tmp/y");
        assert!(
            open_with_env("relative/dir", env)
                .unwrap()
                .location()
                .starts_with("file:///")
        );
        assert!(open_with_env("file://host/x", env).is_err());
    }

    #[test]
    fn s3_urls_open_a_bucket() {
        let store =
            open_with_env("s3://bucket/team/runs/?endpoint=http://127.0.0.1:9000", env).unwrap();
        assert_eq!(
            store.location(),
            "s3://bucket/team/runs?endpoint=http://127.0.0.1:9000"
        );
        let store = open_with_env("s3://bucket", env).unwrap();
        assert_eq!(store.location(), "s3://bucket/");
    }

    #[test]
    fn refusals_name_the_fix_and_never_echo_secrets() {
        let no_creds = open_with_env("s3://bucket/p", |_| None).unwrap_err();
        assert!(matches!(no_creds, StoreError::MissingCredentials));
        assert!(no_creds.to_string().contains("AWS_ACCESS_KEY_ID"));

        let err = open_with_env("s3://key:topsecret@bucket/p", env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");

        let err = open_with_env("s3://bucket/p?endpoint=http://192.0.2.1:9000", env).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(open_with_env("s3://bucket/p?color=blue", env).is_err());
        assert!(open_with_env("s3:///p", env).is_err());
        assert!(open_with_env("gs://bucket/p", env).is_err());
        assert!(open_with_env("", env).is_err());
    }
}
