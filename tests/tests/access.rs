//! Issue 3, "who may see what": every operation against every kind of caller, API tokens,
//! the audit trail (through the API and straight from SQL), failing closed when the audit
//! write fails, and the failed-authentication throttle. Every suite runs on SQLite and on
//! PostgreSQL.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, QueryResult, Statement};
use serde_json::{Value, json};
use tests::{Db, Gql, TestApp, both_databases};
use uuid::Uuid;

/// The plaintext secret stored in every test config. It must never come back except from
/// an audited `decrypt: true` read by an ADMIN, and never be stored.
const SECRET: &str = "sk-ant-ACCESS-0123456789-must-stay-encrypted";

const USER_AGENT: &str = "keyward-access-tests/1.0";

fn document() -> Value {
    json!({"providers": [{"module": "provider-echo", "config": {"api_key": SECRET, "model": "echo-1"}}]})
}

/// POSTs a GraphQL operation with extra headers (the harness's `gql_as` sends none).
async fn send(
    app: &TestApp,
    token: Option<&str>,
    query: &str,
    variables: Value,
    headers: &[(&str, &str)],
) -> Gql {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("user-agent", USER_AGENT)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.expect("the server answers");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Gql {
        status,
        headers,
        body,
    }
}

fn request_id(res: &Gql) -> String {
    res.headers
        .get("x-request-id")
        .expect("every response has an x-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Creates a config in `tenant` as the break-glass admin; returns its id.
async fn config_in(app: &TestApp, tenant: &str, name: &str) -> String {
    let res = app
        .gql(
            "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id tenant } }",
            json!({ "i": { "name": name, "tenant": tenant, "configData": document() } }),
        )
        .await;
    assert_eq!(res.data("createConfig")["tenant"], tenant);
    res.data("createConfig")["id"].as_str().unwrap().to_owned()
}

/// Creates a token as the break-glass admin; returns (id, secret).
async fn token_with_id(
    app: &TestApp,
    name: &str,
    role: &str,
    tenant: Option<&str>,
) -> (String, String) {
    let res = app
        .gql(
            "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { token apiToken { id } } }",
            json!({ "i": { "name": name, "role": role, "tenant": tenant } }),
        )
        .await;
    let created = res.data("createApiToken");
    (
        created["apiToken"]["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    )
}

async fn revoke(app: &TestApp, id: &str) {
    let res = app
        .gql(
            "mutation($id: ID!) { revokeApiToken(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(res.data("revokeApiToken"), true);
}

async fn me(app: &TestApp, token: &str) -> Gql {
    app.gql_as(Some(token), "{ me { name role tenant } }", json!({}))
        .await
}

/// Runs raw SQL on the server's database. Placeholders are written `$1`, `$2`, ….
async fn sql(app: &TestApp, query: &str, values: Vec<sea_orm::Value>) -> Vec<QueryResult> {
    let query = match app.kind {
        Db::Sqlite => query.replace('$', "?"),
        Db::Postgres => query.to_owned(),
    };
    let backend = app.db.get_database_backend();
    app.db
        .query_all_raw(Statement::from_sql_and_values(backend, query, values))
        .await
        .expect("the SQL runs")
}

async fn sql_count(app: &TestApp, query: &str, values: Vec<sea_orm::Value>) -> i64 {
    sql(app, query, values).await[0]
        .try_get::<i64>("", "n")
        .expect("a count named n")
}

async fn sql_exec(app: &TestApp, statement: &str) {
    app.db
        .execute_unprepared(statement)
        .await
        .expect("the statement runs");
}

fn uuid(id: &str) -> sea_orm::Value {
    Uuid::parse_str(id).expect("a UUID").into()
}

// ---------------------------------------------------------------------------------------
// The matrix: every query and mutation × every kind of caller.
// ---------------------------------------------------------------------------------------

/// The callers, in the matrix's column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    NoToken,
    /// An ADMIN token, revoked: the strongest credential, dead.
    Revoked,
    MemberA,
    MemberB,
    Admin,
}

const WHO: [Who; 5] = [
    Who::NoToken,
    Who::Revoked,
    Who::MemberA,
    Who::MemberB,
    Who::Admin,
];

/// What a cell must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Data, no error (what data exactly is checked per operation in `check`).
    Data,
    /// `null`, no error: what a missing config answers.
    Null,
    /// HTTP 401, `UNAUTHENTICATED`.
    Unauth,
    Forbidden,
    NotFound,
}
use Expect::{Data, Forbidden, NotFound, Null, Unauth};

/// Every query and mutation that exists. A new one gets a variant, its row in `MATRIX`,
/// and its arms in `Op::field`, `cell` and `check` (the matches are exhaustive, so the
/// compiler lists what is missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Me,
    Config,
    ConfigDecrypt,
    Configs,
    CreateConfig,
    UpdateConfig,
    DeleteConfig,
    AuditEvents,
    ApiTokens,
    CreateApiToken,
    RevokeApiToken,
    EncryptionKey,
    KeyringStatus,
    RotateEncryptionKey,
    ExportTenantKey,
    RotateTenantKey,
    Session,
    Sessions,
    CreateSession,
    SendMessage,
    CloseSession,
    DeleteSession,
}

/// Operations without a row: the subscription goes over the WebSocket, where
/// tests/tests/sessions.rs checks that another tenant's session answers as a missing one.
const NOT_YET_IN_MATRIX: &[&str] = &["streamMessage"];

/// Config reads of another tenant answer `null` and mutations NOT_FOUND, exactly as for a
/// missing config; `decrypt: true` is FORBIDDEN for every MEMBER before anything is looked up.
#[rustfmt::skip]
const MATRIX: &[(Op, [Expect; 5])] = &[
    //                    no token  revoked   member A   member B   admin
    (Op::Me,             [Unauth,   Unauth,   Data,      Data,      Data]),
    (Op::Config,         [Unauth,   Unauth,   Data,      Null,      Data]),
    (Op::ConfigDecrypt,  [Unauth,   Unauth,   Forbidden, Forbidden, Data]),
    (Op::Configs,        [Unauth,   Unauth,   Data,      Data,      Data]),
    (Op::CreateConfig,   [Unauth,   Unauth,   Data,      Data,      Data]),
    (Op::UpdateConfig,   [Unauth,   Unauth,   Data,      NotFound,  Data]),
    (Op::DeleteConfig,   [Unauth,   Unauth,   Data,      NotFound,  Data]),
    (Op::AuditEvents,    [Unauth,   Unauth,   Forbidden, Forbidden, Data]),
    (Op::ApiTokens,      [Unauth,   Unauth,   Forbidden, Forbidden, Data]),
    (Op::CreateApiToken, [Unauth,   Unauth,   Forbidden, Forbidden, Data]),
    (Op::RevokeApiToken, [Unauth,   Unauth,   Forbidden, Forbidden, Data]),
    (Op::EncryptionKey,  [Unauth,   Unauth,   Data,      Data,      Data]),
    (Op::KeyringStatus,  [Unauth,   Unauth,   Forbidden, Forbidden, Data]),
    (Op::RotateEncryptionKey, [Unauth, Unauth, Forbidden, Forbidden, Data]),
    (Op::ExportTenantKey, [Unauth,  Unauth,   Forbidden, Forbidden, Data]),
    (Op::RotateTenantKey, [Unauth,  Unauth,   Forbidden, Forbidden, Data]),
    (Op::Session,        [Unauth,   Unauth,   Data,      Null,      Data]),
    (Op::Sessions,       [Unauth,   Unauth,   Data,      Data,      Data]),
    (Op::CreateSession,  [Unauth,   Unauth,   Data,      NotFound,  Data]),
    (Op::SendMessage,    [Unauth,   Unauth,   Data,      NotFound,  Data]),
    (Op::CloseSession,   [Unauth,   Unauth,   Data,      NotFound,  Data]),
    (Op::DeleteSession,  [Unauth,   Unauth,   Data,      NotFound,  Data]),
];

impl Op {
    /// The response field the operation answers in.
    fn field(self) -> &'static str {
        match self {
            Op::Me => "me",
            Op::Config | Op::ConfigDecrypt => "config",
            Op::Configs => "configs",
            Op::CreateConfig => "createConfig",
            Op::UpdateConfig => "updateConfig",
            Op::DeleteConfig => "deleteConfig",
            Op::AuditEvents => "auditEvents",
            Op::ApiTokens => "apiTokens",
            Op::CreateApiToken => "createApiToken",
            Op::RevokeApiToken => "revokeApiToken",
            Op::EncryptionKey => "encryptionKey",
            Op::KeyringStatus => "keyringStatus",
            Op::RotateEncryptionKey => "rotateEncryptionKey",
            Op::ExportTenantKey => "exportTenantKey",
            Op::RotateTenantKey => "rotateTenantKey",
            Op::Session => "session",
            Op::Sessions => "sessions",
            Op::CreateSession => "createSession",
            Op::SendMessage => "sendMessage",
            Op::CloseSession => "closeSession",
            Op::DeleteSession => "deleteSession",
        }
    }
}

/// The world the matrix runs in: config A in tenant `a`, config B in tenant `b`, and a
/// token per caller.
struct World {
    member_a: String,
    member_b: String,
    admin: String,
    revoked: String,
    config_a: String,
    config_b: String,
    /// An echo session on config A.
    session_a: String,
}

impl World {
    async fn build(app: &TestApp) -> Self {
        let config_a = config_in(app, "a", "config-of-a").await;
        let config_b = config_in(app, "b", "config-of-b").await;
        let session_a = session_on(app, &config_a).await;
        let (_, member_a) = token_with_id(app, "member-a", "MEMBER", Some("a")).await;
        let (_, member_b) = token_with_id(app, "member-b", "MEMBER", Some("b")).await;
        let (_, admin) = token_with_id(app, "admin-token", "ADMIN", None).await;
        let (revoked_id, revoked) = token_with_id(app, "revoked-admin", "ADMIN", None).await;
        assert_eq!(
            me(app, &revoked).await.data("me")["role"],
            "ADMIN",
            "works until revoked"
        );
        revoke(app, &revoked_id).await;
        Self {
            member_a,
            member_b,
            admin,
            revoked,
            config_a,
            config_b,
            session_a,
        }
    }

    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::NoToken => None,
            Who::Revoked => Some(&self.revoked),
            Who::MemberA => Some(&self.member_a),
            Who::MemberB => Some(&self.member_b),
            Who::Admin => Some(&self.admin),
        }
    }
}

