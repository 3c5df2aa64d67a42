//! Issue 4, sessions: createSession / sendMessage / streamMessage against local fake
//! Anthropic and OpenAI servers that speak the real wire formats, over real HTTP and a real
//! WebSocket (graphql-transport-ws). Every suite runs on SQLite and on PostgreSQL.
//!
//! The fakes record every request, so the tests see exactly what a provider would: the key
//! in its one header, the whole transcript, the model, `"stream": true`.

mod session_support;

use std::time::Duration;

use entity::message;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use session_support::{
    ANTHROPIC, Client, DEADLINE, ECHO, KEY, OPENAI, Responses, Ws, WsEvent, document,
};
use tests::fake_providers::{FakeProvider, RecordedRequest};
use tests::{Gql, TestApp, both_databases};
use uuid::Uuid;

const OTHER_KEY: &str = "sk-live-KEYWARD-sess-rotated-00aa11bb22cc33dd";

struct Fakes {
    anthropic: FakeProvider,
    openai: FakeProvider,
}

impl Fakes {
    async fn start() -> Self {
        Self {
            anthropic: FakeProvider::anthropic().await,
            openai: FakeProvider::openai().await,
        }
    }

    fn document(&self, key: &str) -> Value {
        document(&self.anthropic, &self.openai, key)
    }
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

fn last_request(fake: &FakeProvider) -> RecordedRequest {
    fake.requests().pop().expect("the provider was called")
}

/// `(role, content)` pairs of a provider request body's `messages`.
fn sent_messages(request: &RecordedRequest) -> Vec<(String, String)> {
    request.body["messages"]
        .as_array()
        .expect("a messages array")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect()
}

fn assert_code(res: &Gql, code: &str) {
    assert_eq!(res.code(), Some(code), "expected {code}: {}", res.body);
}

/// The key arrived in `header` (as `expected`), and nowhere else in the request.
fn assert_key_only_in(request: &RecordedRequest, header: &str, expected: &str, key: &str) {
    assert_eq!(
        request.header(header),
        Some(expected),
        "{header} of {request:?}"
    );
    assert!(
        !request.everything_except_header(header).contains(key),
        "the key leaked elsewhere in {request:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Creating sessions and sending turns
// ---------------------------------------------------------------------------------------

async fn an_anthropic_session_sends_the_whole_transcript_and_model_with_the_key_only_in_x_api_key(
    app: &TestApp,
) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("anthropic", fakes.document(KEY)).await;

    let session = admin.session_on(&config, ANTHROPIC).await;
    assert_eq!(session["provider"], "provider-anthropic");
    assert_eq!(session["model"], "claude-test-1");
    assert_eq!(session["status"], "ACTIVE");
    assert_eq!(session["configId"], config.as_str());
    assert_eq!(session["tenant"], "default");
    assert_eq!(session["messageCount"], 0);
    assert_eq!(session["messages"], json!([]));
    assert_eq!(
        fakes.anthropic.request_count(),
        0,
        "creating a session calls no provider"
    );
    let sid = id(&session);

    fakes.anthropic.set_reply("First answer.");
    assert_eq!(admin.reply(&sid, "First question?").await, "First answer.");
    fakes.anthropic.set_reply("Second answer.");
    assert_eq!(
        admin.reply(&sid, "Second question?").await,
        "Second answer."
    );

    let requests = fakes.anthropic.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/messages");
        assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(request.body["model"], "claude-test-1");
        assert_eq!(request.body["max_tokens"], 256);
        assert!(!request.is_stream());
        assert_key_only_in(request, "x-api-key", KEY, KEY);
        assert_eq!(request.header("authorization"), None);
    }
    assert_eq!(
        sent_messages(&requests[0]),
        pairs(&[("user", "First question?")])
    );
    assert_eq!(
        sent_messages(&requests[1]),
        pairs(&[
            ("user", "First question?"),
            ("assistant", "First answer."),
            ("user", "Second question?")
        ])
    );

    let session = admin.session(&sid).await;
    assert_eq!(session["messageCount"], 4);
    assert_eq!(
        admin.transcript(&sid).await,
        pairs(&[
            ("user", "First question?"),
            ("assistant", "First answer."),
            ("user", "Second question?"),
            ("assistant", "Second answer."),
        ])
    );
    assert_eq!(fakes.openai.request_count(), 0);
}

async fn an_openai_session_uses_the_model_override_and_sends_the_key_only_as_a_bearer_token(
    app: &TestApp,
) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("openai", fakes.document(KEY)).await;

    let res = admin
        .create_session(&config, Some(OPENAI), Some("gpt-override-2"))
        .await;
    let session = res.data("createSession");
    assert_eq!(session["provider"], "provider-openai");
    assert_eq!(session["model"], "gpt-override-2");
    let sid = id(session);
    // Without an override, the config's model.
    let plain = admin.session_on(&config, OPENAI).await;
    assert_eq!(plain["model"], "gpt-test-1");

    fakes.openai.set_reply("Hi from the fake.");
    let res = admin.send(&sid, "Hello?").await;
    let message = res.data("sendMessage");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"], "Hi from the fake.");
    fakes.openai.set_reply("Still here.");
    assert_eq!(admin.reply(&sid, "Still there?").await, "Still here.");

    let requests = fakes.openai.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(request.body["model"], "gpt-override-2");
        assert_key_only_in(request, "authorization", &format!("Bearer {KEY}"), KEY);
        assert_eq!(request.header("x-api-key"), None);
    }
    assert_eq!(
        sent_messages(&requests[1]),
        pairs(&[
            ("user", "Hello?"),
            ("assistant", "Hi from the fake."),
            ("user", "Still there?")
        ])
    );
    let session = admin.session(&sid).await;
    assert_eq!(session["messageCount"], 4);
    assert_eq!(session["model"], "gpt-override-2");
    assert_eq!(fakes.anthropic.request_count(), 0);
}

async fn an_echo_session_replies_with_the_users_text_and_calls_no_provider(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("echo", fakes.document(KEY)).await;

    let session = admin.session_on(&config, ECHO).await;
    assert_eq!(session["provider"], "provider-echo");
    assert_eq!(session["model"], "echo-1");
    let sid = id(&session);
    assert_eq!(
        admin.reply(&sid, "Is anybody out there?").await,
        "Is anybody out there?"
    );
    assert_eq!(admin.reply(&sid, "second").await, "second");
    assert_eq!(admin.session(&sid).await["messageCount"], 4);
    assert_eq!(
        fakes.anthropic.request_count() + fakes.openai.request_count(),
        0
    );
}

async fn the_provider_index_defaults_to_the_first_entry(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin
        .create_config("default-index", fakes.document(KEY))
        .await;
    let res = admin.create_session(&config, None, None).await;
    assert_eq!(res.data("createSession")["provider"], "provider-anthropic");
}

async fn anthropic_gets_a_default_max_tokens_when_the_config_has_none(app: &TestApp) {
    let fake = FakeProvider::anthropic().await;
    let admin = Client::admin(app);
    let data = json!({"providers": [{"module": "provider-anthropic", "config": {"api_key": KEY, "base_url": fake.base_url()}}]});
    let config = admin.create_config("no-max-tokens", data).await;
    let session = admin.session_on(&config, 0).await;
    assert!(
        session["model"].as_str().is_some_and(|m| !m.is_empty()),
        "a default model: {session}"
    );
    admin.reply(&id(&session), "hi").await;
    let request = last_request(&fake);
    assert!(
        request.body["max_tokens"].as_u64().is_some_and(|n| n > 0),
        "{}",
        request.body
    );
    assert_eq!(request.body["model"], session["model"]);
}

