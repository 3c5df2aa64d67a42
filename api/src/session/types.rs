use async_graphql::{ComplexObject, Context, Enum, ID, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{message, session};

use sea_orm::EntityTrait;

use crate::state::AppState;

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "SessionStatus")]
pub enum SessionStatusKind {
    Active,
    Closed,
    Failed,
}

impl From<entity::SessionStatus> for SessionStatusKind {
    fn from(status: entity::SessionStatus) -> Self {
        match status {
            entity::SessionStatus::Active => Self::Active,
            entity::SessionStatus::Closed => Self::Closed,
            entity::SessionStatus::Failed => Self::Failed,
        }
    }
}

impl From<SessionStatusKind> for entity::SessionStatus {
    fn from(status: SessionStatusKind) -> Self {
        match status {
            SessionStatusKind::Active => Self::Active,
            SessionStatusKind::Closed => Self::Closed,
            SessionStatusKind::Failed => Self::Failed,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Session", complex)]
pub struct SessionView {
    id: ID,
    config_id: ID,
    tenant: String,
    /// The provider module, e.g. provider-anthropic.
    provider: String,
    model: Option<String>,
    status: SessionStatusKind,
    message_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl SessionView {
    /// The transcript, oldest first. `role` is user, assistant, or error (a failed call).
    async fn messages(&self, ctx: &Context<'_>) -> Result<Vec<MessageView>> {
        let state = ctx.data_unchecked::<AppState>();
        let id =
            uuid::Uuid::parse_str(&self.id).map_err(|_| crate::AppError::NotFound("session"))?;
        let Some(session) = session::Entity::find_by_id(id).one(&state.db).await? else {
            return Ok(Vec::new());
        };
        let rows = super::service::messages(&state.db, &state.tenant_keys, &session).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

impl From<session::Model> for SessionView {
    fn from(row: session::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            config_id: ID(row.config_id.to_string()),
            tenant: row.tenant,
            provider: row.provider,
            model: row.model,
            status: row.status.into(),
            message_count: row.message_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Message")]
pub struct MessageView {
    id: ID,
    role: String,
    content: String,
    created_at: DateTime<Utc>,
}

impl From<message::Model> for MessageView {
    fn from(row: message::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            role: row.role,
            content: row.content,
            created_at: row.created_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct MessageChunk {
    /// The next piece of the reply; empty on the last chunk.
    pub delta: String,
    pub done: bool,
    /// The stored reply, on the last chunk.
    pub message: Option<MessageView>,
}
