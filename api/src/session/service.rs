use std::time::Instant;

use chrono::Utc;
use entity::{AuditAction, SessionStatus, config, message, session};
use futures::stream::{BoxStream, StreamExt};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, Set, TransactionTrait,
};
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::auth::{Principal, RequestMeta};
use crate::config::service::{check_no_nul, find_visible};
use crate::error::AppError;
use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::crypto::{self, Keyring};
use crate::keys::TenantKeys;
use crate::providers::{ProviderClient, ProviderError, Providers, Turn, TurnRole};

/// What a session needs from the server: the store, the tenant rings and the provider clients.
pub struct Deps<'a> {
    pub db: &'a DatabaseConnection,
    pub keys: &'a TenantKeys,
    pub providers: &'a Providers,
}

pub struct NewSession {
    pub config_id: Option<Uuid>,
    pub provider: Option<i32>,
    pub model: Option<String>,
}

#[derive(Default)]
pub struct SessionFilter {
    pub config_id: Option<Uuid>,
    pub status: Option<SessionStatus>,
}

pub const MAX_MESSAGE_CHARS: usize = 100_000;
/// The `sessions.model` column's width: a longer name is the caller's mistake, refused
/// before PostgreSQL would fail the insert (or SQLite silently keep it).
pub const MAX_MODEL_CHARS: usize = 200;

/// Decrypts the config in memory and builds the client for one of its providers. The
/// plaintext document is scrubbed when this returns; only the client keeps the key.
async fn build_client(
    deps: &Deps<'_>,
    config: &entity::config::Model,
    index: i32,
    model: Option<&str>,
) -> Result<ProviderClient, AppError> {
    let plain = deps
        .keys
        .open(deps.db, &config.tenant, config.config_data.as_value())
        .await?;
    let path = format!("providers[{index}]");
    let entry = usize::try_from(index)
        .ok()
        .and_then(|i| plain.expose().get("providers")?.get(i))
        .ok_or_else(|| AppError::bad_input(format!("configData.{path} does not exist")))?;
    deps.providers
        .client(entry, model)
        .map_err(|e| AppError::from(e.in_entry(&format!("configData.{path}"))))
}

