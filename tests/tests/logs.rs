//! No plaintext secret in any log line (issue 2 point 10; CONTRACT section 2).
//!
//! Its own test binary, because it installs the process-wide tracing subscriber: every
//! event and span of every crate at TRACE level, formatted twice (text with span
//! open/close events, and JSON with the span list), into an in-memory buffer. The config
//! flows then run with known secrets, and the captured output is searched for them.
//!
//! The search is proven able to fail: the buffer must hold the server's own lines (at
//! TRACE level too), and a canary logged on purpose must be found by the same search.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use keyward::crypto::{Keyring, encrypt_value, seal};
use serde_json::{Value, json};
use tests::{Db, TestApp};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Every secret below carries this, so even a truncated leak is found.
const MARK: &str = "Qz7LEAKMARK";

const CREATED: &str = "sk-logcheck-created-Qz7LEAKMARK-1";
const APP_SIDE: &str = "sk-logcheck-appside-Qz7LEAKMARK-2";
const SEALED: &str = "sk-logcheck-sealed-Qz7LEAKMARK-3";
const UPDATED: &str = "sk-logcheck-updated-Qz7LEAKMARK-4";
const BAD_ENC: &str = "sk-logcheck-badenc-Qz7LEAKMARK-5";
const BAD_TOKEN: &str = "kw_logcheck-badtoken-Qz7LEAKMARK-6";
const REFUSED: &str = "sk-logcheck-refused-Qz7LEAKMARK-7";
const INLINE: &str = "sk-logcheck-inline-Qz7LEAKMARK-8";
const SECRETS: &[&str] = &[
    CREATED, APP_SIDE, SEALED, UPDATED, BAD_ENC, BAD_TOKEN, REFUSED, INLINE,
];

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs the global subscriber once for the whole binary and returns its buffer.
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            tracing_subscriber::registry()
                .with(tracing_subscriber::filter::LevelFilter::TRACE)
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(capture.clone())
                        .with_ansi(false)
                        .with_span_events(FmtSpan::FULL),
                )
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(capture.clone())
                        .with_current_span(true)
                        .with_span_list(true),
                )
                .init();
            capture
        })
        .clone()
}

/// The captured lines that hold `needle`.
fn lines_with<'t>(text: &'t str, needle: &str) -> Vec<&'t str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

const CREATE: &str =
    "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id configData } }";

fn doc(api_key: &str) -> Value {
    json!({ "providers": [{ "module": "provider-echo", "config": { "api_key": api_key, "model": "echo" } }] })
}

