//! `llm/litellm@2`, the Python processor, end to end: `proctor run --build` has the engine
//! build its Dockerfile (wheels fetched on the host, no network in the build) on the local
//! Python base image `scripts/python-base.sh` makes, then runs it in a real container — in
//! mock mode, byte-stable with verified evidence, and in real mode against a fake
//! OpenAI-compatible server on the host's loopback, reached over host networking.
//!
//! Needs the Docker engine with `proctor-python-base:bookworm` (`scripts/setup.sh`), the OCI
//! registry on 127.0.0.1:5000, and `python3 -m pip` with PyPI for the first build's wheels.

use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use proctor_contract::{Envelope, ErrorCode};
use serde_json::{Value, json};

use crate::engine::ContainerSweep;
use crate::local_adapter::smoke_inputs;
use crate::plan::verify_execution;
use crate::util::{Proctor, Relay, Run, TestDir, workspace_registry};

const PROCESSOR: &str = "llm/litellm@2";
/// The local base image, as the tests pass it in.
const BASE_IMAGE_ARG: &str = "BASE_IMAGE=proctor-python-base:bookworm";
/// The secret real mode sends, which must leave no trace in what proctor prints.
const API_KEY: &str = "sk-python-processor-canary";

/// How a run reaches its provider.
enum Provider<'a> {
    /// Mock mode: none.
    Mock,
    /// Real mode, over host networking, at this base URL.
    Real(&'a str),
}

/// `proctor run --ref llm/litellm@2 --build --build-arg BUILD_ARG` with `inputs`, its
/// container labelled for `sweep`, run to its end; no container may be left.
fn run(
    dir: &TestDir,
    sweep: &ContainerSweep,
    provider: &Provider<'_>,
    inputs: &str,
    build_arg: &str,
) -> Run {
    let run = command(dir, sweep, provider, inputs, build_arg).run();
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the run",
    );
    run
}

/// The `proctor run` of [`run`], not started.
fn command(
    dir: &TestDir,
    sweep: &ContainerSweep,
    provider: &Provider<'_>,
    inputs: &str,
    build_arg: &str,
) -> Proctor {
    let mut adapter_options: Value = serde_json::from_str(&sweep.adapter_options()).unwrap();
    let mode = match provider {
        Provider::Mock => "mock",
        Provider::Real(_) => {
            adapter_options["network"] = json!("host");
            "real"
        }
    };
    let adapter_options = adapter_options.to_string();
    let root = workspace_registry().display().to_string();
    let mut command = dir
        .proctor(&[
            "run",
            "--ref",
            PROCESSOR,
            "--adapter",
            "local",
            "--mode",
            mode,
            "--build",
            "--build-arg",
            build_arg,
            "--write-prefix",
            "/artifacts/outputs/py/{execution_id}",
            "--inputs-json",
            inputs,
            "--adapter-opts-json",
            &adapter_options,
            "--registry-root",
            &root,
            "--artifacts-root",
            "artifacts",
            "--ledger",
            "sqlite://ledger.db",
            "--json",
        ])
        .env("OPENAI_API_KEY", API_KEY);
    if let Provider::Real(base_url) = provider {
        command = command.env("OPENAI_BASE_URL", base_url);
    }
    command
}

/// The committed bytes of the output at `path` below the run's outputs directory.
fn output(dir: &TestDir, envelope: &Value, path: &str) -> String {
    let id = envelope["execution_id"].as_str().unwrap();
    let file = dir
        .path()
        .join(format!("artifacts/outputs/py/{id}/outputs/{path}"));
    std::fs::read_to_string(file).unwrap()
}

/// A valid success envelope whose evidence `proctor verify` accepts; returns it.
fn verified_success(dir: &TestDir, run: &Run) -> Value {
    run.exits(0);
    let envelope = run.json();
    run.check(
        Envelope::validate(&envelope).is_ok(),
        "a valid success envelope",
    );
    let built = run.events("image.built");
    run.check(
        built.len() == 1 && built[0]["image_id"] == envelope["meta"]["image_digest"],
        "the run reports the ID of the image its Dockerfile built",
    );
    let id = envelope["execution_id"].as_str().unwrap();
    let root = workspace_registry().display().to_string();
    verify_execution(dir, id, &root).exits(0);
    envelope
}

