//! The Modal adapter against a real processor container standing in for its Modal
//! deployment, behind a proxy that demands Modal's proxy-auth headers.
//!
//! Needs: the Docker engine and the OCI registry at 127.0.0.1:5000 (`scripts/setup.sh`
//! starts both). `text/stats@1` is built once per test process, pushed, and pinned by the
//! digest the registry gives it; the stand-in container runs that image with host
//! networking on a loopback port (`PROCTOR_BIND=127.0.0.1`), as its Modal deployment would
//! run it behind `https://…modal.run`, and carries the test's `proctor.test` label, so the
//! [`TestRun`] guard removes it even when the test fails. The failure tests without a
//! processor (closed port, hung endpoint, non-JSON and 5xx answers) need neither.
//! Every server listens on 127.0.0.1 and stops with its test's runtime.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use proctor_adapters::{
    Adapter, ImageBuild, ImageSource, Invocation, LocalAdapter, ModalAdapter, ResponseLimits,
    Staging, host_platform,
};
use proctor_contract::{
    CanonError, Digest, Envelope, ErrorCode, Mode, OutputsIndex, PAYLOAD_SCHEMA, PinnedReference,
    Platform, RunPayload, WritePrefix, cid,
};
use proctor_registry::{ProcessorSpec, pinned_image};
use serde_json::{Value, json};
use support::{TEST_LABEL, TestRun, load_spec, processor_dir, workspace_root};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// The proxy-auth token the proxy demands.
const TOKEN_ID: &str = "wk-proctor-test-id";
/// The proxy-auth secret the proxy demands.
const TOKEN_SECRET: &str = "ws-proctor-test-secret";
/// Where the pinned test image is pushed.
const PIN_REPOSITORY: &str = "127.0.0.1:5000/proctor-test/text-stats";
/// The tag pushed (the digest is what counts).
const PIN_TAG: &str = "modal";
/// Modal's answer to a request without proxy-auth headers.
const MISSING_CREDENTIALS: &str = "modal-http: missing credentials for proxy authorization";

/// `text/stats@1`'s image and its pin, built and pushed once per test process.
struct PinnedImage {
    image_id: String,
    reference: PinnedReference,
}

async fn pinned_text_stats() -> &'static PinnedImage {
    static PINNED: OnceCell<PinnedImage> = OnceCell::const_new();
    PINNED
        .get_or_init(|| async {
            let dir = processor_dir("processors/text/stats/1");
            let spec = load_spec(&dir);
            let root = workspace_root();
            let adapter = LocalAdapter::connect().unwrap();
            let image_id = adapter
                .build_image(&ImageBuild {
                    spec: &spec,
                    workspace_root: &root,
                    platform: host_platform().unwrap(),
                })
                .await
                .unwrap()
                .id;
            let docker = support::docker().await;
            let tag = TagImageOptionsBuilder::default()
                .repo(PIN_REPOSITORY)
                .tag(PIN_TAG)
                .build();
            docker.tag_image(&image_id, Some(tag)).await.unwrap();
            let push = PushImageOptionsBuilder::default().tag(PIN_TAG).build();
            let pushed: Vec<_> = docker
                .push_image(PIN_REPOSITORY, Some(push), None)
                .collect()
                .await;
            for item in pushed {
                let info = item.expect("push to 127.0.0.1:5000 (is scripts/setup.sh run?)");
                assert!(info.error_detail.is_none(), "push failed: {info:?}");
            }
            let reference = docker
                .inspect_image(&image_id)
                .await
                .unwrap()
                .repo_digests
                .unwrap_or_default()
                .into_iter()
                .find(|repo_digest| repo_digest.starts_with(&format!("{PIN_REPOSITORY}@")))
                .expect("the push recorded a digest")
                .parse()
                .unwrap();
            PinnedImage {
                image_id,
                reference,
            }
        })
        .await
}

/// `text/stats@1`'s registry entry with `reference` as its linux/amd64 pin.
fn pinned_spec(reference: &PinnedReference) -> ProcessorSpec {
    let mut spec = load_spec(&processor_dir("processors/text/stats/1"));
    spec.image.platforms.amd64 = Some(reference.to_string());
    spec
}

/// A well-formed pin nobody pushed, for tests without a processor.
fn unpushed_pin() -> PinnedReference {
    format!("{PIN_REPOSITORY}@sha256:{}", "5e".repeat(32))
        .parse()
        .unwrap()
}

/// The smoke example's inputs.
fn smoke_inputs() -> Value {
    load_spec(&processor_dir("processors/text/stats/1")).examples["smoke"]
        .inputs
        .clone()
}