/// One cell's request, and what it acts on (a fresh config or token for mutations).
struct Cell {
    query: &'static str,
    vars: Value,
    /// The config or token the cell acts on.
    target: Option<String>,
    /// The secret of the token `RevokeApiToken` targets.
    target_secret: Option<String>,
}

async fn cell(app: &TestApp, world: &World, op: Op, who: Who) -> Cell {
    let plain = |query, vars| Cell {
        query,
        vars,
        target: None,
        target_secret: None,
    };
    match op {
        Op::Me => plain("{ me { name role tenant } }", json!({})),
        Op::Config => plain(
            "query($id: ID!) { config(id: $id) { id tenant encrypted configData } }",
            json!({ "id": world.config_a }),
        ),
        Op::ConfigDecrypt => plain(
            "query($id: ID!) { config(id: $id, decrypt: true, reason: \"matrix\") { id encrypted configData } }",
            json!({ "id": world.config_a }),
        ),
        Op::Configs => plain(
            "{ configs(first: 100) { totalCount nodes { id tenant } } }",
            json!({}),
        ),
        Op::CreateConfig => plain(
            "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id name tenant encrypted configData } }",
            // Every caller names tenant `c`: only an ADMIN may choose.
            json!({ "i": { "name": format!("created-by-{who:?}"), "tenant": "c", "configData": document() } }),
        ),
        Op::UpdateConfig | Op::DeleteConfig => {
            let id = config_in(app, "a", &format!("{op:?}-target-for-{who:?}")).await;
            let (query, vars) = if op == Op::UpdateConfig {
                (
                    "mutation($id: ID!) { updateConfig(id: $id, input: {name: \"renamed\"}) { id name version tenant } }",
                    json!({ "id": id }),
                )
            } else {
                (
                    "mutation($id: ID!) { deleteConfig(id: $id) }",
                    json!({ "id": id }),
                )
            };
            Cell {
                query,
                vars,
                target: Some(id),
                target_secret: None,
            }
        }
        Op::AuditEvents => plain(
            "{ auditEvents(first: 5) { totalCount nodes { action } } }",
            json!({}),
        ),
        Op::ApiTokens => plain("{ apiTokens { id name role tenant revoked } }", json!({})),
        Op::CreateApiToken => plain(
            "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { token apiToken { id name } } }",
            json!({ "i": { "name": format!("token-by-{who:?}"), "role": "MEMBER", "tenant": "a" } }),
        ),
        Op::RevokeApiToken => {
            let (id, secret) = token_with_id(
                app,
                &format!("revoke-target-for-{who:?}"),
                "MEMBER",
                Some("a"),
            )
            .await;
            Cell {
                query: "mutation($id: ID!) { revokeApiToken(id: $id) }",
                vars: json!({ "id": id }),
                target: Some(id),
                target_secret: Some(secret),
            }
        }
        Op::EncryptionKey => plain("{ encryptionKey { keyId publicKey algorithm } }", json!({})),
        Op::KeyringStatus => plain(
            "{ keyringStatus { unreadableValues keys { position primary values } } }",
            json!({}),
        ),
        Op::RotateEncryptionKey => plain(
            "mutation { rotateEncryptionKey { reencrypted alreadyCurrent failed } }",
            json!({}),
        ),
        Op::ExportTenantKey => plain(
            "mutation { exportTenantKey(tenant: \"a\") { tenant keyId key } }",
            json!({}),
        ),
        Op::RotateTenantKey => plain(
            "mutation { rotateTenantKey(tenant: \"a\") { tenant keyId rotation { reencrypted failed } } }",
            json!({}),
        ),
        Op::Session => plain(
            "query($id: ID!) { session(id: $id) { id tenant provider messageCount } }",
            json!({ "id": world.session_a }),
        ),
        Op::Sessions => plain(
            "{ sessions(first: 100) { totalCount nodes { id tenant } } }",
            json!({}),
        ),
        Op::CreateSession => plain(
            "mutation($id: ID!) { createSession(input: { configId: $id }) { id tenant provider status } }",
            json!({ "id": world.config_a }),
        ),
        Op::SendMessage | Op::CloseSession | Op::DeleteSession => {
            let id = session_on(app, &world.config_a).await;
            let query = match op {
                Op::SendMessage => {
                    "mutation($id: ID!) { sendMessage(sessionId: $id, content: \"hello\") { role content } }"
                }
                Op::CloseSession => "mutation($id: ID!) { closeSession(id: $id) { id status } }",
                _ => "mutation($id: ID!) { deleteSession(id: $id) }",
            };
            Cell {
                query,
                vars: json!({ "id": id }),
                target: Some(id),
                target_secret: None,
            }
        }
    }
}

/// An echo session on `config_id`, created by the break-glass admin.
async fn session_on(app: &TestApp, config_id: &str) -> String {
    let res = app
        .gql(
            "mutation($id: ID!) { createSession(input: { configId: $id }) { id } }",
            json!({ "id": config_id }),
        )
        .await;
    res.data("createSession")["id"].as_str().unwrap().to_owned()
}

/// A session as the break-glass admin sees it (null when gone).
async fn session_state(app: &TestApp, id: &str) -> Value {
    app.gql(
        "query($id: ID!) { session(id: $id) { status messageCount } }",
        json!({ "id": id }),
    )
    .await
    .data("session")
    .clone()
}

