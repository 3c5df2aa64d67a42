//! The shapes the console reads from the GraphQL API (a client-side mirror of the parts
//! of the contract it uses; it shares no code with the server).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "ADMIN",
            Self::Member => "MEMBER",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// A Relay-style connection, read through its `nodes`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection<T> {
    pub total_count: i64,
    pub page_info: PageInfo,
    pub nodes: Vec<T>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSummary {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub tenant: String,
    pub tags: Vec<String>,
    pub version: i64,
    pub updated_at: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub tenant: String,
    pub tags: Vec<String>,
    pub config_data: Value,
    pub sensitive_paths: Vec<String>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    Active,
    Closed,
    Failed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Closed => "CLOSED",
            Self::Failed => "FAILED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: String,
    pub config_id: String,
    pub tenant: String,
    pub provider: String,
    pub model: Option<String>,
    pub status: SessionStatus,
    pub message_count: i64,
    pub updated_at: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub config_id: String,
    pub tenant: String,
    pub provider: String,
    pub model: Option<String>,
    pub status: SessionStatus,
    pub messages: Vec<Message>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub role: String,
    pub content: String,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct MessageChunk {
    pub delta: String,
    pub done: bool,
    pub message: Option<Message>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub at: String,
    pub action: String,
    pub actor: String,
    pub tenant: Option<String>,
    pub config_id: Option<String>,
    pub success: bool,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

/// Shortens an RFC 3339 timestamp for tables: `2026-11-24 20:29:03` (UTC as sent).
pub fn short_time(at: &str) -> String {
    let trimmed = at.split('.').next().unwrap_or(at).trim_end_matches('Z');
    trimmed.replacen('T', " ", 1).chars().take(19).collect()
}
