//! Key management: the keyring check at start-up, online rotation that loses nothing, key
//! usage counts, and sealed boxes made by other implementations (PyNaCl) and by the
//! `keyward-seal` crate the console uses.

use keyward::crypto::Keyring;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tests::{Db, TestApp, both_databases};

fn keyring(keys: &[&SecretString]) -> SecretString {
    SecretString::from(
        keys.iter()
            .map(|k| k.expose_secret())
            .collect::<Vec<_>>()
            .join(","),
    )
}

async fn status(app: &TestApp) -> Value {
    let res = app
        .gql(
            "{ keyringStatus { keys { position fingerprint primary values } unreadableValues } }",
            json!({}),
        )
        .await;
    res.data("keyringStatus").clone()
}

async fn rotate(app: &TestApp) -> Value {
    app.gql(
        "mutation { rotateEncryptionKey { reencrypted alreadyCurrent failed } }",
        json!({}),
    )
    .await
    .data("rotateEncryptionKey")
    .clone()
}

async fn reveal(app: &TestApp, id: &Value) -> Value {
    let res = app
        .gql(
            "query($id: ID!) { config(id: $id, decrypt: true) { configData } }",
            json!({ "id": id }),
        )
        .await;
    res.data("config")["configData"].clone()
}

fn document(i: usize) -> Value {
    json!({ "providers": [{ "module": "provider-echo", "config": { "api_key": format!("sk-rot-{i}"), "model": "echo" } }],
            "db": { "password": format!("pw-{i}") } })
}

async fn rotation_moves_every_value_to_the_new_primary_and_then_the_old_key_can_go(old: &TestApp) {
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            old.create_config(&old.admin_token, &format!("c{i}"), document(i))
                .await["id"]
                .clone(),
        );
    }
    let before = status(old).await;
    assert_eq!(before["keys"][0]["values"], 6);

    // Restart with a new primary in front of the old key.
    let new_key = Keyring::generate_key();
    let both = keyring(&[&new_key, &old.key]);
    let rotating =
        TestApp::spawn_sharing_with(old, |s| s.store.encryption_key = Some(both.clone())).await;
    let during = status(&rotating).await;
    assert_eq!(during["keys"][0]["values"], 0, "{during}");
    assert_eq!(during["keys"][1]["values"], 6, "{during}");
    assert_eq!(
        during["keys"][1]["fingerprint"], before["keys"][0]["fingerprint"],
        "fingerprints are stable"
    );

    assert_eq!(
        rotate(&rotating).await,
        json!({ "reencrypted": 6, "alreadyCurrent": 0, "failed": 0 })
    );
    assert_eq!(
        rotate(&rotating).await,
        json!({ "reencrypted": 0, "alreadyCurrent": 6, "failed": 0 })
    );
    let after = status(&rotating).await;
    assert_eq!(
        (
            after["keys"][0]["values"].clone(),
            after["keys"][1]["values"].clone()
        ),
        (json!(6), json!(0))
    );
    let events = rotating
        .gql(
            "{ auditEvents(action: \"key.rotate\") { totalCount nodes { success detail } } }",
            json!({}),
        )
        .await;
    assert_eq!(events.data("auditEvents")["totalCount"], 2);
    rotating.stop().await;

    // The old key removed: everything still reads, and versions did not move.
    let only_new = keyring(&[&new_key]);
    let fresh =
        TestApp::spawn_sharing_with(old, |s| s.store.encryption_key = Some(only_new.clone())).await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(reveal(&fresh, id).await, document(i));
    }
    let listed = fresh
        .gql("{ configs { nodes { version } } }", json!({}))
        .await;
    assert!(
        listed.data("configs")["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["version"] == 1)
    );
    fresh.stop().await;
}

