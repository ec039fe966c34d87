//! Validated keys cached in process for a short TTL, so a hot key costs no store query per
//! request. Unknown keys are cached too (as absent), so a well-formed but wrong key cannot
//! make every request hit the store.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use switchyard_shared::{
    apikeys::{Environment, Scope},
    store::{ApiKeyRow, KeyStatus},
};

/// What the middleware needs to know about a key.
#[derive(Debug, Clone)]
pub(crate) struct CachedKey {
    pub id: Arc<str>,
    pub scopes: Arc<[Scope]>,
    /// The rate-limit bucket of the key.
    pub bucket: Arc<str>,
    pub environment: Environment,
    pub rate_limit_per_minute: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

impl CachedKey {
    pub(crate) fn from_row(row: &ApiKeyRow) -> Self {
        Self {
            id: Arc::from(row.id.as_str()),
            scopes: Arc::from(row.scope_list()),
            bucket: Arc::from(format!("key:{}", row.id)),
            environment: row.environment.parse().unwrap_or(Environment::Live),
            rate_limit_per_minute: row.rate_limit_per_minute,
            expires_at: row.expires_at,
            revoked: row.revoked_at.is_some(),
        }
    }

    pub(crate) fn status_at(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

struct Entry {
    at: Instant,
    key: Option<Arc<CachedKey>>,
}

/// Keyed by the SHA-256 digest of the presented key.
pub(crate) struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<[u8; 32], Entry>>,
}

/// Beyond this many entries, expired ones are swept before inserting.
const SWEEP_AT: usize = 50_000;

impl KeyCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::new(HashMap::new()) }
    }

    /// `Some(entry)` on a fresh hit (the entry itself may say "no such key").
    pub(crate) fn get(&self, digest: &[u8; 32]) -> Option<Option<Arc<CachedKey>>> {
        let entries = self.entries.read().expect("key cache lock");
        entries.get(digest).filter(|e| e.at.elapsed() < self.ttl).map(|e| e.key.clone())
    }

    pub(crate) fn put(&self, digest: [u8; 32], key: Option<Arc<CachedKey>>) {
        let mut entries = self.entries.write().expect("key cache lock");
        if entries.len() >= SWEEP_AT {
            let ttl = self.ttl;
            entries.retain(|_, e| e.at.elapsed() < ttl);
        }
        entries.insert(digest, Entry { at: Instant::now(), key });
    }

    /// Drops every entry of a key (revoked, re-scoped, deleted).
    pub(crate) fn invalidate_id(&self, id: &str) {
        let mut entries = self.entries.write().expect("key cache lock");
        entries.retain(|_, e| e.key.as_ref().is_none_or(|k| &*k.id != id));
    }
}
