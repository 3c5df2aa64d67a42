use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Per-tenant data keys (envelope encryption, `KEYWARD_TENANT_KEYS`), each wrapped by the
/// master keyring. Looked up by tenant, newest first.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantKeys::Table)
                    .col(
                        ColumnDef::new(TenantKeys::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(TenantKeys::Tenant)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TenantKeys::KeyId)
                            .string_len(32)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(TenantKeys::Wrapped).text().not_null())
                    .col(
                        ColumnDef::new(TenantKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tenant_keys_tenant_id")
                    .table(TenantKeys::Table)
                    .col(TenantKeys::Tenant)
                    .col(TenantKeys::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TenantKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum TenantKeys {
    Table,
    Id,
    Tenant,
    KeyId,
    Wrapped,
    CreatedAt,
}
