//! The admin console's built assets, embedded in the binary at compile time so
//! `keyward serve` serves them from any working directory.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::Embed;
use tower_http::compression::CompressionLayer;

/// `build.rs` copies `console/dist` (Trunk's output) here, or writes a placeholder page
/// when the console has not been built.
#[derive(Embed)]
#[folder = "$OUT_DIR/console"]
struct Assets;

/// `/console/…`; `/console` itself redirects to `/console/` so relative asset URLs work.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { asset("index.html") }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>| async move { asset(&path) }),
        )
        .layer(CompressionLayer::new())
}

/// The entry page's policy: its own inline scripts by hash, wasm, same-origin API calls.
fn page_csp() -> HeaderValue {
    static CSP: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        let html = Assets::get("index.html")
            .map(|f| String::from_utf8_lossy(&f.data).into_owned())
            .unwrap_or_default();
        crate::headers::page_csp(&html, "", "", "")
    })
    .clone()
}

/// Whether the console was built into this binary (false: the placeholder page).
pub fn is_built() -> bool {
    Assets::get("keyward-placeholder").is_none()
}

/// Whether GraphiQL's scripts were embedded too (`make console` copies them from npm).
pub fn has_graphiql() -> bool {
    Assets::get("graphiql/graphiql.min.js").is_some()
}

fn asset(path: &str) -> Response {
    // Client-side routes (no file extension) get the app's entry page.
    let (path, file) = match Assets::get(path) {
        Some(file) => (path, file),
        None if !path.rsplit('/').next().unwrap_or("").contains('.') => {
            match Assets::get("index.html") {
                Some(file) => ("index.html", file),
                None => return StatusCode::NOT_FOUND.into_response(),
            }
        }
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    // Trunk puts a content hash in every asset name except the entry page.
    let cache = if path == "index.html" {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    let is_page = path == "index.html";
    let mut res = Response::new(Body::from(file.data.into_owned()));
    let headers = res.headers_mut();
    if is_page {
        headers.insert(header::CONTENT_SECURITY_POLICY, page_csp());
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime.as_ref()).expect("mime types are valid headers"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}
