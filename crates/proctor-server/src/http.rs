//! What every response shares: the error body, the token check and the security headers.

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use proctor_contract::{CanonError, ErrorCode};

use crate::AppState;

/// The cookie the dashboard's login sets: the token itself, `HttpOnly`, `SameSite=Strict`.
pub(crate) const SESSION_COOKIE: &str = "proctor_token";

/// The content security policy of every response: the dashboard's own scripts, styles and
/// images, requests to this origin only, no frames, no inline code.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The policy of a served World file: whatever it holds, it runs nothing in this origin.
pub(crate) const SANDBOX_POLICY: &str =
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox";

/// A canonical error as an HTTP answer: the status its code maps to and the CLI's error
/// shape, `{"status":"error","error":{"code","message"}}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) CanonError);

impl From<CanonError> for ApiError {
    fn from(error: CanonError) -> ApiError {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code());
        let body = serde_json::json!({
            "status": "error",
            "error": {"code": self.0.code().as_str(), "message": self.0.message()},
        });
        (status, Json(body)).into_response()
    }
}

/// The HTTP status of a canonical error.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        Unauthorized => StatusCode::UNAUTHORIZED,
        CiSafety => StatusCode::FORBIDDEN,
        UnknownExecution | UnknownPlan | NotFound | UnknownProcessor => StatusCode::NOT_FOUND,
        Conflict | LeaseConflict | BudgetExceeded => StatusCode::CONFLICT,
        DecodedSlash | DotSegments | BadFacet | PercentDecode | BadPath | PathTooLong
        | SelectorKindMismatch | WritePrefix | ProcessorRef | Inputs | Usage | Plan | Proposal => {
            StatusCode::BAD_REQUEST
        }
        Serve => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The token a request presents: `Authorization: Bearer TOKEN`, else the session cookie.
pub(crate) fn presented_token(headers: &HeaderMap) -> Option<(&str, Presented)> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value.to_str().ok()?.strip_prefix("Bearer ")?;
        return Some((token.trim(), Presented::Header));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| (token, Presented::Cookie))
}

/// How a token came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented {
    /// In the `Authorization` header, as API clients send it.
    Header,
    /// In the session cookie, as the dashboard's browser sends it.
    Cookie,
}

/// Refuses a request without the current token: `401 ERR_UNAUTHORIZED`, or for a page a
/// browser navigates to, a redirect to the login page. A state-changing request that
/// authenticates with the cookie must come from this origin.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let accepted = match presented_token(headers) {
        Some((token, how)) if state.token.accepts(token) => {
            how == Presented::Header || request.method() == Method::GET || same_origin(headers)
        }
        _ => false,
    };
    if accepted {
        return next.run(request).await;
    }
    let wants_page = request.method() == Method::GET
        && !request.uri().path().starts_with("/v1/")
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    if wants_page {
        return Redirect::to(&login_location(request.uri())).into_response();
    }
    let mut response = ApiError(CanonError::new(
        ErrorCode::Unauthorized,
        "send `Authorization: Bearer TOKEN` with the token in the project's .proctor/serve-token",
    ))
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Where a browser without the token is sent from `page`: the login, told to lead back to
/// the page (`/login?next=PAGE`; `/login` alone from the front page).
fn login_location(page: &http::Uri) -> String {
    match page.path_and_query().map(|target| target.as_str()) {
        None | Some("/") => "/login".to_owned(),
        Some(target) => format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        ),
    }
}

/// Whether a browser's request comes from a page of this server: its `Origin` (or, when
/// absent, its `Referer`) names the `Host` it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    origin.is_some_and(|origin| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| rest.split('/').next() == Some(host))
    })
}

/// Adds the security headers to every response; a handler's own content security policy
/// (a served World file's sandbox) is kept.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    let fixed: [(HeaderName, &str); 4] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_token_comes_from_the_bearer_header_before_the_cookie() {
        let both = headers(&[
            ("authorization", "Bearer abc"),
            ("cookie", "x=1; proctor_token=def"),
        ]);
        assert_eq!(presented_token(&both), Some(("abc", Presented::Header)));
        let cookie = headers(&[("cookie", "x=1; proctor_token=def")]);
        assert_eq!(presented_token(&cookie), Some(("def", Presented::Cookie)));
        let basic = headers(&[("authorization", "Basic abc")]);
        assert_eq!(presented_token(&basic), None);
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }

    #[test]
    fn only_this_hosts_pages_are_the_same_origin() {
        let host = ("host", "127.0.0.1:8787");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8787")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("referer", "http://127.0.0.1:8787/executions")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8787.evil.test")
        ])));
        assert!(!same_origin(&headers(&[host])));
    }

    #[test]
    fn world_path_errors_are_bad_requests_and_unknowns_not_found() {
        assert_eq!(status_of(ErrorCode::DotSegments), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(ErrorCode::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status_of(ErrorCode::UnknownExecution),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(ErrorCode::Ledger),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