async fn a_model_name_too_long_to_store_is_bad_user_input(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("long-model", fakes.document(KEY)).await;
    let res = admin
        .create_session(&config, Some(ANTHROPIC), Some(&"m".repeat(201)))
        .await;
    assert_code(&res, "BAD_USER_INPUT");
    assert!(res.message().contains("model"), "{}", res.message());
    // 200 characters is fine.
    let res = admin
        .create_session(&config, Some(ANTHROPIC), Some(&"m".repeat(200)))
        .await;
    assert_eq!(
        res.data("createSession")["model"].as_str().map(str::len),
        Some(200)
    );
    // So is a config whose own model is too long: refused, not an internal error.
    let data =
        json!({"providers": [{"module": "provider-echo", "config": {"model": "e".repeat(500)}}]});
    let long = admin.create_config("long-config-model", data).await;
    assert_code(
        &admin.create_session(&long, None, None).await,
        "BAD_USER_INPUT",
    );
}

async fn an_empty_or_oversized_message_is_bad_user_input_and_calls_no_provider(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("content", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);
    assert_code(&admin.send(&sid, "   ").await, "BAD_USER_INPUT");
    assert_code(
        &admin.send(&sid, &"x".repeat(100_001)).await,
        "BAD_USER_INPUT",
    );
    assert_eq!(fakes.anthropic.request_count(), 0);
    assert_eq!(admin.session(&sid).await["messageCount"], 0);
}

async fn unknown_sessions_and_configs_are_null_or_not_found(app: &TestApp) {
    let admin = Client::admin(app);
    let missing = Uuid::now_v7().to_string();
    for bad in [missing.as_str(), "not-a-uuid"] {
        let res = admin
            .gql(
                "query($id: ID!) { session(id: $id) { id } }",
                json!({ "id": bad }),
            )
            .await;
        assert_eq!(res.data("session"), &Value::Null);
        assert_code(&admin.send(bad, "hi").await, "NOT_FOUND");
        assert_code(&admin.create_session(bad, None, None).await, "NOT_FOUND");
        let res = admin
            .gql(
                "mutation($id: ID!) { closeSession(id: $id) { id } }",
                json!({ "id": bad }),
            )
            .await;
        assert_code(&res, "NOT_FOUND");
        let res = admin
            .gql(
                "mutation($id: ID!) { deleteSession(id: $id) }",
                json!({ "id": bad }),
            )
            .await;
        assert_code(&res, "NOT_FOUND");
    }
}

// ---------------------------------------------------------------------------------------
// Streaming over /graphql/ws
// ---------------------------------------------------------------------------------------

/// Streams one turn and checks the chunks against what the fake sent and what was stored.
async fn stream_and_check(
    admin: &Client<'_>,
    ws: &mut Ws,
    sid: &str,
    content: &str,
    expected_chunks: &[&str],
) -> String {
    let sub = ws.stream(sid, content).await;
    assert!(sub.completed, "the subscription completes: {sub:?}");
    assert!(sub.errors().is_empty(), "no errors: {sub:?}");
    let chunks = sub.chunks();
    let (last, deltas) = chunks.split_last().expect("at least the final chunk");
    assert!(
        deltas
            .iter()
            .all(|c| c["done"] == false && c["message"].is_null()),
        "{chunks:?}"
    );
    let deltas: Vec<&str> = deltas
        .iter()
        .map(|c| c["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, expected_chunks, "the chunks arrive in order");
    assert_eq!(last["done"], true);
    assert_eq!(last["delta"], "");
    let reply = expected_chunks.concat();
    assert_eq!(last["message"]["role"], "assistant");
    assert_eq!(last["message"]["content"], reply.as_str());
    let stored = admin.transcript(sid).await;
    assert_eq!(
        stored.last(),
        Some(&("assistant".to_owned(), reply.clone())),
        "the stored reply is the deltas' concatenation"
    );
    let session = admin.session(sid).await;
    let ids: Vec<&Value> = session["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(ids.last(), Some(&&last["message"]["id"]));
    reply
}

async fn streaming_delivers_anthropic_chunks_in_order_that_add_up_to_the_stored_reply(
    app: &TestApp,
) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin
        .create_config("stream-anthropic", fakes.document(KEY))
        .await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);
    let mut ws = admin.ws().await;

    let first = ["Streamed ", "from ", "the ", "Messages ", "API", "!"];
    fakes.anthropic.set_chunks(first);
    let reply = stream_and_check(&admin, &mut ws, &sid, "Stream it", &first).await;
    let request = last_request(&fakes.anthropic);
    assert!(request.is_stream(), "\"stream\": true: {}", request.body);
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_key_only_in(&request, "x-api-key", KEY, KEY);
    assert_eq!(request.body["model"], "claude-test-1");
    assert_eq!(sent_messages(&request), pairs(&[("user", "Stream it")]));

    // A second turn on the same socket carries the first.
    let second = ["And ", "again."];
    fakes.anthropic.set_chunks(second);
    stream_and_check(&admin, &mut ws, &sid, "Once more", &second).await;
    let request = last_request(&fakes.anthropic);
    assert_eq!(
        sent_messages(&request),
        pairs(&[
            ("user", "Stream it"),
            ("assistant", &reply),
            ("user", "Once more")
        ])
    );
    assert_eq!(admin.session(&sid).await["messageCount"], 4);
    assert_eq!(fakes.anthropic.completed_streams(), 2);
    ws.close().await;
}

async fn streaming_delivers_openai_chunks_in_order_that_add_up_to_the_stored_reply(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin
        .create_config("stream-openai", fakes.document(KEY))
        .await;
    let sid = id(&admin.session_on(&config, OPENAI).await);
    let mut ws = admin.ws().await;

    let chunks = ["Chat ", "completions ", "stream ", "in ", "order."];
    fakes.openai.set_chunks(chunks);
    stream_and_check(&admin, &mut ws, &sid, "Go", &chunks).await;
    let request = last_request(&fakes.openai);
    assert!(request.is_stream(), "\"stream\": true: {}", request.body);
    assert_key_only_in(&request, "authorization", &format!("Bearer {KEY}"), KEY);
    assert_eq!(request.body["model"], "gpt-test-1");
    assert_eq!(sent_messages(&request), pairs(&[("user", "Go")]));

    // sendMessage after a streamed turn sees it in the transcript.
    fakes.openai.set_reply("ok");
    admin.reply(&sid, "And now?").await;
    assert_eq!(
        sent_messages(&last_request(&fakes.openai)),
        pairs(&[
            ("user", "Go"),
            ("assistant", &chunks.concat()),
            ("user", "And now?")
        ])
    );
    ws.close().await;
}

async fn streaming_an_echo_session_yields_the_users_words(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin
        .create_config("stream-echo", fakes.document(KEY))
        .await;
    let sid = id(&admin.session_on(&config, ECHO).await);
    let mut ws = admin.ws().await;
    stream_and_check(
        &admin,
        &mut ws,
        &sid,
        "echo these words",
        &["echo ", "these ", "words"],
    )
    .await;
    ws.close().await;
}

async fn a_bad_or_missing_token_in_connection_init_is_refused(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("ws-auth", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ECHO).await);

    // The protocol's close codes: 4403 Forbidden, 4401 Unauthorized, 4400 bad message.
    let mut ws = Ws::connect(app, Responses::default()).await;
    match ws.init("not-a-real-token").await {
        WsEvent::Closed(Some((code, reason))) => {
            assert_eq!(code, 4403);
            assert!(reason.contains("bearer token"), "{reason}");
        }
        other => panic!("a bad token must close the socket, got {other:?}"),
    }

    let mut ws = Ws::connect(app, Responses::default()).await;
    ws.send_json(json!({"type": "connection_init", "payload": {}}))
        .await;
    assert!(
        matches!(ws.recv().await, WsEvent::Closed(Some((4403, _)))),
        "no token: closed"
    );

    // Subscribing without connection_init gets no data either.
    let mut ws = Ws::connect(app, Responses::default()).await;
    ws.stream_message(&sid, "sneaky").await;
    assert!(
        matches!(ws.recv().await, WsEvent::Closed(Some((4401, _)))),
        "no handshake: closed"
    );

    let mut ws = Ws::connect(app, Responses::default()).await;
    ws.send_json(json!({"type": "no-such-message"})).await;
    let bad = ws.recv().await;
    assert!(matches!(bad, WsEvent::Closed(Some((4400, _)))), "{bad:?}");

    assert_eq!(
        admin.session(&sid).await["messageCount"],
        0,
        "nothing was sent"
    );
}

