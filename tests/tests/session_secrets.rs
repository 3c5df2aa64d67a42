//! Issue 4, point 6's final test: a full session flow (configs holding a known key, sessions
//! on the fake Anthropic and OpenAI servers, sendMessage, streaming, failures, a cancelled
//! stream, a config update), then a search of every response body, every line the server
//! logged and every database table for the key, which must find nothing.
//!
//! Its own test binary, because it installs a process-wide tracing subscriber at TRACE
//! level writing into memory; the tests first check that the buffer really captured the
//! server's lines, so a broken capture cannot pass silently.

mod session_support;

use std::io;
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use session_support::{ANTHROPIC, Client, DEADLINE, ECHO, KEY, OPENAI, document};
use tests::fake_providers::FakeProvider;
use tests::{Db, TestApp};

/// Everything logged by anything in this process.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (and the `log` bridge) before any server starts.
fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

/// The places the key must not be, and a distinctive piece of it (in case of truncation).
fn assert_no_key(what: &str, text: &str) {
    let fragment = &KEY[KEY.len() - 24..];
    assert!(!text.contains(KEY), "the key is in {what}");
    assert!(!text.contains(fragment), "part of the key is in {what}");
}

async fn full_flow_leaves_no_key_in_responses_logs_or_tables(kind: Db) {
    capture_logs();
    let app = TestApp::spawn(kind).await;
    let anthropic = FakeProvider::anthropic().await;
    let openai = FakeProvider::openai().await;
    let admin = Client::admin(&app);
    let alice = Client::new(&app, &app.create_token("alice", "MEMBER", Some("a")).await);
    let alice = Client {
        responses: admin.responses.clone(),
        ..alice
    };

    // Configs holding the key, as an admin and as a member; read back and listed.
    let config = admin
        .create_config("full-flow", document(&anthropic, &openai, KEY))
        .await;
    let member_config = alice
        .create_config("member-flow", document(&anthropic, &openai, KEY))
        .await;
    admin
        .gql(
            "query($id: ID!) { config(id: $id) { configData sensitivePaths } }",
            json!({ "id": config }),
        )
        .await
        .data("config");
    admin
        .gql("{ configs { nodes { id configData } } }", json!({}))
        .await
        .data("configs");

    // Sessions on every provider; a turn each, sent and streamed.
    let mut sessions = Vec::new();
    for (client, config) in [(&admin, &config), (&alice, &member_config)] {
        for index in [ANTHROPIC, OPENAI, ECHO] {
            let sid = id(&client.session_on(config, index).await);
            client.reply(&sid, "marker-question-one").await;
            let mut ws = client.ws().await;
            let sub = ws.stream(&sid, "marker-question-two").await;
            assert!(sub.completed && sub.errors().is_empty(), "{sub:?}");
            ws.close().await;
            sessions.push(sid);
        }
    }
    let (anthropic_session, openai_session) = (sessions[0].clone(), sessions[1].clone());

    // Failures whose upstream bodies echo the key back.
    anthropic.fail_next(1, 401);
    assert_eq!(
        admin.send(&anthropic_session, "rejected").await.code(),
        Some("PROVIDER_ERROR")
    );
    openai.fail_next(3, 500);
    assert_eq!(
        admin.send(&openai_session, "server errors").await.code(),
        Some("PROVIDER_ERROR")
    );
    let mut ws = admin.ws().await;
    openai.fail_next(1, 403);
    assert_eq!(
        ws.stream(&openai_session, "stream rejected")
            .await
            .code()
            .as_deref(),
        Some("PROVIDER_ERROR")
    );
    anthropic.fail_streams_midway(true);
    assert_eq!(
        ws.stream(&anthropic_session, "stream broken")
            .await
            .code()
            .as_deref(),
        Some("PROVIDER_ERROR")
    );
    anthropic.fail_streams_midway(false);

    // A stream abandoned mid-way.
    anthropic.set_chunks((0..100).map(|i| format!("w{i} ")));
    anthropic.set_chunk_delay(Duration::from_millis(50));
    let op = ws.stream_message(&anthropic_session, "abandoned").await;
    ws.next_payload(&op).await.expect("a first chunk");
    ws.close().await;
    assert!(anthropic.wait_for_cancelled_stream(DEADLINE).await);

    // The config rewritten with the same key, then used again.
    admin
        .update_config(&config, document(&anthropic, &openai, KEY))
        .await
        .data("updateConfig");
    openai.set_reply("after the update");
    admin.reply(&openai_session, "after update").await;

    // Everything readable about sessions and the audit trail.
    admin
        .gql("{ sessions(first: 100) { totalCount nodes { id provider model status messages { role content } } } }", json!({}))
        .await
        .data("sessions");
    let audit = admin
        .gql(
            "{ auditEvents(first: 100) { nodes { action configId sessionId detail } } }",
            json!({}),
        )
        .await;
    let actions: Vec<&str> = audit.data("auditEvents")["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "session.create").count(),
        6
    );

    // The key was really used, in its header: the search below is not vacuous.
    assert!(
        anthropic
            .requests()
            .iter()
            .any(|r| r.header("x-api-key") == Some(KEY))
    );
    assert!(
        openai
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(format!("Bearer {KEY}").as_str()))
    );

    // Every response body, header and WebSocket frame.
    let responses = admin.responses.all();
    assert!(
        responses.len() > 40,
        "the responses were recorded: {}",
        responses.len()
    );
    assert!(
        responses.iter().any(|r| r.contains("marker-question-two")),
        "WebSocket frames were recorded"
    );
    for response in &responses {
        assert_no_key("a response", response);
    }

    // Every table, every row.
    let dump = app.dump_database().await;
    assert!(dump.contains("full-flow"), "the dump shows stored values");
    assert!(
        !dump.contains("marker-question-one"),
        "transcripts are stored encrypted"
    );
    let has_row = |table: &str, text: &str| {
        dump.lines()
            .any(|l| l.starts_with(&format!("{table}: ")) && l.contains(text))
    };
    assert!(
        has_row("sessions", "provider-anthropic"),
        "the dump includes sessions"
    );
    assert!(
        has_row("audit_events", "in memory only"),
        "the dump includes the audit trail"
    );
    assert!(
        has_row("messages", "enc:"),
        "the dump includes the transcripts"
    );
    assert!(
        dump.contains("enc:"),
        "the dump includes the encrypted configs"
    );
    assert_no_key("the database", &dump);

    app.stop().await;

    // Every log line, at every level, from every crate in the process.
    let logs = logs();
    assert!(logs.contains("TRACE"), "TRACE lines were captured");
    assert!(
        logs.contains("provider answered with an error status"),
        "the server's own lines were captured"
    );
    assert!(logs.contains("served"), "request lines were captured");
    assert_no_key("the log output", &logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_no_response_log_line_or_table_holds_the_key_after_a_full_session_flow() {
    full_flow_leaves_no_key_in_responses_logs_or_tables(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_no_response_log_line_or_table_holds_the_key_after_a_full_session_flow() {
    full_flow_leaves_no_key_in_responses_logs_or_tables(Db::Postgres).await;
}
