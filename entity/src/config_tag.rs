//! `config_tags`: one row per (config, tag), so the tag filter is an indexed lookup.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "config_tags")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub config_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::config::Entity",
        from = "Column::ConfigId",
        to = "super::config::Column::Id",
        on_delete = "Cascade"
    )]
    Config,
}

impl Related<super::config::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Config.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
