//! Fake AI providers: local axum servers on `127.0.0.1:0` that speak the real Anthropic
//! Messages and OpenAI Chat Completions wire formats, streaming (server-sent events)
//! included. Each records every request it receives (headers and body), and can be told to
//! reply with given text or chunks, to fail the next calls with a status, to answer slowly,
//! to stream slowly, to hold every call until released, or to break off a stream with the
//! provider's error event.
//!
//! Error bodies echo the received key back, as some real providers do in part, so tests can
//! prove that no upstream body ever reaches an error message.
//!
//! A stream that the client abandons before its end is counted as cancelled
//! ([`FakeProvider::cancelled_streams`]).

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Which wire format a fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Anthropic,
    OpenAi,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Anthropic => "fake-anthropic",
            Flavor::OpenAi => "fake-openai",
        }
    }

    /// The one path the real API serves chat turns on.
    fn chat_path(self) -> &'static str {
        match self {
            Flavor::Anthropic => "/v1/messages",
            Flavor::OpenAi => "/v1/chat/completions",
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Every header in arrival order, names lower case, values lossily as text.
    pub headers: Vec<(String, String)>,
    pub raw_body: String,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body asked for a streamed reply.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream") == Some(&Value::Bool(true))
    }

    /// Everything the request carried except header `name`: method, path, query, every
    /// other header and the body. For asserting that a key went nowhere else.
    pub fn everything_except_header(&self, name: &str) -> String {
        let mut all = format!(
            "{} {} {}\n",
            self.method,
            self.path,
            self.query.as_deref().unwrap_or("")
        );
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case(name) {
                all.push_str(&format!("{n}: {v}\n"));
            }
        }
        all.push_str(&self.raw_body);
        all
    }

    /// Everything the request carried, headers included.
    pub fn everything(&self) -> String {
        self.everything_except_header("")
    }
}

struct Knobs {
    /// Streamed as these chunks; the non-streamed reply is their concatenation.
    chunks: Vec<String>,
    /// Statuses for the next calls, one each.
    failures: VecDeque<u16>,
    delay: Duration,
    chunk_delay: Duration,
    stream_error: bool,
}

struct Shared {
    flavor: Flavor,
    knobs: Mutex<Knobs>,
    requests: Mutex<Vec<RecordedRequest>>,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    /// Open (`true`) unless [`FakeProvider::hold`] closed it.
    gate: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn knobs(&self) -> std::sync::MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake provider; the server stops when this is dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeProvider {
    /// A fake Anthropic Messages API; `base_url()` is `http://127.0.0.1:PORT`.
    pub async fn anthropic() -> Self {
        Self::start(Flavor::Anthropic).await
    }

    /// A fake OpenAI Chat Completions API; `base_url()` is `http://127.0.0.1:PORT/v1`.
    pub async fn openai() -> Self {
        Self::start(Flavor::OpenAi).await
    }

    pub async fn start(flavor: Flavor) -> Self {
        let shared = Arc::new(Shared {
            flavor,
            knobs: Mutex::new(Knobs {
                chunks: words(&format!("Hello from {}", flavor.name())),
                failures: VecDeque::new(),
                delay: Duration::ZERO,
                chunk_delay: Duration::ZERO,
                stream_error: false,
            }),
            requests: Mutex::new(Vec::new()),
            cancelled: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            gate: tokio::sync::watch::Sender::new(true),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port for the fake provider");
        let addr = listener.local_addr().expect("the fake provider's address");
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// What a config's `base_url` should say to reach this fake.
    pub fn base_url(&self) -> String {
        match self.shared.flavor {
            Flavor::Anthropic => format!("http://{}", self.addr),
            Flavor::OpenAi => format!("http://{}/v1", self.addr),
        }
    }

    /// `127.0.0.1:PORT`, for `KEYWARD_PROVIDER_HOSTS`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The reply text (the concatenation of the streamed chunks).
    pub fn reply(&self) -> String {
        self.shared.knobs().chunks.concat()
    }

    /// Replies with `text`, streamed word by word.
    pub fn set_reply(&self, text: impl AsRef<str>) {
        self.shared.knobs().chunks = words(text.as_ref());
    }

    /// Streams exactly these chunks; the non-streamed reply is their concatenation.
    pub fn set_chunks<I, S>(&self, chunks: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.shared.knobs().chunks = chunks.into_iter().map(Into::into).collect();
    }

    /// The next `n` calls answer `status` with the provider's error body (which echoes the
    /// key it was sent). A 429 carries `retry-after: 0`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared
            .knobs()
            .failures
            .extend(std::iter::repeat_n(status, n));
    }

    /// Every call waits this long before answering at all.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.knobs().delay = delay;
    }

    /// Streamed replies wait this long before each event after the first.
    pub fn set_chunk_delay(&self, delay: Duration) {
        self.shared.knobs().chunk_delay = delay;
    }

    /// From now on every call is recorded, then waits until [`FakeProvider::release`]: for
    /// tests that need two calls in flight at once without sleeping.
    pub fn hold(&self) {
        self.shared.gate.send_replace(false);
    }

    /// Lets held calls (and every later one) answer.
    pub fn release(&self) {
        self.shared.gate.send_replace(true);
    }

    /// Waits (polling, up to `timeout`) until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.request_count() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.request_count() >= n
    }

    /// Streamed replies send their first chunk, then the provider's error event, then end.
    pub fn fail_streams_midway(&self, on: bool) {
        self.shared.knobs().stream_error = on;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Streams whose client went away before the last event was sent.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Streams sent to their end.
    pub fn completed_streams(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Waits (polling, up to `timeout`) until at least one stream was cancelled.
    pub async fn wait_for_cancelled_stream(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.cancelled_streams() > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.cancelled_streams() > 0
    }
}

/// `text` as chunks of one word each, whitespace kept, so they concatenate back to `text`.
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in text.split_inclusive(' ') {
        match out.last_mut() {
            // Runs of spaces stay with the word before them.
            Some(last) if piece == " " => last.push(' '),
            _ => out.push(piece.to_owned()),
        }
    }
    out
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let request = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_str(&raw_body).unwrap_or(Value::Null),
        raw_body,
    };
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request.clone());

