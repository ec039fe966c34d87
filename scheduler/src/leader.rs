//! One leader at a time: a Redis lease with renewal in fleet mode, a lease row in the store
//! otherwise (so even several embedded schedulers over one SQLite file agree).

use std::{sync::LazyLock, time::Duration};

use redis::{Script, aio::ConnectionManager};
use switchyard_shared::{queue::QueueBackend, services::Services, store::Store};

/// Takes the lease if it is free or ours, and extends it.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local cur = redis.call('GET', KEYS[1])
          if cur == false then
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            return 1
          end
          if cur == ARGV[1] then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
          end
          return 0",
    )
});

/// Deletes the lease only if it is still ours.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
          end
          return 0",
    )
});

const LEASE_NAME: &str = "scheduler-leader";

pub(crate) enum Leader {
    Redis { conn: ConnectionManager, key: String, holder: String },
    Store { store: Store, holder: String },
}

impl Leader {
    pub(crate) fn new(services: &Services, holder: String) -> Self {
        match services.queue.backend() {
            QueueBackend::Redis(redis) => Leader::Redis {
                conn: redis.connection(),
                key: format!("{}:{LEASE_NAME}", redis.namespace()),
                holder,
            },
            QueueBackend::Sqlite(_) => Leader::Store { store: services.store.clone(), holder },
        }
    }

    pub(crate) fn holder(&self) -> &str {
        match self {
            Leader::Redis { holder, .. } | Leader::Store { holder, .. } => holder,
        }
    }

    /// Takes or renews the lease for `ttl`. An error counts as not leading: stepping down
    /// when the lock cannot be checked is the safe side.
    pub(crate) async fn try_lead(&self, ttl: Duration) -> bool {
        let result = match self {
            Leader::Redis { conn, key, holder } => {
                let mut conn = conn.clone();
                ACQUIRE
                    .key(key)
                    .arg(holder)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map(|n| n == 1)
                    .map_err(|e| e.to_string())
            }
            Leader::Store { store, holder } => {
                let now = chrono::Utc::now();
                let until = now + chrono::Duration::from_std(ttl).unwrap_or_default();
                store
                    .try_acquire_lease(LEASE_NAME, holder, now, until)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        result.unwrap_or_else(|error| {
            tracing::warn!(%error, "leader lock check failed; not leading");
            false
        })
    }

    /// Gives the lease up so another scheduler takes over at once.
    pub(crate) async fn release(&self) {
        let result = match self {
            Leader::Redis { conn, key, holder } => {
                let mut conn = conn.clone();
                RELEASE
                    .key(key)
                    .arg(holder)
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Leader::Store { store, holder } => {
                store.release_lease(LEASE_NAME, holder).await.map_err(|e| e.to_string())
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not release the leader lock; it will expire");
        }
    }
}
