//! `configs { totalCount }` without counting configs: the per-tenant counts the triggers of
//! migration `m20261125_000001` keep, plus the deltas not folded in yet, read in one
//! statement (so exact under the statement's snapshot, on both databases).
//!
//! The deltas are folded into `config_counts` by whichever read finds more than
//! [`FOLD_AFTER`] of them pending, in the background; several processes may fold at once
//! (each folds the rows it deletes, and a row can be deleted once). Filtered lists
//! (`search`, `tag`) still count their matches.

use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::error::AppError;

/// Pending deltas beyond which a read folds them.
pub const FOLD_AFTER: i64 = 512;

/// One fold at a time per process.
static FOLDING: AtomicBool = AtomicBool::new(false);

/// How many configs the tenant holds (every tenant's when `tenant` is None).
pub async fn total(db: &DatabaseConnection, tenant: Option<&str>) -> Result<u64, AppError> {
    let backend = db.get_database_backend();
    let (filter, values) = match (tenant, backend) {
        (Some(t), DbBackend::Postgres) => (" WHERE tenant = $1", vec![t.into()]),
        (Some(t), _) => (" WHERE tenant = ?", vec![t.into()]),
        (None, _) => ("", vec![]),
    };
    // The tenant filter appears twice; PostgreSQL reuses $1, SQLite numbers `?` in order.
    let values = match (tenant, backend) {
        (Some(t), DbBackend::Sqlite) => vec![t.into(), t.into()],
        _ => values,
    };
    let sql = format!(
        "SELECT CAST(COALESCE((SELECT SUM(n) FROM config_counts{filter}), 0) AS BIGINT) AS folded, \
                CAST(COALESCE(SUM(delta), 0) AS BIGINT) AS pending, COUNT(*) AS deltas \
         FROM config_count_deltas{filter}"
    );
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| AppError::Internal("the count query returned no row".into()))?;
    let folded: i64 = row.try_get("", "folded")?;
    let pending: i64 = row.try_get("", "pending")?;
    let deltas: i64 = row.try_get("", "deltas")?;
    if deltas > FOLD_AFTER && !FOLDING.swap(true, Ordering::SeqCst) {
        let db = db.clone();
        tokio::spawn(async move {
            if let Err(e) = fold(&db).await {
                tracing::warn!(error = %e, "could not fold the config counts");
            }
            FOLDING.store(false, Ordering::SeqCst);
        });
    }
    Ok(u64::try_from(folded + pending).unwrap_or(0))
}

/// Moves the pending deltas into `config_counts`.
pub async fn fold(db: &DatabaseConnection) -> Result<(), AppError> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            // One statement: the rows it deletes are the rows it adds up.
            db.execute_unprepared(
                "WITH moved AS (DELETE FROM config_count_deltas RETURNING tenant, delta) \
                 INSERT INTO config_counts (tenant, n) \
                 SELECT tenant, SUM(delta) FROM moved GROUP BY tenant \
                 ON CONFLICT (tenant) DO UPDATE SET n = config_counts.n + EXCLUDED.n",
            )
            .await?;
        }
        _ => {
            let txn = db.begin().await?;
            let top = txn
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT COALESCE(MAX(id), 0) AS top FROM config_count_deltas",
                ))
                .await?
                .map(|row| row.try_get::<i64>("", "top"))
                .transpose()?
                .unwrap_or(0);
            // (The WHERE clause keeps SQLite from reading ON CONFLICT as a join constraint.)
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO config_counts (tenant, n) \
                 SELECT tenant, SUM(delta) FROM config_count_deltas WHERE id <= ? GROUP BY tenant \
                 ON CONFLICT (tenant) DO UPDATE SET n = n + excluded.n",
                [top.into()],
            ))
            .await?;
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "DELETE FROM config_count_deltas WHERE id <= ?",
                [top.into()],
            ))
            .await?;
            txn.commit().await?;
        }
    }
    Ok(())
}
