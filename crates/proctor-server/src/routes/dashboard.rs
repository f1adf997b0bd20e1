//! The dashboard: one page, `index.html`, served at every dashboard path (the script routes
//! on `location.pathname`), and its scripts, styles and icon under `/assets/`. Every file is
//! embedded in the binary; none holds inline code, so the content security policy allows
//! scripts and styles from this origin only.

use axum::Router;
use axum::extract::Path;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::header;
use proctor_contract::{CanonError, ErrorCode};

use crate::AppState;
use crate::http::ApiError;

/// The one page of the dashboard.
const INDEX_HTML: &str = include_str!("../../assets/index.html");

/// A file under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// Every file the page loads.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/api.js"),
    },
    Asset {
        name: "executions.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/executions.js"),
    },
    Asset {
        name: "plans.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/plans.js"),
    },
    Asset {
        name: "dag.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/dag.js"),
    },
    Asset {
        name: "ledger.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/ledger.js"),
    },
    Asset {
        name: "processors.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/processors.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../assets/favicon.svg"),
    },
];

/// The dashboard's pages and files, all behind the token.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/executions", get(page))
        .route("/executions/{id}", get(page))
        .route("/plans", get(page))
        .route("/plans/{key}", get(page))
        .route("/ledger", get(page))
        .route("/ledger/{plan}", get(page))
        .route("/processors", get(page))
        .route("/assets/{file}", get(asset))
}

/// Any dashboard path: the page, which reads the path itself.
async fn page() -> Html<&'static str> {
    Html(INDEX_HTML)
}

/// `GET /assets/{file}`: an embedded file with its content type; any other name is 404.
async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == file)
        .ok_or_else(|| {
            CanonError::new(ErrorCode::NotFound, format!("no dashboard asset `{file}`"))
        })?;
    Ok(([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Request, StatusCode};

    use super::*;
    use crate::routes::session::tests::exchange;
    use crate::routes::test_support::TestServer;

    fn get_with_cookie(path: &str, token: &str) -> Request<Body> {
        Request::get(path)
            .header(header::ACCEPT, "text/html")
            .header(header::COOKIE, format!("proctor_token={token}"))
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn every_dashboard_path_serves_the_page_with_the_policy() {
        let server = TestServer::new().await;
        let token = &server.token;
        for path in [
            "/",
            "/executions",
            "/executions/01JABC",
            "/plans",
            "/plans/demo",
            "/ledger",
            "/ledger/default",
            "/processors",
        ] {
            let (response, html) = exchange(&server, get_with_cookie(path, token)).await;
            assert_eq!(response.status, StatusCode::OK, "{path}");
            assert_eq!(
                response.headers[header::CONTENT_TYPE],
                "text/html; charset=utf-8"
            );
            assert_eq!(
                response.headers[header::CONTENT_SECURITY_POLICY],
                crate::http::CONTENT_SECURITY_POLICY,
                "{path}"
            );
            assert_eq!(html, INDEX_HTML, "{path}");
        }
    }

    #[tokio::test]
    async fn a_browser_without_the_token_is_sent_to_the_login() {
        let server = TestServer::new().await;
        for (path, cookie, login) in [
            ("/", None, "/login"),
            (
                "/plans/demo",
                Some("proctor_token=wrong"),
                "/login?next=%2Fplans%2Fdemo",
            ),
        ] {
            let mut request = Request::get(path).header(header::ACCEPT, "text/html");
            if let Some(cookie) = cookie {
                request = request.header(header::COOKIE, cookie);
            }
            let (response, _) = exchange(&server, request.body(Body::empty()).unwrap()).await;
            assert_eq!(response.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(response.headers[header::LOCATION], login);
        }
        let (script, body) = exchange(
            &server,
            Request::get("/assets/app.js").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(script.status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("ERR_UNAUTHORIZED"), "{body}");
    }

    #[tokio::test]
    async fn assets_come_with_their_content_types_and_unknown_ones_are_404() {
        let server = TestServer::new().await;
        let token = &server.token;
        for asset in ASSETS {
            let (response, body) = exchange(
                &server,
                get_with_cookie(&format!("/assets/{}", asset.name), token),
            )
            .await;
            assert_eq!(response.status, StatusCode::OK, "{}", asset.name);
            assert_eq!(
                response.headers[header::CONTENT_TYPE],
                asset.content_type,
                "{}",
                asset.name
            );
            assert_eq!(response.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(body, asset.body);
        }
        for missing in [
            "/assets/nope.js",
            "/assets/..%2Fsession.rs",
            "/assets/index.html",
        ] {
            let (response, body) = exchange(&server, get_with_cookie(missing, token)).await;
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{missing}");
            assert!(body.contains("ERR_NOT_FOUND"), "{missing}: {body}");
        }
    }

    #[test]
    fn every_module_the_scripts_import_is_served() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JAVASCRIPT) {
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let name = line
                    .rsplit_once("\"./")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(name, _)| name)
                    .unwrap_or_else(|| panic!("{}: an import not of ./FILE: {line}", asset.name));
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} imports {name}, which is not served",
                    asset.name
                );
            }
        }
        assert!(INDEX_HTML.contains(r#"<script type="module" src="/assets/app.js"></script>"#));
        assert!(INDEX_HTML.contains(r#"href="/assets/app.css""#));
    }

    /// The policy forbids inline code; a page that had any would break in the browser.
    #[test]
    fn no_embedded_page_holds_inline_script_style_or_handler() {
        let pages = [
            ("index.html", INDEX_HTML),
            ("login.html", include_str!("../../assets/login.html")),
            ("favicon.svg", include_str!("../../assets/favicon.svg")),
        ];
        for (name, text) in pages {
            let lower = text.to_ascii_lowercase();
            for (at, _) in lower.match_indices("<script") {
                let tag_end = at + lower[at..].find('>').expect("a closed tag");
                assert!(
                    lower[at..tag_end].contains(" src="),
                    "{name}: inline script"
                );
                assert!(
                    lower[tag_end + 1..].starts_with("</script>"),
                    "{name}: a script with a body"
                );
            }
            assert!(!lower.contains("<style"), "{name}: a style element");
            assert!(!lower.contains("style="), "{name}: a style attribute");
            assert!(!lower.contains("javascript:"), "{name}: a javascript: URL");
            let handler = lower
                .split(|c: char| c.is_ascii_whitespace())
                .find(|word| word.starts_with("on") && word.contains('='));
            assert_eq!(handler, None, "{name}: an event handler attribute");
        }
        for asset in ASSETS.iter().filter(|a| a.content_type == JAVASCRIPT) {
            for forbidden in [
                ".innerHTML",
                ".outerHTML",
                "insertAdjacentHTML",
                ".style.",
                "eval(",
            ] {
                assert!(
                    !asset.body.contains(forbidden),
                    "{}: `{forbidden}` (build elements with textContent and classes)",
                    asset.name
                );
            }
        }
    }
}
