//! Test harness: a store per test, on the filesystem (a temp dir) or in a fresh bucket of
//! the S3-compatible server that `scripts/setup.sh` starts on loopback.
//!
//! Each S3 test creates its own uniquely named bucket and deletes it (objects first) when the
//! test body returns or panics. A missing server fails the test with a message saying how to
//! start it; it is never skipped.

use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpRequestBody};
use proctor_contract::{Mode, OutputsIndex, Receipt, Usage, WorldPath, WritePrefix, cid};
use proctor_store::{ArtifactStore, FsStore, open_with_env};

/// Where the S3-compatible test server listens (same variable as `scripts/setup.sh`).
fn s3_addr() -> String {
    std::env::var("PROCTOR_TEST_S3").unwrap_or_else(|_| "127.0.0.1:9000".to_owned())
}

const REGION: &str = "us-east-1";
const KEY_ID: &str = "proctor-test";
const SECRET: &str = "proctor-test-secret";
/// Key prefix inside each test bucket, so keys are `runs/artifacts/…`.
pub(crate) const KEY_PREFIX: &str = "runs";

/// Runs `body` with a filesystem store in a fresh temp dir.
pub(crate) async fn with_fs<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn ArtifactStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    body(Arc::new(FsStore::new(dir.path().join("artifacts")))).await;
}

/// A bucket of the test server, created for one test.
pub(crate) struct TestBucket {
    pub(crate) name: String,
    endpoint: String,
    http: HttpClient,
    credential: AwsCredential,
}

impl TestBucket {
    /// Creates a uniquely named bucket; panics loudly when no server answers.
    pub(crate) async fn create() -> TestBucket {
        let addr = s3_addr();
        let socket: SocketAddr = addr.parse().expect("PROCTOR_TEST_S3 is host:port");
        if let Err(e) = TcpStream::connect_timeout(&socket, Duration::from_secs(5)) {
            panic!(
                "no S3-compatible server answers at {addr} ({e}): run scripts/setup.sh, which \
                 installs and starts one on loopback"
            );
        }
        let bucket = TestBucket {
            name: format!("proctor-test-{}", uuid::Uuid::new_v4().simple()),
            endpoint: format!("http://{addr}"),
            http: HttpClient::new(proctor_tls::http_client_builder().build().unwrap()),
            credential: AwsCredential {
                key_id: KEY_ID.to_owned(),
                secret_key: SECRET.to_owned(),
                token: None,
            },
        };
        let status = bucket
            .signed(http::Method::PUT, &format!("/{}", bucket.name))
            .await
            .0;
        assert!(
            status.is_success(),
            "create bucket {}: HTTP {status}",
            bucket.name
        );
        bucket
    }

    /// The store location of this bucket, as a user would write it.
    pub(crate) fn location(&self) -> String {
        format!("s3://{}/{KEY_PREFIX}?endpoint={}", self.name, self.endpoint)
    }

    /// Opens the bucket through `open_with_env`, with the test credentials as environment.
    pub(crate) fn open(&self) -> Arc<dyn ArtifactStore> {
        open_with_env(&self.location(), |name| match name {
            "AWS_ACCESS_KEY_ID" => Some(KEY_ID.to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_owned()),
            "AWS_REGION" => Some(REGION.to_owned()),
            _ => None,
        })
        .unwrap()
    }

    /// Sends a SigV4-signed request with an empty body to `path` on the server; answers the
    /// status and body.
    pub(crate) async fn signed(
        &self,
        method: http::Method,
        path: &str,
    ) -> (http::StatusCode, Bytes) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint))
            .body(HttpRequestBody::empty())
            .unwrap();
        AwsAuthorizer::new(&self.credential, "s3", REGION)
            .try_authorize(&mut request, None)
            .unwrap();
        let response = self.http.execute(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().bytes().await.unwrap();
        (status, body)
    }

    /// Empties and deletes the bucket.
    pub(crate) async fn delete(self) {
        let store = self.open();
        let everything = WorldPath::parse("/artifacts/").unwrap();
        for object in store.list(&everything).await.unwrap() {
            store.delete(&object.path).await.unwrap();
        }
        let status = self
            .signed(http::Method::DELETE, &format!("/{}", self.name))
            .await
            .0;
        assert!(
            status.is_success(),
            "delete bucket {}: HTTP {status}",
            self.name
        );
    }
}

/// Runs `body` with a store on a fresh bucket, and deletes the bucket afterwards even when
/// `body` panics.
pub(crate) async fn with_s3<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn ArtifactStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let bucket = TestBucket::create().await;
    let outcome = AssertUnwindSafe(body(bucket.open())).catch_unwind().await;
    bucket.delete().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

pub(crate) fn path(raw: &str) -> WorldPath {
    WorldPath::parse(raw).unwrap()
}

/// An execution written by hand the way the SDK writes one.
pub(crate) struct Execution {
    pub(crate) id: String,
    pub(crate) prefix: WritePrefix,
    pub(crate) index: OutputsIndex,
    pub(crate) receipt: Receipt,
}

impl Execution {
    pub(crate) fn receipt_path(&self) -> WorldPath {
        WorldPath::execution_receipt(&self.id).unwrap()
    }

    pub(crate) fn output(&self, relative: &str) -> WorldPath {
        self.prefix.output_path(relative).unwrap()
    }
}

/// Writes a well-formed execution: two outputs, their index, and the receipt dual-written.
pub(crate) async fn write_execution(store: &dyn ArtifactStore) -> Execution {
    let id = uuid::Uuid::new_v4().to_string();
    let prefix = WritePrefix::expand("/artifacts/outputs/demo/{execution_id}", &id).unwrap();
    let outputs: [(&str, &[u8], &str); 3] = [
        (
            "text/normalized.txt",
            b"the quick brown fox\n",
            "text/plain",
        ),
        (
            "stats.json",
            br#"{"lines":1,"words":4}"#,
            "application/json",
        ),
        ("empty.bin", b"", "application/octet-stream"),
    ];
    let mut entries = Vec::new();
    for (relative, bytes, mime) in outputs {
        let path = prefix.output_path(relative).unwrap();
        store.put(&path, Bytes::from_static(bytes)).await.unwrap();
        entries.push((
            path.to_string(),
            cid(bytes),
            bytes.len() as u64,
            mime.to_owned(),
        ));
    }
    let index = OutputsIndex::build(entries).unwrap();
    store
        .put(&prefix.index_path(), index.to_bytes().into())
        .await
        .unwrap();
    let receipt = Receipt {
        execution_id: id.clone(),
        processor_ref: "text/stats@1".parse().unwrap(),
        image_digest: "sha256:0123456789abcdef".to_owned(),
        env_fingerprint: "image_digest=sha256:0123456789abcdef;mode=mock;ref=text/stats@1;secrets="
            .to_owned(),
        inputs_hash: "ab".repeat(32),
        hash_schema: "jcs-blake3-v1".to_owned(),
        outputs_index: prefix.index_path(),
        processor_info: "mock".to_owned(),
        usage: Usage::from([("words".to_owned(), 4)]),
        timestamp_utc: "2026-01-01T00:00:00Z".to_owned(),
        duration_ms: 7,
        mode: Mode::Mock,
        upstream: Vec::new(),
        artifacts_read: Vec::new(),
    };
    let bytes = Bytes::from(receipt.to_bytes());
    store
        .put(&prefix.receipt_path(), bytes.clone())
        .await
        .unwrap();
    store
        .put(&WorldPath::execution_receipt(&id).unwrap(), bytes)
        .await
        .unwrap();
    Execution {
        id,
        prefix,
        index,
        receipt,
    }
}
