//! A container engine for unit tests: it records every call, and its "container" is a task
//! serving `/healthz` and `/run` where the adapter looks for them (the socket directory
//! mounted into a `mock` container, or a loopback port it reports as published), behaving
//! as a [`Script`] says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bollard::models::ContainerCreateBody;
use futures_util::future::BoxFuture;
use proctor_contract::{
    CanonError, Envelope, ErrorCode, Health, PinnedReference, ProcessorRef, Progress, RunPayload,
    SuccessMeta, WritePrefix,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::container::{SOCKET_DIR, SOCKET_NAME};
use crate::dockerfile_build::DockerfileBuild;
use crate::engine::{ContainerEngine, Removal};
use crate::image_build::{BuiltImage, ImageBuild};
use crate::image_pin::PinnedImage;

/// How an engine request behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Step {
    /// Succeeds at once.
    #[default]
    Succeeds,
    /// Succeeds after a while, even when the caller stops waiting (as an engine does).
    Lands(Duration),
    /// Fails with an engine error.
    Fails,
    /// Never answers.
    Hangs,
}

/// What the processor in the container does once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Processor {
    /// Answers `/healthz` and `/run` with a success envelope.
    #[default]
    Answers,
    /// Answers `/healthz`; `/run` never answers.
    HangsOnRun,
    /// Exits with this code before serving anything.
    ExitsAtStart(i64),
    /// Answers `/healthz`, then exits with this code when `/run` arrives.
    ExitsOnRun(i64),
}

/// How the engine and its container behave.
#[derive(Debug, Clone, Default)]
pub(crate) struct Script {
    pub(crate) image: Step,
    pub(crate) create: Step,
    pub(crate) start: Step,
    pub(crate) remove: Step,
    /// How `/_ping` behaves once the container has started (before, it succeeds).
    pub(crate) ping: Step,
    pub(crate) processor: Processor,
    /// The container's output.
    pub(crate) logs: String,
}

/// One call the adapter made, in the order the engine saw it (a create when it lands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    ImageId(String),
    Create(String),
    Start(String),
    PublishedPort(String),
    LogTail(String),
    Remove(String),
    ListLabelled(String),
}

/// The engine's state, shared with the tasks it spawns.
#[derive(Debug, Default)]
struct Recorded {
    calls: Vec<Call>,
    /// The last create request's body.
    body: Option<ContainerCreateBody>,
    /// The name of the container that exists, if any.
    container: Option<String>,
    /// The loopback port the container serves on (bridge network).
    port: Option<u16>,
    /// The task serving as the container's processor.
    processor: Option<JoinHandle<()>>,
}

/// The recording test double.
#[derive(Debug)]
pub(crate) struct RecordingEngine {
    script: Script,
    recorded: Arc<Mutex<Recorded>>,
    exit: watch::Sender<Option<i64>>,
    /// Notified when the processor receives `/run`.
    run_received: Arc<Notify>,
}

impl RecordingEngine {
    pub(crate) fn new(script: Script) -> Arc<RecordingEngine> {
        Arc::new(RecordingEngine {
            script,
            recorded: Arc::default(),
            exit: watch::channel(None).0,
            run_received: Arc::default(),
        })
    }

