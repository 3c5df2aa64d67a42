//! Response headers every answer gets: a Content-Security-Policy (strict by default; the
//! two HTML pages get one built from their own inline scripts' hashes), no MIME sniffing,
//! no framing, no referrer, no server banner; and CORS, closed unless origins are listed.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// For JSON answers: nothing may load, nothing may frame.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(API_CSP));
    headers.remove(header::SERVER);
    res
}

/// A policy for an HTML page: its own inline scripts (by hash), same-origin requests and
/// sockets, wasm compilation, and whatever `extra` sources the page loads.
pub fn page_csp(
    html: &str,
    extra_scripts: &str,
    extra_styles: &str,
    extra_images: &str,
) -> HeaderValue {
    let hashes: String = inline_scripts(html)
        .map(|body| {
            format!(
                " 'sha256-{}'",
                STANDARD.encode(Sha256::digest(body.as_bytes()))
            )
        })
        .collect();
    let policy = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes} {extra_scripts}; \
         style-src 'self' 'unsafe-inline' {extra_styles}; img-src 'self' data: {extra_images}; \
         connect-src 'self' ws: wss:; font-src 'self' data: {extra_styles}; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).expect("a policy is ASCII")
}

/// The bodies of `<script>` elements without a `src`.
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    html.split("<script").skip(1).filter_map(|rest| {
        let (attrs, after) = rest.split_once('>')?;
        if attrs.contains("src=") {
            return None;
        }
        after.split_once("</script>").map(|(body, _)| body)
    })
}

/// CORS: no cross-origin browser access unless KEYWARD_CORS_ORIGINS lists origins.
pub fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_hashed_and_external_ones_are_not() {
        let html = r#"<script src="https://x/a.js"></script><script type="module">init()</script>"#;
        assert_eq!(inline_scripts(html).collect::<Vec<_>>(), ["init()"]);
        let csp = page_csp(html, "https://x", "", "");
        let expected = STANDARD.encode(Sha256::digest(b"init()"));
        assert!(
            csp.to_str()
                .unwrap()
                .contains(&format!("'sha256-{expected}'"))
        );
        assert!(!csp.to_str().unwrap().contains("unsafe-inline' https://x;"));
    }
}