/// A socket that never sends `connection_init` is closed with 4408 at the deadline.
async fn a_socket_without_connection_init_is_closed_at_the_deadline(app: &TestApp) {
    let quick = TestApp::spawn_sharing_with(app, |s| {
        s.limits.ws_init_timeout = Duration::from_millis(300)
    })
    .await;
    let mut ws = Ws::connect(&quick, Responses::default()).await;
    match ws.recv().await {
        WsEvent::Closed(Some((code, reason))) => {
            assert_eq!(code, 4408);
            assert!(reason.contains("initialisation timeout"), "{reason}");
        }
        other => panic!("an idle socket must be closed, got {other:?}"),
    }
    // One that does init in time stays open.
    let mut ws = Ws::connect(&quick, Responses::default()).await;
    assert_eq!(
        ws.init(&quick.admin_token).await,
        WsEvent::Message(json!({"type": "connection_ack"}))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await, WsEvent::Message(json!({"type": "pong"})));
    quick.stop().await;
}

/// A token revoked while its socket is open starts nothing more there: the next
/// `subscribe` closes the socket with 4403, and nothing reaches the provider.
async fn a_token_revoked_on_an_open_socket_starts_no_more_subscriptions(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let created = admin
        .gql(
            "mutation { createApiToken(input: {name: \"ws-member\", role: MEMBER}) { token apiToken { id } } }",
            json!({}),
        )
        .await;
    let created = created.data("createApiToken");
    let member = Client::new(app, created["token"].as_str().unwrap());
    let config = member.create_config("ws-revoke", fakes.document(KEY)).await;
    let sid = id(&member.session_on(&config, ECHO).await);

    let mut ws = member.ws().await;
    let first = ws.stream(&sid, "before the revocation").await;
    assert!(first.completed, "{first:?}");
    admin
        .gql(
            "mutation($id: ID!) { revokeApiToken(id: $id) }",
            json!({ "id": created["apiToken"]["id"] }),
        )
        .await
        .data("revokeApiToken");
    ws.stream_message(&sid, "after the revocation").await;
    match ws.recv().await {
        WsEvent::Closed(Some((code, _))) => assert_eq!(code, 4403),
        other => panic!("a revoked token's subscribe must close the socket, got {other:?}"),
    }
    assert_eq!(
        admin.session(&sid).await["messageCount"],
        2,
        "only the turn before the revocation"
    );
}

/// Transcripts are stored encrypted like config values: a prompt is not in the database,
/// the API shows it in the clear, and key rotation moves (and encrypts older plaintext)
/// messages too, so an old key can go without losing a transcript.
async fn transcripts_are_stored_encrypted_and_rotate_with_the_keys(app: &TestApp) {
    use sea_orm::ConnectionTrait;
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin
        .create_config("private-chat", fakes.document(KEY))
        .await;
    let sid = id(&admin.session_on(&config, ECHO).await);
    let prompt = "my card is 4111-1111-1111-1111, keep it between us";
    assert!(admin.reply(&sid, prompt).await.contains(prompt));
    let dump = app.dump_database().await;
    assert!(
        !dump.contains("4111-1111"),
        "a prompt or reply in the clear"
    );
    assert_eq!(
        admin.transcript(&sid).await[0],
        ("user".to_owned(), prompt.to_owned())
    );

    // A message from before transcripts were encrypted (plaintext in the database).
    let before = "an old plaintext message";
    app.db
        .execute_unprepared(&format!(
            "UPDATE messages SET content = '{before}', encrypted = false WHERE seq = 1"
        ))
        .await
        .unwrap();
    assert_eq!(admin.transcript(&sid).await[1].1, before);

    let new_key = keyward::crypto::Keyring::generate_key();
    let both = secrecy::SecretString::from(format!(
        "{},{}",
        secrecy::ExposeSecret::expose_secret(&new_key),
        app.key()
    ));
    let rotating =
        TestApp::spawn_sharing_with(app, |s| s.store.encryption_key = Some(both.clone())).await;
    let rotated = Client::admin(&rotating)
        .gql(
            "mutation { rotateEncryptionKey { reencrypted failed } }",
            json!({}),
        )
        .await;
    let secrets = admin
        .gql(
            "query($id: ID!) { config(id: $id) { sensitivePaths } }",
            json!({ "id": config }),
        )
        .await;
    let secrets = secrets.data("config")["sensitivePaths"]
        .as_array()
        .unwrap()
        .len();
    // The config's secrets and the two messages.
    assert_eq!(
        rotated.data("rotateEncryptionKey"),
        &json!({ "reencrypted": secrets + 2, "failed": 0 })
    );
    assert!(!rotating.dump_database().await.contains(before));
    rotating.stop().await;

    let only_new =
        secrecy::SecretString::from(secrecy::ExposeSecret::expose_secret(&new_key).to_owned());
    let fresh =
        TestApp::spawn_sharing_with(app, |s| s.store.encryption_key = Some(only_new.clone())).await;
    let transcript = Client::admin(&fresh).transcript(&sid).await;
    assert_eq!(transcript[0].1, prompt);
    assert_eq!(transcript[1].1, before);
    fresh.stop().await;
}

async fn closing_the_socket_mid_stream_cancels_the_upstream_request(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("cancel", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);

    fakes
        .anthropic
        .set_chunks((0..200).map(|i| format!("word{i} ")));
    fakes.anthropic.set_chunk_delay(Duration::from_millis(50));
    let mut ws = admin.ws().await;
    let op = ws.stream_message(&sid, "Tell me a long story").await;
    let first = ws.next_payload(&op).await.expect("a first chunk");
    assert_eq!(first["data"]["streamMessage"]["delta"], "word0 ");
    assert_eq!(first["data"]["streamMessage"]["done"], false);
    ws.close().await;

    assert!(
        fakes.anthropic.wait_for_cancelled_stream(DEADLINE).await,
        "the upstream request was cancelled"
    );
    assert_eq!(fakes.anthropic.completed_streams(), 0);
    // The upstream is gone, so the abandoned reply can no longer be stored.
    assert_eq!(
        admin.transcript(&sid).await,
        pairs(&[("user", "Tell me a long story")])
    );

    // The session is still usable.
    fakes.anthropic.set_chunk_delay(Duration::ZERO);
    fakes.anthropic.set_reply("Short one.");
    assert_eq!(admin.reply(&sid, "A short one then").await, "Short one.");
}