pub async fn create(
    deps: &Deps<'_>,
    by: &Principal,
    meta: &RequestMeta,
    new: NewSession,
) -> Result<session::Model, AppError> {
    let config_id = new.config_id.ok_or(AppError::NotFound("config"))?;
    let config = find_visible(deps.db, by, config_id)
        .await?
        .ok_or(AppError::NotFound("config"))?;
    let index = new.provider.unwrap_or(0);
    let model = new
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let client = match build_client(deps, &config, index, model).await {
        Ok(client) => client,
        Err(e) => {
            // The config was decrypted (or tried) even though no session came of it.
            AuditEntry::new(AuditAction::SessionCreate, by, meta)
                .tenant(Some(config.tenant.clone()))
                .config(config.id)
                .success(false)
                .detail(serde_json::json!({
                    "providerIndex": index,
                    "refused": e.code().as_str(),
                    "configDecrypted": "in memory only, to build the provider client",
                }))
                .record(deps.db)
                .await?;
            return Err(e);
        }
    };
    if let Some(model) = client.model() {
        check_no_nul("model", model)?;
    }
    if client
        .model()
        .is_some_and(|m| m.chars().count() > MAX_MODEL_CHARS)
    {
        return Err(AppError::bad_input(format!(
            "the model name must be at most {MAX_MODEL_CHARS} characters"
        )));
    }
    let now = Utc::now();
    let txn = deps.db.begin().await?;
    let row = session::ActiveModel {
        id: Set(Uuid::now_v7()),
        config_id: Set(config.id),
        tenant: Set(config.tenant.clone()),
        provider: Set(client.module().to_owned()),
        provider_index: Set(index),
        model: Set(client.model().map(str::to_owned)),
        status: Set(SessionStatus::Active),
        message_count: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    AuditEntry::new(AuditAction::SessionCreate, by, meta)
        .tenant(Some(config.tenant))
        .config(config.id)
        .session(row.id)
        .detail(serde_json::json!({
            "provider": row.provider,
            "providerIndex": index,
            "model": row.model,
            "configDecrypted": "in memory only, to build the provider client",
        }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(row)
}

pub async fn find_visible_session(
    db: &impl ConnectionTrait,
    by: &Principal,
    id: Uuid,
) -> Result<Option<session::Model>, AppError> {
    let row = session::Entity::find_by_id(id).one(db).await?;
    Ok(row.filter(|s| by.can_see(&s.tenant)))
}

/// A session's transcript, oldest first, opened: messages are stored encrypted under the
/// session's tenant ring, like config values (rows from before that are plaintext).
pub async fn messages(
    db: &impl ConnectionTrait,
    keys: &TenantKeys,
    session: &session::Model,
) -> Result<Vec<message::Model>, AppError> {
    let mut rows = message::Entity::find()
        .filter(message::Column::SessionId.eq(session.id))
        .order_by_asc(message::Column::Seq)
        .all(db)
        .await?;
    let mut ring = keys.reading(db, &session.tenant).await?;
    for row in rows.iter_mut().filter(|m| m.encrypted) {
        let plain = match crypto::decrypt_value(&ring, &row.content) {
            Ok(plain) => plain,
            Err(_) => {
                // A key another process made since this one cached the tenant's ring.
                ring = keys.reading_fresh(db, &session.tenant).await?;
                crypto::decrypt_value(&ring, &row.content).map_err(|_| {
                    AppError::DecryptionFailed {
                        path: format!("the session's message {}", row.seq),
                    }
                })?
            }
        };
        row.content = plain.expose_secret().to_owned();
        row.encrypted = false;
    }
    Ok(rows)
}

/// A turn about to be sent: the session, its client, the transcript to send, and the
/// ring its messages are stored under.
pub struct Turnout {
    pub session: session::Model,
    pub client: ProviderClient,
    pub transcript: Vec<Turn>,
    pub ring: Arc<Keyring>,
}

/// Checks the session, stores the user's message and prepares the provider call.
pub async fn begin_turn(
    deps: &Deps<'_>,
    by: &Principal,
    session_id: Option<Uuid>,
    content: String,
) -> Result<Turnout, AppError> {
    let session_id = session_id.ok_or(AppError::NotFound("session"))?;
    check_no_nul("content", &content)?;
    if content.trim().is_empty() || content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(AppError::bad_input(format!(
            "content must be 1 to {MAX_MESSAGE_CHARS} characters"
        )));
    }
    // The session and its config in one round trip.
    let (session, config) = session::Entity::find_by_id(session_id)
        .find_also_related(config::Entity)
        .one(deps.db)
        .await?
        .filter(|(s, _)| by.can_see(&s.tenant))
        .ok_or(AppError::NotFound("session"))?;
    if session.status != SessionStatus::Active {
        return Err(AppError::bad_input(
            "the session is closed; create a new one",
        ));
    }
    let config = config
        .filter(|c| by.can_see(&c.tenant))
        .ok_or(AppError::NotFound("config"))?;
    let client = build_client(
        deps,
        &config,
        session.provider_index,
        session.model.as_deref(),
    )
    .await?;
    // The config was edited so that the entry at this index is another provider: the
    // session's turns (and its model) must not silently go there.
    if client.module() != session.provider {
        return Err(AppError::bad_input(format!(
            "configData.providers[{}] is now {}, but this session was created for {}; create a new session",
            session.provider_index,
            client.module(),
            session.provider
        )));
    }
    let history = messages(deps.db, deps.keys, &session).await?;
    let transcript = transcript(&history, &content);
    let ring = deps.keys.writing(deps.db, &session.tenant).await?;
    let seen = session.message_count;
    // Committed without waiting for the disk: the reply (or the failure) that ends the
    // turn commits durably after it, and PostgreSQL makes its log durable in order, so
    // anything a client was told of is on disk. A database crash in between loses only the
    // message of a turn that never finished. One flush a turn instead of two
    // (tests/bench/README.md).
    let session = append(
        deps.db,
        &ring,
        &session,
        Some(seen),
        "user",
        content,
        Flush::Later,
    )
    .await?
    .0;
    Ok(Turnout {
        session,
        client,
        transcript,
        ring,
    })
}

/// Records the outcome of a provider call: the assistant's reply, or what went wrong (an
/// `error` message, so the transcript shows it and the session stays usable).
///
/// `session` is as `begin_turn` left it. The reply is stored only if nothing was added
/// since: otherwise it answers a transcript that is no longer the session's (another turn
/// ran at the same time), and this turn fails with CONFLICT instead of interleaving.
pub async fn finish_turn(
    db: &DatabaseConnection,
    turn: &Turnout,
    outcome: Result<String, ProviderError>,
) -> Result<message::Model, AppError> {
    match outcome {
        Ok(reply) => {
            let expected = Some(turn.session.message_count);
            Ok(append(
                db,
                &turn.ring,
                &turn.session,
                expected,
                "assistant",
                reply,
                Flush::Now,
            )
            .await?
            .1)
        }
        Err(e) => Err(record_failure(db, turn, e).await),
    }
}

/// Adds the failure to the transcript and returns it as the error to answer with.
async fn record_failure(db: &DatabaseConnection, turn: &Turnout, e: ProviderError) -> AppError {
    // Wherever the transcript is now: a failure is worth showing even after another turn.
    let stored = append(
        db,
        &turn.ring,
        &turn.session,
        None,
        "error",
        e.to_string(),
        Flush::Now,
    )
    .await;
    if let Err(store) = stored {
        tracing::warn!(error = %store, "could not record a provider failure in the transcript");
    }
    e.into()
}

pub async fn send(
    deps: &Deps<'_>,
    by: &Principal,
    session_id: Option<Uuid>,
    content: String,
) -> Result<message::Model, AppError> {
    let turn = begin_turn(deps, by, session_id, content).await?;
    let started = Instant::now();
    let outcome = turn.client.send(&turn.transcript).await;
    record_call(&turn.client, &outcome, started);
    finish_turn(deps.db, &turn, outcome).await
}

/// Counts a provider call and its latency by provider and outcome.
fn record_call<T, E: std::borrow::Borrow<ProviderError>>(
    client: &ProviderClient,
    outcome: &Result<T, E>,
    started: Instant,
) {
    let label = match outcome {
        Ok(_) => "ok",
        Err(e) => match e.borrow() {
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::BadConfig(_) => "bad_config",
            ProviderError::Failed(_) => "failed",
        },
    };
    crate::telemetry::metrics::record_provider_call(client.module(), label, started.elapsed());
}

/// What a streamed turn yields: text deltas, then the stored reply.
pub enum StreamEvent {
    Delta(String),
    Done(message::Model),
}

/// Streams a turn. Dropping the stream drops the provider's, which cancels the upstream
/// request; nothing is stored for an abandoned reply.
pub fn stream(
    db: DatabaseConnection,
    turn: Turnout,
) -> BoxStream<'static, Result<StreamEvent, AppError>> {
    async_stream::try_stream! {
        let started = Instant::now();
        let mut upstream = match turn.client.stream(&turn.transcript).await {
            Ok(s) => s,
            Err(e) => {
                record_call(&turn.client, &Err::<(), _>(&e), started);
                Err(record_failure(&db, &turn, e).await)?
            }
        };
        let mut reply = String::new();
        while let Some(chunk) = upstream.next().await {
            match chunk {
                Ok(delta) => {
                    reply.push_str(&delta);
                    yield StreamEvent::Delta(delta);
                }
                Err(e) => {
                    record_call(&turn.client, &Err::<(), _>(&e), started);
                    Err(record_failure(&db, &turn, e).await)?
                }
            }
        }
        record_call(&turn.client, &Ok::<_, &ProviderError>(()), started);
        let message = finish_turn(&db, &turn, Ok(reply)).await?;
        yield StreamEvent::Done(message);
    }
    .boxed()
}

/// The provider transcript: user and assistant turns in order plus the new one, with
/// consecutive turns of one role merged (a failed call leaves two user turns in a row,
/// which providers refuse).
fn transcript(history: &[message::Model], next: &str) -> Vec<Turn> {
    let mut turns: Vec<Turn> = Vec::with_capacity(history.len() + 1);
    let entries = history
        .iter()
        .filter_map(|m| TurnRole::parse(&m.role).map(|role| (role, m.content.as_str())))
        .chain(std::iter::once((TurnRole::User, next)));
    for (role, content) in entries {
        match turns.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(content);
            }
            _ => turns.push(Turn {
                role,
                content: content.to_owned(),
            }),
        }
    }
    // A transcript starts with the user.
    while turns.first().is_some_and(|t| t.role != TurnRole::User) {
        turns.remove(0);
    }
    turns
}

