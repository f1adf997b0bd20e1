//! The dashboard's login: `GET /login` (the form), `POST /login` (the token, form-encoded,
//! traded for the session cookie), `POST /logout` (the cookie cleared) and `GET /login.css`.
//! These paths are public; the cookie they set carries the token itself, so the token file
//! stays the one secret and a rotation logs every browser out.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::AppState;
use crate::http::SESSION_COOKIE;

/// The login page; [`ERROR_MARKER`] is where a refusal's message goes.
const LOGIN_HTML: &str = include_str!("../../assets/login.html");
/// The login page's style sheet (the dashboard's own is behind the token).
const LOGIN_CSS: &str = include_str!("../../assets/login.css");
/// The placeholder in [`LOGIN_HTML`] replaced by [`LOGIN_ERROR`] after a wrong token.
const ERROR_MARKER: &str = "<!-- login-error -->";
/// What a wrong token is told: fixed text, nothing of the request echoed.
const LOGIN_ERROR: &str = r#"<p class="error" role="alert" data-testid="login-error">That is not this server's token. Copy it again from <code>.proctor/serve-token</code>.</p>"#;

/// The public routes of the login.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(log_in))
        .route("/logout", post(log_out))
        .route("/login.css", get(login_css))
}

/// `GET /login`: the form.
async fn login_page() -> Html<&'static str> {
    Html(LOGIN_HTML)
}

/// `GET /login.css`.
async fn login_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        LOGIN_CSS,
    )
        .into_response()
}

