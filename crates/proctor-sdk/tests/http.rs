//! The HTTP contract against an in-process server on 127.0.0.1 with a temporary artifacts
//! root (`proctor_sdk::testing`). Needs nothing outside the process.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use proctor_contract::{
    Envelope, ErrorCode, Health, HealthState, Mode, OutputsIndex, Usage, WorldPath, WritePrefix,
};
use proctor_sdk::testing::{TEST_IMAGE_DIGEST, TestServer};
use proctor_sdk::{
    Context, ProcessorDefinition, ProviderError, ProviderOutput, ProviderResult, ServerConfig,
    SetupLog,
};
use rand_chacha::rand_core::Rng;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing_subscriber::layer::SubscriberExt;

#[path = "http/cross_sdk.rs"]
mod cross_sdk;
#[path = "http/golden.rs"]
mod golden;

const REF: &str = "test/echo@1";

/// Writes the files listed in `inputs.files`; reports what the context showed when
/// `inputs.context` is true; fails as `inputs.fail` says, a provider failure quoting
/// `inputs.upstream` when given.
fn echo(context: &Context, inputs: Value) -> Result<ProviderResult, ProviderError> {
    match inputs["fail"].as_str() {
        Some("inputs") => return Err(ProviderError::inputs("`fail` asked for it")),
        Some("provider") => {
            let upstream = inputs["upstream"].as_str().unwrap_or("upstream said no");
            return Err(ProviderError::failed(upstream));
        }
        Some("panic") => panic!("asked to panic"),
        _ => {}
    }
    let mut outputs = Vec::new();
    for file in inputs["files"].as_array().into_iter().flatten() {
        outputs.push(ProviderOutput::new(
            file["path"].as_str().unwrap_or_default(),
            file["text"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
            file["mime"].as_str().unwrap_or("text/plain"),
        ));
    }
    if inputs["context"] == json!(true) {
        let seen = json!({
            "mode": context.mode(),
            "secrets": context.secret_names().collect::<Vec<_>>(),
            "token": context.secret("TEST_TOKEN"),
            "base_url": context.env("TEST_BASE_URL"),
            "random": context.seeded_rng().next_u64(),
        });
        outputs.push(ProviderOutput::json("context.json", &seen)?);
    }
    Ok(ProviderResult {
        outputs,
        processor_info: "echo".to_owned(),
        usage: Usage::from([("calls".to_owned(), 1)]),
    })
}

fn definition() -> ProcessorDefinition {
    ProcessorDefinition::new(REF.parse().unwrap(), echo)
        .with_required_secrets(["TEST_TOKEN"])
        .with_passthrough_env(["TEST_BASE_URL"])
}

async fn start(env: &[(&str, &str)]) -> TestServer {
    TestServer::start(definition(), env).await
}

fn files_inputs() -> Value {
    json!({
        "schema": "v1",
        "files": [
            {"path": "text/b.txt", "text": "bee\n"},
            {"path": "a.json", "text": "{}\n", "mime": "application/json"},
        ],
        "context": true,
    })
}

fn world(path: &str) -> WorldPath {
    WorldPath::parse(path).unwrap()
}

fn error_code(envelope: &Envelope) -> ErrorCode {
    match envelope {
        Envelope::Error(error) => error.error.code,
        Envelope::Success(success) => panic!("expected an error, got {success:?}"),
    }
}

#[tokio::test]
async fn healthz_reports_digest_and_ref() {
    let server = start(&[]).await;
    let response = server
        .client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    let health: Health = response.json().await.unwrap();
    assert!(health.ok);
    assert_eq!(health.image_digest, TEST_IMAGE_DIGEST);
    assert_eq!(health.processor_ref.to_string(), REF);
}

#[tokio::test]
async fn run_writes_outputs_index_and_identical_receipts() {
    let server = start(&[]).await;
    let envelope = server.run_ok("e1", Mode::Mock, files_inputs()).await;
    let prefix = "/artifacts/outputs/test/e1/";
    assert_eq!(
        envelope.index_path.as_str(),
        format!("{prefix}outputs.json")
    );
    let paths: Vec<&str> = envelope.outputs.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/artifacts/outputs/test/e1/outputs/a.json",
            "/artifacts/outputs/test/e1/outputs/context.json",
            "/artifacts/outputs/test/e1/outputs/text/b.txt",
        ]
    );
    for output in &envelope.outputs {
        let bytes = server.read(&output.path);
        assert_eq!(proctor_contract::cid(&bytes), output.cid);
        assert_eq!(bytes.len() as u64, output.size_bytes);
    }
    assert_eq!(envelope.outputs[0].mime, "application/json");
    assert_eq!(envelope.outputs[2].mime, "text/plain");
    assert_eq!(server.output(&envelope, "text/b.txt"), b"bee\n");
    assert!(
        server
            .artifacts_root()
            .join("outputs/test/e1/outputs/text/b.txt")
            .is_file()
    );

    let index = server.read(&envelope.index_path);
    assert_eq!(
        index,
        OutputsIndex {
            outputs: envelope.outputs.clone()
        }
        .to_bytes()
    );

    let receipt = server.receipt(&envelope);
    let fingerprint = "image_digest=sha256:test;mode=mock;ref=test/echo@1;secrets=";
    assert_eq!(envelope.meta.env_fingerprint, fingerprint);
    assert_eq!(envelope.meta.image_digest, TEST_IMAGE_DIGEST);
    assert_eq!(envelope.meta.mode, Mode::Mock);
    assert_eq!(receipt.env_fingerprint, fingerprint);
    assert_eq!(receipt.image_digest, TEST_IMAGE_DIGEST);
    assert_eq!(receipt.execution_id, "e1");
    assert_eq!(receipt.processor_ref.to_string(), REF);
    assert_eq!(
        receipt.inputs_hash,
        proctor_contract::inputs_hash(&files_inputs()).value
    );
    assert_eq!(receipt.hash_schema, "jcs-blake3-v1");
    assert_eq!(receipt.outputs_index, envelope.index_path);
    assert_eq!(receipt.processor_info, "echo");
    assert_eq!(receipt.usage["calls"], 1);
    assert_eq!(receipt.duration_ms, envelope.meta.duration_ms);
    assert!(receipt.duration_ms >= 1, "a run that wrote files took time");
    assert_eq!(receipt.mode, Mode::Mock);
    assert!(receipt.timestamp_utc.ends_with('Z'));
    assert!(receipt.upstream.is_empty());
    assert!(
        !String::from_utf8(server.read(&receipt_path(&envelope)))
            .unwrap()
            .contains("upstream")
    );
    assert!(!server.listing().iter().any(|name| name.ends_with(".tmp")));
}

