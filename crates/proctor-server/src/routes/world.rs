//! `GET /v1/world/{*path}`: one World file, streamed from the engine's store.
//!
//! The world path is the request path after `/v1/world`, exactly as sent (still
//! percent-encoded), canonicalized by [`WorldPath::parse_kind`] before the store is asked:
//! `.`/`..` segments, encoded slashes, bad escapes and other facets are refused with the
//! world-path error codes, a prefix (trailing `/`) with `ERR_SELECTOR_KIND_MISMATCH`. The
//! file is served under [`SANDBOX_POLICY`], so whatever it holds runs nothing in this origin.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Uri};
use proctor_contract::{CanonError, ErrorCode, Facet, OutputsIndex, SelectorKind, WorldPath};
use proctor_store::ArtifactStore;

use crate::AppState;
use crate::http::{ApiError, SANDBOX_POLICY};

/// The route prefix before the world path.
const PREFIX: &str = "/v1/world";

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/world/{*path}", get(world_file))
}

/// `GET /v1/world/{*path}[?download=1]`.
async fn world_file(
    State(state): State<AppState>,
    uri: Uri,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let raw = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let path = WorldPath::parse_kind(raw, SelectorKind::Exact)?;
    if path.facet() != Facet::Artifacts {
        return Err(ApiError(CanonError::new(
            ErrorCode::BadFacet,
            format!("only /artifacts/ files are served: `{path}`"),
        )));
    }
    let store = state.engine.store().as_ref();
    let info = store.head(&path).await.map_err(CanonError::from)?;
    let etag = output_cid(store, &path)
        .await
        .and_then(|cid| HeaderValue::from_str(&format!("\"{cid}\"")).ok());
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX_POLICY),
    );
    if let Some(etag) = &etag {
        headers.insert(header::ETAG, etag.clone());
        if request_headers.get(header::IF_NONE_MATCH) == Some(etag) {
            return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
        }
    }
    let mime = mime_guess::from_path(path.as_str()).first_or_octet_stream();
    // Text is UTF-8, as processors write it; a browser would otherwise guess.
    let content_type = match mime.type_() {
        mime_guess::mime::TEXT => format!("{}; charset=utf-8", mime.essence_str()),
        _ => mime.essence_str().to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size_bytes));
    if wants_download(uri.query()) {
        let disposition = format!("attachment; filename=\"{}\"", file_name(&path));
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    let stream = store.get_stream(&path).await.map_err(CanonError::from)?;
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// Whether the query asks for an attachment: `download=1` (or `true`).
fn wants_download(query: Option<&str>) -> bool {
    query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .any(|pair| matches!(pair, "download=1" | "download=true"))
}

/// The last segment of `path`, with anything but `A-Z a-z 0-9 . _ -` replaced by `_`, for
/// a `Content-Disposition` filename that needs no quoting rules.
fn file_name(path: &WorldPath) -> String {
    path.as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The content id of an output, from the index beside its `outputs/` directory
/// (`{write_prefix}outputs/…` is indexed in `{write_prefix}outputs.json`); `None` for a
/// file no index lists.
async fn output_cid(store: &dyn ArtifactStore, path: &WorldPath) -> Option<String> {
    let text = path.as_str();
    let mut from = text.len();
    while let Some(at) = text[..from].rfind("/outputs/") {
        from = at;
        let Ok(index_path) = WorldPath::parse(&format!("{}/outputs.json", &text[..at])) else {
            continue;
        };
        let Ok(bytes) = store.get(&index_path).await else {
            continue;
        };
        if let Ok(index) = serde_json::from_slice::<OutputsIndex>(&bytes) {
            return index
                .outputs
                .into_iter()
                .find(|entry| entry.path == *path)
                .map(|entry| entry.cid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::routes::test_support::TestServer;

    #[test]
    fn downloads_are_asked_for_by_query() {
        assert!(wants_download(Some("download=1")));
        assert!(wants_download(Some("x=2&download=true")));
        assert!(!wants_download(Some("download=0")));
        assert!(!wants_download(None));
    }

    #[test]
    fn file_names_need_no_quoting() {
        let path = WorldPath::parse("/artifacts/a/b%20c\"d.json").unwrap();
        assert_eq!(file_name(&path), "b_c_d.json");
    }

    #[tokio::test]
    async fn traversal_attempts_are_refused_with_the_world_path_codes() {
        let server = TestServer::new().await;
        server
            .put("/artifacts/outputs/demo/e1/outputs/a.txt", b"hello")
            .await;
        let cases = [
            (
                "/v1/world/artifacts/outputs/../../etc/passwd",
                "ERR_DOT_SEGMENTS",
            ),
            ("/v1/world/artifacts/outputs/%2e%2e/x", "ERR_DOT_SEGMENTS"),
            (
                "/v1/world/artifacts/./outputs/demo/e1/outputs/a.txt",
                "ERR_DOT_SEGMENTS",
            ),
            (
                "/v1/world/artifacts/outputs%2Fdemo/e1/outputs/a.txt",
                "ERR_DECODED_SLASH",
            ),
            ("/v1/world/artifacts/outputs/%5c..%5cx", "ERR_DECODED_SLASH"),
            ("/v1/world/artifacts/outputs/%zz", "ERR_PERCENT_DECODE"),
            ("/v1/world/artifacts/outputs/%ff", "ERR_PERCENT_DECODE"),
            ("/v1/world/etc/passwd", "ERR_BAD_FACET"),
            ("/v1/world/streams/logs/x", "ERR_BAD_FACET"),
            (
                "/v1/world/artifacts/outputs/demo/",
                "ERR_SELECTOR_KIND_MISMATCH",
            ),
            (
                "/v1/world/artifacts/outputs/demo/e1/outputs/b.txt",
                "ERR_NOT_FOUND",
            ),
        ];
        for (uri, code) in cases {
            let (status, body) = server.get_json(uri).await;
            assert_eq!(body["error"]["code"], code, "{uri}: {body}");
            let want = if code == "ERR_NOT_FOUND" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            assert_eq!(status, want, "{uri}");
        }
    }

    #[tokio::test]
    async fn a_file_is_served_sandboxed_with_its_type_length_and_cid() {
        let server = TestServer::new().await;
        let bytes = br#"{"words":3}"#;
        let output = "/artifacts/outputs/demo/e1/outputs/stats.json";
        server.put(output, bytes).await;
        let cid = proctor_contract::cid(bytes);
        let index = format!(
            r#"{{"outputs":[{{"path":"{output}","cid":"{cid}","size_bytes":{},"mime":"application/json"}}]}}"#,
            bytes.len()
        );
        server
            .put("/artifacts/outputs/demo/e1/outputs.json", index.as_bytes())
            .await;
        // `//` collapses, as world paths do.
        let response = server
            .request(
                Method::GET,
                "/v1/world//artifacts/outputs/demo/e1/outputs/stats.json?download=1",
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::CONTENT_LENGTH], bytes.len().to_string());
        assert_eq!(headers[header::ETAG], format!("\"{cid}\""));
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], SANDBOX_POLICY);
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(
            headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"stats.json\""
        );
        assert_eq!(TestServer::body(response).await, bytes);

        let mut revalidate = server.authorized(
            Method::GET,
            output.replace("/artifacts", "/v1/world/artifacts").as_str(),
        );
        revalidate
            .headers_mut()
            .insert(header::IF_NONE_MATCH, headers[header::ETAG].clone());
        let response = server.send(revalidate).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

        // A file no index lists has no ETag; nothing stops it being served.
        server.put("/artifacts/notes/readme.txt", b"plain").await;
        let response = server
            .request(Method::GET, "/v1/world/artifacts/notes/readme.txt")
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(header::ETAG).is_none());
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert!(
            response
                .headers()
                .get(header::CONTENT_DISPOSITION)
                .is_none()
        );
        assert_eq!(TestServer::body(response).await, b"plain");
    }
}
