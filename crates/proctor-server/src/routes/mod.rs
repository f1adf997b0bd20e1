//! The HTTP surface: which paths exist and which need the token. Each module owns its
//! paths and hands back a [`Router`] of them.

mod dashboard;
mod events;
mod executions;
mod openapi;
mod plans;
mod processors;
mod session;
mod submit;
#[cfg(test)]
pub(crate) mod test_support;
mod world;

use axum::routing::get;
use axum::{Json, Router, middleware};

use crate::AppState;
use crate::http::{require_token, security_headers};

/// Every route the server answers, as (method, path in the router's syntax): the OpenAPI
/// document (`/v1/openapi.json`) describes exactly these, and the router serves each (both
/// checked by the tests in `openapi.rs`).
#[cfg(test)]
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/login.css"),
    ("GET", "/"),
    ("GET", "/executions"),
    ("GET", "/executions/{id}"),
    ("GET", "/plans"),
    ("GET", "/plans/{key}"),
    ("GET", "/ledger"),
    ("GET", "/ledger/{plan}"),
    ("GET", "/processors"),
    ("GET", "/assets/{file}"),
    ("POST", "/v1/runs"),
    ("GET", "/v1/executions"),
    ("GET", "/v1/executions/{id}"),
    ("POST", "/v1/executions/{id}/cancel"),
    ("GET", "/v1/world/{*path}"),
    ("POST", "/v1/plans"),
    ("GET", "/v1/plans"),
    ("GET", "/v1/plans/{key}"),
    ("POST", "/v1/plans/{key}/cancel"),
    ("GET", "/v1/plans/{key}/chain"),
    ("GET", "/v1/processors"),
    ("GET", "/v1/drift"),
    ("GET", "/v1/events"),
    ("GET", "/v1/openapi.json"),
];

/// Every route: `/healthz` and the login page open, everything else behind the token, and
/// the security headers on all of it.
pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(dashboard::router())
        .merge(submit::router())
        .merge(executions::router())
        .merge(world::router())
        .merge(plans::router())
        .merge(processors::router())
        .merge(events::router())
        .merge(openapi::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(session::router())
        .merge(protected)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// `GET /healthz`: the server answers; no token needed.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}
