//! Database faults (issue 7 point 2), on PostgreSQL reached through a TCP proxy the test
//! controls ([`TcpProxy`]): while the database is gone (connections cut, new ones refused)
//! or silent (a stalled network), requests fail fast with UNAVAILABLE and /readyz answers
//! 503; when it returns, the service recovers by itself. Every write acknowledged during
//! the run is in the database afterwards, read directly rather than through the API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use tests::tcp_proxy::TcpProxy;
use tests::{Db, TestApp};

/// How long a request may wait for a database connection in these tests.
const DB_TIMEOUT: Duration = Duration::from_secs(1);
/// What "fast" allows beyond that: one more connection attempt, a loaded machine.
const MARGIN: Duration = Duration::from_secs(3);

/// `host:port` of a `postgres://user@host:port/db` URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// A PostgreSQL-backed server whose every database connection goes through a proxy.
async fn app_behind_proxy() -> (TestApp, TcpProxy) {
    let admin_url = tests::postgres_admin_url();
    let upstream: SocketAddr = tokio::net::lookup_host(authority(&admin_url))
        .await
        .expect("the PostgreSQL host resolves")
        .next()
        .expect("an address");
    let proxy = TcpProxy::start(upstream).await;
    let through = proxy.addr().to_string();
    let app = TestApp::spawn_routed(
        Db::Postgres,
        |url| url.replacen(authority(url), &through, 1),
        |s| {
            s.store.db_timeout = DB_TIMEOUT;
            s.limits.request_timeout = Duration::from_secs(10);
        },
    )
    .await;
    assert!(
        app.settings
            .store
            .database_url
            .as_deref()
            .unwrap()
            .contains(&through),
        "the server is configured to go through the proxy"
    );
    (app, proxy)
}

/// What the writers were told, and every other answer by code.
#[derive(Default)]
struct Ledger {
    /// (id, name) of every acknowledged create.
    created: Vec<(String, String)>,
    /// (id, version) of every acknowledged update.
    updated: Vec<(String, i64)>,
    /// Failed writes by `extensions.code` (or HTTP status when there was none).
    failures: BTreeMap<String, usize>,
    /// The slowest failed write.
    slowest_failure: Duration,
}

const CREATE: &str =
    "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id name version } }";
const UPDATE: &str = "mutation($id: ID!, $i: UpdateConfigInput!) { updateConfig(id: $id, input: $i) { id version } }";

/// Writes until `stop`: creates, and updates of the config it created last, each
/// recorded only once the server acknowledged it.
fn spawn_writer(
    app: Arc<TestApp>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    writer: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0usize;
        let mut last: Option<(String, i64)> = None;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let started = Instant::now();
            let (res, is_update) = match (&last, n % 3) {
                (Some((id, version)), 0) => (
                    app.gql(
                        UPDATE,
                        json!({ "id": id, "i": { "description": format!("v{}", version + 1), "expectedVersion": version } }),
                    )
                    .await,
                    true,
                ),
                _ => {
                    let name = format!("w{writer}-{n}");
                    (
                        app.gql(
                            CREATE,
                            json!({ "i": { "name": name, "configData": { "api_key": format!("sk-{name}") } } }),
                        )
                        .await,
                        false,
                    )
                }
            };
            let took = started.elapsed();
            let mut ledger = ledger.lock().unwrap();
            let failed = res.body.get("errors").is_some_and(|e| !e.is_null());
            if failed {
                let code = res
                    .code()
                    .map_or_else(|| res.status.to_string(), str::to_owned);
                *ledger.failures.entry(code).or_default() += 1;
                ledger.slowest_failure = ledger.slowest_failure.max(took);
                // An update that failed may still have committed: the next one re-reads.
                if is_update {
                    last = None;
                }
                continue;
            }
            if is_update {
                let v = &res.body["data"]["updateConfig"];
                let entry = (
                    v["id"].as_str().unwrap().to_owned(),
                    v["version"].as_i64().unwrap(),
                );
                last = Some(entry.clone());
                ledger.updated.push(entry);
            } else {
                let v = &res.body["data"]["createConfig"];
                let id = v["id"].as_str().unwrap().to_owned();
                ledger
                    .created
                    .push((id.clone(), v["name"].as_str().unwrap().to_owned()));
                last = Some((id, v["version"].as_i64().unwrap()));
            }
        }
    })
}

