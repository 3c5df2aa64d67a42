//! Response headers (issue 7 point 7): every answer forbids sniffing and framing and names
//! no server; JSON answers carry a policy under which nothing loads; the two HTML pages
//! (GraphiQL and the console) carry one under which they work, their inline scripts
//! allowed by hash and nothing inline otherwise; CORS is closed unless origins are listed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use tests::{Db, TestApp};

/// The CSP directive `name`'s sources, e.g. `script-src` → `['self', 'sha256-…', …]`.
fn directive<'a>(csp: &'a str, name: &str) -> Option<Vec<&'a str>> {
    csp.split(';').map(str::trim).find_map(|d| {
        let mut parts = d.split_whitespace();
        (parts.next() == Some(name)).then(|| parts.collect())
    })
}

fn csp(headers: &HeaderMap) -> &str {
    headers
        .get("content-security-policy")
        .expect("a Content-Security-Policy")
        .to_str()
        .unwrap()
}

#[track_caller]
fn assert_hardened(what: &str, headers: &HeaderMap) {
    assert_eq!(
        headers
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        headers.get("x-frame-options").map(|v| v.to_str().unwrap()),
        Some("DENY"),
        "{what}"
    );
    assert!(headers.get("server").is_none(), "{what}: a server banner");
    assert!(headers.get("x-powered-by").is_none(), "{what}");
    assert_eq!(
        directive(csp(headers), "frame-ancestors"),
        Some(vec!["'none'"]),
        "{what}: {}",
        csp(headers)
    );
}

#[track_caller]
fn assert_api_policy(what: &str, headers: &HeaderMap) {
    assert_hardened(what, headers);
    assert_eq!(
        directive(csp(headers), "default-src"),
        Some(vec!["'none'"]),
        "{what}: {}",
        csp(headers)
    );
    assert!(directive(csp(headers), "script-src").is_none(), "{what}");
}

/// The bodies of inline `<script>` elements (those without `src`).
fn inline_scripts(html: &str) -> Vec<&str> {
    html.split("<script")
        .skip(1)
        .filter_map(|rest| {
            let (attrs, after) = rest.split_once('>')?;
            if attrs.contains("src=") {
                return None;
            }
            after.split_once("</script>").map(|(body, _)| body)
        })
        .collect()
}

/// Origins of `src="…"`/`href="…"` URLs of the elements whose tag starts with `tag`.
fn external_origins(html: &str, tag: &str, attr: &str) -> Vec<String> {
    html.split(tag)
        .skip(1)
        .filter_map(|rest| {
            let element = rest.split_once('>')?.0;
            let url = element
                .split(&format!("{attr}=\""))
                .nth(1)?
                .split('"')
                .next()?;
            let url = url
                .strip_prefix("//")
                .map_or(url.to_owned(), |u| format!("https://{u}"));
            let (scheme, rest) = url.split_once("://")?;
            Some(format!("{scheme}://{}", rest.split('/').next()?))
        })
        .collect()
}

