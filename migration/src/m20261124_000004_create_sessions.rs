use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(ColumnDef::new(Sessions::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Sessions::ConfigId).uuid().not_null())
                    .col(ColumnDef::new(Sessions::Tenant).string_len(100).not_null())
                    .col(ColumnDef::new(Sessions::Provider).string_len(64).not_null())
                    .col(ColumnDef::new(Sessions::ProviderIndex).integer().not_null())
                    .col(ColumnDef::new(Sessions::Model).string_len(200))
                    .col(ColumnDef::new(Sessions::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Sessions::MessageCount).integer().not_null())
                    .col(
                        ColumnDef::new(Sessions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Sessions::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_config")
                            .from(Sessions::Table, Sessions::ConfigId)
                            .to(Configs::Table, Configs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_tenant_id")
                    .table(Sessions::Table)
                    .col(Sessions::Tenant)
                    .col(Sessions::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_config_id")
                    .table(Sessions::Table)
                    .col(Sessions::ConfigId)
                    .col(Sessions::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(ColumnDef::new(Messages::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Messages::SessionId).uuid().not_null())
                    .col(ColumnDef::new(Messages::Seq).integer().not_null())
                    .col(ColumnDef::new(Messages::Role).string_len(16).not_null())
                    .col(ColumnDef::new(Messages::Content).text().not_null())
                    .col(
                        ColumnDef::new(Messages::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_session")
                            .from(Messages::Table, Messages::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One transcript position per message: two writers racing on a session conflict
        // here instead of interleaving silently.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_session_seq")
                    .table(Messages::Table)
                    .col(Messages::SessionId)
                    .col(Messages::Seq)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Messages::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Configs {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    ConfigId,
    Tenant,
    Provider,
    ProviderIndex,
    Model,
    Status,
    MessageCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    SessionId,
    Seq,
    Role,
    Content,
    CreatedAt,
}