fn receipt_path(envelope: &proctor_contract::SuccessEnvelope) -> WorldPath {
    WorldPath::execution_receipt(&envelope.execution_id).unwrap()
}

#[tokio::test]
async fn the_receipt_names_the_upstream_outputs_of_the_payload() {
    let server = start(&[]).await;
    let upstream = json!([
        {"execution_id": "e0", "path": "/artifacts/p/e0/outputs/a.txt", "cid": proctor_contract::cid(b"a")},
        {"execution_id": "e9", "path": "/artifacts/p/e9/outputs/b.txt", "cid": proctor_contract::cid(b"b")},
    ]);
    let mut payload = server.payload("u1", Mode::Mock, files_inputs());
    payload["upstream"] = upstream.clone();
    let (status, envelope) = server.post("/run", &payload).await;
    let Envelope::Success(envelope) = envelope else {
        panic!("expected success, got {status}: {envelope:?}");
    };
    let receipt = server.receipt(&envelope);
    assert_eq!(serde_json::to_value(&receipt.upstream).unwrap(), upstream);
    assert_eq!(
        receipt.inputs_hash,
        proctor_contract::inputs_hash(&files_inputs()).value,
        "the upstream list is not hashed with the inputs"
    );

    payload["execution_id"] = json!("u2");
    payload["upstream"][0]["transition"] = json!("stats");
    let (status, envelope) = server.post("/run", &payload).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&envelope), ErrorCode::Inputs);
}

#[tokio::test]
async fn same_inputs_twice_give_identical_bytes_cids_and_stable_receipts() {
    let server = start(&[]).await;
    let reordered: Value = serde_json::from_str(
        r#"{"context":true,"files":[{"path":"text/b.txt","text":"bee\n"},{"mime":"application/json","text":"{}\n","path":"a.json"}],"schema":"v1"}"#,
    )
    .unwrap();
    let first = server.run_ok("run-a", Mode::Mock, files_inputs()).await;
    let second = server.run_ok("run-b", Mode::Mock, reordered).await;
    assert_eq!(first.outputs.len(), second.outputs.len());
    for (a, b) in first.outputs.iter().zip(&second.outputs) {
        assert_eq!(a.cid, b.cid);
        assert_eq!(server.read(&a.path), server.read(&b.path));
    }
    let (receipt_a, receipt_b) = (server.receipt(&first), server.receipt(&second));
    assert_ne!(receipt_a.execution_id, receipt_b.execution_id);
    assert_eq!(receipt_a.stable_part(), receipt_b.stable_part());
}

