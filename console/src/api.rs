//! The console's only way to the server: GraphQL over HTTP (`gql`) and over the
//! `graphql-transport-ws` WebSocket protocol (`subscribe`), both same-origin and both
//! carrying the bearer token. Every failure comes back as a [`ConsoleError`] sorted by
//! `errors[0].extensions.code`. Nothing here logs a request or a response: bodies may
//! hold plaintext secrets (a revealed config, a new API token).

use std::{cell::RefCell, rc::Rc};

use leptos::prelude::on_cleanup;
use send_wrapper::SendWrapper;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use wasm_bindgen::{JsCast, JsValue, closure::Closure};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, CloseEvent, Headers, MessageEvent, RequestInit, Response, WebSocket,
};

use crate::{auth, error::ConsoleError};

/// Where the API lives: the console is served by the same server, under `/console/`.
const GRAPHQL_PATH: &str = "/graphql";
const GRAPHQL_WS_PATH: &str = "/graphql/ws";

#[derive(Deserialize)]
struct GqlResponse {
    data: Option<Value>,
    #[serde(default)]
    errors: Vec<GqlError>,
}

#[derive(Deserialize)]
struct GqlError {
    message: String,
    #[serde(default)]
    extensions: Option<GqlExtensions>,
}

#[derive(Deserialize)]
struct GqlExtensions {
    code: Option<String>,
    /// Optional: the input field a `BAD_USER_INPUT` is about, when the server says.
    field: Option<String>,
}

impl GqlError {
    fn into_console_error(self) -> ConsoleError {
        let (code, field) = match self.extensions {
            Some(ext) => (ext.code.unwrap_or_default(), ext.field),
            None => (String::new(), None),
        };
        ConsoleError::from_code(&code, self.message, field)
    }
}

/// Posts `{query, variables}` to `/graphql` with the signed-in token and decodes `data`
/// into `T`. The request is aborted when the reactive owner that started it is cleaned
/// up (the page was left, or the resource is refetching).
pub async fn gql<T: DeserializeOwned>(query: &str, variables: Value) -> Result<T, ConsoleError> {
    let window = web_sys::window().ok_or_else(|| ConsoleError::Network("no window".into()))?;

    let headers = Headers::new().map_err(js_error)?;
    headers
        .set("content-type", "application/json")
        .map_err(js_error)?;
    if let Some(token) = auth::token() {
        headers
            .set("authorization", &format!("Bearer {token}"))
            .map_err(js_error)?;
    }
    let body = json!({ "query": query, "variables": variables }).to_string();

    let init = RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&JsValue::from_str(&body));
    init.set_credentials(web_sys::RequestCredentials::SameOrigin);

    let controller = AbortController::new().ok();
    if let Some(controller) = &controller {
        init.set_signal(Some(&controller.signal()));
    }
    let controller = SendWrapper::new(controller);
    on_cleanup(move || {
        if let Some(controller) = controller.take() {
            controller.abort();
        }
    });

    let response: Response = JsFuture::from(window.fetch_with_str_and_init(GRAPHQL_PATH, &init))
        .await
        .map_err(fetch_error)?
        .unchecked_into();
    let status = response.status();
    let text = JsFuture::from(response.text().map_err(js_error)?)
        .await
        .map_err(fetch_error)?
        .as_string()
        .unwrap_or_default();

    let parsed: GqlResponse = serde_json::from_str(&text).map_err(|_| match status {
        413 => ConsoleError::BadUserInput {
            message: "The request is too large for the server.".into(),
            field: None,
        },
        503 => ConsoleError::Unavailable("The server is not ready yet.".into()),
        _ => ConsoleError::Network(format!(
            "The server answered HTTP {status} without a GraphQL body."
        )),
    })?;

    if let Some(first) = parsed.errors.into_iter().next() {
        let error = first.into_console_error();
        if matches!(error, ConsoleError::Unauthenticated(_)) {
            auth::expire();
        }
        return Err(error);
    }
    let data = parsed
        .data
        .ok_or_else(|| ConsoleError::Network(format!("HTTP {status}: the answer has no data.")))?;
    serde_json::from_value(data).map_err(|e| {
        ConsoleError::Network(format!("The answer did not have the expected shape: {e}"))
    })
}

fn js_error(value: JsValue) -> ConsoleError {
    ConsoleError::Network(
        value
            .as_string()
            .or_else(|| {
                value
                    .dyn_ref::<js_sys::Error>()
                    .map(|e| String::from(e.message()))
            })
            .unwrap_or_else(|| "browser error".into()),
    )
}

fn fetch_error(value: JsValue) -> ConsoleError {
    let aborted = value
        .dyn_ref::<js_sys::Error>()
        .is_some_and(|e| e.name() == "AbortError");
    if aborted {
        ConsoleError::Aborted
    } else {
        ConsoleError::Network("Could not reach the server.".into())
    }
}

