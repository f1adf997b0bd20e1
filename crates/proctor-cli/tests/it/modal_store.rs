//! Modal runs whose evidence lands in the World's S3-compatible store, against stand-ins: no
//! Modal account is reachable from here.
//!
//! The deployment is stood in for by the `text/stats@1` image that `proctor run --build`
//! loads, started with `docker run` on a loopback port with host networking (so it reaches
//! the S3 server `scripts/setup.sh` starts on 127.0.0.1:9000; plain http is allowed on
//! loopback only), with the environment its generated Modal app gives it: the pin's digest,
//! `PROCTOR_STORE_URL`, and the store's credentials as the `proctor-world-store` secret
//! would. `PROCTOR_MODAL_BASE_URL` points the Modal adapter at it, directly or through a
//! misbehaving front that overwrites an output in the store before it answers. Each test
//! has its own bucket ([`Bucket`]), emptied and deleted on drop, and removes its container.

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proctor_contract::{ErrorCode, WorldPath};
use proctor_store::ArtifactStore;
use serde_json::{Value, json};

use crate::util::{Proctor, Run, TestDir, successful_output, workspace_registry, workspace_root};
use crate::world::{Bucket, with_credentials};

/// The pinned digest the stand-in reports, as a deployment of the pin would.
const DIGEST: &str = "5d41402abc4b2a76b9719d911017c592ae2f5d6e0e3c7d0d9b7e6b3c2a1f0e9d";
/// The text the local transitions measure.
const TEXT: &str = "The quick brown fox. The lazy dog.";

/// Copies the shipped `text/stats@1` entry into `dir`'s `processors/`, pinned to [`DIGEST`].
fn pinned_registry(dir: &TestDir) {
    let shipped = workspace_registry().join("text/stats/1/registry.yaml");
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
    let pin = format!("127.0.0.1:5000/acme/proctor/text-stats@sha256:{DIGEST}");
    let image = json!({"index": pin, "platforms": {"amd64": pin, "arm64": pin}});
    yaml.as_mapping_mut()
        .unwrap()
        .insert("image".into(), serde_yaml_ng::to_value(image).unwrap());
    dir.write(
        "processors/text/stats/1/registry.yaml",
        &serde_yaml_ng::to_string(&yaml).unwrap(),
    );
}

/// `proctor ARGS` in `dir` with the World in `bucket` (`PROCTOR_STORE_URL` and the
/// credentials) and the test's SQLite ledger.
fn in_world(dir: &TestDir, bucket: &Bucket, args: &[&str]) -> Proctor {
    let ledger = ["--ledger", "sqlite://ledger.db"];
    let args: Vec<&str> = args.iter().copied().chain(ledger).collect();
    with_credentials(dir.proctor(&args)).env("PROCTOR_STORE_URL", &bucket.location())
}

/// A mock run of `text/stats@1` on `text` through `adapter`; a local one builds its image.
fn run_stats(dir: &TestDir, bucket: &Bucket, adapter: &str, text: &str, base_url: &str) -> Run {
    let inputs = json!({"schema": "v1", "text": text}).to_string();
    let root = workspace_root();
    let mut args = vec![
        "run",
        "--ref",
        "text/stats@1",
        "--adapter",
        adapter,
        "--mode",
        "mock",
        "--inputs-json",
        &inputs,
        "--registry-root",
        "processors",
        "--artifacts-root",
        "artifacts",
        "--json",
    ];
    if adapter == "local" {
        args.extend(["--build", "--workspace-root", root.to_str().unwrap()]);
    }
    in_world(dir, bucket, &args)
        .env("PROCTOR_MODAL_BASE_URL", base_url)
        .run()
}

/// `proctor verify ID` against the bucket.
fn verify(dir: &TestDir, bucket: &Bucket, execution_id: &str) -> Run {
    let store = bucket.location();
    let args = [
        "verify",
        execution_id,
        "--json",
        "--store",
        &store,
        "--registry-root",
        "processors",
    ];
    in_world(dir, bucket, &args).run()
}

/// The payloads of `plan`'s ledger events, each parsed.
fn ledger_payloads(dir: &TestDir, bucket: &Bucket, plan: &str) -> Vec<Value> {
    let shown = in_world(dir, bucket, &["ledger", "show", plan, "--json"]).run();
    shown.exits(0);
    shown.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| match &event["payload"] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            other => other.clone(),
        })
        .collect()
}