/// `POST /login` with `token=...`: the right token is set as the session cookie and the
/// browser sent to the page it came for (`?next=`, which the form posts back) or the
/// dashboard; anything else gets the form again with an error, 401.
async fn log_in(State(state): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let presented = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.trim().to_owned());
    let cookie = presented
        .filter(|token| state.token.accepts(token))
        .and_then(|token| {
            HeaderValue::from_str(&format!(
                "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            ))
            .ok()
        });
    match cookie {
        Some(cookie) => {
            let target = query.as_deref().and_then(page_to_return_to);
            let mut response = Redirect::to(target.as_deref().unwrap_or("/")).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        None => {
            tracing::info!(event = "serve.login_refused");
            (
                StatusCode::UNAUTHORIZED,
                Html(LOGIN_HTML.replacen(ERROR_MARKER, LOGIN_ERROR, 1)),
            )
                .into_response()
        }
    }
}

/// The dashboard page a login's `next` names: a path of this server (never another origin,
/// `//host` or `/\\host`, nor an API path), printable ASCII only.
fn page_to_return_to(query: &str) -> Option<String> {
    let (_, next) =
        url::form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "next")?;
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/v1/")
        && !next.contains('\\')
        && next.len() <= 2048
        && next.bytes().all(|byte| byte.is_ascii_graphic());
    local.then(|| next.into_owned())
}

/// `POST /logout`: the session cookie cleared, back to the form.
async fn log_out() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        ))
        .expect("the cookie's name is ASCII"),
    );
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::body::Body;
    use http::Request;
    use http::response::Parts;

    use super::*;
    use crate::routes::test_support::TestServer;

    /// The server's answer to `request`: its status and headers, and its body as text.
    pub(crate) async fn exchange(server: &TestServer, request: Request<Body>) -> (Parts, String) {
        let (parts, body) = server.send(request).await.into_parts();
        let body = TestServer::body(Response::new(body)).await;
        (parts, String::from_utf8(body).unwrap())
    }

    fn header(parts: &Parts, name: header::HeaderName) -> &str {
        parts.headers.get(&name).map_or("", |v| v.to_str().unwrap())
    }

    fn login_with(body: String) -> Request<Body> {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn the_right_token_sets_the_session_cookie_and_opens_the_dashboard() {
        let server = TestServer::new().await;
        let token = &server.token;
        let (response, _) = exchange(&server, login_with(format!("token={token}"))).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER);
        assert_eq!(header(&response, header::LOCATION), "/");
        assert_eq!(
            header(&response, header::SET_COOKIE),
            format!("proctor_token={token}; HttpOnly; SameSite=Strict; Path=/")
        );

        let (page, html) = exchange(
            &server,
            Request::get("/")
                .header(header::ACCEPT, "text/html")
                .header(header::COOKIE, format!("proctor_token={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(html.contains("/assets/app.js"), "{html}");
    }

    #[tokio::test]
    async fn a_login_leads_back_to_the_page_the_browser_came_for() {
        let server = TestServer::new().await;
        let token = &server.token;
        let (sent, _) = exchange(
            &server,
            Request::get("/executions/abc?tab=receipt")
                .header(header::ACCEPT, "text/html")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(sent.status, StatusCode::SEE_OTHER);
        let login = header(&sent, header::LOCATION).to_owned();
        assert_eq!(login, "/login?next=%2Fexecutions%2Fabc%3Ftab%3Dreceipt");

        // The form has no action: it posts back to the address it was shown at.
        let post = |uri: &str, token: &str| {
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={token}")))
                .unwrap()
        };
        let (wrong, html) = exchange(&server, post(&login, "wrong")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(html.contains(r#"<form method="post" autocomplete="off">"#));
        let (back, _) = exchange(&server, post(&login, token)).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER);
        assert_eq!(
            header(&back, header::LOCATION),
            "/executions/abc?tab=receipt"
        );

        for elsewhere in [
            "next=%2F%2Fevil.test%2F",
            "next=%2F%5Cevil.test",
            "next=https%3A%2F%2Fevil.test%2F",
            "next=%2Fv1%2Fruns",
            "next=%2Fa%20b",
            "next=",
            "other=%2Fplans",
        ] {
            let (answer, _) = exchange(&server, post(&format!("/login?{elsewhere}"), token)).await;
            assert_eq!(answer.status, StatusCode::SEE_OTHER, "{elsewhere}");
            assert_eq!(header(&answer, header::LOCATION), "/", "{elsewhere}");
        }
    }

    #[tokio::test]
    async fn a_wrong_token_gets_the_form_again_with_an_error_and_no_cookie() {
        let server = TestServer::new().await;
        let token = &server.token;
        let first = if token.starts_with('0') { '1' } else { '0' };
        let wrong = format!("{first}{}", &token[1..]);
        for body in [
            format!("token={wrong}"),
            "token=".to_owned(),
            String::new(),
            format!("other={token}"),
            "token=%3Cscript%3E".to_owned(),
        ] {
            let (response, html) = exchange(&server, login_with(body.clone())).await;
            assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{body}");
            assert!(response.headers.get(header::SET_COOKIE).is_none(), "{body}");
            assert!(html.contains(r#"data-testid="login-error""#), "{body}");
            assert!(html.contains(r#"data-testid="token-input""#), "{body}");
            assert!(
                !html.contains("<script>"),
                "nothing of the request is echoed"
            );
            assert!(!html.contains(&wrong), "nothing of the request is echoed");
        }
    }

    #[tokio::test]
    async fn the_login_page_is_public_and_carries_the_policy() {
        let server = TestServer::new().await;
        let (page, html) =
            exchange(&server, Request::get("/login").body(Body::empty()).unwrap()).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(
            header(&page, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            header(&page, header::CONTENT_SECURITY_POLICY),
            crate::http::CONTENT_SECURITY_POLICY
        );
        assert!(!html.contains(r#"data-testid="login-error""#));
        assert!(html.contains(r#"href="/login.css""#));
        let (css, text) = exchange(
            &server,
            Request::get("/login.css").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(css.status, StatusCode::OK);
        assert_eq!(
            header(&css, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        assert_eq!(text, LOGIN_CSS);
    }

    #[tokio::test]
    async fn logging_out_clears_the_cookie() {
        let server = TestServer::new().await;
        let (response, _) = exchange(
            &server,
            Request::post("/logout").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(response.status, StatusCode::SEE_OTHER);
        assert_eq!(header(&response, header::LOCATION), "/login");
        let cookie = header(&response, header::SET_COOKIE);
        assert!(cookie.starts_with("proctor_token=;"), "{cookie}");
        assert!(cookie.contains("Max-Age=0"), "{cookie}");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("Path=/"),
            "{cookie}"
        );
    }
}
