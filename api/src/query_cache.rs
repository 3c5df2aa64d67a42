//! Parsed GraphQL documents, remembered by query text.
//!
//! Clients send the same few query texts over and over with different variables, and
//! parsing one was the largest single cost of a `config(id)` read after the database
//! (the text is parsed twice: once by the shape check in `schema.rs`, once by
//! async-graphql; see tests/bench/README.md). This extension sits outside both: a text
//! seen before gets a copy of the document that passed them, without either running
//! again. Both are pure functions of the text (and of limits fixed when the schema is
//! built), so the answer is the same. Only documents that passed are kept, only short
//! texts, and only so many: a client sending ever-new texts costs a little memory,
//! never unbounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Texts longer than this are parsed every time (client queries are far shorter; a long
/// text is usually a literal-laden one-off).
const MAX_TEXT: usize = 4 * 1024;
/// Documents kept at most; when full, the cache starts over.
const MAX_ENTRIES: usize = 512;

#[derive(Clone, Default)]
pub struct ParsedQueryCache {
    documents: Arc<Mutex<HashMap<String, Arc<ExecutableDocument>>>>,
}

impl ExtensionFactory for ParsedQueryCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ParsedQueryCache {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_TEXT {
            return next.run(ctx, query, variables).await;
        }
        let known = self
            .documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(query)
            .cloned();
        if let Some(document) = known {
            return Ok(ExecutableDocument::clone(&document));
        }
        let document = next.run(ctx, query, variables).await?;
        let mut documents = self
            .documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if documents.len() >= MAX_ENTRIES {
            documents.clear();
        }
        documents.insert(query.to_owned(), Arc::new(document.clone()));
        Ok(document)
    }
}