    /// Every call so far.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.recorded.lock().unwrap().calls.clone()
    }

    /// The body of the container created last.
    pub(crate) fn created_body(&self) -> Option<ContainerCreateBody> {
        self.recorded.lock().unwrap().body.clone()
    }

    /// Resolves once the processor has received `/run`.
    pub(crate) async fn run_received(&self) {
        self.run_received.notified().await;
    }

    /// Waits (bounded) until a call satisfies `wanted`; returns whether one did.
    pub(crate) async fn await_call(&self, wanted: impl Fn(&Call) -> bool) -> bool {
        for _ in 0..500 {
            if self.calls().iter().any(&wanted) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Whether the container has been started.
    fn started(&self) -> bool {
        self.calls()
            .iter()
            .any(|call| matches!(call, Call::Start(_)))
    }

    fn record(&self, call: Call) {
        self.recorded.lock().unwrap().calls.push(call);
    }

    /// Plays `step`, then `landed` on success.
    async fn play(step: Step, landed: impl FnOnce() + Send + 'static) -> Result<(), CanonError> {
        match step {
            Step::Succeeds => {
                landed();
                Ok(())
            }
            Step::Lands(after) => tokio::spawn(async move {
                tokio::time::sleep(after).await;
                landed();
            })
            .await
            .map_err(|error| engine_failure(&error.to_string())),
            Step::Fails => Err(engine_failure("the script says so")),
            Step::Hangs => std::future::pending().await,
        }
    }

    /// Starts the processor task, where the body says the adapter will look for it.
    async fn start_processor(&self, body: &ContainerCreateBody) {
        let env = body.env.clone().unwrap_or_default();
        let digest = env
            .iter()
            .find_map(|entry| entry.strip_prefix("PROCTOR_IMAGE_DIGEST="))
            .unwrap_or_default()
            .to_owned();
        let state = ProcessorState {
            processor: self.script.processor,
            digest,
            exit: self.exit.clone(),
            run_received: Arc::clone(&self.run_received),
        };
        if let Processor::ExitsAtStart(code) = self.script.processor {
            self.exit.send_replace(Some(code));
            return;
        }
        let router = Router::new()
            .route("/healthz", get(healthz))
            .route("/run", post(run))
            .with_state(Arc::new(state));
        let socket = body
            .host_config
            .iter()
            .flat_map(|host| host.mounts.iter().flatten())
            .find(|mount| mount.target.as_deref() == Some(SOCKET_DIR))
            .and_then(|mount| mount.source.clone());
        let task = match socket {
            Some(dir) => {
                let listener =
                    tokio::net::UnixListener::bind(format!("{dir}/{SOCKET_NAME}")).unwrap();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router).await;
                })
            }
            None => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                self.recorded.lock().unwrap().port = Some(listener.local_addr().unwrap().port());
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router).await;
                })
            }
        };
        self.recorded.lock().unwrap().processor = Some(task);
    }
}