/// Polls `check` every 50 ms until it holds or `within` has passed.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(app: &TestApp) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let res = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("the server answers");
    let status = res.status();
    (
        status,
        res.json().await.unwrap_or(Value::Null),
        started.elapsed(),
    )
}

/// Asserts that `probe` fails with UNAVAILABLE (HTTP 503 or a GraphQL error) quickly.
async fn assert_unavailable_fast(app: &TestApp, token: &str, query: &str, variables: Value) {
    let started = Instant::now();
    let res = app.gql_as(Some(token), query, variables).await;
    let took = started.elapsed();
    assert_eq!(res.code(), Some("UNAVAILABLE"), "{query}: {}", res.body);
    assert!(
        res.status == StatusCode::OK || res.status == StatusCode::SERVICE_UNAVAILABLE,
        "{query}: {}",
        res.status
    );
    assert!(
        took < DB_TIMEOUT + MARGIN,
        "{query}: UNAVAILABLE only after {took:?} (db_timeout {DB_TIMEOUT:?})"
    );
    assert!(
        !res.message().contains("sk-") && !res.message().to_lowercase().contains("sqlx"),
        "no detail reaches the client: {}",
        res.message()
    );
}

/// Every acknowledged create is there with its name, and every acknowledged update's
/// version has been reached, read on a direct connection.
async fn assert_every_acknowledged_write_is_stored(app: &TestApp, ledger: &Ledger) {
    let db = Database::connect(app.database_url.clone())
        .await
        .expect("a direct connection");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id::text AS id, name, version FROM configs",
        ))
        .await
        .expect("read configs");
    let stored: BTreeMap<String, (String, i64)> = rows
        .iter()
        .map(|r| {
            let id: String = r.try_get("", "id").unwrap();
            let name: String = r.try_get("", "name").unwrap();
            let version: i32 = r.try_get("", "version").unwrap();
            (id, (name, i64::from(version)))
        })
        .collect();
    for (id, name) in &ledger.created {
        let (stored_name, _) = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged create {id} ({name}) is missing"));
        assert_eq!(stored_name, name);
    }
    for (id, version) in &ledger.updated {
        let (_, stored_version) = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged update of {id} is missing"));
        assert!(
            stored_version >= version,
            "{id}: version {version} was acknowledged, {stored_version} is stored"
        );
    }
    db.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_gone_requests_fail_fast_and_the_service_recovers_by_itself() {
    let (app, proxy) = app_behind_proxy().await;
    let member = app.create_token("member", "MEMBER", Some("acme")).await;
    let app = Arc::new(app);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| spawn_writer(app.clone(), ledger.clone(), stop.clone(), w))
        .collect();
    let created = || ledger.lock().unwrap().created.len();
    eventually(
        Duration::from_secs(20),
        "writes before the outage",
        || async { created() >= 6 },
    )
    .await;
    assert_eq!(readyz(&app).await.0, StatusCode::OK);

    // The database goes away: live connections are cut and new ones refused.
    proxy.cut().await;
    let before_outage = created();
    assert_unavailable_fast(
        &app,
        &app.admin_token,
        CREATE,
        json!({ "i": { "name": "during", "configData": {} } }),
    )
    .await;
    assert_unavailable_fast(
        &app,
        &app.admin_token,
        "{ configs { totalCount } }",
        json!({}),
    )
    .await;
    // A token that must be looked up: the lookup fails as UNAVAILABLE, not as a 401.
    let started = Instant::now();
    let res = app
        .gql_as(Some(&member), "{ me { name } }", json!({}))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(res.code(), Some("UNAVAILABLE"));
    assert!(started.elapsed() < DB_TIMEOUT + MARGIN);
    let (status, body, took) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["database"], "unavailable");
    assert!(took < DB_TIMEOUT + MARGIN, "/readyz took {took:?}");
    let healthz = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        healthz.status(),
        StatusCode::OK,
        "the process itself is fine"
    );
    eventually(
        Duration::from_secs(20),
        "the writers see the outage",
        || async { ledger.lock().unwrap().failures.values().sum::<usize>() >= 4 },
    )
    .await;

    // It comes back: nobody restarts anything.
    proxy.restore().await;
    eventually(
        Duration::from_secs(30),
        "/readyz turns 200 again",
        || async { readyz(&app).await.0 == StatusCode::OK },
    )
    .await;
    eventually(Duration::from_secs(30), "writes succeed again", || async {
        created() >= before_outage + 6
    })
    .await;
    let me = app
        .gql_as(Some(&member), "{ me { name } }", json!({}))
        .await;
    assert_eq!(me.data("me")["name"], "member");

    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("a writer never panics");
    }
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    println!(
        "acknowledged: {} creates, {} updates; failures {:?}, slowest {:?}",
        ledger.created.len(),
        ledger.updated.len(),
        ledger.failures,
        ledger.slowest_failure
    );
    // Failed writes failed as UNAVAILABLE, and fast; never as INTERNAL.
    assert!(
        ledger.failures.keys().all(|code| code == "UNAVAILABLE"),
        "failures by code: {:?}",
        ledger.failures
    );
    assert!(
        ledger.slowest_failure < DB_TIMEOUT + MARGIN,
        "a failed write took {:?}",
        ledger.slowest_failure
    );
    assert_every_acknowledged_write_is_stored(&app, &ledger).await;
    drop(proxy);
    Arc::into_inner(app).expect("one owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_silent_requests_fail_within_the_timeouts_and_the_service_recovers() {
    let (app, proxy) = app_behind_proxy().await;
    let app = Arc::new(app);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(app.clone(), ledger.clone(), stop.clone(), 0);
    let created = || ledger.lock().unwrap().created.len();
    eventually(
        Duration::from_secs(20),
        "writes before the stall",
        || async { created() >= 4 },
    )
    .await;

    // Packets stop: open connections carry nothing, new ones connect but never answer.
    proxy.stall().await;
    let before_stall = created();
    assert_unavailable_fast(
        &app,
        &app.admin_token,
        CREATE,
        json!({ "i": { "name": "during", "configData": {} } }),
    )
    .await;
    let (status, _, took) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < DB_TIMEOUT + MARGIN, "/readyz took {took:?}");
    eventually(
        Duration::from_secs(30),
        "the writer sees the stall",
        || async { ledger.lock().unwrap().failures.values().sum::<usize>() >= 2 },
    )
    .await;

    proxy.restore().await;
    eventually(
        Duration::from_secs(30),
        "/readyz turns 200 again",
        || async { readyz(&app).await.0 == StatusCode::OK },
    )
    .await;
    eventually(Duration::from_secs(30), "writes succeed again", || async {
        created() >= before_stall + 4
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer never panics");
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    println!(
        "acknowledged: {} creates, {} updates; failures {:?}, slowest {:?}",
        ledger.created.len(),
        ledger.updated.len(),
        ledger.failures,
        ledger.slowest_failure
    );
    assert!(
        ledger.failures.keys().all(|code| code == "UNAVAILABLE"),
        "failures by code: {:?}",
        ledger.failures
    );
    // A write caught mid-statement waits for the request timeout at most.
    assert!(
        ledger.slowest_failure < app.settings.limits.request_timeout + MARGIN,
        "a failed write took {:?}",
        ledger.slowest_failure
    );
    assert_every_acknowledged_write_is_stored(&app, &ledger).await;
    drop(proxy);
    Arc::into_inner(app).expect("one owner").stop().await;
}

/// A server that vanishes mid-transaction must not hold its row locks until TCP notices:
/// PostgreSQL ends such sessions itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_database_sessions_may_not_sit_idle_inside_a_transaction() {
    let app = TestApp::spawn(Db::Postgres).await;
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT current_setting('idle_in_transaction_session_timeout') AS t",
        ))
        .await
        .expect("a setting")
        .expect("a row");
    let timeout: String = row.try_get("", "t").unwrap();
    assert_eq!(timeout, "1min");
    app.stop().await;
}
