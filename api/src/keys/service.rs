//! The keyring check at start-up, online rotation, and key usage counts.

use chrono::Utc;
use entity::{AuditAction, config, keyring_check};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

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

/// Re-encrypts every stored value under the primary key, a batch of configs at a time,
/// each batch committed on its own: a rotation stopped midway is resumed by running it
/// again (values already under the primary are skipped). A config written concurrently is
/// re-read rather than overwritten.
pub async fn rotate(
    db: &DatabaseConnection,
    keyring: &Keyring,
    by: &Principal,
    meta: &RequestMeta,
    mut progress: impl FnMut(u64, RotationCounts),
) -> Result<RotationCounts, AppError> {
    let mut total = RotationCounts::default();
    let mut after: Option<Uuid> = None;
    let mut configs_seen = 0u64;
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
        for row in rows {
            total += rotate_one(db, keyring, row).await?;
            configs_seen += 1;
        }
        progress(configs_seen, total);
    }
    if total.failed == 0 {
        write_check(db, keyring).await?;
    }
    AuditEntry::new(AuditAction::KeyRotate, by, meta)
        .success(total.failed == 0)
        .detail(serde_json::json!({
            "primary": keyring.fingerprints()[0],
            "configs": configs_seen,
            "reencrypted": total.reencrypted,
            "alreadyCurrent": total.already_current,
            "failed": total.failed,
        }))
        .record(db)
        .await?;
    Ok(total)
}

async fn rotate_one(
    db: &DatabaseConnection,
    keyring: &Keyring,
    mut row: config::Model,
) -> Result<RotationCounts, AppError> {
    loop {
        let mut doc = row.config_data.clone().into_value();
        let counts = crypto::reencrypt_document(&mut doc, keyring);
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

/// How many stored values stand under each key of the keyring (and under none).
pub struct KeyUsage {
    pub fingerprints: Vec<String>,
    /// One count per key, then the count of values no key opens.
    pub values: Vec<u64>,
}

pub async fn usage(db: &DatabaseConnection, keyring: &Keyring) -> Result<KeyUsage, AppError> {
    let mut values = vec![0u64; keyring.len() + 1];
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
            crypto::count_by_key(row.config_data.as_value(), keyring, &mut values);
        }
    }
    Ok(KeyUsage {
        fingerprints: keyring.fingerprints(),
        values,
    })
}
