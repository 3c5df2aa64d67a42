//! Operating Keyward: Prometheus metrics and Apollo automatic persisted queries.

use serde_json::json;
use sha2::{Digest, Sha256};
use tests::{Db, TestApp, both_databases};

async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let res = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text")
}

fn counter(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn metrics_count_operations_outcomes_and_decrypts(app: &TestApp) {
    // Metrics are per process and tests run in parallel: names unique to this test.
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (who, missing) = (format!("WhoAmI_{tag}"), format!("Missing_{tag}"));
    let before = scrape(app).await;
    let me = |b: &prometheus_parse::Scrape| {
        counter(
            b,
            "keyward_graphql_requests_total",
            &[("operation", &format!("query {who}")), ("outcome", "OK")],
        )
    };
    let bad = |b: &prometheus_parse::Scrape| {
        let op = format!("query {missing}");
        counter(
            b,
            "keyward_graphql_requests_total",
            &[("operation", &op), ("outcome", "BAD_USER_INPUT")],
        )
    };
    let decrypts =
        |b: &prometheus_parse::Scrape| counter(b, "keyward_decrypts_total", &[("outcome", "ok")]);

    for _ in 0..3 {
        app.gql(&format!("query {who} {{ me {{ name }} }}"), json!({}))
            .await
            .data("me");
    }
    app.gql(
        &format!("query {missing} {{ config(id: \"x\") {{ nope }} }}"),
        json!({}),
    )
    .await;
    let created = app
        .create_config(&app.admin_token, "m", json!({"api_key": "sk-metrics"}))
        .await;
    let read = app
        .gql(
            "query($id: ID!) { config(id: $id, decrypt: true) { encrypted } }",
            json!({ "id": created["id"] }),
        )
        .await;
    assert_eq!(read.data("config")["encrypted"], false);

    let after = scrape(app).await;
    assert_eq!(me(&after) - me(&before), 3.0);
    assert_eq!(bad(&after) - bad(&before), 1.0);
    assert!(decrypts(&after) - decrypts(&before) >= 1.0);
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric == "keyward_graphql_request_duration_seconds"
                && matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "latency histogram present"
    );
    assert!(counter(&after, "keyward_db_pool_connections", &[]) >= 1.0);
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("sk-metrics"));
}

async fn persisted_queries_accept_a_hash_instead_of_the_query(app: &TestApp) {
    let query = "query Persisted { me { role } }";
    let hash = hex::encode(Sha256::digest(query.as_bytes()));
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let post = |body: serde_json::Value| {
        app.client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&app.admin_token)
            .json(&body)
            .send()
    };

    let unknown: serde_json::Value = post(json!({ "extensions": ext }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");

    let registered: serde_json::Value = post(json!({ "query": query, "extensions": ext }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registered["data"]["me"]["role"], "ADMIN");

    let by_hash: serde_json::Value = post(json!({ "extensions": ext }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_hash["data"]["me"]["role"], "ADMIN", "{by_hash}");
}

both_databases!(
    metrics_count_operations_outcomes_and_decrypts,
    persisted_queries_accept_a_hash_instead_of_the_query
);

#[tokio::test]
async fn readiness_reports_the_database_and_the_keyring() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["keyring"]["keys"], 1);
    app.stop().await;
}
