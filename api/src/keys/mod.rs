//! Key management: the keyring check at start-up, online rotation, key usage, and the
//! public sealed-box key. Never returns or logs a key.

pub mod schema;
pub mod service;
