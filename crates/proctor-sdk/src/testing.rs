//! Test support (feature `testing`): a processor served in-process on 127.0.0.1 with a
//! temporary artifacts root, helpers to post payloads and read what a run wrote, and a fake
//! OpenAI-compatible endpoint.
//!
//! Helpers panic on failure, as test code does; never use them outside tests.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};

use proctor_contract::{
    Envelope, ErrorCode, Mode, ProcessorRef, Receipt, SuccessEnvelope, WorldPath,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::{ProcessorDefinition, ServerConfig, artifacts};

/// The image digest a [`TestServer`] reports.
pub const TEST_IMAGE_DIGEST: &str = "sha256:test";

/// A processor served in-process on an ephemeral 127.0.0.1 port; it stops and its
/// artifacts root is deleted when dropped.
pub struct TestServer {
    addr: SocketAddr,
    processor_ref: ProcessorRef,
    artifacts: tempfile::TempDir,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    /// Serves `definition` with `env` as its process environment (plus
    /// `PROCTOR_IMAGE_DIGEST` = [`TEST_IMAGE_DIGEST`] and a temporary
    /// `PROCTOR_ARTIFACTS_ROOT`). Must be called within a Tokio runtime.
    ///
    /// # Panics
    /// When the temporary directory or the listener cannot be created.
    pub async fn start(definition: ProcessorDefinition, env: &[(&str, &str)]) -> TestServer {
        let artifacts = tempfile::tempdir().expect("a temporary artifacts root");
        let mut vars = vec![
            (
                "PROCTOR_IMAGE_DIGEST".to_owned(),
                TEST_IMAGE_DIGEST.to_owned(),
            ),
            (
                "PROCTOR_ARTIFACTS_ROOT".to_owned(),
                artifacts.path().display().to_string(),
            ),
        ];
        vars.extend(
            env.iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        let config = ServerConfig::from_vars(vars).expect("a valid test configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a 127.0.0.1 listener");
        let addr = listener.local_addr().expect("the listener's address");
        let processor_ref = definition.processor_ref().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(crate::serve_on(listener, config, definition, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            processor_ref,
            artifacts,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An HTTP client for requests of the test's own.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The directory backing `/artifacts/`.
    pub fn artifacts_root(&self) -> &Path {
        self.artifacts.path()
    }

    /// A `RunPayload` for this processor, writing under
    /// `/artifacts/outputs/test/{execution_id}/`.
    pub fn payload(&self, execution_id: &str, mode: Mode, inputs: Value) -> Value {
        json!({
            "schema": "v1",
            "execution_id": execution_id,
            "ref": self.processor_ref,
            "mode": mode,
            "inputs": inputs,
            "write_prefix": format!("/artifacts/outputs/test/{execution_id}/"),
        })
    }

    /// Posts `body` as JSON to `path` and returns the status and the validated envelope.
    ///
    /// # Panics
    /// When the request fails or the answer is not a JSON envelope.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Envelope) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("a response");
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").cloned();
        assert_eq!(
            content_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let bytes = response.bytes().await.expect("a response body");
        (status, Envelope::from_slice(&bytes).expect("an envelope"))
    }

    /// Posts [`TestServer::payload`] to `/run`.
    pub async fn run(&self, execution_id: &str, mode: Mode, inputs: Value) -> (u16, Envelope) {
        self.post("/run", &self.payload(execution_id, mode, inputs))
            .await
    }

    /// Runs and requires success.
    ///
    /// # Panics
    /// When the run does not succeed.
    pub async fn run_ok(&self, execution_id: &str, mode: Mode, inputs: Value) -> SuccessEnvelope {
        match self.run(execution_id, mode, inputs).await {
            (200, Envelope::Success(success)) => success,
            (status, envelope) => panic!("expected success, got {status}: {envelope:?}"),
        }
    }

    /// Runs and requires an error; returns the status, code and message.
    ///
    /// # Panics
    /// When the run succeeds.
    pub async fn run_err(
        &self,
        execution_id: &str,
        mode: Mode,
        inputs: Value,
    ) -> (u16, ErrorCode, String) {
        match self.run(execution_id, mode, inputs).await {
            (status, Envelope::Error(error)) => (status, error.error.code, error.error.message),
            (status, envelope) => panic!("expected an error, got {status}: {envelope:?}"),
        }
    }

    /// The file backing a world path.
    pub fn fs_path(&self, path: &WorldPath) -> PathBuf {
        artifacts::fs_path(self.artifacts_root(), path)
    }

    /// The bytes at a world path.
    ///
    /// # Panics
    /// When the file cannot be read.
    pub fn read(&self, path: &WorldPath) -> Vec<u8> {
        fs::read(self.fs_path(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    /// The bytes of the output named `relative` (under `outputs/`) in `envelope`.
    ///
    /// # Panics
    /// When the envelope lists no such output.
    pub fn output(&self, envelope: &SuccessEnvelope, relative: &str) -> Vec<u8> {
        let prefix = envelope
            .index_path
            .as_str()
            .strip_suffix("outputs.json")
            .expect("an index path");
        let path =
            WorldPath::parse(&format!("{prefix}outputs/{relative}")).expect("an output path");
        assert!(
            envelope.outputs.iter().any(|entry| entry.path == path),
            "no output {relative} in {:?}",
            envelope.outputs
        );
        self.read(&path)
    }

    /// The receipt under `/artifacts/execution/{execution_id}/`, after checking it is
    /// byte-identical to the one under the write prefix.
    ///
    /// # Panics
    /// When either receipt is missing, they differ, or it does not parse.
    pub fn receipt(&self, envelope: &SuccessEnvelope) -> Receipt {
        let execution =
            WorldPath::execution_receipt(&envelope.execution_id).expect("a receipt path");
        let bytes = self.read(&execution);
        let prefix = envelope
            .index_path
            .as_str()
            .strip_suffix("outputs.json")
            .expect("an index path");
        let prefixed = WorldPath::parse(&format!("{prefix}receipt.json")).expect("a receipt path");
        assert_eq!(self.read(&prefixed), bytes, "the two receipts differ");
        serde_json::from_slice(&bytes).expect("a receipt")
    }

    /// Every file and directory under the artifacts root, relative, sorted.
    pub fn listing(&self) -> Vec<String> {
        let root = self.artifacts_root();
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            let entries =
                fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                out.push(
                    path.strip_prefix(root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

/// A request a [`FakeChatEndpoint`] received: its `Authorization` header and JSON body.
pub type SeenRequest = (Option<String>, Value);

/// A fake OpenAI-compatible endpoint on an ephemeral 127.0.0.1 port: `POST
/// /v1/chat/completions` records each request and answers the same status and JSON body.
/// It stops when dropped.
pub struct FakeChatEndpoint {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    _stop: oneshot::Sender<()>,
}

impl FakeChatEndpoint {
    /// Serves `answer` with HTTP status `status`. Must be called within a Tokio runtime.
    ///
    /// # Panics
    /// When `status` is not a valid status code or the listener cannot be created.
    pub async fn start(status: u16, answer: Value) -> FakeChatEndpoint {
        let status = StatusCode::from_u16(status).expect("a valid status code");
        let seen = Arc::<Mutex<Vec<SeenRequest>>>::default();
        let handler = move |State(seen): State<Arc<Mutex<Vec<SeenRequest>>>>,
                            headers: HeaderMap,
                            Json(body): Json<Value>| {
            let answer = answer.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .map(|v| v.to_str().expect("an ASCII header").to_owned());
                seen.lock()
                    .expect("the request log")
                    .push((authorization, body));
                (status, Json(answer))
            }
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(handler))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a 127.0.0.1 listener");
        let addr = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        FakeChatEndpoint {
            addr,
            seen,
            _stop: stop,
        }
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a client is given: `http://{addr}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The requests received so far, oldest first.
    ///
    /// # Panics
    /// When a request handler panicked.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("the request log").clone()
    }
}