/// Mock and real runs in one test: the first builds the image, the others find every
/// layer in the engine's cache.
#[test]
fn the_dockerfile_build_runs_in_mock_and_real_mode_with_verified_evidence() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let inputs = smoke_inputs(&dir, PROCESSOR);
    let mut answers = Vec::new();
    for _ in 0..2 {
        let run = run(&dir, &sweep, &Provider::Mock, &inputs, BASE_IMAGE_ARG);
        let envelope = verified_success(&dir, &run);
        let reply = output(&dir, &envelope, "text/response.txt");
        run.check(
            reply.starts_with(
                "Mock reply from mock-gpt to 1 message(s). You said: \"Hello from proctor\".",
            ),
            "litellm's mock response carries the documented defaults",
        );
        let metadata: Value =
            serde_json::from_str(&output(&dir, &envelope, "metadata.json")).unwrap();
        run.check(
            metadata["model"] == "mock-gpt" && metadata["finish_reason"] == "stop",
            "metadata names the model and the finish reason",
        );
        answers.push((reply, envelope["outputs"][0]["cid"].clone()));
    }
    assert_eq!(answers[0], answers[1], "mock outputs are byte-stable");

    let server = FakeOpenAi::start();
    let chat = json!({"schema": "v1", "params": {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "What does a receipt prove?"}],
    }})
    .to_string();
    let real = Provider::Real(&server.base_url);
    let run = run(&dir, &sweep, &real, &chat, BASE_IMAGE_ARG);
    let envelope = verified_success(&dir, &run);
    run.check(
        output(&dir, &envelope, "text/response.txt") == FakeOpenAi::REPLY,
        "the reply is the endpoint's",
    );
    let metadata: Value = serde_json::from_str(&output(&dir, &envelope, "metadata.json")).unwrap();
    run.check(
        metadata["total_tokens"] == 12 && metadata["finish_reason"] == "stop",
        "the endpoint's usage and finish reason",
    );
    let seen = server.requests();
    run.check(seen.len() == 1, "one request reached the endpoint");
    let (authorization, body) = &seen[0];
    run.check(
        authorization.as_deref() == Some(&format!("Bearer {API_KEY}")[..]),
        "the secret is the bearer key",
    );
    run.check(
        body["model"] == "gpt-4o-mini"
            && body["messages"][0]["content"] == "What does a receipt prove?",
        "the model and messages reach the endpoint",
    );
    run.check(
        !run.stdout.contains(API_KEY) && !run.stderr.contains(API_KEY),
        "the secret appears in no output of proctor",
    );
}

#[test]
fn a_base_image_that_cannot_be_had_fails_the_build_and_leaves_nothing() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let inputs = smoke_inputs(&dir, PROCESSOR);
    let run = run(
        &dir,
        &sweep,
        &Provider::Mock,
        &inputs,
        "BASE_IMAGE=127.0.0.1:5000/proctor-absent-base:none",
    );
    run.fails_with(
        ErrorCode::Build,
        "docker build of proctor/llm-litellm:2 failed",
    );
    run.check(
        run.events("execution.fail").len() == 1,
        "the failed run is recorded as a failure",
    );
}

/// `proctor build` assembles Rust processors only: a Dockerfile processor is refused before
/// anything is written.
#[test]
fn proctor_build_refuses_a_dockerfile_processor() {
    let dir = TestDir::new();
    let root = workspace_registry().display().to_string();
    let run = dir
        .proctor(&[
            "build",
            "--ref",
            PROCESSOR,
            "--registry-root",
            &root,
            "--json",
        ])
        .run();
    run.exits(ErrorCode::Build.exit_code());
    let message = run.json()["error"]["message"].clone();
    run.check(
        message
            .as_str()
            .is_some_and(|message| message.contains("has no build.cargo_package")),
        "the refusal says why",
    );
    run.check(dir.files().is_empty(), "nothing is written");
}

/// Ctrl-C while the engine holds the image build unanswered (a relay in front of its
/// socket): the run stops at once with `ERR_INTERRUPTED` and exit 130, leaving no
/// container, and the ledger records the interruption.
#[test]
fn ctrl_c_during_the_dockerfile_build_interrupts_the_run() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let relay = Relay::unix(&dir.path().join("engine.sock"), Some("/build?"), || {
        UnixStream::connect("/var/run/docker.sock")
    });
    let inputs = smoke_inputs(&dir, PROCESSOR);
    let mut started = command(&dir, &sweep, &Provider::Mock, &inputs, BASE_IMAGE_ARG)
        .env("DOCKER_HOST", &relay.docker_host())
        .start();
    while !relay.held() {
        assert!(
            !started.has_ended(),
            "the run ended before its build\n{}",
            started.finish().report()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &started.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let run = started.finish();
    run.exits(130);
    let envelope = run.json();
    run.check(
        envelope["error"]["code"] == ErrorCode::Interrupted.as_str()
            && envelope["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("llm/litellm@2 was cancelled")),
        "the envelope says the run was interrupted",
    );
    run.check(sweep.containers().is_empty(), "no container is left");
    run.check(
        run.events("execution.fail").len() == 1,
        "the interruption is recorded as a failure",
    );
}

/// The requests a [`FakeOpenAi`] received: each one's `Authorization` header and body.
type SeenRequests = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A fake OpenAI-compatible endpoint on an ephemeral 127.0.0.1 port, on a runtime of its
/// own: `POST /v1/chat/completions` records each request's `Authorization` header and body
/// and answers [`FakeOpenAi::REPLY`].
struct FakeOpenAi {
    base_url: String,
    seen: SeenRequests,
    _runtime: tokio::runtime::Runtime,
}

impl FakeOpenAi {
    const REPLY: &str = "A receipt proves what ran, on what, and what it wrote.";

    fn start() -> FakeOpenAi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen: SeenRequests = Arc::default();
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(answer))
            .with_state(Arc::clone(&seen));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeOpenAi {
            base_url,
            seen,
            _runtime: runtime,
        }
    }

    fn requests(&self) -> Vec<(Option<String>, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    State(seen): State<SeenRequests>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let authorization = headers
        .get("authorization")
        .map(|value| value.to_str().unwrap().to_owned());
    let model = body["model"].clone();
    seen.lock().unwrap().push((authorization, body));
    Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": FakeOpenAi::REPLY},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }))
}
