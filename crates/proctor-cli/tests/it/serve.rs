//! `proctor serve` end to end: a real server process in a temp project, spoken to over
//! HTTP, running real containers (`text/stats@1` built from source in `mock` mode, and
//! `testing/faulty@1`'s `hang` for runs that must be stopped). Each test starts its own
//! server (a start costs a ledger open and a bind) and stops it with SIGTERM; a test's
//! containers are found by the execution ids it submitted, and none may be left once its
//! server has exited.
//!
//! Needs the Docker engine of `scripts/setup.sh` at `/var/run/docker.sock`.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use proctor_contract::ErrorCode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::engine::{EXECUTION_LABEL, connect, labelled_containers};
use crate::ledger::{events_of, kinds_of, ledger_json};
use crate::util::{
    TestDir, clean_command, fixtures_registry, successful_output, workspace_registry,
    workspace_root,
};

/// The longest wait for a run or a plan to end: the first run of a test compiles its
/// processor, from a cold target directory on a fresh CI machine.
pub(crate) const RUN_WAIT: Duration = Duration::from_secs(900);
/// The longest wait for a server to start listening or to exit after SIGTERM.
const PROCESS_WAIT: Duration = Duration::from_secs(120);
/// How often a poll asks again.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// A `proctor serve` process in its own project directory, with the token it printed.
/// Dropping it stops the server (SIGTERM, then SIGKILL if it does not exit in time).
pub(crate) struct Server {
    pub(crate) dir: TestDir,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    pub(crate) token_file: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
}

