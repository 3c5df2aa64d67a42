//! `configs { totalCount }` comes from the counts the database's triggers keep (migration
//! m20261125_000001, api/src/config/count.rs), not from counting: it must stay exact for
//! every principal through creates, deletes, writes that bypass Keyward, and the folding
//! of the pending deltas; filtered lists still count their matches. On both databases.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use tests::{TestApp, both_databases};

async fn total_as(app: &TestApp, token: &str, args: &str) -> u64 {
    let query = format!("{{ configs{args} {{ totalCount }} }}");
    let res = app.gql_as(Some(token), &query, json!({})).await;
    res.data("configs")["totalCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("totalCount: {}", res.body))
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .expect("the query runs")
        .expect("a row");
    row.try_get("", "n").expect("n")
}

async fn create_in(app: &TestApp, tenant: &str, name: &str) -> String {
    let res = app
        .gql(
            "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id } }",
            json!({ "i": { "name": name, "tenant": tenant, "tags": ["t"], "configData": {} } }),
        )
        .await;
    res.data("createConfig")["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

async fn delete(app: &TestApp, id: &str) {
    let res = app
        .gql(
            "mutation($id: ID!) { deleteConfig(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(res.data("deleteConfig"), &Value::Bool(true));
}

async fn totals_follow_creates_and_deletes_for_every_principal(app: &TestApp) {
    let admin = app.admin_token.clone();
    let member_a = app.create_token("member-a", "MEMBER", Some("a")).await;
    let member_b = app.create_token("member-b", "MEMBER", Some("b")).await;
    let before = total_as(app, &admin, "").await;
    let mut in_a = Vec::new();
    for i in 0..5 {
        in_a.push(create_in(app, "a", &format!("a-{i}")).await);
    }
    for i in 0..3 {
        create_in(app, "b", &format!("b-{i}")).await;
    }
    assert_eq!(total_as(app, &admin, "").await, before + 8);
    assert_eq!(total_as(app, &member_a, "").await, 5);
    assert_eq!(total_as(app, &member_b, "").await, 3);
    // A member creating in its own tenant.
    app.create_config(&member_b, "b-own", json!({})).await;
    assert_eq!(total_as(app, &member_b, "").await, 4);
    for id in &in_a[..2] {
        delete(app, id).await;
    }
    assert_eq!(total_as(app, &member_a, "").await, 3);
    assert_eq!(total_as(app, &admin, "").await, before + 7);
    // Filtered lists count their matches, as before.
    assert_eq!(total_as(app, &admin, "(search: \"A-\")").await, 3);
    assert_eq!(total_as(app, &member_b, "(tag: \"t\")").await, 3);
    assert_eq!(total_as(app, &admin, "(search: \"  \")").await, before + 7);
}

async fn totals_stay_exact_through_writes_behind_keywards_back_and_folds(app: &TestApp) {
    let admin = app.admin_token.clone();
    let member = app
        .create_token("member-bulk", "MEMBER", Some("bulk"))
        .await;
    let id = create_in(app, "bulk", "first").await;
    // 700 rows straight into the table (a restore, a script): the triggers count them.
    let sqlite = app.db.get_database_backend() == sea_orm::DbBackend::Sqlite;
    let values: Vec<String> = (0..700)
        .map(|i| {
            let id = uuid::Uuid::now_v7();
            // As each store keeps a UUID: a blob in SQLite, a uuid in PostgreSQL.
            let id = if sqlite {
                format!("X'{}'", id.simple())
            } else {
                format!("'{id}'")
            };
            format!(
                "({id}, 'bulk-{i}', 'bulk', '[]', '{{}}', 1, '2026-11-25T00:00:00Z', '2026-11-25T00:00:00Z')"
            )
        })
        .collect();
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO configs (id, name, tenant, tags, config_data, version, created_at, updated_at) VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("the bulk insert");
    let counted = scalar(app, "SELECT COUNT(*) AS n FROM configs").await as u64;
    assert_eq!(total_as(app, &member, "").await, 701);
    assert_eq!(total_as(app, &admin, "").await, counted);
    // That read found more pending deltas than it lets stand: it folds them, meanwhile
    // and afterwards the totals stay the same.
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar(app, "SELECT COUNT(*) AS n FROM config_count_deltas").await
        > keyward::config::count::FOLD_AFTER
    {
        assert_eq!(total_as(app, &member, "").await, 701);
        assert!(Instant::now() < deadline, "the deltas were never folded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(total_as(app, &member, "").await, 701);
    assert_eq!(total_as(app, &admin, "").await, counted);
    delete(app, &id).await;
    app.db
        .execute_unprepared("DELETE FROM configs WHERE name IN ('bulk-0', 'bulk-1')")
        .await
        .expect("a delete behind Keyward's back");
    assert_eq!(total_as(app, &member, "").await, 698);
    // Moving a config to another tenant by hand moves its count.
    app.db
        .execute_unprepared("UPDATE configs SET tenant = 'elsewhere' WHERE name = 'bulk-2'")
        .await
        .expect("a tenant change");
    assert_eq!(total_as(app, &member, "").await, 697);
    keyward::config::count::fold(&app.db).await.expect("a fold");
    assert_eq!(total_as(app, &member, "").await, 697);
    assert_eq!(
        total_as(app, &admin, "").await,
        scalar(app, "SELECT COUNT(*) AS n FROM configs").await as u64
    );
}

both_databases!(
    totals_follow_creates_and_deletes_for_every_principal,
    totals_stay_exact_through_writes_behind_keywards_back_and_folds,
);
