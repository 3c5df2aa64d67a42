//! Graceful shutdown of the real binary (issue 7 point 6): on SIGTERM the server stops
//! accepting connections at once, lets the requests and streams already in flight finish
//! within the grace period, then exits 0; one still running when the grace period ends is
//! cut off, and the exit is still 0.
//!
//! The slow request is a chat turn whose provider is a fake OpenAI-compatible server in
//! this test, which answers only when the test says so.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");
const ADMIN: &str = "shutdown-test-admin-token";

/// A fake provider that reports each chat request as it arrives and holds its reply (for
/// a stream: everything after the first chunk) until released.
#[derive(Clone)]
struct SlowProvider {
    arrived: mpsc::UnboundedSender<bool>,
    release: watch::Receiver<bool>,
}

struct Fake {
    addr: SocketAddr,
    arrived: mpsc::UnboundedReceiver<bool>,
    release: watch::Sender<bool>,
}

impl Fake {
    async fn start() -> Self {
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let (release, release_rx) = watch::channel(false);
        let state = SlowProvider {
            arrived: arrived_tx,
            release: release_rx,
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            arrived,
            release,
        }
    }

    /// Waits for the next chat request; true when it asked for a stream.
    async fn next_arrival(&mut self) -> bool {
        tokio::time::timeout(Duration::from_secs(30), self.arrived.recv())
            .await
            .expect("the provider is called")
            .expect("the fake runs")
    }
}

async fn chat(State(fake): State<SlowProvider>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streaming = request["stream"] == true;
    let mut release = fake.release.clone();
    if !streaming {
        let _ = fake.arrived.send(false);
        let _ = release.wait_for(|r| *r).await;
        let reply = json!({
            "id": "chatcmpl-slow",
            "object": "chat.completion",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "a slow reply" }, "finish_reason": "stop" }],
        });
        return axum::Json(reply).into_response();
    }
    let chunk = |delta: Value| {
        let event = json!({ "id": "c", "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] });
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {event}\n\n")))
    };
    let arrived = fake.arrived.clone();
    let events = async_stream::stream! {
        yield chunk(json!({ "role": "assistant", "content": "a slow" }));
        let _ = arrived.send(true);
        let _ = release.wait_for(|r| *r).await;
        yield chunk(json!({ "content": " stream" }));
        yield Ok(Bytes::from("data: [DONE]\n\n"));
    };
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(events),
    )
        .into_response()
}

