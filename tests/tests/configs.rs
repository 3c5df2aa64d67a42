//! The encrypted config store through the real server, on SQLite and PostgreSQL (issue 2
//! points 8 and 9): the four flows of the seed, every encryption rule of CONTRACT section 3,
//! update, delete, list, pagination, search and tags, and bad input refused with the right
//! `extensions.code` and nothing stored.
//!
//! "Nothing stored" and "no plaintext stored" are proven by reading the database directly
//! ([`TestApp::dump_database`]), never through the API under test.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keyward::crypto::{Keyring, SealedBoxKeys, decrypt_value, encrypt_value, seal};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tests::{Gql, TestApp, both_databases};
use uuid::Uuid;

const FIELDS: &str = "id name description tenant tags version encrypted configData sensitivePaths createdAt updatedAt";

fn create_query() -> String {
    format!("mutation($i: CreateConfigInput!) {{ createConfig(input: $i) {{ {FIELDS} }} }}")
}

fn update_query() -> String {
    format!(
        "mutation($id: ID!, $i: UpdateConfigInput!) {{ updateConfig(id: $id, input: $i) {{ {FIELDS} }} }}"
    )
}

async fn create(app: &TestApp, input: Value) -> Gql {
    app.gql(&create_query(), json!({ "i": input })).await
}

/// Creates a config and returns it, asserting success.
async fn created(app: &TestApp, input: Value) -> Value {
    create(app, input).await.data("createConfig").clone()
}

async fn update(app: &TestApp, id: &str, input: Value) -> Gql {
    app.gql(&update_query(), json!({ "id": id, "i": input }))
        .await
}

async fn updated(app: &TestApp, id: &str, input: Value) -> Value {
    update(app, id, input).await.data("updateConfig").clone()
}

/// `config(id)`, the default (sealed) read: the Config or null.
async fn read(app: &TestApp, id: &str) -> Value {
    let q = format!("query($id: ID!) {{ config(id: $id) {{ {FIELDS} }} }}");
    app.gql(&q, json!({ "id": id }))
        .await
        .data("config")
        .clone()
}

/// `config(id, decrypt: true)`.
async fn reveal(app: &TestApp, id: &str) -> Value {
    let q = format!("query($id: ID!) {{ config(id: $id, decrypt: true) {{ {FIELDS} }} }}");
    app.gql(&q, json!({ "id": id }))
        .await
        .data("config")
        .clone()
}

async fn total_count(app: &TestApp) -> i64 {
    let res = app.gql("{ configs { totalCount } }", json!({})).await;
    res.data("configs")["totalCount"]
        .as_i64()
        .expect("totalCount")
}

/// Rows in `configs`, counted in the database itself.
async fn stored_rows(app: &TestApp) -> u64 {
    entity::config::Entity::find()
        .count(&app.db)
        .await
        .expect("count configs")
}

/// The stored `config_data` of one row, read from the database.
async fn stored_document(app: &TestApp, id: &str) -> Value {
    let id = Uuid::parse_str(id).expect("a uuid");
    let row = entity::config::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .expect("read configs")
        .expect("the row exists");
    row.config_data.as_value().clone()
}

/// Asserts that none of `secrets` is stored anywhere, and that the dump can see `visible`
/// (so the check is not vacuous).
async fn assert_stored_nowhere(app: &TestApp, secrets: &[&str], visible: &str) {
    let text = app.dump_database().await;
    assert!(
        text.contains(visible),
        "the database dump shows stored values ({visible} missing):\n{text}"
    );
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "plaintext `{secret}` is stored:\n{text}"
        );
    }
}

fn keyring(app: &TestApp) -> Keyring {
    Keyring::parse(&app.key).expect("the test key")
}

fn provider_doc(api_key: &str) -> Value {
    json!({
        "providers": [{
            "module": "provider-openai",
            "config": { "api_key": api_key, "model": "gpt-4o-mini", "max_tokens": 4096 }
        }]
    })
}

fn api_key_of(config: &Value) -> &str {
    config["configData"]["providers"][0]["config"]["api_key"]
        .as_str()
        .expect("an api_key string")
}

fn id_of(config: &Value) -> String {
    config["id"].as_str().expect("an id").to_owned()
}

fn sorted(values: &Value) -> Vec<String> {
    let mut v: Vec<String> = values
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect();
    v.sort();
    v
}

