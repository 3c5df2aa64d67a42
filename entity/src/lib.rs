//! Keyward's tables as SeaORM entities, one module per table.
//!
//! These are rows, not API types: no GraphQL derives and no crypto here. A row's
//! `config_data` only ever holds a [`SealedJson`], a document whose secrets are
//! already `enc:` values; producing one is the `api` crate's crypto module's job.

pub mod api_token;
pub mod audit_event;
pub mod config;
pub mod config_tag;
pub mod keyring_check;
pub mod message;
pub mod session;
pub mod tenant_key;
mod types;

pub use types::{AuditAction, Role, SealedJson, SessionStatus};

pub mod prelude {
    pub use super::api_token::Entity as ApiToken;
    pub use super::audit_event::Entity as AuditEvent;
    pub use super::config::Entity as Config;
    pub use super::config_tag::Entity as ConfigTag;
    pub use super::keyring_check::Entity as KeyringCheck;
    pub use super::message::Entity as Message;
    pub use super::session::Entity as Session;
    pub use super::tenant_key::Entity as TenantKey;
}
