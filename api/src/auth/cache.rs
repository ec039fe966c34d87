//! Validated keys cached in process for a short TTL, so a hot key costs no store query per
//! request. Unknown keys are cached too (as absent), so a well-formed but wrong key cannot
//! make every request hit the store. The cache is bounded ([`CAPACITY`] entries, S3-FIFO
//! eviction by `quick_cache`): a flood of distinct well-formed keys evicts old guesses, not
//! memory, and no insert scans the map.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use switchyard_shared::{
    access::{ApiKeyRow, KeyQuotas, KeyStatus},
    access::{Environment, Scope},
    tenants::Owner,
};

/// What the middleware needs to know about a key.
#[derive(Debug, Clone)]
pub(crate) struct CachedKey {
    pub id: Arc<str>,
    /// The key's display prefix (`sy_live_Ab3x`), for audit entries.
    pub prefix: Arc<str>,
    pub scopes: Arc<[Scope]>,
    /// The rate-limit bucket of the key.
    pub bucket: Arc<str>,
    pub environment: Environment,
    pub rate_limit_per_minute: Option<i64>,
    /// The key's own hour/day/month quotas.
    pub quotas: KeyQuotas,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    /// Why the key is suspended, when it is.
    pub suspended: Option<String>,
    /// The key's tenant, or the platform.
    pub owner: Owner,
    /// Its tenant is deleted: the key no longer works.
    pub tenant_deleted: bool,
}

/// The rate-limit and quota bucket of a key.
pub(crate) fn bucket(key_id: &str) -> String {
    format!("key:{key_id}")
}

impl CachedKey {
    pub(crate) fn from_row(row: &ApiKeyRow, tenant_deleted: bool) -> Self {
        Self {
            id: Arc::from(row.id.as_str()),
            prefix: Arc::from(row.prefix.as_str()),
            scopes: Arc::from(row.scope_list()),
            bucket: Arc::from(bucket(&row.id)),
            environment: row.environment.parse().unwrap_or(Environment::Live),
            rate_limit_per_minute: row.rate_limit_per_minute,
            quotas: row.quotas(),
            expires_at: row.expires_at,
            revoked: row.revoked_at.is_some(),
            suspended: row.suspended_at.map(|_| row.suspended_reason.clone().unwrap_or_default()),
            owner: row.tenant_id.clone(),
            tenant_deleted,
        }
    }

    pub(crate) fn status_at(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            KeyStatus::Expired
        } else if self.suspended.is_some() {
            KeyStatus::Suspended
        } else {
            KeyStatus::Active
        }
    }
}

#[derive(Clone)]
struct Entry {
    at: Instant,
    key: Option<Arc<CachedKey>>,
}

/// Entries kept at most: far more live keys than any deployment has, few enough that a
/// flood of guesses costs a few MiB.
pub(crate) const CAPACITY: usize = 50_000;

/// Keyed by the SHA-256 digest of the presented key.
pub(crate) struct KeyCache {
    ttl: Duration,
    entries: quick_cache::sync::Cache<[u8; 32], Entry>,
}

impl KeyCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, CAPACITY)
    }

    pub(crate) fn with_capacity(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, entries: quick_cache::sync::Cache::new(capacity) }
    }

    /// `Some(entry)` on a fresh hit (the entry itself may say "no such key").
    pub(crate) fn get(&self, digest: &[u8; 32]) -> Option<Option<Arc<CachedKey>>> {
        let entry = self.entries.get(digest)?;
        if entry.at.elapsed() < self.ttl {
            Some(entry.key)
        } else {
            self.entries.remove(digest);
            None
        }
    }

    pub(crate) fn put(&self, digest: [u8; 32], key: Option<Arc<CachedKey>>) {
        self.entries.insert(digest, Entry { at: Instant::now(), key });
    }

    /// Drops every entry of a key (revoked, re-scoped, deleted).
    pub(crate) fn invalidate_id(&self, id: &str) {
        self.entries.retain(|_, e| e.key.as_ref().is_none_or(|k| &*k.id != id));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u64) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&n.to_le_bytes());
        d
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_capacity() {
        let cache = KeyCache::with_capacity(Duration::from_secs(60), 1_000);
        for n in 0..100_000 {
            cache.put(digest(n), None);
        }
        assert!(cache.len() <= 1_000, "{} entries kept", cache.len());
        // The newest guesses are still answered from the cache.
        assert!(matches!(cache.get(&digest(99_999)), Some(None)));
    }

    #[test]
    fn a_hot_key_survives_a_flood_of_one_time_guesses() {
        let cache = KeyCache::with_capacity(Duration::from_secs(60), 1_000);
        let hot = Arc::new(CachedKey {
            id: Arc::from("key_hot"),
            prefix: Arc::from("sy_live_hot0"),
            scopes: Arc::from(Vec::new()),
            bucket: Arc::from("key:key_hot"),
            environment: Environment::Live,
            rate_limit_per_minute: None,
            quotas: KeyQuotas::default(),
            expires_at: None,
            revoked: false,
            suspended: None,
            owner: Owner::Platform,
            tenant_deleted: false,
        });
        cache.put(digest(u64::MAX), Some(Arc::clone(&hot)));
        for n in 0..50_000 {
            cache.put(digest(n), None);
            if n % 100 == 0 {
                assert!(cache.get(&digest(u64::MAX)).is_some_and(|k| k.is_some()), "at {n}");
            }
        }
        cache.invalidate_id("key_hot");
        assert!(cache.get(&digest(u64::MAX)).is_none(), "invalidated");
    }

    #[test]
    fn an_entry_older_than_the_ttl_is_a_miss() {
        let cache = KeyCache::with_capacity(Duration::ZERO, 10);
        cache.put(digest(1), None);
        assert!(cache.get(&digest(1)).is_none());
    }
}
