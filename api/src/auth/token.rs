//! API tokens: `kw_` + 256 random bits, shown once, stored as a SHA-256 hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration as ChronoDuration, Utc};
use entity::{Role, api_token};
use rand::TryRngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::cache::TokenCache;
use super::principal::DEFAULT_TENANT;
use super::{Principal, RequestMeta};
use crate::audit::AuditEntry;
use crate::error::AppError;
use entity::AuditAction;

pub const TOKEN_PREFIX: &str = "kw_";

/// How often `last_used_at` is rewritten for a busy token.
const LAST_USED_RESOLUTION: ChronoDuration = ChronoDuration::seconds(60);

/// A new token's secret: 32 bytes from the OS generator, URL-safe base64, `kw_` prefix.
pub fn generate_secret() -> SecretString {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut *bytes)
        .expect("the OS random number generator works");
    SecretString::from(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(*bytes)))
}

/// Hex SHA-256 of a token. Tokens carry 256 random bits: a slow hash would add nothing.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two secrets (through their digests, so lengths do not leak).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// Resolves a presented bearer token, or None when it is unknown or revoked.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    admin_token: Option<&SecretString>,
    presented: &str,
) -> Result<Option<Principal>, AppError> {
    authenticate_cached(db, None, admin_token, presented).await
}

/// [`authenticate`], answered from `cache` when it holds the token; see [`super::cache`]
/// for why a revocation still takes effect on the next request.
pub async fn authenticate_cached(
    db: &impl ConnectionTrait,
    cache: Option<&TokenCache>,
    admin_token: Option<&SecretString>,
    presented: &str,
) -> Result<Option<Principal>, AppError> {
    if let Some(admin) = admin_token
        && secrets_equal(admin.expose_secret(), presented)
    {
        return Ok(Some(Principal::break_glass_admin()));
    }
    if !presented.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let raw_digest: super::cache::Digest = Sha256::digest(presented.as_bytes()).into();
    if let Some(principal) = cache.and_then(|c| c.get(&raw_digest)) {
        return Ok(Some(principal));
    }
    // Read before the lookup: an invalidation after this point voids what it finds.
    let epoch = cache.map(TokenCache::epoch);
    let digest = hex::encode(raw_digest);
    let Some(row) = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(&digest))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if row.revoked_at.is_some() || !bool::from(row.token_hash.as_bytes().ct_eq(digest.as_bytes())) {
        return Ok(None);
    }
    let now = Utc::now();
    if row
        .last_used_at
        .is_none_or(|t| now - t > LAST_USED_RESOLUTION)
    {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
            .filter(api_token::Column::Id.eq(row.id))
            .exec(db)
            .await?;
    }
    let principal = Principal {
        name: row.name,
        role: row.role,
        tenant: row.tenant,
        token_id: Some(row.id),
    };
    if let (Some(cache), Some(epoch)) = (cache, epoch) {
        cache.insert(raw_digest, principal.clone(), epoch);
    }
    Ok(Some(principal))
}

pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// Creates a token and returns its row with the secret, which is never available again.
pub async fn create(
    db: &impl ConnectionTrait,
    new: NewToken,
) -> Result<(api_token::Model, SecretString), AppError> {
    let name = crate::config::service::check_name(&new.name)?;
    let tenant = match (new.role, new.tenant) {
        (Role::Member, None) => Some(DEFAULT_TENANT.to_owned()),
        (_, Some(t)) => Some(crate::config::service::check_tenant(&t)?),
        (Role::Admin, None) => None,
    };
    let secret = generate_secret();
    let row = api_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        role: Set(new.role),
        tenant: Set(tenant),
        token_hash: Set(hash(secret.expose_secret())),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok((row, secret))
}

pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<api_token::Model>, AppError> {
    Ok(api_token::Entity::find()
        .order_by_desc(api_token::Column::Id)
        .all(db)
        .await?)
}

/// Revokes a token; takes effect on its next request, in every process.
pub async fn revoke(
    db: &impl ConnectionTrait,
    by: &Principal,
    meta: &RequestMeta,
    id: Uuid,
) -> Result<bool, AppError> {
    let Some(row) = api_token::Entity::find_by_id(id).one(db).await? else {
        return Err(AppError::NotFound("token"));
    };
    if row.revoked_at.is_none() {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(api_token::Column::Id.eq(id))
            .exec(db)
            .await?;
    }
    AuditEntry::new(AuditAction::TokenRevoke, by, meta)
        .tenant(row.tenant.clone())
        .detail(serde_json::json!({"tokenId": id, "name": row.name}))
        .record(db)
        .await?;
    Ok(true)
}

/// Whether any usable ADMIN token is stored (for the first-run bootstrap).
pub async fn any_active_admin(db: &impl ConnectionTrait) -> Result<bool, AppError> {
    Ok(api_token::Entity::find()
        .filter(api_token::Column::Role.eq(Role::Admin))
        .filter(api_token::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_long_and_distinct() {
        let (a, b) = (generate_secret(), generate_secret());
        assert!(a.expose_secret().starts_with("kw_"));
        assert_eq!(a.expose_secret().len(), 3 + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(hash(a.expose_secret()).len(), 64);
    }

    #[test]
    fn comparison_is_exact() {
        assert!(secrets_equal("kw_abc", "kw_abc"));
        assert!(!secrets_equal("kw_abc", "kw_abd"));
        assert!(!secrets_equal("kw_abc", "kw_ab"));
    }
}
