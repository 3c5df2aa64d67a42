//! HTTP routes: /graphql (POST queries, GET GraphiQL), /graphql/ws, /console, /healthz,
//! /readyz. Authentication happens here, before GraphQL sees the request. Never logs a
//! header or a body.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_graphql::BatchRequest;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::http::GraphiQLSource;
use axum::body::Body;
use axum::extract::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::audit::AuditEntry;
use crate::auth::{Principal, RequestMeta, token};
use crate::error::{AppError, Code};
use crate::schema::KeywardSchema;
use crate::state::AppState;
use crate::{console, headers};
use entity::AuditAction;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
struct Http {
    state: AppState,
    schema: KeywardSchema,
}

pub fn router(state: AppState, schema: KeywardSchema) -> Router {
    let cors_origins = state.settings.cors_origins.clone();
    let http = Http { state, schema };
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(|| async { Redirect::permanent("/console/") }))
        .merge(console::router())
        .with_state(http)
        .layer(headers::cors(&cors_origins))
        .layer(middleware::from_fn(headers::security_headers))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req.extensions().get::<RequestId>().map(|r| r.0.as_str()).unwrap_or("");
                    tracing::info_span!("request", id, method = %req.method(), path = req.uri().path())
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), ms = latency.as_millis() as u64, "served");
                }),
        )
        .layer(middleware::from_fn(request_id))
}

/// The request's id: the caller's `x-request-id` when it is a sane token, else a new
/// UUIDv7. Echoed in the response header and recorded with every audit event.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    res
}

/// GraphiQL: the page is built once; its policy allows its inline script by hash and the
/// CDN it loads from.
async fn graphiql() -> impl IntoResponse {
    static PAGE: std::sync::OnceLock<(String, HeaderValue)> = std::sync::OnceLock::new();
    let (html, csp) = PAGE.get_or_init(|| {
        let html = GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Keyward GraphiQL")
            .finish();
        if console::has_graphiql() {
            // Served from the binary: works offline, and the policy needs no CDN.
            let html = LOCAL_GRAPHIQL
                .iter()
                .fold(html, |html, (cdn, local)| html.replace(cdn, local));
            let csp = headers::page_csp(&html, "", "", "");
            (html, csp)
        } else {
            let csp = headers::page_csp(
                &html,
                "https://unpkg.com",
                "https://unpkg.com",
                "https://graphql.org",
            );
            (html, csp)
        }
    });
    (
        [(header::CONTENT_SECURITY_POLICY, csp.clone())],
        Html(html.clone()),
    )
}

/// GraphiQL's CDN assets and their copies embedded with the console (`make console`).
const LOCAL_GRAPHIQL: [(&str, &str); 5] = [
    (
        "https://unpkg.com/react@18/umd/react.development.js",
        "/console/graphiql/react.production.min.js",
    ),
    (
        "https://unpkg.com/react-dom@18/umd/react-dom.development.js",
        "/console/graphiql/react-dom.production.min.js",
    ),
    (
        "https://unpkg.com/graphiql@4/graphiql.min.css",
        "/console/graphiql/graphiql.min.css",
    ),
    (
        "https://unpkg.com/graphiql@4/graphiql.min.js",
        "/console/graphiql/graphiql.min.js",
    ),
    (
        "https://graphql.org/favicon.ico",
        "/console/graphiql/favicon.svg",
    ),
];

