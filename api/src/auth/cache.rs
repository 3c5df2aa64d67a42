//! A cache of verified bearer tokens that keeps revocation strict in every process.
//!
//! Without it every request pays a database round trip (and the pool's release ping) to
//! look its token up: on PostgreSQL that was a third of a `config(id)` read's round trips
//! and a fifth of its CPU (`make bench`, tests/bench/README.md). On by default on
//! PostgreSQL (`KEYWARD_TOKEN_CACHE`). Issue 3 still holds: once `revokeApiToken` has
//! answered, the token is refused on its next request, in this process and in every other
//! one sharing the database.
//!
//! How that stays true:
//! - An entry is the [`Principal`] a successful database lookup returned, keyed by the
//!   token's SHA-256 digest (never the secret), and stamped with the cache's *epoch*.
//! - Every invalidation bumps the epoch and drops every entry. A lookup reads the epoch
//!   *before* it queries the store and its result is kept only if the epoch has not moved
//!   since, so a lookup that raced a revocation cannot re-insert the old answer.
//! - A trigger on `api_tokens` (migration `m20261124_000006`) sends a PostgreSQL NOTIFY on
//!   channel [`CHANNEL`] whenever a token is revoked, deleted, or its role, tenant, name or
//!   hash changes, by any writer (Keyward, the CLI, plain SQL), at the writer's commit.
//!   Every process LISTENs and invalidates when one arrives. PostgreSQL delivers
//!   notifications in commit order, so a process that has heard a notification committed
//!   after a change has heard the change.
//! - Freshness: each process notifies itself a heartbeat every [`HEARTBEAT`], carrying the
//!   time it was sent. The cache answers only while it has heard one of its own heartbeats
//!   sent less than [`DEAF_AFTER`] ago: so whatever committed more than DEAF_AFTER ago has
//!   been heard (or the cache is silent), even if its listener is slow, lost its
//!   connection, or silently died.
//! - `revokeApiToken` ([`TokenCache::settle`]): after its commit, the revoking process
//!   invalidates its own cache, then notifies a *sync* and waits until every process whose
//!   heartbeat it heard lately has acknowledged that sync (which, by commit order, means
//!   it has heard the revocation), or until DEAF_AFTER has passed since the commit (after
//!   which the freshness rule keeps any process that did not answer from using a stale
//!   entry). In practice the wait is a few milliseconds; a process that died mid-way makes
//!   it DEAF_AFTER.
//! - A change made outside Keyward (plain SQL) reaches every cache within milliseconds,
//!   and within DEAF_AFTER at worst; nobody waits for it.
//! - Entries expire after [`TTL`] anyway, which also keeps `lastUsedAt` as fresh as before.
//! - SQLite has no NOTIFY: there the cache never answers (and a lookup is in-process).
//!
//! Unknown or revoked tokens are never cached: the failed-authentication throttle deals
//! with guessing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::sqlx::PgPool;
use sea_orm::{DatabaseConnection, DbBackend};
use subtle::ConstantTimeEq;

use super::Principal;

/// The NOTIFY channel of `api_tokens` changes.
pub const CHANNEL: &str = "keyward_api_tokens";
/// How often each process notifies itself to prove its listener still hears.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How old the newest of its own heartbeats it has heard back may be before the cache
/// stops answering; also the longest `revokeApiToken` waits for the other processes.
pub const DEAF_AFTER: Duration = Duration::from_secs(3);
/// The longest an entry is trusted, whatever else happens.
pub const TTL: Duration = Duration::from_secs(60);
/// Entries kept at most (one per distinct live token); beyond, the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// SHA-256 of a bearer token.
pub type Digest = [u8; 32];

