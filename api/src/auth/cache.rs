//! A cache of verified bearer tokens that keeps revocation immediate in every process.
//!
//! Without it every request pays a database round trip (and the pool's release ping) to
//! look its token up: on PostgreSQL that was half the store's work for a `config(id)` read
//! (`make bench`, tests/bench/README.md). Issue 3 still holds: a revoked token is refused
//! on its next request, in this process and in every other one sharing the database.
//!
//! How that stays true:
//! - An entry is the [`Principal`] a successful database lookup returned, keyed by the
//!   token's SHA-256 digest (never the secret), and stamped with the cache's *epoch*.
//! - Every invalidation bumps the epoch and drops every entry. A lookup reads the epoch
//!   *before* it queries the store and its result is kept only if the epoch has not moved
//!   since, so a lookup that raced a revocation cannot re-insert the old answer.
//! - In this process, `revokeApiToken` invalidates right after its transaction commits.
//! - Across processes, a trigger on `api_tokens` (migration `m20261124_000006`) sends a
//!   PostgreSQL NOTIFY on channel [`CHANNEL`] whenever a token is revoked, deleted, or its
//!   role, tenant, name or hash changes, by any writer (Keyward, the CLI, plain SQL), at
//!   the commit. Every process LISTENs and invalidates when one arrives.
//! - The cache answers only while its listener is known to work: each process sends itself
//!   a heartbeat notification every [`HEARTBEAT`], and when none has been heard for
//!   [`DEAF_AFTER`] (a listener connection lost or silently dead) every lookup goes to the
//!   store again, and the cache is emptied, until notifications are heard again. A lost
//!   connection is noticed at once; a silently dead one within [`DEAF_AFTER`].
//! - Entries expire after [`TTL`] anyway, which also keeps `lastUsedAt` as fresh as before.
//! - SQLite has no NOTIFY: there the cache never answers (and a lookup is in-process).
//!
//! Unknown or revoked tokens are never cached: the failed-authentication throttle deals
//! with guessing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DbBackend};
use subtle::ConstantTimeEq;

use super::Principal;

/// The NOTIFY channel of `api_tokens` changes.
pub const CHANNEL: &str = "keyward_api_tokens";
/// How often each process notifies itself to prove its listener still hears.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long without hearing anything before the cache stops answering.
pub const DEAF_AFTER: Duration = Duration::from_secs(3);
/// The longest an entry is trusted, whatever else happens.
pub const TTL: Duration = Duration::from_secs(60);
/// Entries kept at most (one per distinct live token); beyond, the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// SHA-256 of a bearer token.
pub type Digest = [u8; 32];

pub struct TokenCache {
    state: Mutex<State>,
    /// When a notification was last heard, in ms since `origin`; 0 while deaf.
    heard_ms: AtomicU64,
    origin: Instant,
}

struct State {
    epoch: u64,
    entries: HashMap<Digest, Entry>,
}

struct Entry {
    digest: Digest,
    principal: Principal,
    epoch: u64,
    verified: Instant,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCache {
    /// A deaf cache: it answers nothing until a listener hears a notification.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                epoch: 0,
                entries: HashMap::new(),
            }),
            heard_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current epoch: read it before looking a token up in the store.
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// The principal of a token verified recently, if the cache may answer.
    pub fn get(&self, digest: &Digest) -> Option<Principal> {
        if !self.listening() {
            return None;
        }
        let state = self.state();
        let entry = state.entries.get(digest)?;
        let valid = entry.epoch == state.epoch
            && entry.verified.elapsed() < TTL
            && bool::from(entry.digest.ct_eq(digest));
        valid.then(|| entry.principal.clone())
    }

    /// Remembers a lookup's answer, unless an invalidation happened since `epoch` was read.
    pub fn insert(&self, digest: Digest, principal: Principal, epoch: u64) {
        if !self.listening() {
            return;
        }
        let mut state = self.state();
        if state.epoch != epoch {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.retain(|_, e| e.verified.elapsed() < TTL);
            if state.entries.len() >= MAX_ENTRIES {
                state.entries.clear();
            }
        }
        state.entries.insert(
            digest,
            Entry {
                digest,
                principal,
                epoch,
                verified: Instant::now(),
            },
        );
    }

    /// Forgets everything: a token changed somewhere, or notifications may have been missed.
    pub fn invalidate(&self) {
        let mut state = self.state();
        state.epoch += 1;
        state.entries.clear();
    }

    fn heard(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.heard_ms.store(ms.max(1), Ordering::SeqCst);
    }

    fn deafen(&self) {
        self.heard_ms.store(0, Ordering::SeqCst);
        self.invalidate();
    }

    /// Whether a notification was heard within DEAF_AFTER.
    fn listening(&self) -> bool {
        let heard = self.heard_ms.load(Ordering::SeqCst);
        let now = self.origin.elapsed().as_millis() as u64;
        heard != 0 && now.saturating_sub(heard) < DEAF_AFTER.as_millis() as u64
    }
}

