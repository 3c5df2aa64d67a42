//! Envelope encryption (`KEYWARD_TENANT_KEYS`): each tenant's values under its own data
//! key, wrapped by the master keyring; another tenant's ciphertext refused; audited export
//! of a data key for app-side encryption; rotation that rewraps data keys and moves values,
//! after which an old master key can go; and a tenant's own key rotated after a leak.
//!
//! Each test starts a server with the default (off) on a fresh database, then one with
//! tenant keys on over the same database, so switching the mode on is tested every time.

use keyward::crypto::{Keyring, decrypt_value, encrypt_value};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tests::{TestApp, both_databases};

fn ring(keys: &[&SecretString]) -> Keyring {
    let joined = keys
        .iter()
        .map(|k| k.expose_secret())
        .collect::<Vec<_>>()
        .join(",");
    Keyring::parse(&SecretString::from(joined)).expect("a keyring")
}

fn document(secret: &str) -> Value {
    json!({ "providers": [{ "module": "provider-echo", "config": { "api_key": secret, "model": "echo" } }] })
}

/// The stored `enc:` value of a config's api_key, as `decrypt: false` returns it.
fn stored_key(config: &Value) -> String {
    config["configData"]["providers"][0]["config"]["api_key"]
        .as_str()
        .expect("an api_key")
        .to_owned()
}

async fn create_in(app: &TestApp, tenant: &str, name: &str, data: Value) -> Value {
    app.gql(
        "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id tenant configData } }",
        json!({ "i": { "name": name, "tenant": tenant, "configData": data } }),
    )
    .await
    .data("createConfig")
    .clone()
}

/// A tenant's data key, exported: its id, its text, and a ring of it.
async fn export(app: &TestApp, tenant: &str) -> (String, String, Keyring) {
    let res = app
        .gql(
            "mutation($t: String!) { exportTenantKey(tenant: $t, reason: \"app-side encryption\") { tenant keyId key } }",
            json!({ "t": tenant }),
        )
        .await;
    let out = res.data("exportTenantKey");
    assert_eq!(out["tenant"], tenant);
    let text = out["key"].as_str().expect("a key").to_owned();
    let key = ring(&[&SecretString::from(text.clone())]);
    (out["keyId"].as_str().unwrap().to_owned(), text, key)
}

async fn reveal(app: &TestApp, id: &Value) -> Value {
    app.gql(
        "query($id: ID!) { config(id: $id, decrypt: true) { configData } }",
        json!({ "id": id }),
    )
    .await
    .data("config")["configData"]
        .clone()
}

async fn status(app: &TestApp) -> Value {
    app.gql(
        "{ keyringStatus { keys { fingerprint values dataKeys } unreadableValues tenantKeysEnabled
           tenantKeys { tenant keyId current values wrappedBy } } }",
        json!({}),
    )
    .await
    .data("keyringStatus")
    .clone()
}

async fn rotate(app: &TestApp) -> Value {
    app.gql(
        "mutation { rotateEncryptionKey { reencrypted alreadyCurrent failed rewrappedKeys } }",
        json!({}),
    )
    .await
    .data("rotateEncryptionKey")
    .clone()
}

async fn with_tenant_keys(app: &TestApp) -> TestApp {
    TestApp::spawn_sharing_with(app, |s| s.store.tenant_keys = true).await
}

