//! `configs`: one JSON document per row, secrets sealed.

use crate::SealedJson;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "configs")]
pub struct Model {
    /// UUIDv7, so ordering by id is ordering by creation.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub tenant: String,
    /// JSON array of strings, for display; `config_tags` is the filterable copy.
    pub tags: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub config_data: SealedJson,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::config_tag::Entity")]
    ConfigTag,
    #[sea_orm(has_many = "super::session::Entity")]
    Session,
}

impl Related<super::config_tag::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ConfigTag.def()
    }
}

impl Related<super::session::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Session.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