async fn unsubscribing_mid_stream_cancels_the_upstream_request(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin
        .create_config("unsubscribe", fakes.document(KEY))
        .await;
    let sid = id(&admin.session_on(&config, OPENAI).await);

    fakes
        .openai
        .set_chunks((0..200).map(|i| format!("token{i} ")));
    fakes.openai.set_chunk_delay(Duration::from_millis(50));
    let mut ws = admin.ws().await;
    let op = ws.stream_message(&sid, "Go on and on").await;
    ws.next_payload(&op).await.expect("a first chunk");
    // graphql-transport-ws: the client's `complete` stops one operation, the socket stays.
    ws.send_json(json!({"id": op, "type": "complete"})).await;
    assert!(
        fakes.openai.wait_for_cancelled_stream(DEADLINE).await,
        "the upstream request was cancelled"
    );
    assert_eq!(fakes.openai.completed_streams(), 0);

    // The same socket still works.
    fakes.openai.set_chunk_delay(Duration::ZERO);
    fakes.openai.set_chunks(["still ", "open"]);
    let sub = ws.stream(&sid, "Short please").await;
    assert!(sub.completed, "{sub:?}");
    assert_eq!(sub.deltas().concat(), "still open");
    ws.close().await;
}

// ---------------------------------------------------------------------------------------
// Visibility
// ---------------------------------------------------------------------------------------

async fn another_tenants_session_answers_exactly_like_a_missing_one(app: &TestApp) {
    let fakes = Fakes::start().await;
    let alice = Client::new(app, &app.create_token("alice", "MEMBER", Some("a")).await);
    let bob = Client::new(app, &app.create_token("bob", "MEMBER", Some("b")).await);
    let config = alice
        .create_config("alice-config", fakes.document(KEY))
        .await;
    let session = alice.session_on(&config, ANTHROPIC).await;
    assert_eq!(session["tenant"], "a");
    let sid = id(&session);
    alice.reply(&sid, "mine").await;
    let missing = Uuid::now_v7().to_string();

    for target in [sid.as_str(), missing.as_str()] {
        let res = bob
            .gql(
                "query($id: ID!) { session(id: $id) { id } }",
                json!({ "id": target }),
            )
            .await;
        assert_eq!(res.data("session"), &Value::Null, "{target}");
    }
    let mutations = [
        "mutation($id: ID!) { sendMessage(sessionId: $id, content: \"hi\") { id } }",
        "mutation($id: ID!) { closeSession(id: $id) { id } }",
        "mutation($id: ID!) { deleteSession(id: $id) }",
    ];
    for mutation in mutations {
        let theirs = bob.gql(mutation, json!({ "id": sid })).await;
        let nobodys = bob.gql(mutation, json!({ "id": missing })).await;
        assert_code(&theirs, "NOT_FOUND");
        assert_eq!(theirs.message(), nobodys.message(), "{mutation}");
    }
    let theirs = bob.create_session(&config, Some(ECHO), None).await;
    assert_code(&theirs, "NOT_FOUND");
    assert_eq!(
        theirs.message(),
        bob.create_session(&missing, Some(ECHO), None)
            .await
            .message()
    );

    let mut ws = bob.ws().await;
    let sub = ws.stream(&sid, "let me in").await;
    assert_eq!(sub.code().as_deref(), Some("NOT_FOUND"), "{sub:?}");
    assert!(sub.chunks().is_empty());
    ws.close().await;

    // Nothing of alice's changed, and the provider was called only by her.
    let session = alice.session(&sid).await;
    assert_eq!(session["status"], "ACTIVE");
    assert_eq!(alice.transcript(&sid).await.len(), 2);
    assert_eq!(fakes.anthropic.request_count(), 1);
}

