//! `tenant_keys`: each tenant's data keys, stored only wrapped by the master keyring.
//!
//! A tenant's newest key (by id, which is time-ordered) is its current one: new values are
//! encrypted under it. Older keys stay to open what they encrypted until a rotation moves it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_keys")]
pub struct Model {
    /// UUIDv7: the newest of a tenant's keys is its current one.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant: String,
    /// The data key's fingerprint (an HMAC under it, safe to show).
    #[sea_orm(unique)]
    pub key_id: String,
    /// The data key, as a Fernet token under a master key. Never the key itself.
    #[sea_orm(column_type = "Text")]
    pub wrapped: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
