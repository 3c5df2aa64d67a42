//! `messages`: a session's transcript, in `seq` order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub session_id: Uuid,
    /// Position in the transcript, from 0.
    pub seq: i32,
    /// `user`, `assistant`, or `error` for a failed provider call.
    pub role: String,
    /// `enc:` and a Fernet token under the session's tenant ring when `encrypted`;
    /// plaintext in rows written before transcripts were encrypted.
    #[sea_orm(column_type = "Text")]
    pub content: String,
    pub encrypted: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::session::Entity",
        from = "Column::SessionId",
        to = "super::session::Column::Id",
        on_delete = "Cascade"
    )]
    Session,
}

impl Related<super::session::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Session.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