/// The sorted ids `sessions` lists for `client` with these filters; checks `totalCount`.
async fn listed(client: &Client<'_>, variables: Value) -> Vec<String> {
    let query = "query($c: ID, $s: SessionStatus) { sessions(configId: $c, status: $s) { totalCount nodes { id tenant } } }";
    let res = client.gql(query, variables).await;
    let sessions = res.data("sessions").clone();
    let mut ids: Vec<String> = sessions["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    ids.sort();
    assert_eq!(sessions["totalCount"], ids.len());
    ids
}

async fn sessions_lists_only_the_callers_tenant(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let alice = Client::new(app, &app.create_token("alice", "MEMBER", Some("a")).await);
    let bob = Client::new(app, &app.create_token("bob", "MEMBER", Some("b")).await);
    let a_config = alice.create_config("a", fakes.document(KEY)).await;
    let b_config = bob.create_config("b", fakes.document(KEY)).await;
    let a1 = id(&alice.session_on(&a_config, ECHO).await);
    let a2 = id(&alice.session_on(&a_config, ANTHROPIC).await);
    let b1 = id(&bob.session_on(&b_config, ECHO).await);

    let sorted = |mut ids: Vec<&str>| {
        ids.sort();
        ids.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(listed(&alice, json!({})).await, sorted(vec![&a1, &a2]));
    assert_eq!(listed(&bob, json!({})).await, sorted(vec![&b1]));
    assert_eq!(listed(&admin, json!({})).await, sorted(vec![&a1, &a2, &b1]));
    // Another tenant's config as a filter finds nothing.
    assert_eq!(
        listed(&bob, json!({ "c": a_config })).await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&admin, json!({ "c": b_config })).await,
        sorted(vec![&b1])
    );

    let res = alice
        .gql(
            "mutation($id: ID!) { closeSession(id: $id) { status } }",
            json!({ "id": a1 }),
        )
        .await;
    assert_eq!(res.data("closeSession")["status"], "CLOSED");
    assert_eq!(
        listed(&alice, json!({ "s": "CLOSED" })).await,
        sorted(vec![&a1])
    );
    assert_eq!(
        listed(&alice, json!({ "s": "ACTIVE" })).await,
        sorted(vec![&a2])
    );
}

async fn a_member_can_create_and_use_sessions_on_its_own_tenants_configs(app: &TestApp) {
    let fakes = Fakes::start().await;
    let alice = Client::new(app, &app.create_token("alice", "MEMBER", Some("a")).await);
    let admin = Client::admin(app);
    let own = alice.create_config("own", fakes.document(KEY)).await;
    // A config the admin put in tenant a is alice's too.
    let res = admin
        .gql(
            "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id } }",
            json!({ "i": { "name": "placed", "tenant": "a", "configData": fakes.document(KEY) } }),
        )
        .await;
    let placed = id(res.data("createConfig"));

    for config in [&own, &placed] {
        let session = alice.session_on(config, OPENAI).await;
        assert_eq!(session["tenant"], "a");
        fakes.openai.set_reply("member reply");
        assert_eq!(alice.reply(&id(&session), "hello").await, "member reply");
    }
    // And may stream.
    let sid = id(&alice.session_on(&own, ANTHROPIC).await);
    let mut ws = alice.ws().await;
    fakes.anthropic.set_chunks(["for ", "members"]);
    stream_and_check(&alice, &mut ws, &sid, "stream", &["for ", "members"]).await;
    ws.close().await;
}

// ---------------------------------------------------------------------------------------
// What a config may reach: environment references and hosts
// ---------------------------------------------------------------------------------------

async fn an_env_reference_outside_keyward_env_allow_is_refused_and_nothing_reaches_the_provider(
    app: &TestApp,
) {
    let fake = FakeProvider::openai().await;
    let admin = Client::admin(app);
    let path_value = std::env::var("PATH").expect("PATH is set");
    let data = json!({"providers": [{"module": "provider-openai", "config": {"api_key": "${PATH}", "base_url": fake.base_url()}}]});
    let config = admin.create_config("env-ref", data).await;

    let res = admin.create_session(&config, Some(0), None).await;
    assert_code(&res, "BAD_USER_INPUT");
    assert!(
        res.message().contains("providers[0].config.api_key"),
        "{}",
        res.message()
    );
    assert!(
        res.message().contains("KEYWARD_ENV_ALLOW"),
        "{}",
        res.message()
    );
    assert!(!res.body.to_string().contains(&path_value));
    // A reference anywhere in the entry counts, even in a field the provider never sends.
    let data = json!({"providers": [{"module": "provider-openai", "config": {
        "api_key": KEY, "base_url": fake.base_url(), "extra": {"headers": ["${HOME}"]},
    }}]});
    let sneaky = admin.create_config("env-ref-nested", data).await;
    let res = admin.create_session(&sneaky, Some(0), None).await;
    assert_code(&res, "BAD_USER_INPUT");
    assert!(
        res.message()
            .contains("providers[0].config.extra.headers[0]"),
        "{}",
        res.message()
    );
    assert_eq!(fake.request_count(), 0, "nothing reached the provider");

    // The same config works on a server that allows the name: the refusal was the allowlist.
    let allowing = TestApp::spawn_sharing_with(app, |s| s.env_allow = vec!["PATH".into()]).await;
    let there = admin.on(&allowing);
    let sid = id(&there.session_on(&config, 0).await);
    there.reply(&sid, "hi").await;
    assert_eq!(
        last_request(&fake).header("authorization"),
        Some(format!("Bearer {path_value}").as_str())
    );
    allowing.stop().await;
}

async fn a_base_url_host_outside_keyward_provider_hosts_is_refused_at_create_session(
    app: &TestApp,
) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("hosts", fakes.document(KEY)).await;

    let strict = TestApp::spawn_sharing_with(app, |s| s.provider_hosts = vec![]).await;
    let wrong_port =
        TestApp::spawn_sharing_with(app, |s| s.provider_hosts = vec!["127.0.0.1:1".into()]).await;
    for server in [&strict, &wrong_port] {
        for index in [ANTHROPIC, OPENAI] {
            let res = admin
                .on(server)
                .create_session(&config, Some(index), None)
                .await;
            assert_code(&res, "BAD_USER_INPUT");
            assert!(
                res.message()
                    .contains(&format!("providers[{index}].config.base_url")),
                "{}",
                res.message()
            );
        }
        // Echo never makes a call, so it has nothing to refuse.
        admin.on(server).session_on(&config, ECHO).await;
    }
    assert_eq!(
        fakes.anthropic.request_count() + fakes.openai.request_count(),
        0
    );
    wrong_port.stop().await;
    strict.stop().await;

    // The same config on a server that allows 127.0.0.1 works.
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);
    admin.reply(&sid, "allowed").await;
    assert_eq!(fakes.anthropic.request_count(), 1);
}

async fn internal_addresses_in_a_config_are_refused_with_bad_user_input(app: &TestApp) {
    let admin = Client::admin(app);
    for url in [
        "http://169.254.169.254/latest",
        "http://10.0.0.7:8080/v1",
        "http://localhost:5432",
        "https://api.openai.com.evil.test/v1",
    ] {
        let data = json!({"providers": [{"module": "provider-openai", "config": {"api_key": KEY, "base_url": url}}]});
        let res = admin
            .gql(
                "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id } }",
                json!({ "i": { "name": "internal", "configData": data } }),
            )
            .await;
        // Refused at the config write (CONTRACT 6 allows that) or, at the latest, here.
        let refusal = if res.code().is_some() {
            res
        } else {
            admin
                .create_session(&id(res.data("createConfig")), Some(0), None)
                .await
        };
        assert_code(&refusal, "BAD_USER_INPUT");
        assert!(
            refusal.message().contains("base_url"),
            "{url}: {}",
            refusal.message()
        );
    }
}

async fn a_provider_index_out_of_range_or_an_unusable_entry_is_bad_user_input(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("index", fakes.document(KEY)).await;
    for index in [3, -1, 1000] {
        let res = admin.create_session(&config, Some(index), None).await;
        assert_code(&res, "BAD_USER_INPUT");
        assert!(
            res.message().contains(&format!("providers[{index}]")),
            "{}",
            res.message()
        );
    }
    let unusable = [
        json!({"name": "no providers"}),
        json!({"providers": [{"module": "provider-nonesuch", "config": {}}]}),
        json!({"providers": [{"module": "provider-openai", "config": {"base_url": fakes.openai.base_url()}}]}),
    ];
    for data in unusable {
        let config = admin.create_config("unusable", data.clone()).await;
        let res = admin.create_session(&config, None, None).await;
        assert_code(&res, "BAD_USER_INPUT");
        assert!(
            res.message().contains("providers[0]"),
            "{data}: {}",
            res.message()
        );
    }
    let res = admin.gql("{ sessions { totalCount } }", json!({})).await;
    assert_eq!(
        res.data("sessions")["totalCount"],
        0,
        "no session was created"
    );
}

// ---------------------------------------------------------------------------------------
// Provider failures
// ---------------------------------------------------------------------------------------

/// A 401/403 is PROVIDER_ERROR without the key (the fake's error body echoes it), is not
/// retried, is recorded in the transcript, and the next turn works.
async fn rejected_credentials(admin: &Client<'_>, fake: &FakeProvider, sid: &str, status: u16) {
    let before = fake.request_count();
    fake.fail_next(1, status);
    let res = admin.send(sid, "hello").await;
    assert_code(&res, "PROVIDER_ERROR");
    assert!(
        res.message().contains("rejected the credentials"),
        "{}",
        res.message()
    );
    assert!(
        !res.body.to_string().contains(KEY),
        "the key leaked: {}",
        res.body
    );
    assert!(
        !res.body.to_string().contains("key"),
        "no upstream body: {}",
        res.body
    );
    assert_eq!(
        fake.request_count(),
        before + 1,
        "credentials are not retried"
    );
    assert_eq!(
        admin.transcript(sid).await,
        pairs(&[("user", "hello"), ("error", res.message())])
    );

    fake.set_reply("Back in business.");
    assert_eq!(admin.reply(sid, "again").await, "Back in business.");
    let sent = sent_messages(&last_request(fake));
    assert!(
        sent.iter()
            .all(|(role, content)| role != "error" && !content.contains("rejected")),
        "{sent:?}"
    );
    assert_eq!(sent.last().map(|(r, _)| r.as_str()), Some("user"));
    assert!(sent.last().unwrap().1.ends_with("again"), "{sent:?}");
    let roles: Vec<String> = admin
        .transcript(sid)
        .await
        .into_iter()
        .map(|(role, _)| role)
        .collect();
    assert_eq!(roles, ["user", "error", "user", "assistant"]);
    assert_eq!(admin.session(sid).await["status"], "ACTIVE");
}