/// A mock invocation for the Modal adapter, with a staging area in `parent` that stays
/// empty ([`assert_nothing_staged`]): the adapter never writes on this host.
fn modal_invocation(spec: &ProcessorSpec, inputs: Value, parent: &Path) -> Invocation {
    let execution_id = uuid::Uuid::new_v4().to_string();
    let prefix = WritePrefix::expand("/artifacts/test/{execution_id}", &execution_id).unwrap();
    let staging = Staging::create_in(parent, &execution_id).unwrap();
    Invocation {
        payload: RunPayload {
            schema: PAYLOAD_SCHEMA.to_owned(),
            execution_id,
            processor_ref: spec.processor_ref.clone(),
            mode: Mode::Mock,
            inputs,
            write_prefix: prefix.as_str().to_owned(),
            upstream: Vec::new(),
        },
        spec: spec.clone(),
        image: ImageSource::Pinned {
            reference: pinned_image(spec, Platform::Amd64).unwrap(),
        },
        staging: Arc::new(staging),
        timeout: Duration::from_secs(120),
        env: BTreeMap::new(),
        options: Value::Null,
        limits: ResponseLimits::default(),
    }
}

/// Asserts that nothing was written into the invocation's staging area.
fn assert_nothing_staged(invocation: &Invocation) {
    for dir in [
        invocation.staging.prefix_dir(),
        invocation.staging.execution_dir(),
    ] {
        assert!(
            support::listing(dir).is_empty(),
            "the modal adapter wrote on this host"
        );
    }
}