/// A success envelope's execution id and output paths.
fn success(run: &Run) -> (String, Vec<WorldPath>) {
    run.exits(0);
    let envelope = run.json();
    run.check(envelope["status"] == "success", "a success");
    let outputs = envelope["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|output| WorldPath::parse(output["path"].as_str().unwrap()).unwrap())
        .collect();
    (
        envelope["execution_id"].as_str().unwrap().to_owned(),
        outputs,
    )
}

/// A `text/stats@1` container standing in for its Modal deployment, writing to the bucket.
/// Removed on drop.
struct StandIn {
    container: String,
    /// Its loopback port.
    port: u16,
}

impl StandIn {
    /// Starts the image the `--build` runs loaded, as the generated app starts it.
    fn start(bucket: &Bucket) -> StandIn {
        let me = std::fs::metadata("/proc/self").unwrap();
        let user = if me.uid() == 0 {
            "65532:65532".to_owned()
        } else {
            format!("{}:{}", me.uid(), me.gid())
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut docker_run = Command::new("docker");
        docker_run
            .args([
                "run",
                "--detach",
                "--rm",
                "--network",
                "host",
                "--read-only",
            ])
            .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
            .args(["--user", &user, "--label", "proctor.test=modal-store"])
            .args(["--env", "PROCTOR_BIND=127.0.0.1"])
            .args(["--env", &format!("PROCTOR_PORT={port}")])
            .args(["--env", &format!("PROCTOR_IMAGE_DIGEST=sha256:{DIGEST}")])
            .args(["--env", &format!("PROCTOR_STORE_URL={}", bucket.location())])
            .args([
                "--env",
                &format!("AWS_ACCESS_KEY_ID={}", crate::world::KEY_ID),
            ])
            .args([
                "--env",
                &format!("AWS_SECRET_ACCESS_KEY={}", crate::world::SECRET),
            ])
            .arg("proctor/text-stats:1");
        let (container, _) = successful_output(docker_run);
        let stand_in = StandIn {
            container: container.trim().to_owned(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the stand-in never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        stand_in
    }

    /// `PROCTOR_MODAL_BASE_URL` reaching it directly.
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", &self.container])
            .output();
    }
}

/// A deployment front that forwards to the stand-in and, once a run answered success,
/// overwrites the run's first output in the store before passing the answer on: the
/// evidence no longer matches what the envelope and index claim. Stops on drop.
struct TamperingFront {
    base_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the front forwards to and tampers with.
struct Upstream {
    port: u16,
    store: Arc<dyn ArtifactStore>,
    client: reqwest::Client,
}

impl TamperingFront {
    fn start(stand_in: &StandIn, bucket: &Bucket) -> TamperingFront {
        let upstream = Arc::new(Upstream {
            port: stand_in.port,
            store: bucket.store(),
            client: proctor_tls::http_client_builder().build().unwrap(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .fallback(forward_and_tamper)
                    .with_state(upstream);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TamperingFront {
            base_url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for TamperingFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn forward_and_tamper(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let url = format!("http://127.0.0.1:{}{}", upstream.port, parts.uri.path());
    let mut forwarded = upstream.client.request(parts.method, url).body(body);
    if let Some(media_type) = parts.headers.get(axum::http::header::CONTENT_TYPE) {
        forwarded = forwarded.header(axum::http::header::CONTENT_TYPE, media_type);
    }
    let Ok(answer) = forwarded.send().await else {
        return (StatusCode::BAD_GATEWAY, "modal-http: app unavailable").into_response();
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let bytes: Bytes = answer.bytes().await.unwrap();
    if parts.uri.path() == "/run"
        && let Ok(envelope) = serde_json::from_slice::<Value>(&bytes)
        && envelope["status"] == "success"
    {
        let first = envelope["outputs"][0]["path"].as_str().unwrap();
        let path = WorldPath::parse(first).unwrap();
        upstream
            .store
            .put(&path, bytes::Bytes::from_static(b"tampered"))
            .await
            .unwrap();
    }
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

#[test]
fn a_modal_run_writes_its_evidence_to_the_s3_store_where_it_verifies_until_tampered() {
    let bucket = Bucket::create();
    let dir = TestDir::new();
    pinned_registry(&dir);
    // A local run builds the image the stand-in runs, and commits its evidence to the
    // bucket too.
    let local = run_stats(&dir, &bucket, "local", TEXT, "http://127.0.0.1:9");
    let (local_id, _) = success(&local);
    verify(&dir, &bucket, &local_id).exits(0);

    let stand_in = StandIn::start(&bucket);
    let remote = run_stats(&dir, &bucket, "modal", TEXT, &stand_in.base_url());
    let (remote_id, outputs) = success(&remote);
    let store = bucket.store();
    let receipt = WorldPath::execution_receipt(&remote_id).unwrap();
    bucket.runtime.block_on(async {
        for path in outputs.iter().chain([&receipt]) {
            store
                .head(path)
                .await
                .unwrap_or_else(|e| panic!("{path} is not in the bucket: {e}"));
        }
    });
    // The same world paths as the local run, the same bytes.
    let listing = with_credentials(dir.proctor(&[
        "world",
        "ls",
        outputs[0].as_str(),
        "--store",
        &bucket.location(),
        "--json",
    ]))
    .run();
    listing.exits(0);
    listing.check(
        listing.stdout.contains(outputs[0].as_str()),
        "world ls finds the output",
    );
    let verified = verify(&dir, &bucket, &remote_id);
    verified.exits(0);
    verified.check(verified.json()["ok"] == true, "the Modal run verifies");
    let settled = ledger_payloads(&dir, &bucket, "default")
        .into_iter()
        .find(|payload| {
            payload["kind"] == "execution.settle.success" && payload["execution_id"] == remote_id
        })
        .expect("the Modal run's success settle");
    assert!(
        settled["receipt_cid"]
            .as_str()
            .is_some_and(|cid| cid.starts_with("b3:")),
        "the ledger records the receipt's content id: {settled}"
    );

    // An output overwritten in the store afterwards: verify fails.
    bucket.runtime.block_on(async {
        store
            .put(&outputs[0], bytes::Bytes::from_static(b"tampered"))
            .await
            .unwrap();
    });
    verify(&dir, &bucket, &remote_id).exits(ErrorCode::Verify.exit_code());

    // Overwritten while the run is answered: the run fails, and so does its verify.
    let front = TamperingFront::start(&stand_in, &bucket);
    let tampered = run_stats(&dir, &bucket, "modal", TEXT, &front.base_url);
    tampered.fails_with(
        ErrorCode::Evidence,
        "does not match its size and content id",
    );
    let tampered_id = tampered.json()["execution_id"].as_str().unwrap().to_owned();
    verify(&dir, &bucket, &tampered_id).exits(ErrorCode::Verify.exit_code());
    in_world(&dir, &bucket, &["ledger", "verify"])
        .run()
        .exits(0);
}

/// A plan mixing local and Modal transitions, each reading the other's output (`back` as an
/// input artifact, fetched from the store for its container); `there` and `beside` run on
/// Modal at once (the stand-in serves one run at a time: the other is told it is busy and
/// posts again).
const MIXED: &str = r#"
plan: mixed
mode: mock
policy: {max_parallel: 2}
transitions:
  - id: here
    ref: text/stats@1
    adapter: local
    inputs: {schema: v1, text: "The quick brown fox. The lazy dog."}
  - id: there
    ref: text/stats@1
    adapter: modal
    inputs: {schema: v1, text: {$from: "here:outputs/normalized.txt"}}
  - id: beside
    ref: text/stats@1
    adapter: modal
    inputs: {schema: v1, text: {$from: "here:outputs/words.csv"}}
  - id: back
    ref: text/stats@1
    adapter: local
    inputs: {schema: v1, text: {$from: "there:outputs/normalized.txt", as: artifact}, top_n: 3}
"#;

#[test]
fn a_plan_mixing_local_and_modal_transitions_references_across_them_and_verifies() {
    let bucket = Bucket::create();
    let dir = TestDir::new();
    pinned_registry(&dir);
    // The image the stand-in runs (on other inputs: no transition is its memo hit).
    let built = run_stats(&dir, &bucket, "local", "Built.", "http://127.0.0.1:9");
    success(&built);
    let stand_in = StandIn::start(&bucket);
    let plan = dir.write("plan.yaml", MIXED);
    let root = workspace_root();
    let applied = in_world(
        &dir,
        &bucket,
        &[
            "plan",
            "apply",
            plan.to_str().unwrap(),
            "--build",
            "--workspace-root",
            root.to_str().unwrap(),
            "--json",
            "--registry-root",
            "processors",
            "--artifacts-root",
            "artifacts",
        ],
    )
    .env("PROCTOR_MODAL_BASE_URL", &stand_in.base_url())
    .run();
    applied.exits(0);
    let report = applied.json();
    applied.check(report["ok"] == true, "the plan succeeded");
    for id in ["here", "there", "beside", "back"] {
        let transition = crate::plan::transition(&report, id);
        applied.check(
            transition["state"] == "succeeded",
            "each transition succeeded",
        );
        let execution_id = transition["execution_id"].as_str().unwrap();
        verify(&dir, &bucket, execution_id).exits(0);
    }
    // `back`'s container read the Modal output as a file, and its receipt says so.
    let back = crate::plan::transition(&report, "back")["execution_id"].clone();
    let receipt_path = WorldPath::execution_receipt(back.as_str().unwrap()).unwrap();
    let receipt: Value = serde_json::from_slice(
        &bucket
            .runtime
            .block_on(bucket.store().get(&receipt_path))
            .unwrap(),
    )
    .unwrap();
    let read = receipt["artifacts_read"][0]["path"]
        .as_str()
        .unwrap_or_default();
    let there = crate::plan::transition(&report, "there")["execution_id"].clone();
    applied.check(
        read.contains(there.as_str().unwrap()) && read.ends_with("/outputs/normalized.txt"),
        "back read there's output as an artifact",
    );
    in_world(&dir, &bucket, &["ledger", "verify", "mixed"])
        .run()
        .exits(0);
    // Each reference was resolved from the store, across adapters.
    let resolved: Vec<Value> = ledger_payloads(&dir, &bucket, "mixed")
        .into_iter()
        .filter(|payload| payload["kind"] == "transition.run")
        .collect();
    for (reader, source) in [("there", "here"), ("beside", "here"), ("back", "there")] {
        let read = resolved
            .iter()
            .find(|payload| payload["transition"] == reader)
            .unwrap_or_else(|| panic!("no transition.run of {reader}"));
        let source_id = crate::plan::transition(&report, source)["execution_id"].clone();
        applied.check(
            read["resolved"][0]["execution_id"] == source_id,
            &format!("{reader} read {source}'s output"),
        );
    }
}
