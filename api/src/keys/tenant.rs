//! Envelope encryption: each tenant's own data keys, stored only wrapped by the master
//! keyring, and the rings each operation uses.
//!
//! With `KEYWARD_TENANT_KEYS` on, a tenant's values are encrypted under its current data
//! key, and app-side `enc:` values must decrypt under one of its data keys: another
//! tenant's ciphertext, or the master keyring's, is refused. Off (the default, and what
//! CONFIG_ENCRYPTION_KEY's contract promises), the master keyring does both. Either way a
//! tenant's values open with its data keys *and* the master keyring, so the mode can be
//! switched on or off and `rotateEncryptionKey` moves every value to where the mode says.
//!
//! Unwrapped rings are cached per tenant for a few seconds; a value that does not open is
//! retried on a fresh ring, so a data key made by another process is never missed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use entity::tenant_key;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use uuid::Uuid;

use crate::crypto::{self, Keyring, Plaintext};
use crate::error::AppError;

/// How long an unwrapped ring is trusted before it is read again.
const FRESH_FOR: Duration = Duration::from_secs(5);

pub struct TenantKeys {
    master: Arc<Keyring>,
    enabled: bool,
    cache: RwLock<HashMap<String, Cached>>,
    making: tokio::sync::Mutex<()>,
}

/// A tenant's rings as last read from the store.
#[derive(Clone)]
struct Cached {
    /// Its data keys, current first; `None` if it has none.
    data: Option<Arc<Keyring>>,
    /// Its data keys, then the master keyring.
    reading: Arc<Keyring>,
    at: Instant,
}

/// A data key handed to an admin for app-side encryption.
pub struct ExportedKey {
    pub key_id: String,
    pub key: SecretString,
    pub created_at: chrono::DateTime<Utc>,
}

impl TenantKeys {
    pub fn new(master: Arc<Keyring>, enabled: bool) -> Self {
        Self {
            master,
            enabled,
            cache: RwLock::default(),
            making: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether new values are written under tenant data keys.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn master(&self) -> &Arc<Keyring> {
        &self.master
    }

    /// The keys that open a tenant's values: its data keys, then the master keyring.
    pub async fn reading(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
    ) -> Result<Arc<Keyring>, AppError> {
        Ok(self.rings(db, tenant, false).await?.reading)
    }

    /// [`reading`](Self::reading), read from the store now: for a retry after a value
    /// did not open.
    pub async fn reading_fresh(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
    ) -> Result<Arc<Keyring>, AppError> {
        Ok(self.rings(db, tenant, true).await?.reading)
    }

    /// Opens a tenant's stored document, retrying once on a fresh ring. The error names
    /// the first path that does not open.
    pub async fn open(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
        doc: &Value,
    ) -> Result<Plaintext<Value>, AppError> {
        match crypto::decrypt_document(doc, &*self.reading(db, tenant).await?) {
            Ok(plain) => Ok(plain),
            Err(_) => crypto::decrypt_document(doc, &*self.reading_fresh(db, tenant).await?)
                .map_err(|path| AppError::DecryptionFailed {
                    path: format!("configData.{path}"),
                }),
        }
    }

    /// The keys a tenant's new values are written with (the first encrypts) and that an
    /// app-side `enc:` value must decrypt under. With tenant keys on, a tenant without a
    /// data key gets one here, committed at once: hence a connection, never a transaction
    /// (a key rolled back after values were encrypted under it would lose them).
    pub async fn writing(
        &self,
        db: &DatabaseConnection,
        tenant: &str,
    ) -> Result<Arc<Keyring>, AppError> {
        if !self.enabled {
            return Ok(self.master.clone());
        }
        if let Some(data) = self.rings(db, tenant, false).await?.data {
            return Ok(data);
        }
        // One maker at a time, so that a burst of first writes makes one key, not several.
        let _making = self.making.lock().await;
        if let Some(data) = self.rings(db, tenant, true).await?.data {
            return Ok(data);
        }
        self.create(db, tenant).await?;
        self.rings(db, tenant, true)
            .await?
            .data
            .ok_or_else(|| AppError::internal("a data key just made is not found"))
    }

    /// Makes a new current data key for a tenant; its older keys stay to open their values.
    pub async fn create(
        &self,
        db: &DatabaseConnection,
        tenant: &str,
    ) -> Result<tenant_key::Model, AppError> {
        let key = Keyring::generate_key();
        let ring = Keyring::parse(&key).map_err(|e| AppError::internal(e.to_string()))?;
        let row = tenant_key::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant: Set(tenant.to_owned()),
            key_id: Set(ring.fingerprints().remove(0)),
            wrapped: Set(self.master.encrypt(key.expose_secret().as_bytes())),
            created_at: Set(Utc::now()),
        }
        .insert(db)
        .await?;
        self.forget(tenant);
        Ok(row)
    }

    /// A tenant's current data key, made if it has none. The caller audits.
    pub async fn export(
        &self,
        db: &DatabaseConnection,
        tenant: &str,
    ) -> Result<ExportedKey, AppError> {
        self.writing(db, tenant).await?;
        let row = current_row(db, tenant)
            .await?
            .ok_or_else(|| AppError::internal("a data key just made is not found"))?;
        let key = self.unwrap(&row)?;
        Ok(ExportedKey {
            key_id: row.key_id,
            key,
            created_at: row.created_at,
        })
    }

    /// Opens a stored data key with the master keyring.
    fn unwrap(&self, row: &tenant_key::Model) -> Result<SecretString, AppError> {
        let bytes = self.master.decrypt(&row.wrapped).map_err(|_| {
            AppError::internal(format!(
                "tenant {}'s data key {} does not open with the master keyring",
                row.tenant, row.key_id
            ))
        })?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| AppError::internal(format!("data key {} is not text", row.key_id)))?;
        Ok(SecretString::from(text))
    }