/// When a commit returns: once the transaction is on disk, or at once (PostgreSQL's
/// asynchronous commit: visible at once, on disk within a fraction of a second).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flush {
    Now,
    Later,
}

/// Appends a message at the session's next position. With `expected`, only while the
/// session still has that many messages: a turn stores its user message and its reply only
/// on the transcript it read, so concurrent turns on one session conflict instead of
/// interleaving. The conditional update takes the position (two writers racing on one
/// position: the second finds the count moved and conflicts).
/// The content is stored encrypted under `ring`; the returned row holds it in the clear.
async fn append(
    db: &DatabaseConnection,
    ring: &Keyring,
    session: &session::Model,
    expected: Option<i32>,
    role: &str,
    content: String,
    flush: Flush,
) -> Result<(session::Model, message::Model), AppError> {
    let txn = db.begin().await?;
    if flush == Flush::Later && txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL synchronous_commit = off")
            .await?;
    }
    let now = Utc::now();
    let mut update = session::Entity::update_many()
        .col_expr(
            session::Column::MessageCount,
            Expr::col(session::Column::MessageCount).add(1),
        )
        .col_expr(session::Column::UpdatedAt, Expr::value(now))
        .filter(session::Column::Id.eq(session.id));
    if let Some(n) = expected {
        update = update.filter(session::Column::MessageCount.eq(n));
    }
    let Some(updated) = update.exec_with_returning(&txn).await?.pop() else {
        let exists = session::Entity::find_by_id(session.id).one(&txn).await?;
        return Err(match exists {
            Some(_) => moved_on(),
            None => AppError::NotFound("session"),
        });
    };
    let message = message::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(session.id),
        seq: Set(updated.message_count - 1),
        role: Set(role.to_owned()),
        content: Set(crypto::encrypt_value(ring, &content)),
        encrypted: Set(true),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let message = message::Model {
        content,
        encrypted: false,
        ..message
    };
    txn.commit().await?;
    Ok((updated, message))
}

