use async_graphql::{Context, Object, Result, SimpleObject};

use super::service;
use crate::auth::{Principal, RequestMeta, RequireAdmin};
use crate::crypto::SEALED_BOX_ALGORITHM;
use crate::state::AppState;

#[derive(SimpleObject)]
pub struct PublicEncryptionKey {
    /// Fingerprint of the public key; goes in `sealed:<keyId>:<base64>`.
    key_id: String,
    /// The 32 raw bytes of the X25519 public key, standard base64.
    public_key: String,
    algorithm: String,
}

/// Counts of values, from one rotation.
#[derive(SimpleObject)]
pub struct KeyRotation {
    reencrypted: u64,
    already_current: u64,
    failed: u64,
}

/// How many stored values one key of the keyring protects.
#[derive(SimpleObject)]
pub struct KeyUsage {
    /// Position in CONFIG_ENCRYPTION_KEY, 0 being the primary.
    position: u32,
    /// A public name for the key (an HMAC under it, not its hash); `keyward fingerprint` prints it.
    fingerprint: String,
    primary: bool,
    values: u64,
}

#[derive(SimpleObject)]
pub struct KeyringStatus {
    keys: Vec<KeyUsage>,
    /// Values that no key of the keyring opens: lost unless an old key comes back.
    unreadable_values: u64,
}

#[derive(Default)]
pub struct KeysQuery;

#[Object]
impl KeysQuery {
    /// The server's public key for sealed-box app-side encryption.
    async fn encryption_key(&self, ctx: &Context<'_>) -> PublicEncryptionKey {
        let key = ctx.data_unchecked::<AppState>().sealed_keys.primary();
        PublicEncryptionKey {
            key_id: key.key_id().to_owned(),
            public_key: key.public_key_base64(),
            algorithm: SEALED_BOX_ALGORITHM.to_owned(),
        }
    }

    /// ADMIN only. Which keys the stored values stand under: a key can be removed from
    /// CONFIG_ENCRYPTION_KEY once its count is 0.
    #[graphql(guard = "RequireAdmin")]
    async fn keyring_status(&self, ctx: &Context<'_>) -> Result<KeyringStatus> {
        let state = ctx.data_unchecked::<AppState>();
        let usage = service::usage(&state.db, &state.keyring).await?;
        let keys = usage
            .fingerprints
            .into_iter()
            .zip(&usage.values)
            .enumerate()
            .map(|(i, (fingerprint, values))| KeyUsage {
                position: i as u32,
                fingerprint,
                primary: i == 0,
                values: *values,
            })
            .collect();
        Ok(KeyringStatus {
            keys,
            unreadable_values: *usage.values.last().unwrap_or(&0),
        })
    }
}

#[derive(Default)]
pub struct KeysMutation;

#[Object]
impl KeysMutation {
    /// ADMIN only. Re-encrypts every stored value under the keyring's primary key.
    #[graphql(guard = "RequireAdmin")]
    async fn rotate_encryption_key(&self, ctx: &Context<'_>) -> Result<KeyRotation> {
        let state = ctx.data_unchecked::<AppState>();
        let by = ctx.data_unchecked::<Principal>();
        let meta = ctx.data_unchecked::<RequestMeta>();
        let counts = service::rotate(&state.db, &state.keyring, by, meta, |configs, counts| {
            tracing::info!(
                configs,
                reencrypted = counts.reencrypted,
                "rotation progress"
            );
        })
        .await?;
        Ok(KeyRotation {
            reencrypted: counts.reencrypted,
            already_current: counts.already_current,
            failed: counts.failed,
        })
    }
}
