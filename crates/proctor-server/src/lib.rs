//! `proctor serve`: the World over HTTP.
//!
//! One process serves a JSON API under `/v1` (described by the OpenAPI document at
//! `/v1/openapi.json`) and a dashboard at `/`, over the same engine, ledger, store and
//! registry as the CLI. Submitted runs and plans are answered at once with their ids and
//! run in the background (`jobs`); everything else is read from the World: executions and
//! their evidence from the ledger and the store, plans from their chains, and a stream of
//! ledger events as they are appended.
//!
//! **Architecture invariants:** every endpoint but `/healthz` requires the token kept in
//! the project's state directory (`token`); every response carries a restrictive content
//! security policy (`http`); a world path in a request goes through `WorldPath`
//! canonicalization before the store is asked; nothing served is a secret value. Runs go
//! through `Engine::run_as` and plans through `proctor_plan::apply`, so the server records
//! exactly what the CLI would.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod http;
mod jobs;
mod routes;
mod token;

use std::collections::BTreeMap;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proctor_contract::{CanonError, ErrorCode};
use proctor_engine::{CancellationToken, Engine, EngineConfig};
use proctor_ledger::Ledger;

pub use jobs::ShutdownReport;
pub use token::{TOKEN_FILE_NAME, rotate_token};

/// The address `proctor serve` binds when none is given: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8787";

/// Everything `proctor serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The World and the environment runs see, as the CLI's `run` makes it.
    pub engine: EngineConfig,
    /// The Cargo workspace that compiles processors for `build` runs.
    pub cargo_workspace: PathBuf,
    /// Build arguments of Dockerfile builds (`--build-arg`).
    pub build_args: BTreeMap<String, String>,
    /// The project's state directory (`.proctor`), where the token file lives.
    pub state_dir: PathBuf,
    /// How many submitted runs execute at once; later ones wait their turn (`queued`).
    pub max_running: usize,
    /// Warm containers kept per kind of run (0: a fresh container per run).
    pub warm_per_kind: usize,
}

/// What a started server tells its caller once it listens.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The bound address (the port is known even when `:0` was asked for).
    pub addr: SocketAddr,
    /// The token file.
    pub token_file: PathBuf,
    /// The token, when this start created it: shown once, never again.
    pub new_token: Option<String>,
}

/// How long in-flight requests may take to finish once the server shuts down; a client
/// still holding a response after that (a stalled download) is cut off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` is cancelled, then shuts down gracefully: new connections and
/// submissions are refused, queued runs are dropped, running executions and plans are
/// cancelled (their containers removed, the ledger recording how each ended) while
/// in-flight requests finish and event streams end, and the engine is closed, its warm
/// containers removed. `on_listening` is called once the socket is bound.
pub async fn serve(
    config: ServeConfig,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(&Listening),
) -> Result<ShutdownReport, CanonError> {
    let (token, new_token) = token::TokenFile::load_or_create(&config.state_dir)?;
    let engine = Engine::new(config.engine.clone())
        .with_build_args(config.build_args.clone())
        .with_cargo_workspace(config.cargo_workspace.clone());
    let engine = match config.warm_per_kind {
        0 => engine,
        per_kind => engine.with_warm_containers(per_kind),
    };
    let engine = Arc::new(engine);
    let ledger = engine.ledger().await?.clone();
    let cannot_bind = |e: std::io::Error| {
        CanonError::new(
            ErrorCode::Serve,
            format!("cannot bind {}: {e}", config.addr),
        )
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(cannot_bind)?;
    let addr = listener.local_addr().map_err(cannot_bind)?;
    // Cancelled by the caller's token, or by the server itself should it stop on its own.
    let stop = shutdown.child_token();
    let jobs = jobs::Jobs::new(Arc::clone(&engine), config.max_running);
    let state = AppState(Arc::new(Shared {
        engine: Arc::clone(&engine),
        ledger,
        token,
        jobs: jobs.clone(),
        shutdown: stop.clone(),
    }));
    on_listening(&Listening {
        addr,
        token_file: state.0.token.path().to_path_buf(),
        new_token,
    });
    tracing::info!(event = "serve.listening", addr = %addr);
    let app = routes::router(state);
    let stopped = stop.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { stopped.cancelled().await });
    let serving = async {
        let drain_timeout = async {
            stop.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        let served = tokio::select! {
            served = server.into_future() => served
                .map_err(|e| CanonError::new(ErrorCode::Serve, format!("server failed: {e}"))),
            () = drain_timeout => {
                tracing::warn!(
                    event = "serve.drain_timeout",
                    seconds = DRAIN_TIMEOUT.as_secs(),
                    "requests still in flight after the drain were cut off"
                );
                Ok(())
            }
        };
        stop.cancel();
        served
    };
    let stopping = async {
        stop.cancelled().await;
        tracing::info!(
            event = "serve.shutdown",
            "refusing submissions; cancelling jobs"
        );
        jobs.shut_down().await
    };
    let (served, report) = tokio::join!(serving, stopping);
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.close().await,
        // Only a request cut off by the drain timeout still holds it.
        Err(engine) => engine.close_warm().await,
    }
    served.map(|()| report)
}

/// What every handler reads.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Shared>);

#[derive(Debug)]
pub(crate) struct Shared {
    /// The one engine: runs, the World's store, the registry.
    pub(crate) engine: Arc<Engine>,
    /// The engine's ledger.
    pub(crate) ledger: Ledger,
    /// The token every request but `/healthz` must carry.
    pub(crate) token: token::TokenFile,
    /// Submitted runs and plans.
    pub(crate) jobs: jobs::Jobs,
    /// Cancelled when the server shuts down: long responses (event streams) end on it.
    pub(crate) shutdown: CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// One HTTP/1.1 request over a fresh connection; the whole answer as text.
    async fn request(addr: SocketAddr, head: &str, body: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_serves_until_its_token_is_cancelled_then_stops_listening() {
        let dir = tempfile::tempdir().unwrap();
        let engine = jobs::tests::engine(dir.path());
        let config = ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            engine: engine.config().clone(),
            cargo_workspace: dir.path().to_path_buf(),
            build_args: BTreeMap::new(),
            state_dir: dir.path().join(".proctor"),
            max_running: 2,
            warm_per_kind: 1,
        };
        let shutdown = CancellationToken::new();
        let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve(config, shutdown.clone(), move |listening| {
            let _ = listening_tx.send(listening.clone());
        }));
        let listening = listening_rx.await.unwrap();
        let token = listening
            .new_token
            .clone()
            .expect("a first start shows its token");
        assert!(listening.token_file.ends_with(".proctor/serve-token"));

        let health = request(listening.addr, "GET /healthz HTTP/1.1", "").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let submitted = request(
            listening.addr,
            &format!("POST /v1/runs HTTP/1.1\r\nAuthorization: Bearer {token}"),
            crate::routes::test_support::FAILING_RUN,
        )
        .await;
        assert!(submitted.starts_with("HTTP/1.1 202"), "{submitted}");

        shutdown.cancel();
        let report = server.await.unwrap().unwrap();
        assert!(report.dropped_queued.is_empty() && report.cancelled_plans.is_empty());
        assert!(
            tokio::net::TcpStream::connect(listening.addr)
                .await
                .is_err(),
            "nothing listens after the shutdown"
        );
    }
}
