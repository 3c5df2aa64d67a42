//! `sessions`: a conversation bound to one provider of one config. Holds no key.

use crate::SessionStatus;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub config_id: Uuid,
    pub tenant: String,
    /// The provider module, e.g. `provider-anthropic`.
    pub provider: String,
    /// Index into the config's `providers` array.
    pub provider_index: i32,
    pub model: Option<String>,
    pub status: SessionStatus,
    pub message_count: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
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
    #[sea_orm(has_many = "super::message::Entity")]
    Message,
}

impl Related<super::config::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Config.def()
    }
}

impl Related<super::message::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Message.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