#[tokio::test]
async fn mock_gets_no_secrets_even_when_the_environment_has_them() {
    let env = [
        ("TEST_TOKEN", "tok-1234567890"),
        ("TEST_BASE_URL", "http://127.0.0.1:9"),
    ];
    let server = start(&env).await;
    let inputs = json!({"context": true});

    let mock = server.run_ok("m1", Mode::Mock, inputs.clone()).await;
    let seen: Value = serde_json::from_slice(&server.output(&mock, "context.json")).unwrap();
    assert_eq!(seen["secrets"], json!([]));
    assert_eq!(seen["token"], Value::Null);
    assert_eq!(seen["base_url"], Value::Null);
    assert!(mock.meta.env_fingerprint.ends_with("secrets="));

    let real = server.run_ok("r1", Mode::Real, inputs).await;
    let seen: Value = serde_json::from_slice(&server.output(&real, "context.json")).unwrap();
    assert_eq!(seen["secrets"], json!(["TEST_TOKEN"]));
    assert_eq!(seen["token"], "tok-1234567890");
    assert_eq!(seen["base_url"], "http://127.0.0.1:9");
    assert_eq!(
        real.meta.env_fingerprint,
        "image_digest=sha256:test;mode=real;ref=test/echo@1;secrets=TEST_TOKEN"
    );
    let receipt = server.read(&world("/artifacts/execution/r1/receipt.json"));
    assert!(
        !String::from_utf8(receipt)
            .unwrap()
            .contains("tok-1234567890")
    );
}

#[tokio::test]
async fn real_mode_without_the_secret_is_refused_before_the_provider() {
    let server = start(&[]).await;
    let (status, envelope) = server.run("r2", Mode::Real, files_inputs()).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&envelope), ErrorCode::MissingSecret);
    let Envelope::Error(error) = &envelope else {
        unreachable!()
    };
    assert!(
        error
            .error
            .message
            .contains("missing required secret: TEST_TOKEN")
    );
    assert!(error.meta.env_fingerprint.is_some());
    assert!(server.listing().is_empty());
}

#[tokio::test]
async fn escaping_output_paths_are_refused_and_nothing_is_written() {
    let server = start(&[]).await;
    for (path, code) in [
        ("../x", ErrorCode::DotSegments),
        ("a/../../x", ErrorCode::DotSegments),
        ("/etc/x", ErrorCode::BadPath),
        ("a%2Fb", ErrorCode::DecodedSlash),
        ("dir/", ErrorCode::SelectorKindMismatch),
    ] {
        let inputs =
            json!({"files": [{"path": "ok.txt", "text": "fine"}, {"path": path, "text": "x"}]});
        let (status, got, _) = server.run_err("esc", Mode::Mock, inputs).await;
        assert_eq!((status, got), (500, code), "{path}");
        assert!(
            server.listing().is_empty(),
            "{path}: {:?}",
            server.listing()
        );
    }
}

#[tokio::test]
async fn duplicate_outputs_are_refused_with_no_files() {
    let server = start(&[]).await;
    for (a, b) in [("a.txt", "a.txt"), ("caf%C3%A9", "café"), ("x//y", "x/y")] {
        let inputs = json!({"files": [{"path": a, "text": "1"}, {"path": b, "text": "2"}]});
        let (status, code, message) = server.run_err("dup", Mode::Mock, inputs).await;
        assert_eq!((status, code), (500, ErrorCode::OutputDuplicate), "{a} {b}");
        assert!(message.contains("duplicate output after canonicalization"));
    }
    let inputs = json!({"files": [{"path": "a", "text": "1"}, {"path": "a/b", "text": "2"}]});
    let (_, code, _) = server.run_err("dup", Mode::Mock, inputs).await;
    assert_eq!(code, ErrorCode::BadPath);
    assert!(server.listing().is_empty());
}