    let (delay, failure, chunks, chunk_delay, stream_error) = {
        let mut knobs = shared.knobs();
        let failure = knobs.failures.pop_front();
        (
            knobs.delay,
            failure,
            knobs.chunks.clone(),
            knobs.chunk_delay,
            knobs.stream_error,
        )
    };
    let mut gate = shared.gate.subscribe();
    // The sender lives as long as `shared`, which this handler holds.
    let _ = gate.wait_for(|open| *open).await;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let flavor = shared.flavor;
    if method != Method::POST || uri.path() != flavor.chat_path() {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response();
    }
    if let Some(status) = failure {
        return error_response(flavor, status, &request);
    }

    let model = request.body["model"]
        .as_str()
        .unwrap_or("unknown")
        .to_owned();
    if !request.is_stream() {
        return Json(whole_reply(flavor, &model, &chunks.concat())).into_response();
    }
    let events = stream_events(flavor, &model, &chunks, stream_error);
    let stream = async_stream::stream! {
        let mut guard = StreamGuard { shared: Arc::clone(&shared), finished: false };
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            yield Ok::<_, Infallible>(event);
        }
        guard.finished = true;
    };
    Sse::new(stream).into_response()
}

/// Counts a stream as completed or cancelled when the server lets go of it.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.shared.completed
        } else {
            &self.shared.cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

fn error_response(flavor: Flavor, status: u16, request: &RecordedRequest) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // Echo whatever credential arrived, as a careless upstream might.
    let key = request
        .header("x-api-key")
        .or_else(|| request.header("authorization"))
        .unwrap_or_default();
    let body = match flavor {
        Flavor::Anthropic => {
            let kind = match status.as_u16() {
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": format!("request failed for key {key}")}})
        }
        Flavor::OpenAi => json!({"error": {
            "message": format!("Incorrect API key provided: {key}"),
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        }}),
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("0"));
    }
    response
}

fn whole_reply(flavor: Flavor, model: &str, text: &str) -> Value {
    match flavor {
        Flavor::Anthropic => json!({
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }),
        Flavor::OpenAi => json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }),
    }
}

fn stream_events(flavor: Flavor, model: &str, chunks: &[String], midway_error: bool) -> Vec<Event> {
    let chunks = if midway_error {
        &chunks[..chunks.len().min(1)]
    } else {
        chunks
    };
    match flavor {
        Flavor::Anthropic => {
            let named =
                |name: &str, data: Value| Event::default().event(name).data(data.to_string());
            let mut events = vec![
                named(
                    "message_start",
                    json!({"type": "message_start", "message": {
                        "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
                        "model": model, "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": 10, "output_tokens": 1},
                    }}),
                ),
                named(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                ),
                named("ping", json!({"type": "ping"})),
            ];
            events.extend(chunks.iter().map(|chunk| {
                named(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": chunk}}),
                )
            }));
            if midway_error {
                events.push(named(
                    "error",
                    json!({"type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ));
                return events;
            }
            events.extend([
                named(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
                named(
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": 5}}),
                ),
                named("message_stop", json!({"type": "message_stop"})),
            ]);
            events
        }
        Flavor::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                Event::default().data(
                    json!({
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 1_700_000_000,
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                    })
                    .to_string(),
                )
            };
            let mut events = vec![chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )];
            events.extend(
                chunks
                    .iter()
                    .map(|text| chunk(json!({"content": text}), Value::Null)),
            );
            if midway_error {
                events.push(Event::default().data(
                    json!({"error": {"message": "The server had an error", "type": "server_error"}}).to_string(),
                ));
                return events;
            }
            events.push(chunk(json!({}), json!("stop")));
            events.push(Event::default().data("[DONE]"));
            events
        }
    }
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn words_concatenate_back_to_the_text() {
        for text in ["Hello from fake-anthropic", "a  b", " lead", "trail ", ""] {
            assert_eq!(words(text).concat(), text);
        }
        assert_eq!(words("Hello from x"), ["Hello ", "from ", "x"]);
    }
}
