//! Drift checks against a real HTTP server on 127.0.0.1 that answers `/{label}/healthz` the
//! way a processor does, with the base-URL override routing each processor by label. The
//! server lives in the test's runtime and stops with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proctor_contract::ErrorCode;
use proctor_deploy::{DriftStatus, ModalNames, ModalTarget, ProxyAuth, check_drift, drift_verdict};
use proctor_registry::ProcessorSpec;
use serde_json::json;

use crate::support::{DIGEST, OTHER_DIGEST, closed_port, spec};

/// How the server answers one label.
#[derive(Clone)]
enum Answer {
    /// `/healthz` JSON for a ref and digest.
    Health {
        processor_ref: &'static str,
        digest: &'static str,
    },
    /// A status and a body.
    Raw(StatusCode, &'static str),
    /// Never answers.
    Hang,
}

/// The proxy-auth headers of one request: `(Modal-Key, Modal-Secret)`.
type SeenHeaders = (Option<String>, Option<String>);

#[derive(Clone, Default)]
struct Server {
    answers: Arc<BTreeMap<String, Answer>>,
    /// `(Modal-Key, Modal-Secret)` of every request, in arrival order.
    seen: Arc<Mutex<Vec<SeenHeaders>>>,
}

async fn healthz(
    State(server): State<Server>,
    Path(label): Path<String>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    server
        .seen
        .lock()
        .unwrap()
        .push((header("modal-key"), header("modal-secret")));
    match server.answers.get(&label).cloned() {
        Some(Answer::Health {
            processor_ref,
            digest,
        }) => axum::Json(json!({
            "ok": true,
            "image_digest": format!("sha256:{digest}"),
            "ref": processor_ref,
        }))
        .into_response(),
        Some(Answer::Raw(status, body)) => (status, body).into_response(),
        Some(Answer::Hang) => std::future::pending::<Response>().await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves `answers` (by label) on 127.0.0.1 and returns the base URL override and the server.
async fn serve(answers: &[(&str, Answer)]) -> (String, Server) {
    let target = ModalTarget::default();
    let answers = answers
        .iter()
        .map(|(processor_ref, answer)| {
            (
                ModalNames::derive(&processor_ref.parse().unwrap(), &target).label,
                answer.clone(),
            )
        })
        .collect();
    let server = Server {
        answers: Arc::new(answers),
        ..Server::default()
    };
    let app = axum::Router::new()
        .route("/{label}/healthz", get(healthz))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/{{label}}"), server)
}

fn target(base_url: String) -> ModalTarget {
    ModalTarget {
        base_url: Some(base_url),
        ..ModalTarget::default()
    }
}

async fn drift(
    specs: &[ProcessorSpec],
    target: &ModalTarget,
    auth: Option<&ProxyAuth>,
) -> Vec<proctor_deploy::DriftRow> {
    check_drift(
        specs,
        target,
        auth,
        &proctor_tls::http_client_builder().build().unwrap(),
        Duration::from_secs(2),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn matching_digests_are_ok_and_proxy_auth_headers_arrive() {
    let (base_url, server) = serve(&[(
        "llm/litellm@1",
        Answer::Health {
            processor_ref: "llm/litellm@1",
            digest: DIGEST,
        },
    )])
    .await;
    let auth = ProxyAuth::new("wk-proxykeyid01", "ws-proxysecret02");
    let rows = drift(
        &[spec("llm/litellm@1", Some(DIGEST))],
        &target(base_url.clone()),
        Some(&auth),
    )
    .await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.status, DriftStatus::Ok, "{row:?}");
    assert_eq!(row.pinned.as_deref(), Some(&*format!("sha256:{DIGEST}")));
    assert_eq!(row.deployed, row.pinned);
    assert_eq!(
        row.endpoint,
        base_url.replace("{label}", "llm-litellm-v1") + "/healthz"
    );
    assert!(drift_verdict(&rows).is_ok());
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            Some("wk-proxykeyid01".to_owned()),
            Some("ws-proxysecret02".to_owned())
        )]
    );
    let shown = format!("{rows:?}{}", serde_json::to_string(&rows).unwrap());
    assert!(!shown.contains("proxykeyid01") && !shown.contains("proxysecret02"));
}

#[tokio::test]
async fn another_digest_or_processor_is_drift() {
    let (base_url, server) = serve(&[
        (
            "llm/litellm@1",
            Answer::Health {
                processor_ref: "llm/litellm@1",
                digest: OTHER_DIGEST,
            },
        ),
        (
            "text/stats@1",
            Answer::Health {
                processor_ref: "llm/litellm@1",
                digest: DIGEST,
            },
        ),
        (
            "text/other@1",
            Answer::Health {
                processor_ref: "text/other@1",
                digest: DIGEST,
            },
        ),
    ])
    .await;
    let specs = [
        spec("llm/litellm@1", Some(DIGEST)),
        spec("text/stats@1", Some(DIGEST)),
        spec("text/other@1", Some(DIGEST)),
    ];
    let rows = drift(&specs, &target(base_url), None).await;
    let statuses: Vec<_> = rows
        .iter()
        .map(|row| (row.processor_ref.to_string(), row.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("llm/litellm@1".to_owned(), DriftStatus::Drift),
            ("text/stats@1".to_owned(), DriftStatus::Drift),
            ("text/other@1".to_owned(), DriftStatus::Ok),
        ]
    );
    assert_eq!(
        rows[0].deployed.as_deref(),
        Some(&*format!("sha256:{OTHER_DIGEST}"))
    );
    assert_eq!(
        rows[1].detail.as_deref(),
        Some("the endpoint serves llm/litellm@1")
    );
    let err = drift_verdict(&rows).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageDrift);
    assert!(
        err.message().ends_with("for llm/litellm@1, text/stats@1"),
        "{err}"
    );
    assert_eq!(server.seen.lock().unwrap().len(), 3);
    assert!(
        server
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|headers| *headers == (None, None))
    );
}