    async fn rings(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
        fresh: bool,
    ) -> Result<Cached, AppError> {
        if !fresh {
            let cache = self.cache.read().expect("the cache lock is never poisoned");
            if let Some(hit) = cache.get(tenant).filter(|c| c.at.elapsed() < FRESH_FOR) {
                return Ok(hit.clone());
            }
        }
        let rows = tenant_key::Entity::find()
            .filter(tenant_key::Column::Tenant.eq(tenant))
            .order_by_desc(tenant_key::Column::Id)
            .all(db)
            .await?;
        let data = if rows.is_empty() {
            None
        } else {
            let keys = rows
                .iter()
                .map(|row| self.unwrap(row))
                .collect::<Result<Vec<_>, _>>()?;
            let ring = Keyring::from_keys(keys.iter().map(ExposeSecret::expose_secret))
                .map_err(|e| AppError::internal(format!("a stored data key: {e}")))?;
            Some(Arc::new(ring))
        };
        let reading = match &data {
            Some(data) => Arc::new(data.chain(&self.master)),
            None => self.master.clone(),
        };
        let cached = Cached {
            data,
            reading,
            at: Instant::now(),
        };
        self.cache
            .write()
            .expect("the cache lock is never poisoned")
            .insert(tenant.to_owned(), cached.clone());
        Ok(cached)
    }

    fn forget(&self, tenant: &str) {
        self.cache
            .write()
            .expect("the cache lock is never poisoned")
            .remove(tenant);
    }
}

/// A tenant's current (newest) data key row.
async fn current_row(
    db: &impl ConnectionTrait,
    tenant: &str,
) -> Result<Option<tenant_key::Model>, AppError> {
    Ok(tenant_key::Entity::find()
        .filter(tenant_key::Column::Tenant.eq(tenant))
        .order_by_desc(tenant_key::Column::Id)
        .one(db)
        .await?)
}
