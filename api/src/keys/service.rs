//! The keyring check at start-up, online rotation, and key usage counts.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use entity::{AuditAction, config, keyring_check, message, session, tenant_key};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{ExportedKey, TenantKeys};
use crate::audit::AuditEntry;
use crate::auth::{Principal, RequestMeta};
use crate::crypto::{self, Keyring, RotationCounts};
use crate::error::AppError;

const CHECK_TEXT: &[u8] = b"keyward keyring check v1";
const BATCH: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum KeyringCheckError {
    #[error(
        "no key of CONFIG_ENCRYPTION_KEY can read this database (it was last written with key {fingerprint}). \
         Start with the key it was written with (an old key goes after the new primary, comma-separated)"
    )]
    WrongKeys { fingerprint: String },
    #[error("the database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// Refuses a keyring that cannot read what this database holds; records the primary key
/// on a fresh database. Runs before the server writes anything else.
pub async fn verify_keyring(
    db: &impl ConnectionTrait,
    keyring: &Keyring,
) -> Result<(), KeyringCheckError> {
    match keyring_check::Entity::find_by_id(1).one(db).await? {
        Some(check) if keyring.decrypt(&check.token).is_ok() => Ok(()),
        Some(check) => Err(KeyringCheckError::WrongKeys {
            fingerprint: check.fingerprint,
        }),
        None => {
            write_check(db, keyring).await?;
            Ok(())
        }
    }
}

async fn write_check(db: &impl ConnectionTrait, keyring: &Keyring) -> Result<(), sea_orm::DbErr> {
    let fingerprint = keyring.fingerprints().remove(0);
    let token = keyring.encrypt(CHECK_TEXT);
    match keyring_check::Entity::find_by_id(1).one(db).await? {
        Some(row) => {
            let mut row: keyring_check::ActiveModel = row.into();
            row.token = Set(token);
            row.fingerprint = Set(fingerprint);
            row.updated_at = Set(Utc::now());
            row.update(db).await?;
        }
        None => {
            keyring_check::ActiveModel {
                id: Set(1),
                token: Set(token),
                fingerprint: Set(fingerprint),
                updated_at: Set(Utc::now()),
            }
            .insert(db)
            .await?;
        }
    }
    Ok(())
}

/// What a rotation did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rotation {
    pub values: RotationCounts,
    /// Tenant data keys rewrapped under the keyring's primary key.
    pub rewrapped_keys: u64,
    /// Tenant data keys no master key opens (their values count as failed too).
    pub unreadable_keys: u64,
}

/// Moves everything under the keys it should stand under now: tenant data keys are
/// rewrapped under the keyring's primary key, then every value is re-encrypted under its
/// tenant's current data key (tenant keys on) or the keyring's primary key (off).
///
/// A batch of configs at a time, each committed on its own: a rotation stopped midway is
/// resumed by running it again (values already in place are skipped). A config written
/// concurrently is re-read rather than overwritten. `tenant` limits it to one tenant's
/// configs (after a new data key, see [`rotate_tenant_key`]).
pub async fn rotate(
    db: &DatabaseConnection,
    keys: &TenantKeys,
    tenant: Option<&str>,
    by: &Principal,
    meta: &RequestMeta,
    mut progress: impl FnMut(u64, RotationCounts),
) -> Result<Rotation, AppError> {
    let mut done = rewrap_tenant_keys(db, keys.master(), tenant).await?;
    let mut after: Option<Uuid> = None;
    let mut configs_seen = 0u64;
    loop {
        let mut query = config::Entity::find()
            .order_by_asc(config::Column::Id)
            .limit(BATCH);
        if let Some(after) = after {
            query = query.filter(config::Column::Id.gt(after));
        }
        if let Some(tenant) = tenant {
            query = query.filter(config::Column::Tenant.eq(tenant));
        }
        let rows = query.all(db).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        for row in rows {
            done.values += rotate_one(db, keys, row).await?;
            configs_seen += 1;
        }
        progress(configs_seen, done.values);
    }
    done.values += rotate_messages(db, keys, tenant).await?;
    let clean = done.values.failed == 0 && done.unreadable_keys == 0;
    if clean && tenant.is_none() {
        write_check(db, keys.master()).await?;
    }
    AuditEntry::new(AuditAction::KeyRotate, by, meta)
        .success(clean)
        .tenant(tenant.map(str::to_owned))
        .detail(serde_json::json!({
            "primary": keys.master().fingerprints()[0],
            "tenantKeys": keys.enabled(),
            "configs": configs_seen,
            "reencrypted": done.values.reencrypted,
            "alreadyCurrent": done.values.already_current,
            "failed": done.values.failed,
            "rewrappedKeys": done.rewrapped_keys,
            "unreadableKeys": done.unreadable_keys,
        }))
        .record(db)
        .await?;
    Ok(done)
}

