//! Concurrency (issue 7 point 3), on SQLite and PostgreSQL: optimistic locking holds under
//! a stampede, parallel creates all land, and a mixed load of every kind of request
//! finishes within a deadline with no answer but the expected ones.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use tests::{Gql, TestApp, both_databases};

const UPDATE: &str = "mutation($id: ID!, $i: UpdateConfigInput!) { updateConfig(id: $id, input: $i) { version description } }";
const READ: &str = "query($id: ID!) { config(id: $id) { id name version description configData } }";
const REVEAL: &str = "query($id: ID!) { config(id: $id, decrypt: true) { configData } }";

/// A deadline for a whole scenario: a deadlock shows up as this failing, not as a hang.
async fn within<T>(limit: Duration, what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}: a deadlock?"))
}

fn failed(res: &Gql) -> bool {
    res.body.get("errors").is_some_and(|e| !e.is_null())
}

async fn a_hundred_concurrent_updates_from_one_version_give_one_success_and_conflicts(
    app: &TestApp,
) {
    let config = app
        .create_config(
            &app.admin_token,
            "contended",
            json!({ "api_key": "sk-contended" }),
        )
        .await;
    let id = config["id"].as_str().unwrap();
    assert_eq!(config["version"], 1);
    let attempts = (0..100).map(|n| async move {
        let res = app
            .gql(
                UPDATE,
                json!({ "id": id, "i": { "description": format!("writer {n}"), "expectedVersion": 1 } }),
            )
            .await;
        (n, res)
    });
    let answers = within(Duration::from_secs(60), "100 updates", join_all(attempts)).await;

    let mut winners = Vec::new();
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    for (n, res) in &answers {
        assert!(!res.status.is_server_error(), "{}", res.body);
        if failed(res) {
            *by_code
                .entry(res.code().unwrap_or("none").to_owned())
                .or_default() += 1;
            assert!(res.body["data"].is_null(), "{}", res.body);
        } else {
            assert_eq!(res.data("updateConfig")["version"], 2);
            winners.push(*n);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "winners: {winners:?}, failures: {by_code:?}"
    );
    assert_eq!(by_code, BTreeMap::from([("CONFLICT".to_owned(), 99)]));

    // The stored row is the winner's, at version 2, and the document is intact.
    let stored = app.gql(READ, json!({ "id": id })).await;
    let stored = stored.data("config");
    assert_eq!(stored["version"], 2);
    assert_eq!(stored["description"], format!("writer {}", winners[0]));
    let revealed = app.gql(REVEAL, json!({ "id": id })).await;
    assert_eq!(
        revealed.data("config")["configData"]["api_key"],
        "sk-contended"
    );
    // One config.update audit event: the losers wrote nothing.
    let audit = app
        .gql(
            "query($id: ID) { auditEvents(configId: $id, action: \"config.update\") { totalCount } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(audit.data("auditEvents")["totalCount"], 1);
}

async fn fifty_parallel_creates_are_all_retrievable(app: &TestApp) {
    let creates = (0..50).map(|n| async move {
        let name = format!("parallel-{n:02}");
        let config = app
            .create_config(
                &app.admin_token,
                &name,
                json!({ "n": n, "providers": [{ "module": "provider-echo", "config": { "token": format!("t-{n}") } }] }),
            )
            .await;
        (name, config)
    });
    let created = within(Duration::from_secs(60), "50 creates", join_all(creates)).await;
    let ids: BTreeSet<&str> = created
        .iter()
        .map(|(_, c)| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 50, "every create got its own id");

    let reads = created.iter().map(|(name, config)| async move {
        let id = config["id"].as_str().unwrap();
        let read = app.gql(READ, json!({ "id": id })).await;
        let read = read.data("config").clone();
        assert_eq!(&read["name"], name);
        assert_eq!(read["configData"]["n"], config["configData"]["n"]);
        let revealed = app.gql(REVEAL, json!({ "id": id })).await;
        let n = config["configData"]["n"].as_i64().unwrap();
        assert_eq!(
            revealed.data("config")["configData"]["providers"][0]["config"]["token"],
            format!("t-{n}")
        );
    });
    join_all(reads).await;

    let listed = app
        .gql(
            "{ configs(first: 100) { totalCount nodes { id } } }",
            json!({}),
        )
        .await;
    let listed = listed.data("configs");
    assert_eq!(listed["totalCount"], 50);
    let listed_ids: BTreeSet<&str> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed_ids, ids);
}

/// Eight workers share a handful of configs and sessions and do everything at once:
/// create, read, list, decrypt, update (with and without a version), delete, open echo
/// sessions and talk to them, read the audit log. Races may legitimately answer CONFLICT
/// (a version moved, a turn raced) or NOT_FOUND (another worker deleted it); nothing else
/// may fail, and the whole load finishes within its deadline.
async fn a_mixed_load_of_every_kind_of_request_finishes_without_deadlock(app: &TestApp) {
    let shared: Vec<String> = join_all((0..4).map(|n| async move {
        app.create_config(
            &app.admin_token,
            &format!("shared-{n}"),
            json!({ "providers": [{ "module": "provider-echo", "config": { "api_key": "sk-echo" } }] }),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }))
    .await;
    let outcomes: Mutex<BTreeMap<(String, String), usize>> = Mutex::new(BTreeMap::new());
    let tally = |op: &str, res: &Gql| {
        assert!(
            !res.status.is_server_error(),
            "{op}: {} {}",
            res.status,
            res.body
        );
        let outcome = if failed(res) {
            res.code().unwrap_or("none").to_owned()
        } else {
            "ok".to_owned()
        };
        *outcomes
            .lock()
            .unwrap()
            .entry((op.to_owned(), outcome))
            .or_default() += 1;
    };

    let workers = (0..8).map(|w| {
        let (shared, tally) = (&shared, &tally);
        async move {
            let mut own: Option<String> = None;
            for step in 0..20usize {
                let target = &shared[(w + step) % shared.len()];
                match step % 10 {
                    0 => {
                        let res = app
                            .gql(
                                "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id } }",
                                json!({ "i": { "name": format!("w{w}-{step}"), "configData": { "password": "p" } } }),
                            )
                            .await;
                        tally("create", &res);
                        own = res.body["data"]["createConfig"]["id"].as_str().map(str::to_owned);
                    }
                    1 => tally("read", &app.gql(READ, json!({ "id": target })).await),
                    2 => tally("decrypt", &app.gql(REVEAL, json!({ "id": target })).await),
                    3 => {
                        let current = app.gql(READ, json!({ "id": target })).await;
                        let version = current.body["data"]["config"]["version"].clone();
                        let res = app
                            .gql(UPDATE, json!({ "id": target, "i": { "description": format!("w{w}"), "expectedVersion": version } }))
                            .await;
                        tally("update-versioned", &res);
                    }
                    4 => {
                        let res = app
                            .gql(UPDATE, json!({ "id": target, "i": { "configData": { "providers": [{ "module": "provider-echo", "config": { "api_key": format!("sk-{w}") } }] } } }))
                            .await;
                        tally("update", &res);
                    }
                    5 => tally(
                        "list",
                        &app.gql("{ configs(first: 50) { totalCount nodes { id version } } }", json!({})).await,
                    ),
                    6 => {
                        let res = app
                            .gql(
                                "mutation($i: CreateSessionInput!) { createSession(input: $i) { id } }",
                                json!({ "i": { "configId": target } }),
                            )
                            .await;
                        tally("session", &res);
                        if let Some(session) = res.body["data"]["createSession"]["id"].as_str() {
                            let res = app
                                .gql(
                                    "mutation($s: ID!, $c: String!) { sendMessage(sessionId: $s, content: $c) { content } }",
                                    json!({ "s": session, "c": format!("hello from {w}") }),
                                )
                                .await;
                            tally("message", &res);
                            if !failed(&res) {
                                assert_eq!(res.data("sendMessage")["content"], format!("hello from {w}"));
                            }
                        }
                    }
                    7 => tally(
                        "audit",
                        &app.gql("{ auditEvents(first: 20) { totalCount nodes { action } } }", json!({})).await,
                    ),
                    8 => {
                        if let Some(id) = own.take() {
                            let res = app
                                .gql("mutation($id: ID!) { deleteConfig(id: $id) }", json!({ "id": id }))
                                .await;
                            tally("delete", &res);
                        }
                    }
                    _ => {
                        // Two workers at a time delete a shared config and put one back.
                        if w % 4 == 0 && step == 9 {
                            let res = app
                                .gql("mutation($id: ID!) { deleteConfig(id: $id) }", json!({ "id": target }))
                                .await;
                            tally("delete-shared", &res);
                        }
                    }
                }
            }
        }
    });
    within(
        Duration::from_secs(120),
        "the mixed load",
        join_all(workers),
    )
    .await;

    let outcomes = outcomes.into_inner().unwrap();
    let allowed = |op: &str, outcome: &str| match outcome {
        "ok" => true,
        // Another worker moved the version, or raced a turn. An update without
        // expectedVersion never conflicts (see the test below).
        "CONFLICT" => matches!(op, "update-versioned" | "message"),
        // Another worker deleted the shared config (a read of it answers null, not this).
        "NOT_FOUND" => matches!(
            op,
            "update" | "update-versioned" | "session" | "delete-shared" | "message"
        ),
        _ => false,
    };
    for ((op, outcome), count) in &outcomes {
        assert!(
            allowed(op, outcome),
            "{count} × {op} answered {outcome}: {outcomes:?}"
        );
    }
    let total: usize = outcomes.values().sum();
    let ok: usize = outcomes
        .iter()
        .filter(|((_, o), _)| o == "ok")
        .map(|(_, n)| n)
        .sum();
    assert!(total >= 8 * 17, "every step answered: {outcomes:?}");
    assert!(ok * 2 > total, "most of the load succeeded: {outcomes:?}");
    // Still consistent afterwards: every listed config reads back and decrypts.
    let listed = app
        .gql("{ configs(first: 100) { nodes { id } } }", json!({}))
        .await;
    for node in listed.data("configs")["nodes"].as_array().unwrap() {
        let revealed = app.gql(REVEAL, json!({ "id": node["id"] })).await;
        assert!(revealed.data("config").is_object(), "{}", revealed.body);
    }
}

/// An update that names no expectedVersion asked for no version check: when several race,
/// each applies in turn (last writer wins) and the version counts them all.
/// (`config::service::update` reads the row `FOR UPDATE` on PostgreSQL; without the lock
/// the second of two racing updates re-checked its `WHERE version = …` and conflicted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_without_an_expected_version_all_apply_when_they_race() {
    let app = TestApp::spawn(tests::Db::Postgres).await;
    let config = app
        .create_config(&app.admin_token, "racy", json!({ "n": 0 }))
        .await;
    let id = config["id"].as_str().unwrap();
    let updates = (0..20).map(|n| {
        let app = &app;
        async move {
            app.gql(
                UPDATE,
                json!({ "id": id, "i": { "description": format!("d{n}") } }),
            )
            .await
        }
    });
    let answers = within(Duration::from_secs(60), "20 updates", join_all(updates)).await;
    let refused: Vec<&str> = answers
        .iter()
        .filter(|res| failed(res))
        .map(Gql::message)
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let stored = app.gql(READ, json!({ "id": id })).await;
    assert_eq!(stored.data("config")["version"], 21);
    app.stop().await;
}

both_databases!(
    a_hundred_concurrent_updates_from_one_version_give_one_success_and_conflicts,
    fifty_parallel_creates_are_all_retrievable,
    a_mixed_load_of_every_kind_of_request_finishes_without_deadlock,
);
