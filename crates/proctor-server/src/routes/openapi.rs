//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of every route (`src/openapi.json`),
//! kept in step with [`ROUTES`](super::ROUTES) by this module's tests.

use axum::Router;
use axum::routing::get;
use http::header;

use crate::AppState;

/// The document, as written.
const DOCUMENT: &str = include_str!("../openapi.json");

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], DOCUMENT) }),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use http::{Method, StatusCode};
    use serde_json::Value;

    use super::*;
    use crate::routes::ROUTES;
    use crate::routes::test_support::TestServer;

    /// An axum path in OpenAPI's syntax: `{*path}` is `{path}`.
    fn openapi_path(path: &str) -> String {
        path.replace("{*", "{")
    }

    /// A path of the router with each parameter filled in.
    fn concrete(path: &str) -> String {
        path.replace("{*path}", "artifacts/nothing/here.txt")
            .replace("{id}", "no-such-execution")
            .replace("{key}", "no-such-plan")
            .replace("{plan}", "no-such-plan")
            .replace("{file}", "app.js")
    }

    #[test]
    fn the_document_describes_exactly_the_routes() {
        let document: Value = serde_json::from_str(DOCUMENT).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|key| !matches!(key.as_str(), "parameters" | "summary" | "description"))
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), openapi_path(path)))
            .collect();
        assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
        assert_eq!(
            documented.difference(&routed).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "documented, not routed"
        );
        assert_eq!(
            routed.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "routed, not documented"
        );
        // Every reference names a schema or response the document defines.
        let text = DOCUMENT;
        for (prefix, section) in [
            ("#/components/schemas/", "schemas"),
            ("#/components/responses/", "responses"),
        ] {
            for reference in text.split(prefix).skip(1) {
                let name = reference.split('"').next().unwrap();
                assert!(
                    document["components"][section].get(name).is_some(),
                    "{prefix}{name} is not defined"
                );
            }
        }
        let security = &document["components"]["securitySchemes"];
        assert_eq!(security["bearerAuth"]["scheme"], "bearer");
        assert_eq!(security["cookieAuth"]["name"], crate::http::SESSION_COOKIE);
    }

    #[tokio::test]
    async fn the_router_serves_every_listed_route() {
        let server = TestServer::new().await;
        // A request no route matches gets this status instead of the usual 404.
        let unrouted = StatusCode::IM_A_TEAPOT;
        let router = server.router().fallback(move || async move { unrouted });
        for (method, path) in ROUTES {
            let uri = concrete(path);
            let mut request =
                server.authorized(Method::from_bytes(method.as_bytes()).unwrap(), &uri);
            request
                .headers_mut()
                .insert(header::ACCEPT, "text/html".parse().unwrap());
            let response = tower::ServiceExt::oneshot(router.clone(), request)
                .await
                .unwrap();
            assert_ne!(response.status(), unrouted, "{method} {uri} has no route");
            assert_ne!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {uri} is routed for another method"
            );
        }
    }

    #[tokio::test]
    async fn every_api_route_refuses_a_request_without_the_current_token() {
        let server = TestServer::new().await;
        let wrong = "0".repeat(64);
        for (method, path) in ROUTES.iter().filter(|(_, path)| path.starts_with("/v1/")) {
            let uri = concrete(path);
            for token in [None, Some(wrong.as_str())] {
                let mut request =
                    server.authorized(Method::from_bytes(method.as_bytes()).unwrap(), &uri);
                match token {
                    None => request.headers_mut().remove(header::AUTHORIZATION),
                    Some(token) => request.headers_mut().insert(
                        header::AUTHORIZATION,
                        format!("Bearer {token}").parse().unwrap(),
                    ),
                };
                let response = server.send(request).await;
                assert_eq!(
                    response.status(),
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri}"
                );
                let body: Value =
                    serde_json::from_slice(&TestServer::body(response).await).unwrap();
                assert_eq!(body["status"], "error");
                assert_eq!(body["error"]["code"], "ERR_UNAUTHORIZED", "{method} {uri}");
            }
        }
    }

    #[tokio::test]
    async fn the_routes_the_document_marks_public_are_the_ones_open_without_the_token() {
        let server = TestServer::new().await;
        let document: Value = serde_json::from_str(DOCUMENT).unwrap();
        for (method, path) in ROUTES {
            let operation = &document["paths"][openapi_path(path)][method.to_lowercase()];
            let public = operation["security"] == serde_json::json!([]);
            let uri = concrete(path);
            let mut request =
                server.authorized(Method::from_bytes(method.as_bytes()).unwrap(), &uri);
            request.headers_mut().remove(header::AUTHORIZATION);
            let response = server.send(request).await;
            let status = response.status();
            let body = TestServer::body(response).await;
            let refused = serde_json::from_slice::<Value>(&body)
                .is_ok_and(|body| body["error"]["code"] == "ERR_UNAUTHORIZED");
            assert_eq!(
                refused, !public,
                "{method} {uri}: {status}, documented public: {public}"
            );
        }
    }

    #[tokio::test]
    async fn the_document_is_served_as_json() {
        let server = TestServer::new().await;
        let (status, body) = server.get_json("/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["info"]["title"], "proctor serve");
    }
}
