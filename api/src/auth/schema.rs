//! `me`, and API token management (ADMIN only).

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{AuditAction, api_token};
use secrecy::ExposeSecret;

use super::token::{self, NewToken};
use super::{Principal, RequestMeta, RequireAdmin};
use crate::audit::AuditEntry;
use crate::error::AppError;
use crate::pagination::parse_id;
use crate::state::AppState;

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "Role")]
pub enum RoleKind {
    Admin,
    Member,
}

impl From<entity::Role> for RoleKind {
    fn from(role: entity::Role) -> Self {
        match role {
            entity::Role::Admin => Self::Admin,
            entity::Role::Member => Self::Member,
        }
    }
}

impl From<RoleKind> for entity::Role {
    fn from(role: RoleKind) -> Self {
        match role {
            RoleKind::Admin => Self::Admin,
            RoleKind::Member => Self::Member,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Principal")]
pub struct PrincipalView {
    name: String,
    role: RoleKind,
    tenant: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(name = "ApiToken")]
pub struct ApiTokenView {
    id: ID,
    name: String,
    role: RoleKind,
    tenant: Option<String>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked: bool,
}

impl From<api_token::Model> for ApiTokenView {
    fn from(row: api_token::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            name: row.name,
            role: row.role.into(),
            tenant: row.tenant,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked: row.revoked_at.is_some(),
        }
    }
}

#[derive(SimpleObject)]
pub struct CreatedApiToken {
    /// The secret. Shown here once and never again: store it now.
    token: String,
    api_token: ApiTokenView,
}

#[derive(InputObject)]
pub struct CreateApiTokenInput {
    name: String,
    role: RoleKind,
    /// A MEMBER's tenant (default `default`). ADMIN tokens act across tenants.
    tenant: Option<String>,
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// Who the bearer token is.
    async fn me(&self, ctx: &Context<'_>) -> PrincipalView {
        let p = ctx.data_unchecked::<Principal>();
        PrincipalView {
            name: p.name.clone(),
            role: p.role.into(),
            tenant: p.tenant_scope().map(str::to_owned),
        }
    }

    /// ADMIN only. Newest first; secrets are never shown.
    #[graphql(guard = "RequireAdmin")]
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiTokenView>> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(token::list(&state.db)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// ADMIN only. The secret is in the result once and never again.
    #[graphql(guard = "RequireAdmin")]
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        input: CreateApiTokenInput,
    ) -> Result<CreatedApiToken> {
        let state = ctx.data_unchecked::<AppState>();
        let by = ctx.data_unchecked::<Principal>();
        let meta = ctx.data_unchecked::<RequestMeta>();
        let txn = sea_orm::TransactionTrait::begin(&state.db)
            .await
            .map_err(AppError::from)?;
        let new = NewToken {
            name: input.name,
            role: input.role.into(),
            tenant: input.tenant,
        };
        let (row, secret) = token::create(&txn, new).await?;
        AuditEntry::new(AuditAction::TokenCreate, by, meta)
            .tenant(row.tenant.clone())
            .detail(serde_json::json!({ "tokenId": row.id, "name": row.name, "role": row.role }))
            .record(&txn)
            .await?;
        txn.commit().await.map_err(AppError::from)?;
        Ok(CreatedApiToken {
            token: secret.expose_secret().to_owned(),
            api_token: row.into(),
        })
    }

    /// ADMIN only. Takes effect on the token's next request, in every server process.
    #[graphql(guard = "RequireAdmin")]
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let state = ctx.data_unchecked::<AppState>();
        let id = parse_id(&id).ok_or(AppError::NotFound("token"))?;
        // The revocation and its audit row commit together, like every audited action.
        let txn = sea_orm::TransactionTrait::begin(&state.db)
            .await
            .map_err(AppError::from)?;
        let revoked = token::revoke(&txn, ctx.data_unchecked(), ctx.data_unchecked(), id).await?;
        txn.commit().await.map_err(AppError::from)?;
        // Answers once no process sharing the database can still accept it from a cache:
        // this one forgets it now, the others acknowledge the trigger's notification
        // (milliseconds; api/src/auth/cache.rs).
        state.token_cache.settle().await;
        Ok(revoked)
    }
}
