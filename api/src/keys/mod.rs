//! Key management over GraphQL: the public sealed-box key (and, later, rotation).

pub mod schema;