async fn rejected_credentials_are_a_provider_error_without_the_key_and_the_session_stays_usable(
    app: &TestApp,
) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("rejected", fakes.document(KEY)).await;
    let anthropic = id(&admin.session_on(&config, ANTHROPIC).await);
    rejected_credentials(&admin, &fakes.anthropic, &anthropic, 401).await;
    let openai = id(&admin.session_on(&config, OPENAI).await);
    rejected_credentials(&admin, &fakes.openai, &openai, 403).await;
}

async fn server_errors_and_rate_limits_are_retried_then_reported(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("retries", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);

    // Two 500s, then success: the caller never sees them.
    fakes.anthropic.fail_next(2, 500);
    fakes.anthropic.set_reply("third time lucky");
    assert_eq!(admin.reply(&sid, "try").await, "third time lucky");
    assert_eq!(fakes.anthropic.request_count(), 3);

    // Failing every attempt: bounded, then PROVIDER_ERROR, recorded.
    fakes.anthropic.fail_next(3, 503);
    let res = admin.send(&sid, "try again").await;
    assert_code(&res, "PROVIDER_ERROR");
    assert!(res.message().contains("503"), "{}", res.message());
    assert!(!res.body.to_string().contains(KEY));
    assert_eq!(
        fakes.anthropic.request_count(),
        6,
        "three attempts, no more"
    );
    let transcript = admin.transcript(&sid).await;
    assert_eq!(
        transcript.last(),
        Some(&("error".to_owned(), res.message().to_owned()))
    );

    fakes.anthropic.set_reply("recovered");
    assert_eq!(admin.reply(&sid, "and now?").await, "recovered");

    // OpenAI's 429 (with retry-after: 0) is retried too.
    let sid = id(&admin.session_on(&config, OPENAI).await);
    fakes.openai.fail_next(1, 429);
    fakes.openai.set_reply("rate limit passed");
    assert_eq!(admin.reply(&sid, "go").await, "rate limit passed");
    assert_eq!(fakes.openai.request_count(), 2);
}

async fn a_provider_slower_than_keyward_provider_timeout_is_a_provider_error(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("slow", fakes.document(KEY)).await;
    let impatient = TestApp::spawn_sharing_with(app, |s| {
        s.limits.provider_timeout = Duration::from_millis(300)
    })
    .await;
    let there = admin.on(&impatient);
    let sid = id(&there.session_on(&config, OPENAI).await);

    // No answer at all within the timeout.
    fakes.openai.set_delay(Duration::from_secs(3));
    let res = there.send(&sid, "anyone?").await;
    assert_code(&res, "PROVIDER_ERROR");
    assert!(res.message().contains("300 ms"), "{}", res.message());
    assert_eq!(fakes.openai.request_count(), 1, "a timeout is not retried");

    // A stream that goes quiet for longer than the timeout between events.
    fakes.openai.set_delay(Duration::ZERO);
    fakes.openai.set_chunk_delay(Duration::from_secs(3));
    let mut ws = there.ws().await;
    let sub = ws.stream(&sid, "stream slowly").await;
    assert_eq!(sub.code().as_deref(), Some("PROVIDER_ERROR"), "{sub:?}");
    ws.close().await;
    let roles: Vec<String> = there
        .transcript(&sid)
        .await
        .into_iter()
        .map(|(role, _)| role)
        .collect();
    assert_eq!(roles, ["user", "error", "user", "error"]);

    // The default server, patient enough, still answers on the same session.
    fakes.openai.set_chunk_delay(Duration::ZERO);
    fakes.openai.set_reply("eventually");
    assert_eq!(admin.reply(&sid, "now?").await, "eventually");
    impatient.stop().await;
}

async fn a_reply_slower_than_the_request_timeout_but_within_the_provider_timeout_arrives(
    app: &TestApp,
) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("patient", fakes.document(KEY)).await;
    let server = TestApp::spawn_sharing_with(app, |s| {
        s.limits.request_timeout = Duration::from_millis(300);
        s.limits.provider_timeout = Duration::from_secs(5);
    })
    .await;
    let there = admin.on(&server);
    let sid = id(&there.session_on(&config, OPENAI).await);
    fakes.openai.set_delay(Duration::from_millis(1200));
    fakes.openai.set_reply("worth the wait");
    assert_eq!(there.reply(&sid, "take your time").await, "worth the wait");
    // Other requests still get the short request timeout's protection: a plain query passes.
    assert!(there.session(&sid).await.is_object());
    server.stop().await;
}

async fn a_failed_stream_is_reported_recorded_and_the_session_stays_usable(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin
        .create_config("stream-failures", fakes.document(KEY))
        .await;
    let mut ws = admin.ws().await;

    for (fake, index) in [(&fakes.anthropic, ANTHROPIC), (&fakes.openai, OPENAI)] {
        let sid = id(&admin.session_on(&config, index).await);
        // Refused before any chunk.
        fake.fail_next(1, 401);
        let sub = ws.stream(&sid, "first").await;
        assert_eq!(sub.code().as_deref(), Some("PROVIDER_ERROR"), "{sub:?}");
        assert!(sub.chunks().is_empty());
        assert!(!format!("{sub:?}").contains(KEY));

        // Broken off after the first chunk with the provider's error event.
        fake.set_chunks(["partial ", "reply"]);
        fake.fail_streams_midway(true);
        let sub = ws.stream(&sid, "second").await;
        assert_eq!(sub.deltas(), ["partial "], "{sub:?}");
        assert_eq!(sub.code().as_deref(), Some("PROVIDER_ERROR"), "{sub:?}");
        assert!(sub.chunks().iter().all(|c| c["done"] == false));

        let roles: Vec<String> = admin
            .transcript(&sid)
            .await
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(roles, ["user", "error", "user", "error"]);

        fake.fail_streams_midway(false);
        stream_and_check(&admin, &mut ws, &sid, "third", &["partial ", "reply"]).await;
    }
    ws.close().await;
}

// ---------------------------------------------------------------------------------------
// The config behind a session changes
// ---------------------------------------------------------------------------------------

async fn updating_the_configs_key_is_used_by_the_next_turn(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("rotate", fakes.document(KEY)).await;
    let anthropic = id(&admin.session_on(&config, ANTHROPIC).await);
    let openai = id(&admin.session_on(&config, OPENAI).await);
    admin.reply(&anthropic, "one").await;
    admin.reply(&openai, "one").await;
    assert_eq!(
        last_request(&fakes.anthropic).header("x-api-key"),
        Some(KEY)
    );

    let res = admin
        .update_config(&config, fakes.document(OTHER_KEY))
        .await;
    assert_eq!(res.data("updateConfig")["version"], 2);
    assert!(
        !res.body.to_string().contains(OTHER_KEY),
        "updateConfig never echoes plaintext"
    );

    admin.reply(&anthropic, "two").await;
    assert_key_only_in(
        &last_request(&fakes.anthropic),
        "x-api-key",
        OTHER_KEY,
        OTHER_KEY,
    );
    admin.reply(&openai, "two").await;
    assert_key_only_in(
        &last_request(&fakes.openai),
        "authorization",
        &format!("Bearer {OTHER_KEY}"),
        OTHER_KEY,
    );
    let mut ws = admin.ws().await;
    fakes.anthropic.set_chunks(["new ", "key"]);
    stream_and_check(&admin, &mut ws, &anthropic, "three", &["new ", "key"]).await;
    assert_eq!(
        last_request(&fakes.anthropic).header("x-api-key"),
        Some(OTHER_KEY)
    );
    ws.close().await;
    assert!(
        fakes
            .anthropic
            .requests()
            .iter()
            .skip(1)
            .all(|r| !r.everything().contains(KEY)),
        "the old key is not used again"
    );
}