fn names_of(connection: &Value) -> Vec<String> {
    let mut v: Vec<String> = connection["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn assert_code(res: &Gql, code: &str) {
    assert_eq!(
        res.code(),
        Some(code),
        "expected {code}: {} {}",
        res.status,
        res.body
    );
}

// ---------------------------------------------------------------------------------------
// The seed's four flows.

async fn a_value_encrypted_by_the_app_is_stored_exactly_as_sent(app: &TestApp) {
    let sealed = encrypt_value(&keyring(app), "app-side-secret-value");
    let config = created(
        app,
        json!({ "name": "app side", "configData": provider_doc(&sealed) }),
    )
    .await;
    assert_eq!(
        api_key_of(&config),
        sealed,
        "the answer holds the value as sent"
    );
    assert_eq!(
        config["sensitivePaths"],
        json!(["providers[0].config.api_key"])
    );
    assert_eq!(config["version"], 1);
    let stored = stored_document(app, &id_of(&config)).await;
    assert_eq!(
        stored,
        provider_doc(&sealed),
        "the row holds the document exactly as sent"
    );
    assert_stored_nowhere(app, &["app-side-secret-value"], &sealed).await;
    assert_eq!(
        api_key_of(&reveal(app, &id_of(&config)).await),
        "app-side-secret-value"
    );
}

async fn plaintext_sent_by_a_service_is_encrypted_before_it_is_stored(app: &TestApp) {
    let config = created(
        app,
        json!({ "name": "service side", "configData": provider_doc("service-side-secret") }),
    )
    .await;
    let sealed = api_key_of(&config).to_owned();
    assert!(sealed.starts_with("enc:gAAAAA"), "{sealed}");
    assert!(
        !config.to_string().contains("service-side-secret"),
        "the answer never echoes plaintext: {config}"
    );
    assert_eq!(
        decrypt_value(&keyring(app), &sealed)
            .unwrap()
            .expose_secret(),
        "service-side-secret"
    );
    assert_eq!(
        config["configData"]["providers"][0]["config"]["model"],
        "gpt-4o-mini"
    );
    assert_eq!(
        config["configData"]["providers"][0]["config"]["max_tokens"],
        4096
    );
    assert_eq!(config["encrypted"], true);
    let stored = stored_document(app, &id_of(&config)).await;
    assert_eq!(
        stored["providers"][0]["config"]["api_key"],
        sealed.as_str(),
        "the answer is the stored form"
    );
    assert_stored_nowhere(app, &["service-side-secret"], &sealed).await;
}

async fn the_default_read_returns_enc_values_and_says_encrypted(app: &TestApp) {
    let config = created(
        app,
        json!({ "name": "default read", "configData": provider_doc("default-read-secret") }),
    )
    .await;
    let id = id_of(&config);
    let read = read(app, &id).await;
    assert_eq!(read["encrypted"], true);
    assert_eq!(api_key_of(&read), api_key_of(&config));
    assert!(api_key_of(&read).starts_with("enc:"));
    assert_eq!(
        read["sensitivePaths"],
        json!(["providers[0].config.api_key"])
    );
    assert!(!read.to_string().contains("default-read-secret"));
    // The list is a default read too.
    let list = app
        .gql(
            "{ configs { nodes { id encrypted configData } } }",
            json!({}),
        )
        .await;
    let node = &list.data("configs")["nodes"][0];
    assert_eq!(node["id"], id.as_str());
    assert_eq!(node["encrypted"], true);
    assert_eq!(api_key_of(node), api_key_of(&config));
}

async fn decrypt_true_returns_plaintext_and_says_not_encrypted(app: &TestApp) {
    let doc = provider_doc("decrypt-read-secret");
    let config = created(
        app,
        json!({ "name": "decrypt read", "configData": doc.clone() }),
    )
    .await;
    let revealed = reveal(app, &id_of(&config)).await;
    assert_eq!(revealed["encrypted"], false);
    assert_eq!(
        revealed["configData"], doc,
        "the whole document as it was sent"
    );
    assert_eq!(
        revealed["sensitivePaths"],
        json!(["providers[0].config.api_key"])
    );
    assert_eq!(revealed["version"], 1);
    // Revealing stores nothing in the clear (the audit row included).
    assert_stored_nowhere(app, &["decrypt-read-secret"], api_key_of(&config)).await;
}

async fn no_plaintext_secret_is_stored_anywhere(app: &TestApp) {
    let key = app.gql("{ encryptionKey { publicKey } }", json!({})).await;
    let public = public_key(key.data("encryptionKey")["publicKey"].as_str().unwrap());
    let secrets = [
        "nowhere-api-key",
        "nowhere-client-secret",
        "nowhere-db-password",
        "nowhere-nested-user",
        "nowhere-sealed-value",
        "nowhere-updated-key",
        "nowhere-app-side",
    ];
    let first = created(
        app,
        json!({
            "name": "everything",
            "description": "a config with secrets of every shape",
            "tags": ["prod"],
            "configData": {
                "providers": [{ "module": "provider-anthropic", "config": { "apiKey": secrets[0] } }],
                "oauth": { "client_secret": secrets[1] },
                "database": { "DB-PASSWORD": secrets[2] },
                "credentials": { "nested": [{ "user": secrets[3] }] },
                "sealed_in": { "api_key": seal(&public, secrets[4].as_bytes()) },
                "app_side": { "token": encrypt_value(&keyring(app), secrets[6]) }
            }
        }),
    )
    .await;
    let id = id_of(&first);
    updated(app, &id, json!({ "configData": provider_doc(secrets[5]) })).await;
    let second = created(
        app,
        json!({ "name": "second", "configData": provider_doc(secrets[0]) }),
    )
    .await;
    reveal(app, &id).await;
    reveal(app, &id_of(&second)).await;
    assert_stored_nowhere(app, &secrets, api_key_of(&second)).await;
    // The sealed: form is not stored either: it was opened and re-encrypted.
    assert!(!app.dump_database().await.contains("sealed:"));
}

// ---------------------------------------------------------------------------------------
// Update and delete.

async fn an_update_bumps_the_version_and_replaces_the_whole_document(app: &TestApp) {
    let first = created(
        app,
        json!({ "name": "to update", "configData": { "api_key": "old-secret", "model": "a", "old_only": 1 } }),
    )
    .await;
    let id = id_of(&first);
    let second = updated(
        app,
        &id,
        json!({ "name": "updated", "configData": { "api_key": "new-secret", "model": "b" }, "expectedVersion": 1 }),
    )
    .await;
    assert_eq!(second["version"], 2);
    assert_eq!(second["name"], "updated");
    assert_eq!(second["createdAt"], first["createdAt"]);
    assert!(second["updatedAt"].as_str().unwrap() >= first["updatedAt"].as_str().unwrap());
    assert!(
        second["configData"].get("old_only").is_none(),
        "configData replaces the whole document"
    );
    assert_eq!(second["configData"]["model"], "b");
    let sealed = second["configData"]["api_key"].as_str().unwrap();
    assert!(sealed.starts_with("enc:"), "{sealed}");
    assert_eq!(
        decrypt_value(&keyring(app), sealed)
            .unwrap()
            .expose_secret(),
        "new-secret"
    );
    assert_eq!(
        reveal(app, &id).await["configData"],
        json!({ "api_key": "new-secret", "model": "b" })
    );
    assert_stored_nowhere(app, &["old-secret", "new-secret"], sealed).await;

    // Without configData the document stays exactly as it was.
    let third = updated(app, &id, json!({ "tags": ["x"], "description": "d" })).await;
    assert_eq!(third["version"], 3);
    assert_eq!(third["configData"], second["configData"]);
    assert_eq!(third["tags"], json!(["x"]));
    assert_eq!(third["description"], "d");
    assert_eq!(third["name"], "updated");
}

async fn a_stored_document_sent_back_unchanged_stays_the_same(app: &TestApp) {
    // A client reads the sealed form and writes it back (say, after changing the model).
    let config = created(
        app,
        json!({ "name": "round trip", "configData": provider_doc("round-trip-secret") }),
    )
    .await;
    let mut doc = config["configData"].clone();
    doc["providers"][0]["config"]["model"] = json!("gpt-4o");
    let again = updated(app, &id_of(&config), json!({ "configData": doc.clone() })).await;
    assert_eq!(again["configData"], doc, "enc: values are kept as they are");
    assert_eq!(again["sensitivePaths"], config["sensitivePaths"]);
    assert_eq!(
        api_key_of(&reveal(app, &id_of(&config)).await),
        "round-trip-secret"
    );
}

async fn a_stale_expected_version_is_a_conflict_and_changes_nothing(app: &TestApp) {
    let config = created(
        app,
        json!({ "name": "versioned", "configData": provider_doc("versioned-secret") }),
    )
    .await;
    let id = id_of(&config);
    let v2 = updated(app, &id, json!({ "name": "v2", "expectedVersion": 1 })).await;
    assert_eq!(v2["version"], 2);
    let stale = update(
        app,
        &id,
        json!({ "name": "lost", "configData": { "api_key": "lost-secret" }, "tags": ["lost"], "expectedVersion": 1 }),
    )
    .await;
    assert_code(&stale, "CONFLICT");
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(
        read(app, &id).await,
        v2,
        "the refused update changed nothing"
    );
    let text = app.dump_database().await;
    assert!(
        !text.contains("lost"),
        "nothing of the refused update is stored:\n{text}"
    );
    // The right version still goes through.
    assert_eq!(
        updated(app, &id, json!({ "name": "v3", "expectedVersion": 2 })).await["version"],
        3
    );
}

async fn deleting_a_config_removes_it_and_its_tags(app: &TestApp) {
    let keep = created(
        app,
        json!({ "name": "keep", "tags": ["t"], "configData": {} }),
    )
    .await;
    let gone = created(
        app,
        json!({ "name": "gone", "tags": ["t", "only-gone"], "configData": provider_doc("gone") }),
    )
    .await;
    let id = id_of(&gone);
    let res = app
        .gql(
            "mutation($id: ID!) { deleteConfig(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(res.data("deleteConfig"), &json!(true));
    assert_eq!(read(app, &id).await, Value::Null);
    assert_eq!(reveal(app, &id).await, Value::Null);
    assert_eq!(total_count(app).await, 1);
    assert_eq!(stored_rows(app).await, 1);
    let tagged = app
        .gql("{ configs(tag: \"t\") { nodes { id } } }", json!({}))
        .await;
    assert_eq!(
        tagged.data("configs")["nodes"],
        json!([{ "id": id_of(&keep) }])
    );
    let text = app.dump_database().await;
    assert!(
        text.contains("keep"),
        "the kept row is in the dump:\n{text}"
    );
    assert!(
        !text.contains("only-gone"),
        "the deleted config's tags are gone:\n{text}"
    );

    // Deleting or updating it again: NOT_FOUND.
    let again = app
        .gql(
            "mutation($id: ID!) { deleteConfig(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_code(&again, "NOT_FOUND");
    assert_code(
        &update(app, &id, json!({ "name": "zombie" })).await,
        "NOT_FOUND",
    );
    assert_eq!(stored_rows(app).await, 1);
}

// ---------------------------------------------------------------------------------------
// Listing: pagination, search, tags.

const PAGE: &str = "query($first: Int, $after: String) { configs(first: $first, after: $after) {
    totalCount edges { cursor node { id name } } nodes { id } pageInfo { hasNextPage endCursor } } }";

async fn page(app: &TestApp, first: i64, after: Option<&str>) -> Value {
    app.gql(PAGE, json!({ "first": first, "after": after }))
        .await
        .data("configs")
        .clone()
}

/// Walks every page of `first` and returns the ids in order, checking each page's shape.
async fn walk(app: &TestApp, first: i64, total: i64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..=total {
        let page = page(app, first, after.as_deref()).await;
        assert_eq!(
            page["totalCount"], total,
            "totalCount is the same on every page"
        );
        let edges = page["edges"].as_array().unwrap();
        assert!(edges.len() as i64 <= first);
        let page_ids: Vec<String> = edges
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect();
        let node_ids: Vec<String> = page["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(page_ids, node_ids, "nodes and edges agree");
        if let Some(last) = edges.last() {
            assert_eq!(page["pageInfo"]["endCursor"], last["cursor"]);
        }
        ids.extend(page_ids);
        if page["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
        assert_eq!(edges.len() as i64, first, "only the last page is short");
        after = Some(
            page["pageInfo"]["endCursor"]
                .as_str()
                .expect("an endCursor")
                .to_owned(),
        );
    }
    panic!("pagination did not end after {total} pages");
}

async fn pages_list_every_config_once_newest_first_in_a_stable_order(app: &TestApp) {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(id_of(
            &created(
                app,
                json!({ "name": format!("page {i}"), "configData": {} }),
            )
            .await,
        ));
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let walked = walk(app, 3, 7).await;
    assert_eq!(walked, newest_first, "no duplicates, no gaps, newest first");
    assert_eq!(walk(app, 3, 7).await, walked, "the same order every time");
    assert_eq!(walk(app, 100, 7).await, walked, "one big page agrees");
    assert_eq!(walk(app, 1, 7).await, walked, "pages of one agree");

    // A config created mid-walk neither repeats nor hides the others.
    let first = page(app, 3, None).await;
    created(app, json!({ "name": "late", "configData": {} })).await;
    let rest = page(app, 10, first["pageInfo"]["endCursor"].as_str()).await;
    let mut seen: Vec<String> = first["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    seen.extend(
        rest["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned()),
    );
    assert_eq!(seen, newest_first);
    assert_eq!(rest["totalCount"], 8);

    // first: 0 answers the count alone; out-of-range and foreign cursors are the caller's mistake.
    let empty = page(app, 0, None).await;
    assert_eq!(empty["edges"], json!([]));
    assert_eq!(empty["totalCount"], 8);
    for (first, after) in [
        (101, None),
        (-1, None),
        (3, Some("not-a-cursor")),
        (3, Some(ids[0].as_str())),
    ] {
        let res = app
            .gql(PAGE, json!({ "first": first, "after": after }))
            .await;
        assert_code(&res, "BAD_USER_INPUT");
    }
}

async fn search_matches_names_case_insensitively_and_takes_wildcards_literally(app: &TestApp) {
    for name in [
        "Prod OpenAI",
        "staging-openai",
        "OPENAI europe",
        "anthropic",
        "100% real",
        "100 real",
        "a_b",
        "axb",
    ] {
        created(app, json!({ "name": name, "configData": {} })).await;
    }
    let search = |term: &'static str| async move {
        let res = app
            .gql(
                "query($s: String) { configs(search: $s) { totalCount nodes { name } } }",
                json!({ "s": term }),
            )
            .await;
        let found = res.data("configs").clone();
        assert_eq!(
            found["totalCount"],
            found["nodes"].as_array().unwrap().len(),
            "totalCount counts the matches"
        );
        names_of(&found)
    };
    let openai = vec!["OPENAI europe", "Prod OpenAI", "staging-openai"];
    assert_eq!(search("openai").await, openai);
    assert_eq!(search("OpenAI").await, openai);
    assert_eq!(search("PROD openai").await, vec!["Prod OpenAI"]);
    assert_eq!(
        search("%").await,
        vec!["100% real"],
        "% is a literal character"
    );
    assert_eq!(search("100%").await, vec!["100% real"]);
    assert_eq!(search("_").await, vec!["a_b"], "_ is a literal character");
    assert_eq!(search("a_b").await, vec!["a_b"]);
    assert_eq!(search("nothing like it").await, Vec::<String>::new());

    // Pages of a search: totalCount counts every match, the pages hold each once.
    let q = "query($after: String) { configs(search: \"openai\", first: 2, after: $after) {
        totalCount nodes { name } pageInfo { hasNextPage endCursor } } }";
    let first = app.gql(q, json!({})).await.data("configs").clone();
    assert_eq!(first["totalCount"], 3);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let after = first["pageInfo"]["endCursor"].clone();
    let second = app
        .gql(q, json!({ "after": after }))
        .await
        .data("configs")
        .clone();
    assert_eq!(second["totalCount"], 3);
    assert_eq!(second["pageInfo"]["hasNextPage"], false);
    let mut both = names_of(&first);
    both.extend(names_of(&second));
    both.sort();
    assert_eq!(both, openai);
}

async fn the_tag_filter_returns_only_configs_carrying_that_tag(app: &TestApp) {
    let a = created(
        app,
        json!({ "name": "a", "tags": ["prod", "openai", " prod "], "configData": {} }),
    )
    .await;
    assert_eq!(
        a["tags"],
        json!(["prod", "openai"]),
        "tags are trimmed and kept once"
    );
    let b = created(
        app,
        json!({ "name": "b", "tags": ["staging", "openai"], "configData": {} }),
    )
    .await;
    created(app, json!({ "name": "c", "configData": {} })).await;
    let tagged = |tag: &'static str, search: Option<&'static str>| async move {
        let q = "query($t: String, $s: String) { configs(tag: $t, search: $s) { totalCount nodes { name tags } } }";
        let found = app
            .gql(q, json!({ "t": tag, "s": search }))
            .await
            .data("configs")
            .clone();
        assert_eq!(
            found["totalCount"],
            found["nodes"].as_array().unwrap().len()
        );
        names_of(&found)
    };
    assert_eq!(tagged("openai", None).await, ["a", "b"]);
    assert_eq!(tagged("prod", None).await, ["a"]);
    assert_eq!(tagged("staging", None).await, ["b"]);
    assert_eq!(
        tagged("open", None).await,
        Vec::<String>::new(),
        "a tag matches whole"
    );
    assert_eq!(
        tagged("openai", Some("B")).await,
        ["b"],
        "tag and search combine"
    );

    // Changing tags moves a config between filters.
    updated(app, &id_of(&b), json!({ "tags": ["prod"] })).await;
    assert_eq!(tagged("prod", None).await, ["a", "b"]);
    assert_eq!(tagged("staging", None).await, Vec::<String>::new());
    assert_eq!(tagged("openai", None).await, ["a"]);
}

// ---------------------------------------------------------------------------------------
// CONTRACT section 3, through the API.

async fn sensitive_keys_are_recognised_in_any_case_and_spelling(app: &TestApp) {
    let doc = json!({
        "apiKey": "v-camel",
        "API-KEY": "v-kebab",
        "ApiKey": "v-pascal",
        "client_secret": "v-secret",
        "x_auth_token": "v-token",
        "privateKey": "v-private",
        "aws_access_key_id": "v-access",
        "Authorization": "v-authz",
        "db-Passwd": "v-passwd",
        "model": "claude",
        "user": "alice",
        "key": "plain-key-name",
        "auth": "plain-auth",
        "base_url": "http://127.0.0.1:9"
    });
    let config = created(
        app,
        json!({ "name": "spellings", "configData": doc.clone() }),
    )
    .await;
    let sensitive = [
        "apiKey",
        "API-KEY",
        "ApiKey",
        "client_secret",
        "x_auth_token",
        "privateKey",
        "aws_access_key_id",
        "Authorization",
        "db-Passwd",
    ];
    for key in sensitive {
        let stored = config["configData"][key].as_str().unwrap();
        assert!(stored.starts_with("enc:"), "{key} is sensitive: {stored}");
    }
    for key in ["model", "user", "key", "auth", "base_url"] {
        assert_eq!(
            config["configData"][key], doc[key],
            "{key} is not sensitive"
        );
    }
    let mut expected: Vec<String> = sensitive.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(sorted(&config["sensitivePaths"]), expected);
    assert_eq!(reveal(app, &id_of(&config)).await["configData"], doc);
}

async fn every_string_under_a_credentials_object_is_encrypted_at_any_depth(app: &TestApp) {
    let doc = json!({
        "credentials": {
            "user": "u-nested",
            "pass": "p-nested",
            "deeper": { "list": ["l-nested", { "x": "x-nested" }], "port": 5432, "tls": true, "none": null }
        },
        "name": "visible"
    });
    let config = created(
        app,
        json!({ "name": "credentials", "configData": doc.clone() }),
    )
    .await;
    let data = &config["configData"];
    for pointer in [
        "/credentials/user",
        "/credentials/pass",
        "/credentials/deeper/list/0",
        "/credentials/deeper/list/1/x",
    ] {
        assert!(
            data.pointer(pointer)
                .unwrap()
                .as_str()
                .unwrap()
                .starts_with("enc:"),
            "{pointer}"
        );
    }
    assert_eq!(data["credentials"]["deeper"]["port"], 5432);
    assert_eq!(data["credentials"]["deeper"]["tls"], true);
    assert_eq!(data["credentials"]["deeper"]["none"], Value::Null);
    assert_eq!(data["name"], "visible");
    assert_eq!(
        sorted(&config["sensitivePaths"]),
        [
            "credentials.deeper.list[0]",
            "credentials.deeper.list[1].x",
            "credentials.pass",
            "credentials.user"
        ]
    );
    assert_eq!(reveal(app, &id_of(&config)).await["configData"], doc);
    assert_stored_nowhere(
        app,
        &["u-nested", "p-nested", "l-nested", "x-nested"],
        "visible",
    )
    .await;
}

async fn numbers_booleans_null_and_empty_strings_are_stored_untouched(app: &TestApp) {
    let doc = json!({
        "api_key": "",
        "secret": null,
        "token": 5,
        "password": true,
        "max_tokens": 4096,
        "credentials": { "ratio": 1.5, "list": [1, false, null, ""] }
    });
    let config = created(
        app,
        json!({ "name": "untouched", "configData": doc.clone() }),
    )
    .await;
    assert_eq!(config["configData"], doc);
    assert_eq!(config["sensitivePaths"], json!([]));
    assert_eq!(stored_document(app, &id_of(&config)).await, doc);
    assert_eq!(reveal(app, &id_of(&config)).await["configData"], doc);
}

async fn environment_references_are_stored_as_they_are(app: &TestApp) {
    let doc = json!({
        "providers": [{ "module": "provider-openai", "config": { "api_key": "${OPENAI_API_KEY}" } }],
        "password": "${not a reference"
    });
    let config = created(
        app,
        json!({ "name": "env refs", "configData": doc.clone() }),
    )
    .await;
    assert_eq!(api_key_of(&config), "${OPENAI_API_KEY}");
    assert!(
        config["configData"]["password"]
            .as_str()
            .unwrap()
            .starts_with("enc:"),
        "not a ${{NAME}}: encrypted"
    );
    assert_eq!(config["sensitivePaths"], json!(["password"]));
    let revealed = reveal(app, &id_of(&config)).await;
    assert_eq!(
        api_key_of(&revealed),
        "${OPENAI_API_KEY}",
        "shown as stored, unresolved"
    );
    assert_eq!(revealed["configData"], doc);
}

async fn sensitive_paths_name_every_encrypted_value(app: &TestApp) {
    let app_side = encrypt_value(&keyring(app), "noted");
    let doc = json!({
        "providers": [
            { "module": "provider-openai", "config": { "api_key": "first", "model": "m" } },
            { "module": "provider-anthropic", "config": { "api_key": "second", "headers": { "Authorization": "third" } } }
        ],
        "note": app_side,
        "odd.key": { "token": "fourth" }
    });
    let config = created(app, json!({ "name": "paths", "configData": doc })).await;
    assert_eq!(
        sorted(&config["sensitivePaths"]),
        [
            "[\"odd.key\"].token",
            "note",
            "providers[0].config.api_key",
            "providers[1].config.api_key",
            "providers[1].config.headers.Authorization",
        ]
    );
    assert_eq!(
        read(app, &id_of(&config)).await["sensitivePaths"],
        config["sensitivePaths"]
    );
}

fn public_key(base64: &str) -> crypto_box::PublicKey {
    let bytes: [u8; 32] = STANDARD
        .decode(base64)
        .expect("standard base64")
        .try_into()
        .expect("32 bytes");
    crypto_box::PublicKey::from(bytes)
}

async fn a_sealed_value_is_stored_encrypted_and_decrypts_to_the_original(app: &TestApp) {
    let key = app
        .gql("{ encryptionKey { keyId publicKey algorithm } }", json!({}))
        .await;
    let key = key.data("encryptionKey").clone();
    let key_id = key["keyId"].as_str().unwrap();
    assert!(
        key["algorithm"]
            .as_str()
            .unwrap()
            .contains("crypto_box_seal")
    );
    let public = public_key(key["publicKey"].as_str().unwrap());
    let sealed = seal(&public, b"sealed-box-secret");
    assert!(sealed.starts_with(&format!("sealed:{key_id}:")), "{sealed}");
    // The contract accepts the URL-safe alphabet without padding too.
    let raw = STANDARD.decode(sealed.rsplit(':').next().unwrap()).unwrap();
    let url_safe = format!("sealed:{key_id}:{}", URL_SAFE_NO_PAD.encode(raw));
    let other = seal(&public, b"sealed-under-any-key");

    let doc = json!({
        "providers": [{ "module": "provider-openai", "config": { "api_key": sealed, "model": "m" } }],
        "anywhere": other,
        "url_safe_token": url_safe
    });
    let config = created(app, json!({ "name": "sealed", "configData": doc })).await;
    for value in [
        api_key_of(&config),
        config["configData"]["anywhere"].as_str().unwrap(),
    ] {
        assert!(value.starts_with("enc:gAAAAA"), "stored as enc: {value}");
    }
    assert_eq!(
        sorted(&config["sensitivePaths"]),
        ["anywhere", "providers[0].config.api_key", "url_safe_token"]
    );
    let revealed = reveal(app, &id_of(&config)).await;
    assert_eq!(api_key_of(&revealed), "sealed-box-secret");
    assert_eq!(revealed["configData"]["anywhere"], "sealed-under-any-key");
    assert_eq!(
        revealed["configData"]["url_safe_token"],
        "sealed-box-secret"
    );
    assert_eq!(
        revealed["configData"]["providers"][0]["config"]["model"],
        "m"
    );
    assert_stored_nowhere(
        app,
        &["sealed-box-secret", "sealed-under-any-key", "sealed:"],
        api_key_of(&config),
    )
    .await;
}

async fn a_sealed_value_that_cannot_be_opened_is_refused_naming_the_path(app: &TestApp) {
    let foreign = SealedBoxKeys::derive(&Keyring::parse(&Keyring::generate_key()).unwrap());
    let unknown_id = seal(&foreign.primary().public_key(), b"sealed-elsewhere");
    let key = app.gql("{ encryptionKey { keyId } }", json!({})).await;
    let key_id = key.data("encryptionKey")["keyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let garbage =
        format!("sealed:{key_id}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    for bad in [unknown_id, garbage, "sealed:no-payload".to_owned()] {
        let doc = json!({ "providers": [{ "module": "provider-openai", "config": { "api_key": bad, "model": "m" } }] });
        let res = create(app, json!({ "name": "bad sealed", "configData": doc })).await;
        assert_code(&res, "BAD_USER_INPUT");
        assert!(
            res.message().contains("providers[0].config.api_key"),
            "names the path: {}",
            res.message()
        );
        assert!(
            !res.message().contains(&bad),
            "never echoes the value: {}",
            res.message()
        );
    }
    assert_eq!(total_count(app).await, 0);
    assert_eq!(stored_rows(app).await, 0);
}

async fn names_and_values_in_any_script_are_stored_and_found(app: &TestApp) {
    let secret = "cl\u{e9}-secr\u{e8}te-\u{1f511}-\u{5bc6}\u{94a5}";
    let config = created(app, json!({ "name": "\u{c9}cole \u{2013} Z\u{fc}rich \u{1f511}", "configData": provider_doc(secret) })).await;
    assert_eq!(config["name"], "\u{c9}cole \u{2013} Z\u{fc}rich \u{1f511}");
    assert_eq!(api_key_of(&reveal(app, &id_of(&config)).await), secret);
    assert_stored_nowhere(app, &[secret, "secr\u{e8}te"], api_key_of(&config)).await;
    let longest = created(
        app,
        json!({ "name": "\u{e9}".repeat(200), "configData": {} }),
    )
    .await;
    assert_eq!(
        longest["name"].as_str().unwrap().chars().count(),
        200,
        "the limit counts characters, not bytes"
    );
    let res = create(
        app,
        json!({ "name": "\u{e9}".repeat(201), "configData": {} }),
    )
    .await;
    assert_code(&res, "BAD_USER_INPUT");
    let search = |term: &'static str| async move {
        let res = app
            .gql(
                "query($s: String) { configs(search: $s) { totalCount nodes { name } } }",
                json!({ "s": term }),
            )
            .await;
        names_of(res.data("configs"))
    };
    assert_eq!(
        search("z\u{fc}rich").await,
        ["\u{c9}cole \u{2013} Z\u{fc}rich \u{1f511}"]
    );
    assert_eq!(
        search("\u{e9}cole").await,
        ["\u{c9}cole \u{2013} Z\u{fc}rich \u{1f511}"],
        "case-insensitive beyond ASCII"
    );
    assert_eq!(
        search("Z\u{dc}RICH").await,
        ["\u{c9}cole \u{2013} Z\u{fc}rich \u{1f511}"],
        "case-insensitive beyond ASCII"
    );
}

async fn a_nul_character_is_the_callers_mistake_never_an_internal_error(app: &TestApp) {
    let inputs = [
        json!({ "name": "nul\u{0}name", "configData": {} }),
        json!({ "name": "nul description", "description": "a\u{0}b", "configData": {} }),
        json!({ "name": "nul tag", "tags": ["a\u{0}b"], "configData": {} }),
        json!({ "name": "nul value", "configData": { "model": "a\u{0}b" } }),
        json!({ "name": "nul key", "configData": { "mo\u{0}del": "m" } }),
    ];
    for input in inputs {
        let res = create(app, input.clone()).await;
        assert!(
            !res.status.is_server_error(),
            "{input}: {} {}",
            res.status,
            res.body
        );
        assert_code(&res, "BAD_USER_INPUT");
    }
    assert_eq!(stored_rows(app).await, 0);
    let res = update(
        app,
        &Uuid::new_v4().to_string(),
        json!({ "name": "a\u{0}b" }),
    )
    .await;
    assert_code(&res, "BAD_USER_INPUT");
    // Under a sensitive key the value is encrypted, so any character is fine.
    let config = created(
        app,
        json!({ "name": "nul secret", "configData": { "api_key": "a\u{0}b" } }),
    )
    .await;
    let id = id_of(&config);
    assert_eq!(reveal(app, &id).await["configData"]["api_key"], "a\u{0}b");
    // Filters and the audited reason are the caller's text too.
    for (search, tag) in [(Some("a\u{0}"), None), (None, Some("a\u{0}"))] {
        let q = "query($s: String, $t: String) { configs(search: $s, tag: $t) { totalCount } }";
        let res = app.gql(q, json!({ "s": search, "t": tag })).await;
        assert_code(&res, "BAD_USER_INPUT");
    }
    let q =
        "query($id: ID!, $r: String) { config(id: $id, decrypt: true, reason: $r) { encrypted } }";
    let res = app.gql(q, json!({ "id": id, "r": "why\u{0}not" })).await;
    assert_eq!(res.data("config")["encrypted"], false, "{}", res.body);
}

async fn a_deep_document_is_sealed_and_an_absurdly_deep_one_is_refused(app: &TestApp) {
    let mut doc = json!({ "api_key": "deep-secret" });
    for _ in 0..60 {
        doc = json!({ "level": doc });
    }
    let config = created(app, json!({ "name": "deep", "configData": doc.clone() })).await;
    let path = config["sensitivePaths"][0].as_str().unwrap().to_owned();
    assert!(
        path.ends_with(".level.api_key") && path.starts_with("level."),
        "{path}"
    );
    assert_eq!(reveal(app, &id_of(&config)).await["configData"], doc);
    assert_stored_nowhere(app, &["deep-secret"], "level").await;

    // Far deeper than any config: refused as the caller's mistake, not a crash.
    let deep = format!(
        "{}{}",
        "{\"a\":".repeat(5000),
        "1".to_owned() + &"}".repeat(5000)
    );
    let body = format!(
        "{{\"query\": {}, \"variables\": {{\"i\": {{\"name\": \"too deep\", \"configData\": {deep}}}}}}}",
        Value::String(create_query())
    );
    let (status, json) = post_raw(app, body).await;
    assert!(!status.is_server_error(), "{status}: {json}");
    assert_eq!(
        json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{json}"
    );
    assert_eq!(stored_rows(app).await, 1);
}

// ---------------------------------------------------------------------------------------
// Bad input: the right code, and nothing stored.

async fn config_data_that_is_not_an_object_is_refused_and_nothing_is_stored(app: &TestApp) {
    for data in [
        json!([1, 2]),
        json!("a string"),
        json!(42),
        json!(true),
        Value::Null,
    ] {
        let res = create(app, json!({ "name": "not an object", "configData": data })).await;
        assert_code(&res, "BAD_USER_INPUT");
        assert!(
            res.status.is_success() || res.status == StatusCode::BAD_REQUEST,
            "{}",
            res.status
        );
    }
    assert_eq!(total_count(app).await, 0);
    assert_eq!(stored_rows(app).await, 0);

    let config = created(app, json!({ "name": "object", "configData": { "a": 1 } })).await;
    let res = update(app, &id_of(&config), json!({ "configData": [] })).await;
    assert_code(&res, "BAD_USER_INPUT");
    assert_eq!(
        read(app, &id_of(&config)).await,
        config,
        "the refused update changed nothing"
    );
}

async fn an_empty_or_over_long_name_is_refused(app: &TestApp) {
    for name in [String::new(), "   ".into(), "x".repeat(201)] {
        let res = create(app, json!({ "name": name, "configData": {} })).await;
        assert_code(&res, "BAD_USER_INPUT");
        assert!(res.message().contains("name"), "{}", res.message());
    }
    let missing = create(app, json!({ "configData": {} })).await;
    assert_code(&missing, "BAD_USER_INPUT");
    assert_eq!(stored_rows(app).await, 0);

    let longest = created(app, json!({ "name": "y".repeat(200), "configData": {} })).await;
    assert_eq!(
        longest["name"].as_str().unwrap().len(),
        200,
        "200 characters are allowed"
    );
    let res = update(app, &id_of(&longest), json!({ "name": "" })).await;
    assert_code(&res, "BAD_USER_INPUT");
    assert_eq!(read(app, &id_of(&longest)).await, longest);
    let res = create(
        app,
        json!({ "name": "long description", "description": "d".repeat(4001), "configData": {} }),
    )
    .await;
    assert_code(&res, "BAD_USER_INPUT");
    assert_eq!(stored_rows(app).await, 1);
}

async fn an_enc_value_that_does_not_decrypt_is_refused_naming_the_path_but_not_the_value(
    app: &TestApp,
) {
    let foreign = encrypt_value(
        &Keyring::parse(&Keyring::generate_key()).unwrap(),
        "foreign-secret",
    );
    let bad_values = [
        foreign.clone(),
        "enc:not-a-fernet-token".to_owned(),
        // Someone prefixed plaintext by hand: the secret must not come back in the error.
        "enc:pasted-plaintext-secret".to_owned(),
        "enc:".to_owned(),
    ];
    for bad in &bad_values {
        let res = create(
            app,
            json!({ "name": "bad enc", "configData": provider_doc(bad) }),
        )
        .await;
        assert_code(&res, "BAD_USER_INPUT");
        let message = res.message();
        assert!(
            message.contains("providers[0].config.api_key"),
            "names the path: {message}"
        );
        let payload = bad.trim_start_matches("enc:");
        if !payload.is_empty() {
            assert!(
                !res.body.to_string().contains(payload),
                "never echoes the value: {}",
                res.body
            );
        }
    }
    assert_eq!(total_count(app).await, 0);
    assert_eq!(stored_rows(app).await, 0);

    let config = created(
        app,
        json!({ "name": "good", "configData": provider_doc("good-secret") }),
    )
    .await;
    let res = update(
        app,
        &id_of(&config),
        json!({ "configData": provider_doc(&foreign), "name": "changed" }),
    )
    .await;
    assert_code(&res, "BAD_USER_INPUT");
    assert_eq!(
        read(app, &id_of(&config)).await,
        config,
        "the refused update changed nothing"
    );
    assert_stored_nowhere(
        app,
        &["pasted-plaintext-secret", "not-a-fernet-token", &foreign],
        api_key_of(&config),
    )
    .await;
}

async fn an_unknown_id_reads_as_null_and_cannot_be_changed(app: &TestApp) {
    created(app, json!({ "name": "exists", "configData": {} })).await;
    let unknown = Uuid::new_v4().to_string();
    assert_eq!(read(app, &unknown).await, Value::Null);
    assert_eq!(reveal(app, &unknown).await, Value::Null);
    assert_code(
        &update(app, &unknown, json!({ "name": "x" })).await,
        "NOT_FOUND",
    );
    let res = app
        .gql(
            "mutation($id: ID!) { deleteConfig(id: $id) }",
            json!({ "id": unknown }),
        )
        .await;
    assert_code(&res, "NOT_FOUND");
    assert_eq!(stored_rows(app).await, 1);
}

async fn a_malformed_id_reads_as_null_and_is_never_internal(app: &TestApp) {
    for id in [
        "not-a-uuid",
        "",
        "1",
        "' OR 1=1 --",
        "00000000-0000-0000-0000-00000000000g",
    ] {
        let res = app
            .gql(
                "query($id: ID!) { config(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(res.data("config"), &Value::Null, "{id}");
        let res = app
            .gql(
                "query($id: ID!) { config(id: $id, decrypt: true) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(res.data("config"), &Value::Null, "{id}");
        for res in [
            update(app, id, json!({ "name": "x" })).await,
            app.gql(
                "mutation($id: ID!) { deleteConfig(id: $id) }",
                json!({ "id": id }),
            )
            .await,
        ] {
            assert!(
                matches!(res.code(), Some("NOT_FOUND" | "BAD_USER_INPUT")),
                "{id}: {}",
                res.body
            );
            assert!(!res.status.is_server_error(), "{id}: {}", res.status);
        }
    }
}

async fn post_raw(app: &TestApp, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

async fn a_body_that_is_not_a_graphql_request_is_a_400_bad_user_input(app: &TestApp) {
    for body in [
        "{not json",
        "",
        "[1, 2",
        "{\"query\": 42}",
        "\"just a string\"",
    ] {
        let (status, json) = post_raw(app, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {json}");
        assert_eq!(
            json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body:?}: {json}"
        );
    }
    // Valid JSON, broken GraphQL: still the caller's mistake.
    for query in [
        "{ configs(",
        "{ noSuchField }",
        "mutation { createConfig(input: {}) { id } }",
    ] {
        let res = app.gql(query, json!({})).await;
        assert_code(&res, "BAD_USER_INPUT");
        assert!(!res.status.is_server_error());
    }
    assert_eq!(stored_rows(app).await, 0);
}

async fn a_body_over_the_limit_is_a_413_bad_user_input(app: &TestApp) {
    let small = TestApp::spawn_with(app.kind, |s| {
        s.limits.max_body_bytes = 8192;
        s.limits.max_config_bytes = 1024;
    })
    .await;
    let big = json!({
        "query": create_query(),
        "variables": { "i": { "name": "too big", "configData": { "blob": "x".repeat(16_384) } } }
    });
    let (status, body) = post_raw(&small, big.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("8192"),
        "names the limit: {body}"
    );
    // A body within limits whose configData is over the document limit.
    let res = create(
        &small,
        json!({ "name": "big document", "configData": { "blob": "x".repeat(2048) } }),
    )
    .await;
    assert_code(&res, "BAD_USER_INPUT");
    assert!(
        res.message().contains("1024"),
        "names the limit: {}",
        res.message()
    );
    assert_eq!(stored_rows(&small).await, 0);
    // Under the limits the same server works.
    let fits = created(
        &small,
        json!({ "name": "fits", "configData": { "blob": "x".repeat(100) } }),
    )
    .await;
    assert_eq!(fits["name"], "fits");
    assert_eq!(stored_rows(&small).await, 1);
    small.stop().await;
}

async fn a_missing_or_wrong_token_is_a_401_unauthenticated(app: &TestApp) {
    let create_q = create_query();
    let input =
        json!({ "i": { "name": "intruder", "configData": provider_doc("intruder-secret") } });
    for token in [
        None,
        Some("wrong"),
        Some("kw_unknown0000000000000000000000000000000000"),
    ] {
        let res = app.gql_as(token, &create_q, input.clone()).await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "{token:?}: {}",
            res.body
        );
        assert_code(&res, "UNAUTHENTICATED");
        assert_eq!(res.body["data"], Value::Null);
    }
    // Not a bearer scheme at all.
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(
            "authorization",
            format!(
                "Basic {}",
                STANDARD.encode(format!("admin:{}", app.admin_token))
            ),
        )
        .json(&json!({ "query": "{ me { name } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(stored_rows(app).await, 0);
    assert_stored_nowhere(app, &["intruder-secret", "intruder"], "auth.denied").await;
}

async fn health_readiness_graphiql_and_request_ids_are_served(app: &TestApp) {
    let get = |path: &'static str| async move {
        app.client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("the server answers")
    };
    let healthz = get("/healthz").await;
    assert_eq!(healthz.status(), StatusCode::OK);
    assert!(healthz.headers().contains_key("x-request-id"));
    let readyz = get("/readyz").await;
    assert_eq!(readyz.status(), StatusCode::OK);
    let ready: Value = readyz.json().await.expect("JSON");
    assert_eq!(ready["database"], "ok", "{ready}");

    let graphiql = get("/graphql").await;
    assert_eq!(graphiql.status(), StatusCode::OK);
    let content_type = graphiql.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = graphiql.text().await.unwrap();
    assert!(
        html.to_lowercase().contains("graphiql"),
        "the GraphiQL page"
    );

    let res = app.gql("{ me { name role } }", json!({})).await;
    assert_eq!(res.data("me")["role"], "ADMIN");
    let id = res
        .headers
        .get("x-request-id")
        .expect("an x-request-id")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!id.is_empty());
    let next = app.gql("{ me { name } }", json!({})).await;
    assert_ne!(
        next.headers["x-request-id"].to_str().unwrap(),
        id,
        "a new id per request"
    );
    // A caller's own request id is kept.
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&app.admin_token)
        .header("x-request-id", "trace-me-123")
        .json(&json!({ "query": "{ me { name } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-123");
}

async fn a_config_keeps_its_name_description_tenant_and_tags(app: &TestApp) {
    let config = created(
        app,
        json!({ "name": "  Described  ", "description": "for the demo", "tags": ["a", "b"], "tenant": "acme", "configData": {} }),
    )
    .await;
    assert_eq!(config["name"], "Described", "names are trimmed");
    assert_eq!(config["description"], "for the demo");
    assert_eq!(config["tenant"], "acme");
    assert_eq!(config["tags"], json!(["a", "b"]));
    assert_eq!(config["version"], 1);
    assert_eq!(config["encrypted"], true);
    assert_eq!(config["createdAt"], config["updatedAt"]);
    assert_eq!(read(app, &id_of(&config)).await, config);
    let default = created(app, json!({ "name": "no tenant", "configData": {} })).await;
    assert_eq!(default["tenant"], "default");
}

both_databases!(
    a_value_encrypted_by_the_app_is_stored_exactly_as_sent,
    plaintext_sent_by_a_service_is_encrypted_before_it_is_stored,
    the_default_read_returns_enc_values_and_says_encrypted,
    decrypt_true_returns_plaintext_and_says_not_encrypted,
    no_plaintext_secret_is_stored_anywhere,
    an_update_bumps_the_version_and_replaces_the_whole_document,
    a_stored_document_sent_back_unchanged_stays_the_same,
    a_stale_expected_version_is_a_conflict_and_changes_nothing,
    deleting_a_config_removes_it_and_its_tags,
    pages_list_every_config_once_newest_first_in_a_stable_order,
    search_matches_names_case_insensitively_and_takes_wildcards_literally,
    the_tag_filter_returns_only_configs_carrying_that_tag,
    sensitive_keys_are_recognised_in_any_case_and_spelling,
    every_string_under_a_credentials_object_is_encrypted_at_any_depth,
    numbers_booleans_null_and_empty_strings_are_stored_untouched,
    environment_references_are_stored_as_they_are,
    sensitive_paths_name_every_encrypted_value,
    a_sealed_value_is_stored_encrypted_and_decrypts_to_the_original,
    a_sealed_value_that_cannot_be_opened_is_refused_naming_the_path,
    config_data_that_is_not_an_object_is_refused_and_nothing_is_stored,
    an_empty_or_over_long_name_is_refused,
    an_enc_value_that_does_not_decrypt_is_refused_naming_the_path_but_not_the_value,
    an_unknown_id_reads_as_null_and_cannot_be_changed,
    a_malformed_id_reads_as_null_and_is_never_internal,
    a_body_that_is_not_a_graphql_request_is_a_400_bad_user_input,
    a_body_over_the_limit_is_a_413_bad_user_input,
    a_missing_or_wrong_token_is_a_401_unauthenticated,
    health_readiness_graphiql_and_request_ids_are_served,
    a_config_keeps_its_name_description_tenant_and_tags,
    names_and_values_in_any_script_are_stored_and_found,
    a_nul_character_is_the_callers_mistake_never_an_internal_error,
    a_deep_document_is_sealed_and_an_absurdly_deep_one_is_refused,
);