/// The server process; killed if a test fails before it exits.
struct Server {
    child: Child,
    address: String,
    /// stderr lines, read on a thread so the pipe never fills.
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data_dir: &std::path::Path, grace: &str) -> Self {
        let key = keyward::crypto::Keyring::generate_key();
        let mut child = Command::new(BIN)
            .args(["serve", "--log-format", "json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KEYWARD_DATA_DIR", data_dir)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", data_dir.join("k.db").display()),
            )
            .env(
                "CONFIG_ENCRYPTION_KEY",
                secrecy::ExposeSecret::expose_secret(&key),
            )
            .env("KEYWARD_BIND", "127.0.0.1:0")
            .env("KEYWARD_ADMIN_TOKEN", ADMIN)
            .env("KEYWARD_PROVIDER_HOSTS", "127.0.0.1")
            .env("KEYWARD_SHUTDOWN_GRACE", grace)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server logs that it listens");
            let json: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if json["message"] == "keyward is listening" {
                break json["address"].as_str().expect("an address").to_owned();
            }
        };
        Self {
            child,
            address,
            lines,
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The exit status, polled until `within` has passed.
    async fn exit_within(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < within,
                "the server did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until a new TCP connection is refused.
    async fn refuses_connections_within(&self, within: Duration) {
        let started = Instant::now();
        loop {
            match tokio::net::TcpStream::connect(&self.address).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => {}
            }
            assert!(
                started.elapsed() < within,
                "new connections were still accepted {within:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logged(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    async fn gql(&self, client: &reqwest::Client, query: &str, variables: Value) -> Value {
        gql(client, &self.address, query, variables).await
    }
}

async fn gql(client: &reqwest::Client, address: &str, query: &str, variables: Value) -> Value {
    let res = client
        .post(format!("http://{address}/graphql"))
        .bearer_auth(ADMIN)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("the server answers");
    res.json().await.expect("a JSON answer")
}

/// A config whose provider is the fake, and a session on it.
async fn session_on(server: &Server, client: &reqwest::Client, fake: &Fake) -> String {
    let config = server
        .gql(
            client,
            "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id } }",
            json!({ "i": { "name": "slow", "configData": { "providers": [{
                "module": "provider-openai",
                "config": { "api_key": "sk-shutdown-test", "model": "gpt-test", "base_url": format!("http://{}/v1", fake.addr) }
            }] } } }),
        )
        .await;
    let config = config["data"]["createConfig"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{config}"))
        .to_owned();
    let session = server
        .gql(
            client,
            "mutation($i: CreateSessionInput!) { createSession(input: $i) { id } }",
            json!({ "i": { "configId": config } }),
        )
        .await;
    session["data"]["createSession"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{session}"))
        .to_owned()
}

const SEND: &str =
    "mutation($s: ID!, $c: String!) { sendMessage(sessionId: $s, content: $c) { role content } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_connections_lets_the_request_in_flight_finish_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let mut server = Server::start(dir.path(), "30s");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let session = session_on(&server, &client, &fake).await;

    let in_flight = {
        let (client, address) = (client.clone(), server.address.clone());
        tokio::spawn(async move {
            gql(
                &client,
                &address,
                SEND,
                json!({ "s": session, "c": "take your time" }),
            )
            .await
        })
    };
    assert!(
        !fake.next_arrival().await,
        "a plain request reached the provider"
    );

    server.terminate();
    server
        .refuses_connections_within(Duration::from_secs(5))
        .await;
    assert!(
        !in_flight.is_finished(),
        "the request is still waiting on the provider"
    );

    fake.release.send_replace(true);
    let answer = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request completes")
        .expect("the request task");
    assert_eq!(
        answer["data"]["sendMessage"],
        json!({ "role": "assistant", "content": "a slow reply" }),
        "{answer}"
    );
    // Done once nothing is in flight: well before the 30 s grace period.
    let (status, after) = server.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(status.code(), Some(0));
    assert!(
        after < Duration::from_secs(10),
        "exited {after:?} after the reply"
    );
    let logged = server.logged().join("\n");
    assert!(logged.contains("shutting down"), "{logged}");
    assert!(
        !logged.contains("sk-shutdown-test"),
        "no secret in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_in_flight_finish_before_the_process_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let mut server = Server::start(dir.path(), "30s");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let session = session_on(&server, &client, &fake).await;

    let mut request = format!("ws://{}/graphql/ws", server.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a WebSocket");
    let send = |v: Value| Message::Text(v.to_string().into());
    socket
        .send(send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {ADMIN}") } })))
        .await
        .unwrap();
    socket
        .send(send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription($s: ID!, $c: String!) { streamMessage(sessionId: $s, content: $c) { delta done message { content } } }",
            "variables": { "s": session, "c": "stream slowly" },
        } })))
        .await
        .unwrap();
    assert!(fake.next_arrival().await, "a stream reached the provider");

    server.terminate();
    server
        .refuses_connections_within(Duration::from_secs(5))
        .await;
    fake.release.send_replace(true);

    // The stream runs to its end: deltas, then done with the stored message, then complete.
    let mut text = String::new();
    let mut stored = None;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = socket.next().await {
            let Ok(Message::Text(body)) = message else {
                continue;
            };
            let event: Value = serde_json::from_str(&body).unwrap();
            match event["type"].as_str() {
                Some("next") => {
                    let chunk = &event["payload"]["data"]["streamMessage"];
                    assert!(event["payload"]["errors"].is_null(), "{}", event["payload"]);
                    text.push_str(chunk["delta"].as_str().unwrap_or(""));
                    if chunk["done"] == true {
                        stored = Some(chunk["message"]["content"].clone());
                    }
                }
                Some("complete") => return true,
                Some("error") => panic!("the stream failed: {event}"),
                _ => {}
            }
        }
        false
    })
    .await
    .expect("the stream ends within the grace period");
    assert!(outcome, "the stream completed instead of being cut off");
    assert_eq!(text, "a slow stream");
    assert_eq!(stored, Some(json!("a slow stream")));
    drop(socket);
    let (status, _) = server.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_running_when_the_grace_period_ends_is_cut_off_and_the_exit_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let mut server = Server::start(dir.path(), "2s");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let session = session_on(&server, &client, &fake).await;
    let in_flight = {
        let (client, address) = (client.clone(), server.address.clone());
        tokio::spawn(async move {
            client
                .post(format!("http://{address}/graphql"))
                .bearer_auth(ADMIN)
                .json(
                    &json!({ "query": SEND, "variables": { "s": session, "c": "never answered" } }),
                )
                .send()
                .await
        })
    };
    fake.next_arrival().await;
    let terminated = Instant::now();
    server.terminate();
    // The provider never answers: the grace period ends it.
    let (status, _) = server.exit_within(Duration::from_secs(10)).await;
    let took = terminated.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}, before the grace period ended"
    );
    assert!(took < Duration::from_secs(6), "exited only after {took:?}");
    let cut = in_flight.await.unwrap();
    assert!(
        cut.is_err() || !cut.unwrap().status().is_success(),
        "a cut-off request did not succeed"
    );
    let logged = server.logged().join("\n");
    assert!(logged.contains("grace period over"), "{logged}");
}
