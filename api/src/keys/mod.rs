//! Key management: the keyring check at start-up, tenant data keys (envelope encryption),
//! online rotation, key usage, and the public sealed-box key. Never logs a key; returns one
//! only to an ADMIN's audited export of a tenant data key.

pub mod schema;
pub mod service;
mod tenant;

pub use tenant::{ExportedKey, TenantKeys};