pub struct TokenCache {
    state: Mutex<State>,
    /// Send time (ms since `origin`) of the newest own heartbeat heard back; 0 while deaf.
    fresh_ms: AtomicU64,
    origin: Instant,
    /// This process's name on the channel.
    instance: String,
    peers: Mutex<Peers>,
    /// Wakes `settle` when a sync or an acknowledgement arrives.
    heard: tokio::sync::Notify,
    /// Where to send notifications, once listening.
    pool: OnceLock<PgPool>,
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

/// The other processes on the channel, as far as this one has heard.
#[derive(Default)]
struct Peers {
    /// When each process's heartbeat was last heard.
    seen: HashMap<String, Instant>,
    /// Since when the listener has heard everything (None: not listening now).
    since: Option<Instant>,
    /// The syncs this process sent and is waiting on, by nonce.
    rounds: HashMap<String, Round>,
}

struct Round {
    /// When the change it follows committed (as seen from here).
    committed: Instant,
    /// Who must acknowledge, known once the sync came back; `Some(None)` when this
    /// process cannot tell (its listener had not been hearing long enough).
    expected: Option<Option<HashSet<String>>>,
    acked: HashSet<String>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCache {
    /// A deaf cache: it answers nothing until a listener hears its own heartbeat.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                epoch: 0,
                entries: HashMap::new(),
            }),
            fresh_ms: AtomicU64::new(0),
            origin: Instant::now(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            peers: Mutex::new(Peers::default()),
            heard: tokio::sync::Notify::new(),
            pool: OnceLock::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
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

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    fn deafen(&self) {
        self.fresh_ms.store(0, Ordering::SeqCst);
        self.peers().since = None;
        self.invalidate();
    }

    /// Whether one of this process's own heartbeats sent within DEAF_AFTER was heard back.
    fn listening(&self) -> bool {
        let fresh = self.fresh_ms.load(Ordering::SeqCst);
        fresh != 0 && self.now_ms().saturating_sub(fresh) < DEAF_AFTER.as_millis() as u64
    }

    fn heartbeat_payload(&self) -> String {
        format!("heartbeat:{}:{}", self.instance, self.now_ms())
    }

    /// Takes in one notification, in the order the channel delivered it; returns the
    /// acknowledgement to send, if any.
    fn hear(&self, payload: &str) -> Option<String> {
        let now = Instant::now();
        {
            let mut peers = self.peers();
            if peers.since.is_none() {
                // (Re)connected: everything from now on is heard, in order.
                peers.since = Some(now);
            }
        }
        if let Some(rest) = payload.strip_prefix("heartbeat:") {
            // `heartbeat:<instance>:<sent ms>` (older processes sent `heartbeat:<instance>`).
            let (instance, sent) = rest.split_once(':').unwrap_or((rest, ""));
            self.peers().seen.insert(instance.to_owned(), now);
            if instance == self.instance
                && let Ok(sent) = sent.parse::<u64>()
            {
                self.fresh_ms.fetch_max(sent, Ordering::SeqCst);
            }
            None
        } else if let Some(nonce) = payload.strip_prefix("sync:") {
            // Everything committed before this sync was heard (and acted on) before it.
            let mut peers = self.peers();
            let since = peers.since;
            let Peers { seen, rounds, .. } = &mut *peers;
            if let Some(round) = rounds.get_mut(nonce)
                && round.expected.is_none()
            {
                // Whoever could still answer from a cache sent a heartbeat within
                // DEAF_AFTER before the change committed: heard before this sync came back.
                let horizon = round
                    .committed
                    .checked_sub(DEAF_AFTER + HEARTBEAT)
                    .unwrap_or(round.committed);
                round.expected = Some(since.filter(|s| *s <= horizon).map(|_| {
                    seen.iter()
                        .filter(|(_, at)| **at >= horizon)
                        .map(|(instance, _)| instance.clone())
                        .chain(std::iter::once(self.instance.clone()))
                        .collect()
                }));
                self.heard.notify_waiters();
            }
            Some(format!("ack:{nonce}:{}", self.instance))
        } else if let Some(rest) = payload.strip_prefix("ack:") {
            if let Some((nonce, instance)) = rest.rsplit_once(':')
                && let Some(round) = self.peers().rounds.get_mut(nonce)
            {
                round.acked.insert(instance.to_owned());
                self.heard.notify_waiters();
            }
            None
        } else {
            self.invalidate();
            None
        }
    }

    /// Called by a writer right after it committed a token change: returns once no process
    /// sharing the database can answer from a cache that predates the change (see the
    /// module's notes); within DEAF_AFTER at worst.
    pub async fn settle(&self) {
        let committed = Instant::now();
        self.invalidate();
        let Some(pool) = self.pool.get() else {
            // Not listening: SQLite (no process caches) or no server running here.
            return;
        };
        let deadline = tokio::time::Instant::from_std(committed + DEAF_AFTER);
        let nonce = format!("{}.{}", self.instance, uuid::Uuid::new_v4().simple());
        self.peers().rounds.insert(
            nonce.clone(),
            Round {
                committed,
                expected: None,
                acked: HashSet::new(),
            },
        );
        let sent = notify(pool, &format!("sync:{nonce}")).await;
        loop {
            let heard = self.heard.notified();
            tokio::pin!(heard);
            heard.as_mut().enable();
            let done = sent
                && self.peers().rounds.get(&nonce).is_some_and(|round| {
                    matches!(&round.expected, Some(Some(expected)) if expected.is_subset(&round.acked))
                });
            if done || tokio::time::Instant::now() >= deadline {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, heard).await;
        }
        self.peers().rounds.remove(&nonce);
    }
}

async fn notify(pool: &PgPool, payload: &str) -> bool {
    let sent = sea_orm::sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(pool)
        .await;
    if let Err(e) = &sent {
        tracing::debug!(error = %e, "token cache: notification not sent");
    }
    sent.is_ok()
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
    let _ = cache.pool.set(pool.clone());
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
                            if let Some(ack) = cache.hear(n.payload()) {
                                let pool = pool.clone();
                                tokio::spawn(async move { notify(&pool, &ack).await });
                            }
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
            notify(&pool, &cache.heartbeat_payload()).await;
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
        cache.hear(&cache.heartbeat_payload());
        cache
    }

