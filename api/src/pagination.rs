//! Relay-style connections shared by every list: opaque cursors over time-ordered
//! (UUIDv7) ids, `first`/`after`, `nodes`, `pageInfo` and `totalCount`.

use async_graphql::connection::{
    Connection, DefaultConnectionName, DefaultEdgeName, Edge, EmptyFields, EnableNodesField,
};
use async_graphql::{OutputType, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use uuid::Uuid;

use crate::error::AppError;

pub const MAX_PAGE: i32 = 100;

#[derive(SimpleObject)]
pub struct TotalCount {
    /// How many records match the filters, across all pages.
    pub total_count: u64,
}

pub type Page<N> = Connection<
    String,
    N,
    TotalCount,
    EmptyFields,
    DefaultConnectionName,
    DefaultEdgeName,
    EnableNodesField,
>;

/// The complexity of a connection field (`configs`, `sessions`, `auditEvents`): its
/// selection once for every node it may return, plus one for itself. A `first: 100` page
/// weighs a hundred times what it selects, so the complexity limit bounds the nodes an
/// operation can make the server load and serialise, not just the fields it names.
pub fn connection_complexity(first: Option<i32>, child_complexity: usize) -> usize {
    let nodes = first.unwrap_or(20).clamp(1, MAX_PAGE) as usize;
    nodes.saturating_mul(child_complexity).saturating_add(1)
}

/// A validated `first` / `after` pair.
pub struct PageArgs {
    pub first: u64,
    pub after: Option<Uuid>,
}

impl PageArgs {
    pub fn parse(first: Option<i32>, after: Option<String>) -> Result<Self, AppError> {
        let first = first.unwrap_or(20);
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(AppError::bad_input(format!(
                "first must be between 0 and {MAX_PAGE}"
            )));
        }
        let after = after.as_deref().map(decode_cursor).transpose()?;
        Ok(Self {
            first: first as u64,
            after,
        })
    }
}

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Uuid, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| AppError::bad_input("after is not a cursor this API returned"))
}

/// One page of `query`, newest first by its time-ordered (UUIDv7) id column: the rows,
/// whether more follow, and how many match in all.
pub async fn fetch<E, C>(
    db: &C,
    query: Select<E>,
    id: E::Column,
    first: u64,
    after: Option<Uuid>,
) -> Result<(Vec<E::Model>, bool, u64), AppError>
where
    E: EntityTrait,
    E::Model: Send + Sync,
    C: ConnectionTrait,
{
    fetch_counting(db, query, id, first, after, true).await
}

/// [`fetch`], counting the matches only when `count`: the count reads every matching row
/// where the page reads `first + 1`, and a client that selected no `totalCount` (see
/// [`wants_total`]) gets 0 unseen. It was most of a `configs(first: 20)` page's database
/// time (make bench).
pub async fn fetch_counting<E, C>(
    db: &C,
    query: Select<E>,
    id: E::Column,
    first: u64,
    after: Option<Uuid>,
    count: bool,
) -> Result<(Vec<E::Model>, bool, u64), AppError>
where
    E: EntityTrait,
    E::Model: Send + Sync,
    C: ConnectionTrait,
{
    let total = if count {
        query.clone().count(db).await?
    } else {
        0
    };
    let query = match after {
        Some(after) => query.filter(id.lt(after)),
        None => query,
    };
    let mut rows = query.order_by_desc(id).limit(first + 1).all(db).await?;
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, has_next, total))
}

/// Whether the connection this resolver returns has its `totalCount` selected.
pub fn wants_total(ctx: &async_graphql::Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}

/// Builds a page from `(id, node)` pairs in order.
pub fn page<N: OutputType>(
    items: Vec<(Uuid, N)>,
    has_previous: bool,
    has_next: bool,
    total: u64,
) -> Page<N> {
    let mut connection = Connection::with_additional_fields(
        has_previous,
        has_next,
        TotalCount { total_count: total },
    );
    connection.edges.extend(
        items
            .into_iter()
            .map(|(id, node)| Edge::new(encode_cursor(id), node)),
    );
    connection
}

/// Parses an `ID` argument. A malformed id cannot name anything, so reads treat it as
/// missing; this returns None for them.
pub fn parse_id(id: &async_graphql::ID) -> Option<Uuid> {
    Uuid::parse_str(id.as_str()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_weigh_their_page_size() {
        assert_eq!(connection_complexity(Some(100), 12), 1201);
        assert_eq!(connection_complexity(None, 3), 61);
        assert_eq!(connection_complexity(Some(0), 3), 4);
        assert_eq!(connection_complexity(Some(5000), 2), 201);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_bad_input() {
        let id = Uuid::now_v7();
        let args = PageArgs::parse(Some(5), Some(encode_cursor(id))).unwrap();
        assert_eq!(args.after, Some(id));
        assert!(PageArgs::parse(None, Some("nope!".into())).is_err());
        assert!(PageArgs::parse(Some(-1), None).is_err());
        assert!(PageArgs::parse(Some(101), None).is_err());
    }
}
