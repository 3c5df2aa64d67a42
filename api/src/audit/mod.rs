//! The audit trail: who did what, when, from where. Append-only; never a secret or a
//! token. Other domains call [`AuditEntry::record`] inside their own transactions, so an
//! action and its audit row commit or fail together.

pub mod schema;
mod service;

pub use service::{AuditEntry, AuditFilter, list};
