//! The test harness: `TestApp::spawn(Db::…)` boots the real server in-process on a random
//! port against a fresh database (a temp-file SQLite, or a uniquely named PostgreSQL
//! database dropped afterwards), with a random key and a known admin token; typed helpers
//! speak GraphQL over real HTTP. `both_databases!` runs a suite on SQLite and PostgreSQL.
//!
//! Tracing is quiet unless TEST_LOG is set.

pub mod fake_providers;
pub mod tcp_proxy;

use std::sync::Once;

use keyward::Settings;
use keyward::settings::StoreSettings;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use keyward;

/// Where a test's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("KEYWARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub admin_token: String,
    /// The keyring's key (CONFIG_ENCRYPTION_KEY), for app-side encryption in tests.
    pub key: SecretString,
    pub settings: Settings,
    /// The server's own connection, for reading the store directly.
    pub db: DatabaseConnection,
    /// The database's own URL, which the server may reach by another route
    /// ([`TestApp::spawn_routed`]).
    pub database_url: String,
    pub kind: Db,
    pub client: reqwest::Client,
    pg_database: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A GraphQL answer: HTTP status, headers and JSON body.
#[derive(Debug)]
pub struct Gql {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Gql {
    /// `data.<field>`, asserting there were no errors.
    pub fn data(&self, field: &str) -> &Value {
        assert!(
            self.body.get("errors").is_none_or(Value::is_null),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"][field]
    }

    /// The first error's `extensions.code`.
    pub fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    pub fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }
}

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            keyward::telemetry::init(
                keyward::telemetry::LogFormat::Text,
                "debug,sqlx=warn",
                std::io::stderr,
            );
        }
    });
}

impl TestApp {
    pub async fn spawn(kind: Db) -> Self {
        Self::spawn_with(kind, |_| {}).await
    }

    /// Spawns with settings changed by `configure` (port, database and keys are set first).
    pub async fn spawn_with(kind: Db, configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_routed(kind, str::to_owned, configure).await
    }

