//! Schema migrations, run by `keyward serve` on start and by `keyward migrate`.
//!
//! One file per change, named by its timestamp; each has a `down`. A released
//! migration is never edited: a change to the schema is a new file.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_configs;
mod m20261124_000002_create_api_tokens;
mod m20261124_000003_create_audit_events;
mod m20261124_000004_create_sessions;
mod m20261124_000005_create_keyring_checks;
mod m20261124_000006_notify_api_token_changes;
mod m20261124_000007_create_tenant_keys;
mod m20261124_000008_encrypt_messages;
mod m20261125_000001_config_counts;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_configs::Migration),
            Box::new(m20261124_000002_create_api_tokens::Migration),
            Box::new(m20261124_000003_create_audit_events::Migration),
            Box::new(m20261124_000004_create_sessions::Migration),
            Box::new(m20261124_000005_create_keyring_checks::Migration),
            Box::new(m20261124_000006_notify_api_token_changes::Migration),
            Box::new(m20261124_000007_create_tenant_keys::Migration),
            Box::new(m20261124_000008_encrypt_messages::Migration),
            Box::new(m20261125_000001_config_counts::Migration),
        ]
    }
}
