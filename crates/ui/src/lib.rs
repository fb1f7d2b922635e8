//! lastmile's web UI, served by the binary itself.
//!
//! The pages are a single-page app (Preact views, uPlot charts) under `web/`, bundled by
//! esbuild when this crate builds (see `build.rs`) and embedded with `include_bytes!`:
//! nothing is fetched at run time, so the UI works offline. Every view has its own path
//! (`/traces/{id}`, `/explore?q=…`) that serves the same `index.html`; the app reads the
//! path and query, so a link opens the same view. Assets carry a content hash in their
//! name and are cached for a year; gzip and brotli variants are built ahead, chosen by
//! `Accept-Encoding`.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file and its precompressed variants.
pub struct Asset {
    /// URL path, e.g. `/assets/app-3F2A.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    /// Content hash (hex), the base of the ETag.
    pub etag: &'static str,
    /// Named by content hash: safe to cache forever.
    pub immutable: bool,
    pub raw: &'static [u8],
    pub gzip: &'static [u8],
    pub brotli: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Paths of the UI's views; each serves `index.html` and the app picks the view.
pub const PAGES: &[&str] = &[
    "/",
    "/explore",
    "/traces",
    "/traces/{id}",
    "/logs",
    "/services",
    "/services/{name}",
    "/cardinality",
    "/go",
    "/status",
];

/// Finds an embedded file by URL path.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The UI's routes, to merge into the API router (any state type).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new();
    for page in PAGES {
        r = r.route(page, get(index));
    }
    r.route("/assets/{file}", get(asset_file)).route(
        "/favicon.svg",
        get(|h: HeaderMap| async move { serve("/favicon.svg", &h) }),
    )
}

async fn index(headers: HeaderMap) -> Response {
    serve("/index.html", &headers)
}

async fn asset_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("/assets/{file}"), &headers)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

/// The best encoding the client accepts: brotli, then gzip, else none. Honours `q=0`.
fn negotiate(headers: &HeaderMap) -> Encoding {
    let Some(accept) = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return Encoding::Identity;
    };
    let accepts = |name: &str| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case(name) || coding == "*") && q > 0.0
        })
    };
    if accepts("br") {
        Encoding::Brotli
    } else if accepts("gzip") {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(a) = asset(path) else {
        return (StatusCode::NOT_FOUND, format!("no such file: {path}\n")).into_response();
    };
    let enc = negotiate(headers);
    let (body, coding, suffix) = match enc {
        Encoding::Brotli => (a.brotli, Some("br"), "-br"),
        Encoding::Gzip => (a.gzip, Some("gzip"), "-gz"),
        Encoding::Identity => (a.raw, None, ""),
    };
    // A strong validator per representation (RFC 9110 §8.8.3).
    let etag = format!("\"{}{suffix}\"", a.etag);
    // Hashed assets never change; the page is revalidated on every load (so a new binary's
    // assets are picked up at once); anything else (the icon) is kept a day.
    let cache = if a.immutable {
        "public, max-age=31536000, immutable"
    } else if a.path == "/index.html" {
        "no-cache"
    } else {
        "public, max-age=86400"
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        if let Some(c) = coding {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
        }
        r
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = router::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, body)
    }

    fn referenced_assets(html: &str) -> Vec<String> {
        html.match_indices("/assets/")
            .map(|(i, _)| {
                html[i..]
                    .chars()
                    .take_while(|c| *c != '"')
                    .collect::<String>()
            })
            .collect()
    }

    #[tokio::test]
    async fn every_view_path_serves_the_app_page() {
        for page in [
            "/",
            "/explore",
            "/traces",
            "/traces/0123456789abcdef0123456789abcdef",
            "/logs",
            "/services",
            "/services/checkout",
            "/cardinality",
            "/go",
            "/status",
        ] {
            let (status, h, body) = get(page, &[]).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(
                h[header::CONTENT_TYPE],
                "text/html; charset=utf-8",
                "{page}"
            );
            assert_eq!(h[header::CACHE_CONTROL], "no-cache", "{page}");
            let html = String::from_utf8(body).unwrap();
            assert!(html.contains("<div id=\"app\">"), "{page}");
        }
    }

    #[tokio::test]
    async fn the_page_references_hashed_assets_that_are_served() {
        let (_, _, body) = get("/", &[]).await;
        let html = String::from_utf8(body).unwrap();
        let refs = referenced_assets(&html);
        assert!(
            refs.iter().any(|r| r.ends_with(".js")) && refs.iter().any(|r| r.ends_with(".css")),
            "index.html should load a script and a stylesheet: {refs:?}"
        );
        for r in refs {
            let (status, h, body) = get(&r, &[]).await;
            assert_eq!(status, StatusCode::OK, "{r}");
            assert_eq!(
                h[header::CACHE_CONTROL],
                "public, max-age=31536000, immutable"
            );
            assert!(h.get(header::CONTENT_ENCODING).is_none());
            assert_eq!(body, asset(&r).unwrap().raw, "{r}");
            let want = if r.ends_with(".js") {
                "text/javascript; charset=utf-8"
            } else {
                "text/css; charset=utf-8"
            };
            assert_eq!(h[header::CONTENT_TYPE], want);
        }
    }

    #[tokio::test]
    async fn compressed_variants_follow_accept_encoding() {
        let js = ASSETS.iter().find(|a| a.path.ends_with(".js")).unwrap();
        let (_, h, body) = get(js.path, &[("accept-encoding", "gzip, deflate, br")]).await;
        assert_eq!(h[header::CONTENT_ENCODING], "br");
        assert_eq!(body, js.brotli);
        assert!(
            body.len() < js.raw.len() / 2,
            "brotli should at least halve the bundle"
        );

        let (_, h, body) = get(js.path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(h[header::CONTENT_ENCODING], "gzip");
        assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic");

        let (_, h, body) = get(js.path, &[("accept-encoding", "br;q=0, gzip;q=0")]).await;
        assert!(h.get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body, js.raw);
        assert_eq!(h[header::VARY], "accept-encoding");
    }

    #[tokio::test]
    async fn a_matching_etag_gets_304_and_no_body() {
        let (_, h, _) = get("/", &[("accept-encoding", "gzip")]).await;
        let etag = h[header::ETAG].to_str().unwrap().to_owned();
        let (status, _, body) = get(
            "/",
            &[("accept-encoding", "gzip"), ("if-none-match", &etag)],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        // Another representation does not match that validator.
        let (status, _, _) = get("/", &[("accept-encoding", "br"), ("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_assets_are_404() {
        let (status, _, body) = get("/assets/app-nothere.js", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8(body).unwrap().contains("no such file"));
    }
}
