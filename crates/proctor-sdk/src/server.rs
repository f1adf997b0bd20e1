//! The HTTP contract: `GET /healthz`, `POST /run`, `POST /run-stream`, served with axum
//! until SIGTERM or Ctrl-C.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use proctor_contract::Health;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::config::ENV_SOCKET;
use crate::run::{Accepted, Outcome, Runner, Stage};
use crate::{ProcessorDefinition, SdkError, ServerConfig};

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Initializes JSON logging — the values of the processor's secrets and pass-through
/// variables redacted, panics logged as `process.panic` rather than printed raw — then
/// serves `definition` as [`serve`] does until SIGTERM or Ctrl-C. The whole `main` of a
/// processor.
pub fn serve_main(definition: ProcessorDefinition) -> ExitCode {
    let config = match ServerConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            // Logging is not set up yet: the configuration error goes to stderr as it is.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let declared: Vec<String> = definition
        .required_secrets()
        .iter()
        .chain(definition.passthrough_env())
        .cloned()
        .collect();
    proctor_telemetry::init(
        proctor_telemetry::redactor_from_env(&declared),
        tracing::Level::INFO,
    );
    std::panic::set_hook(Box::new(|panic| {
        tracing::error!(event = "process.panic", panic = %panic);
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(event = "server.fail", error = %error);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_with(config, definition)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(event = "server.fail", error = %error);
            ExitCode::FAILURE
        }
    }
}

/// Serves `definition` on `PROCTOR_BIND:PROCTOR_PORT` (or the unix socket `PROCTOR_SOCKET`
/// when set) with the configuration read from the environment ([`ServerConfig::from_env`])
/// until SIGTERM or Ctrl-C.
pub async fn serve(definition: ProcessorDefinition) -> Result<(), SdkError> {
    serve_with(ServerConfig::from_env()?, definition).await
}

async fn serve_with(config: ServerConfig, definition: ProcessorDefinition) -> Result<(), SdkError> {
    if let Some(socket) = config.var(ENV_SOCKET).map(PathBuf::from) {
        return serve_on_socket(&socket, config, definition, shutdown_signal()).await;
    }
    let addr = config.socket_addr();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SdkError::Bind { addr, source })?;
    serve_on(listener, config, definition, shutdown_signal()).await
}

/// Serves `definition` on an already bound listener (port 0 gives an ephemeral port; ask
/// the listener for it) until `shutdown` completes; in-flight runs finish first.
pub async fn serve_on(
    listener: TcpListener,
    config: ServerConfig,
    definition: ProcessorDefinition,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SdkError> {
    let addr = listener.local_addr().map_err(SdkError::Serve)?;
    tracing::info!(
        event = "server.listening",
        addr = %addr,
        processor_ref = %definition.processor_ref(),
        image_digest = config.image_digest.as_deref().unwrap_or_default(),
    );
    axum::serve(listener, router(config, definition))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(SdkError::Serve)?;
    tracing::info!(event = "server.stopped", addr = %addr);
    Ok(())
}

/// Serves `definition` on the unix socket `path` (replacing a stale socket file) until
/// `shutdown` completes, then removes the socket file. The local adapter uses this in `mock` mode, where the container
/// has no network: it mounts a host directory and sets `PROCTOR_SOCKET`.
pub async fn serve_on_socket(
    path: &Path,
    config: ServerConfig,
    definition: ProcessorDefinition,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SdkError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(SdkError::Serve(error));
        }
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(SdkError::Serve)?;
    tracing::info!(
        event = "server.listening",
        socket = %path.display(),
        processor_ref = %definition.processor_ref(),
        image_digest = config.image_digest.as_deref().unwrap_or_default(),
    );
    let served = axum::serve(listener, router(config, definition))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(SdkError::Serve);
    if let Err(error) = std::fs::remove_file(path) {
        tracing::warn!(event = "server.socket_left", socket = %path.display(), %error);
    }
    served?;
    tracing::info!(event = "server.stopped", socket = %path.display());
    Ok(())
}

/// The contract's routes, over one shared runner whose set-up step starts now.
fn router(config: ServerConfig, definition: ProcessorDefinition) -> Router {
    let runner = Arc::new(Runner::new(config, definition));
    tokio::spawn({
        let runner = Arc::clone(&runner);
        async move { runner.set_up().await }
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/run", post(run))
        .route("/run-stream", post(run_stream))
        .with_state(runner)
}

/// Completes on SIGTERM (unix) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

async fn healthz(State(runner): State<Arc<Runner>>) -> (StatusCode, Json<Health>) {
    let health = runner.health();
    let status =
        StatusCode::from_u16(health.state.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, Json(health))
}

/// Reads and checks a request and takes a run slot for it, or answers it with an error
/// envelope (a busy one when every slot is taken).
async fn accept(
    runner: &Runner,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Accepted, OwnedSemaphorePermit), Box<Outcome>> {
    let started = Instant::now();
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("(not text)"));
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
    let body = match &bytes {
        Ok(bytes) => Ok(bytes.as_ref()),
        Err(error) => Err(format!("{error} (limit {MAX_BODY_BYTES} bytes)")),
    };
    let accepted = runner.accept(content_type, body, started)?;
    let slot = runner.claim_slot(&accepted)?;
    Ok((accepted, slot))
}

/// Runs an accepted payload on its own task, so a dropped connection never stops a run
/// halfway; its slot is free again once the run has ended.
async fn execute_detached(
    runner: Arc<Runner>,
    (accepted, slot): (Accepted, OwnedSemaphorePermit),
    progress: impl Fn(Stage) + Send + Sync + 'static,
) -> Outcome {
    let execution_id = accepted.execution_id().to_owned();
    let mode = accepted.mode();
    let started = accepted.started();
    let task = tokio::spawn({
        let runner = Arc::clone(&runner);
        async move {
            let outcome = runner.execute(accepted, &progress).await;
            drop(slot);
            outcome
        }
    });
    task.await
        .unwrap_or_else(|error| runner.stopped(&execution_id, mode, started, error))
}

async fn run(State(runner): State<Arc<Runner>>, headers: HeaderMap, body: Body) -> Response {
    match accept(&runner, &headers, body).await {
        Ok(accepted) => execute_detached(runner, accepted, |_| {})
            .await
            .into_response(),
        Err(outcome) => outcome.into_response(),
    }
}

async fn run_stream(State(runner): State<Arc<Runner>>, headers: HeaderMap, body: Body) -> Response {
    let accepted = match accept(&runner, &headers, body).await {
        Ok(accepted) => accepted,
        Err(outcome) => return outcome.into_response(),
    };
    let (events, receiver) = mpsc::unbounded_channel::<Event>();
    let progress_events = events.clone();
    tokio::spawn(async move {
        let progress = move |stage: Stage| {
            let data = serde_json::json!({ "stage": stage.as_str() }).to_string();
            // A closed stream means the client left; the run still completes.
            let _ = progress_events.send(Event::default().event("progress").data(data));
        };
        let outcome = execute_detached(runner, accepted, progress).await;
        let _ = events.send(
            Event::default()
                .event("done")
                .data(outcome.envelope.to_json_line()),
        );
    });
    Sse::new(event_stream(receiver))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The events of one run, ending when the run's task drops its senders.
fn event_stream(
    receiver: mpsc::UnboundedReceiver<Event>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    })
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        (
            self.status,
            [(CONTENT_TYPE, "application/json")],
            self.envelope.to_json_line(),
        )
            .into_response()
    }
}