#[tokio::test]
async fn bad_requests_get_error_envelopes() {
    let server = start(&[]).await;
    let good = server.payload("bad", Mode::Mock, files_inputs());

    let response = server
        .client()
        .post(server.url("/run"))
        .header("content-type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let envelope = Envelope::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(error_code(&envelope), ErrorCode::Inputs);
    assert_eq!(envelope.execution_id(), "bad");

    let response = server
        .client()
        .post(server.url("/run-stream"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let envelope = Envelope::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(error_code(&envelope), ErrorCode::Inputs);

    let mutate = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let mut unknown_field = good.clone();
    unknown_field["extra"] = json!(1);
    let mut no_inputs = good.clone();
    no_inputs.as_object_mut().unwrap().remove("inputs");
    for (body, code) in [
        (mutate("schema", json!("v2")), ErrorCode::Inputs),
        (mutate("ref", json!("other/thing@1")), ErrorCode::Inputs),
        (mutate("ref", json!("not a ref")), ErrorCode::Inputs),
        (mutate("mode", json!("dry")), ErrorCode::Inputs),
        (mutate("execution_id", json!("../up")), ErrorCode::Inputs),
        (mutate("inputs", json!([1])), ErrorCode::Inputs),
        (unknown_field, ErrorCode::Inputs),
        (no_inputs, ErrorCode::Inputs),
        (
            mutate("write_prefix", json!("/tmp/x/")),
            ErrorCode::BadFacet,
        ),
        (
            mutate("write_prefix", json!("/streams/x/")),
            ErrorCode::WritePrefix,
        ),
        (
            mutate("write_prefix", json!("/artifacts/../x/")),
            ErrorCode::DotSegments,
        ),
        (
            mutate("write_prefix", json!("/artifacts/a%2Fb/")),
            ErrorCode::DecodedSlash,
        ),
    ] {
        for path in ["/run", "/run-stream"] {
            let (status, envelope) = server.post(path, &body).await;
            assert_eq!(status, 400, "{path} {body}");
            assert_eq!(error_code(&envelope), code, "{path} {body}");
        }
    }
    assert!(server.listing().is_empty());
}

#[tokio::test]
async fn write_prefix_without_trailing_slash_is_normalized() {
    let server = start(&[]).await;
    let mut body = server.payload("noslash", Mode::Mock, files_inputs());
    body["write_prefix"] = json!("/artifacts/outputs/demo/noslash");
    let (status, envelope) = server.post("/run", &body).await;
    assert_eq!(status, 200);
    let Envelope::Success(success) = envelope else {
        panic!("{envelope:?}")
    };
    assert_eq!(
        success.index_path.as_str(),
        "/artifacts/outputs/demo/noslash/outputs.json"
    );
}

#[tokio::test]
async fn provider_failures_become_error_envelopes_with_no_files() {
    let server = start(&[]).await;
    for (fail, status, code) in [
        ("inputs", 400, ErrorCode::Inputs),
        ("provider", 502, ErrorCode::Provider),
        ("panic", 500, ErrorCode::Provider),
    ] {
        let inputs = json!({"files": [{"path": "a.txt", "text": "a"}], "fail": fail});
        let (got_status, got_code, _) = server.run_err("fail", Mode::Mock, inputs).await;
        assert_eq!((got_status, got_code), (status, code), "{fail}");
    }
    assert!(server.listing().is_empty());
}

#[tokio::test]
async fn a_write_failure_midway_leaves_no_partial_files() {
    let server = start(&[]).await;
    let blocker = server.artifacts_root().join("execution/w1/receipt.json");
    fs::create_dir_all(&blocker).unwrap();
    let (status, code, _) = server.run_err("w1", Mode::Mock, files_inputs()).await;
    assert_eq!((status, code), (500, ErrorCode::OutputWrite));
    assert_eq!(
        server.listing(),
        ["execution", "execution/w1", "execution/w1/receipt.json"]
    );
}

/// Parses an SSE body into `(event, data)` pairs, skipping comments.
fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut fields = BTreeMap::new();
            for line in block.lines().filter(|line| !line.starts_with(':')) {
                let (name, value) = line.split_once(':')?;
                fields.insert(
                    name.to_owned(),
                    value.strip_prefix(' ').unwrap_or(value).to_owned(),
                );
            }
            Some((
                fields.remove("event")?,
                fields.remove("data").unwrap_or_default(),
            ))
        })
        .collect()
}