async fn a_keyring_that_cannot_read_the_database_is_refused_before_anything_is_written(
    app: &TestApp,
) {
    app.create_config(&app.admin_token, "c", document(0)).await;
    let before = app.dump_database().await;
    let mut settings = app.settings.clone();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.store.encryption_key = Some(Keyring::generate_key());
    let err = keyward::Application::build(settings)
        .await
        .err()
        .expect("a foreign keyring is refused");
    let message = err.to_string();
    assert!(
        message.contains("CONFIG_ENCRYPTION_KEY") && message.contains("this database"),
        "{message}"
    );
    assert_eq!(app.dump_database().await, before, "nothing was written");
}

async fn a_rotation_stopped_midway_resumes_and_every_config_stays_readable(old: &TestApp) {
    // More configs than one batch, so stopping after the first batch leaves work to do.
    let count = 230;
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(
            old.create_config(&old.admin_token, &format!("c{i}"), document(i))
                .await["id"]
                .clone(),
        );
    }
    let new_key = Keyring::generate_key();
    let both = keyring(&[&new_key, &old.key]);
    let app =
        TestApp::spawn_sharing_with(old, |s| s.store.encryption_key = Some(both.clone())).await;
    assert_eq!(app.rotate_and_die_after_the_first_batch().await, 100);

    let midway = status(&app).await;
    let (current, old_values) = (
        midway["keys"][0]["values"].as_u64().unwrap(),
        midway["keys"][1]["values"].as_u64().unwrap(),
    );
    assert!(current >= 200 && old_values > 0, "stopped midway: {midway}");
    assert_eq!(current + old_values, 2 * count as u64);
    for (i, id) in ids.iter().enumerate().step_by(37) {
        assert_eq!(reveal(&app, id).await, document(i), "readable midway");
    }

    let resumed = rotate(&app).await;
    assert_eq!(resumed["reencrypted"].as_u64().unwrap(), old_values);
    assert_eq!(resumed["alreadyCurrent"].as_u64().unwrap(), current);
    assert_eq!(status(&app).await["keys"][1]["values"], 0);
    app.stop().await;

    let only_new = keyring(&[&new_key]);
    let fresh =
        TestApp::spawn_sharing_with(old, |s| s.store.encryption_key = Some(only_new.clone())).await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(reveal(&fresh, id).await, document(i));
    }
    fresh.stop().await;
}

async fn writes_during_a_rotation_are_never_lost(old: &TestApp) {
    let mut ids = Vec::new();
    for i in 0..150 {
        ids.push(
            old.create_config(&old.admin_token, &format!("c{i}"), document(i))
                .await["id"]
                .clone(),
        );
    }
    let new_key = Keyring::generate_key();
    let both = keyring(&[&new_key, &old.key]);
    let app =
        TestApp::spawn_sharing_with(old, |s| s.store.encryption_key = Some(both.clone())).await;
    let writer = async {
        for (i, id) in ids.iter().enumerate().step_by(3) {
            let res = app
                .gql(
                    "mutation($id: ID!, $d: JSON!) { updateConfig(id: $id, input: { configData: $d }) { version } }",
                    json!({ "id": id, "d": document(1000 + i) }),
                )
                .await;
            assert_eq!(res.data("updateConfig")["version"], 2);
        }
    };
    let (rotation, ()) = tokio::join!(rotate(&app), writer);
    assert_eq!(rotation["failed"], 0);
    for (i, id) in ids.iter().enumerate() {
        let expected = if i % 3 == 0 {
            document(1000 + i)
        } else {
            document(i)
        };
        assert_eq!(reveal(&app, id).await, expected, "config {i}");
    }
    // Anything written under the old key meanwhile is picked up by another pass.
    rotate(&app).await;
    assert_eq!(status(&app).await["keys"][1]["values"], 0);
    app.stop().await;
}

async fn encryption_key(app: &TestApp) -> Value {
    app.gql("{ encryptionKey { keyId publicKey algorithm } }", json!({}))
        .await
        .data("encryptionKey")
        .clone()
}