async fn readyz(State(http): State<Http>) -> Response {
    let database = crate::db::ping(&http.state.db, http.state.settings.store.db_timeout).await;
    let body = json!({
        "database": if database { "ok" } else { "unavailable" },
        "keyring": { "state": "verified", "keys": http.state.keyring.len() },
    });
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(http): State<Http>) -> impl IntoResponse {
    let body = crate::telemetry::metrics::render(&http.state.db);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// A GraphQL-shaped error response for refusals that happen before GraphQL runs.
pub fn error_response(status: StatusCode, code: Code, message: &str) -> Response {
    let body = json!({ "data": null, "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] });
    (status, Json(body)).into_response()
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
/// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries further
/// left were written by the client and prove nothing).
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .map(|entry| entry.trim().parse::<IpAddr>().ok())
        .take_while(Option::is_some)
        .flatten()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

fn meta_of(req_id: &RequestId, ip: IpAddr, headers: &HeaderMap) -> RequestMeta {
    RequestMeta {
        request_id: req_id.0.clone(),
        client_ip: Some(ip.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Resolves the bearer token of a request, throttling and auditing failures.
pub async fn authenticate(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Result<Principal, Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    authenticate_bearer(state, ip, bearer, meta).await
}

/// The token of an `Authorization` header value: `Bearer <token>` (scheme in any case),
/// surrounding whitespace trimmed. None for any other scheme or shape.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn authenticate_bearer(
    state: &AppState,
    ip: IpAddr,
    bearer: Option<&str>,
    meta: &RequestMeta,
) -> Result<Principal, Response> {
    let Some(presented) = bearer.filter(|b| !b.is_empty()) else {
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "a bearer token is required (Authorization: Bearer <token>)",
        ));
    };
    if let Some(wait) = state.auth_throttle.retry_after(ip) {
        let mut res = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            Code::Unauthenticated,
            "too many failed authentications from this address; retry later",
        );
        res.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return Err(res);
    }
    let cache = state.settings.token_cache.then_some(&*state.token_cache);
    match token::authenticate_cached(
        &state.db,
        cache,
        state.settings.admin_token.as_ref(),
        presented,
    )
    .await
    {
        Ok(Some(principal)) => Ok(principal),
        Ok(None) => {
            let verdict = state.auth_throttle.record_failure(ip);
            if verdict.audit {
                // Best effort: a failing audit write must not turn a 401 into something else.
                let entry = AuditEntry::by_name(AuditAction::AuthDenied, "anonymous", meta)
                    .success(false)
                    .detail(json!({ "reason": "unknown or revoked token" }));
                if let Err(e) = entry.record(&state.db).await {
                    tracing::warn!(error = %e, "could not audit a denied authentication");
                }
            }
            Err(error_response(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                "the bearer token is not valid",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "authentication failed");
            Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                e.code(),
                &e.to_string(),
            ))
        }
    }
}

/// Subscriptions (`graphql-transport-ws`, see `crate::ws`). The bearer token comes in
/// `connection_init`'s payload as `{"Authorization": "Bearer …"}`.
async fn graphql_ws(
    State(http): State<Http>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    axum::Extension(req_id): axum::Extension<RequestId>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = crate::ws::protocol(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let ip = client_ip(addr.ip(), &headers, &http.state.settings.trusted_proxies);
    let meta = meta_of(&req_id, ip, &headers);
    let Http { state, schema } = http;
    // A subscription message is a GraphQL request: the body limit applies to it too
    // (tungstenite's defaults would take 64 MiB).
    let max_message = state.settings.limits.max_body_bytes;
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| crate::ws::serve(socket, schema, protocol, state, ip, meta))
}

async fn graphql(
    State(http): State<Http>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    axum::Extension(req_id): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let state = &http.state;
    let ip = client_ip(addr.ip(), &headers, &state.settings.trusted_proxies);
    let meta = meta_of(&req_id, ip, &headers);
    let principal = match authenticate(state, ip, &headers, &meta).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    if let Some(ct) = headers.get(header::CONTENT_TYPE)
        && !is_json_content_type(ct)
    {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::BadUserInput,
            "Content-Type must be application/json",
        );
    }
    let limits = &state.settings.limits;
    // One deadline for the whole request: a body that trickles in counts against it too.
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    let too_large = || {
        let message = format!(
            "the request body is over the {} byte limit",
            limits.max_body_bytes
        );
        error_response(StatusCode::PAYLOAD_TOO_LARGE, Code::BadUserInput, &message)
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.max_body_bytes as u64) {
        // Read on (and discard) a body that is not much over, so that the client, still
        // sending, gets to read the 413 rather than a reset connection; a far larger one
        // is not worth reading.
        if announced.is_some_and(|n| n <= drain_cap(limits.max_body_bytes) as u64) {
            drain(body.into_data_stream(), drain_cap(limits.max_body_bytes)).await;
        }
        return too_large();
    }
    let bytes =
        match tokio::time::timeout_at(deadline, read_body(body, limits.max_body_bytes)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(BodyError::TooLarge)) => return too_large(),
            Ok(Err(BodyError::Broken)) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    Code::BadUserInput,
                    "the request body could not be read",
                );
            }
            Err(_) => {
                let message = format!(
                    "the request body did not arrive within {} seconds",
                    limits.request_timeout.as_secs_f64()
                );
                return error_response(StatusCode::REQUEST_TIMEOUT, Code::BadUserInput, &message);
            }
        };
    let batch: BatchRequest = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            // serde's message names the position and the problem, never echoes input text.
            let message = format!("the body is not a GraphQL request in JSON: {e}");
            return error_response(StatusCode::BAD_REQUEST, Code::BadUserInput, &message);
        }
    };
    if let BatchRequest::Batch(requests) = &batch
        && (requests.is_empty() || requests.len() > limits.max_batch)
    {
        let message = format!("a batch must hold 1 to {} operations", limits.max_batch);
        return error_response(StatusCode::BAD_REQUEST, Code::BadUserInput, &message);
    }
    // A provider call has its own bound (KEYWARD_PROVIDER_TIMEOUT per attempt, bounded
    // retries): a request that relays a message gets that time on top of the usual one.
    let relays = batch.iter().any(|r| r.query.contains("sendMessage"));
    let deadline = if relays {
        let provider = state.providers.settings();
        deadline + provider.request_timeout * (provider.max_retries + 1) + provider.connect_timeout
    } else {
        deadline
    };
    let batch = batch.data(principal).data(meta);
    let response = match tokio::time::timeout_at(deadline, http.schema.execute_batch(batch)).await {
        Ok(response) => response,
        Err(_) => {
            let e = AppError::Unavailable("request timed out".into());
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                e.code(),
                "the request took too long and was stopped",
            );
        }
    };
    // Error codes were set by the schema's ErrorCodes extension.
    async_graphql_axum::GraphQLResponse::from(response).into_response()
}