async fn run_the_flows(app: &TestApp) {
    let keyring = Keyring::parse(&app.key).expect("the test key");

    // Service-side encryption of plaintext.
    let created = app
        .gql(
            CREATE,
            json!({ "i": { "name": "logs", "configData": doc(CREATED) } }),
        )
        .await;
    let id = created.data("createConfig")["id"]
        .as_str()
        .expect("an id")
        .to_owned();

    // App-side: an enc: value made beforehand.
    let app_side = encrypt_value(&keyring, APP_SIDE);
    let res = app
        .gql(
            CREATE,
            json!({ "i": { "name": "app side", "configData": doc(&app_side) } }),
        )
        .await;
    let app_side_id = res.data("createConfig")["id"].as_str().unwrap().to_owned();

    // A sealed box.
    let key = app.gql("{ encryptionKey { publicKey } }", json!({})).await;
    let public: [u8; 32] = base64_decode(key.data("encryptionKey")["publicKey"].as_str().unwrap());
    let sealed = seal(&crypto_box::PublicKey::from(public), SEALED.as_bytes());
    let res = app
        .gql(
            CREATE,
            json!({ "i": { "name": "sealed", "configData": doc(&sealed) } }),
        )
        .await;
    let sealed_id = res.data("createConfig")["id"].as_str().unwrap().to_owned();

    // Plaintext reads.
    for id in [&id, &app_side_id, &sealed_id] {
        let q = "query($id: ID!) { config(id: $id, decrypt: true, reason: \"log test\") { configData } }";
        let res = app.gql(q, json!({ "id": id })).await;
        assert!(
            res.data("config")["configData"].to_string().contains(MARK),
            "the read reveals the secret"
        );
    }

    // An update with a new plaintext secret.
    let q = "mutation($id: ID!, $i: UpdateConfigInput!) { updateConfig(id: $id, input: $i) { version } }";
    let res = app
        .gql(
            q,
            json!({ "id": id, "i": { "configData": doc(UPDATED), "expectedVersion": 1 } }),
        )
        .await;
    assert_eq!(res.data("updateConfig")["version"], 2);
    // A stale version, carrying a secret, refused.
    let res = app
        .gql(
            q,
            json!({ "id": id, "i": { "configData": doc(UPDATED), "expectedVersion": 1 } }),
        )
        .await;
    assert_eq!(res.code(), Some("CONFLICT"));

    // A refused enc: value: plaintext pasted after the prefix.
    let bad = format!("enc:{BAD_ENC}");
    let res = app
        .gql(
            CREATE,
            json!({ "i": { "name": "bad enc", "configData": doc(&bad) } }),
        )
        .await;
    assert_eq!(res.code(), Some("BAD_USER_INPUT"));
    // A write refused for another reason while it carries plaintext.
    let res = app
        .gql(
            CREATE,
            json!({ "i": { "name": "", "configData": doc(REFUSED) } }),
        )
        .await;
    assert_eq!(res.code(), Some("BAD_USER_INPUT"));

    // The secret inline in the query text, then in a query that does not parse.
    let inline = format!(
        "mutation {{ createConfig(input: {{ name: \"inline\", configData: {{ api_key: \"{INLINE}\" }} }}) {{ id }} }}"
    );
    app.gql(&inline, json!({})).await.data("createConfig");
    let broken = format!(
        "mutation {{ createConfig(input: {{ name: \"x\", configData: {{ api_key: \"{INLINE}\" "
    );
    assert_eq!(
        app.gql(&broken, json!({})).await.code(),
        Some("BAD_USER_INPUT")
    );

    // Bad bearer tokens.
    for token in [BAD_TOKEN, &format!("Bearer-ish {BAD_TOKEN}")] {
        let res = app.gql_as(Some(token), "{ me { name } }", json!({})).await;
        assert_eq!(res.status, 401);
    }

    // Lists and default reads.
    app.gql("{ configs { nodes { configData } } }", json!({}))
        .await
        .data("configs");
}

fn base64_decode(s: &str) -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

/// One test for both stores, so the subscriber is installed before either server starts
/// and the buffer holds exactly this run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_log_line_at_trace_level() {
    let capture = capture();
    for kind in [Db::Sqlite, Db::Postgres] {
        let app = TestApp::spawn(kind).await;
        run_the_flows(&app).await;
        app.stop().await;
    }
    // Let in-flight spans close and their lines reach the buffer.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // The canary proves that the search below sees what the subscriber wrote.
    tracing::trace!(target: "keyward", canary = "canary-Qz7-found", "a value logged on purpose");
    let text = capture.text();
    assert_eq!(
        lines_with(&text, "canary-Qz7-found").len(),
        2,
        "text and JSON lines of the canary"
    );
    assert_eq!(
        lines_with(&text, "keyward is listening").len(),
        4,
        "both servers' own lines, twice each"
    );
    assert!(text.contains(" TRACE "), "TRACE-level lines are captured");
    assert!(text.contains("/graphql"), "request spans are captured");
    assert!(
        text.lines().count() > 100,
        "a real volume of lines ({})",
        text.lines().count()
    );

    let leaks: Vec<&str> = SECRETS
        .iter()
        .chain([&MARK])
        .flat_map(|secret| lines_with(&text, secret))
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
    // A leak with the recognisable prefix stripped or cut short is still found.
    assert!(lines_with(&text, "logcheck-").is_empty());
}