impl ContainerEngine for RecordingEngine {
    fn negotiate(&self) -> BoxFuture<'_, Result<(), CanonError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn image_id<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<String, CanonError>> {
        Box::pin(async move {
            self.record(Call::ImageId(image.to_owned()));
            RecordingEngine::play(self.script.image, || {}).await?;
            Ok(image.to_owned())
        })
    }

    fn ensure_pinned_image<'a>(
        &'a self,
        _reference: &'a PinnedReference,
        _progress: &'a Progress,
    ) -> BoxFuture<'a, Result<PinnedImage, CanonError>> {
        Box::pin(async { Err(engine_failure("pins are not part of the double")) })
    }

    fn build_image<'a>(
        &'a self,
        _build: &'a ImageBuild<'a>,
        _progress: &'a Progress,
    ) -> BoxFuture<'a, Result<BuiltImage, CanonError>> {
        Box::pin(async { Err(engine_failure("builds are not part of the double")) })
    }

    fn build_dockerfile_image<'a>(
        &'a self,
        _build: &'a DockerfileBuild<'a>,
    ) -> BoxFuture<'a, Result<BuiltImage, CanonError>> {
        Box::pin(async { Err(engine_failure("builds are not part of the double")) })
    }

    fn create_container<'a>(
        &'a self,
        name: &'a str,
        body: ContainerCreateBody,
    ) -> BoxFuture<'a, Result<(), CanonError>> {
        let recorded = Arc::clone(&self.recorded);
        let name = name.to_owned();
        Box::pin(RecordingEngine::play(self.script.create, move || {
            let mut recorded = recorded.lock().unwrap();
            recorded.calls.push(Call::Create(name.clone()));
            recorded.body = Some(body);
            recorded.container = Some(name);
        }))
    }

    fn start_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), CanonError>> {
        Box::pin(async move {
            self.record(Call::Start(name.to_owned()));
            RecordingEngine::play(self.script.start, || {}).await?;
            let body = self.created_body().expect("started before created");
            self.start_processor(&body).await;
            Ok(())
        })
    }

    fn exit_code<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, i64> {
        let mut exit = self.exit.subscribe();
        Box::pin(async move {
            let code = exit
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|code| *code);
            match code {
                Some(code) => code,
                None => std::future::pending().await,
            }
        })
    }

    fn log_tail<'a>(&'a self, name: &'a str, _lines: usize) -> BoxFuture<'a, String> {
        Box::pin(async move {
            self.record(Call::LogTail(name.to_owned()));
            self.script.logs.clone()
        })
    }

    fn published_port<'a>(
        &'a self,
        name: &'a str,
        _container_port: &'a str,
    ) -> BoxFuture<'a, Result<Option<u16>, CanonError>> {
        Box::pin(async move {
            self.record(Call::PublishedPort(name.to_owned()));
            Ok(self.recorded.lock().unwrap().port)
        })
    }

    fn remove_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Removal, CanonError>> {
        Box::pin(async move {
            self.record(Call::Remove(name.to_owned()));
            RecordingEngine::play(self.script.remove, || {}).await?;
            let mut recorded = self.recorded.lock().unwrap();
            if let Some(processor) = recorded.processor.take() {
                processor.abort();
            }
            Ok(match recorded.container.take() {
                Some(existing) if existing == name => Removal::Removed,
                _ => Removal::Absent,
            })
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), CanonError>> {
        Box::pin(async move {
            if self.started() {
                RecordingEngine::play(self.script.ping, || {}).await
            } else {
                Ok(())
            }
        })
    }

    fn labelled_containers<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, CanonError>> {
        Box::pin(async move {
            self.record(Call::ListLabelled(format!("{label}={value}")));
            Ok(self
                .label_of_existing(label)
                .filter(|(_, found)| found == value)
                .map(|(name, _)| name)
                .into_iter()
                .collect())
        })
    }

    fn removed<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<(), CanonError>> {
        // Removals land at once here.
        Box::pin(std::future::ready(Ok(())))
    }

    fn signal<'a>(
        &'a self,
        _name: &'a str,
        _signal: &'a str,
    ) -> BoxFuture<'a, Result<(), CanonError>> {
        // The processor stops as a signalled process does.
        self.exit.send_replace(Some(143));
        Box::pin(std::future::ready(Ok(())))
    }

    fn image_user<'a>(
        &'a self,
        _image: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CanonError>> {
        Box::pin(std::future::ready(Ok(Some("65532:65532".to_owned()))))
    }
}

impl RecordingEngine {
    /// The value of `label` on the container that exists, if any.
    fn label_of_existing(&self, label: &str) -> Option<(String, String)> {
        let recorded = self.recorded.lock().unwrap();
        let name = recorded.container.clone()?;
        let labels = recorded.body.as_ref()?.labels.as_ref()?;
        Some((name, labels.get(label)?.clone()))
    }
}

fn engine_failure(why: &str) -> CanonError {
    CanonError::new(
        ErrorCode::AdapterInvocation,
        format!("docker engine: {why}"),
    )
}

/// What the processor task knows.
struct ProcessorState {
    processor: Processor,
    digest: String,
    exit: watch::Sender<Option<i64>>,
    run_received: Arc<Notify>,
}

async fn healthz(State(state): State<Arc<ProcessorState>>) -> Response {
    axum::Json(Health::ready(
        state.digest.clone(),
        "text/stats@1".parse::<ProcessorRef>().unwrap(),
    ))
    .into_response()
}

async fn run(
    State(state): State<Arc<ProcessorState>>,
    axum::Json(payload): axum::Json<RunPayload>,
) -> Response {
    state.run_received.notify_one();
    match state.processor {
        Processor::HangsOnRun => std::future::pending().await,
        Processor::ExitsOnRun(code) => {
            state.exit.send_replace(Some(code));
            std::future::pending().await
        }
        Processor::Answers | Processor::ExitsAtStart(_) => {
            let prefix = WritePrefix::from_expanded(&payload.write_prefix).unwrap();
            let meta = SuccessMeta {
                image_digest: state.digest.clone(),
                env_fingerprint: "mode=mock".to_owned(),
                duration_ms: 1,
                mode: payload.mode,
            };
            let envelope =
                Envelope::success(&payload.execution_id, Vec::new(), prefix.index_path(), meta);
            axum::Json(envelope).into_response()
        }
    }
}