#[tokio::test]
async fn closed_ports_bad_answers_and_hangs_are_unreachable() {
    let (base_url, _server) = serve(&[
        (
            "a/nonjson@1",
            Answer::Raw(StatusCode::OK, "<html>proxy error</html>"),
        ),
        (
            "a/fivexx@1",
            Answer::Raw(StatusCode::SERVICE_UNAVAILABLE, "{\"ok\":false}"),
        ),
        (
            "a/unauthorized@1",
            Answer::Raw(StatusCode::UNAUTHORIZED, "modal-http: missing credentials"),
        ),
        ("a/hang@1", Answer::Hang),
    ])
    .await;
    let specs = [
        spec("a/nonjson@1", Some(DIGEST)),
        spec("a/fivexx@1", Some(DIGEST)),
        spec("a/unauthorized@1", Some(DIGEST)),
        spec("a/hang@1", Some(DIGEST)),
    ];
    let rows = drift(&specs, &target(base_url), None).await;
    let closed = drift(
        &[spec("a/closed@1", Some(DIGEST))],
        &target(format!("http://127.0.0.1:{}", closed_port())),
        None,
    )
    .await;
    let details: Vec<_> = rows
        .iter()
        .chain(&closed)
        .map(|row| {
            assert_eq!(row.status, DriftStatus::Unreachable, "{row:?}");
            assert_eq!(row.deployed, None);
            row.detail.clone().unwrap()
        })
        .collect();
    assert!(
        details[0].starts_with("not a /healthz answer"),
        "{details:?}"
    );
    assert_eq!(details[1], "HTTP 503 Service Unavailable");
    assert!(
        details[2].starts_with("HTTP 401 Unauthorized (proxy auth: set MODAL_PROXY_TOKEN_ID"),
        "{details:?}"
    );
    assert_eq!(details[3], "no answer within 2s");
    assert_eq!(details[4], "connection failed");
    let err = drift_verdict(&rows).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ModalInvocation);
    assert!(
        err.message()
            .starts_with("modal invocation failed: no /healthz answer"),
        "{err}"
    );
}

#[tokio::test]
async fn unpinned_processors_are_reported_without_a_request() {
    let (base_url, server) = serve(&[]).await;
    let rows = drift(&[spec("llm/litellm@1", None)], &target(base_url), None).await;
    assert_eq!(rows[0].status, DriftStatus::Unpinned);
    assert!(
        rows[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("no digest in image.platforms"),
        "{rows:?}"
    );
    assert!(server.seen.lock().unwrap().is_empty());
    assert_eq!(
        drift_verdict(&rows).unwrap_err().code(),
        ErrorCode::ImageUnpinned
    );
}

#[tokio::test]
async fn no_target_is_an_error_before_any_request() {
    let err = check_drift(
        &[spec("llm/litellm@1", Some(DIGEST))],
        &ModalTarget::default(),
        None,
        &proctor_tls::http_client_builder().build().unwrap(),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::DeployTarget);
}
