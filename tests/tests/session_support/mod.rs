//! Shared by `sessions.rs` and `session_secrets.rs`: a config document pointing at the fake
//! providers, typed session operations over HTTP, and a `graphql-transport-ws` client
//! (tokio-tungstenite) for the `streamMessage` subscription.
//!
//! Everything the server answers (HTTP bodies and headers, WebSocket frames) can be kept in
//! a [`Responses`] log, so a test can prove a secret never came back.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::fake_providers::FakeProvider;
use tests::{Gql, TestApp};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The provider key stored in test configs. It must reach the fake provider in its one
/// header and nowhere else.
pub const KEY: &str = "sk-live-KEYWARD-sess-7f3a9c1e5b2d4086-never-leaves";

/// How long any single wait on the server may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub const ANTHROPIC: i32 = 0;
pub const OPENAI: i32 = 1;
pub const ECHO: i32 = 2;

/// `providers[0]` Anthropic at `anthropic`, `[1]` OpenAI at `openai`, `[2]` echo; both
/// remote entries hold `key`.
pub fn document(anthropic: &FakeProvider, openai: &FakeProvider, key: &str) -> Value {
    json!({"providers": [
        {"module": "provider-anthropic", "config": {
            "api_key": key, "base_url": anthropic.base_url(), "model": "claude-test-1", "max_tokens": 256,
        }},
        {"module": "provider-openai", "config": {
            "api_key": key, "base_url": openai.base_url(), "model": "gpt-test-1",
        }},
        {"module": "provider-echo", "config": {"model": "echo-1"}},
    ]})
}

/// Every answer the server gave, as text, for searching.
#[derive(Clone, Default)]
pub struct Responses(Arc<Mutex<Vec<String>>>);

impl Responses {
    pub fn record(&self, text: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text.into());
    }

    fn record_gql(&self, res: &Gql) {
        self.record(format!("{:?}\n{}", res.headers, res.body));
    }

    pub fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Session operations over HTTP as one caller, every answer recorded.
pub struct Client<'a> {
    pub app: &'a TestApp,
    pub token: String,
    pub responses: Responses,
}

pub const SESSION_FIELDS: &str = "id configId tenant provider model status messageCount messages { id role content createdAt } createdAt updatedAt";

impl<'a> Client<'a> {
    pub fn admin(app: &'a TestApp) -> Self {
        Self::new(app, &app.admin_token)
    }

    pub fn new(app: &'a TestApp, token: &str) -> Self {
        Self {
            app,
            token: token.to_owned(),
            responses: Responses::default(),
        }
    }

    /// The same caller against another server (e.g. a second replica).
    pub fn on<'b>(&self, app: &'b TestApp) -> Client<'b> {
        Client {
            app,
            token: self.token.clone(),
            responses: self.responses.clone(),
        }
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        let res = self.app.gql_as(Some(&self.token), query, variables).await;
        self.responses.record_gql(&res);
        res
    }

    /// Creates a config in the caller's tenant; returns its id.
    pub async fn create_config(&self, name: &str, data: Value) -> String {
        let res = self
            .gql(
                "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id configData } }",
                json!({ "i": { "name": name, "configData": data } }),
            )
            .await;
        res.data("createConfig")["id"]
            .as_str()
            .expect("a config id")
            .to_owned()
    }

    pub async fn update_config(&self, id: &str, data: Value) -> Gql {
        self.gql(
            "mutation($id: ID!, $i: UpdateConfigInput!) { updateConfig(id: $id, input: $i) { id version configData } }",
            json!({ "id": id, "i": { "configData": data } }),
        )
        .await
    }

    pub async fn create_session(
        &self,
        config_id: &str,
        provider: Option<i32>,
        model: Option<&str>,
    ) -> Gql {
        self.gql(
            &format!("mutation($i: CreateSessionInput!) {{ createSession(input: $i) {{ {SESSION_FIELDS} }} }}"),
            json!({ "i": { "configId": config_id, "provider": provider, "model": model } }),
        )
        .await
    }

    /// `createSession` that must succeed; returns the Session.
    pub async fn session_on(&self, config_id: &str, provider: i32) -> Value {
        self.create_session(config_id, Some(provider), None)
            .await
            .data("createSession")
            .clone()
    }

    pub async fn send(&self, session_id: &str, content: &str) -> Gql {
        self.gql(
            "mutation($s: ID!, $c: String!) { sendMessage(sessionId: $s, content: $c) { id role content createdAt } }",
            json!({ "s": session_id, "c": content }),
        )
        .await
    }

    /// `sendMessage` that must succeed; returns the reply's content.
    pub async fn reply(&self, session_id: &str, content: &str) -> String {
        let res = self.send(session_id, content).await;
        let message = res.data("sendMessage");
        assert_eq!(message["role"], "assistant", "{message}");
        message["content"].as_str().expect("content").to_owned()
    }

    pub async fn session(&self, id: &str) -> Value {
        let res = self
            .gql(
                &format!("query($id: ID!) {{ session(id: $id) {{ {SESSION_FIELDS} }} }}"),
                json!({ "id": id }),
            )
            .await;
        res.data("session").clone()
    }

    /// `(role, content)` of every message of a visible session, oldest first.
    pub async fn transcript(&self, id: &str) -> Vec<(String, String)> {
        let session = self.session(id).await;
        session["messages"]
            .as_array()
            .expect("a visible session with messages")
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Opens /graphql/ws and completes connection_init with this caller's token.
    pub async fn ws(&self) -> Ws {
        let mut ws = Ws::connect(self.app, self.responses.clone()).await;
        let ack = ws.init(&self.token).await;
        assert_eq!(ack, WsEvent::Message(json!({"type": "connection_ack"})));
        ws
    }
}

