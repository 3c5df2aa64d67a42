//! The verified-token cache (api/src/auth/cache.rs, `KEYWARD_TOKEN_CACHE`, on by default)
//! on PostgreSQL: it does answer; once `revokeApiToken` has answered, the token is refused
//! on its next request by the process that revoked it and by every other one sharing the
//! database; a change made by plain SQL reaches every process as soon as the NOTIFY
//! arrives (milliseconds; the test allows two seconds).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::json;
use tests::{Db, TestApp};

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.gql_as(Some(token), "{ me { name } }", json!({}))
        .await
        .status
}

/// Other processes hear of a revocation through a NOTIFY: refused within moments.
async fn refused_soon(app: &TestApp, token: &str) -> StatusCode {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = me_status(app, token).await;
        if status == StatusCode::UNAUTHORIZED || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sql(app: &TestApp, statement: &str) {
    app.db
        .execute_unprepared(statement)
        .await
        .expect("the statement runs");
}

/// Sets `revoked_at` behind the trigger's back: no process hears of it.
async fn set_revoked_quietly(app: &TestApp, name: &str, value: &str) {
    sql(
        app,
        "ALTER TABLE api_tokens DISABLE TRIGGER api_tokens_notify_changes",
    )
    .await;
    sql(
        app,
        &format!("UPDATE api_tokens SET revoked_at = {value} WHERE name = '{name}'"),
    )
    .await;
    sql(
        app,
        "ALTER TABLE api_tokens ENABLE TRIGGER api_tokens_notify_changes",
    )
    .await;
}

/// Waits until both servers answer `token` from their caches (revoked quietly in the
/// table, it is still accepted), then un-revokes it as quietly: it stays cached.
async fn until_cached(a: &TestApp, b: &TestApp, token: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert_eq!(me_status(a, token).await, StatusCode::OK);
        assert_eq!(me_status(b, token).await, StatusCode::OK);
        set_revoked_quietly(a, name, "now()").await;
        let cached = me_status(a, token).await == StatusCode::OK
            && me_status(b, token).await == StatusCode::OK;
        set_revoked_quietly(a, name, "NULL").await;
        if cached {
            return;
        }
        // Not cached yet: the caches start answering once their listener hears.
        assert!(
            Instant::now() < deadline,
            "the token was never answered from a cache"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_refused_everywhere_on_its_next_request_after_a_revocation() {
    let a = TestApp::spawn(Db::Postgres).await;
    let b = TestApp::spawn_sharing(&a).await;

    // Revoked through the API of one server: refused at once by both.
    let token = a.create_token("cached-1", "MEMBER", Some("acme")).await;
    until_cached(&a, &b, &token, "cached-1").await;
    let id = a
        .gql("{ apiTokens { id name } }", json!({}))
        .await
        .data("apiTokens")
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "cached-1")
        .unwrap()["id"]
        .clone();
    // Once both have listened for longer than the freshness bound, the revoking server
    // knows every process that could still be caching, and waits for their
    // acknowledgements only (milliseconds); before that it waits out the bound.
    use keyward::auth::cache::{DEAF_AFTER, HEARTBEAT};
    tokio::time::sleep(DEAF_AFTER + HEARTBEAT + Duration::from_millis(500)).await;
    let started = Instant::now();
    let revoked = a
        .gql(
            "mutation($id: ID!) { revokeApiToken(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(revoked.data("revokeApiToken"), true);
    let took = started.elapsed();
    println!("revokeApiToken answered in {took:?}");
    assert!(took < DEAF_AFTER / 2, "it waited out the bound: {took:?}");
    assert_eq!(
        me_status(&a, &token).await,
        StatusCode::UNAUTHORIZED,
        "the revoking server"
    );
    assert_eq!(
        me_status(&b, &token).await,
        StatusCode::UNAUTHORIZED,
        "the other server, on the very next request"
    );

    // Revoked by plain SQL (the CLI, an operator): the trigger tells both.
    let token = b.create_token("cached-2", "ADMIN", None).await;
    until_cached(&a, &b, &token, "cached-2").await;
    sql(
        &a,
        "UPDATE api_tokens SET revoked_at = now() WHERE name = 'cached-2'",
    )
    .await;
    assert_eq!(refused_soon(&b, &token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refused_soon(&a, &token).await, StatusCode::UNAUTHORIZED);

    // Deleted: the same.
    let token = a.create_token("cached-3", "MEMBER", Some("acme")).await;
    until_cached(&a, &b, &token, "cached-3").await;
    sql(&b, "DELETE FROM api_tokens WHERE name = 'cached-3'").await;
    assert_eq!(refused_soon(&a, &token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refused_soon(&b, &token).await, StatusCode::UNAUTHORIZED);

    b.stop().await;
    a.stop().await;
}
