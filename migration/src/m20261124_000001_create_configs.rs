use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Configs::Table)
                    .col(ColumnDef::new(Configs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Configs::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Configs::Description).text())
                    .col(ColumnDef::new(Configs::Tenant).string_len(100).not_null())
                    .col(ColumnDef::new(Configs::Tags).json().not_null())
                    .col(ColumnDef::new(Configs::ConfigData).json_binary().not_null())
                    .col(ColumnDef::new(Configs::Version).integer().not_null())
                    .col(
                        ColumnDef::new(Configs::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Configs::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Lists are per tenant, newest (highest UUIDv7) first.
        manager
            .create_index(
                Index::create()
                    .name("idx_configs_tenant_id")
                    .table(Configs::Table)
                    .col(Configs::Tenant)
                    .col(Configs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_configs_name")
                    .table(Configs::Table)
                    .col(Configs::Name)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConfigTags::Table)
                    .col(ColumnDef::new(ConfigTags::ConfigId).uuid().not_null())
                    .col(ColumnDef::new(ConfigTags::Tag).string_len(100).not_null())
                    .primary_key(
                        Index::create()
                            .col(ConfigTags::ConfigId)
                            .col(ConfigTags::Tag),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_config_tags_config")
                            .from(ConfigTags::Table, ConfigTags::ConfigId)
                            .to(Configs::Table, Configs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_config_tags_tag")
                    .table(ConfigTags::Table)
                    .col(ConfigTags::Tag)
                    .col(ConfigTags::ConfigId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConfigTags::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Configs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Configs {
    Table,
    Id,
    Name,
    Description,
    Tenant,
    Tags,
    ConfigData,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ConfigTags {
    Table,
    ConfigId,
    Tag,
}