impl Server {
    /// Starts `proctor serve --json` on a free loopback port in a fresh project whose
    /// registry is `registry`, World in `artifacts/` and ledger in `.proctor/ledger.db`,
    /// with `extra` arguments and `env`.
    pub(crate) fn start(registry: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = TestDir::new();
        std::fs::create_dir_all(dir.path().join(".proctor")).unwrap();
        let registry = registry.display().to_string();
        let mut args = vec![
            "serve",
            "--json",
            "--addr",
            "127.0.0.1:0",
            "--registry-root",
            &registry,
            "--artifacts-root",
            "artifacts",
        ];
        args.extend_from_slice(extra);
        let mut command = dir.proctor(&args);
        for (name, value) in env {
            command = command.env(name, value);
        }
        let log = dir.path().join("serve.log");
        let mut child = command.spawn_logging_to(&log);
        let line = first_line(&mut child, &log);
        let listening: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}\n{}", read_log(&log)));
        assert_eq!(listening["status"], "listening", "{listening}");
        let url = listening["url"].as_str().unwrap().to_owned();
        let addr: SocketAddr = url.strip_prefix("http://").unwrap().parse().unwrap();
        assert!(addr.ip().is_loopback(), "{url}");
        let token = listening["token"]
            .as_str()
            .expect("a new project's token is printed once")
            .to_owned();
        let token_file = PathBuf::from(listening["token_file"].as_str().unwrap());
        Server {
            dir,
            child: Some(child),
            url,
            addr,
            token,
            token_file,
            log,
            http: proctor_tls::http_client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// A server over the workspace's registry (`text/stats@1` and the rest we ship).
    pub(crate) fn workspace(extra: &[&str]) -> Server {
        Server::start(&workspace_registry(), extra, &[])
    }

    /// The server's stderr so far, for failure messages.
    pub(crate) fn log(&self) -> String {
        read_log(&self.log)
    }

    /// A request to `path` carrying `token` (none: no `Authorization` header).
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path` with the token; the response after the security headers are checked.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        let response = self
            .request(reqwest::Method::GET, path, Some(&self.token))
            .send()
            .await
            .unwrap();
        assert_security_headers(&response, path);
        response
    }

    /// `GET path` with the token, which must answer 200 with a JSON object.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "GET {path}: {body:#}\n{}",
            self.log()
        );
        assert!(body.is_object(), "GET {path}: {body:#}");
        body
    }

    /// `POST path` with the token and a JSON body; the status and the JSON answer.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .request(reqwest::Method::POST, path, Some(&self.token))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_security_headers(&response, path);
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// Submits a run, which must be accepted; its execution id.
    pub(crate) async fn submit(&self, body: Value) -> String {
        let (status, answer) = self.post("/v1/runs", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}\n{}", self.log());
        assert_eq!(answer["state"], "queued", "{answer:#}");
        let id = answer["execution_id"].as_str().unwrap().to_owned();
        assert_eq!(answer["links"]["self"], format!("/v1/executions/{id}"));
        id
    }

    /// Polls `GET /v1/executions/{id}` until its state is one of `states`; the detail.
    pub(crate) async fn wait_for_state(&self, id: &str, states: &[&str]) -> Value {
        let deadline = Instant::now() + RUN_WAIT;
        loop {
            let detail = self.get_json(&format!("/v1/executions/{id}")).await;
            let state = detail["execution"]["state"].as_str().unwrap_or_default();
            if states.contains(&state) {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {states:?}: {detail:#}\n{}",
                self.log()
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Opens `GET /v1/events{query}`; the events it sends, as they come.
    pub(crate) async fn events(&self, query: &str) -> EventStream {
        let path = format!("/v1/events{query}");
        let response = self.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if let Some(event) = SseEvent::parse(&block)
                        && sender.send(event).is_err()
                    {
                        return;
                    }
                }
            }
        });
        EventStream { receiver }
    }

    /// Sends SIGTERM and waits for the server to exit; its exit code.
    pub(crate) fn stop(&mut self) -> i32 {
        let mut child = self.child.take().expect("the server runs");
        signal(&child, "TERM");
        let code = wait_until_exit(&mut child, PROCESS_WAIT)
            .unwrap_or_else(|| panic!("the server did not exit\n{}", self.log()));
        code.unwrap_or(-1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            if wait_until_exit(&mut child, PROCESS_WAIT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Asserts the headers every response carries: the content security policy and friends.
#[track_caller]
pub(crate) fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no content-security-policy"))
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'"),
        "{what}: a restrictive policy: {csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["cache-control"], "no-store", "{what}");
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub(crate) event: String,
    pub(crate) id: Option<String>,
    pub(crate) data: Value,
}

impl SseEvent {
    /// The event of one block of lines; `None` for a comment (keep-alive).
    fn parse(block: &str) -> Option<SseEvent> {
        let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                event = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("id:") {
                id = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
        if data.is_empty() {
            return None;
        }
        let data = serde_json::from_str(&data.join("\n")).unwrap();
        Some(SseEvent { event, id, data })
    }
}

/// The events of an open `/v1/events` stream.
pub(crate) struct EventStream {
    receiver: mpsc::UnboundedReceiver<SseEvent>,
}

impl EventStream {
    /// The events up to and including the first that `wanted` accepts.
    pub(crate) async fn until(&mut self, wanted: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(RUN_WAIT, async {
            while let Some(event) = self.receiver.recv().await {
                let done = wanted(&event);
                seen.push(event);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "the stream ended or went quiet first: {seen:#?}"
        );
        seen
    }

    /// Asserts that the server ends the stream (after whatever events it still sends).
    pub(crate) async fn ends(&mut self) {
        let ended = tokio::time::timeout(PROCESS_WAIT, async {
            while self.receiver.recv().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the event stream was never ended");
    }
}

/// Reads the first line of the child's stdout, waiting at most [`PROCESS_WAIT`].
fn first_line(child: &mut Child, log: &Path) -> String {
    let mut stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Byte by byte: nothing after the line is consumed.
        let mut line = Vec::new();
        let mut byte = [0u8];
        while let Ok(1) = stdout.read(&mut byte) {
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        let _ = sender.send(String::from_utf8_lossy(&line).into_owned());
    });
    let line = receiver
        .recv_timeout(PROCESS_WAIT)
        .unwrap_or_else(|_| panic!("the server never printed its line\n{}", read_log(log)));
    assert!(
        !line.is_empty(),
        "the server printed nothing\n{}",
        read_log(log)
    );
    line
}

fn read_log(log: &Path) -> String {
    format!(
        "--- server stderr ---\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

/// Sends `SIG{name}` to the child alone.
fn signal(child: &Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {}", child.id());
}

/// Waits at most `limit` for the child to exit: `Some(its exit code)`, or `None` if it is
/// still running.
fn wait_until_exit(child: &mut Child, limit: Duration) -> Option<Option<i32>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// The containers (stopped ones included) labelled with `execution_id`.
pub(crate) async fn containers_of(execution_id: &str) -> Vec<String> {
    labelled_containers(
        &connect().await,
        format!("{EXECUTION_LABEL}={execution_id}"),
    )
    .await
}

/// Polls until a container labelled with `execution_id` exists (the run reached its
/// container) while the execution is still running.
async fn wait_for_container(server: &Server, execution_id: &str) {
    let deadline = Instant::now() + RUN_WAIT;
    while containers_of(execution_id).await.is_empty() {
        let detail = server
            .get_json(&format!("/v1/executions/{execution_id}"))
            .await;
        let state = &detail["execution"]["state"];
        assert!(
            state == "queued" || state == "running",
            "{execution_id} ended before its container started: {detail:#}\n{}",
            server.log()
        );
        assert!(
            Instant::now() < deadline,
            "no container for {execution_id}\n{}",
            server.log()
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// A run of `testing/faulty@1` from source whose `/run` never answers.
fn hanging_run() -> Value {
    json!({
        "ref": "testing/faulty@1",
        "mode": "mock",
        "build": true,
        "timeout_s": 600,
        "inputs": {"schema": "v1", "fault": "hang"},
    })
}

/// A mock run of `text/stats@1`'s smoke example, built from source.
pub(crate) fn smoke_run() -> Value {
    json!({"ref": "text/stats@1", "mode": "mock", "build": true})
}

/// Asserts a canonical error answer: status, code, and the code's stable fragment.
#[track_caller]
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: ErrorCode) {
    assert_eq!(status, want, "{body:#}");
    assert_eq!(body["status"], "error", "{body:#}");
    assert_eq!(body["error"]["code"], code.as_str(), "{body:#}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(code.fragment()), "{body:#}");
}

/// The ledger events of `execution_id` on the default plan, after its server has exited.
fn settled_events(server: &Server, execution_id: &str) -> Vec<Value> {
    let show = ledger_json(&server.dir, &["show", "default"]);
    events_of(&show, execution_id)
}

/// `proctor ledger verify` in the server's project, which must pass.
fn ledger_verifies(server: &Server, plan: &str) {
    let run = server.dir.proctor(&["ledger", "verify", plan]).run();
    run.exits(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_run_is_streamed_succeeds_verifies_and_its_outputs_download() {
    let mut server = Server::workspace(&[]);
    // Opened before the submission: every event of the run is appended after it.
    let mut stream = server.events("").await;
    let id = server.submit(smoke_run()).await;

    let seen = stream
        .until(|e| {
            e.event == "ledger"
                && e.data["execution_id"] == id.as_str()
                && e.data["kind"] == "execution.settle.success"
        })
        .await;
    let kinds: Vec<&str> = seen
        .iter()
        .filter(|e| e.event == "ledger" && e.data["execution_id"] == id.as_str())
        .map(|e| e.data["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"execution.start"), "{seen:#?}");
    for event in seen.iter().filter(|e| e.event == "ledger") {
        let (plan, seq) = (&event.data["plan"], &event.data["seq"]);
        assert_eq!(
            event.id.as_deref(),
            Some(format!("{}:{seq}", plan.as_str().unwrap()).as_str()),
            "{event:?}"
        );
        for field in ["prev_hash", "this_hash", "at", "payload"] {
            assert!(!event.data[field].is_null(), "{field}: {event:?}");
        }
    }
    let job_states: Vec<&str> = seen
        .iter()
        .filter(|e| e.event == "job" && e.data["execution_id"] == id.as_str())
        .map(|e| e.data["state"].as_str().unwrap())
        .collect();
    assert!(job_states.contains(&"running"), "{seen:#?}");

    let detail = server.wait_for_state(&id, &["succeeded", "failed"]).await;
    let summary = &detail["execution"];
    assert_eq!(
        summary["state"],
        "succeeded",
        "{detail:#}\n{}",
        server.log()
    );
    assert_eq!(summary["ref"], "text/stats@1");
    assert_eq!(summary["plan"], "default");
    assert_eq!(summary["mode"], "mock");
    assert!(summary["error_code"].is_null(), "{detail:#}");
    assert!(
        summary["image_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        detail["envelope"]["execution_id"],
        id.as_str(),
        "{detail:#}"
    );
    assert_eq!(detail["receipt"]["execution_id"], id.as_str(), "{detail:#}");
    assert_eq!(
        detail["receipt"]["image_digest"], summary["image_digest"],
        "{detail:#}"
    );

    let verification = &detail["verification"];
    assert_eq!(verification["ok"], true, "{detail:#}");
    let checks = verification["checks"].as_array().unwrap();
    assert!(!checks.is_empty(), "{detail:#}");
    for check in checks {
        assert_eq!(check["ok"], true, "{check:#}");
        assert!(check["name"].is_string(), "{check:#}");
    }
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"execution.start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"execution.settle.success"), "{kinds:?}");

    // Every output downloads with the bytes its CID names.
    let write_prefix = summary["write_prefix"].as_str().unwrap().to_owned();
    let outputs = detail["outputs"].as_array().unwrap();
    assert!(outputs.len() >= 2, "{detail:#}");
    for output in outputs {
        let path = output["path"].as_str().unwrap();
        let world_path = if path.starts_with("/artifacts/") {
            path.to_owned()
        } else {
            format!("{}/outputs/{path}", write_prefix.trim_end_matches('/'))
        };
        let response = server.get(&format!("/v1/world{world_path}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{world_path}");
        let headers = response.headers().clone();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("sandbox"), "a World file is sandboxed: {csp}");
        let bytes = response.bytes().await.unwrap();
        let cid = proctor_contract::cid(&bytes);
        assert_eq!(output["cid"], cid.as_str(), "{world_path}");
        assert_eq!(output["size_bytes"], bytes.len(), "{world_path}");
        assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
        assert!(
            headers["etag"].to_str().unwrap().contains(&cid),
            "{headers:?}"
        );
        if world_path.ends_with(".json") {
            assert!(
                headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
        }
        let download = server
            .get(&format!("/v1/world{world_path}?download=1"))
            .await;
        assert_eq!(download.status(), StatusCode::OK);
        let disposition = download.headers()["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment"), "{disposition}");
    }
    // The receipt, by its world path.
    let receipt = server
        .get(&format!("/v1/world/artifacts/execution/{id}/receipt.json"))
        .await;
    assert_eq!(receipt.status(), StatusCode::OK);
    let receipt: Value = serde_json::from_slice(&receipt.bytes().await.unwrap()).unwrap();
    assert_eq!(receipt, detail["receipt"]);

    // A stream opened later replays the plan's events after the seq it names.
    let mut replay = server.events("?plan=default&after=0").await;
    let replayed = replay
        .until(|e| {
            e.event == "ledger"
                && e.data["execution_id"] == id.as_str()
                && e.data["kind"] == "execution.settle.success"
        })
        .await;
    let seqs: Vec<u64> = replayed
        .iter()
        .filter(|e| e.event == "ledger")
        .map(|e| e.data["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{seqs:?}"
    );

    // The list, filtered.
    let listed = server
        .get_json("/v1/executions?ref=text/stats@1&state=succeeded")
        .await;
    let ids: Vec<&str> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "{listed:#}");
    assert_eq!(listed["total"], 1, "{listed:#}");
    let failed = server.get_json("/v1/executions?state=failed").await;
    assert_eq!(failed["total"], 0, "{failed:#}");
    let unknown = server.get("/v1/executions/no-such-execution").await;
    let status = unknown.status();
    let body: Value = unknown.json().await.unwrap();
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownExecution,
    );

    assert_eq!(server.stop(), 0, "{}", server.log());
    stream.ends().await;
    assert!(
        containers_of(&id).await.is_empty(),
        "no container may be left"
    );
    let verify = server
        .dir
        .proctor(&[
            "verify",
            &id,
            "--json",
            "--artifacts-root",
            "artifacts",
            "--registry-root",
            &workspace_registry().display().to_string(),
        ])
        .run();
    verify.exits(0);
    ledger_verifies(&server, "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_drops_a_queued_run_and_stops_a_running_one_with_its_container() {
    let fixtures = PathBuf::from(fixtures_registry());
    let mut server = Server::start(&fixtures, &["--max-running", "1"], &[]);
    let running = server.submit(hanging_run()).await;
    let queued = server.submit(hanging_run()).await;
    wait_for_container(&server, &running).await;

    // The queued one never starts.
    let (status, answer) = server
        .post(&format!("/v1/executions/{queued}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    assert_eq!(answer["state"], "cancelled", "{answer:#}");
    let detail = server.wait_for_state(&queued, &["cancelled"]).await;
    assert!(
        detail["events"].as_array().unwrap().is_empty(),
        "{detail:#}"
    );

    // The running one is stopped: its container removed, the ledger settled.
    let (status, answer) = server
        .post(&format!("/v1/executions/{running}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    assert!(
        answer["state"] == "cancelling" || answer["state"] == "cancelled",
        "{answer:#}"
    );
    let detail = server
        .wait_for_state(&running, &["cancelled", "failed", "succeeded"])
        .await;
    assert_eq!(detail["execution"]["state"], "cancelled", "{detail:#}");
    assert_eq!(
        detail["execution"]["error_code"],
        ErrorCode::Interrupted.as_str(),
        "{detail:#}"
    );
    assert!(
        containers_of(&running).await.is_empty(),
        "its container is removed"
    );
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"execution.settle.failure"), "{kinds:?}");

    // Finished or unknown executions cannot be cancelled.
    let (status, answer) = server
        .post(&format!("/v1/executions/{running}/cancel"), &json!({}))
        .await;
    assert_error(status, &answer, StatusCode::CONFLICT, ErrorCode::Conflict);
    let (status, answer) = server
        .post("/v1/executions/no-such-execution/cancel", &json!({}))
        .await;
    assert_error(
        status,
        &answer,
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownExecution,
    );

    assert_eq!(server.stop(), 0, "{}", server.log());
    let events = settled_events(&server, &running);
    let settle = events.last().unwrap();
    assert_eq!(settle["kind"], "execution.settle.failure", "{events:#?}");
    assert_eq!(settle["payload"]["error"]["code"], "ERR_INTERRUPTED");
    assert!(settled_events(&server, &queued).is_empty());
    ledger_verifies(&server, "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_run_in_flight_exits_zero_and_the_ledger_records_its_end() {
    let fixtures = PathBuf::from(fixtures_registry());
    let mut server = Server::start(&fixtures, &[], &[]);
    let id = server.submit(hanging_run()).await;
    wait_for_container(&server, &id).await;

    assert_eq!(server.stop(), 0, "{}", server.log());
    assert!(
        containers_of(&id).await.is_empty(),
        "no container may be left"
    );
    let show = ledger_json(&server.dir, &["show", "default"]);
    assert_eq!(
        kinds_of(&show, &id),
        [
            "execution.start",
            "budget.reserve",
            "lease.acquire",
            "lease.release",
            "budget.settle",
            "execution.settle.failure"
        ],
        "{show:#}"
    );
    let events = events_of(&show, &id);
    assert_eq!(events[5]["payload"]["error"]["code"], "ERR_INTERRUPTED");
    ledger_verifies(&server, "default");
}

/// Two transitions of `text/stats@1`, the second after the first.
pub(crate) const TWO_STEP_PLAN: &str = r#"plan: served
mode: mock
transitions:
  - id: count
    ref: text/stats@1
    inputs: {schema: v1, text: "one two two three three three"}
  - id: recount
    ref: text/stats@1
    after: [count]
    inputs: {schema: v1, text: "four four four four"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_plan_reaches_success_and_its_chain_verifies() {
    let mut server = Server::workspace(&[]);
    let (status, answer) = server
        .post("/v1/plans", &json!({"plan": TWO_STEP_PLAN, "build": true}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}\n{}", server.log());
    assert_eq!(answer["plan"], "served");
    assert!(answer["plan_cid"].is_string(), "{answer:#}");
    assert_eq!(answer["links"]["self"], "/v1/plans/served");
    let deadline = Instant::now() + RUN_WAIT;
    let plan = loop {
        let plan = server.get_json("/v1/plans/served").await;
        if plan["state"] == "succeeded" || plan["state"] == "failed" {
            break plan;
        }
        assert!(Instant::now() < deadline, "{plan:#}\n{}", server.log());
        tokio::time::sleep(POLL_EVERY).await;
    };
    assert_eq!(plan["state"], "succeeded", "{plan:#}\n{}", server.log());
    let transitions = plan["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 2, "{plan:#}");
    let mut execution_ids = Vec::new();
    for transition in transitions {
        assert_eq!(transition["state"], "succeeded", "{plan:#}");
        execution_ids.push(transition["execution_id"].as_str().unwrap().to_owned());
    }
    let recount = transitions.iter().find(|t| t["id"] == "recount").unwrap();
    assert_eq!(recount["after"], json!(["count"]));

    let chain = server.get_json("/v1/plans/served/chain").await;
    assert_eq!(chain["verification"]["ok"], true, "{chain:#}");
    let events = chain["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{chain:#}");
    assert_eq!(chain["verification"]["length"], events.len(), "{chain:#}");
    for id in &execution_ids {
        assert!(
            events
                .iter()
                .any(|event| event["execution_id"] == id.as_str())
        );
    }
    let plans = server.get_json("/v1/plans").await;
    assert!(
        plans["plans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["plan"] == "served"),
        "{plans:#}"
    );
    let (status, body) = server
        .post("/v1/plans", &json!({"plan": "plan: [nope"}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, ErrorCode::Plan);

    assert_eq!(server.stop(), 0, "{}", server.log());
    for id in &execution_ids {
        assert!(
            containers_of(id).await.is_empty(),
            "no container may be left"
        );
    }
    ledger_verifies(&server, "served");
}

/// `proctor serve --rotate-token --json` in `server`'s project: the new token.
fn rotate(server: &Server) -> String {
    let run = server
        .dir
        .proctor(&["serve", "--rotate-token", "--json"])
        .run();
    run.exits(0);
    let answer = run.json();
    assert_eq!(answer["status"], "ok", "{answer:#}");
    answer["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_is_private_and_rotation_takes_effect_on_the_running_server() {
    use std::os::unix::fs::PermissionsExt as _;

    let server = Server::workspace(&[]);
    assert_eq!(
        server.token_file,
        server.dir.path().join(".proctor/serve-token")
    );
    let mode = std::fs::metadata(&server.token_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let kept = std::fs::read_to_string(&server.token_file).unwrap();
    assert_eq!(kept.trim(), server.token);
    assert_eq!(server.token.len(), 64);
    assert!(server.token.bytes().all(|b| b.is_ascii_hexdigit()));

    let old = server.token.clone();
    let new = rotate(&server);
    assert_ne!(new, old);
    let mode = std::fs::metadata(&server.token_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let refused = server
        .request(reqwest::Method::GET, "/v1/executions", Some(&old))
        .send()
        .await
        .unwrap();
    assert_security_headers(&refused, "old token");
    let status = refused.status();
    let body: Value = refused.json().await.unwrap();
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
    );
    let accepted = server
        .request(reqwest::Method::GET, "/v1/executions", Some(&new))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
}

/// The concrete paths of an OpenAPI path template: each `{param}` filled with a value.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                match segment.trim_start_matches("{*").trim_matches(['{', '}']) {
                    "path" => "artifacts/x".to_owned(),
                    _ => "x".to_owned(),
                }
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_refuses_a_missing_or_wrong_token() {
    let server = Server::workspace(&[]);
    let document = server.get_json("/v1/openapi.json").await;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{document:#}"
    );
    let public = ["/healthz", "/login", "/login.css"];
    let wrong = "0".repeat(64);
    let mut walked = 0;
    for (template, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let Ok(method) = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !matches!(method, reqwest::Method::GET | reqwest::Method::POST) {
                continue;
            }
            let is_public = public.contains(&template.as_str())
                || (template == "/logout" && method == reqwest::Method::POST);
            if is_public {
                continue;
            }
            let path = concrete(template);
            for token in [None, Some(wrong.as_str())] {
                let mut request = server.request(method.clone(), &path, token);
                if method == reqwest::Method::POST {
                    request = request.json(&json!({}));
                }
                let response = request.send().await.unwrap();
                let what = format!("{method} {path} with {token:?}");
                assert_security_headers(&response, &what);
                let status = response.status();
                let body: Value = response
                    .json()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body:#}");
                assert_eq!(body["error"]["code"], "ERR_UNAUTHORIZED", "{what}");
            }
            walked += 1;
        }
    }
    assert!(walked >= 10, "the document names the routes: {walked}");

    // A browser is sent to the login page instead; the open routes answer.
    let page = server
        .request(reqwest::Method::GET, "/executions/x", None)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_security_headers(&page, "a page");
    assert!(page.status().is_redirection(), "{}", page.status());
    let location = page.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/login"), "{location}");
    for path in public {
        let response = server
            .request(reqwest::Method::GET, path, None)
            .send()
            .await
            .unwrap();
        assert_security_headers(&response, path);
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // Processors name their secrets, never a value; drift answers either way.
    let processors = server.get_json("/v1/processors").await;
    let stats = processors["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ref"] == "text/stats@1")
        .unwrap_or_else(|| panic!("{processors:#}"));
    assert!(
        stats["examples"]
            .as_array()
            .unwrap()
            .contains(&json!("smoke"))
    );
    assert!(stats["secrets"].is_array(), "{stats:#}");
    server.get_json("/v1/drift").await;
    // A cookie from elsewhere cannot submit.
    let cross_site = server
        .request(reqwest::Method::POST, "/v1/runs", None)
        .header("cookie", format!("proctor_token={}", server.token))
        .header("origin", "http://evil.example")
        .json(&smoke_run())
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::UNAUTHORIZED);
}

/// `GET raw_path` sent as written (no client normalizes it) with the token; the status
/// and the body as JSON.
fn raw_get(server: &Server, raw_path: &str) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "GET {raw_path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        server.addr, server.token
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy:"),
        "{head}"
    );
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_in_world_paths_is_refused_with_the_world_path_codes() {
    let server = Server::workspace(&[]);
    let cases = [
        (
            "/v1/world/artifacts/../.proctor/serve-token",
            ErrorCode::DotSegments,
        ),
        (
            "/v1/world/artifacts/a/../../etc/passwd",
            ErrorCode::DotSegments,
        ),
        (
            "/v1/world/artifacts/%2e%2e/.proctor/serve-token",
            ErrorCode::DotSegments,
        ),
        (
            "/v1/world/artifacts/%2E%2E/%2E%2E/etc/passwd",
            ErrorCode::DotSegments,
        ),
        ("/v1/world/artifacts/./x", ErrorCode::DotSegments),
        (
            "/v1/world/artifacts/a%2F..%2F..%2Fetc",
            ErrorCode::DecodedSlash,
        ),
        ("/v1/world/artifacts/a%2fb", ErrorCode::DecodedSlash),
        ("/v1/world/artifacts/a%5C..%5Cb", ErrorCode::DecodedSlash),
        ("/v1/world/artifacts/a%zz", ErrorCode::PercentDecode),
        ("/v1/world/artifacts/%FF", ErrorCode::PercentDecode),
        ("/v1/world/etc/passwd", ErrorCode::BadFacet),
        ("/v1/world/.proctor/serve-token", ErrorCode::BadFacet),
    ];
    for (path, code) in cases {
        let (status, body) = raw_get(&server, path);
        assert_eq!(status, 400, "{path}: {body:#}");
        assert_eq!(body["error"]["code"], code.as_str(), "{path}: {body:#}");
    }
    let (status, body) = raw_get(&server, "/v1/world/artifacts/no/such/file");
    assert_eq!(status, 404, "{body:#}");
    assert_eq!(
        body["error"]["code"],
        ErrorCode::NotFound.as_str(),
        "{body:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_are_refused_and_real_runs_under_ci_too() {
    let server = Server::start(&workspace_registry(), &[], &[("CI", "true")]);
    let (status, body) = server
        .post("/v1/runs", &json!({"ref": "text/stats@1", "mode": "real"}))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, ErrorCode::CiSafety);
    for bad in [
        json!({"ref": "text/stats@1"}),
        json!({"ref": "text/stats@1", "mode": "mock", "colour": "blue"}),
        json!({"ref": "text/stats@1", "mode": "dry"}),
        json!({"ref": "text/stats@1", "mode": "mock", "adapter": "elsewhere"}),
        json!(["text/stats@1"]),
    ] {
        let (status, body) = server.post("/v1/runs", &bad).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, ErrorCode::Inputs);
    }
    let not_json = server
        .request(reqwest::Method::POST, "/v1/runs", Some(&server.token))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = not_json.status();
    let body: Value = not_json.json().await.unwrap();
    assert_error(status, &body, StatusCode::BAD_REQUEST, ErrorCode::Inputs);
    let listed = server.get_json("/v1/executions").await;
    assert_eq!(
        listed["total"], 0,
        "nothing refused was recorded: {listed:#}"
    );
}

/// `scripts/serve-load.sh` with this build's binary: a few seconds once the image is built,
/// so the suite runs the load check itself.
#[test]
fn the_load_check_completes_200_concurrent_submissions_with_none_lost() {
    let script = workspace_root().join("scripts/serve-load.sh");
    let mut command = clean_command("bash");
    command
        .arg(&script)
        .env("PROCTOR_BIN", env!("CARGO_BIN_EXE_proctor"));
    let (stdout, _) = successful_output(command);
    assert!(
        stdout.contains("runs: 200 submitted, 200 distinct ids, 200 succeeded"),
        "{stdout}"
    );
}
