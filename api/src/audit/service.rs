use chrono::{DateTime, Utc};
use entity::{AuditAction, audit_event};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::auth::{Principal, RequestMeta};
use crate::error::AppError;

/// One event to record. Build it, then `record` it on the transaction of the action.
pub struct AuditEntry {
    model: audit_event::ActiveModel,
}

impl AuditEntry {
    pub fn new(action: AuditAction, actor: &Principal, meta: &RequestMeta) -> Self {
        // A MEMBER stored without a tenant acts in `default`: record the tenant it acts in.
        let tenant = actor
            .tenant_scope()
            .map(str::to_owned)
            .or_else(|| actor.tenant.clone());
        Self::by_name(action, &actor.name, meta).tenant(tenant)
    }

    /// For events without an authenticated principal (`auth.denied`).
    pub fn by_name(action: AuditAction, actor: &str, meta: &RequestMeta) -> Self {
        Self {
            model: audit_event::ActiveModel {
                id: Set(Uuid::now_v7()),
                at: Set(Utc::now()),
                action: Set(action),
                actor: Set(actor.chars().take(200).collect()),
                tenant: Set(None),
                config_id: Set(None),
                session_id: Set(None),
                success: Set(true),
                request_id: Set(Some(meta.request_id.clone())),
                client_ip: Set(meta.client_ip.clone()),
                user_agent: Set(meta
                    .user_agent
                    .as_ref()
                    .map(|ua| ua.chars().take(512).collect())),
                detail: Set(None),
            },
        }
    }

    pub fn tenant(mut self, tenant: Option<String>) -> Self {
        self.model.tenant = Set(tenant);
        self
    }

    pub fn config(mut self, id: Uuid) -> Self {
        self.model.config_id = Set(Some(id));
        self
    }

    pub fn session(mut self, id: Uuid) -> Self {
        self.model.session_id = Set(Some(id));
        self
    }

    pub fn success(mut self, success: bool) -> Self {
        self.model.success = Set(success);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.model.detail = Set(Some(detail));
        self
    }

    /// Writes the event. A failure is UNAVAILABLE: whatever it audits must not proceed.
    pub async fn record(self, db: &impl ConnectionTrait) -> Result<(), AppError> {
        // Without RETURNING: nobody reads the row back, so the store need not send it.
        audit_event::Entity::insert(self.model)
            .exec_without_returning(db)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "audit write failed");
                crate::telemetry::metrics::record_audit_write_failure();
                AppError::Unavailable(Box::new(e))
            })?;
        Ok(())
    }
}

#[derive(Default)]
pub struct AuditFilter {
    pub config_id: Option<Uuid>,
    pub action: Option<AuditAction>,
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// Newest first, keyset-paginated on the (time-ordered) id.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    first: u64,
    after: Option<Uuid>,
) -> Result<(Vec<audit_event::Model>, bool, u64), AppError> {
    let mut query = audit_event::Entity::find();
    if let Some(id) = filter.config_id {
        query = query.filter(audit_event::Column::ConfigId.eq(id));
    }
    if let Some(action) = filter.action {
        query = query.filter(audit_event::Column::Action.eq(action));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_event::Column::Actor.eq(actor.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_event::Column::At.gte(since));
    }
    crate::pagination::fetch(db, query, audit_event::Column::Id, first, after).await
}