/// What a running subscription reports.
pub enum SubEvent {
    /// A `next` payload's `data`.
    Next(Value),
    /// The subscription failed; nothing follows.
    Error(ConsoleError),
    /// The server completed the subscription; nothing follows.
    Complete,
}

struct SubState {
    finished: bool,
    on_event: Box<dyn FnMut(SubEvent)>,
}

impl SubState {
    fn emit(&mut self, event: SubEvent) {
        if self.finished {
            return;
        }
        if matches!(event, SubEvent::Error(_) | SubEvent::Complete) {
            self.finished = true;
        }
        (self.on_event)(event);
    }
}

type Handler<E> = Closure<dyn FnMut(E)>;

/// A live `graphql-transport-ws` subscription. Dropping it closes the socket. Do not
/// drop it from inside its own event callback: keep it until the next one replaces it
/// or its component goes away.
pub struct Subscription {
    socket: WebSocket,
    _on_open: Handler<JsValue>,
    _on_message: Handler<MessageEvent>,
    _on_close: Handler<CloseEvent>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        if self.socket.ready_state() == WebSocket::OPEN {
            let _ = self.socket.send_with_str(r#"{"id":"1","type":"complete"}"#);
        }
        let _ = self.socket.close_with_code(1000);
    }
}

/// Starts one subscription on its own socket at `/graphql/ws`: `connection_init` with
/// the bearer token, then `subscribe` once acknowledged. `on_event` sees every `next`
/// and then exactly one `Error` or `Complete`.
pub fn subscribe(
    query: &str,
    variables: Value,
    on_event: impl FnMut(SubEvent) + 'static,
) -> Result<Subscription, ConsoleError> {
    let location = web_sys::window()
        .ok_or_else(|| ConsoleError::Network("no window".into()))?
        .location();
    let scheme = match location.protocol().map_err(js_error)?.as_str() {
        "https:" => "wss:",
        _ => "ws:",
    };
    let host = location.host().map_err(js_error)?;
    let socket = WebSocket::new_with_str(
        &format!("{scheme}//{host}{GRAPHQL_WS_PATH}"),
        "graphql-transport-ws",
    )
    .map_err(js_error)?;

    let state = Rc::new(RefCell::new(SubState {
        finished: false,
        on_event: Box::new(on_event),
    }));

    let init = json!({
        "type": "connection_init",
        "payload": { "Authorization": format!("Bearer {}", auth::token().unwrap_or_default()) },
    })
    .to_string();
    let on_open = {
        let socket = socket.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_| {
            let _ = socket.send_with_str(&init);
        })
    };

    let start = json!({
        "id": "1",
        "type": "subscribe",
        "payload": { "query": query, "variables": variables },
    })
    .to_string();
    let on_message = {
        let socket = socket.clone();
        let state = state.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(text) = event.data().as_string() else {
                return;
            };
            let Ok(message) = serde_json::from_str::<Value>(&text) else {
                return;
            };
            let payload = message.get("payload").cloned().unwrap_or(Value::Null);
            match message.get("type").and_then(Value::as_str) {
                Some("connection_ack") => {
                    let _ = socket.send_with_str(&start);
                }
                Some("ping") => {
                    let _ = socket.send_with_str(r#"{"type":"pong"}"#);
                }
                Some("next") => {
                    let event = match first_error(payload.get("errors")) {
                        Some(error) => SubEvent::Error(error),
                        None => SubEvent::Next(payload.get("data").cloned().unwrap_or(Value::Null)),
                    };
                    state.borrow_mut().emit(event);
                }
                Some("error") => {
                    let error = first_error(Some(&payload)).unwrap_or_else(|| {
                        ConsoleError::Network("The subscription failed.".into())
                    });
                    state.borrow_mut().emit(SubEvent::Error(error));
                }
                Some("complete") => state.borrow_mut().emit(SubEvent::Complete),
                _ => {}
            }
        })
    };

    let on_close = {
        let state = state.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let reason = event.reason();
            let error = match event.code() {
                4401 => ConsoleError::Unauthenticated(or(reason, "The token was not accepted.")),
                4403 => ConsoleError::Forbidden(or(reason, "Not allowed.")),
                4400 => ConsoleError::BadUserInput {
                    message: or(reason, "The server refused the subscription."),
                    field: None,
                },
                code => ConsoleError::Network(format!("The live connection closed (code {code}).")),
            };
            state.borrow_mut().emit(SubEvent::Error(error));
        })
    };

    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));

    Ok(Subscription {
        socket,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    })
}

fn or(reason: String, default: &str) -> String {
    if reason.is_empty() {
        default.to_owned()
    } else {
        reason
    }
}

/// The first GraphQL error of an `errors` array, if there is one.
fn first_error(errors: Option<&Value>) -> Option<ConsoleError> {
    let first = errors?.as_array()?.first()?.clone();
    serde_json::from_value::<GqlError>(first)
        .ok()
        .map(GqlError::into_console_error)
}
