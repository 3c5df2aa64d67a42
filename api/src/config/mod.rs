//! Configs: JSON documents whose secrets are sealed on the way in and stay sealed on the
//! way out. Plaintext leaves only through `config(decrypt: true)`, to ADMINs, after its
//! audit row is committed; and to the session domain, in memory.

pub mod count;
pub mod schema;
pub mod service;
mod types;

pub use types::ConfigView;