/// An HTML page works under its policy: every inline script is allowed by its hash (and
/// nothing inline is allowed wholesale), every external script and stylesheet comes from
/// an allowed origin, no inline event handler needs `'unsafe-hashes'`, and it can talk to
/// its own origin, by fetch and by WebSocket.
#[track_caller]
fn assert_page_works_under_its_policy(what: &str, html: &str, headers: &HeaderMap) {
    assert_hardened(what, headers);
    let policy = csp(headers);
    let scripts = directive(policy, "script-src").expect("a script-src");
    assert!(!scripts.contains(&"'unsafe-inline'"), "{what}: {policy}");
    assert!(!scripts.contains(&"'unsafe-eval'"), "{what}: {policy}");
    let inline = inline_scripts(html);
    assert!(
        !inline.is_empty(),
        "{what}: the page has inline scripts to allow"
    );
    for body in inline {
        let hash = format!(
            "'sha256-{}'",
            STANDARD.encode(Sha256::digest(body.as_bytes()))
        );
        assert!(
            scripts.contains(&hash.as_str()),
            "{what}: inline script {hash} is not allowed by {policy}"
        );
    }
    for origin in external_origins(html, "<script", "src") {
        assert!(
            scripts.contains(&origin.as_str()),
            "{what}: script from {origin}: {policy}"
        );
    }
    let styles = directive(policy, "style-src").expect("a style-src");
    for link in html
        .split("<link")
        .skip(1)
        .filter(|l| l.contains("stylesheet"))
    {
        for origin in external_origins(&format!("<link{link}"), "<link", "href") {
            assert!(
                styles.contains(&origin.as_str()),
                "{what}: stylesheet from {origin}: {policy}"
            );
        }
    }
    let lower = html.to_ascii_lowercase();
    for handler in [" onload=", " onclick=", " onerror=", "javascript:"] {
        assert!(
            !lower.contains(handler),
            "{what}: an inline handler `{handler}`"
        );
    }
    let connect = directive(policy, "connect-src").expect("a connect-src");
    assert!(connect.contains(&"'self'"), "{what}: {policy}");
    assert!(
        connect.contains(&"ws:") || connect.contains(&"wss:"),
        "{what}: {policy}"
    );
    assert_eq!(
        directive(policy, "object-src"),
        Some(vec!["'none'"]),
        "{what}"
    );
    assert_eq!(
        directive(policy, "base-uri"),
        Some(vec!["'none'"]),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_of_every_kind_carry_the_strict_policy_and_no_banner() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let ok = app.gql("{ me { name } }", json!({})).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_api_policy("a GraphQL answer", &ok.headers);
    let refused = app.gql_as(None, "{ me { name } }", json!({})).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_api_policy("a 401", &refused.headers);
    let invalid = app.gql("{ nope }", json!({})).await;
    assert_api_policy("a validation error", &invalid.headers);
    let too_large = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(vec![b' '; 5 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_api_policy("a 413", too_large.headers());
    for path in ["/healthz", "/readyz", "/metrics", "/no-such-page"] {
        let res = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_api_policy(path, res.headers());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_works_under_a_policy_that_allows_its_own_inline_script_by_hash() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = app
        .client
        .get(format!("{}/graphql", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers().clone();
    let html = res.text().await.unwrap();
    assert!(html.contains("graphiql"), "the GraphiQL page");
    assert_page_works_under_its_policy("GraphiQL", &html, &headers);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_under_a_policy_that_allows_its_own_inline_scripts_by_hash() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = app
        .client
        .get(format!("{}/console/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers().clone();
    let html = res.text().await.unwrap();
    if keyward::console::is_built() {
        assert_page_works_under_its_policy("the console", &html, &headers);
        let scripts = directive(csp(&headers), "script-src").unwrap();
        assert!(
            scripts.contains(&"'wasm-unsafe-eval'"),
            "the console is wasm"
        );
    } else {
        assert_hardened("the console placeholder", &headers);
    }
    app.stop().await;
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, format!("{}/graphql", app.address))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

async fn post_from(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/graphql", app.address))
        .header("origin", origin)
        .bearer_auth(&app.admin_token)
        .json(&json!({ "query": "{ me { name } }" }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_closed_by_default() {
    let app = TestApp::spawn(Db::Sqlite).await;
    assert!(app.settings.cors_origins.is_empty());
    for origin in ["https://admin.example", "null", "http://127.0.0.1"] {
        let res = preflight(&app, origin).await;
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "preflight from {origin}: {:?}",
            res.headers()
        );
        let res = post_from(&app, origin).await;
        assert!(res.headers().get("access-control-allow-origin").is_none());
        assert!(
            res.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_exactly_the_listed_origins() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.cors_origins = vec!["https://admin.example".into()]
    })
    .await;
    let res = preflight(&app, "https://admin.example").await;
    assert!(res.status().is_success(), "{}", res.status());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "https://admin.example");
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "no cookies are involved"
    );

    let res = post_from(&app, "https://admin.example").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://admin.example"
    );
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.to_ascii_lowercase().contains("x-request-id"),
        "{exposed}"
    );

    for other in [
        "https://other.example",
        "https://admin.example.evil",
        "http://admin.example",
        "https://sub.admin.example",
        "null",
    ] {
        let res = preflight(&app, other).await;
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "preflight from {other}: {:?}",
            res.headers()
        );
        let res = post_from(&app, other).await;
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{other}"
        );
    }
    app.stop().await;
}
