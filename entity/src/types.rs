//! Column newtypes and enums with stable stored names.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A config document whose sensitive values are all `enc:` ciphertexts.
///
/// Only the encryption walk should build one (`SealedJson::new_unchecked` says so at the
/// call site), which keeps "store a plaintext document" from being written by accident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, DeriveValueType)]
pub struct SealedJson(serde_json::Value);

impl SealedJson {
    /// Wraps a document the caller has already sealed. Callers outside the encryption
    /// walk have no business calling this.
    pub fn new_unchecked(sealed: serde_json::Value) -> Self {
        Self(sealed)
    }

    pub fn as_value(&self) -> &serde_json::Value {
        &self.0
    }

    pub fn into_value(self) -> serde_json::Value {
        self.0
    }
}

/// What a token may do. Stored as `admin` / `member`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Role {
    #[sea_orm(string_value = "admin")]
    Admin,
    #[sea_orm(string_value = "member")]
    Member,
}

/// A session's lifecycle. Stored as `active` / `closed` / `failed`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum SessionStatus {
    #[sea_orm(string_value = "active")]
    Active,
    #[sea_orm(string_value = "closed")]
    Closed,
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// Audited actions. The stored names are part of the API (`AuditEvent.action`): never rename.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum AuditAction {
    #[sea_orm(string_value = "config.decrypt")]
    ConfigDecrypt,
    #[sea_orm(string_value = "config.create")]
    ConfigCreate,
    #[sea_orm(string_value = "config.update")]
    ConfigUpdate,
    #[sea_orm(string_value = "config.delete")]
    ConfigDelete,
    #[sea_orm(string_value = "session.create")]
    SessionCreate,
    #[sea_orm(string_value = "token.create")]
    TokenCreate,
    #[sea_orm(string_value = "token.revoke")]
    TokenRevoke,
    #[sea_orm(string_value = "key.rotate")]
    KeyRotate,
    #[sea_orm(string_value = "key.export")]
    KeyExport,
    #[sea_orm(string_value = "auth.denied")]
    AuthDenied,
}

impl AuditAction {
    /// The stored (and API) name, e.g. `config.decrypt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigDecrypt => "config.decrypt",
            Self::ConfigCreate => "config.create",
            Self::ConfigUpdate => "config.update",
            Self::ConfigDelete => "config.delete",
            Self::SessionCreate => "session.create",
            Self::TokenCreate => "token.create",
            Self::TokenRevoke => "token.revoke",
            Self::KeyRotate => "key.rotate",
            Self::KeyExport => "key.export",
            Self::AuthDenied => "auth.denied",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        <Self as sea_orm::Iterable>::iter().find(|a| a.as_str() == name)
    }
}
