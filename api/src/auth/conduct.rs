//! Automatic suspension: a key refused for missing scopes `N` times within the window, or
//! kept over its limit (every request a 429) for the whole window, is suspended — in the
//! store with its audit entry, announced as `api_key.suspended` to platform endpoints,
//! counted, and forgotten by every API process's cache. Counted per API process.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use switchyard_shared::{
    audit::{Actor, AuditEntry},
    telemetry,
    tenants::Owner,
    webhooks::events::{self, Audience},
};

use super::{Authenticator, CachedKey};

#[derive(Default)]
struct Record {
    refusals: VecDeque<Instant>,
    /// Since when every request of the key has been over its limit.
    over_since: Option<Instant>,
}

/// What a response says about its key's conduct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    ScopeRefused,
    OverLimit,
    Fine,
}

pub(crate) struct Conduct {
    refusals: u32,
    window: Duration,
    records: Mutex<HashMap<Arc<str>, Record>>,
    /// Whether any key is being followed: a well-behaved request takes no lock.
    following: AtomicBool,
}

/// Keys followed at most (the oldest are forgotten first when full).
const MAX_KEYS: usize = 10_000;

impl Conduct {
    pub(crate) fn new(refusals: u32, window_secs: u64) -> Self {
        Self {
            refusals,
            window: Duration::from_secs(window_secs),
            records: Mutex::new(HashMap::new()),
            following: AtomicBool::new(false),
        }
    }

    fn off(&self) -> bool {
        self.window.is_zero()
    }

    /// Notes what a response said; `Some(reason)` when the key is to be suspended now.
    pub(crate) fn note(&self, key: &Arc<str>, seen: Seen) -> Option<String> {
        if self.off() || (seen == Seen::Fine && !self.following.load(Ordering::Relaxed)) {
            return None;
        }
        let mut records = self.records.lock().expect("conduct lock");
        if seen == Seen::Fine {
            // The common case: nothing to forget unless the key was being followed.
            if let Some(r) = records.get_mut(key) {
                r.over_since = None;
                if r.refusals.is_empty() {
                    records.remove(key);
                }
            }
            self.following.store(!records.is_empty(), Ordering::Relaxed);
            return None;
        }
        if records.len() >= MAX_KEYS && !records.contains_key(key) {
            records.clear();
        }
        let now = Instant::now();
        self.following.store(true, Ordering::Relaxed);
        let record = records.entry(Arc::clone(key)).or_default();
        let reason = match seen {
            Seen::ScopeRefused if self.refusals > 0 => {
                record.refusals.push_back(now);
                while record.refusals.front().is_some_and(|t| now - *t > self.window) {
                    record.refusals.pop_front();
                }
                (record.refusals.len() >= self.refusals as usize).then(|| {
                    format!(
                        "refused for missing scopes {} times within {} s",
                        record.refusals.len(),
                        self.window.as_secs()
                    )
                })
            }
            Seen::OverLimit => {
                let since = *record.over_since.get_or_insert(now);
                (now - since >= self.window)
                    .then(|| format!("kept over its rate limit for {} s", self.window.as_secs()))
            }
            _ => None,
        };
        if reason.is_some() {
            records.remove(key);
        }
        reason
    }
}

impl Authenticator {
    /// Suspends a key (once), announces it and makes every process forget it.
    pub(crate) async fn suspend(&self, key: &CachedKey, reason: &str, actor: &Actor) {
        let audit = AuditEntry::new(actor, &key.owner, "api_key.suspended", "api_key")
            .target(key.id.to_string())
            .outcome("suspended")
            .detail(reason);
        match self.services.store.suspend_api_key(&key.id, reason, Utc::now(), &audit).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, key_id = %key.id, "could not suspend a key");
                return;
            }
        }
        metrics::counter!(telemetry::API_KEYS_SUSPENDED).increment(1);
        tracing::warn!(key_id = %key.id, prefix = %key.prefix, reason, "api key suspended");
        self.key_changed(&key.id).await;
        let data = serde_json::json!({
            "key_id": key.id.as_ref(),
            "prefix": key.prefix.as_ref(),
            "tenant_id": key.owner.tenant_id().map(|t| t.as_str()),
            "reason": reason,
        });
        let published = events::publish(
            &self.services,
            &Owner::Platform,
            "api_key.suspended",
            &data,
            Some("system"),
            Audience::Subscribers,
        )
        .await;
        if let Err(error) = published {
            tracing::warn!(%error, "could not publish api_key.suspended");
        }
    }
}
