//! Browser tests of the admin console: the real server (with the console built into it)
//! driven through headless Debian Chromium by chromedriver. They wait for elements, never
//! for fixed times, and save a screenshot of each page under `target/screenshots/`.
//!
//! Needs `/usr/bin/chromium`, `/usr/bin/chromedriver` and a console built before the
//! server was compiled (`make console`, which `make test` runs first).

use std::{
    future::Future,
    net::TcpListener,
    panic::AssertUnwindSafe,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use futures::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tests::{Db, TestApp};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Long enough for a cold wasm start on a busy two-core machine; a wait ends as soon as
/// its element is there.
const WAIT: Duration = Duration::from_secs(20);

/// One chromedriver and its headless Chromium, for one test.
struct Browser {
    client: Client,
    driver_url: String,
    base: String,
    test: &'static str,
}

/// Kills chromedriver even when a test panics.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a browser for `test` against `app`, runs `body`, and always ends the browser
/// session (so no Chromium outlives the test), then re-raises a failure.
async fn with_browser<F, Fut>(app: &TestApp, test: &'static str, body: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = ()>,
{
    assert!(
        keyward::console::is_built(),
        "the console is not built into the server: run `make console` (trunk build --release) before the tests"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver at /usr/bin/chromedriver (apt install chromium-driver)"),
    );
    let driver_url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let started = Instant::now();
    while http
        .get(format!("{driver_url}/status"))
        .send()
        .await
        .is_err()
    {
        assert!(started.elapsed() < WAIT, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let profile = tempfile::tempdir().expect("a Chromium profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    // chromedriver is on localhost: plain HTTP, no TLS stack (a second rustls crypto
    // provider in the test binary would leave the server's own rustls unable to pick one)
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a Chromium session");

    let browser = Browser {
        client: client.clone(),
        driver_url,
        base: format!("{}/console", app.address),
        test,
    };
    let outcome = AssertUnwindSafe(body(browser)).catch_unwind().await;
    let _ = client.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

impl Browser {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    /// Waits for the first element matching `css`.
    async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("[{}] no element {css}: {e}", self.test))
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|all| all.len())
            .unwrap_or(0)
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for element in self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find all")
        {
            out.push(element.text().await.unwrap_or_default());
        }
        out
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("script")
    }

    async fn path(&self) -> String {
        self.js("return location.pathname + location.search")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Polls `check` until it holds (the page updates asynchronously).
    async fn until<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let started = Instant::now();
        while !check().await {
            assert!(
                started.elapsed() < WAIT,
                "[{}] timed out waiting: {what}",
                self.test
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sign_in(&self, token: &str) {
        self.goto("/signin").await;
        self.type_into("[data-test=token-input]", token).await;
        // Enter in the field submits the form: the keyboard path
        self.find("[data-test=token-input]")
            .await
            .send_keys("\u{E007}")
            .await
            .expect("press Enter");
        self.find("[data-test=whoami]").await;
    }

    /// `target/screenshots/<test>-<page>.png`.
    async fn shot(&self, page: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{}-{page}.png", self.test)), png)
            .expect("save screenshot");
    }

    /// Errors the page logged, except the 401s a refused token causes by design.
    async fn console_errors(&self) -> Vec<String> {
        let session = self
            .client
            .session_id()
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let logs: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .expect("browser log")
            .json()
            .await
            .unwrap_or(Value::Null);
        logs["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str().map(str::to_owned))
            .filter(|message| !message.contains("status of 401"))
            .collect()
    }

    async fn assert_no_console_errors(&self) {
        let errors = self.console_errors().await;
        assert!(
            errors.is_empty(),
            "[{}] browser console errors: {errors:?}",
            self.test
        );
    }
}

fn demo_document() -> Value {
    json!({
        "providers": [{
            "module": "provider-echo",
            "config": { "api_key": "sk-console-test-secret", "model": "echo-1", "max_tokens": 256 }
        }],
        "region": "eu"
    })
}

#[tokio::test]
async fn signing_in_needs_a_valid_token_and_protected_pages_lead_to_it() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app.admin_token.clone();
    with_browser(&app, "signin", |b| async move {
        b.goto("/configs").await;
        b.find("[data-test=signin-form]").await;
        assert_eq!(b.path().await, "/console/signin?next=%2Fconfigs");
        b.shot("page").await;

        b.type_into("[data-test=token-input]", "not-a-token").await;
        b.click("[data-test=signin-submit]").await;
        let error = b.text("[data-test=signin-error]").await;
        assert!(error.contains("not accepted"), "{error}");
        assert!(error.contains("UNAUTHENTICATED"), "{error}");
        b.shot("bad-token").await;

        b.sign_in(&admin).await;
        assert!(b.text("[data-test=whoami]").await.contains("ADMIN"));
        b.until("back where the user was going", || async {
            b.path().await == "/console/configs"
        })
        .await;
        b.find("[data-test=configs-page]").await;
        b.assert_no_console_errors().await;

        b.click("[data-test=sign-out]").await;
        b.find("[data-test=signin-form]").await;
        assert_eq!(b.js("return sessionStorage.length").await, json!(0));
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_admin_reveals_secrets_for_a_reason_and_the_read_is_audited() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app.admin_token.clone();
    let config = app.create_config(&admin, "demo", demo_document()).await;
    let id = config["id"].as_str().unwrap().to_owned();
    let reason = "checking the key for OPS-42";
    with_browser(&app, "reveal", |b| async move {
        b.sign_in(&admin).await;
        b.find("[data-test=config-row]").await;
        b.shot("configs").await;
        b.click("[data-test=config-link]").await;
        b.find("[data-test=config-json]").await;
        assert_eq!(b.texts("[data-test=secret-value]").await, vec!["•••••"]);
        let page = b.client.source().await.unwrap();
        assert!(
            !page.contains("sk-console-test-secret") && !page.contains("enc:"),
            "the masked view shows a secret"
        );
        b.shot("masked").await;

        b.click("[data-test=reveal]").await;
        b.type_into("[data-test=reveal-reason]", reason).await;
        assert!(b.text("[data-test=reveal-form]").await.contains("audited"));
        b.click("[data-test=reveal-confirm]").await;
        b.find("[data-test=config-json-plain]").await;
        assert_eq!(
            b.texts("[data-test=secret-value]").await,
            vec!["\"sk-console-test-secret\""]
        );
        assert!(
            b.text("[data-test=revealed-notice]")
                .await
                .contains("audit log")
        );
        b.shot("revealed").await;

        // the audit page lists the read; leaving the config dropped the plaintext
        b.click("[data-test=nav-audit]").await;
        b.find(&format!(
            "[data-test=audit-row][data-action='config.decrypt'] a[href='/console/configs/{id}']"
        ))
        .await;
        b.shot("audit").await;
        b.client.back().await.unwrap();
        b.find("[data-test=config-json]").await;
        assert_eq!(b.count("[data-test=config-json-plain]").await, 0);
        assert_eq!(b.texts("[data-test=secret-value]").await, vec!["•••••"]);
        b.assert_no_console_errors().await;
    })
    .await;

    let events = app
        .gql(
            r#"{ auditEvents(action: "config.decrypt") { nodes { configId success detail } } }"#,
            json!({}),
        )
        .await;
    let nodes = events.data("auditEvents")["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["success"], json!(true));
    assert!(nodes[0]["detail"].to_string().contains(reason), "{nodes:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_editor_checks_json_shows_server_errors_inline_and_reports_conflicts() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app.admin_token.clone();
    let config = app.create_config(&admin, "editable", demo_document()).await;
    let id = config["id"].as_str().unwrap().to_owned();
    let api = &app;
    with_browser(api, "editor", |b| async move {
        b.sign_in(&admin).await;
        b.goto(&format!("/configs/{id}/edit")).await;
        b.find("[data-test=config-data-input]").await;

        b.type_into("[data-test=config-data-input]", "[1, 2]").await;
        b.click("[data-test=config-save]").await;
        assert!(b.text("[data-test=config-data-error]").await.contains("JSON object"));
        b.type_into("[data-test=config-data-input]", "{\"a\": ").await;
        b.click("[data-test=config-save]").await;
        assert!(b.text("[data-test=config-data-error]").await.contains("Not valid JSON"));

        let forged = r#"{"providers": [{"module": "provider-echo", "config": {"api_key": "enc:not-a-token"}}]}"#;
        b.type_into("[data-test=config-data-input]", forged).await;
        b.click("[data-test=config-save]").await;
        b.until("the server's error next to the editor", || async {
            b.texts("[data-test=config-data-error]")
                .await
                .iter()
                .any(|t| t.contains("providers[0].config.api_key"))
        })
        .await;
        b.shot("input-error").await;

        // someone else saves first: our save is a CONFLICT, shown as such
        let bumped = api
            .gql(
                "mutation($id: ID!) { updateConfig(id: $id, input: {description: \"changed elsewhere\"}) { version } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(bumped.data("updateConfig")["version"], json!(2));
        let edited = r#"{"providers": [{"module": "provider-echo", "config": {"api_key": "sk-rotated", "model": "echo-2"}}]}"#;
        b.type_into("[data-test=config-data-input]", edited).await;
        b.click("[data-test=config-save]").await;
        assert!(b.text("[data-test=conflict]").await.contains("CONFLICT"));
        b.shot("conflict").await;

        b.click("[data-test=reload-latest]").await;
        b.until("the latest version loaded", || async { b.count("[data-test=conflict]").await == 0 })
            .await;
        b.type_into("[data-test=config-data-input]", edited).await;
        b.click("[data-test=config-save]").await;
        b.until("saved as version 3", || async {
            b.texts("[data-test=config-version]").await == vec!["3"]
        })
        .await;

        b.goto("/configs/new").await;
        b.type_into("[data-test=config-name-input]", "created-in-the-console").await;
        b.type_into("[data-test=config-tags-input]", "ui, test").await;
        b.click("[data-test=config-save]").await;
        b.until("the new config's page", || async {
            b.texts("[data-test=config-name]").await == vec!["created-in-the-console"]
        })
        .await;
        b.shot("created").await;
        b.click("[data-test=delete-config]").await;
        b.click("[data-test=delete-config-confirm]").await;
        b.until("back on the list", || async { b.path().await == "/console/configs" }).await;
        b.assert_no_console_errors().await;
    })
    .await;
    let stored = app.gql("{ configs { totalCount } }", json!({})).await;
    assert_eq!(stored.data("configs")["totalCount"], json!(1));
    app.stop().await;
}

/// The id, stored document and `arrivedSealed` audit detail of the config named `name`,
/// after its last write (`action`).
async fn stored_with_audit(app: &TestApp, name: &str, action: &str) -> (String, Value, Value) {
    let found = app
        .gql(
            "query($s: String!) { configs(search: $s) { nodes { id name configData } } }",
            json!({ "s": name }),
        )
        .await;
    let node = found.data("configs")["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .expect("the config is stored")
        .clone();
    let id = node["id"].as_str().unwrap().to_owned();
    let events = app
        .gql(
            "query($id: ID!, $a: String!) { auditEvents(configId: $id, action: $a) { nodes { detail } } }",
            json!({ "id": id, "a": action }),
        )
        .await;
    let arrived_sealed = events.data("auditEvents")["nodes"][0]["detail"]["arrivedSealed"].clone();
    (id, node["configData"].clone(), arrived_sealed)
}

#[tokio::test]
async fn the_form_seals_secrets_in_the_browser_before_sending_them() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app.admin_token.clone();
    let typed = |key: &str| {
        json!({
            "providers": [{ "module": "provider-echo", "config": { "api_key": key, "model": "echo-1" } }],
            "region": "eu"
        })
    };
    let (created, updated) = (
        typed("sk-typed-in-the-browser"),
        typed("sk-changed-in-the-browser"),
    );
    let api = &app;
    let path = json!(["providers[0].config.api_key"]);
    with_browser(api, "sealing", |b| async move {
        b.sign_in(&admin).await;
        b.goto("/configs/new").await;
        b.type_into("[data-test=config-name-input]", "sealed-in-the-browser")
            .await;
        b.type_into("[data-test=config-data-input]", &created.to_string())
            .await;
        b.click("[data-test=config-save]").await;
        b.until("the new config's page", || async {
            b.texts("[data-test=config-name]").await == vec!["sealed-in-the-browser"]
        })
        .await;
        b.shot("created").await;

        let (id, stored, arrived_sealed) =
            stored_with_audit(api, "sealed-in-the-browser", "config.create").await;
        let api_key = stored["providers"][0]["config"]["api_key"]
            .as_str()
            .unwrap();
        assert!(
            api_key.starts_with("enc:gAAAA"),
            "stored encrypted: {api_key}"
        );
        assert_eq!(stored["providers"][0]["config"]["model"], "echo-1");
        let reveal = "query($id: ID!) { config(id: $id, decrypt: true) { configData } }";
        let plain = api.gql(reveal, json!({ "id": id })).await;
        assert_eq!(plain.data("config")["configData"], created);
        assert_eq!(
            arrived_sealed, path,
            "the secret arrived sealed, not in clear"
        );

        // an edit: the new secret is sealed too
        b.goto(&format!("/configs/{id}/edit")).await;
        b.find("[data-test=config-data-input]").await;
        b.type_into("[data-test=config-data-input]", &updated.to_string())
            .await;
        b.click("[data-test=config-save]").await;
        b.until("saved as version 2", || async {
            b.texts("[data-test=config-version]").await == vec!["2"]
        })
        .await;
        let (_, _, arrived_sealed) =
            stored_with_audit(api, "sealed-in-the-browser", "config.update").await;
        let plain = api.gql(reveal, json!({ "id": id })).await;
        assert_eq!(plain.data("config")["configData"], updated);
        assert_eq!(arrived_sealed, path);
        b.assert_no_console_errors().await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_chat_session_streams_its_reply() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app.admin_token.clone();
    let config = app.create_config(&admin, "chatty", demo_document()).await;
    let id = config["id"].as_str().unwrap().to_owned();
    with_browser(&app, "chat", |b| async move {
        b.sign_in(&admin).await;
        b.goto(&format!("/sessions?configId={id}")).await;
        b.find(&format!(
            "[data-test=new-session-config] option[value='{id}']"
        ))
        .await;
        b.shot("sessions").await;
        b.click("[data-test=new-session-submit]").await;
        b.type_into("[data-test=composer-input]", "hello keyward")
            .await;
        b.click("[data-test=send]").await;
        b.until("the streamed reply stored", || async {
            b.count("[data-test=message]").await == 2 && b.count("[data-test=streaming]").await == 0
        })
        .await;
        let messages = b.texts("[data-test=message] .msg-content").await;
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0], "hello keyward");
        assert!(
            messages[1].contains("hello keyward"),
            "echo replies with the text: {messages:?}"
        );
        b.shot("chat").await;
        b.click("[data-test=close-session]").await;
        b.find("[data-test=session-closed]").await;
        assert_eq!(b.text("[data-test=session-status]").await, "CLOSED");
        b.assert_no_console_errors().await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_member_sees_neither_the_reveal_control_nor_the_admin_pages() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let member = app.create_token("alice", "MEMBER", Some("acme")).await;
    app.create_config(&member, "acme-config", demo_document())
        .await;
    with_browser(&app, "member", |b| async move {
        b.sign_in(&member).await;
        assert!(b.text("[data-test=whoami]").await.contains("MEMBER"));
        b.find("[data-test=config-row]").await;
        assert_eq!(b.count("[data-test=nav-audit]").await, 0);
        assert_eq!(b.count("[data-test=nav-tokens]").await, 0);
        b.click("[data-test=config-link]").await;
        b.find("[data-test=config-json]").await;
        assert_eq!(b.count("[data-test=reveal]").await, 0);
        b.shot("config").await;
        for admin_page in ["/audit", "/tokens"] {
            b.goto(admin_page).await;
            b.until("sent back to the configs", || async {
                b.path().await == "/console/configs"
            })
            .await;
        }
        b.assert_no_console_errors().await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_admin_creates_a_token_sees_it_once_and_revokes_it() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app.admin_token.clone();
    let api = &app;
    with_browser(api, "tokens", |b| async move {
        b.sign_in(&admin).await;
        b.click("[data-test=nav-tokens]").await;
        b.find("[data-test=token-form]").await;
        b.type_into("[data-test=token-name]", "ci-bot").await;
        b.find("[data-test=token-role]")
            .await
            .select_by_value("MEMBER")
            .await
            .unwrap();
        b.type_into("[data-test=token-tenant]", "acme").await;
        b.click("[data-test=token-create]").await;
        let secret = b.text("[data-test=new-token-value]").await;
        b.find("[data-test=copy-token]").await;
        let me = api
            .gql_as(Some(&secret), "{ me { name role } }", json!({}))
            .await;
        assert_eq!(me.data("me")["name"], json!("ci-bot"));
        b.shot("created").await;

        let tokens = api.gql("{ apiTokens { id name } }", json!({})).await;
        let token_id = tokens
            .data("apiTokens")
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "ci-bot")
            .expect("the new token is listed")["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let row = format!("[data-test=token-row][data-id='{token_id}']");
        b.click(&format!("{row} [data-test=revoke-token]")).await;
        b.click(&format!("{row} [data-test=revoke-token-confirm]"))
            .await;
        b.find(&format!("{row} [data-test=token-revoked]")).await;
        b.shot("revoked").await;
        let refused = api
            .gql_as(Some(&secret), "{ me { name } }", json!({}))
            .await;
        assert_eq!(refused.code(), Some("UNAUTHENTICATED"));
        b.assert_no_console_errors().await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_console_fits_a_phone_screen() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app.admin_token.clone();
    app.create_config(&admin, "a-config-with-a-rather-long-name", demo_document())
        .await;
    with_browser(&app, "mobile", |b| async move {
        b.client.set_window_size(375, 812).await.unwrap();
        b.sign_in(&admin).await;
        b.find("[data-test=config-row]").await;
        let fits = "return document.documentElement.scrollWidth <= window.innerWidth";
        assert_eq!(b.js(fits).await, json!(true), "the list scrolls sideways");
        b.shot("configs").await;
        b.click("[data-test=config-link]").await;
        b.find("[data-test=config-json]").await;
        assert_eq!(
            b.js(fits).await,
            json!(true),
            "the config page scrolls sideways"
        );
        b.shot("config").await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn graphiql_is_served_from_the_binary_and_runs_the_readme_query() {
    let app = TestApp::spawn(Db::Sqlite).await;
    assert!(
        keyward::console::has_graphiql(),
        "GraphiQL's scripts are not embedded: run `make console` before the tests"
    );
    let token = app.admin_token.clone();
    let graphiql = format!("{}/graphql", app.address);
    with_browser(&app, "graphiql", |b| async move {
        b.client.goto(&graphiql).await.expect("navigate");
        b.find(".graphiql-container .graphiql-query-editor .CodeMirror").await;
        b.click("[data-name=headers]").await;
        let headers = json!({ "Authorization": format!("Bearer {token}") }).to_string();
        let query = "mutation { createConfig(input: { name: \"from-graphiql\", \
            configData: { providers: [{ module: \"provider-echo\", config: { api_key: \"sk-demo-123\" } }] } }) \
            { id encrypted sensitivePaths configData } }";
        let set = b
            .client
            .execute(
                "const shown = document.querySelectorAll(
                     '.graphiql-editor-tool[aria-label=Headers] .graphiql-editor:not(.hidden) .CodeMirror');
                 shown[0].CodeMirror.setValue(arguments[0]);
                 document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(arguments[1]);
                 return shown.length;",
                vec![json!(headers), json!(query)],
            )
            .await
            .expect("fill the editors");
        assert_eq!(set, json!(1), "one headers editor on show");
        b.click(".graphiql-execute-button").await;
        b.until("the result shows the encrypted key", || async {
            b.text(".result-window").await.contains("enc:gAAAA")
        })
        .await;
        let result = b.text(".result-window").await;
        assert!(result.contains("providers[0].config.api_key") && !result.contains("sk-demo-123"), "{result}");
        b.shot("readme-query").await;
        b.assert_no_console_errors().await;
    })
    .await;
    let stored = app
        .gql(
            "{ configs(search: \"from-graphiql\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(stored.data("configs")["totalCount"], 1);
    app.stop().await;
}