/// A new current data key for a tenant, then its values moved under it. Its older keys
/// stay to open anything written meanwhile by a process that had not yet seen the new key;
/// `keyringStatus` shows when nothing stands under them.
pub async fn rotate_tenant_key(
    db: &DatabaseConnection,
    keys: &TenantKeys,
    tenant: &str,
    by: &Principal,
    meta: &RequestMeta,
) -> Result<(tenant_key::Model, Rotation), AppError> {
    if !keys.enabled() {
        return Err(tenant_keys_off());
    }
    let key = keys.create(db, tenant).await?;
    let done = rotate(db, keys, Some(tenant), by, meta, |_, _| {}).await?;
    Ok((key, done))
}

/// A tenant's current data key for app-side encryption; the audit event commits first.
pub async fn export_tenant_key(
    db: &DatabaseConnection,
    keys: &TenantKeys,
    tenant: &str,
    reason: Option<String>,
    by: &Principal,
    meta: &RequestMeta,
) -> Result<ExportedKey, AppError> {
    if !keys.enabled() {
        return Err(tenant_keys_off());
    }
    let exported = keys.export(db, tenant).await?;
    AuditEntry::new(AuditAction::KeyExport, by, meta)
        .tenant(Some(tenant.to_owned()))
        .detail(serde_json::json!({ "keyId": exported.key_id, "reason": reason }))
        .record(db)
        .await?;
    Ok(exported)
}

fn tenant_keys_off() -> AppError {
    AppError::bad_input(
        "tenant data keys are off: start the server with KEYWARD_TENANT_KEYS=true (app-side \
         encryption then uses CONFIG_ENCRYPTION_KEY)",
    )
}

/// Rewraps under the keyring's primary key every data key an older master key wraps.
async fn rewrap_tenant_keys(
    db: &DatabaseConnection,
    master: &Keyring,
    tenant: Option<&str>,
) -> Result<Rotation, AppError> {
    let mut done = Rotation::default();
    let mut query = tenant_key::Entity::find();
    if let Some(tenant) = tenant {
        query = query.filter(tenant_key::Column::Tenant.eq(tenant));
    }
    for row in query.all(db).await? {
        match master.key_index_of(&row.wrapped) {
            Some(0) => {}
            Some(_) => {
                let key = master.decrypt(&row.wrapped).map_err(AppError::internal)?;
                let mut row: tenant_key::ActiveModel = row.into();
                row.wrapped = Set(master.encrypt(&key));
                row.update(db).await?;
                done.rewrapped_keys += 1;
            }
            None => done.unreadable_keys += 1,
        }
    }
    Ok(done)
}

async fn rotate_one(
    db: &DatabaseConnection,
    keys: &TenantKeys,
    mut row: config::Model,
) -> Result<RotationCounts, AppError> {
    let writes = keys.writing(db, &row.tenant).await?;
    let reads = keys.reading(db, &row.tenant).await?;
    loop {
        let mut doc = row.config_data.clone().into_value();
        let counts = crypto::reencrypt_document(&mut doc, &reads, &writes);
        if counts.reencrypted == 0 {
            return Ok(counts);
        }
        // Same version, same document: only the ciphertexts change, so the version stays.
        let result = config::Entity::update_many()
            .col_expr(config::Column::ConfigData, Expr::value(doc))
            .filter(config::Column::Id.eq(row.id))
            .filter(config::Column::Version.eq(row.version))
            .exec(db)
            .await?;
        if result.rows_affected == 1 {
            return Ok(counts);
        }
        // Written meanwhile (or deleted): rotate what is there now.
        match config::Entity::find_by_id(row.id).one(db).await? {
            Some(fresh) => row = fresh,
            None => return Ok(RotationCounts::default()),
        }
    }
}

/// Moves every transcript message where it belongs, as [`rotate`] does for config values;
/// messages stored before transcripts were encrypted are encrypted.
async fn rotate_messages(
    db: &DatabaseConnection,
    keys: &TenantKeys,
    tenant: Option<&str>,
) -> Result<RotationCounts, AppError> {
    let mut counts = RotationCounts::default();
    let mut after: Option<Uuid> = None;
    loop {
        let rows = message_batch(db, tenant, after).await?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.id);
        for (row, tenant) in rows {
            let writes = keys.writing(db, &tenant).await?;
            let content = if row.encrypted {
                let token = row.content.strip_prefix(crypto::ENC_PREFIX).unwrap_or("");
                if writes.key_index_of(token) == Some(0) {
                    counts.already_current += 1;
                    continue;
                }
                let reads = keys.reading(db, &tenant).await?;
                match crypto::decrypt_value(&reads, &row.content) {
                    Ok(plain) => crypto::encrypt_value(&writes, plain.expose_secret()),
                    Err(_) => {
                        counts.failed += 1;
                        continue;
                    }
                }
            } else {
                crypto::encrypt_value(&writes, &row.content)
            };
            // Messages are never edited: nothing to lose to a concurrent writer.
            message::Entity::update_many()
                .col_expr(message::Column::Content, Expr::value(content))
                .col_expr(message::Column::Encrypted, Expr::value(true))
                .filter(message::Column::Id.eq(row.id))
                .exec(db)
                .await?;
            counts.reencrypted += 1;
        }
    }
    Ok(counts)
}

