//! Session queries, mutations and the `streamMessage` subscription.

use async_graphql::{Context, ID, InputObject, Object, Result, Subscription};
use futures::{Stream, StreamExt};

use super::SessionFilter;
use super::service::{self, Deps, NewSession, StreamEvent};
use super::types::{MessageChunk, MessageView, SessionStatusKind, SessionView};
use crate::auth::{Principal, RequestMeta};
use crate::pagination::{Page, PageArgs, page, parse_id};
use crate::state::AppState;

#[derive(InputObject)]
pub struct CreateSessionInput {
    config_id: ID,
    /// Index into configData.providers; default 0.
    provider: Option<i32>,
    /// Overrides the config's model.
    model: Option<String>,
}

fn deps(state: &AppState) -> Deps<'_> {
    Deps {
        db: &state.db,
        keys: &state.tenant_keys,
        providers: &state.providers,
    }
}

#[derive(Default)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    /// Null when the session does not exist or the caller may not see it.
    async fn session(&self, ctx: &Context<'_>, id: ID) -> Result<Option<SessionView>> {
        let state = ctx.data_unchecked::<AppState>();
        let Some(id) = parse_id(&id) else {
            return Ok(None);
        };
        let found =
            service::find_visible_session(&state.db, ctx.data_unchecked::<Principal>(), id).await?;
        Ok(found.map(Into::into))
    }

    /// Newest first.
    #[graphql(complexity = "crate::pagination::connection_complexity(first, child_complexity)")]
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        after: Option<String>,
        config_id: Option<ID>,
        status: Option<SessionStatusKind>,
    ) -> Result<Page<SessionView>> {
        let state = ctx.data_unchecked::<AppState>();
        let args = PageArgs::parse(first, after)?;
        let config_id = match config_id {
            Some(id) => match parse_id(&id) {
                Some(id) => Some(id),
                // No config has a malformed id: the page is empty.
                None => return Ok(page(Vec::new(), false, false, 0)),
            },
            None => None,
        };
        let filter = SessionFilter {
            config_id,
            status: status.map(Into::into),
        };
        let principal = ctx.data_unchecked::<Principal>();
        let (rows, has_next, total) =
            service::list(&state.db, principal, &filter, args.first, args.after).await?;
        let items = rows
            .into_iter()
            .map(|row| (row.id, SessionView::from(row)))
            .collect();
        Ok(page(items, args.after.is_some(), has_next, total))
    }
}

#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Decrypts the config in memory only, to build the provider client.
    async fn create_session(
        &self,
        ctx: &Context<'_>,
        input: CreateSessionInput,
    ) -> Result<SessionView> {
        let state = ctx.data_unchecked::<AppState>();
        let new = NewSession {
            config_id: parse_id(&input.config_id),
            provider: input.provider,
            model: input.model,
        };
        let row = service::create(
            &deps(state),
            ctx.data_unchecked(),
            ctx.data_unchecked::<RequestMeta>(),
            new,
        )
        .await?;
        Ok(row.into())
    }

    /// Sends a user message through the session's provider and returns the assistant's reply.
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        #[graphql(secret)] content: String,
    ) -> Result<MessageView> {
        let state = ctx.data_unchecked::<AppState>();
        let message = service::send(
            &deps(state),
            ctx.data_unchecked(),
            parse_id(&session_id),
            content,
        )
        .await?;
        Ok(message.into())
    }

    async fn close_session(&self, ctx: &Context<'_>, id: ID) -> Result<SessionView> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(
            service::close(&state.db, ctx.data_unchecked(), parse_id(&id))
                .await?
                .into(),
        )
    }

    async fn delete_session(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(service::delete(&state.db, ctx.data_unchecked(), parse_id(&id)).await?)
    }
}

#[derive(Default)]
pub struct SessionSubscription;

#[Subscription]
impl SessionSubscription {
    /// Like sendMessage, streamed: chunks with delta text; the last has done: true and the
    /// stored message.
    async fn stream_message(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        #[graphql(secret)] content: String,
    ) -> Result<impl Stream<Item = Result<MessageChunk>>> {
        let state = ctx.data_unchecked::<AppState>();
        let turn = service::begin_turn(
            &deps(state),
            ctx.data_unchecked(),
            parse_id(&session_id),
            content,
        )
        .await?;
        Ok(service::stream(state.db.clone(), turn).map(|event| {
            Ok(match event? {
                StreamEvent::Delta(delta) => MessageChunk {
                    delta,
                    done: false,
                    message: None,
                },
                StreamEvent::Done(message) => MessageChunk {
                    delta: String::new(),
                    done: true,
                    message: Some(message.into()),
                },
            })
        }))
    }
}
