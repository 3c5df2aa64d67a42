//! PostgreSQL only: a NOTIFY on channel `keyward_api_tokens` when a token is revoked,
//! deleted, or changes identity (role, tenant, name, hash), by whatever writer, at the
//! writer's commit. Every Keyward process listens and drops its verified-token cache, so
//! a revocation is in force on the token's next request in every process (api/src/auth/
//! cache.rs). `last_used_at` writes do not notify. SQLite has no NOTIFY: nothing to do.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE FUNCTION keyward_api_tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_notify('keyward_api_tokens', 'changed');
                 RETURN NULL;
             END
             $$",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER api_tokens_notify_changes
             AFTER UPDATE OF revoked_at, role, tenant, name, token_hash OR DELETE OR TRUNCATE
             ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION keyward_api_tokens_changed()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS api_tokens_notify_changes ON api_tokens")
            .await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS keyward_api_tokens_changed()")
            .await?;
        Ok(())
    }
}