/// `application/json` (the GraphQL-over-HTTP request type), parameters allowed, any case.
fn is_json_content_type(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/graphql-response+json")
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a body of at most `max` bytes. One that is over is read on and discarded up to
/// [`drain_cap`] (see [`drain`]) before it is refused.
async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, BodyError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        if bytes.len() + chunk.len() > max {
            drop(bytes);
            drain(stream, drain_cap(max).saturating_sub(max)).await;
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// How much of a refused body is read and thrown away: four times the limit, at least
/// 1 MiB.
fn drain_cap(max: usize) -> usize {
    max.saturating_mul(4).max(1024 * 1024)
}

/// Discards up to `cap` more bytes of a refused body, for at most a second. Closing the
/// connection while the client is still sending makes the kernel reset it, and many
/// clients then report the reset instead of the 413 they were sent.
async fn drain(mut stream: axum::body::BodyDataStream, cap: usize) {
    use futures::StreamExt;
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > cap {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.9".parse().unwrap(),
        );
        // Behind the proxy: the rightmost untrusted entry, not the spoofable leftmost.
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &trusted), ip("1.2.3.4"));
        // From anywhere else the header is the client's own word: ignored.
        assert_eq!(client_ip(ip("8.8.8.8"), &headers, &trusted), ip("8.8.8.8"));
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &[]), ip("10.0.0.1"));
        // Garbage stops the walk: the proxy's own address is used.
        headers.insert("x-forwarded-for", "1.2.3.4, junk".parse().unwrap());
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("10.0.0.1")
        );
        headers.remove("x-forwarded-for");
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn bearer_tokens_are_taken_from_the_bearer_scheme_only() {
        assert_eq!(bearer_token("Bearer kw_abc"), Some("kw_abc"));
        assert_eq!(bearer_token("bearer kw_abc "), Some("kw_abc"));
        assert_eq!(bearer_token("BEARER  kw_abc"), Some("kw_abc"));
        assert_eq!(bearer_token("Bearer "), Some(""));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearerkw_abc"), None);
        assert_eq!(bearer_token("kw_abc"), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn only_json_content_types_are_accepted() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;x=y",
        ] {
            assert!(is_json_content_type(&HeaderValue::from_static(ok)), "{ok}");
        }
        for no in [
            "application/jsonx",
            "text/plain",
            "application/json-patch+json",
            "",
            "application/graphql",
        ] {
            assert!(!is_json_content_type(&HeaderValue::from_static(no)), "{no}");
        }
    }
}