/// Classifies an answer; anything outside the matrix's vocabulary fails the test.
fn judge(op: Op, res: &Gql) -> Expect {
    if res.status == StatusCode::UNAUTHORIZED {
        assert_eq!(
            res.code(),
            Some("UNAUTHENTICATED"),
            "a 401 says UNAUTHENTICATED: {}",
            res.body
        );
        assert!(
            res.body["data"].is_null(),
            "a 401 carries no data: {}",
            res.body
        );
        return Unauth;
    }
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    match res.code() {
        Some("FORBIDDEN") => Forbidden,
        Some("NOT_FOUND") => NotFound,
        Some(other) => panic!("unexpected error code {other}: {}", res.body),
        None if res.body["data"][op.field()].is_null() => Null,
        None => Data,
    }
}

/// What the answer (and the store afterwards) must look like beyond its kind.
async fn check(
    app: &TestApp,
    world: &World,
    op: Op,
    who: Who,
    expect: Expect,
    cell: &Cell,
    res: &Gql,
) {
    let body = res.body.to_string();
    let data = &res.body["data"][op.field()];
    let tenant_of = |who| match who {
        Who::MemberA => "a",
        Who::MemberB => "b",
        _ => "c",
    };
    if !(op == Op::ConfigDecrypt && expect == Data) {
        assert!(
            !body.contains(SECRET),
            "{op:?} as {who:?} showed the plaintext: {body}"
        );
    }
    match (op, expect) {
        (Op::Me, Data) => {
            let (name, role, tenant) = match who {
                Who::MemberA => ("member-a", "MEMBER", json!("a")),
                Who::MemberB => ("member-b", "MEMBER", json!("b")),
                _ => ("admin-token", "ADMIN", Value::Null),
            };
            assert_eq!(
                data,
                &json!({ "name": name, "role": role, "tenant": tenant })
            );
        }
        (Op::Config, Data) => {
            assert_eq!(data["id"], world.config_a.as_str());
            assert_eq!(data["encrypted"], true);
            let stored = data["configData"]["providers"][0]["config"]["api_key"]
                .as_str()
                .unwrap();
            assert!(
                stored.starts_with("enc:"),
                "the sealed view shows enc: values: {stored}"
            );
        }
        (Op::Config, Null) => {
            // Another tenant's config answers exactly as a missing one does.
            let missing = app
                .gql_as(
                    world.token(who),
                    cell.query,
                    json!({ "id": Uuid::now_v7().to_string() }),
                )
                .await;
            assert_eq!(missing.body, res.body);
        }
        (Op::ConfigDecrypt, Data) => {
            assert_eq!(data["encrypted"], false);
            assert_eq!(
                data["configData"]["providers"][0]["config"]["api_key"],
                SECRET
            );
        }
        (Op::ConfigDecrypt, Forbidden) => {
            // Refused before anything is looked up: a missing id gets the same answer.
            let missing = app
                .gql_as(
                    world.token(who),
                    cell.query,
                    json!({ "id": Uuid::now_v7().to_string() }),
                )
                .await;
            assert_eq!(
                missing.body["errors"][0]["message"],
                res.body["errors"][0]["message"]
            );
            assert_eq!(missing.code(), Some("FORBIDDEN"));
        }
        (Op::Configs, Data) => {
            let ids: Vec<&str> = data["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_str().unwrap())
                .collect();
            let tenants: HashSet<&str> = data["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["tenant"].as_str().unwrap())
                .collect();
            assert_eq!(data["totalCount"].as_u64().unwrap() as usize, ids.len());
            match who {
                Who::MemberA => {
                    assert_eq!(
                        tenants,
                        HashSet::from(["a"]),
                        "a MEMBER lists only its tenant"
                    );
                    assert!(ids.contains(&world.config_a.as_str()));
                }
                Who::MemberB => {
                    assert_eq!(
                        tenants,
                        HashSet::from(["b"]),
                        "a MEMBER lists only its tenant"
                    );
                    assert!(ids.contains(&world.config_b.as_str()));
                    assert!(!ids.contains(&world.config_a.as_str()));
                }
                _ => {
                    assert!(
                        ids.contains(&world.config_a.as_str())
                            && ids.contains(&world.config_b.as_str())
                    );
                    assert!(tenants.contains("a") && tenants.contains("b"));
                }
            }
        }
        (Op::CreateConfig, Data) => {
            assert_eq!(
                data["tenant"],
                tenant_of(who),
                "a MEMBER's config belongs to its tenant"
            );
            assert_eq!(data["encrypted"], true);
        }
        (Op::CreateConfig, _) => {
            let name = format!("created-by-{who:?}");
            let n = sql_count(
                app,
                "SELECT COUNT(*) AS n FROM configs WHERE name = $1",
                vec![name.into()],
            )
            .await;
            assert_eq!(n, 0, "a refused createConfig stores nothing");
        }
        (Op::UpdateConfig | Op::DeleteConfig, _) => {
            let id = cell.target.as_deref().unwrap();
            let after = app
                .gql(
                    "query($id: ID!) { config(id: $id) { name version } }",
                    json!({ "id": id }),
                )
                .await;
            let after = after.data("config");
            match (op, expect) {
                (Op::UpdateConfig, Data) => {
                    assert_eq!(data["version"], 2);
                    assert_eq!(after["name"], "renamed");
                }
                (Op::DeleteConfig, Data) => {
                    assert_eq!(data, &json!(true));
                    assert!(after.is_null(), "deleted");
                }
                _ => {
                    assert_eq!(after["version"], 1, "a refused {op:?} changes nothing");
                    assert_ne!(after["name"], "renamed");
                }
            }
            if expect == NotFound {
                let missing = app
                    .gql_as(
                        world.token(who),
                        cell.query,
                        json!({ "id": Uuid::now_v7().to_string() }),
                    )
                    .await;
                assert_eq!(
                    missing.body["errors"], res.body["errors"],
                    "another tenant's config answers as a missing one"
                );
            }
        }
        (Op::AuditEvents, Data) => assert!(data["totalCount"].as_u64().unwrap() > 0),
        (Op::ApiTokens, Data) => {
            let names: Vec<&str> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&"member-a") && names.contains(&"revoked-admin"));
            assert!(
                !body.contains("kw_"),
                "apiTokens never shows a secret: {body}"
            );
        }
        (Op::CreateApiToken, Data) => assert!(data["token"].as_str().unwrap().starts_with("kw_")),
        (Op::CreateApiToken, _) => {
            let name = format!("token-by-{who:?}");
            let n = sql_count(
                app,
                "SELECT COUNT(*) AS n FROM api_tokens WHERE name = $1",
                vec![name.into()],
            )
            .await;
            assert_eq!(n, 0, "a refused createApiToken creates nothing");
        }
        (Op::RevokeApiToken, _) => {
            let target = me(app, cell.target_secret.as_deref().unwrap()).await;
            if expect == Data {
                assert_eq!(data, &json!(true));
                assert_eq!(
                    target.status,
                    StatusCode::UNAUTHORIZED,
                    "revoked on the next request"
                );
            } else {
                assert_eq!(
                    target.status,
                    StatusCode::OK,
                    "a refused revokeApiToken revokes nothing"
                );
            }
        }
        (Op::KeyringStatus, Data) => {
            assert_eq!(data["unreadableValues"], 0);
            assert_eq!(data["keys"][0]["primary"], true);
        }
        (Op::RotateEncryptionKey, Data) => {
            assert_eq!(data["failed"], 0);
            assert!(
                data["alreadyCurrent"].as_u64().unwrap() > 0,
                "the test configs' values: {data}"
            );
        }
        (Op::ExportTenantKey, Data) => {
            assert_eq!(data["tenant"], "a");
            let key = secrecy::SecretString::from(data["key"].as_str().unwrap().to_owned());
            let key = keyward::crypto::Keyring::parse(&key).expect("a Fernet key");
            assert_eq!(key.fingerprints()[0], data["keyId"].as_str().unwrap());
        }
        (Op::RotateTenantKey, Data) => {
            assert_eq!(data["tenant"], "a");
            assert_eq!(data["rotation"]["failed"], 0);
            assert!(
                data["rotation"]["reencrypted"].as_u64().unwrap() > 0,
                "{data}"
            );
        }
        (Op::EncryptionKey, Data) => {
            assert!(!data["keyId"].as_str().unwrap().is_empty());
            assert!(!data["publicKey"].as_str().unwrap().is_empty());
        }
        (Op::Session, Data) => {
            assert_eq!(data["id"], world.session_a.as_str());
            assert_eq!(data["tenant"], "a");
        }
        (Op::Session | Op::CreateSession, Null | NotFound) => {
            // Another tenant's session or config answers exactly as a missing one does.
            let missing = app
                .gql_as(
                    world.token(who),
                    cell.query,
                    json!({ "id": Uuid::now_v7().to_string() }),
                )
                .await;
            assert_eq!(missing.body, res.body);
        }
        (Op::Sessions, Data) => {
            let nodes = data["nodes"].as_array().unwrap();
            let tenants: HashSet<&str> = nodes
                .iter()
                .map(|n| n["tenant"].as_str().unwrap())
                .collect();
            let has_a = nodes.iter().any(|n| n["id"] == world.session_a.as_str());
            match who {
                Who::MemberA => assert!(has_a && tenants == HashSet::from(["a"]), "{data}"),
                Who::MemberB => assert!(!has_a && tenants.iter().all(|t| *t == "b"), "{data}"),
                _ => assert!(has_a, "{data}"),
            }
        }
        (Op::CreateSession, Data) => {
            assert_eq!(
                data["tenant"], "a",
                "a session belongs to its config's tenant"
            );
            assert_eq!(data["provider"], "provider-echo");
            assert_eq!(data["status"], "ACTIVE");
        }
        (Op::SendMessage | Op::CloseSession | Op::DeleteSession, _) => {
            let id = cell.target.as_deref().unwrap();
            let after = session_state(app, id).await;
            match (op, expect) {
                (Op::SendMessage, Data) => {
                    assert_eq!(data, &json!({ "role": "assistant", "content": "hello" }));
                    assert_eq!(after["messageCount"], 2);
                }
                (Op::CloseSession, Data) => assert_eq!(after["status"], "CLOSED"),
                (Op::DeleteSession, Data) => assert!(after.is_null(), "deleted"),
                _ => assert_eq!(
                    after,
                    json!({ "status": "ACTIVE", "messageCount": 0 }),
                    "a refused {op:?} changes nothing"
                ),
            }
            if expect == NotFound {
                let missing = app
                    .gql_as(
                        world.token(who),
                        cell.query,
                        json!({ "id": Uuid::now_v7().to_string() }),
                    )
                    .await;
                assert_eq!(
                    missing.body["errors"], res.body["errors"],
                    "as a missing session"
                );
            }
        }
        // Kinds with nothing more to check: 401s and FORBIDDENs of reads.
        _ => {}
    }
}