fn moved_on() -> AppError {
    AppError::Conflict(
        "another message was added to this session at the same time; this turn was not stored"
            .into(),
    )
}

pub async fn close(
    db: &DatabaseConnection,
    by: &Principal,
    id: Option<Uuid>,
) -> Result<session::Model, AppError> {
    let id = id.ok_or(AppError::NotFound("session"))?;
    let row = find_visible_session(db, by, id)
        .await?
        .ok_or(AppError::NotFound("session"))?;
    if row.status == SessionStatus::Closed {
        return Ok(row);
    }
    let mut active: session::ActiveModel = row.into();
    active.status = Set(SessionStatus::Closed);
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

pub async fn delete(
    db: &DatabaseConnection,
    by: &Principal,
    id: Option<Uuid>,
) -> Result<bool, AppError> {
    let id = id.ok_or(AppError::NotFound("session"))?;
    let row = find_visible_session(db, by, id)
        .await?
        .ok_or(AppError::NotFound("session"))?;
    session::Entity::delete_by_id(row.id).exec(db).await?;
    Ok(true)
}

pub async fn list(
    db: &impl ConnectionTrait,
    by: &Principal,
    filter: &SessionFilter,
    first: u64,
    after: Option<Uuid>,
) -> Result<(Vec<session::Model>, bool, u64), AppError> {
    let mut query = session::Entity::find();
    if let Some(tenant) = by.tenant_scope() {
        query = query.filter(session::Column::Tenant.eq(tenant));
    }
    if let Some(config_id) = filter.config_id {
        query = query.filter(session::Column::ConfigId.eq(config_id));
    }
    if let Some(status) = filter.status {
        query = query.filter(session::Column::Status.eq(status));
    }
    crate::pagination::fetch(db, query, session::Column::Id, first, after).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: i32, role: &str, content: &str) -> message::Model {
        message::Model {
            id: Uuid::now_v7(),
            session_id: Uuid::nil(),
            seq,
            role: role.into(),
            content: content.into(),
            encrypted: false,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_transcript_skips_errors_and_merges_consecutive_user_turns() {
        let history = [
            msg(0, "user", "hi"),
            msg(1, "error", "upstream 500"),
            msg(2, "user", "again?"),
            msg(3, "assistant", "yes"),
        ];
        let turns = transcript(&history, "thanks");
        assert_eq!(
            turns,
            vec![
                Turn::user("hi\n\nagain?"),
                Turn::assistant("yes"),
                Turn::user("thanks")
            ]
        );
    }
}
