//! `proctor world ls|cat|sync` over the filesystem store and over the S3-compatible server
//! that `scripts/setup.sh` starts on 127.0.0.1:9000 (`PROCTOR_TEST_S3` overrides the
//! address). Each S3 test creates its own bucket and deletes it, objects first, even when
//! the test fails; a missing server fails the test, it is never skipped.
//!
//! Executions are written by hand with the contract's types, byte for byte the way the SDK
//! writes them, so these tests need no container.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpRequestBody};
use proctor_contract::{
    ErrorCode, Mode, OutputsIndex, Receipt, Usage, WorldPath, WritePrefix, cid,
};
use proctor_store::ArtifactStore;
use serde_json::{Value, json};

use crate::util::{Run, TestDir};

/// Credentials the test server accepts (it checks none); passed to `proctor` as the
/// environment a user would set.
pub(crate) const KEY_ID: &str = "proctor-cli-test";
pub(crate) const SECRET: &str = "proctor-cli-test-secret";
const REGION: &str = "us-east-1";
/// The key prefixes tests use inside a bucket; a dropped [`Bucket`] empties each.
const KEY_PREFIXES: [&str; 2] = ["runs", "mirror"];

/// An execution written by hand: its files, relative to the artifacts root, with bytes.
struct Execution {
    id: String,
    prefix: WritePrefix,
    /// Every file it left, sorted by world path.
    files: Vec<(WorldPath, Vec<u8>)>,
}

impl Execution {
    fn bytes(&self, path: &WorldPath) -> &[u8] {
        &self.files.iter().find(|(p, _)| p == path).unwrap().1
    }

    /// `[{"path","size_bytes"}]` of every file, as `world ls --json` lists them.
    fn listing(&self) -> Value {
        Value::Array(
            self.files
                .iter()
                .map(|(path, bytes)| json!({"path": path, "size_bytes": bytes.len()}))
                .collect(),
        )
    }
}