async fn every_operation_answers_every_caller_as_the_matrix_says(default: &TestApp) {
    // Tenant data keys on, so that their operations answer too; the rest behaves the same.
    let shared = TestApp::spawn_sharing_with(default, |s| s.store.tenant_keys = true).await;
    let app = &shared;
    let world = World::build(app).await;
    for (op, row) in MATRIX {
        for (who, expect) in WHO.iter().zip(row) {
            let cell = cell(app, &world, *op, *who).await;
            let res = app
                .gql_as(world.token(*who), cell.query, cell.vars.clone())
                .await;
            assert_eq!(judge(*op, &res), *expect, "{op:?} as {who:?}: {}", res.body);
            check(app, &world, *op, *who, *expect, &cell, &res).await;
        }
    }
    shared.stop().await;
}

/// The matrix has a row for every field of Query and Mutation: a new operation without a
/// row fails here.
async fn the_matrix_covers_every_query_and_mutation(app: &TestApp) {
    let res = app
        .gql(
            "{ q: __type(name: \"Query\") { fields { name } } m: __type(name: \"Mutation\") { fields { name } }
               s: __type(name: \"Subscription\") { fields { name } } }",
            json!({}),
        )
        .await;
    let existing: HashSet<String> = ["q", "m", "s"]
        .iter()
        .filter_map(|t| res.body["data"][t]["fields"].as_array())
        .flatten()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        existing.contains("me") && existing.contains("createConfig"),
        "{}",
        res.body
    );
    let covered: HashSet<String> = MATRIX.iter().map(|(op, _)| op.field().to_owned()).collect();
    let pending: HashSet<String> = NOT_YET_IN_MATRIX.iter().map(|s| s.to_string()).collect();
    let missing: Vec<&String> = existing
        .difference(&covered)
        .filter(|f| !pending.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "operations without a row in MATRIX: {missing:?}"
    );
    let gone: Vec<&String> = covered.difference(&existing).collect();
    assert!(
        gone.is_empty(),
        "rows for operations that do not exist: {gone:?}"
    );
}

async fn a_member_without_a_tenant_acts_in_default(app: &TestApp) {
    let (id, secret) = token_with_id(app, "no-tenant", "MEMBER", None).await;
    assert_eq!(me(app, &secret).await.data("me")["tenant"], "default");
    let tokens = app.gql("{ apiTokens { id tenant } }", json!({})).await;
    let row = tokens
        .data("apiTokens")
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["tenant"], "default");

    // Even a row stored without a tenant (older data, hand-made tokens) is scoped to `default`.
    sql(
        app,
        "UPDATE api_tokens SET tenant = NULL WHERE id = $1",
        vec![uuid(&id)],
    )
    .await;
    assert_eq!(me(app, &secret).await.data("me")["tenant"], "default");
    let elsewhere = config_in(app, "x", "in-x").await;
    let mine = app.create_config(&secret, "in-default", document()).await;
    assert_eq!(mine["tenant"], "default");
    let listed = app
        .gql_as(
            Some(&secret),
            "{ configs { nodes { id tenant } } }",
            json!({}),
        )
        .await;
    let nodes = listed.data("configs")["nodes"].as_array().unwrap().clone();
    assert!(nodes.iter().all(|n| n["tenant"] == "default"), "{nodes:?}");
    assert!(nodes.iter().any(|n| n["id"] == mine["id"]));
    let hidden = app
        .gql_as(
            Some(&secret),
            "query($id: ID!) { config(id: $id) { id } }",
            json!({ "id": elsewhere }),
        )
        .await;
    assert!(hidden.data("config").is_null());
    // Its events name the tenant it acts in, also those no config's tenant fills in.
    let refused = app
        .gql_as(
            Some(&secret),
            "query($id: ID!) { config(id: $id, decrypt: true) { id } }",
            json!({ "id": mine["id"] }),
        )
        .await;
    assert_eq!(refused.code(), Some("FORBIDDEN"));
    let audited = sql(
        app,
        "SELECT tenant FROM audit_events WHERE action = 'config.decrypt' AND actor = 'no-tenant'",
        vec![],
    )
    .await;
    assert_eq!(audited.len(), 1);
    assert_eq!(
        audited[0]
            .try_get::<Option<String>>("", "tenant")
            .unwrap()
            .as_deref(),
        Some("default")
    );
}

