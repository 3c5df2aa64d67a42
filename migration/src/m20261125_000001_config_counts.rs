//! How many configs each tenant holds, kept by triggers, so that `configs { totalCount }`
//! reads a few rows instead of counting every config (it was O(configs): at 10,000 a
//! count cost a millisecond of PostgreSQL CPU, and the console asks for it on every page).
//!
//! Writers never contend: the triggers only *append* a `+1`/`-1` row to
//! `config_count_deltas` (no row is updated, so no lock is waited on); readers add the
//! folded `config_counts` and the pending deltas in one statement, which is exact under
//! either database's snapshot; Keyward folds the deltas into `config_counts` now and then
//! (api/src/config/count.rs). The same on PostgreSQL and SQLite.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConfigCounts::Table)
                    .col(
                        ColumnDef::new(ConfigCounts::Tenant)
                            .string_len(100)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ConfigCounts::N).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConfigCountDeltas::Table)
                    .col(
                        ColumnDef::new(ConfigCountDeltas::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ConfigCountDeltas::Tenant)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConfigCountDeltas::Delta)
                            .integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_config_count_deltas_tenant")
                    .table(ConfigCountDeltas::Table)
                    .col(ConfigCountDeltas::Tenant)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // The triggers first: on PostgreSQL creating one locks out writers until this
        // migration commits, so the counts below miss nothing.
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE FUNCTION keyward_config_count_delta() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                         IF TG_OP = 'INSERT' THEN
                             INSERT INTO config_count_deltas (tenant, delta) VALUES (NEW.tenant, 1);
                         ELSIF TG_OP = 'DELETE' THEN
                             INSERT INTO config_count_deltas (tenant, delta) VALUES (OLD.tenant, -1);
                         ELSIF OLD.tenant IS DISTINCT FROM NEW.tenant THEN
                             INSERT INTO config_count_deltas (tenant, delta)
                                 VALUES (OLD.tenant, -1), (NEW.tenant, 1);
                         END IF;
                         RETURN NULL;
                     END
                     $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER configs_count AFTER INSERT OR DELETE OR UPDATE OF tenant
                     ON configs FOR EACH ROW EXECUTE FUNCTION keyward_config_count_delta()",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE FUNCTION keyward_config_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                         DELETE FROM config_count_deltas;
                         DELETE FROM config_counts;
                         RETURN NULL;
                     END
                     $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER configs_count_truncate AFTER TRUNCATE ON configs
                     FOR EACH STATEMENT EXECUTE FUNCTION keyward_config_count_truncate()",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "CREATE TRIGGER configs_count_insert AFTER INSERT ON configs BEGIN
                         INSERT INTO config_count_deltas (tenant, delta) VALUES (NEW.tenant, 1);
                     END",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER configs_count_delete AFTER DELETE ON configs BEGIN
                         INSERT INTO config_count_deltas (tenant, delta) VALUES (OLD.tenant, -1);
                     END",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER configs_count_update AFTER UPDATE OF tenant ON configs
                     WHEN OLD.tenant IS NOT NEW.tenant BEGIN
                         INSERT INTO config_count_deltas (tenant, delta)
                             VALUES (OLD.tenant, -1), (NEW.tenant, 1);
                     END",
                )
                .await?;
            }
        }
        db.execute_unprepared(
            "INSERT INTO config_counts (tenant, n) SELECT tenant, COUNT(*) FROM configs GROUP BY tenant",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared("DROP TRIGGER IF EXISTS configs_count ON configs")
                    .await?;
                db.execute_unprepared("DROP TRIGGER IF EXISTS configs_count_truncate ON configs")
                    .await?;
                db.execute_unprepared("DROP FUNCTION IF EXISTS keyward_config_count_delta()")
                    .await?;
                db.execute_unprepared("DROP FUNCTION IF EXISTS keyward_config_count_truncate()")
                    .await?;
            }
            _ => {
                for trigger in [
                    "configs_count_insert",
                    "configs_count_delete",
                    "configs_count_update",
                ] {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {trigger}"))
                        .await?;
                }
            }
        }
        manager
            .drop_table(Table::drop().table(ConfigCountDeltas::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ConfigCounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ConfigCounts {
    Table,
    Tenant,
    N,
}

#[derive(DeriveIden)]
enum ConfigCountDeltas {
    Table,
    Id,
    Tenant,
    Delta,
}