async fn each_tenant_has_its_own_data_key_and_the_master_key_alone_opens_nothing(off: &TestApp) {
    let app = with_tenant_keys(off).await;
    let master = ring(&[&app.key]);
    let a = create_in(&app, "a", "a1", document("sk-tenant-a")).await;
    let b = create_in(&app, "b", "b1", document("sk-tenant-b")).await;
    let (a_id, a_text, a_key) = export(&app, "a").await;
    let (b_id, b_text, b_key) = export(&app, "b").await;
    assert_ne!(a_id, b_id);

    let (a_value, b_value) = (stored_key(&a), stored_key(&b));
    assert!(a_value.starts_with("enc:gAAAAA"), "{a_value}");
    assert!(decrypt_value(&master, &a_value).is_err());
    assert_eq!(
        decrypt_value(&a_key, &a_value).unwrap().expose_secret(),
        "sk-tenant-a"
    );
    assert!(decrypt_value(&a_key, &b_value).is_err());
    assert_eq!(
        decrypt_value(&b_key, &b_value).unwrap().expose_secret(),
        "sk-tenant-b"
    );
    assert_eq!(reveal(&app, &a["id"]).await, document("sk-tenant-a"));

    // The data keys are stored wrapped: neither their text nor a secret is in the database.
    let dump = app.dump_database().await;
    assert!(
        !dump.contains(&a_text) && !dump.contains(&b_text),
        "a data key in the clear"
    );
    assert!(!dump.contains("sk-tenant-a") && !dump.contains("sk-tenant-b"));

    // A session decrypts with the tenant's ring.
    let session = app
        .gql(
            "mutation($c: ID!) { createSession(input: { configId: $c }) { id } }",
            json!({ "c": a["id"] }),
        )
        .await;
    let sid = session.data("createSession")["id"].clone();
    let reply = app
        .gql(
            "mutation($s: ID!) { sendMessage(sessionId: $s, content: \"hello\") { content } }",
            json!({ "s": sid }),
        )
        .await;
    assert!(
        reply.data("sendMessage")["content"]
            .as_str()
            .unwrap()
            .contains("hello")
    );

    let s = status(&app).await;
    assert_eq!(s["tenantKeysEnabled"], true);
    assert_eq!(s["keys"][0]["values"], 0, "{s}");
    assert_eq!(s["tenantKeys"].as_array().unwrap().len(), 2, "{s}");
    for key in s["tenantKeys"].as_array().unwrap() {
        // a: its api_key and the session's two messages; b: its api_key.
        let expected = if key["tenant"] == "a" { 3 } else { 1 };
        assert_eq!(key["values"], expected, "{s}");
        assert_eq!(key["current"], true);
        assert_eq!(key["wrappedBy"], s["keys"][0]["fingerprint"]);
    }
    app.stop().await;
}

async fn app_side_values_must_be_under_the_configs_own_tenant_keys(off: &TestApp) {
    let app = with_tenant_keys(off).await;
    let member_a = app.create_token("member-a", "MEMBER", Some("a")).await;
    let (_, _, a_key) = export(&app, "a").await;
    let (_, _, b_key) = export(&app, "b").await;
    let master = ring(&[&app.key]);

    // Encrypted app-side with the exported key (what `keyward encrypt --key` does).
    let mine = encrypt_value(&a_key, "sk-app-side");
    let created = app.create_config(&member_a, "mine", document(&mine)).await;
    assert_eq!(stored_key(&created), mine, "stored as sent");
    assert_eq!(reveal(&app, &created["id"]).await, document("sk-app-side"));

    for (what, foreign) in [
        ("another tenant's", encrypt_value(&b_key, "sk-stolen")),
        ("the master keyring's", encrypt_value(&master, "sk-master")),
    ] {
        let res = app
            .gql_as(
                Some(&member_a),
                "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id } }",
                json!({ "i": { "name": "theirs", "configData": document(&foreign) } }),
            )
            .await;
        assert_eq!(res.code(), Some("BAD_USER_INPUT"), "{what}: {}", res.body);
        assert!(
            res.message().contains("providers[0].config.api_key"),
            "{}",
            res.message()
        );
        assert!(!res.body.to_string().contains(&foreign));
    }

    // An editor sending a stored value back unchanged keeps it, whatever key it is under.
    let updated = app
        .gql_as(
            Some(&member_a),
            "mutation($id: ID!, $i: UpdateConfigInput!) { updateConfig(id: $id, input: $i) { version configData } }",
            json!({ "id": created["id"], "i": { "configData": document(&mine), "expectedVersion": 1 } }),
        )
        .await;
    assert_eq!(updated.data("updateConfig")["version"], 2);
    assert_eq!(stored_key(updated.data("updateConfig")), mine);
    app.stop().await;
}

