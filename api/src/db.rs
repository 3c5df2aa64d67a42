//! Connecting to the store: PostgreSQL, or SQLite (the embedded default).
//!
//! When the database goes away the pool must neither hang a request nor stay broken once
//! it returns: every checkout is bounded by `db_timeout` (so a request fails with
//! UNAVAILABLE instead of waiting), every pooled connection is tested as it is handed out
//! (a connection cut while idle is replaced, not used), and new connections are opened on
//! demand, so the service recovers by itself. tests/tests/faults.rs holds it to this.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};

use crate::settings::StoreSettings;

/// The database URL in effect: the configured one, or SQLite in the data directory.
pub fn database_url(store: &StoreSettings) -> String {
    match &store.database_url {
        Some(url) => url.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            store.data_dir.join("keyward.db").display()
        ),
    }
}

pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

pub async fn connect(store: &StoreSettings) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let url = database_url(store);
    if store.database_url.is_none() {
        std::fs::create_dir_all(&store.data_dir).map_err(|e| {
            sea_orm::DbErr::Custom(format!("cannot create {}: {e}", store.data_dir.display()))
        })?;
    }
    let mut options = ConnectOptions::new(url.clone());
    options
        .acquire_timeout(store.db_timeout)
        .connect_timeout(store.db_timeout)
        .idle_timeout(Duration::from_secs(300))
        // Pings every connection as it is checked out: one the network cut while it sat in
        // the pool is replaced instead of failing the request that drew it, and a database
        // gone silent fails the checkout within db_timeout (faults.rs). The round trip is
        // measured in tests/bench/README.md; pinging only idle connections left that bound.
        .test_before_acquire(true)
        .sqlx_logging(false);
    if is_sqlite(&url) {
        // One connection: SQLite has one writer anyway, and a single connection cannot
        // fail a read-then-write transaction with SQLITE_BUSY under concurrency.
        options
            .max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
    } else {
        options
            .max_connections(store.db_max_connections)
            .min_connections(1)
            .map_sqlx_postgres_opts(|o| {
                // A client that vanishes mid-transaction (a partition, a killed process)
                // would otherwise keep its row locks until TCP notices, hours later, and
                // every writer of those rows would queue behind it. Keyward's
                // transactions are a few statements with no waiting in between.
                o.options([(
                    "idle_in_transaction_session_timeout",
                    IDLE_IN_TRANSACTION_TIMEOUT.as_millis().to_string(),
                )])
            });
    }
    Database::connect(options).await
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    Migrator::up(db, None).await
}

/// How long PostgreSQL lets one of our sessions sit idle inside a transaction.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The cheapest round trip, for /readyz, within `timeout`: the checkout is bounded by the
/// pool, the round trip on a connection that stopped answering after it was checked out
/// is bounded here.
pub async fn ping(db: &DatabaseConnection, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, db.ping()).await, Ok(Ok(())))
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}
