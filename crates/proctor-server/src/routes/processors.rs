//! `GET /v1/processors` (the registry: pins, required secrets by name, examples) and
//! `GET /v1/drift` (each Modal deployment's digest against its pin).

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use proctor_contract::{CanonError, Platform};
use proctor_engine::{DeployTarget, DriftRequest, TargetedProcessors};
use proctor_registry::{RegisteredProcessor, Registry, pinned_image};
use serde_json::{Value, json};

use crate::AppState;
use crate::http::ApiError;

/// How long drift waits for each deployment's `/healthz`, as `proctor drift` by default.
const DRIFT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/processors", get(processors))
        .route("/v1/drift", get(drift))
}

/// `GET /v1/processors`: every processor of the registry, in registry order.
async fn processors(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let registry = Registry::load(&state.engine.config().registry_root)?;
    let host = Platform::from_arch(std::env::consts::ARCH);
    let processors: Vec<Value> = registry
        .iter()
        .map(|entry| processor_json(entry, host))
        .collect();
    Ok(Json(json!({ "processors": processors })))
}

/// One processor: `pinned` when this host's platform has a valid pin, so that it runs
/// without `build`. Secrets are named, never valued.
fn processor_json(entry: &RegisteredProcessor, host: Option<Platform>) -> Value {
    let spec = entry.spec();
    json!({
        "ref": spec.processor_ref,
        "description": spec.description,
        "pins": {
            "amd64": spec.image.platforms.amd64,
            "arm64": spec.image.platforms.arm64,
        },
        "pinned": host.is_some_and(|host| pinned_image(spec, host).is_ok()),
        "secrets": spec.secrets.required,
        "examples": spec.examples.keys().collect::<Vec<_>>(),
        "planner": spec.planner,
    })
}

/// `GET /v1/drift`: the drift report for Modal; when Modal is not configured its `error`
/// says so (`ERR_DEPLOY_TARGET`). Answered 200 either way.
async fn drift(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let config = state.engine.config();
    let request = DriftRequest {
        processors: TargetedProcessors {
            target: DeployTarget::Modal,
            registry_root: config.registry_root.clone(),
            processor_refs: Vec::new(),
        },
        timeout: DRIFT_TIMEOUT,
    };
    let report = proctor_engine::drift(&request, &config.env).await;
    serde_json::to_value(&report).map(Json).map_err(|e| {
        ApiError(CanonError::new(
            proctor_contract::ErrorCode::Internal,
            format!("drift report: {e}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::json;

    use crate::routes::test_support::TestServer;

    #[tokio::test]
    async fn processors_show_pins_secret_names_examples_and_planners() {
        let server = TestServer::new().await;
        let (status, body) = server.get_json("/v1/processors").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"processors": []}));

        let pin = format!(
            "127.0.0.1:5000/proctor/text-stats@sha256:{}",
            "b".repeat(64)
        );
        server.add_processor(
            "text/stats/1",
            &[("amd64: null", &format!("amd64: \"{pin}\""))],
        );
        server.add_processor("llm/planner/1", &[]);
        let (status, body) = server.get_json("/v1/processors").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let processors = body["processors"].as_array().unwrap();
        let find = |r: &str| {
            processors
                .iter()
                .find(|p| p["ref"] == r)
                .unwrap_or_else(|| panic!("{r} missing: {body}"))
        };
        let stats = find("text/stats@1");
        assert_eq!(stats["pins"], json!({"amd64": pin, "arm64": null}));
        let on_amd64 = std::env::consts::ARCH == "x86_64";
        assert_eq!(stats["pinned"], on_amd64);
        assert_eq!(stats["secrets"], json!([]));
        assert!(
            stats["examples"]
                .as_array()
                .unwrap()
                .contains(&json!("smoke"))
        );
        assert_eq!(stats["planner"], false);
        let planner = find("llm/planner@1");
        assert_eq!(planner["secrets"], json!(["OPENAI_API_KEY"]));
        assert_eq!(planner["planner"], true);
        assert_eq!(planner["pinned"], false);

        // Modal is not configured here: the report says so, and is still an answer.
        let (status, body) = server.get_json("/v1/drift").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["target"], "modal");
        assert_eq!(body["error"]["code"], "ERR_DEPLOY_TARGET", "{body}");
    }
}