async fn exporting_a_data_key_is_audited_admin_only_and_needs_tenant_keys_on(off: &TestApp) {
    let res = off
        .gql(
            "mutation { exportTenantKey(tenant: \"a\") { key } }",
            json!({}),
        )
        .await;
    assert_eq!(res.code(), Some("BAD_USER_INPUT"), "{}", res.body);
    assert!(res.message().contains("KEYWARD_TENANT_KEYS"));

    let app = with_tenant_keys(off).await;
    let member = app.create_token("m", "MEMBER", Some("a")).await;
    let res = app
        .gql_as(
            Some(&member),
            "mutation { exportTenantKey(tenant: \"a\") { key } }",
            json!({}),
        )
        .await;
    assert_eq!(res.code(), Some("FORBIDDEN"), "{}", res.body);
    let res = app
        .gql(
            "mutation { exportTenantKey(tenant: \"not a tenant\") { key } }",
            json!({}),
        )
        .await;
    assert_eq!(res.code(), Some("BAD_USER_INPUT"), "{}", res.body);

    let (key_id, _, _) = export(&app, "a").await;
    let events = app
        .gql(
            "{ auditEvents(action: \"key.export\") { nodes { tenant success detail } } }",
            json!({}),
        )
        .await;
    let nodes = events.data("auditEvents")["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["tenant"], "a");
    assert_eq!(nodes[0]["detail"]["keyId"], key_id.as_str());
    assert_eq!(nodes[0]["detail"]["reason"], "app-side encryption");
    app.stop().await;
}

async fn rotation_rewraps_data_keys_and_moves_values_then_the_old_master_key_can_go(off: &TestApp) {
    // Written before tenant keys were on: under the master key.
    let legacy = create_in(off, "a", "legacy", document("sk-legacy")).await;
    let app = with_tenant_keys(off).await;
    let a = create_in(&app, "a", "a1", document("sk-a")).await;
    let b = create_in(&app, "b", "b1", document("sk-b")).await;
    let before = status(&app).await;
    assert_eq!(before["keys"][0]["values"], 1, "{before}");
    assert_eq!(before["keys"][0]["dataKeys"], 2, "{before}");
    app.stop().await;

    let new_master = Keyring::generate_key();
    let both = SecretString::from(format!(
        "{},{}",
        new_master.expose_secret(),
        off.key.expose_secret()
    ));
    let rotating = TestApp::spawn_sharing_with(off, |s| {
        s.store.tenant_keys = true;
        s.store.encryption_key = Some(both.clone());
    })
    .await;
    assert_eq!(
        rotate(&rotating).await,
        json!({ "reencrypted": 1, "alreadyCurrent": 2, "failed": 0, "rewrappedKeys": 2 })
    );
    let after = status(&rotating).await;
    assert_eq!(
        (&after["keys"][0]["dataKeys"], &after["keys"][1]["dataKeys"]),
        (&json!(2), &json!(0)),
        "{after}"
    );
    assert_eq!(
        (&after["keys"][0]["values"], &after["keys"][1]["values"]),
        (&json!(0), &json!(0)),
        "{after}"
    );
    for key in after["tenantKeys"].as_array().unwrap() {
        assert_eq!(key["wrappedBy"], after["keys"][0]["fingerprint"], "{after}");
    }
    let a_values: u64 = after["tenantKeys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["tenant"] == "a")
        .map(|k| k["values"].as_u64().unwrap())
        .sum();
    assert_eq!(
        a_values, 2,
        "the legacy value moved under a's data key: {after}"
    );
    rotating.stop().await;

    // The old master key removed: every value still opens.
    let only_new = SecretString::from(new_master.expose_secret().to_owned());
    let fresh = TestApp::spawn_sharing_with(off, |s| {
        s.store.tenant_keys = true;
        s.store.encryption_key = Some(only_new.clone());
    })
    .await;
    assert_eq!(reveal(&fresh, &legacy["id"]).await, document("sk-legacy"));
    assert_eq!(reveal(&fresh, &a["id"]).await, document("sk-a"));
    assert_eq!(reveal(&fresh, &b["id"]).await, document("sk-b"));
    fresh.stop().await;

    // Switched off again: a rotation brings every value back under the master key, where
    // any Fernet implementation holding CONFIG_ENCRYPTION_KEY opens it.
    let back = TestApp::spawn_sharing_with(off, |s| {
        s.store.encryption_key = Some(only_new.clone());
    })
    .await;
    assert_eq!(rotate(&back).await["reencrypted"], 3);
    let master = ring(&[&only_new]);
    let stored = back
        .gql(
            "query($id: ID!) { config(id: $id) { configData } }",
            json!({ "id": b["id"] }),
        )
        .await;
    assert_eq!(
        decrypt_value(&master, &stored_key(stored.data("config")))
            .unwrap()
            .expose_secret(),
        "sk-b"
    );
    back.stop().await;
}

async fn a_tenants_key_rotated_after_a_leak_no_longer_opens_its_values(off: &TestApp) {
    let app = with_tenant_keys(off).await;
    let a = create_in(&app, "a", "a1", document("sk-a")).await;
    let b = create_in(&app, "b", "b1", document("sk-b")).await;
    let (leaked_id, _, leaked) = export(&app, "a").await;
    // Another process that has a's ring cached.
    let other = TestApp::spawn_sharing_with(&app, |s| s.store.tenant_keys = true).await;
    assert_eq!(reveal(&other, &a["id"]).await, document("sk-a"));

    let res = app
        .gql(
            "mutation { rotateTenantKey(tenant: \"a\") { tenant keyId rotation { reencrypted failed } } }",
            json!({}),
        )
        .await;
    let out = res.data("rotateTenantKey");
    assert_ne!(out["keyId"], leaked_id.as_str());
    assert_eq!(out["rotation"], json!({ "reencrypted": 1, "failed": 0 }));

    let stored = app
        .gql(
            "query($id: ID!) { config(id: $id) { configData } }",
            json!({ "id": a["id"] }),
        )
        .await;
    assert!(decrypt_value(&leaked, &stored_key(stored.data("config"))).is_err());
    // The other process opens the value under the new key at once (its cache is stale).
    assert_eq!(reveal(&other, &a["id"]).await, document("sk-a"));
    assert_eq!(reveal(&app, &b["id"]).await, document("sk-b"));

    let s = status(&app).await;
    let a_keys: Vec<&Value> = s["tenantKeys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["tenant"] == "a")
        .collect();
    assert_eq!(a_keys.len(), 2, "{s}");
    assert_eq!(
        (&a_keys[0]["current"], &a_keys[0]["values"]),
        (&json!(true), &json!(1))
    );
    assert_eq!(a_keys[1]["keyId"], leaked_id.as_str());
    assert_eq!(
        (&a_keys[1]["current"], &a_keys[1]["values"]),
        (&json!(false), &json!(0))
    );
    other.stop().await;
    app.stop().await;
}

/// Killed after its first batch and run again: every config readable midway and after,
/// and the old master key can go.
async fn a_rotation_into_tenant_keys_stopped_midway_resumes(off: &TestApp) {
    let count = 150;
    let mut ids = Vec::new();
    for i in 0..count {
        let tenant = ["a", "b", "c"][i % 3];
        ids.push(
            create_in(off, tenant, &format!("c{i}"), document(&format!("sk-{i}"))).await["id"]
                .clone(),
        );
    }
    let new_master = Keyring::generate_key();
    let both = SecretString::from(format!(
        "{},{}",
        new_master.expose_secret(),
        off.key.expose_secret()
    ));
    let app = TestApp::spawn_sharing_with(off, |s| {
        s.store.tenant_keys = true;
        s.store.encryption_key = Some(both.clone());
    })
    .await;
    assert_eq!(app.rotate_and_die_after_the_first_batch().await, 100);

    let midway = status(&app).await;
    let under_master = midway["keys"][1]["values"].as_u64().unwrap();
    assert!(under_master > 0 && under_master < count as u64, "{midway}");
    for (i, id) in ids.iter().enumerate().step_by(7) {
        assert_eq!(
            reveal(&app, id).await,
            document(&format!("sk-{i}")),
            "readable midway"
        );
    }
    let resumed = rotate(&app).await;
    assert_eq!(resumed["reencrypted"].as_u64().unwrap(), under_master);
    assert_eq!(resumed["failed"], 0);
    let after = status(&app).await;
    assert_eq!(
        (&after["keys"][1]["values"], &after["keys"][1]["dataKeys"]),
        (&json!(0), &json!(0)),
        "{after}"
    );
    app.stop().await;

    let only_new = SecretString::from(new_master.expose_secret().to_owned());
    let fresh = TestApp::spawn_sharing_with(off, |s| {
        s.store.tenant_keys = true;
        s.store.encryption_key = Some(only_new.clone());
    })
    .await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(reveal(&fresh, id).await, document(&format!("sk-{i}")));
    }
    fresh.stop().await;
}

/// A burst of first writes in a new tenant makes one data key, not one per writer.
async fn concurrent_first_writes_share_one_data_key(off: &TestApp) {
    let app = with_tenant_keys(off).await;
    let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let writes = names
        .iter()
        .map(|name| create_in(&app, "burst", name, document("sk-burst")));
    let created = futures::future::join_all(writes).await;
    let s = status(&app).await;
    let keys: Vec<&Value> = s["tenantKeys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["tenant"] == "burst")
        .collect();
    assert_eq!(keys.len(), 1, "{s}");
    assert_eq!(keys[0]["values"], 20, "{s}");
    assert_eq!(reveal(&app, &created[7]["id"]).await, document("sk-burst"));
    app.stop().await;
}

both_databases!(
    concurrent_first_writes_share_one_data_key,
    a_rotation_into_tenant_keys_stopped_midway_resumes,
    each_tenant_has_its_own_data_key_and_the_master_key_alone_opens_nothing,
    app_side_values_must_be_under_the_configs_own_tenant_keys,
    exporting_a_data_key_is_audited_admin_only_and_needs_tenant_keys_on,
    rotation_rewraps_data_keys_and_moves_values_then_the_old_master_key_can_go,
    a_tenants_key_rotated_after_a_leak_no_longer_opens_its_values,
);
