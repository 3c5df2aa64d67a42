//! `keyring_checks`: one row proving which master key this database was written with.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "keyring_checks")]
pub struct Model {
    /// Always 1.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    /// A Fernet token of a fixed text under the primary key at the last check or rotation.
    #[sea_orm(column_type = "Text")]
    pub token: String,
    /// The fingerprint of the key that made `token`.
    pub fingerprint: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