/// Writes a successful `text/stats@1` execution below `artifacts_root` (the directory
/// backing `/artifacts/`): three outputs (one not UTF-8), the index and both receipts.
fn write_execution(artifacts_root: &Path) -> Execution {
    let id = uuid::Uuid::new_v4().to_string();
    let prefix = WritePrefix::expand("/artifacts/outputs/demo/{execution_id}", &id).unwrap();
    let outputs: [(&str, &[u8], &str); 3] = [
        (
            "stats.json",
            br#"{"lines":2,"words":12}"#,
            "application/json",
        ),
        ("normalized.txt", b"the quick brown fox\n", "text/plain"),
        (
            "raw.bin",
            &[0, 159, 146, 150, 255, b'\n'],
            "application/octet-stream",
        ),
    ];
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for (relative, bytes, mime) in outputs {
        let path = prefix.output_path(relative).unwrap();
        entries.push((
            path.to_string(),
            cid(bytes),
            bytes.len() as u64,
            mime.to_owned(),
        ));
        files.push((path, bytes.to_vec()));
    }
    let index = OutputsIndex::build(entries).unwrap();
    files.push((prefix.index_path(), index.to_bytes()));
    let receipt = Receipt {
        execution_id: id.clone(),
        processor_ref: "text/stats@1".parse().unwrap(),
        image_digest: "sha256:3f1c9e0b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6"
            .to_owned(),
        env_fingerprint: "mode=mock".to_owned(),
        inputs_hash: "ab".repeat(32),
        hash_schema: "jcs-blake3-v1".to_owned(),
        outputs_index: prefix.index_path(),
        processor_info: "mock".to_owned(),
        usage: Usage::from([("words".to_owned(), 12)]),
        timestamp_utc: "2026-01-01T00:00:00Z".to_owned(),
        duration_ms: 7,
        mode: Mode::Mock,
        upstream: Vec::new(),
        artifacts_read: Vec::new(),
    };
    files.push((prefix.receipt_path(), receipt.to_bytes()));
    files.push((
        WorldPath::execution_receipt(&id).unwrap(),
        receipt.to_bytes(),
    ));
    for (path, bytes) in &files {
        let file = artifacts_root.join(path.relative().strip_prefix("artifacts/").unwrap());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Execution { id, prefix, files }
}

/// Asserts a canonical error printed as `{"error":{code,message}}` under `--json`.
#[track_caller]
fn json_error(run: &Run, code: ErrorCode, detail: &str) {
    run.exits(code.exit_code());
    let error = &run.json()["error"];
    run.check(error["code"] == code.as_str(), &format!("code {code}"));
    let message = error["message"].as_str().unwrap_or_default();
    run.check(
        message.starts_with(code.fragment()) && message.contains(detail),
        &format!("message holds the fragment and {detail:?}"),
    );
}

#[test]
fn ls_and_cat_read_the_artifacts_root_by_default() {
    let dir = TestDir::new();
    let execution = write_execution(&dir.path().join(".proctor/artifacts"));

    let run = dir.proctor(&["world", "ls", "/artifacts/", "--json"]).run();
    run.exits(0);
    run.check(
        run.json() == execution.listing(),
        "lists every file, sorted",
    );
    run.check(run.events("world.ls").len() == 1, "one world.ls log line");

    let run = dir.proctor(&["world", "ls", "/artifacts/"]).run();
    run.exits(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    run.check(
        lines.len() == 1 + execution.files.len(),
        "a header and one row per file",
    );
    run.check(lines[0].trim_start() == "SIZE  PATH", "header");
    for ((path, bytes), line) in execution.files.iter().zip(&lines[1..]) {
        let expected = format!("{}  {path}", bytes.len());
        run.check(line.trim_start() == expected, &format!("row {expected}"));
    }

    // An exact path that is a directory lists like its prefix; a file lists itself.
    let prefix = execution.prefix.as_str();
    let as_dir = prefix.trim_end_matches('/');
    let run = dir.proctor(&["world", "ls", as_dir, "--json"]).run();
    run.exits(0);
    run.check(
        run.json().as_array().unwrap().len() == execution.files.len() - 1,
        "everything below the write prefix, not the execution receipt",
    );
    let index = execution.prefix.index_path();
    let run = dir
        .proctor(&["world", "ls", index.as_str(), "--json"])
        .run();
    run.exits(0);
    run.check(
        run.json() == json!([{"path": index, "size_bytes": execution.bytes(&index).len()}]),
        "one entry",
    );

    // `cat` writes the stored bytes as they are, UTF-8 or not.
    for (path, bytes) in &execution.files {
        let run = dir.proctor(&["world", "cat", path.as_str()]).run();
        run.exits(0);
        run.check(&run.stdout_bytes == bytes, &format!("bytes of {path}"));
    }

    // The artifacts root comes from the flag, the variable or `--store`, like `run`'s.
    let elsewhere = TestDir::new();
    let root = dir.path().join(".proctor/artifacts").display().to_string();
    let by_flag = elsewhere
        .proctor(&[
            "world",
            "ls",
            "/artifacts/",
            "--json",
            "--artifacts-root",
            &root,
        ])
        .run();
    let by_env = elsewhere
        .proctor(&["world", "ls", "/artifacts/", "--json"])
        .env("PROCTOR_ARTIFACTS_ROOT", &root)
        .run();
    let by_url = elsewhere
        .proctor(&[
            "world",
            "ls",
            "/artifacts/",
            "--json",
            "--store",
            &format!("file://{root}"),
        ])
        .run();
    for run in [by_flag, by_env, by_url] {
        run.exits(0);
        run.check(run.json() == execution.listing(), "same listing");
    }
    let run = elsewhere.proctor(&["world", "ls", "/artifacts/"]).run();
    run.exits(0);
    run.check(
        run.stdout
            .starts_with("(nothing under /artifacts/ in file://"),
        "an empty store lists nothing",
    );
}

#[test]
fn ls_and_cat_refuse_with_canonical_errors() {
    let dir = TestDir::new();
    let execution = write_execution(&dir.path().join(".proctor/artifacts"));
    let missing = format!("{}outputs/absent.txt", execution.prefix.as_str());

    let run = dir.proctor(&["world", "cat", &missing]).run();
    run.exits(ErrorCode::NotFound.exit_code());
    run.check(run.stdout.is_empty(), "nothing on stdout: it carries data");
    run.check(
        run.stderr.contains(&format!(
            "error: ERR_NOT_FOUND: artifact not found: `{missing}`"
        )),
        "the error is on stderr",
    );
    run.check(
        run.stderr.lines().any(|line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|log| log["event"] == "world.fail" && log["code"] == "ERR_NOT_FOUND")
        }),
        "and logged as a JSON line",
    );

    json_error(
        &dir.proctor(&["world", "ls", &missing, "--json"]).run(),
        ErrorCode::NotFound,
        &missing,
    );
    json_error(
        &dir.proctor(&["world", "ls", "/streams/x", "--json"]).run(),
        ErrorCode::BadPath,
        "/artifacts/ paths only",
    );
    json_error(
        &dir.proctor(&["world", "ls", "/artifacts/a/../b", "--json"])
            .run(),
        ErrorCode::DotSegments,
        "",
    );
    let run = dir.proctor(&["world", "cat", "/artifacts/outputs/"]).run();
    run.exits(ErrorCode::SelectorKindMismatch.exit_code());
    let run = dir
        .proctor(&["world", "ls", "/artifacts/", "--store", "gs://bucket/x"])
        .run();
    run.exits(ErrorCode::Store.exit_code());
    run.check(
        run.stdout
            .starts_with("error: ERR_STORE: artifact store error: invalid store location"),
        "a human error",
    );
}

