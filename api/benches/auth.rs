//! Token authentication: the hash and the constant-time comparison every request pays,
//! and the whole check of a stored token against an in-memory SQLite store (the row
//! lookup by hash; PostgreSQL adds a network round trip, see `make bench`).
//!
//! `cargo bench -p keyward --bench auth`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use entity::Role;
use keyward::auth::token::{self, NewToken};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::{ExposeSecret, SecretString};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn store() -> DatabaseConnection {
    // One connection: every connection to `sqlite::memory:` is a database of its own.
    let mut options = ConnectOptions::new("sqlite::memory:");
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    let db = Database::connect(options).await.expect("in-memory SQLite");
    keyward::db::migrate(&db).await.expect("migrations");
    db
}

fn hashing(c: &mut Criterion) {
    let secret = token::generate_secret();
    let other = token::generate_secret();
    let mut group = c.benchmark_group("token");
    group.bench_function("hash", |b| {
        b.iter(|| token::hash(black_box(secret.expose_secret())))
    });
    group.bench_function("secrets_equal", |b| {
        b.iter(|| {
            token::secrets_equal(
                black_box(secret.expose_secret()),
                black_box(other.expose_secret()),
            )
        })
    });
    group.finish();
}

fn authenticate(c: &mut Criterion) {
    let rt = runtime();
    let db = rt.block_on(store());
    let (_, secret) = rt
        .block_on(token::create(
            &db,
            NewToken {
                name: "bench".into(),
                role: Role::Member,
                tenant: Some("acme".into()),
            },
        ))
        .expect("a token");
    let admin = SecretString::from("bench-break-glass-admin-token");
    let unknown = token::generate_secret();
    let mut group = c.benchmark_group("authenticate");
    group.bench_function("stored_token_sqlite", |b| {
        b.iter(|| {
            rt.block_on(token::authenticate(
                &db,
                Some(&admin),
                black_box(secret.expose_secret()),
            ))
            .expect("no store error")
            .expect("a principal")
        })
    });
    group.bench_function("unknown_token_sqlite", |b| {
        b.iter(|| {
            rt.block_on(token::authenticate(
                &db,
                Some(&admin),
                black_box(unknown.expose_secret()),
            ))
            .expect("no store error")
        })
    });
    group.bench_function("break_glass_admin", |b| {
        b.iter(|| {
            rt.block_on(token::authenticate(
                &db,
                Some(&admin),
                black_box(admin.expose_secret()),
            ))
            .expect("no store error")
            .expect("a principal")
        })
    });
    group.finish();
}

criterion_group!(benches, hashing, authenticate);
criterion_main!(benches);