/// Stores `{"anything": sealed}` and checks the server opened it: stored as `enc:`, listed
/// as sensitive, and revealed as `plaintext`.
async fn assert_opened_and_stored_encrypted(
    app: &TestApp,
    name: &str,
    sealed: &str,
    plaintext: &str,
) {
    let created = app
        .create_config(&app.admin_token, name, json!({ "anything": sealed }))
        .await;
    assert!(
        created["configData"]["anything"]
            .as_str()
            .unwrap()
            .starts_with("enc:gAAAA")
    );
    assert_eq!(created["sensitivePaths"], json!(["anything"]));
    assert_eq!(reveal(app, &created["id"]).await["anything"], plaintext);
}

async fn values_sealed_by_pynacl_are_opened_and_stored_encrypted(app: &TestApp) {
    let key = encryption_key(app).await;
    let script = "import base64,sys\nfrom nacl.public import PublicKey, SealedBox\n\
        pk = PublicKey(base64.b64decode(sys.argv[1]))\n\
        print(base64.b64encode(SealedBox(pk).encrypt(sys.argv[2].encode())).decode())";
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            key["publicKey"].as_str().unwrap(),
            "sk-sealed-by-pynacl",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "PyNaCl is needed for this test (pip install pynacl; `make test` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = format!(
        "sealed:{}:{}",
        key["keyId"].as_str().unwrap(),
        String::from_utf8(out.stdout).unwrap().trim()
    );
    assert_opened_and_stored_encrypted(app, "sealed", &sealed, "sk-sealed-by-pynacl").await;
}

/// `keyward-seal`, the crate the console seals with in the browser, against the running
/// server's `encryptionKey`: one value, then a whole document as the console sends it.
async fn values_sealed_by_keyward_seal_are_opened_and_stored_encrypted(app: &TestApp) {
    let key = encryption_key(app).await;
    let public = keyward_seal::parse_public_key(key["publicKey"].as_str().unwrap()).unwrap();
    assert_eq!(keyward_seal::fingerprint(&public), key["keyId"]);
    let sealed = keyward_seal::seal(&public, b"sk-sealed-by-keyward-seal");
    assert_opened_and_stored_encrypted(app, "sealed", &sealed, "sk-sealed-by-keyward-seal").await;

    let typed = json!({
        "providers": [{ "module": "provider-echo",
                        "config": { "api_key": "sk-typed-in-the-console", "model": "echo" } }],
        "db": { "credentials": { "user": "u", "port": 5432 } },
        "env": { "token": "${TOKEN}" },
    });
    let mut sent = typed.clone();
    assert_eq!(keyward_seal::seal_secrets(&mut sent, &public), 2);
    assert!(!sent.to_string().contains("sk-typed-in-the-console"));
    let created = app.create_config(&app.admin_token, "document", sent).await;
    let mut paths: Vec<_> = created["sensitivePaths"].as_array().unwrap().clone();
    paths.sort_by_key(|p| p.to_string());
    assert_eq!(
        paths,
        [
            json!("db.credentials.user"),
            json!("providers[0].config.api_key")
        ]
    );
    assert_eq!(reveal(app, &created["id"]).await, typed);
}

both_databases!(
    rotation_moves_every_value_to_the_new_primary_and_then_the_old_key_can_go,
    a_keyring_that_cannot_read_the_database_is_refused_before_anything_is_written,
    a_rotation_stopped_midway_resumes_and_every_config_stays_readable,
    writes_during_a_rotation_are_never_lost,
    values_sealed_by_pynacl_are_opened_and_stored_encrypted,
    values_sealed_by_keyward_seal_are_opened_and_stored_encrypted,
);

#[tokio::test]
async fn rotation_and_key_status_are_for_admins_only() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let member = app.create_token("m", "MEMBER", Some("a")).await;
    for query in [
        "mutation { rotateEncryptionKey { reencrypted } }",
        "{ keyringStatus { unreadableValues } }",
    ] {
        assert_eq!(
            app.gql_as(Some(&member), query, json!({})).await.code(),
            Some("FORBIDDEN"),
            "{query}"
        );
    }
    app.stop().await;
}
