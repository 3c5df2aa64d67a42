//! The GraphQL schema: each domain's queries and mutations merged, the limits applied,
//! and the one place where errors get their `extensions.code`.

use std::sync::Arc;

use async_graphql::extensions::apollo_persisted_queries::{
    ApolloPersistedQueries, LruCacheStorage,
};
use std::collections::HashMap;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe,
};
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{
    MergedObject, MergedSubscription, Response, Schema, SchemaBuilder, ServerError, ServerResult,
    Variables,
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

/// The schema over `state`, limits applied. Its data holds the [`InFlightStreams`] that
/// shutdown waits for.
pub fn build_schema(state: AppState) -> KeywardSchema {
    let limits = &state.settings.limits;
    let streams = InFlightStreams::default();
    schema_builder()
        .limit_depth(limits.max_query_depth)
        // Connection fields weigh `first` times their selection
        // (pagination::connection_complexity): an operation may weigh ten times the
        // field limit, so a page of 100 configs with every field (about 1,300) passes and
        // a stack of aliased pages does not. QueryShape counts the fields themselves.
        .limit_complexity(limits.max_query_complexity.saturating_mul(10))
        .limit_recursive_depth(limits.max_query_depth.max(32))
        .limit_directives(50)
        // Outermost first: the metrics see the codes ErrorCodes sets.
        .extension(crate::telemetry::metrics::GraphqlMetrics)
        .extension(ErrorCodes)
        // Outside the shape check and the parser: a known text skips both.
        .extension(crate::query_cache::ParsedQueryCache::default())
        .extension(QueryShape::new(limits))
        .extension(TrackStreams(streams.clone()))
        .extension(ApolloPersistedQueries::new(LruCacheStorage::new(1024)))
        .data(state)
        .data(streams)
        .finish()
}

/// Operations running over WebSocket (subscriptions, and queries sent that way): each
/// holds a guard for as long as its stream lives, so that shutdown can let them finish
/// after the HTTP connections have drained. Once draining has begun, new ones are refused
/// with UNAVAILABLE.
#[derive(Clone, Default)]
pub struct InFlightStreams {
    live: Arc<tokio::sync::watch::Sender<usize>>,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

struct StreamGuard(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl InFlightStreams {
    /// A guard for a new stream, or None once draining has begun.
    fn start(&self) -> Option<StreamGuard> {
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        self.live.send_modify(|n| *n += 1);
        Some(StreamGuard(self.live.clone()))
    }

    /// Streams alive now.
    pub fn live(&self) -> usize {
        *self.live.borrow()
    }

    /// Refuses new streams from now on and resolves when the last live one has ended.
    pub async fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut live = self.live.subscribe();
        let _ = live.wait_for(|n| *n == 0).await;
    }
}

struct TrackStreams(InFlightStreams);

impl ExtensionFactory for TrackStreams {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TrackStreams(self.0.clone()))
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for TrackStreams {
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let Some(guard) = self.0.start() else {
            let refusal = async_graphql::Error::from(AppError::Unavailable(
                "the server is shutting down".into(),
            ))
            .into_server_error(Default::default());
            return futures::stream::once(async move { Response::from_errors(vec![refusal]) })
                .boxed();
        };
        next.run(ctx, stream)
            .map(move |response| {
                let _alive = &guard;
                response
            })
            .boxed()
    }
}

/// The SDL of the schema, as `keyward schema` prints it.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

/// Refuses documents whose size alone would make the server work hard, before the
/// parser and the validator see them:
///
/// - text nested deeper than any allowed query (brackets of every kind, outside strings
///   and comments), so no recursive descent can run out of stack;
/// - more field selections than `max_query_complexity`, counted with every fragment
///   spread expanded and `__typename` included. async-graphql's own complexity and depth
///   visitors skip `__typename` (so 50,000 aliases of it passed) and expand fragments one
///   spread at a time (so ten fragments spreading the previous one ten times kept a
///   worker thread busy for minutes); here each fragment is counted once and remembered;
/// - more directives in one operation than fields allowed.
struct QueryShape {
    max_nesting: usize,
    max_selections: usize,
}

impl QueryShape {
    fn new(limits: &crate::settings::Limits) -> Self {
        Self {
            // Selection sets plus input values (a configData literal) plus arguments.
            max_nesting: (limits.max_query_depth + 64).max(128),
            max_selections: limits.max_query_complexity,
        }
    }
}

impl ExtensionFactory for QueryShape {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryShape {
            max_nesting: self.max_nesting,
            max_selections: self.max_selections,
        })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for QueryShape {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if text_nesting(query) > self.max_nesting {
            return Err(ServerError::new(
                format!(
                    "the query is nested more than {} levels deep",
                    self.max_nesting
                ),
                None,
            ));
        }
        // Measured on a parse of our own, before async-graphql's parse step runs its
        // recursive-depth and directive checks: both expand every fragment spread without
        // remembering, so they are exponential in a fragment bomb. A document that does
        // not parse is left to that step, which reports the syntax error.
        if let Ok(document) = async_graphql::parser::parse_query(query) {
            check_size(&document, self.max_selections, self.max_nesting)?;
        }
        next.run(ctx, query, variables).await
    }
}