/// The listener and heartbeat tasks of a cache; dropping this stops them.
pub struct Listening(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Listening {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts keeping `cache` in step with the store's `api_tokens` (PostgreSQL only; on
/// SQLite the cache stays deaf and every lookup goes to the store).
pub fn listen(cache: Arc<TokenCache>, db: &DatabaseConnection) -> Listening {
    if db.get_database_backend() != DbBackend::Postgres {
        return Listening(Vec::new());
    }
    let pool = db.get_postgres_connection_pool().clone();
    // Heartbeats are marked so they are not taken for changes; every process hears
    // everyone's, which is fine: hearing any proves the listener works.
    let heartbeat = format!("heartbeat:{}", uuid::Uuid::new_v4().simple());
    let listener = {
        let (cache, pool) = (cache.clone(), pool.clone());
        tokio::spawn(async move {
            use sea_orm::sqlx::postgres::PgListener;
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "token cache: cannot connect its listener");
                        tokio::time::sleep(HEARTBEAT).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "token cache: LISTEN failed");
                    tokio::time::sleep(HEARTBEAT).await;
                    continue;
                }
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => {
                            if !n.payload().starts_with("heartbeat:") {
                                cache.invalidate();
                            }
                            cache.heard();
                        }
                        // The connection was lost (sqlx reconnects and listens again):
                        // whatever was sent meanwhile is lost, so start over.
                        Ok(None) => cache.deafen(),
                        Err(e) => {
                            tracing::warn!(error = %e, "token cache: listener failed");
                            cache.deafen();
                            break;
                        }
                    }
                }
                tokio::time::sleep(HEARTBEAT).await;
            }
        })
    };
    let beat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let sent = sea_orm::sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&heartbeat)
                .execute(&pool)
                .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "token cache: heartbeat not sent");
            }
        }
    });
    Listening(vec![listener, beat])
}

#[cfg(test)]
mod tests {
    use super::*;
    use entity::Role;

    fn principal() -> Principal {
        Principal {
            name: "t".into(),
            role: Role::Member,
            tenant: Some("a".into()),
            token_id: None,
        }
    }

    fn listening_cache() -> TokenCache {
        let cache = TokenCache::new();
        cache.heard();
        cache
    }

    #[test]
    fn a_deaf_cache_answers_nothing_and_keeps_nothing() {
        let cache = TokenCache::new();
        cache.insert([1; 32], principal(), cache.epoch());
        assert_eq!(cache.get(&[1; 32]), None);
        cache.heard();
        assert_eq!(cache.get(&[1; 32]), None, "nothing was kept while deaf");
    }

    #[test]
    fn a_verified_token_is_answered_until_an_invalidation() {
        let cache = listening_cache();
        cache.insert([1; 32], principal(), cache.epoch());
        assert_eq!(cache.get(&[1; 32]), Some(principal()));
        assert_eq!(cache.get(&[2; 32]), None);
        cache.invalidate();
        assert_eq!(cache.get(&[1; 32]), None);
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_kept() {
        let cache = listening_cache();
        let epoch = cache.epoch();
        // The lookup read the row; meanwhile the token was revoked.
        cache.invalidate();
        cache.insert([1; 32], principal(), epoch);
        assert_eq!(cache.get(&[1; 32]), None);
    }

    #[test]
    fn losing_the_listener_empties_and_silences_the_cache() {
        let cache = listening_cache();
        cache.insert([1; 32], principal(), cache.epoch());
        cache.deafen();
        cache.heard();
        assert_eq!(cache.get(&[1; 32]), None);
    }
}