async fn the_break_glass_admin_token_stays_an_admin(app: &TestApp) {
    let res = me(app, &app.admin_token).await;
    assert_eq!(
        res.data("me"),
        &json!({ "name": "admin", "role": "ADMIN", "tenant": null })
    );
    let id = config_in(app, "t1", "break-glass").await;
    let plain = app
        .gql(
            "query($id: ID!) { config(id: $id, decrypt: true) { configData } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        plain.data("config")["configData"]["providers"][0]["config"]["api_key"],
        SECRET
    );
    // One character off is a stranger.
    let mut wrong = app.admin_token.clone();
    wrong.push('x');
    assert_eq!(me(app, &wrong).await.status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

async fn a_token_secret_is_random_prefixed_shown_once_and_stored_only_as_a_hash(app: &TestApp) {
    let (id, secret) = token_with_id(app, "shown-once", "MEMBER", Some("a")).await;
    let random = secret.strip_prefix("kw_").expect("secrets start with kw_");
    // URL-safe base64 without padding: 6 bits a character, so 22 characters hold 132 bits.
    assert!(random.len() >= 22, "at least 128 random bits: {secret}");
    assert!(
        random
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{secret}"
    );
    let others: HashSet<String> = [
        token_with_id(app, "twin-1", "MEMBER", None).await.1,
        token_with_id(app, "twin-2", "MEMBER", None).await.1,
        secret.clone(),
    ]
    .into_iter()
    .collect();
    assert_eq!(others.len(), 3, "every secret is fresh");

    // apiTokens has no field that could carry it, and shows it nowhere.
    let listed = app
        .gql(
            "{ apiTokens { id name role tenant createdAt lastUsedAt revoked } }",
            json!({}),
        )
        .await;
    assert!(
        listed
            .data("apiTokens")
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str())
    );
    assert!(!listed.body.to_string().contains(random));
    let fields = app
        .gql(
            "{ __type(name: \"ApiToken\") { fields { name } } }",
            json!({}),
        )
        .await;
    let mut names: Vec<&str> = fields.body["data"]["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "createdAt",
            "id",
            "lastUsedAt",
            "name",
            "revoked",
            "role",
            "tenant"
        ]
    );

    // The store holds the hash, never the secret.
    let dump = app.dump_database().await;
    assert!(!dump.contains(random), "the secret is not stored");
    assert!(
        dump.contains(&keyward::auth::token::hash(&secret)),
        "its SHA-256 is"
    );
    // And the stored hash is not a credential.
    let hash = keyward::auth::token::hash(&secret);
    assert_eq!(me(app, &hash).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(app, &format!("kw_{hash}")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(app, &secret).await.status, StatusCode::OK);
}

async fn last_used_at_is_set_once_a_token_is_used(app: &TestApp) {
    let (id, secret) = token_with_id(app, "used-later", "MEMBER", Some("a")).await;
    let last_used = || async {
        let res = app.gql("{ apiTokens { id lastUsedAt } }", json!({})).await;
        res.data("apiTokens")
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str())
            .unwrap()["lastUsedAt"]
            .clone()
    };
    assert!(last_used().await.is_null(), "never used yet");
    assert_eq!(me(app, &secret).await.status, StatusCode::OK);
    assert!(last_used().await.is_string(), "set by the first use");
}

async fn a_revoked_token_is_refused_on_its_next_request(app: &TestApp) {
    let (id, secret) = token_with_id(app, "short-lived", "ADMIN", None).await;
    assert_eq!(me(app, &secret).await.data("me")["name"], "short-lived");
    revoke(app, &id).await;
    let res = me(app, &secret).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.code(), Some("UNAUTHENTICATED"));
    let listed = app.gql("{ apiTokens { id revoked } }", json!({})).await;
    let row = listed
        .data("apiTokens")
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["revoked"], true);
    // Revoking again is harmless; an unknown or malformed id is NOT_FOUND.
    revoke(app, &id).await;
    assert_eq!(me(app, &secret).await.status, StatusCode::UNAUTHORIZED);
    for bad in [Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        let res = app
            .gql(
                "mutation($id: ID!) { revokeApiToken(id: $id) }",
                json!({ "id": bad }),
            )
            .await;
        assert_eq!(res.code(), Some("NOT_FOUND"), "{}", res.body);
    }
}

async fn revocation_reaches_a_second_server_sharing_the_database(app: &TestApp) {
    let other = TestApp::spawn_sharing(app).await;
    assert_ne!(other.port, app.port);
    let (id_1, secret_1) = token_with_id(app, "replica-1", "MEMBER", Some("a")).await;
    let (_, secret_2) = token_with_id(app, "replica-2", "MEMBER", Some("a")).await;
    // Made on the first server, known to the second: they share the store.
    assert_eq!(me(&other, &secret_1).await.data("me")["name"], "replica-1");
    assert_eq!(me(&other, &secret_2).await.data("me")["name"], "replica-2");

    revoke(app, &id_1).await;
    assert_eq!(
        me(&other, &secret_1).await.status,
        StatusCode::UNAUTHORIZED,
        "revoked on the other process too"
    );
    assert_eq!(
        me(&other, &secret_2).await.status,
        StatusCode::OK,
        "only that token"
    );

    // And the other way round, revoked through the second server.
    let listed = other.gql("{ apiTokens { id name } }", json!({})).await;
    let id_2 = listed
        .data("apiTokens")
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "replica-2")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    revoke(&other, &id_2).await;
    assert_eq!(me(app, &secret_2).await.status, StatusCode::UNAUTHORIZED);
    other.stop().await;
}

async fn token_input_is_checked(app: &TestApp) {
    for input in [
        json!({ "name": "  ", "role": "MEMBER" }),
        json!({ "name": "ok", "role": "MEMBER", "tenant": "no spaces allowed" }),
        json!({ "name": "x".repeat(201), "role": "ADMIN" }),
    ] {
        let res = app
            .gql(
                "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { token } }",
                json!({ "i": input }),
            )
            .await;
        assert_eq!(res.code(), Some("BAD_USER_INPUT"), "{input}: {}", res.body);
    }
}

// ---------------------------------------------------------------------------------------
// The audit trail
// ---------------------------------------------------------------------------------------

/// One event the audit suite expects, in order.
struct Expected {
    action: &'static str,
    actor: &'static str,
    tenant: Option<&'static str>,
    config_id: Option<String>,
    success: bool,
    request_id: String,
}

