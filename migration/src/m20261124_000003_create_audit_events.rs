use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(
                        ColumnDef::new(AuditEvents::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::Action)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::Actor)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::Tenant).string_len(100))
                    .col(ColumnDef::new(AuditEvents::ConfigId).uuid())
                    .col(ColumnDef::new(AuditEvents::SessionId).uuid())
                    .col(ColumnDef::new(AuditEvents::Success).boolean().not_null())
                    .col(ColumnDef::new(AuditEvents::RequestId).string_len(64))
                    .col(ColumnDef::new(AuditEvents::ClientIp).string_len(64))
                    .col(ColumnDef::new(AuditEvents::UserAgent).string_len(512))
                    .col(ColumnDef::new(AuditEvents::Detail).json())
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_audit_events_config_id", AuditEvents::ConfigId),
            ("idx_audit_events_action", AuditEvents::Action),
            ("idx_audit_events_actor", AuditEvents::Actor),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(col)
                        .col(AuditEvents::Id)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Id,
    At,
    Action,
    Actor,
    Tenant,
    ConfigId,
    SessionId,
    Success,
    RequestId,
    ClientIp,
    UserAgent,
    Detail,
}
