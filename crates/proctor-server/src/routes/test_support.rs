//! The routes' unit tests' server: the whole router in process over a temporary World (an
//! empty registry, a filesystem store, an SQLite ledger) and a fresh token, spoken to with
//! `tower::ServiceExt::oneshot`; no socket, no container.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use proctor_contract::WorldPath;
use proctor_engine::{CancellationToken, Engine, EngineConfig, Limits};
use proctor_ledger::Ledger;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::{AppState, Shared, jobs, token};

/// Pins `text/stats@1` (an edit of its `registry.yaml`) to an image in a registry that
/// does not answer: its runs pass every check before any work.
pub(crate) const UNREACHABLE_PIN: (&str, &str) = (
    "{amd64: null, arm64: null}",
    "{amd64: 127.0.0.1:9/text-stats@sha256:5c1e8e3b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6, \
     arm64: 127.0.0.1:9/text-stats@sha256:5c1e8e3b7a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6}",
);

/// A run of `text/stats@1` pinned by [`UNREACHABLE_PIN`] that is admitted, recorded, and
/// fails at once in the background with no container: Modal is not configured.
pub(crate) const FAILING_RUN: &str = r#"{"ref":"text/stats@1","mode":"mock","adapter":"modal"}"#;

/// A router over a World in a temporary directory.
pub(crate) struct TestServer {
    pub(crate) state: AppState,
    pub(crate) token: String,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) async fn new() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("processors")).unwrap();
        let config = EngineConfig {
            registry_root: root.join("processors"),
            artifacts_root: root.join("artifacts"),
            ledger_url: format!("sqlite://{}/state/ledger.db", root.display()),
            env: BTreeMap::new(),
            limits: Limits::default(),
        };
        let engine = Arc::new(Engine::new(config));
        let ledger = engine.ledger().await.unwrap().clone();
        let (token_file, token) = token::TokenFile::load_or_create(&root.join("state")).unwrap();
        let state = AppState(Arc::new(Shared {
            jobs: jobs::Jobs::new(Arc::clone(&engine), 1),
            engine,
            ledger,
            token: token_file,
            shutdown: CancellationToken::new(),
        }));
        TestServer {
            state,
            token: token.unwrap(),
            _dir: dir,
        }
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.state.ledger
    }

    pub(crate) fn router(&self) -> Router {
        super::router(self.state.clone())
    }

    /// Copies the workspace's `processors/{dir}/registry.yaml` into the server's registry,
    /// with each `(from, to)` text replaced.
    pub(crate) fn add_processor(&self, dir: &str, edits: &[(&str, &str)]) {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../processors")
            .join(dir)
            .join("registry.yaml");
        let mut text = std::fs::read_to_string(&source).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "{from} not in {}", source.display());
            text = text.replace(from, to);
        }
        let target = self.state.engine.config().registry_root.join(dir);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("registry.yaml"), text).unwrap();
    }

    /// Writes `bytes` at the world path `path` of the server's store.
    pub(crate) async fn put(&self, path: &str, bytes: &[u8]) {
        let path = WorldPath::parse(path).unwrap();
        self.state
            .engine
            .store()
            .put(&path, bytes.to_vec().into())
            .await
            .unwrap();
    }

    /// A request to `uri` carrying the token.
    pub(crate) fn authorized(&self, method: Method, uri: &str) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Body::empty())
            .unwrap()
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> Response {
        self.router().oneshot(request).await.unwrap()
    }

    /// `method uri` with the token.
    pub(crate) async fn request(&self, method: Method, uri: &str) -> Response {
        self.send(self.authorized(method, uri)).await
    }

    /// `GET uri` with the token, its status and JSON body.
    pub(crate) async fn get_json(&self, uri: &str) -> (StatusCode, Value) {
        let response = self.request(Method::GET, uri).await;
        let status = response.status();
        let body = TestServer::body(response).await;
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("{uri}: {e}: {}", String::from_utf8_lossy(&body));
        });
        (status, json)
    }

    /// The whole body of `response`.
    pub(crate) async fn body(response: Response) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }
}
