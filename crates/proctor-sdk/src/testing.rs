//! Test support (feature `testing`): a processor served in-process on 127.0.0.1 with a
//! temporary artifacts root, helpers to post payloads and read what a run wrote, a fake
//! OpenAI-compatible endpoint, and a processor package's `registry.yaml` checked against its
//! definition.
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
    ArtifactRef, Envelope, ErrorCode, Mode, ProcessorRef, Receipt, SuccessEnvelope, WorldPath,
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
            client: proctor_tls::http_client_builder()
                .build()
                .expect("an HTTP client without settings builds"),
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
            "write_prefix": write_prefix(execution_id),
        })
    }

    /// The outputs `envelope` lists, each as (its path under the run's write prefix, mime),
    /// in the envelope's order.
    ///
    /// # Panics
    /// When an output lies outside the write prefix of [`TestServer::payload`].
    pub fn written_outputs(&self, envelope: &SuccessEnvelope) -> Vec<(String, String)> {
        let prefix = write_prefix(&envelope.execution_id);
        envelope
            .outputs
            .iter()
            .map(|output| {
                let relative = output
                    .path
                    .as_str()
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{} is outside {prefix}", output.path));
                (relative.to_owned(), output.mime.clone())
            })
            .collect()
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

    /// Stores `bytes` as the attachment file `file_name` would be stored
    /// (`/artifacts/inputs/{cid}/{file_name}`) and returns its `$artifact` reference with
    /// media type `mime`, for inputs that name an input artifact.
    ///
    /// # Panics
    /// When the name cannot name an input artifact or the file cannot be written.
    pub fn attach(&self, file_name: &str, bytes: &[u8], mime: &str) -> ArtifactRef {
        let cid = proctor_contract::cid(bytes);
        let path = proctor_contract::attachment_path(&cid, file_name).expect("a file name");
        let file = self.fs_path(&path);
        fs::create_dir_all(file.parent().expect("a directory")).expect("the inputs directory");
        fs::write(&file, bytes).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        ArtifactRef {
            path,
            cid,
            mime: mime.to_owned(),
        }
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

/// The write prefix of [`TestServer::payload`]: `/artifacts/outputs/test/{execution_id}/`.
fn write_prefix(execution_id: &str) -> String {
    format!("/artifacts/outputs/test/{execution_id}/")
}

/// A processor package's `registry.yaml`, parsed.
pub struct RegistryEntry {
    yaml: Value,
}

impl RegistryEntry {
    /// Reads `{manifest_dir}/registry.yaml` (pass `env!("CARGO_MANIFEST_DIR")`).
    ///
    /// # Panics
    /// When the file cannot be read or is not YAML.
    pub fn read(manifest_dir: &str) -> RegistryEntry {
        let path = Path::new(manifest_dir).join("registry.yaml");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let yaml = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        RegistryEntry { yaml }
    }

    /// The whole entry.
    pub fn yaml(&self) -> &Value {
        &self.yaml
    }

    /// The inputs of the example `name` (`Null` when there is none).
    pub fn example(&self, name: &str) -> Value {
        self.yaml["examples"][name]["inputs"].clone()
    }

    /// The declared outputs as `(outputs/{path}, mime)`, sorted.
    ///
    /// # Panics
    /// When `outputs` is not a list of `{path, mime}` strings.
    pub fn declared_outputs(&self) -> Vec<(String, String)> {
        let mut declared: Vec<(String, String)> = self.yaml["outputs"]
            .as_array()
            .expect("an outputs list")
            .iter()
            .map(|output| {
                (
                    format!("outputs/{}", output["path"].as_str().expect("a path")),
                    output["mime"].as_str().expect("a mime type").to_owned(),
                )
            })
            .collect();
        declared.sort();
        declared
    }

    /// Asserts the entry agrees with `definition` and its package: the ref, the cargo package
    /// (pass `env!("CARGO_PKG_NAME")`), the required secrets, the pass-through env and an
    /// unpinned image; and that every example validates against the inputs schema. Returns
    /// that schema's validator for the package's own cases.
    ///
    /// # Panics
    /// When any of these disagree or the inputs schema does not compile.
    pub fn assert_agrees_with(
        &self,
        definition: &ProcessorDefinition,
        cargo_package: &str,
    ) -> jsonschema::Validator {
        let yaml = &self.yaml;
        assert_eq!(yaml["ref"], definition.processor_ref().to_string());
        assert_eq!(yaml["build"]["cargo_package"], cargo_package);
        assert_eq!(
            yaml["secrets"]["required"],
            json!(definition.required_secrets())
        );
        assert_eq!(yaml["env"], json!(definition.passthrough_env()));
        assert_eq!(
            yaml["image"],
            json!({"index": null, "platforms": {"amd64": null, "arm64": null}})
        );
        let shared = jsonschema::Registry::new()
            .add(
                proctor_contract::ARTIFACT_SCHEMA_ID,
                jsonschema::Resource::from_contents(proctor_contract::artifact_schema()),
            )
            .and_then(jsonschema::RegistryBuilder::prepare)
            .expect("the input artifact schema is a valid resource");
        let schema = jsonschema::options()
            .with_registry(&shared)
            .build(&yaml["inputs"])
            .expect("an inputs schema");
        for (name, example) in yaml["examples"].as_object().expect("an examples map") {
            assert!(schema.is_valid(&example["inputs"]), "example {name}");
        }
        schema
    }
}

/// A request a [`FakeChatEndpoint`] received: its `Authorization` header and JSON body.
pub type SeenRequest = (Option<String>, Value);

/// Asserts that a planner's proposal holds valid transitions of a plan file: the
/// workspace's `schemas/plan.schema.json`, whose `$defs/transition` a plan applies to
/// proposals.
pub fn assert_valid_proposal(proposal: &Value) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/plan.schema.json"
    );
    let schema: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let plan = json!({"plan": "proposal", "transitions": proposal["transitions"]});
    let errors: Vec<String> = validator
        .iter_errors(&plan)
        .map(|error| error.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

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