    #[test]
    fn a_deaf_cache_answers_nothing_and_keeps_nothing() {
        let cache = TokenCache::new();
        cache.insert([1; 32], principal(), cache.epoch());
        assert_eq!(cache.get(&[1; 32]), None);
        cache.hear(&cache.heartbeat_payload());
        assert_eq!(cache.get(&[1; 32]), None, "nothing was kept while deaf");
    }

    #[test]
    fn only_its_own_recent_heartbeats_make_a_cache_answer() {
        let cache = TokenCache::new();
        cache.hear("heartbeat:someone-else:99999999");
        cache.hear("heartbeat:legacy-without-time");
        assert!(
            !cache.listening(),
            "another process's heartbeat proves nothing here"
        );
        cache.hear(&format!("heartbeat:{}:1", cache.instance));
        assert!(
            cache.now_ms() < DEAF_AFTER.as_millis() as u64 || !cache.listening(),
            "a heartbeat sent long ago does not count"
        );
        cache.hear(&cache.heartbeat_payload());
        assert!(cache.listening());
    }

    #[test]
    fn a_verified_token_is_answered_until_an_invalidation() {
        let cache = listening_cache();
        cache.insert([1; 32], principal(), cache.epoch());
        assert_eq!(cache.get(&[1; 32]), Some(principal()));
        assert_eq!(cache.get(&[2; 32]), None);
        cache.hear("changed");
        assert_eq!(cache.get(&[1; 32]), None);
    }

    #[test]
    fn syncs_and_acknowledgements_are_not_changes() {
        let cache = listening_cache();
        cache.insert([1; 32], principal(), cache.epoch());
        assert_eq!(
            cache.hear("sync:x.1").as_deref(),
            Some(format!("ack:x.1:{}", cache.instance).as_str())
        );
        assert_eq!(cache.hear("ack:x.1:y"), None);
        assert_eq!(cache.get(&[1; 32]), Some(principal()));
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
        assert_eq!(cache.get(&[1; 32]), None);
        cache.hear(&cache.heartbeat_payload());
        assert_eq!(cache.get(&[1; 32]), None);
    }

    #[tokio::test]
    async fn settling_without_a_listener_returns_at_once() {
        let cache = listening_cache();
        cache.insert([1; 32], principal(), cache.epoch());
        let started = Instant::now();
        cache.settle().await;
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(cache.get(&[1; 32]), None, "this process forgets at once");
    }
}
