//! Sessions: conversations relayed to an AI provider. The config is decrypted in memory
//! for each turn, only to build the provider client; the key is never stored, logged or
//! returned. The only caller of `providers`.

pub mod schema;
mod service;
mod types;

pub use service::SessionFilter;