/// A `graphql-transport-ws` client.
pub struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    responses: Responses,
    next_id: u32,
}

/// What the server sent next.
#[derive(Debug, PartialEq)]
pub enum WsEvent {
    Message(Value),
    /// A close frame (code, reason), or the connection ended without one (`None`).
    Closed(Option<(u16, String)>),
}

/// One subscription's outcome: every `next` payload in order, then how it ended.
#[derive(Debug)]
pub struct Subscription {
    pub payloads: Vec<Value>,
    /// `complete` arrived (as opposed to an `error` message or the socket closing).
    pub completed: bool,
    /// The payload of an `error` message, if one ended it.
    pub error: Option<Value>,
}

impl Subscription {
    /// The `streamMessage` chunks of the `next` payloads that carried data.
    pub fn chunks(&self) -> Vec<Value> {
        self.payloads
            .iter()
            .filter_map(|p| {
                p["data"]["streamMessage"]
                    .as_object()
                    .map(|o| Value::Object(o.clone()))
            })
            .collect()
    }

    /// Every GraphQL error across the `next` payloads and the `error` message.
    pub fn errors(&self) -> Vec<Value> {
        let mut errors: Vec<Value> = self
            .payloads
            .iter()
            .filter_map(|p| p["errors"].as_array())
            .flatten()
            .cloned()
            .collect();
        if let Some(Value::Array(more)) = &self.error {
            errors.extend(more.iter().cloned());
        }
        errors
    }

    /// The first error's `extensions.code`.
    pub fn code(&self) -> Option<String> {
        self.errors()
            .first()
            .and_then(|e| e["extensions"]["code"].as_str().map(str::to_owned))
    }

    /// The deltas, in order.
    pub fn deltas(&self) -> Vec<String> {
        self.chunks()
            .iter()
            .map(|c| c["delta"].as_str().expect("a delta").to_owned())
            .collect()
    }
}

pub const STREAM_MESSAGE: &str = "subscription($s: ID!, $c: String!) { streamMessage(sessionId: $s, content: $c) { delta done message { id role content } } }";

impl Ws {
    /// Opens the socket, asking for `graphql-transport-ws`, and checks the server chose it.
    pub async fn connect(app: &TestApp, responses: Responses) -> Self {
        let mut request = format!("ws://127.0.0.1:{}/graphql/ws", app.port)
            .into_client_request()
            .expect("a ws URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (socket, response) =
            tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
                .await
                .expect("in time")
                .expect("the upgrade succeeds");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("graphql-transport-ws")
        );
        responses.record(format!("{:?}", response.headers()));
        Self {
            socket,
            responses,
            next_id: 0,
        }
    }

    pub async fn send_json(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("the socket takes a message");
    }

    /// Sends connection_init with `{"Authorization": "Bearer <token>"}`; returns the answer.
    pub async fn init(&mut self, token: &str) -> WsEvent {
        self.send_json(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})).await;
        self.recv().await
    }

    /// The next protocol message or the close; answers `ping` and skips control frames.
    /// Fails the test when nothing arrives within [`DEADLINE`].
    pub async fn recv(&mut self) -> WsEvent {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .expect("the server sends something in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    self.responses.record(text.as_str());
                    let value: Value = serde_json::from_str(&text).expect("JSON from the server");
                    if value["type"] == "ping" {
                        self.send_json(json!({"type": "pong"})).await;
                        continue;
                    }
                    return WsEvent::Message(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    self.responses.record(format!("{frame:?}"));
                    return WsEvent::Closed(frame);
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return WsEvent::Closed(None),
            }
        }
    }

    /// Sends `subscribe` and returns the operation's id.
    pub async fn subscribe(&mut self, query: &str, variables: Value) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.send_json(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}})).await;
        id
    }

    pub async fn stream_message(&mut self, session_id: &str, content: &str) -> String {
        self.subscribe(STREAM_MESSAGE, json!({"s": session_id, "c": content}))
            .await
    }

    /// The next `next` payload of operation `id`; `None` once it completed or failed.
    pub async fn next_payload(&mut self, id: &str) -> Option<Value> {
        match self.recv().await {
            WsEvent::Message(m) if m["id"] == id && m["type"] == "next" => {
                Some(m["payload"].clone())
            }
            WsEvent::Message(m)
                if m["id"] == id && matches!(m["type"].as_str(), Some("complete" | "error")) =>
            {
                None
            }
            other => panic!("unexpected while streaming: {other:?}"),
        }
    }

    /// Reads operation `id` to its end. Messages of other (e.g. stopped) operations that
    /// were already in flight are skipped.
    pub async fn collect(&mut self, id: &str) -> Subscription {
        let mut payloads = Vec::new();
        loop {
            match self.recv().await {
                WsEvent::Message(m) if m["id"].is_string() && m["id"] != id => continue,
                WsEvent::Message(m) if m["id"] == id && m["type"] == "next" => {
                    payloads.push(m["payload"].clone())
                }
                WsEvent::Message(m) if m["id"] == id && m["type"] == "complete" => {
                    return Subscription {
                        payloads,
                        completed: true,
                        error: None,
                    };
                }
                WsEvent::Message(m) if m["id"] == id && m["type"] == "error" => {
                    return Subscription {
                        payloads,
                        completed: false,
                        error: Some(m["payload"].clone()),
                    };
                }
                other => panic!("unexpected while streaming: {other:?}"),
            }
        }
    }

    /// `streamMessage` read to its end.
    pub async fn stream(&mut self, session_id: &str, content: &str) -> Subscription {
        let id = self.stream_message(session_id, content).await;
        self.collect(&id).await
    }

    /// Closes the socket (close handshake, then the TCP connection is dropped).
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