/// A Modal adapter whose endpoints are `base_url`, with the test token unless `bare`.
fn modal_adapter(base_url: &str, bare: bool) -> ModalAdapter {
    let mut env = BTreeMap::from([("PROCTOR_MODAL_BASE_URL".to_owned(), base_url.to_owned())]);
    if !bare {
        env.insert("MODAL_PROXY_TOKEN_ID".to_owned(), TOKEN_ID.to_owned());
        env.insert(
            "MODAL_PROXY_TOKEN_SECRET".to_owned(),
            TOKEN_SECRET.to_owned(),
        );
    }
    ModalAdapter::from_env(&env).unwrap()
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A processor container standing in for a Modal deployment.
struct StandIn {
    /// Its loopback port.
    port: u16,
    /// The directory backing its `/artifacts/`: where "Modal" keeps the run's files.
    artifacts: TempDir,
}

impl StandIn {
    /// Starts `image_id` (`text/stats@1`) reporting `digest`, labelled for `run`, with the
    /// environment a Modal deployment gives it, and waits for its `/healthz`.
    async fn start(run: &TestRun, image_id: &str, digest: &Digest) -> StandIn {
        let artifacts = tempfile::tempdir().unwrap();
        let me = std::fs::metadata("/proc/self").unwrap();
        let user = if me.uid() == 0 {
            std::os::unix::fs::chown(artifacts.path(), Some(65532), Some(65532)).unwrap();
            (65532, 65532)
        } else {
            (me.uid(), me.gid())
        };
        let port = free_port();
        let mut env = vec![
            "PROCTOR_BIND=127.0.0.1".to_owned(),
            format!("PROCTOR_PORT={port}"),
            format!("PROCTOR_IMAGE_DIGEST={digest}"),
            "PROCTOR_ARTIFACTS_ROOT=/artifacts".to_owned(),
        ];
        let spec = load_spec(&processor_dir("processors/text/stats/1"));
        env.extend(
            proctor_deploy::runtime_env(&spec.runtime)
                .into_iter()
                .map(|(name, value)| format!("{name}={value}")),
        );
        let body = ContainerCreateBody {
            image: Some(image_id.to_owned()),
            user: Some(format!("{}:{}", user.0, user.1)),
            env: Some(env),
            labels: Some(HashMap::from([(TEST_LABEL.to_owned(), run.label.clone())])),
            host_config: Some(HostConfig {
                network_mode: Some("host".to_owned()),
                mounts: Some(vec![Mount {
                    source: Some(artifacts.path().display().to_string()),
                    target: Some("/artifacts".to_owned()),
                    typ: Some(MountType::BIND),
                    read_only: Some(false),
                    ..Mount::default()
                }]),
                cap_drop: Some(vec!["ALL".to_owned()]),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                readonly_rootfs: Some(true),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let name = format!("proctor-modal-standin-{}", uuid::Uuid::new_v4().simple());
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        run.docker
            .create_container(Some(options), body)
            .await
            .unwrap();
        run.docker.start_container(&name, None).await.unwrap();
        let client = proctor_tls::http_client_builder().build().unwrap();
        let healthz = format!("http://127.0.0.1:{port}/healthz");
        for _ in 0..600 {
            if let Ok(answer) = client.get(&healthz).send().await
                && answer.status().is_success()
            {
                return StandIn { port, artifacts };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the stand-in container never answered {healthz}");
    }

    /// Host path of a world path under `/artifacts/`, inside the stand-in's storage.
    fn host_path(&self, world_path: &str) -> std::path::PathBuf {
        self.artifacts
            .path()
            .join(world_path.strip_prefix("/artifacts/").unwrap())
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    key: Option<String>,
    secret: Option<String>,
}

/// Modal's proxy-auth front, in miniature: requires `Modal-Key`/`Modal-Secret`, records
/// what arrived, and forwards (streaming the answer back) to the stand-in.
struct ProxyAuthFront {
    upstream_port: u16,
    client: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
}

impl ProxyAuthFront {
    /// Serves on a fresh loopback port; returns its base URL and the front.
    async fn start(upstream_port: u16) -> (String, Arc<ProxyAuthFront>) {
        let front = Arc::new(ProxyAuthFront {
            upstream_port,
            client: proctor_tls::http_client_builder().build().unwrap(),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&front));
        (serve(app).await, front)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|seen| seen.path).collect()
    }
}

async fn forward(State(front): State<Arc<ProxyAuthFront>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        path: parts.uri.path().to_owned(),
        key: header("modal-key"),
        secret: header("modal-secret"),
    };
    front.seen.lock().unwrap().push(seen.clone());
    match (seen.key.as_deref(), seen.secret.as_deref()) {
        (Some(TOKEN_ID), Some(TOKEN_SECRET)) => {}
        (None, _) | (_, None) => {
            return (StatusCode::UNAUTHORIZED, MISSING_CREDENTIALS).into_response();
        }
        _ => {
            return (
                StatusCode::UNAUTHORIZED,
                "modal-http: invalid credentials for proxy authorization",
            )
                .into_response();
        }
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}{}",
        front.upstream_port,
        parts.uri.path_and_query().map_or("/", |path| path.as_str())
    );
    let mut upstream = front.client.request(parts.method, url).body(body);
    for name in [CONTENT_TYPE, ACCEPT] {
        if let Some(value) = parts.headers.get(&name) {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            if let Some(media_type) = answer.headers().get(CONTENT_TYPE) {
                response = response.header(CONTENT_TYPE, media_type);
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap()
        }
        Err(_) => (StatusCode::BAD_GATEWAY, "modal-http: app unavailable").into_response(),
    }
}

/// Serves `app` on a fresh loopback port for the rest of the test; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}")
}

/// The parts of a success envelope that do not depend on the execution: outputs (paths
/// below the write prefix, CIDs, sizes, media types), the index path below the prefix, the
/// image digest, the env fingerprint and the mode, as JSON bytes.
fn stable_part(envelope: &Envelope, write_prefix: &str) -> Vec<u8> {
    let Envelope::Success(success) = envelope else {
        panic!("not a success: {envelope:?}")
    };
    let below = |path: &str| path.strip_prefix(write_prefix).unwrap().to_owned();
    let outputs: Vec<Value> = success
        .outputs
        .iter()
        .map(|output| {
            json!({
                "path": below(output.path.as_str()),
                "cid": output.cid,
                "size_bytes": output.size_bytes,
                "mime": output.mime,
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "outputs": outputs,
        "index_path": below(success.index_path.as_str()),
        "image_digest": success.meta.image_digest,
        "env_fingerprint": success.meta.env_fingerprint,
        "mode": success.meta.mode,
    }))
    .unwrap()
}

#[tokio::test]
async fn mock_runs_match_the_local_adapter_in_their_stable_parts() {
    let pinned = pinned_text_stats().await;
    let spec = pinned_spec(&pinned.reference);
    let run = TestRun::new().await;

    let local = run.invocation(
        &spec,
        ImageSource::Pinned {
            reference: pinned.reference.clone(),
        },
        Mode::Mock,
        smoke_inputs(),
    );
    let local_envelope = LocalAdapter::connect()
        .unwrap()
        .invoke(&local, &CancellationToken::new())
        .await
        .unwrap();
    let expected = stable_part(&local_envelope, &local.payload.write_prefix);

    let stand_in = StandIn::start(&run, &pinned.image_id, pinned.reference.digest()).await;
    let (base_url, front) = ProxyAuthFront::start(stand_in.port).await;
    let adapter = modal_adapter(&base_url, false);
    assert_eq!(adapter.name(), "modal");
    for options in [Value::Null, json!({"stream": true})] {
        let mut invocation = modal_invocation(&spec, smoke_inputs(), run.artifacts.path());
        invocation.options = options.clone();
        let envelope = adapter
            .invoke(&invocation, &CancellationToken::new())
            .await
            .unwrap();
        assert_nothing_staged(&invocation);
        assert_eq!(
            String::from_utf8(stable_part(&envelope, &invocation.payload.write_prefix)).unwrap(),
            String::from_utf8(expected.clone()).unwrap(),
            "{options}: the stable parts differ from the local adapter's"
        );
        assert_eq!(envelope.execution_id(), invocation.payload.execution_id);

        // The processor wrote its files where it runs ("inside Modal"), not on this host.
        let Envelope::Success(success) = &envelope else {
            unreachable!()
        };
        let index_bytes = std::fs::read(stand_in.host_path(success.index_path.as_str())).unwrap();
        let index = OutputsIndex::from_bytes(&index_bytes).unwrap();
        assert_eq!(index.outputs, success.outputs);
        for output in &success.outputs {
            let bytes = std::fs::read(stand_in.host_path(output.path.as_str())).unwrap();
            assert_eq!(cid(&bytes), output.cid);
        }
        let receipt = format!("{}receipt.json", invocation.payload.write_prefix);
        assert!(stand_in.host_path(&receipt).is_file());
    }
    let seen = front.seen();
    assert_eq!(
        front.paths(),
        ["/healthz", "/run", "/healthz", "/run-stream"]
    );
    for request in seen {
        assert_eq!(request.key.as_deref(), Some(TOKEN_ID), "{request:?}");
        assert_eq!(request.secret.as_deref(), Some(TOKEN_SECRET), "{request:?}");
    }
}

#[tokio::test]
async fn processor_error_envelopes_pass_through() {
    let pinned = pinned_text_stats().await;
    let spec = pinned_spec(&pinned.reference);
    let run = TestRun::new().await;
    let stand_in = StandIn::start(&run, &pinned.image_id, pinned.reference.digest()).await;
    let (base_url, _front) = ProxyAuthFront::start(stand_in.port).await;
    let adapter = modal_adapter(&base_url, false);
    for options in [Value::Null, json!({"stream": true})] {
        let mut invocation = modal_invocation(&spec, json!({"schema": "v1"}), run.artifacts.path());
        invocation.options = options.clone();
        let Envelope::Error(error) = adapter
            .invoke(&invocation, &CancellationToken::new())
            .await
            .unwrap()
        else {
            panic!("{options}: not an error envelope")
        };
        assert_eq!(error.error.code, ErrorCode::Inputs, "{options}: {error:?}");
        assert_eq!(error.execution_id, invocation.payload.execution_id);
    }
}

#[tokio::test]
async fn missing_or_wrong_proxy_credentials_are_modal_invocation_errors() {
    let pinned = pinned_text_stats().await;
    let spec = pinned_spec(&pinned.reference);
    let run = TestRun::new().await;
    let stand_in = StandIn::start(&run, &pinned.image_id, pinned.reference.digest()).await;
    let (base_url, front) = ProxyAuthFront::start(stand_in.port).await;
    let invocation = modal_invocation(&spec, smoke_inputs(), run.artifacts.path());

    let error = modal_adapter(&base_url, true)
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::ModalInvocation, "{error}");
    let message = error.message();
    assert!(message.starts_with("modal invocation failed: "), "{error}");
    assert!(message.contains("HTTP 401"), "{error}");
    assert!(message.contains(MISSING_CREDENTIALS), "{error}");
    assert!(message.contains("MODAL_PROXY_TOKEN_ID"), "{error}");
    assert_eq!(
        front.seen(),
        [Seen {
            path: "/healthz".into(),
            key: None,
            secret: None
        }]
    );

    let env = BTreeMap::from([
        ("PROCTOR_MODAL_BASE_URL".to_owned(), base_url.clone()),
        ("MODAL_PROXY_TOKEN_ID".to_owned(), TOKEN_ID.to_owned()),
        (
            "MODAL_PROXY_TOKEN_SECRET".to_owned(),
            "ws-not-the-secret".to_owned(),
        ),
    ]);
    let error = ModalAdapter::from_env(&env)
        .unwrap()
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::ModalInvocation, "{error}");
    assert!(error.message().contains("was refused"), "{error}");
    assert!(!error.message().contains("ws-not-the-secret"), "{error}");
    assert!(
        !front.paths().iter().any(|path| path.starts_with("/run")),
        "a payload got past the proxy"
    );
    assert!(
        std::fs::read_dir(stand_in.artifacts.path())
            .unwrap()
            .next()
            .is_none()
    );
}

#[tokio::test]
async fn a_different_image_behind_the_url_is_image_drift() {
    let pinned = pinned_text_stats().await;
    let spec = pinned_spec(&pinned.reference);
    let run = TestRun::new().await;
    let other_digest: Digest = format!("sha256:{}", "d1".repeat(32)).parse().unwrap();
    let stand_in = StandIn::start(&run, &pinned.image_id, &other_digest).await;
    let (base_url, front) = ProxyAuthFront::start(stand_in.port).await;
    let invocation = modal_invocation(&spec, smoke_inputs(), run.artifacts.path());
    let error = modal_adapter(&base_url, false)
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::ImageDrift, "{error}");
    assert!(
        error.message().starts_with("image digest mismatch"),
        "{error}"
    );
    assert!(
        error.message().contains(&other_digest.to_string()),
        "{error}"
    );
    assert!(
        error
            .message()
            .contains(&pinned.reference.digest().to_string()),
        "{error}"
    );
    assert_eq!(
        front.paths(),
        ["/healthz"],
        "the drifted image got the payload"
    );
    assert!(
        std::fs::read_dir(stand_in.artifacts.path())
            .unwrap()
            .next()
            .is_none()
    );
}

/// Runs the smoke example against `base_url` with a pin nobody pushed and `timeout`.
async fn invoke_without_processor(base_url: &str, timeout: Duration) -> CanonError {
    let spec = pinned_spec(&unpushed_pin());
    let root = tempfile::tempdir().unwrap();
    let mut invocation = modal_invocation(&spec, smoke_inputs(), root.path());
    invocation.timeout = timeout;
    modal_adapter(base_url, false)
        .invoke(&invocation, &CancellationToken::new())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_closed_port_is_a_modal_invocation_error() {
    let base_url = format!("http://127.0.0.1:{}", free_port());
    let error = invoke_without_processor(&base_url, Duration::from_secs(30)).await;
    assert_eq!(error.code(), ErrorCode::ModalInvocation, "{error}");
    assert!(
        error.message().contains(&format!("GET {base_url}/healthz")),
        "{error}"
    );
    assert!(
        error
            .message()
            .to_lowercase()
            .contains("connection refused"),
        "{error}"
    );
}

#[tokio::test]
async fn a_hung_endpoint_is_a_modal_invocation_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts connections and never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let error = invoke_without_processor(&base_url, Duration::from_millis(500)).await;
    assert_eq!(error.code(), ErrorCode::ModalInvocation, "{error}");
    assert!(
        error
            .message()
            .contains(&format!("no envelope from {base_url} within")),
        "{error}"
    );
}

#[tokio::test]
async fn non_json_and_5xx_answers_are_modal_invocation_errors() {
    let health = json!({
        "ok": true,
        "image_digest": unpushed_pin().digest(),
        "ref": "text/stats@1",
    });
    let healthy = Router::new().route(
        "/healthz",
        axum::routing::get(move || async move { axum::Json(health) }),
    );
    let html = serve(healthy.clone().route(
        "/run",
        axum::routing::post(|| async { "<html><body>Welcome</body></html>" }),
    ))
    .await;
    // The answer echoes the secret header, which the error must not repeat.
    let echo = |request: Request| async move {
        let secret = request.headers()["modal-secret"]
            .to_str()
            .unwrap()
            .to_owned();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("upstream overloaded for {secret}"),
        )
    };
    let unavailable = serve(healthy.route("/run", axum::routing::post(echo))).await;
    let not_json = serve(Router::new().fallback(|| async { "not json" })).await;

    let error = invoke_without_processor(&html, Duration::from_secs(30)).await;
    assert_eq!(error.code(), ErrorCode::ModalInvocation, "{error}");
    assert!(
        error.message().contains(&format!(
            "POST {html}/run: processor answered HTTP 200 without a valid envelope"
        )),
        "{error}"
    );
    let error = invoke_without_processor(&unavailable, Duration::from_secs(30)).await;
    assert_eq!(error.code(), ErrorCode::ModalInvocation, "{error}");
    assert!(
        error
            .message()
            .ends_with("answered HTTP 503: upstream overloaded for [REDACTED]"),
        "{error}"
    );
    let error = invoke_without_processor(&not_json, Duration::from_secs(30)).await;
    assert_eq!(error.code(), ErrorCode::ModalInvocation, "{error}");
    assert!(error.message().contains("not a health document"), "{error}");
}