/// Where the S3-compatible test server listens.
fn s3_addr() -> String {
    std::env::var("PROCTOR_TEST_S3").unwrap_or_else(|_| "127.0.0.1:9000".to_owned())
}

/// A bucket created for one test, emptied and deleted on drop.
pub(crate) struct Bucket {
    name: String,
    pub(crate) runtime: tokio::runtime::Runtime,
}

impl Bucket {
    /// Creates a uniquely named bucket; panics loudly when no server answers.
    pub(crate) fn create() -> Bucket {
        let addr = s3_addr();
        let socket: SocketAddr = addr.parse().expect("PROCTOR_TEST_S3 is host:port");
        if let Err(error) = TcpStream::connect_timeout(&socket, Duration::from_secs(5)) {
            panic!(
                "no S3-compatible server answers at {addr} ({error}): run scripts/setup.sh, \
                 which starts one on loopback"
            );
        }
        let bucket = Bucket {
            name: format!("proctor-cli-{}", uuid::Uuid::new_v4().simple()),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        let status = bucket.signed(http::Method::PUT);
        assert!(
            status.is_success(),
            "create bucket {}: HTTP {status}",
            bucket.name
        );
        bucket
    }

    /// The store location a user would give, with key prefix `runs`.
    pub(crate) fn location(&self) -> String {
        self.location_below(KEY_PREFIXES[0])
    }

    /// The store location with key prefix `key_prefix` (one of [`KEY_PREFIXES`]).
    fn location_below(&self, key_prefix: &str) -> String {
        assert!(
            KEY_PREFIXES.contains(&key_prefix),
            "dropping cleans up known prefixes only"
        );
        format!(
            "s3://{}/{key_prefix}?endpoint=http://{}",
            self.name,
            s3_addr()
        )
    }

    /// The bucket's store with key prefix `runs`, with the test credentials.
    pub(crate) fn store(&self) -> std::sync::Arc<dyn ArtifactStore> {
        self.store_below(KEY_PREFIXES[0])
    }

    fn store_below(&self, key_prefix: &str) -> std::sync::Arc<dyn ArtifactStore> {
        proctor_store::open_with_env(&self.location_below(key_prefix), |name| match name {
            "AWS_ACCESS_KEY_ID" => Some(KEY_ID.to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_owned()),
            _ => None,
        })
        .unwrap()
    }

    /// A SigV4-signed request with an empty body on the bucket itself.
    fn signed(&self, method: http::Method) -> http::StatusCode {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}/{}", s3_addr(), self.name))
            .body(HttpRequestBody::empty())
            .unwrap();
        let credential = AwsCredential {
            key_id: KEY_ID.to_owned(),
            secret_key: SECRET.to_owned(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "s3", REGION)
            .try_authorize(&mut request, None)
            .unwrap();
        let http = HttpClient::new(proctor_tls::http_client_builder().build().unwrap());
        self.runtime
            .block_on(http.execute(request))
            .map(|response| response.status())
            .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE)
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Best effort: a panic here would abort a test that is already failing.
        let everything = WorldPath::parse("/artifacts/").unwrap();
        for key_prefix in KEY_PREFIXES {
            let store = self.store_below(key_prefix);
            self.runtime.block_on(async {
                if let Ok(objects) = store.list(&everything).await {
                    for object in objects {
                        let _ = store.delete(&object.path).await;
                    }
                }
            });
        }
        let status = self.signed(http::Method::DELETE);
        if !status.is_success() && !std::thread::panicking() {
            panic!("delete bucket {}: HTTP {status}", self.name);
        }
    }
}

/// `proctor` with the S3 credentials set.
pub(crate) fn with_credentials(command: crate::util::Proctor) -> crate::util::Proctor {
    command
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
}

