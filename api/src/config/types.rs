use async_graphql::{ID, Json, Object};
use chrono::{DateTime, Utc};
use entity::config;
use serde_json::Value;

use crate::crypto::{self, Plaintext};

/// A config as the API shows it: the stored (sealed) document, or, for an audited
/// `decrypt: true` read, the plaintext one.
pub struct ConfigView {
    row: config::Model,
    plaintext: Option<Plaintext<Value>>,
}

impl ConfigView {
    pub fn sealed(row: config::Model) -> Self {
        Self {
            row,
            plaintext: None,
        }
    }

    pub fn revealed(row: config::Model, plaintext: Plaintext<Value>) -> Self {
        Self {
            row,
            plaintext: Some(plaintext),
        }
    }
}

#[Object(name = "Config")]
impl ConfigView {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.row.name
    }

    async fn description(&self) -> Option<&str> {
        self.row.description.as_deref()
    }

    async fn tenant(&self) -> &str {
        &self.row.tenant
    }

    async fn tags(&self) -> Vec<String> {
        serde_json::from_value(self.row.tags.clone()).unwrap_or_default()
    }

    /// Sensitive values as enc:… (default) or as plaintext (decrypt: true).
    async fn config_data(&self) -> Json<&Value> {
        Json(match &self.plaintext {
            Some(plain) => plain.expose(),
            None => self.row.config_data.as_value(),
        })
    }

    /// Exactly !decrypt: false when this response is the plaintext view.
    async fn encrypted(&self) -> bool {
        self.plaintext.is_none()
    }

    /// Paths of the values that are stored encrypted, e.g. providers[0].config.api_key.
    async fn sensitive_paths(&self) -> Vec<String> {
        crypto::sensitive_paths(self.row.config_data.as_value())
    }

    /// Starts at 1, +1 on every update.
    async fn version(&self) -> i32 {
        self.row.version
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
}
