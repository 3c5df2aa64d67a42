//! Token authentication: the hash and the constant-time comparison every request pays;
//! the whole check of a stored token against an in-memory SQLite store; and, when
//! PostgreSQL answers at KEYWARD_TEST_PG_URL (default
//! postgres://postgres@127.0.0.1:5432/postgres), the check against PostgreSQL without and
//! with the verified-token cache (api/src/auth/cache.rs, `KEYWARD_TOKEN_CACHE`).
//!
//! `cargo bench -p keyward --bench auth`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use entity::Role;
use keyward::auth::TokenCache;
use keyward::auth::token::{self, NewToken};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

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

/// Against PostgreSQL, through a pool like the server's: the lookup (a round trip, plus the
/// pool's pings) and the cached answer. Skipped when PostgreSQL does not answer.
fn authenticate_postgres(c: &mut Criterion) {
    // A worker of its own, so the cache's listener keeps hearing between iterations.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let admin_url = std::env::var("KEYWARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("keyward_bench_auth_{}", std::process::id());
    let created = rt.block_on(async {
        let admin = tokio::time::timeout(Duration::from_secs(5), Database::connect(&admin_url))
            .await
            .map_err(|_| sea_orm::DbErr::Custom("timed out".into()))??;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok::<_, sea_orm::DbErr>(admin)
    });
    let (Ok(admin), Some((base, _))) = (created, admin_url.rsplit_once('/')) else {
        eprintln!("authenticate_postgres: no PostgreSQL at {admin_url}; skipped");
        return;
    };
    let url = format!("{base}/{name}");
    let (db, secret) = rt.block_on(async {
        let mut options = ConnectOptions::new(url);
        options
            .max_connections(4)
            .test_before_acquire(true)
            .sqlx_logging(false);
        let db = Database::connect(options)
            .await
            .expect("the bench database");
        keyward::db::migrate(&db).await.expect("migrations");
        let (_, secret) = token::create(
            &db,
            NewToken {
                name: "bench".into(),
                role: Role::Member,
                tenant: Some("acme".into()),
            },
        )
        .await
        .expect("a token");
        (db, secret)
    });
    let cache = Arc::new(TokenCache::new());
    let listening = rt.block_on(async {
        let listening = keyward::auth::cache::listen(cache.clone(), &db);
        let digest: [u8; 32] = Sha256::digest(secret.expose_secret().as_bytes()).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.get(&digest).is_none() && Instant::now() < deadline {
            token::authenticate_cached(&db, Some(&cache), None, secret.expose_secret())
                .await
                .expect("no store error");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(cache.get(&digest).is_some(), "the cache never answered");
        listening
    });
    let mut group = c.benchmark_group("authenticate_postgres");
    group.bench_function("stored_token_uncached", |b| {
        b.iter(|| {
            rt.block_on(token::authenticate(
                &db,
                None,
                black_box(secret.expose_secret()),
            ))
            .expect("no store error")
            .expect("a principal")
        })
    });
    group.bench_function("stored_token_cached", |b| {
        b.iter(|| {
            rt.block_on(token::authenticate_cached(
                &db,
                Some(&cache),
                None,
                black_box(secret.expose_secret()),
            ))
            .expect("no store error")
            .expect("a principal")
        })
    });
    group.finish();
    drop(listening);
    rt.block_on(async {
        db.close().await.ok();
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .ok();
    });
}

criterion_group!(benches, hashing, authenticate, authenticate_postgres);
criterion_main!(benches);
