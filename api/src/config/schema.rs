//! Config queries and mutations: thin resolvers over `service`.

use async_graphql::{Context, ID, InputObject, Json, Object, Result};

use super::ConfigView;
use super::service::{self, ConfigChanges, ConfigFilter, NewConfig, Sealing};
use crate::auth::{Principal, RequestMeta};
use crate::pagination::{Page, PageArgs, page, parse_id};
use crate::state::AppState;

#[derive(InputObject)]
pub struct CreateConfigInput {
    pub name: String,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    /// The document. Sensitive values may be plaintext (the server encrypts them),
    /// `enc:` (app-side encryption) or `sealed:` (sealed to `encryptionKey`).
    #[graphql(secret)]
    pub config_data: Json<serde_json::Value>,
    /// ADMIN only; defaults to `default`. A MEMBER's configs belong to its tenant.
    pub tenant: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateConfigInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Replaces the whole document.
    #[graphql(secret)]
    pub config_data: Option<Json<serde_json::Value>>,
    /// When given and not the current version: CONFLICT.
    pub expected_version: Option<i32>,
}

fn context<'a>(ctx: &'a Context<'_>) -> (&'a AppState, &'a Principal, &'a RequestMeta) {
    (
        ctx.data_unchecked::<AppState>(),
        ctx.data_unchecked::<Principal>(),
        ctx.data_unchecked::<RequestMeta>(),
    )
}

fn sealing(state: &AppState) -> Sealing<'_> {
    Sealing {
        keys: &state.tenant_keys,
        sealed_keys: &state.sealed_keys,
        max_bytes: state.settings.limits.max_config_bytes,
    }
}

#[derive(Default)]
pub struct ConfigQuery;

#[Object]
impl ConfigQuery {
    /// Null when the config does not exist or the caller may not see it. decrypt: true
    /// needs ADMIN (else FORBIDDEN) and is audited before it answers.
    async fn config(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default_with = "Some(false)")] decrypt: Option<bool>,
        #[graphql(desc = "Why the plaintext is needed; recorded with the audit event.")]
        reason: Option<String>,
    ) -> Result<Option<ConfigView>> {
        let (state, principal, meta) = context(ctx);
        let id = parse_id(&id);
        if decrypt.unwrap_or(false) {
            let found =
                service::read_decrypted(&state.db, &state.tenant_keys, principal, meta, id, reason)
                    .await?;
            return Ok(found.map(|(row, plain)| ConfigView::revealed(row, plain)));
        }
        let Some(id) = id else { return Ok(None) };
        Ok(service::find_visible(&state.db, principal, id)
            .await?
            .map(ConfigView::sealed))
    }

    /// Newest first. `search` matches names case-insensitively; `tag` must be among the tags.
    #[graphql(complexity = "crate::pagination::connection_complexity(first, child_complexity)")]
    async fn configs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
        tag: Option<String>,
    ) -> Result<Page<ConfigView>> {
        let (state, principal, _) = context(ctx);
        let args = PageArgs::parse(first, after)?;
        let filter = ConfigFilter { search, tag };
        let count = crate::pagination::wants_total(ctx);
        let (rows, has_next, total) =
            service::list(&state.db, principal, &filter, args.first, args.after, count).await?;
        let items = rows
            .into_iter()
            .map(|row| (row.id, ConfigView::sealed(row)))
            .collect();
        Ok(page(items, args.after.is_some(), has_next, total))
    }
}

#[derive(Default)]
pub struct ConfigMutation;

#[Object]
impl ConfigMutation {
    /// Returns the stored (encrypted) form: plaintext is never echoed back.
    async fn create_config(
        &self,
        ctx: &Context<'_>,
        input: CreateConfigInput,
    ) -> Result<ConfigView> {
        let (state, principal, meta) = context(ctx);
        let new = NewConfig {
            name: input.name,
            description: input.description,
            tags: input.tags,
            config_data: input.config_data.0,
            tenant: input.tenant,
        };
        Ok(ConfigView::sealed(
            service::create(&state.db, &sealing(state), principal, meta, new).await?,
        ))
    }

    /// configData replaces the whole document. expectedVersion mismatch: CONFLICT.
    async fn update_config(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateConfigInput,
    ) -> Result<ConfigView> {
        let (state, principal, meta) = context(ctx);
        let changes = ConfigChanges {
            name: input.name,
            description: input.description,
            tags: input.tags,
            config_data: input.config_data.map(|j| j.0),
            expected_version: input.expected_version,
        };
        let row = service::update(
            &state.db,
            &sealing(state),
            principal,
            meta,
            parse_id(&id),
            changes,
        )
        .await?;
        Ok(ConfigView::sealed(row))
    }

    async fn delete_config(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let (state, principal, meta) = context(ctx);
        Ok(service::delete(&state.db, principal, meta, parse_id(&id)).await?)
    }
}
