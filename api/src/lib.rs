//! Keyward: stores JSON configs for AI-provider sessions with every secret encrypted, and
//! relays chat turns to the providers with keys that never leave the server.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod db;
pub mod error;
pub mod headers;
pub mod http;
pub mod keys;
pub mod pagination;
pub mod providers;
pub mod query_cache;
pub mod schema;
pub mod session;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod ws;

pub use error::AppError;
pub use settings::Settings;
pub use startup::Application;