async fn deleting_the_config_makes_its_sessions_unusable(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("doomed", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);
    admin.reply(&sid, "before").await;

    let res = admin
        .gql(
            "mutation($id: ID!) { deleteConfig(id: $id) }",
            json!({ "id": config }),
        )
        .await;
    assert_eq!(res.data("deleteConfig"), true);
    assert_code(&admin.send(&sid, "after").await, "NOT_FOUND");
    let mut ws = admin.ws().await;
    assert_eq!(
        ws.stream(&sid, "after").await.code().as_deref(),
        Some("NOT_FOUND")
    );
    ws.close().await;
    assert_code(
        &admin.create_session(&config, None, None).await,
        "NOT_FOUND",
    );
    assert_eq!(
        admin
            .gql(
                "query($id: ID!) { session(id: $id) { id } }",
                json!({ "id": sid })
            )
            .await
            .data("session"),
        &Value::Null
    );
    assert_eq!(
        fakes.anthropic.request_count(),
        1,
        "nothing was sent after the delete"
    );
}

async fn a_session_created_through_one_server_is_used_through_another(app: &TestApp) {
    let fakes = Fakes::start().await;
    let second = TestApp::spawn_sharing(app).await;
    let here = Client::admin(app);
    let there = here.on(&second);
    let config = here.create_config("replicas", fakes.document(KEY)).await;
    let sid = id(&here.session_on(&config, ANTHROPIC).await);

    fakes.anthropic.set_reply("from replica two");
    assert_eq!(there.reply(&sid, "hello replica").await, "from replica two");
    assert_eq!(
        last_request(&fakes.anthropic).header("x-api-key"),
        Some(KEY)
    );
    let mut ws = there.ws().await;
    fakes.anthropic.set_chunks(["streamed ", "there"]);
    stream_and_check(
        &there,
        &mut ws,
        &sid,
        "stream there",
        &["streamed ", "there"],
    )
    .await;
    ws.close().await;
    assert_eq!(here.transcript(&sid).await, there.transcript(&sid).await);
    assert_eq!(here.session(&sid).await["messageCount"], 4);

    // A key changed through one server is what the other sends next: nothing stale.
    here.update_config(&config, fakes.document(OTHER_KEY))
        .await
        .data("updateConfig");
    there.reply(&sid, "new key?").await;
    assert_eq!(
        last_request(&fakes.anthropic).header("x-api-key"),
        Some(OTHER_KEY)
    );
    // Closed on one, refused on the other.
    here.gql(
        "mutation($id: ID!) { closeSession(id: $id) { id } }",
        json!({ "id": sid }),
    )
    .await
    .data("closeSession");
    assert_code(&there.send(&sid, "still open?").await, "BAD_USER_INPUT");
    second.stop().await;
}

async fn a_session_refuses_to_switch_provider_when_its_config_entry_changes_module(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("reordered", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);
    admin.reply(&sid, "to anthropic").await;

    // providers[0] becomes the OpenAI entry.
    let mut data = fakes.document(KEY);
    data["providers"].as_array_mut().unwrap().swap(0, 1);
    admin
        .update_config(&config, data)
        .await
        .data("updateConfig");

    let res = admin.send(&sid, "where does this go?").await;
    assert_code(&res, "BAD_USER_INPUT");
    assert!(
        res.message().contains("provider-anthropic"),
        "{}",
        res.message()
    );
    let mut ws = admin.ws().await;
    assert_eq!(
        ws.stream(&sid, "and this?").await.code().as_deref(),
        Some("BAD_USER_INPUT")
    );
    ws.close().await;
    assert_eq!(
        fakes.openai.request_count(),
        0,
        "the session's turns never go to another provider"
    );
    assert_eq!(fakes.anthropic.request_count(), 1);
    let session = admin.session(&sid).await;
    assert_eq!(session["provider"], "provider-anthropic");
    assert_eq!(session["messageCount"], 2, "nothing was added");
}