/// A tenant's reading ring and its keys' fingerprints, computed once per tenant.
async fn named_ring<'r>(
    rings: &'r mut HashMap<String, (Arc<Keyring>, Vec<String>)>,
    db: &DatabaseConnection,
    keys: &TenantKeys,
    tenant: &str,
) -> Result<&'r (Arc<Keyring>, Vec<String>), AppError> {
    if !rings.contains_key(tenant) {
        let ring = keys.reading(db, tenant).await?;
        let names = ring.fingerprints();
        rings.insert(tenant.to_owned(), (ring, names));
    }
    Ok(&rings[tenant])
}

/// The next batch of messages by id, each with its session's tenant.
async fn message_batch(
    db: &DatabaseConnection,
    tenant: Option<&str>,
    after: Option<Uuid>,
) -> Result<Vec<(message::Model, String)>, AppError> {
    let mut query = message::Entity::find()
        .find_also_related(session::Entity)
        .order_by_asc(message::Column::Id)
        .limit(BATCH);
    if let Some(after) = after {
        query = query.filter(message::Column::Id.gt(after));
    }
    if let Some(tenant) = tenant {
        query = query.filter(session::Column::Tenant.eq(tenant));
    }
    Ok(query
        .all(db)
        .await?
        .into_iter()
        .filter_map(|(m, s)| s.map(|s| (m, s.tenant)))
        .collect())
}

/// How many stored values (config values and transcript messages) stand under each key:
/// the keyring's, and every tenant data key.
pub struct KeyUsage {
    pub fingerprints: Vec<String>,
    /// One count per key of the keyring, primary first.
    pub values: Vec<u64>,
    /// Values that no key opens.
    pub unreadable: u64,
    pub tenant_keys: Vec<TenantKeyUsage>,
}

pub struct TenantKeyUsage {
    pub key: tenant_key::Model,
    pub current: bool,
    pub values: u64,
    /// The fingerprint of the master key that wraps it, if the keyring has it.
    pub wrapped_by: Option<String>,
}

pub async fn usage(db: &DatabaseConnection, keys: &TenantKeys) -> Result<KeyUsage, AppError> {
    let master = keys.master();
    let fingerprints = master.fingerprints();
    // Values by the fingerprint of the key that opens them.
    let mut by_key: HashMap<String, u64> = HashMap::new();
    let mut unreadable = 0;
    let mut rings = HashMap::new();
    let mut after: Option<Uuid> = None;
    loop {
        let mut query = config::Entity::find()
            .order_by_asc(config::Column::Id)
            .limit(BATCH);
        if let Some(after) = after {
            query = query.filter(config::Column::Id.gt(after));
        }
        let rows = query.all(db).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        for row in &rows {
            let (ring, names) = named_ring(&mut rings, db, keys, &row.tenant).await?;
            let mut counts = vec![0u64; ring.len() + 1];
            crypto::count_by_key(row.config_data.as_value(), ring, &mut counts);
            for (name, n) in names.iter().zip(&counts) {
                *by_key.entry(name.clone()).or_default() += n;
            }
            unreadable += counts[ring.len()];
        }
    }
    let mut after: Option<Uuid> = None;
    loop {
        let rows = message_batch(db, None, after).await?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.id);
        for (row, tenant) in rows.iter().filter(|(m, _)| m.encrypted) {
            let (ring, names) = named_ring(&mut rings, db, keys, tenant).await?;
            let token = row.content.strip_prefix(crypto::ENC_PREFIX).unwrap_or("");
            match ring.key_index_of(token) {
                Some(i) => *by_key.entry(names[i].clone()).or_default() += 1,
                None => unreadable += 1,
            }
        }
    }
    let values = fingerprints
        .iter()
        .map(|f| by_key.get(f).copied().unwrap_or(0))
        .collect();
    let rows = tenant_key::Entity::find()
        .order_by_asc(tenant_key::Column::Tenant)
        .order_by_desc(tenant_key::Column::Id)
        .all(db)
        .await?;
    let mut tenant_keys = Vec::with_capacity(rows.len());
    for row in rows {
        let current = tenant_keys
            .last()
            .is_none_or(|prev: &TenantKeyUsage| prev.key.tenant != row.tenant);
        tenant_keys.push(TenantKeyUsage {
            current,
            values: by_key.get(&row.key_id).copied().unwrap_or(0),
            wrapped_by: master
                .key_index_of(&row.wrapped)
                .map(|i| fingerprints[i].clone()),
            key: row,
        });
    }
    Ok(KeyUsage {
        fingerprints,
        values,
        unreadable,
        tenant_keys,
    })
}