#[tokio::test]
async fn run_stream_sends_progress_then_one_done() {
    let server = start(&[]).await;
    let body = server.payload("s1", Mode::Mock, files_inputs());
    let response = server
        .client()
        .post(server.url("/run-stream"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = sse_events(&response.text().await.unwrap());
    let (last, progress) = events.split_last().unwrap();
    assert_eq!(last.0, "done");
    assert!(
        progress.iter().all(|(event, _)| event == "progress"),
        "{events:?}"
    );
    let stages: Vec<String> = progress
        .iter()
        .map(|(_, data)| {
            let data: Value = serde_json::from_str(data).unwrap();
            data["stage"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        stages,
        [
            "accepted",
            "provider_started",
            "provider_finished",
            "outputs_written"
        ]
    );
    let Envelope::Success(envelope) = Envelope::from_slice(last.1.as_bytes()).unwrap() else {
        panic!("{last:?}")
    };
    assert_eq!(envelope.execution_id, "s1");
    assert!(server.fs_path(&envelope.index_path).is_file());

    let body = server.payload("s2", Mode::Mock, json!({"fail": "provider"}));
    let response = server
        .client()
        .post(server.url("/run-stream"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(
        events.iter().filter(|(event, _)| event == "done").count(),
        1
    );
    let done = &events.last().unwrap().1;
    assert_eq!(
        error_code(&Envelope::from_slice(done.as_bytes()).unwrap()),
        ErrorCode::Provider
    );
}

/// `PROCTOR_IMAGE_DIGEST`, which every processor needs to run.
fn digest() -> (String, String) {
    (
        "PROCTOR_IMAGE_DIGEST".to_owned(),
        TEST_IMAGE_DIGEST.to_owned(),
    )
}

#[tokio::test]
async fn serve_on_stops_when_asked() {
    let artifacts = tempfile::tempdir().unwrap();
    let root = (
        "PROCTOR_ARTIFACTS_ROOT".to_owned(),
        artifacts.path().display().to_string(),
    );
    let config = ServerConfig::from_vars([root, digest()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(proctor_sdk::serve_on(
        listener,
        config,
        definition(),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = proctor_tls::http_client_builder().build().unwrap();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.json::<Health>().await.unwrap().image_digest,
        TEST_IMAGE_DIGEST
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn serve_on_socket_answers_over_the_socket_and_removes_it_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("processor.sock");
    fs::write(&socket, b"stale").unwrap();
    let root = (
        "PROCTOR_ARTIFACTS_ROOT".to_owned(),
        dir.path().join("artifacts").display().to_string(),
    );
    let config = ServerConfig::from_vars([root, digest()]).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn({
        let socket = socket.clone();
        async move {
            proctor_sdk::serve_on_socket(&socket, config, definition(), async move {
                let _ = stopped.await;
            })
            .await
        }
    });
    let client = proctor_tls::http_client_builder()
        .unix_socket(socket.as_path())
        .build()
        .unwrap();
    let health = loop {
        // The server binds on its first poll; until then the stale file refuses connections.
        match client.get("http://processor/healthz").send().await {
            Ok(response) => break response.json::<Health>().await.unwrap(),
            Err(error) if server.is_finished() => panic!("the server stopped: {error}"),
            Err(_) => tokio::task::yield_now().await,
        }
    };
    assert_eq!(health.processor_ref.to_string(), REF);
    let body = json!({
        "schema": "v1", "execution_id": "sock-1", "ref": REF, "mode": "mock",
        "inputs": files_inputs(), "write_prefix": "/artifacts/outputs/test/sock-1/",
    });
    let response = client
        .post("http://processor/run")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        dir.path()
            .join("artifacts/outputs/test/sock-1/outputs.json")
            .is_file()
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!socket.exists());
}

/// The processor's secret and pass-through values, as its environment holds them.
const TOKEN: &str = "tok-1234567890";
const BASE_URL: &str = "http://127.0.0.1:9/v1";

/// An upstream answer quoting the token (as is and percent-encoded), the base URL, URL
/// credentials and a bearer token.
fn leaky_upstream() -> String {
    format!(
        "upstream said: bad key {TOKEN} for {BASE_URL}/chat?key=tok%2D1234567890 \
         (redirected to https://leak-user:leak-pass-77@up.example/v1); \
         sent Authorization: Bearer leak-bearer-5521"
    )
}

/// Every leaked piece of [`leaky_upstream`].
const LEAKED: [&str; 5] = [
    TOKEN,
    BASE_URL,
    "tok%2D1234567890",
    "leak-pass-77",
    "leak-bearer-5521",
];

/// Log events emitted on this thread, each as `name=value` pairs.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut line = String::new();
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                let _ = write!(line, "{}={value:?} ", field.name());
            },
        );
        self.0.lock().unwrap().push(line);
    }
}

#[tokio::test]
async fn provider_errors_and_their_logs_never_carry_the_processors_values() {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    let _logging = tracing::subscriber::set_default(subscriber);
    let server = start(&[("TEST_TOKEN", TOKEN), ("TEST_BASE_URL", BASE_URL)]).await;
    let inputs = json!({"fail": "provider", "upstream": leaky_upstream()});
    for mode in [Mode::Mock, Mode::Real] {
        let (status, code, message) = server.run_err("leak", mode, inputs.clone()).await;
        assert_eq!((status, code), (502, ErrorCode::Provider));
        assert!(message.starts_with("provider failed: upstream said: bad key [REDACTED] for [REDACTED]/chat?key=[REDACTED]"), "{message}");
        for leaked in LEAKED {
            assert!(!message.contains(leaked), "{mode}: {leaked} in {message}");
        }
    }
    let lines = recorded.0.lock().unwrap().clone();
    let failures: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("run.fail"))
        .collect();
    assert_eq!(failures.len(), 2, "{lines:#?}");
    assert!(failures[0].contains("upstream said"), "{failures:?}");
    for line in &lines {
        for leaked in LEAKED {
            assert!(!line.contains(leaked), "{leaked} logged: {line}");
        }
    }
}

#[tokio::test]
async fn long_provider_errors_are_redacted_before_they_are_cut() {
    let server = start(&[("TEST_TOKEN", TOKEN)]).await;
    // The token starts just before the 4 KiB limit: cut first, its beginning would stay.
    let upstream = format!("{}{TOKEN}{}", "x".repeat(4090), "y".repeat(100));
    let inputs = json!({"fail": "provider", "upstream": upstream});
    let (_, code, message) = server.run_err("long", Mode::Mock, inputs).await;
    assert_eq!(code, ErrorCode::Provider);
    let detail = message.strip_prefix("provider failed: ").unwrap();
    assert!(detail.len() <= 4096, "{} bytes", detail.len());
    assert_eq!(detail, format!("{}…", "x".repeat(4090)));
}

/// A provider whose runs wait at a gate: each announces it has started, then waits for a
/// permit of `release`.
struct Gated {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
}

impl proctor_sdk::Provider for Gated {
    fn run<'a>(&'a self, _: &'a Context, _: Value) -> proctor_sdk::ProviderFuture<'a> {
        Box::pin(async move {
            self.started.notify_one();
            let permit = self.release.acquire().await.unwrap();
            permit.forget();
            Ok(ProviderResult::default())
        })
    }
}

/// `GET /healthz`: the status and the health document.
async fn health(server: &TestServer) -> (u16, Health) {
    let response = server
        .client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `/healthz` until it leaves `starting`.
async fn health_after_setup(server: &TestServer) -> (u16, Health) {
    loop {
        let answer = health(server).await;
        if answer.1.state != HealthState::Starting {
            return answer;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn healthz_reports_ready_and_the_concurrency_declared_or_set() {
    let (status, reported) = health(&start(&[]).await).await;
    assert_eq!((status, reported.state), (200, HealthState::Ready));
    assert_eq!(reported.concurrency.get(), 1);
    assert!(reported.log_tail.is_empty());

    let declared = definition().with_concurrency(NonZeroU32::new(4).unwrap());
    let server = TestServer::start(declared.clone(), &[]).await;
    assert_eq!(health(&server).await.1.concurrency.get(), 4);
    let server = TestServer::start(declared, &[("PROCTOR_CONCURRENCY", "2")]).await;
    assert_eq!(health(&server).await.1.concurrency.get(), 2);
}

#[tokio::test]
async fn a_run_over_the_limit_is_answered_busy_until_a_slot_frees() {
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gated = Gated {
        started: Arc::clone(&started),
        release: Arc::clone(&release),
    };
    let definition = ProcessorDefinition::new(REF.parse().unwrap(), gated);
    let server = Arc::new(TestServer::start(definition, &[]).await);
    let inputs = json!({"schema": "v1"});

    let first = tokio::spawn({
        let server = Arc::clone(&server);
        let inputs = inputs.clone();
        async move { server.run("first", Mode::Mock, inputs).await }
    });
    started.notified().await;
    let (status, busy) = health(&server).await;
    assert_eq!((status, busy.state), (200, HealthState::Busy));

    let (status, code, message) = server.run_err("second", Mode::Mock, inputs.clone()).await;
    assert_eq!((status, code), (409, ErrorCode::ProcessorBusy));
    assert!(
        message.starts_with("processor busy: all 1 run slots are taken"),
        "{message}"
    );
    let stream = server
        .post(
            "/run-stream",
            &server.payload("third", Mode::Mock, inputs.clone()),
        )
        .await;
    assert_eq!(
        (stream.0, error_code(&stream.1)),
        (409, ErrorCode::ProcessorBusy)
    );

    release.add_permits(1);
    let (status, envelope) = first.await.unwrap();
    assert!(matches!(envelope, Envelope::Success(_)), "{envelope:?}");
    assert_eq!(status, 200);
    assert_eq!(health(&server).await.1.state, HealthState::Ready);
    release.add_permits(1);
    server.run_ok("fourth", Mode::Mock, inputs).await;
}

#[tokio::test]
async fn runs_wait_for_setup_and_are_busy_meanwhile() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = Arc::clone(&release);
    let definition = definition().with_setup(move |log: SetupLog| {
        let gate = Arc::clone(&gate);
        async move {
            log.line("loading the model");
            gate.acquire().await.unwrap().forget();
            Ok(())
        }
    });
    let server = TestServer::start(definition, &[]).await;
    let (status, starting) = health(&server).await;
    assert_eq!((status, starting.state), (503, HealthState::Starting));
    let (status, code, message) = server.run_err("early", Mode::Mock, json!({})).await;
    assert_eq!((status, code), (409, ErrorCode::ProcessorBusy));
    assert!(message.contains("set-up has not finished"), "{message}");

    release.add_permits(1);
    let (status, ready) = health_after_setup(&server).await;
    assert_eq!((status, ready.state), (200, HealthState::Ready));
    server.run_ok("later", Mode::Mock, files_inputs()).await;
}

#[tokio::test]
async fn a_failed_setup_reports_its_redacted_log_tail_and_refuses_runs() {
    let definition = definition().with_setup(|log: SetupLog| async move {
        log.line("connecting to the model server");
        log.line(format!("GET {BASE_URL}/models with token {TOKEN}"));
        Err(ProviderError::failed(format!("{BASE_URL} answered 401")))
    });
    let env = [("TEST_TOKEN", TOKEN), ("TEST_BASE_URL", BASE_URL)];
    let server = TestServer::start(definition, &env).await;
    let (status, failed) = health_after_setup(&server).await;
    assert_eq!((status, failed.state), (503, HealthState::SetupFailed));
    assert_eq!(
        failed.log_tail,
        [
            "connecting to the model server",
            "GET [REDACTED]/models with token [REDACTED]",
            "set-up failed: [REDACTED] answered 401",
        ]
    );
    let (status, code, message) = server.run_err("refused", Mode::Mock, json!({})).await;
    assert_eq!((status, code), (503, ErrorCode::Provider));
    assert_eq!(
        message,
        "provider failed: set-up failed: [REDACTED] answered 401"
    );
}

#[tokio::test]
async fn a_template_write_prefix_is_expanded_as_the_orchestrator_expands_it() {
    let server = start(&[]).await;
    for (path, template) in [
        ("/run", "/artifacts/outputs/demo/{execution_id}"),
        (
            "/run-stream",
            "/artifacts/outputs/demo/{execution_id}/part/",
        ),
    ] {
        let id = if path == "/run" { "t1" } else { "t2" };
        let mut body = server.payload(id, Mode::Mock, files_inputs());
        body["write_prefix"] = json!(template);
        let envelope = if path == "/run" {
            server.post(path, &body).await.1
        } else {
            let response = server.client().post(server.url(path)).json(&body);
            let text = response.send().await.unwrap().text().await.unwrap();
            let (event, data) = sse_events(&text).pop().unwrap();
            assert_eq!(event, "done");
            Envelope::from_slice(data.as_bytes()).unwrap()
        };
        let Envelope::Success(success) = envelope else {
            panic!("{template}: {envelope:?}")
        };
        let expected = WritePrefix::expand(template, id).unwrap();
        assert_eq!(success.index_path, expected.index_path(), "{template}");
        assert_eq!(
            server.receipt(&success).outputs_index,
            expected.index_path()
        );
        assert!(server.fs_path(&expected.receipt_path()).is_file());
    }
    assert!(
        !server.listing().iter().any(|name| name.contains('{')),
        "{:?}",
        server.listing()
    );
}

#[tokio::test]
async fn other_placeholders_in_the_write_prefix_are_refused_and_nothing_is_written() {
    let server = start(&[]).await;
    for template in [
        "/artifacts/outputs/{plan_id}/{execution_id}/",
        "/artifacts/outputs/{run}/p1/",
        "/artifacts/outputs/{execution-id}/",
    ] {
        for path in ["/run", "/run-stream"] {
            let mut body = server.payload("p1", Mode::Mock, files_inputs());
            body["write_prefix"] = json!(template);
            let (status, envelope) = server.post(path, &body).await;
            assert_eq!(status, 400, "{path} {template}");
            assert_eq!(error_code(&envelope), ErrorCode::WritePrefix, "{template}");
            let Envelope::Error(error) = envelope else {
                unreachable!()
            };
            assert!(
                error.error.message.starts_with("invalid write_prefix: "),
                "{}",
                error.error.message
            );
        }
    }
    assert!(server.listing().is_empty(), "{:?}", server.listing());
}

#[tokio::test]
async fn without_an_image_digest_every_run_is_refused_and_healthz_says_why() {
    let setup_ran = Arc::new(Mutex::new(false));
    let ran = Arc::clone(&setup_ran);
    let definition = definition().with_setup(move |_: SetupLog| {
        *ran.lock().unwrap() = true;
        async { Ok(()) }
    });
    let server = TestServer::start(definition, &[("PROCTOR_IMAGE_DIGEST", "")]).await;
    let (status, reported) = health(&server).await;
    assert_eq!((status, reported.state), (503, HealthState::SetupFailed));
    assert_eq!(reported.image_digest, "");
    assert_eq!(
        reported.log_tail,
        ["PROCTOR_IMAGE_DIGEST is unset; a processor runs only from an image it can name"]
    );
    assert!(!*setup_ran.lock().unwrap(), "no set-up without a digest");

    let good = server.payload("d1", Mode::Mock, files_inputs());
    for path in ["/run", "/run-stream"] {
        let (status, envelope) = server.post(path, &good).await;
        assert_eq!(status, 500, "{path}");
        let Envelope::Error(error) = envelope else {
            panic!("{path}: {envelope:?}")
        };
        assert_eq!(error.error.code, ErrorCode::ImageUnpinned);
        assert!(
            error
                .error
                .message
                .contains("PROCTOR_IMAGE_DIGEST is unset"),
            "{}",
            error.error.message
        );
        assert_eq!(error.meta.image_digest, None);
        assert_eq!(error.execution_id, "d1");
    }
    let malformed = server
        .client()
        .post(server.url("/run"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 500);
    assert!(server.listing().is_empty(), "{:?}", server.listing());
}

#[tokio::test]
async fn the_env_fingerprint_names_the_runtime_limits_the_adapter_set() {
    let limits = [
        ("PROCTOR_CPU", "0.5"),
        ("PROCTOR_MEMORY_GB", "2"),
        ("PROCTOR_GPU", "A100"),
    ];
    let server = start(&limits).await;
    let envelope = server.run_ok("f1", Mode::Mock, files_inputs()).await;
    let fingerprint =
        "cpu=0.5;gpu=A100;image_digest=sha256:test;memory_gb=2;mode=mock;ref=test/echo@1;secrets=";
    assert_eq!(envelope.meta.env_fingerprint, fingerprint);
    assert_eq!(server.receipt(&envelope).env_fingerprint, fingerprint);

    let server = start(&limits[..2]).await;
    let envelope = server.run_ok("f2", Mode::Mock, files_inputs()).await;
    assert_eq!(
        envelope.meta.env_fingerprint,
        "cpu=0.5;image_digest=sha256:test;memory_gb=2;mode=mock;ref=test/echo@1;secrets=",
        "no gpu requested, none named"
    );
}
