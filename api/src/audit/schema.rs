//! `auditEvents` (ADMIN only).

use async_graphql::{Context, ID, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{AuditAction, audit_event};

use super::{AuditFilter, list};
use crate::auth::RequireAdmin;
use crate::error::AppError;
use crate::pagination::{Page, PageArgs, page, parse_id};
use crate::state::AppState;

#[derive(SimpleObject)]
#[graphql(name = "AuditEvent")]
pub struct AuditEventView {
    id: ID,
    at: DateTime<Utc>,
    /// config.decrypt, config.create, config.update, config.delete, session.create,
    /// token.create, token.revoke, key.rotate, key.export, auth.denied.
    action: String,
    /// The token's name.
    actor: String,
    tenant: Option<String>,
    config_id: Option<ID>,
    session_id: Option<ID>,
    success: bool,
    request_id: Option<String>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    detail: Option<Json<serde_json::Value>>,
}

impl From<audit_event::Model> for AuditEventView {
    fn from(row: audit_event::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            at: row.at,
            action: row.action.as_str().to_owned(),
            actor: row.actor,
            tenant: row.tenant,
            config_id: row.config_id.map(|id| ID(id.to_string())),
            session_id: row.session_id.map(|id| ID(id.to_string())),
            success: row.success,
            request_id: row.request_id,
            client_ip: row.client_ip,
            user_agent: row.user_agent,
            detail: row.detail.map(Json),
        }
    }
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// ADMIN only. Newest first.
    #[graphql(
        guard = "RequireAdmin",
        complexity = "crate::pagination::connection_complexity(first, child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(50)")] first: Option<i32>,
        after: Option<String>,
        config_id: Option<ID>,
        action: Option<String>,
        actor: Option<String>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page<AuditEventView>> {
        let state = ctx.data_unchecked::<AppState>();
        let args = PageArgs::parse(Some(first.unwrap_or(50)), after)?;
        let action = action
            .map(|a| {
                AuditAction::parse(&a)
                    .ok_or_else(|| AppError::bad_input(format!("unknown audit action `{a}`")))
            })
            .transpose()?;
        let config_id = match config_id {
            Some(id) => Some(
                parse_id(&id).ok_or_else(|| AppError::bad_input("configId is not a config id"))?,
            ),
            None => None,
        };
        let filter = AuditFilter {
            config_id,
            action,
            actor,
            since,
        };
        let (rows, has_next, total) = list(&state.db, &filter, args.first, args.after).await?;
        let items = rows
            .into_iter()
            .map(|row| (row.id, AuditEventView::from(row)))
            .collect();
        Ok(page(items, args.after.is_some(), has_next, total))
    }
}