/// The checks [`QueryShape`] runs on a query's text, on their own: for fuzzing and for
/// tools. Err carries the refusal's message.
pub fn check_query_shape(query: &str, limits: &crate::settings::Limits) -> Result<(), String> {
    let shape = QueryShape::new(limits);
    if text_nesting(query) > shape.max_nesting {
        return Err(format!(
            "the query is nested more than {} levels deep",
            shape.max_nesting
        ));
    }
    match async_graphql::parser::parse_query(query) {
        Ok(document) => {
            check_size(&document, shape.max_selections, shape.max_nesting).map_err(|e| e.message)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The deepest nesting of `{`, `[` and `(` in GraphQL text, ignoring strings, block
/// strings and comments. Linear, no recursion.
fn text_nesting(query: &str) -> usize {
    let bytes = query.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// Refuses a document with more field selections (fragments expanded, `__typename`
/// included) or directives than `max` in one operation, or ten times that in all, or
/// whose selections (fragment spreads included) nest deeper than `max_nesting`.
fn check_size(document: &ExecutableDocument, max: usize, max_nesting: usize) -> ServerResult<()> {
    let mut counter = SizeCounter {
        document,
        fragments: HashMap::new(),
        depth: 0,
        max_depth: max_nesting,
        too_deep: false,
    };
    let mut total = Size::default();
    for (_, operation) in document.operations.iter() {
        let mut size = counter.selection_set(&operation.node.selection_set.node);
        if counter.too_deep {
            return Err(ServerError::new(
                format!("selections and fragment spreads nest more than {max_nesting} levels deep"),
                Some(operation.pos),
            ));
        }
        size.directives = size
            .directives
            .saturating_add(operation.node.directives.len());
        if size.fields > max {
            return Err(ServerError::new(
                format!(
                    "the operation selects more than {max} fields (aliases, repeats and fragments count)"
                ),
                Some(operation.pos),
            ));
        }
        if size.selections > max.saturating_mul(4) {
            return Err(ServerError::new(
                format!(
                    "the operation spreads fragments more than {} times",
                    max.saturating_mul(4)
                ),
                Some(operation.pos),
            ));
        }
        if size.directives > max {
            return Err(ServerError::new(
                format!("the operation uses more than {max} directives"),
                Some(operation.pos),
            ));
        }
        total = total.plus(size);
    }
    let most = max.saturating_mul(10);
    if total.fields > most || total.selections > most.saturating_mul(4) || total.directives > most {
        return Err(ServerError::new(
            format!("the document selects more than {most} fields in all"),
            None,
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, Default)]
struct Size {
    /// Field selections: what the limit is stated in.
    fields: usize,
    /// Every selection (fields, spreads, inline fragments): the work a walk does, which a
    /// tower of fragments that select nothing would otherwise keep at zero fields.
    selections: usize,
    directives: usize,
}

impl Size {
    fn plus(self, other: Size) -> Size {
        Size {
            fields: self.fields.saturating_add(other.fields),
            selections: self.selections.saturating_add(other.selections),
            directives: self.directives.saturating_add(other.directives),
        }
    }
}

struct SizeCounter<'a> {
    document: &'a ExecutableDocument,
    /// Each fragment's expanded size once known; `None` while it is being counted, so a
    /// cycle counts as nothing here (the validator refuses cycles by name).
    fragments: HashMap<&'a str, Option<Size>>,
    /// Selection sets entered and not yet left: the recursion is bounded by `max_depth`,
    /// so a chain of thousands of fragments cannot exhaust the stack here, nor (refused
    /// here first) in the validator.
    depth: usize,
    max_depth: usize,
    too_deep: bool,
}

impl<'a> SizeCounter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> Size {
        if self.depth >= self.max_depth {
            self.too_deep = true;
            return Size::default();
        }
        self.depth += 1;
        let size = self.items(set);
        self.depth -= 1;
        size
    }

    fn items(&mut self, set: &'a SelectionSet) -> Size {
        let mut size = Size::default();
        for item in &set.items {
            let here = match &item.node {
                Selection::Field(field) => Size {
                    fields: 1,
                    selections: 1,
                    directives: field.node.directives.len(),
                }
                .plus(self.selection_set(&field.node.selection_set.node)),
                Selection::InlineFragment(inline) => Size {
                    fields: 0,
                    selections: 1,
                    directives: inline.node.directives.len(),
                }
                .plus(self.selection_set(&inline.node.selection_set.node)),
                Selection::FragmentSpread(spread) => Size {
                    fields: 0,
                    selections: 1,
                    directives: spread.node.directives.len(),
                }
                .plus(self.fragment(spread.node.fragment_name.node.as_str())),
            };
            size = size.plus(here);
        }
        size
    }

    fn fragment(&mut self, name: &'a str) -> Size {
        match self.fragments.get(name) {
            Some(Some(size)) => return *size,
            Some(None) => return Size::default(),
            None => {}
        }
        let Some(definition) = self.document.fragments.get(name) else {
            return Size::default();
        };
        self.fragments.insert(name, None);
        let size = Size {
            fields: 0,
            selections: 0,
            directives: definition.node.directives.len(),
        }
        .plus(self.selection_set(&definition.node.selection_set.node));
        self.fragments.insert(name, Some(size));
        size
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of(query: &str, max: usize) -> ServerResult<()> {
        check_size(
            &async_graphql::parser::parse_query(query).unwrap(),
            max,
            128,
        )
    }

    #[test]
    fn nesting_is_measured_outside_strings_and_comments() {
        assert_eq!(text_nesting("{ a { b(x: [1, {c: 2}]) } }"), 5);
        assert_eq!(text_nesting(r#"{ a(s: "{{{{[[[(((") }"#), 2);
        assert_eq!(text_nesting(r#"{ a(s: "\"{{{{") }"#), 2);
        assert_eq!(text_nesting("{ a # {{{{{{\n }"), 1);
        assert_eq!(text_nesting(r#"{ a(s: """ {{{{ \""" {{{ """) }"#), 2);
        assert_eq!(text_nesting(&"[".repeat(100_000)), 100_000);
        assert_eq!(text_nesting("}}}}{"), 1);
    }

    #[test]
    fn every_selection_counts_typename_and_repeats_included() {
        assert!(size_of("{ a b c }", 3).is_ok());
        assert!(size_of("{ a b c d }", 3).is_err());
        assert!(
            size_of(
                "{ __typename x: __typename y: __typename z: __typename }",
                3
            )
            .is_err()
        );
        assert!(size_of("{ a { b { c } } }", 3).is_ok());
        assert!(size_of("{ a { b { c d } } }", 3).is_err());
    }

    #[test]
    fn fragments_count_once_per_spread_and_are_computed_once() {
        // F2 = 2 × F1 = 4 × F0 = 4 fields.
        let q = "{ ...F2 } fragment F0 on Q { a } fragment F1 on Q { ...F0 ...F0 } fragment F2 on Q { ...F1 ...F1 }";
        assert!(size_of(q, 4).is_ok());
        assert!(size_of(q, 3).is_err());
        // 10^30 selections: refused at once, with no overflow.
        let mut bomb = String::from("{ ...F30 } fragment F0 on Q { a }");
        for k in 1..=30 {
            bomb.push_str(&format!(
                " fragment F{k} on Q {{{} }}",
                format!(" ...F{}", k - 1).repeat(10)
            ));
        }
        assert!(size_of(&bomb, 1000).is_err());
        // Fragments that select no field at all still cost a walk per spread.
        let mut empty = String::from("{ ...F20 } fragment F0 on Q { ...Missing }");
        for k in 1..=20 {
            empty.push_str(&format!(
                " fragment F{k} on Q {{{} }}",
                format!(" ...F{}", k - 1).repeat(10)
            ));
        }
        assert!(size_of(&empty, 1000).is_err());
        // A cycle is left to the validator, which names it.
        assert!(
            size_of(
                "{ ...A } fragment A on Q { a ...B } fragment B on Q { ...A }",
                10
            )
            .is_ok()
        );
    }

    #[test]
    fn long_chains_of_fragment_spreads_are_refused_before_they_recurse() {
        let mut chain = String::from("{ ...F0 }");
        for k in 0..10_000 {
            chain.push_str(&format!(" fragment F{k} on Q {{ ...F{} }}", k + 1));
        }
        chain.push_str(" fragment F10000 on Q { a }");
        assert!(size_of(&chain, 1000).is_err());
    }

    #[test]
    fn directives_are_bounded_per_operation() {
        let q = format!("{{ a{} }}", " @skip(if: false)".repeat(11));
        assert!(size_of(&q, 10).is_err());
        assert!(size_of("{ a @skip(if: false) }", 10).is_ok());
    }
}
