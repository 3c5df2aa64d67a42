use async_graphql::{Context, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use super::service::{self, Rotation};
use crate::auth::{Principal, RequestMeta, RequireAdmin};
use crate::config::service::check_tenant;
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
    /// Tenant data keys rewrapped under the keyring's primary key.
    rewrapped_keys: u64,
}

impl From<Rotation> for KeyRotation {
    fn from(done: Rotation) -> Self {
        Self {
            reencrypted: done.values.reencrypted,
            already_current: done.values.already_current,
            failed: done.values.failed + done.unreadable_keys,
            rewrapped_keys: done.rewrapped_keys,
        }
    }
}

/// A tenant's new data key, and its values moved under it.
#[derive(SimpleObject)]
pub struct TenantKeyRotation {
    tenant: String,
    /// The new current data key's fingerprint.
    key_id: String,
    rotation: KeyRotation,
}

/// A tenant's data key, for app-side encryption (`keyward encrypt --key`, any Fernet library).
#[derive(SimpleObject)]
pub struct TenantKeyExport {
    tenant: String,
    key_id: String,
    /// The Fernet key. Treat it as a secret: it opens every value of this tenant under it.
    key: String,
    created_at: DateTime<Utc>,
}

/// One tenant data key and how many values stand under it.
#[derive(SimpleObject)]
pub struct TenantKeyUsage {
    tenant: String,
    key_id: String,
    /// New values of the tenant are encrypted under this key.
    current: bool,
    values: u64,
    /// The fingerprint of the master key that wraps it; null if the keyring has none that does.
    wrapped_by: Option<String>,
    created_at: DateTime<Utc>,
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
    /// Tenant data keys wrapped by this key.
    data_keys: u64,
}

#[derive(SimpleObject)]
pub struct KeyringStatus {
    keys: Vec<KeyUsage>,
    /// Values that no key opens: lost unless an old key comes back.
    unreadable_values: u64,
    /// Whether new values are written under tenant data keys (KEYWARD_TENANT_KEYS).
    tenant_keys_enabled: bool,
    /// Every tenant data key, by tenant, current first.
    tenant_keys: Vec<TenantKeyUsage>,
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
    /// CONFIG_ENCRYPTION_KEY once its count is 0 and no tenant key is wrapped by it.
    #[graphql(guard = "RequireAdmin")]
    async fn keyring_status(&self, ctx: &Context<'_>) -> Result<KeyringStatus> {
        let state = ctx.data_unchecked::<AppState>();
        let usage = service::usage(&state.db, &state.tenant_keys).await?;
        let keys = usage
            .fingerprints
            .iter()
            .zip(&usage.values)
            .enumerate()
            .map(|(i, (fingerprint, values))| KeyUsage {
                position: i as u32,
                fingerprint: fingerprint.clone(),
                primary: i == 0,
                values: *values,
                data_keys: usage
                    .tenant_keys
                    .iter()
                    .filter(|k| k.wrapped_by.as_ref() == Some(fingerprint))
                    .count() as u64,
            })
            .collect();
        let tenant_keys = usage
            .tenant_keys
            .into_iter()
            .map(|k| TenantKeyUsage {
                tenant: k.key.tenant,
                key_id: k.key.key_id,
                current: k.current,
                values: k.values,
                wrapped_by: k.wrapped_by,
                created_at: k.key.created_at,
            })
            .collect();
        Ok(KeyringStatus {
            keys,
            unreadable_values: usage.unreadable,
            tenant_keys_enabled: state.tenant_keys.enabled(),
            tenant_keys,
        })
    }
}

#[derive(Default)]
pub struct KeysMutation;

#[Object]
impl KeysMutation {
    /// ADMIN only. Rewraps every tenant data key under the keyring's primary key, then
    /// re-encrypts every value under its tenant's current data key (tenant keys on) or the
    /// keyring's primary key (off). Resumable: run it again after an interruption.
    #[graphql(guard = "RequireAdmin")]
    async fn rotate_encryption_key(&self, ctx: &Context<'_>) -> Result<KeyRotation> {
        let (state, by, meta) = context(ctx);
        let done = service::rotate(
            &state.db,
            &state.tenant_keys,
            None,
            by,
            meta,
            |configs, counts| {
                tracing::info!(
                    configs,
                    reencrypted = counts.reencrypted,
                    "rotation progress"
                );
            },
        )
        .await?;
        Ok(done.into())
    }

    /// ADMIN only, with tenant keys on. Gives a tenant a new data key and moves its values
    /// under it (after a leak of its old one). The old key keeps opening anything still
    /// under it; `keyringStatus` counts those values.
    #[graphql(guard = "RequireAdmin")]
    async fn rotate_tenant_key(
        &self,
        ctx: &Context<'_>,
        tenant: String,
    ) -> Result<TenantKeyRotation> {
        let (state, by, meta) = context(ctx);
        let tenant = check_tenant(&tenant)?;
        let (key, done) =
            service::rotate_tenant_key(&state.db, &state.tenant_keys, &tenant, by, meta).await?;
        Ok(TenantKeyRotation {
            tenant,
            key_id: key.key_id,
            rotation: done.into(),
        })
    }

    /// ADMIN only, with tenant keys on; audited before it answers. A tenant's current data
    /// key (made if it has none), so its apps can encrypt app-side without the master key.
    #[graphql(guard = "RequireAdmin")]
    async fn export_tenant_key(
        &self,
        ctx: &Context<'_>,
        tenant: String,
        #[graphql(desc = "Why the key is needed; recorded with the audit event.")] reason: Option<
            String,
        >,
    ) -> Result<TenantKeyExport> {
        let (state, by, meta) = context(ctx);
        let tenant = check_tenant(&tenant)?;
        let reason = reason.map(|r| r.chars().filter(|c| *c != '\0').take(500).collect());
        let exported =
            service::export_tenant_key(&state.db, &state.tenant_keys, &tenant, reason, by, meta)
                .await?;
        Ok(TenantKeyExport {
            tenant,
            key_id: exported.key_id,
            key: exported.key.expose_secret().to_owned(),
            created_at: exported.created_at,
        })
    }
}

fn context<'a>(ctx: &'a Context<'_>) -> (&'a AppState, &'a Principal, &'a RequestMeta) {
    (
        ctx.data_unchecked::<AppState>(),
        ctx.data_unchecked::<Principal>(),
        ctx.data_unchecked::<RequestMeta>(),
    )
}
