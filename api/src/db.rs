//! Connecting to the store: PostgreSQL, or SQLite (the embedded default).

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
            .min_connections(1);
    }
    Database::connect(options).await
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    Migrator::up(db, None).await
}

/// The cheapest round trip, for /readyz.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}
