//! The GraphQL schema: each domain's queries and mutations merged, the limits applied,
//! and the one place where errors get their `extensions.code`.

use std::sync::Arc;

use async_graphql::extensions::apollo_persisted_queries::{
    ApolloPersistedQueries, LruCacheStorage,
};
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextRequest, NextSubscribe,
};
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::{
    MergedObject, MergedSubscription, Response, Schema, SchemaBuilder, ServerError,
};
use futures::StreamExt;

use crate::audit::schema::AuditQuery;
use crate::auth::schema::{AuthMutation, AuthQuery};
use crate::config::schema::{ConfigMutation, ConfigQuery};
use crate::error::{AppError, Code};
use crate::keys::schema::{KeysMutation, KeysQuery};
use crate::session::schema::{SessionMutation, SessionQuery, SessionSubscription};
use crate::state::AppState;

#[derive(MergedObject, Default)]
pub struct Query(ConfigQuery, SessionQuery, AuthQuery, AuditQuery, KeysQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(ConfigMutation, SessionMutation, AuthMutation, KeysMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(SessionSubscription);

pub type KeywardSchema = Schema<Query, Mutation, Subscription>;

/// The schema without state, for printing the SDL.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
}

pub fn build_schema(state: AppState) -> KeywardSchema {
    let limits = &state.settings.limits;
    schema_builder()
        .limit_depth(limits.max_query_depth)
        .limit_complexity(limits.max_query_complexity)
        .limit_recursive_depth(limits.max_query_depth.max(32))
        .limit_directives(50)
        // Outermost first: the metrics see the codes ErrorCodes sets.
        .extension(crate::telemetry::metrics::GraphqlMetrics)
        .extension(ErrorCodes)
        .extension(ApolloPersistedQueries::new(LruCacheStorage::new(1024)))
        .data(state)
        .finish()
}

/// The SDL of the schema, as `keyward schema` prints it.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

/// Sets `extensions.code` on every error: from the `AppError` behind it, or
/// BAD_USER_INPUT for the parser's and validator's own errors (including refused limits).
struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        annotate(&mut response.errors);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                annotate(&mut response.errors);
                response
            })
            .boxed()
    }
}

pub fn annotate(errors: &mut [ServerError]) {
    for error in errors {
        let code = match error.source::<AppError>() {
            Some(app) => {
                if app.is_server_fault() {
                    tracing::error!(error = %app, source = ?std::error::Error::source(app), "request failed");
                }
                app.code()
            }
            None => Code::BadUserInput,
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code.as_str());
    }
}