    /// Like [`TestApp::spawn_with`], but the server is given `route(url)` as its
    /// DATABASE_URL instead of the fresh database's own URL: a way to put something (a
    /// [`tcp_proxy::TcpProxy`]) between the server and its database. The database is
    /// still created and dropped as usual; `database_url` is its direct URL.
    pub async fn spawn_routed(
        kind: Db,
        route: impl FnOnce(&str) -> String,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_database) = fresh_database(kind, dir.path()).await;
        let key = keyward::crypto::Keyring::generate_key();
        let admin_token = format!("test-admin-{}", uuid::Uuid::new_v4().simple());
        let mut settings = Settings::new(StoreSettings::new(
            Some(route(&url)),
            dir.path().to_path_buf(),
            Some(key.clone()),
        ));
        settings.bind = "127.0.0.1:0".parse().unwrap();
        settings.admin_token = Some(SecretString::from(admin_token.clone()));
        settings.provider_hosts = vec!["127.0.0.1".into()];
        configure(&mut settings);
        let mut app = Self::boot(settings, kind, admin_token, key, pg_database, dir).await;
        app.database_url = url;
        app
    }

    /// A second server process on `other`'s database, with the same keyring and admin
    /// token but its own port, data directory and in-memory state (throttle, caches): what
    /// a second replica behind a load balancer sees. Stopping it leaves the database to
    /// `other`; stop this one first.
    pub async fn spawn_sharing(other: &TestApp) -> Self {
        Self::spawn_sharing_with(other, |_| {}).await
    }

    /// `spawn_sharing` with settings changed by `configure` (the database and keys stay).
    pub async fn spawn_sharing_with(
        other: &TestApp,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = other.settings.clone();
        settings.bind = "127.0.0.1:0".parse().unwrap();
        settings.store.data_dir = dir.path().to_path_buf();
        configure(&mut settings);
        Self::boot(
            settings,
            other.kind,
            other.admin_token.clone(),
            other.key.clone(),
            None,
            dir,
        )
        .await
    }

    async fn boot(
        settings: Settings,
        kind: Db,
        admin_token: String,
        key: SecretString,
        pg_database: Option<String>,
        dir: tempfile::TempDir,
    ) -> Self {
        let app = keyward::Application::build(settings.clone())
            .await
            .expect("the server builds");
        let port = app.port();
        let db = app.state().db.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            admin_token,
            key,
            database_url: settings.store.database_url.clone().unwrap_or_default(),
            settings,
            db,
            kind,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            pg_database,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Stops the server and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        self.db.clone().close().await.ok();
        if let Some(name) = self.pg_database.take()
            && let Ok(admin) = Database::connect(postgres_admin_url()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            admin.close().await.ok();
        }
    }

    /// POSTs a GraphQL operation with a bearer token (None: no Authorization header).
    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({
                "query": query,
                "variables": variables,
            }));
        if let Some(token) = token {
            req = req.bearer_auth(token);
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

    /// As the break-glass admin.
    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        self.gql_as(Some(&self.admin_token), query, variables).await
    }

    /// Creates an API token through the API and returns its secret.
    pub async fn create_token(&self, name: &str, role: &str, tenant: Option<&str>) -> String {
        let res = self
            .gql(
                "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { token } }",
                json!({ "i": { "name": name, "role": role, "tenant": tenant } }),
            )
            .await;
        res.data("createApiToken")["token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Creates a config as `token` and returns the `Config` object.
    pub async fn create_config(&self, token: &str, name: &str, data: Value) -> Value {
        let res = self
            .gql_as(
                Some(token),
                "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id name tenant version encrypted configData sensitivePaths tags } }",
                json!({ "i": { "name": name, "configData": data } }),
            )
            .await;
        res.data("createConfig").clone()
    }

    /// Every text value stored anywhere in the database, one string per row, for proving
    /// that a secret is not there.
    pub async fn dump_database(&self) -> String {
        let backend = self.db.get_database_backend();
        let tables_sql = match self.kind {
            Db::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Db::Postgres => "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'",
        };
        let tables = self
            .db
            .query_all_raw(Statement::from_string(backend, tables_sql))
            .await
            .expect("list tables");
        let mut out = String::new();
        for row in tables {
            let table: String = row.try_get("", "name").expect("table name");
            // Each row rendered as one text value `j` by the database itself: a driver row's
            // Debug output does not show the values, so grepping it would prove nothing.
            let sql = match self.kind {
                Db::Sqlite => {
                    let columns = self
                        .db
                        .query_all_raw(Statement::from_string(
                            backend,
                            format!("SELECT name FROM pragma_table_info('{table}')"),
                        ))
                        .await
                        .expect("list columns");
                    let parts: Vec<String> = columns
                        .iter()
                        .map(|c| {
                            let column: String = c.try_get("", "name").expect("column name");
                            format!("'{column}=' || quote(\"{column}\")")
                        })
                        .collect();
                    format!("SELECT {} AS j FROM \"{table}\"", parts.join(" || ' ' || "))
                }
                Db::Postgres => format!("SELECT row_to_json(t)::text AS j FROM \"{table}\" t"),
            };
            let rows = self
                .db
                .query_all_raw(Statement::from_string(backend, sql))
                .await
                .expect("dump table");
            for row in rows {
                let text: String = row.try_get("", "j").expect("a row as text");
                out.push_str(&format!("{table}: {text}\n"));
            }
        }
        out
    }

    pub fn key(&self) -> &str {
        self.key.expose_secret()
    }

    /// Runs a rotation in this process, as `rotateEncryptionKey` would with this server's
    /// settings, and kills it once its first batch has committed: as if the process died
    /// there. Returns how many configs that batch held.
    pub async fn rotate_and_die_after_the_first_batch(&self) -> u64 {
        let keyring = keyward::crypto::Keyring::parse(
            self.settings
                .store
                .encryption_key
                .as_ref()
                .expect("the test server has a keyring"),
        )
        .expect("a keyring");
        let keys = keyward::keys::TenantKeys::new(
            std::sync::Arc::new(keyring),
            self.settings.store.tenant_keys,
        );
        let db = self.db.clone();
        let (batch_done, mut first_batch) = tokio::sync::mpsc::unbounded_channel();
        let run = tokio::spawn(async move {
            let by = keyward::auth::Principal::break_glass_admin();
            let meta = keyward::auth::RequestMeta::default();
            keyward::keys::service::rotate(&db, &keys, None, &by, &meta, |configs, _| {
                let _ = batch_done.send(configs);
            })
            .await
        });
        let first = first_batch.recv().await.expect("a first batch");
        run.abort();
        let _ = run.await;
        first
    }
}

/// A fresh database of `kind`: a SQLite file in `dir`, or a uniquely named PostgreSQL
/// database (its name is returned so that it can be dropped).
async fn fresh_database(kind: Db, dir: &std::path::Path) -> (String, Option<String>) {
    match kind {
        Db::Sqlite => (
            format!("sqlite://{}?mode=rwc", dir.join("keyward.db").display()),
            None,
        ),
        Db::Postgres => {
            let name = format!("keyward_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(postgres_admin_url())
                .await
                .expect("PostgreSQL at KEYWARD_TEST_PG_URL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            admin.close().await.ok();
            let base = postgres_admin_url();
            let url = format!(
                "{}/{name}",
                base.rsplit_once('/').expect("a database URL").0
            );
            (url, Some(name))
        }
    }
}

/// Runs each listed `async fn name(app: &TestApp)` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::TestApp::spawn($crate::Db::Sqlite).await;
                    super::$name(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::TestApp::spawn($crate::Db::Postgres).await;
                    super::$name(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}