async fn concurrent_turns_on_one_session_conflict_instead_of_interleaving(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("concurrent", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);

    fakes.anthropic.hold();
    fakes.anthropic.set_reply("one reply");
    let first = admin.send(&sid, "first");
    let second = async {
        // Only once the first turn is at the provider.
        assert!(fakes.anthropic.wait_for_requests(1, DEADLINE).await);
        admin.send(&sid, "second").await
    };
    let release = async {
        assert!(
            fakes.anthropic.wait_for_requests(2, DEADLINE).await,
            "both turns reached the provider"
        );
        fakes.anthropic.release();
    };
    let (first, second, ()) = tokio::join!(first, second, release);

    // The later turn saw both user messages; its reply is the one stored. The earlier
    // turn's reply would answer a transcript that no longer exists: refused.
    assert_code(&first, "CONFLICT");
    assert_eq!(second.data("sendMessage")["content"], "one reply");
    let requests = fakes.anthropic.requests();
    assert_eq!(
        sent_messages(&requests[1]),
        pairs(&[("user", "first\n\nsecond")])
    );
    assert_eq!(
        admin.transcript(&sid).await,
        pairs(&[
            ("user", "first"),
            ("user", "second"),
            ("assistant", "one reply")
        ])
    );
    // And the session goes on.
    fakes.anthropic.set_reply("next");
    admin.reply(&sid, "third").await;
    assert_eq!(
        sent_messages(&last_request(&fakes.anthropic)),
        pairs(&[
            ("user", "first\n\nsecond"),
            ("assistant", "one reply"),
            ("user", "third")
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Audit, close, delete
// ---------------------------------------------------------------------------------------

async fn creating_a_session_is_audited_as_an_in_memory_decryption(app: &TestApp) {
    let fakes = Fakes::start().await;
    let alice = Client::new(app, &app.create_token("alice", "MEMBER", Some("a")).await);
    let admin = Client::admin(app);
    let config = alice.create_config("audited", fakes.document(KEY)).await;
    let res = alice
        .create_session(&config, Some(OPENAI), Some("gpt-audited"))
        .await;
    let sid = id(res.data("createSession"));
    let request_id = res
        .headers
        .get("x-request-id")
        .expect("a request id")
        .to_str()
        .unwrap()
        .to_owned();

    let res = admin
        .gql(
            "{ auditEvents(action: \"session.create\") { totalCount nodes { action actor tenant configId sessionId success requestId detail } } }",
            json!({}),
        )
        .await;
    let events = res.data("auditEvents");
    assert_eq!(events["totalCount"], 1, "{events}");
    let event = &events["nodes"][0];
    assert_eq!(event["action"], "session.create");
    assert_eq!(event["actor"], "alice");
    assert_eq!(event["tenant"], "a");
    assert_eq!(event["configId"], config.as_str());
    assert_eq!(event["sessionId"], sid.as_str());
    assert_eq!(event["success"], true);
    assert_eq!(event["requestId"], request_id.as_str());
    assert_eq!(event["detail"]["provider"], "provider-openai");
    assert_eq!(event["detail"]["model"], "gpt-audited");
    let noted = event["detail"]["configDecrypted"]
        .as_str()
        .unwrap_or_default();
    assert!(
        noted.contains("in memory"),
        "the detail notes the internal decryption: {}",
        event["detail"]
    );
    assert!(!event.to_string().contains(KEY));
}

async fn a_refused_session_is_audited_as_a_failed_attempt(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("refused", fakes.document(KEY)).await;
    let strict = TestApp::spawn_sharing_with(app, |s| s.provider_hosts = vec![]).await;
    let res = admin
        .on(&strict)
        .create_session(&config, Some(OPENAI), None)
        .await;
    assert_code(&res, "BAD_USER_INPUT");
    strict.stop().await;

    let res = admin
        .gql(
            "{ auditEvents(action: \"session.create\") { totalCount nodes { configId sessionId success detail } } }",
            json!({}),
        )
        .await;
    let events = res.data("auditEvents");
    assert_eq!(events["totalCount"], 1, "{events}");
    let event = &events["nodes"][0];
    assert_eq!(event["success"], false);
    assert_eq!(event["configId"], config.as_str());
    assert_eq!(event["sessionId"], Value::Null);
    assert_eq!(event["detail"]["refused"], "BAD_USER_INPUT");
    assert!(!event.to_string().contains(KEY));
}

async fn a_closed_session_refuses_new_messages(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("closing", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);
    admin.reply(&sid, "before closing").await;

    let close = "mutation($id: ID!) { closeSession(id: $id) { id status messageCount } }";
    let res = admin.gql(close, json!({ "id": sid })).await;
    assert_eq!(res.data("closeSession")["status"], "CLOSED");
    assert_eq!(res.data("closeSession")["messageCount"], 2);
    assert_eq!(admin.session(&sid).await["status"], "CLOSED");
    // Closing twice is harmless.
    assert_eq!(
        admin
            .gql(close, json!({ "id": sid }))
            .await
            .data("closeSession")["status"],
        "CLOSED"
    );

    let res = admin.send(&sid, "after closing").await;
    assert_code(&res, "BAD_USER_INPUT");
    assert!(res.message().contains("closed"), "{}", res.message());
    let mut ws = admin.ws().await;
    let sub = ws.stream(&sid, "after closing").await;
    assert_eq!(sub.code().as_deref(), Some("BAD_USER_INPUT"), "{sub:?}");
    assert!(sub.chunks().is_empty());
    ws.close().await;
    assert_eq!(fakes.anthropic.request_count(), 1);
    assert_eq!(admin.transcript(&sid).await.len(), 2, "nothing was added");
}

async fn deleting_a_session_removes_it_and_its_messages(app: &TestApp) {
    let fakes = Fakes::start().await;
    let admin = Client::admin(app);
    let config = admin.create_config("deleting", fakes.document(KEY)).await;
    let sid = id(&admin.session_on(&config, ANTHROPIC).await);
    let kept = id(&admin.session_on(&config, ECHO).await);
    admin.reply(&sid, "to be deleted").await;
    admin.reply(&kept, "to be kept").await;
    let session_uuid: Uuid = sid.parse().unwrap();
    let stored = |id: Uuid| {
        message::Entity::find()
            .filter(message::Column::SessionId.eq(id))
            .count(&app.db)
    };
    assert_eq!(stored(session_uuid).await.unwrap(), 2);

    let delete = "mutation($id: ID!) { deleteSession(id: $id) }";
    assert_eq!(
        admin
            .gql(delete, json!({ "id": sid }))
            .await
            .data("deleteSession"),
        &Value::Bool(true)
    );
    let res = admin
        .gql(
            "query($id: ID!) { session(id: $id) { id } }",
            json!({ "id": sid }),
        )
        .await;
    assert_eq!(res.data("session"), &Value::Null);
    assert_eq!(
        stored(session_uuid).await.unwrap(),
        0,
        "its messages are gone"
    );
    assert_code(&admin.gql(delete, json!({ "id": sid })).await, "NOT_FOUND");
    assert_code(&admin.send(&sid, "hello?").await, "NOT_FOUND");

    let res = admin
        .gql("{ sessions { totalCount nodes { id } } }", json!({}))
        .await;
    assert_eq!(res.data("sessions")["nodes"], json!([{ "id": kept }]));
    assert_eq!(
        admin.transcript(&kept).await.len(),
        2,
        "other sessions are untouched"
    );
    let res = admin
        .gql(
            "query($id: ID!) { config(id: $id) { id } }",
            json!({ "id": config }),
        )
        .await;
    assert_eq!(
        res.data("config")["id"],
        config.as_str(),
        "the config stays"
    );
}

both_databases!(
    a_reply_slower_than_the_request_timeout_but_within_the_provider_timeout_arrives,
    a_refused_session_is_audited_as_a_failed_attempt,
    an_anthropic_session_sends_the_whole_transcript_and_model_with_the_key_only_in_x_api_key,
    an_openai_session_uses_the_model_override_and_sends_the_key_only_as_a_bearer_token,
    an_echo_session_replies_with_the_users_text_and_calls_no_provider,
    the_provider_index_defaults_to_the_first_entry,
    anthropic_gets_a_default_max_tokens_when_the_config_has_none,
    a_model_name_too_long_to_store_is_bad_user_input,
    an_empty_or_oversized_message_is_bad_user_input_and_calls_no_provider,
    unknown_sessions_and_configs_are_null_or_not_found,
    streaming_delivers_anthropic_chunks_in_order_that_add_up_to_the_stored_reply,
    streaming_delivers_openai_chunks_in_order_that_add_up_to_the_stored_reply,
    streaming_an_echo_session_yields_the_users_words,
    a_bad_or_missing_token_in_connection_init_is_refused,
    a_socket_without_connection_init_is_closed_at_the_deadline,
    transcripts_are_stored_encrypted_and_rotate_with_the_keys,
    a_token_revoked_on_an_open_socket_starts_no_more_subscriptions,
    closing_the_socket_mid_stream_cancels_the_upstream_request,
    unsubscribing_mid_stream_cancels_the_upstream_request,
    another_tenants_session_answers_exactly_like_a_missing_one,
    sessions_lists_only_the_callers_tenant,
    a_member_can_create_and_use_sessions_on_its_own_tenants_configs,
    an_env_reference_outside_keyward_env_allow_is_refused_and_nothing_reaches_the_provider,
    a_base_url_host_outside_keyward_provider_hosts_is_refused_at_create_session,
    internal_addresses_in_a_config_are_refused_with_bad_user_input,
    a_provider_index_out_of_range_or_an_unusable_entry_is_bad_user_input,
    rejected_credentials_are_a_provider_error_without_the_key_and_the_session_stays_usable,
    server_errors_and_rate_limits_are_retried_then_reported,
    a_provider_slower_than_keyward_provider_timeout_is_a_provider_error,
    a_failed_stream_is_reported_recorded_and_the_session_stays_usable,
    updating_the_configs_key_is_used_by_the_next_turn,
    deleting_the_config_makes_its_sessions_unusable,
    a_session_created_through_one_server_is_used_through_another,
    a_session_refuses_to_switch_provider_when_its_config_entry_changes_module,
    concurrent_turns_on_one_session_conflict_instead_of_interleaving,
    creating_a_session_is_audited_as_an_in_memory_decryption,
    a_closed_session_refuses_new_messages,
    deleting_a_session_removes_it_and_its_messages,
);
