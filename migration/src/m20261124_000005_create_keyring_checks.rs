use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One row: a Fernet token of a known text under the keyring's primary key, so a server
/// started with keys that cannot read this database refuses before writing anything.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyringChecks::Table)
                    .col(
                        ColumnDef::new(KeyringChecks::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(KeyringChecks::Token).text().not_null())
                    .col(
                        ColumnDef::new(KeyringChecks::Fingerprint)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(KeyringChecks::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KeyringChecks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum KeyringChecks {
    Table,
    Id,
    Token,
    Fingerprint,
    UpdatedAt,
}