#[test]
fn ls_and_cat_read_an_s3_bucket() {
    let bucket = Bucket::create();
    let dir = TestDir::new();
    let store = bucket.store();
    let files: [(&str, &[u8]); 3] = [
        ("/artifacts/team/a.txt", b"alpha\n"),
        ("/artifacts/team/sub/b.bin", &[0, 255, 1]),
        ("/artifacts/zz.txt", b""),
    ];
    bucket.runtime.block_on(async {
        for (path, bytes) in files {
            let path = WorldPath::parse(path).unwrap();
            store
                .put(&path, Bytes::copy_from_slice(bytes))
                .await
                .unwrap();
        }
    });
    let location = bucket.location();

    let run = with_credentials(dir.proctor(&[
        "world",
        "ls",
        "/artifacts/team/",
        "--store",
        &location,
        "--json",
    ]))
    .run();
    run.exits(0);
    run.check(
        run.json()
            == json!([
                {"path": "/artifacts/team/a.txt", "size_bytes": 6},
                {"path": "/artifacts/team/sub/b.bin", "size_bytes": 3},
            ]),
        "the prefix, sorted, at any depth",
    );
    let run =
        with_credentials(dir.proctor(&["world", "ls", "/artifacts/", "--store", &location])).run();
    run.exits(0);
    run.check(
        run.stdout.lines().count() == 4 && run.stdout.contains("0  /artifacts/zz.txt"),
        "a table of three",
    );
    for (path, bytes) in files {
        let run =
            with_credentials(dir.proctor(&["world", "cat", path, "--store", &location])).run();
        run.exits(0);
        run.check(run.stdout_bytes == bytes, &format!("bytes of {path}"));
    }
    json_error(
        &with_credentials(dir.proctor(&[
            "world",
            "ls",
            "/artifacts/nope",
            "--store",
            &location,
            "--json",
        ]))
        .run(),
        ErrorCode::NotFound,
        "/artifacts/nope",
    );

    // No credentials: refused before any request, naming the variables, never a value.
    json_error(
        &dir.proctor(&["world", "ls", "/artifacts/", "--store", &location, "--json"])
            .run(),
        ErrorCode::MissingSecret,
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    );
    // A bucket that does not exist is a store error, not an empty listing.
    let absent = location.replace(&bucket.name, &format!("{}-absent", bucket.name));
    let run = with_credentials(dir.proctor(&[
        "world",
        "ls",
        "/artifacts/",
        "--store",
        &absent,
        "--json",
    ]))
    .run();
    json_error(&run, ErrorCode::Store, "NoSuchBucket");
    run.check(!run.stdout.contains(SECRET), "no secret in the output");
}

#[test]
fn sync_publishes_an_execution_to_s3() {
    let bucket = Bucket::create();
    let dir = TestDir::new();
    let execution = write_execution(&dir.path().join(".proctor/artifacts"));
    let location = bucket.location();

    let run = with_credentials(dir.proctor(&[
        "world",
        "sync",
        &execution.id,
        "--to",
        &location,
        "--json",
    ]))
    .run();
    run.exits(0);
    let report = run.json();
    run.check(
        report["execution_id"] == execution.id.as_str(),
        "the execution",
    );
    run.check(
        report["from"]
            .as_str()
            .unwrap()
            .ends_with("/.proctor/artifacts")
            && report["to"] == format!("s3://{}/runs?endpoint=http://{}", bucket.name, s3_addr()),
        "both stores, without credentials",
    );
    let copied = report["copied"].as_array().unwrap();
    run.check(copied.len() == execution.files.len(), "every file copied");
    run.check(
        copied.last().unwrap()["path"]
            == WorldPath::execution_receipt(&execution.id)
                .unwrap()
                .as_str(),
        "the execution receipt last",
    );

    // The bucket now lists and serves exactly what the filesystem holds.
    let run = with_credentials(dir.proctor(&[
        "world",
        "ls",
        "/artifacts/",
        "--store",
        &location,
        "--json",
    ]))
    .run();
    run.exits(0);
    run.check(run.json() == execution.listing(), "same paths and sizes");
    for (path, bytes) in &execution.files {
        let run =
            with_credentials(dir.proctor(&["world", "cat", path.as_str(), "--store", &location]))
                .run();
        run.exits(0);
        run.check(&run.stdout_bytes == bytes, &format!("bytes of {path}"));
    }
    let store = bucket.store();
    let report = bucket
        .runtime
        .block_on(proctor_store::verify_execution(
            store.as_ref(),
            &execution.id,
        ))
        .unwrap();
    assert!(report.ok(), "the published evidence verifies: {report:?}");

    // Human summary, from an explicit source, into another key prefix.
    let other = bucket.location_below("mirror");
    let from = format!("file://{}", dir.path().join(".proctor/artifacts").display());
    let run = with_credentials(dir.proctor(&[
        "world",
        "sync",
        &execution.id,
        "--from",
        &from,
        "--to",
        &other,
    ]))
    .run();
    run.exits(0);
    run.check(
        run.stdout.starts_with(&format!(
            "synced execution {}: {} artifacts",
            execution.id,
            execution.files.len()
        )),
        "a summary",
    );

    json_error(
        &with_credentials(dir.proctor(&[
            "world",
            "sync",
            "no-such-run",
            "--to",
            &location,
            "--json",
        ]))
        .run(),
        ErrorCode::NotFound,
        "/artifacts/execution/no-such-run/receipt.json",
    );
    json_error(
        &with_credentials(dir.proctor(&["world", "sync", "a/b", "--to", &location, "--json"]))
            .run(),
        ErrorCode::BadPath,
        "invalid execution id",
    );
}