async fn every_audited_action_records_actor_tenant_ids_request_id_ip_and_user_agent(app: &TestApp) {
    let admin = app.admin_token.clone();
    let mut expected = Vec::new();
    let mut push = |action, actor, tenant, config_id: Option<&str>, success, res: &Gql| {
        expected.push(Expected {
            action,
            actor,
            tenant,
            config_id: config_id.map(str::to_owned),
            success,
            request_id: request_id(res),
        })
    };

    let res = send(
        app,
        Some(&admin),
        "mutation { createApiToken(input: {name: \"alice\", role: MEMBER, tenant: \"a\"}) { token apiToken { id } } }",
        json!({}),
        &[],
    )
    .await;
    let alice = res.data("createApiToken")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_id = res.data("createApiToken")["apiToken"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    push("token.create", "admin", Some("a"), None, true, &res);

    let res = send(
        app,
        Some(&alice),
        "mutation($d: JSON!) { createConfig(input: {name: \"audited\", configData: $d}) { id } }",
        json!({ "d": document() }),
        &[],
    )
    .await;
    let id = res.data("createConfig")["id"].as_str().unwrap().to_owned();
    push("config.create", "alice", Some("a"), Some(&id), true, &res);

    let res = send(
        app,
        Some(&alice),
        "mutation($id: ID!) { updateConfig(id: $id, input: {description: \"x\"}) { version } }",
        json!({ "id": id }),
        &[],
    )
    .await;
    assert_eq!(res.data("updateConfig")["version"], 2);
    push("config.update", "alice", Some("a"), Some(&id), true, &res);

    let decrypt =
        "query($id: ID!, $r: String) { config(id: $id, decrypt: true, reason: $r) { configData } }";
    let res = send(
        app,
        Some(&alice),
        decrypt,
        json!({ "id": id, "r": "member curiosity" }),
        &[],
    )
    .await;
    assert_eq!(res.code(), Some("FORBIDDEN"));
    push("config.decrypt", "alice", Some("a"), Some(&id), false, &res);

    let res = send(
        app,
        Some(&admin),
        decrypt,
        json!({ "id": id, "r": "incident 42" }),
        &[],
    )
    .await;
    assert_eq!(
        res.data("config")["configData"]["providers"][0]["config"]["api_key"],
        SECRET
    );
    push("config.decrypt", "admin", Some("a"), Some(&id), true, &res);

    let res = send(
        app,
        Some(&admin),
        "mutation($id: ID!) { deleteConfig(id: $id) }",
        json!({ "id": id }),
        &[],
    )
    .await;
    assert_eq!(res.data("deleteConfig"), true);
    push("config.delete", "admin", Some("a"), Some(&id), true, &res);

    let res = send(
        app,
        Some(&admin),
        "mutation($id: ID!) { revokeApiToken(id: $id) }",
        json!({ "id": alice_id }),
        &[],
    )
    .await;
    assert_eq!(res.data("revokeApiToken"), true);
    push("token.revoke", "admin", Some("a"), None, true, &res);

    let res = send(app, Some(&alice), "{ me { name } }", json!({}), &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    push("auth.denied", "anonymous", None, None, false, &res);

    // Through the API, newest first.
    let listed = app
        .gql(
            "{ auditEvents(first: 50) { totalCount nodes { action actor tenant configId sessionId success requestId clientIp userAgent detail at } } }",
            json!({}),
        )
        .await;
    let nodes = listed.data("auditEvents")["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        nodes.len(),
        expected.len(),
        "one event per audited action: {nodes:#?}"
    );
    assert_eq!(listed.data("auditEvents")["totalCount"], expected.len());
    for (node, want) in nodes.iter().zip(expected.iter().rev()) {
        assert_eq!(node["action"], want.action, "{node}");
        assert_eq!(node["actor"], want.actor, "{node}");
        assert_eq!(node["tenant"], json!(want.tenant), "{node}");
        assert_eq!(node["configId"], json!(want.config_id), "{node}");
        assert_eq!(node["success"], want.success, "{node}");
        assert_eq!(
            node["requestId"],
            want.request_id.as_str(),
            "the x-request-id of its response: {node}"
        );
        assert_eq!(node["clientIp"], "127.0.0.1", "{node}");
        assert_eq!(node["userAgent"], USER_AGENT, "{node}");
    }
    let detail_of = |action: &str, success: bool| {
        nodes
            .iter()
            .find(|n| n["action"] == action && n["success"] == success)
            .unwrap()["detail"]
            .clone()
    };
    assert_eq!(
        detail_of("config.decrypt", true)["reason"],
        "incident 42",
        "the reason is recorded"
    );
    assert_eq!(
        detail_of("config.decrypt", false)["reason"],
        "member curiosity"
    );

    // Straight from SQL, in insertion order.
    let rows = sql(
        app,
        "SELECT action, actor, tenant, success, request_id, client_ip, user_agent FROM audit_events ORDER BY id",
        vec![],
    )
    .await;
    assert_eq!(rows.len(), expected.len());
    for (row, want) in rows.iter().zip(&expected) {
        assert_eq!(row.try_get::<String>("", "action").unwrap(), want.action);
        assert_eq!(row.try_get::<String>("", "actor").unwrap(), want.actor);
        assert_eq!(
            row.try_get::<Option<String>>("", "tenant")
                .unwrap()
                .as_deref(),
            want.tenant
        );
        assert_eq!(
            row.try_get::<bool>("", "success").unwrap(),
            want.success,
            "{}",
            want.action
        );
        assert_eq!(
            row.try_get::<Option<String>>("", "request_id").unwrap(),
            Some(want.request_id.clone())
        );
        assert_eq!(
            row.try_get::<Option<String>>("", "client_ip")
                .unwrap()
                .as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            row.try_get::<Option<String>>("", "user_agent")
                .unwrap()
                .as_deref(),
            Some(USER_AGENT)
        );
    }
    let config_id = expected[1].config_id.as_deref().unwrap();
    let per_config = sql_count(
        app,
        "SELECT COUNT(*) AS n FROM audit_events WHERE config_id = $1",
        vec![uuid(config_id)],
    )
    .await;
    assert_eq!(
        per_config, 5,
        "create, update, refused decrypt, decrypt, delete"
    );

    // Never a secret, never a token: not in the table, not in the API's answer.
    let dump = app.dump_database().await;
    for needle in [
        SECRET,
        alice.as_str(),
        alice.trim_start_matches("kw_"),
        admin.as_str(),
    ] {
        assert!(
            !dump.contains(needle),
            "the store holds a secret or token: {needle}"
        );
        assert!(
            !listed.body.to_string().contains(needle),
            "auditEvents shows a secret or token: {needle}"
        );
    }
}

async fn a_callers_request_id_is_echoed_and_recorded(app: &TestApp) {
    let query =
        "mutation($d: JSON!) { createConfig(input: {name: \"traced\", configData: $d}) { id } }";
    let res = send(
        app,
        Some(&app.admin_token),
        query,
        json!({ "d": document() }),
        &[("x-request-id", "trace-42.a")],
    )
    .await;
    assert_eq!(request_id(&res), "trace-42.a");
    let id = res.data("createConfig")["id"].as_str().unwrap().to_owned();
    let rows = sql(
        app,
        "SELECT request_id FROM audit_events WHERE config_id = $1",
        vec![uuid(&id)],
    )
    .await;
    assert_eq!(
        rows[0].try_get::<String>("", "request_id").unwrap(),
        "trace-42.a"
    );

    // One that could forge log lines is replaced by a fresh id.
    let res = send(
        app,
        Some(&app.admin_token),
        "{ me { name } }",
        json!({}),
        &[("x-request-id", "evil id; drop")],
    )
    .await;
    let fresh = request_id(&res);
    assert_ne!(fresh, "evil id; drop");
    assert!(Uuid::parse_str(&fresh).is_ok(), "{fresh}");
}

async fn audit_events_page_newest_first_and_filter_by_config_action_actor_and_since(app: &TestApp) {
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(config_in(app, "p", &format!("paged-{i}")).await);
    }
    let decrypt = "query($id: ID!) { config(id: $id, decrypt: true, reason: \"paging\") { id } }";
    assert!(
        app.gql(decrypt, json!({ "id": created[2] }))
            .await
            .data("config")
            .is_object()
    );
    let bob = app.create_token("bob", "ADMIN", None).await;
    let by_bob = app.create_config(&bob, "by-bob", document()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let query = "query($after: String, $a: String, $c: ID, $actor: String, $since: DateTime) {
        auditEvents(first: 2, after: $after, action: $a, configId: $c, actor: $actor, since: $since) {
            totalCount pageInfo { hasNextPage endCursor } nodes { id action actor configId at } } }";
    let all_pages = |vars: Value| {
        let query = query.to_owned();
        async move {
            let mut nodes = Vec::new();
            let mut after = Value::Null;
            loop {
                let mut vars = vars.clone();
                vars["after"] = after;
                let res = app.gql(&query, vars).await;
                let page = res.data("auditEvents").clone();
                let batch = page["nodes"].as_array().unwrap();
                assert!(batch.len() <= 2, "first is honoured");
                nodes.extend(batch.iter().cloned());
                if page["pageInfo"]["hasNextPage"] != true {
                    assert_eq!(
                        nodes.len() as u64,
                        page["totalCount"].as_u64().unwrap(),
                        "totalCount counts all pages"
                    );
                    return nodes;
                }
                after = page["pageInfo"]["endCursor"].clone();
            }
        }
    };

    // Newest first across pages: config.create events are the configs in reverse order.
    let creates = all_pages(json!({ "a": "config.create" })).await;
    let ids: Vec<&str> = creates
        .iter()
        .map(|n| n["configId"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = created.iter().map(String::as_str).collect();
    want.push(&by_bob);
    want.reverse();
    assert_eq!(ids, want);
    let event_ids: Vec<&str> = creates.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert!(
        event_ids.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first (UUIDv7 ids sort by time)"
    );

    // configId: its create and its decrypt, newest first.
    let of_one = all_pages(json!({ "c": created[2] })).await;
    let actions: Vec<&str> = of_one
        .iter()
        .map(|n| n["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["config.decrypt", "config.create"]);

    // action and actor, together.
    let bobs = all_pages(json!({ "actor": "bob" })).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["configId"], by_bob.as_str());
    let admin_decrypts = all_pages(json!({ "a": "config.decrypt", "actor": "admin" })).await;
    assert_eq!(admin_decrypts.len(), 1);

    // since: inclusive of the moment given, exclusive of everything before it.
    let oldest_first: Vec<Value> = creates.iter().rev().cloned().collect();
    let third = &oldest_first[2];
    let later = all_pages(json!({ "a": "config.create", "since": third["at"] })).await;
    let later_ids: Vec<&str> = later
        .iter()
        .map(|n| n["configId"].as_str().unwrap())
        .collect();
    assert_eq!(later_ids, want[..4].to_vec(), "since {}", third["at"]);
    assert!(
        all_pages(json!({ "since": "2999-01-01T00:00:00Z" }))
            .await
            .is_empty()
    );
    assert_eq!(
        all_pages(json!({ "a": "config.create", "since": "2000-01-01T00:00:00+02:00" }))
            .await
            .len(),
        6
    );

    // A bad filter is the caller's mistake.
    for vars in [
        json!({ "a": "config.nonsense" }),
        json!({ "c": "not-a-uuid" }),
        json!({ "after": "garbage!" }),
    ] {
        let res = app.gql(query, vars.clone()).await;
        assert_eq!(res.code(), Some("BAD_USER_INPUT"), "{vars}: {}", res.body);
    }
    let res = app
        .gql("{ auditEvents(first: 1000) { totalCount } }", json!({}))
        .await;
    assert_eq!(res.code(), Some("BAD_USER_INPUT"));
}

async fn a_decrypt_whose_audit_row_cannot_be_written_returns_no_plaintext(app: &TestApp) {
    let id = config_in(app, "f", "fail-closed").await;
    let victim = config_in(app, "f", "must-survive").await;
    let (kept_id, kept) = token_with_id(app, "kept", "MEMBER", Some("f")).await;
    let tokens_before = sql_count(app, "SELECT COUNT(*) AS n FROM api_tokens", vec![]).await;
    let events_before = sql_count(app, "SELECT COUNT(*) AS n FROM audit_events", vec![]).await;
    match app.kind {
        Db::Sqlite => {
            sql_exec(app, "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit down'); END;")
                .await
        }
        Db::Postgres => {
            sql_exec(
                app,
                "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$",
            )
            .await;
            sql_exec(app, "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_down()")
                .await;
        }
    }

    let decrypt = "query($id: ID!) { config(id: $id, decrypt: true, reason: \"while audit is down\") { configData } }";
    let res = app.gql(decrypt, json!({ "id": id })).await;
    assert_eq!(res.code(), Some("UNAVAILABLE"), "{}", res.body);
    assert!(res.body["data"]["config"].is_null());
    assert!(
        !res.body.to_string().contains(SECRET),
        "no plaintext without its audit row: {}",
        res.body
    );
    assert!(
        !res.body.to_string().contains("audit down"),
        "the database's message stays in the log"
    );

    // Every other audited action fails with it, and leaves no trace.
    let create = app
        .gql(
            "mutation($d: JSON!) { createConfig(input: {name: \"unaudited\", configData: $d}) { id } }",
            json!({ "d": document() }),
        )
        .await;
    assert_eq!(create.code(), Some("UNAVAILABLE"), "{}", create.body);
    let update = app
        .gql(
            "mutation($id: ID!) { updateConfig(id: $id, input: {name: \"x\"}) { id } }",
            json!({ "id": victim }),
        )
        .await;
    assert_eq!(update.code(), Some("UNAVAILABLE"), "{}", update.body);
    let delete = app
        .gql(
            "mutation($id: ID!) { deleteConfig(id: $id) }",
            json!({ "id": victim }),
        )
        .await;
    assert_eq!(delete.code(), Some("UNAVAILABLE"), "{}", delete.body);
    let token = app
        .gql(
            "mutation { createApiToken(input: {name: \"t\", role: ADMIN}) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(token.code(), Some("UNAVAILABLE"), "{}", token.body);
    assert!(
        !token.body.to_string().contains("kw_"),
        "no unaudited token: {}",
        token.body
    );
    // A revocation that cannot be audited does not happen, and says so.
    let revoke = app
        .gql(
            "mutation($id: ID!) { revokeApiToken(id: $id) }",
            json!({ "id": kept_id }),
        )
        .await;
    assert_eq!(revoke.code(), Some("UNAVAILABLE"), "{}", revoke.body);
    assert_eq!(me(app, &kept).await.status, StatusCode::OK);
    // No tenant data key leaves unaudited.
    let keyed = TestApp::spawn_sharing_with(app, |s| s.store.tenant_keys = true).await;
    let export = keyed
        .gql(
            "mutation { exportTenantKey(tenant: \"f\") { key } }",
            json!({}),
        )
        .await;
    assert_eq!(export.code(), Some("UNAVAILABLE"), "{}", export.body);
    assert!(export.body["data"].is_null(), "{}", export.body);
    keyed.stop().await;
    assert_eq!(
        sql_count(
            app,
            "SELECT COUNT(*) AS n FROM configs WHERE name = 'unaudited'",
            vec![]
        )
        .await,
        0
    );
    assert_eq!(
        sql_count(app, "SELECT COUNT(*) AS n FROM api_tokens", vec![]).await,
        tokens_before
    );
    let survivor = app
        .gql(
            "query($id: ID!) { config(id: $id) { name version } }",
            json!({ "id": victim }),
        )
        .await;
    assert_eq!(
        survivor.data("config"),
        &json!({ "name": "must-survive", "version": 1 })
    );

    // Once the audit trail is back, so is the plaintext, with its event.
    sql_exec(
        app,
        if app.kind == Db::Sqlite {
            "DROP TRIGGER audit_down"
        } else {
            "DROP TRIGGER audit_down ON audit_events"
        },
    )
    .await;
    assert_eq!(
        sql_count(app, "SELECT COUNT(*) AS n FROM audit_events", vec![]).await,
        events_before
    );
    let res = app.gql(decrypt, json!({ "id": id })).await;
    assert_eq!(
        res.data("config")["configData"]["providers"][0]["config"]["api_key"],
        SECRET
    );
    let n = sql_count(
        app,
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'config.decrypt' AND config_id = $1",
        vec![uuid(&id)],
    )
    .await;
    assert_eq!(n, 1);
}

async fn fifty_parallel_decrypts_write_exactly_fifty_decrypt_events(app: &TestApp) {
    let id = config_in(app, "par", "parallel").await;
    let query =
        "query($id: ID!, $r: String) { config(id: $id, decrypt: true, reason: $r) { configData } }";
    let answers = futures::future::join_all((0..50).map(|i| {
        send(
            app,
            Some(&app.admin_token),
            query,
            json!({ "id": id, "r": format!("reader {i}") }),
            &[],
        )
    }))
    .await;
    let mut request_ids = HashSet::new();
    for res in &answers {
        assert_eq!(
            res.data("config")["configData"]["providers"][0]["config"]["api_key"],
            SECRET,
            "{}",
            res.body
        );
        request_ids.insert(request_id(res));
    }
    assert_eq!(request_ids.len(), 50);
    let rows = sql(
        app,
        "SELECT request_id FROM audit_events WHERE action = 'config.decrypt' AND success = $2 AND config_id = $1",
        vec![uuid(&id), true.into()],
    )
    .await;
    let recorded: HashSet<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "request_id").unwrap())
        .collect();
    assert_eq!(rows.len(), 50, "exactly one event per read");
    assert_eq!(recorded, request_ids, "each read's own event");
    let listed = app
        .gql(
            "query($id: ID!) { auditEvents(configId: $id, action: \"config.decrypt\") { totalCount } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(listed.data("auditEvents")["totalCount"], 50);
}

both_databases!(
    every_operation_answers_every_caller_as_the_matrix_says,
    the_matrix_covers_every_query_and_mutation,
    a_member_without_a_tenant_acts_in_default,
    the_break_glass_admin_token_stays_an_admin,
    a_token_secret_is_random_prefixed_shown_once_and_stored_only_as_a_hash,
    last_used_at_is_set_once_a_token_is_used,
    a_revoked_token_is_refused_on_its_next_request,
    revocation_reaches_a_second_server_sharing_the_database,
    token_input_is_checked,
    every_audited_action_records_actor_tenant_ids_request_id_ip_and_user_agent,
    a_callers_request_id_is_echoed_and_recorded,
    audit_events_page_newest_first_and_filter_by_config_action_actor_and_since,
    a_decrypt_whose_audit_row_cannot_be_written_returns_no_plaintext,
    fifty_parallel_decrypts_write_exactly_fifty_decrypt_events,
);

// ---------------------------------------------------------------------------------------
// Failed authentications: throttled, and audited without flooding.
// ---------------------------------------------------------------------------------------

/// Like `both_databases!`, with the failed-authentication limit set.
macro_rules! both_databases_with_auth_limit {
    ($limit:expr; $($name:ident),* $(,)?) => {
        mod sqlite_with_limit {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = ::tests::TestApp::spawn_with(::tests::Db::Sqlite, |s| s.limits.auth_failures_per_minute = $limit).await;
                    crate::$name(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod postgres_with_limit {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = ::tests::TestApp::spawn_with(::tests::Db::Postgres, |s| s.limits.auth_failures_per_minute = $limit).await;
                    crate::$name(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}
/// The limit these suites run with: 30 a minute, so a blocked client waits about 2 s.
const AUTH_LIMIT: u32 = 30;

/// A wrong guess at a token, sent with the suite's user agent.
async fn bad(app: &TestApp, i: usize) -> Gql {
    let guess = format!("kw_guess{i:04}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    send(app, Some(&guess), "{ me { name } }", json!({}), &[]).await
}

async fn repeated_failed_authentications_are_throttled_even_for_a_valid_token(app: &TestApp) {
    let valid = app.create_token("innocent", "MEMBER", Some("a")).await;
    let mut statuses = Vec::new();
    for i in 0..AUTH_LIMIT as usize + 5 {
        let res = bad(app, i).await;
        statuses.push(res.status);
        if res.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert!(
        statuses[..AUTH_LIMIT as usize]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "the limit's worth of failures are plain 401s: {statuses:?}"
    );
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "then 429: {statuses:?}"
    );

    // While throttled, right and wrong look the same: a valid token is refused too.
    let blocked = me(app, &valid).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = blocked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert!(
        blocked.body["errors"][0]["extensions"]["code"].is_string(),
        "GraphQL-shaped: {}",
        blocked.body
    );
    assert!(blocked.body["data"].is_null());
    assert_eq!(
        me(app, &app.admin_token).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(bad(app, 9999).await.status, StatusCode::TOO_MANY_REQUESTS);

    // Honouring Retry-After is enough: then the valid token works again.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    assert_eq!(me(app, &valid).await.data("me")["name"], "innocent");
}

async fn a_storm_of_bad_tokens_writes_few_audit_rows(app: &TestApp) {
    let mut first_request_id = None;
    for i in 0..AUTH_LIMIT as usize {
        let res = bad(app, i).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
        first_request_id.get_or_insert_with(|| request_id(&res));
    }
    let rows = sql(
        app,
        "SELECT actor, success, request_id, client_ip, user_agent FROM audit_events WHERE action = 'auth.denied' ORDER BY id",
        vec![],
    )
    .await;
    assert!(!rows.is_empty(), "failed authentications are audited");
    assert!(
        rows.len() <= 3,
        "{} bad tokens wrote {} rows",
        AUTH_LIMIT,
        rows.len()
    );
    let first = &rows[0];
    assert_eq!(first.try_get::<String>("", "actor").unwrap(), "anonymous");
    assert!(!first.try_get::<bool>("", "success").unwrap());
    assert_eq!(
        first.try_get::<Option<String>>("", "request_id").unwrap(),
        first_request_id
    );
    assert_eq!(
        first
            .try_get::<Option<String>>("", "client_ip")
            .unwrap()
            .as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        first
            .try_get::<Option<String>>("", "user_agent")
            .unwrap()
            .as_deref(),
        Some(USER_AGENT)
    );
    let dump = app.dump_database().await;
    assert!(
        !dump.contains("kw_guess"),
        "a presented token is never stored"
    );
    let listed = app
        .gql(
            "{ auditEvents(action: \"auth.denied\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(listed.data("auditEvents")["totalCount"], rows.len());
}

/// Tests run with different limits; the shipped default must still stop a guesser and not
/// lock out a user who mistypes a few times.
#[test]
fn the_default_failed_authentication_limit_is_sane() {
    let default = keyward::settings::Limits::default().auth_failures_per_minute;
    assert!((5..=60).contains(&default), "{default} failures a minute");
}

both_databases_with_auth_limit!(
    crate::AUTH_LIMIT;
    repeated_failed_authentications_are_throttled_even_for_a_valid_token,
    a_storm_of_bad_tokens_writes_few_audit_rows,
);

/// Behind a trusted proxy, the throttle and the audit trail key on the client that
/// `X-Forwarded-For` names; from anyone else the header is ignored, so a client cannot
/// dodge the throttle by inventing addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_keys_on_the_client_behind_a_trusted_proxy_and_ignores_forged_headers() {
    let limit = 5;
    let proxied = TestApp::spawn_with(Db::Sqlite, |s| {
        s.limits.auth_failures_per_minute = limit;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let guess = |i: usize| format!("kw_guess{i:04}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for i in 0..=limit as usize {
        send(
            &proxied,
            Some(&guess(i)),
            "{ me { name } }",
            json!({}),
            &from("203.0.113.7"),
        )
        .await;
    }
    let attacker = send(
        &proxied,
        Some(&proxied.admin_token),
        "{ me { name } }",
        json!({}),
        &from("203.0.113.7"),
    )
    .await;
    assert_eq!(attacker.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy is not punished for it.
    let other = send(
        &proxied,
        Some(&proxied.admin_token),
        "{ me { name } }",
        json!({}),
        &from("198.51.100.2"),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    let denied = proxied
        .gql_as(
            Some(&proxied.admin_token),
            "{ auditEvents(action: \"auth.denied\", first: 1) { nodes { clientIp } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        denied.data("auditEvents")["nodes"][0]["clientIp"],
        "203.0.113.7"
    );
    proxied.stop().await;

    let direct =
        TestApp::spawn_with(Db::Sqlite, |s| s.limits.auth_failures_per_minute = limit).await;
    for i in 0..=limit as usize {
        let forged = format!("192.0.2.{i}");
        let res = direct
            .client
            .post(format!("{}/graphql", direct.address))
            .bearer_auth(guess(i))
            .header("x-forwarded-for", forged)
            .json(&json!({ "query": "{ me { name } }" }))
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), StatusCode::OK);
    }
    let blocked = me(&direct, &direct.admin_token).await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "forged addresses do not help"
    );
    direct.stop().await;
}
