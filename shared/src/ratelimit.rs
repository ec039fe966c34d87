//! Rate limits by GCRA (the generic cell rate algorithm): smooth, with a burst of at most
//! `burst` requests and then one every `period / count` — no fixed-window edge that lets 2×
//! through. In process for one process; one atomic Redis script for a fleet, so the limit
//! holds across every process sharing the namespace.

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::{Script, aio::ConnectionManager};

use crate::queue::{Queue, QueueBackend};

/// `count` requests per `period`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Quota {
    pub fn per_minute(count: u32) -> Self {
        Self { count: count.max(1), period: Duration::from_secs(60), burst: count.max(1) }
    }

    pub fn per_second(count: u32) -> Self {
        Self { count: count.max(1), period: Duration::from_secs(1), burst: count.max(1) }
    }

    /// Milliseconds between two requests at the sustained rate.
    fn interval_ms(&self) -> f64 {
        self.period.as_secs_f64() * 1000.0 / f64::from(self.count)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The quota's burst (what `X-RateLimit-Limit` reports).
    pub limit: u32,
    /// Requests that could be made right now after this one.
    pub remaining: u32,
    /// Unix seconds when the bucket is full again.
    pub reset_at: u64,
    /// How long until a request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiter: {0}")]
pub struct LimiterError(#[from] redis::RedisError);

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));

/// A bucket's theoretical arrival time (f64 ms as bits; 0 = never used), updated with
/// compare-and-swap so that requests on one key do not queue behind a lock.
type Cell = Arc<AtomicU64>;

enum Backend {
    Local(RwLock<HashMap<String, Cell>>),
    Redis { conn: ConnectionManager, namespace: String },
}

pub struct RateLimiter {
    backend: Backend,
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

/// The GCRA step: from the stored theoretical arrival time, the decision and the new one.
fn gcra(stored_tat: Option<f64>, now: f64, quota: Quota) -> (Decision, Option<f64>) {
    let t = quota.interval_ms();
    let burst = f64::from(quota.burst.max(1));
    let tau = t * (burst - 1.0);
    let tat = stored_tat.unwrap_or(now).max(now);
    let allow_at = tat - tau;
    if now < allow_at {
        let decision = Decision {
            allowed: false,
            limit: quota.burst,
            remaining: 0,
            reset_at: (tat / 1000.0).ceil() as u64,
            retry_after: Duration::from_secs_f64((allow_at - now) / 1000.0),
        };
        return (decision, None);
    }
    let new_tat = tat + t;
    let remaining = (((now - new_tat) / t).floor() + burst).max(0.0) as u32;
    let decision = Decision {
        allowed: true,
        limit: quota.burst,
        remaining,
        reset_at: (new_tat / 1000.0).ceil() as u64,
        retry_after: Duration::ZERO,
    };
    (decision, Some(new_tat))
}

impl RateLimiter {
    pub fn local() -> Self {
        Self { backend: Backend::Local(RwLock::new(HashMap::new())) }
    }

    pub fn redis(conn: ConnectionManager, namespace: &str) -> Self {
        Self { backend: Backend::Redis { conn, namespace: namespace.to_owned() } }
    }

    /// Shared through Redis in fleet mode, in process otherwise.
    pub fn for_queue(queue: &Queue) -> Self {
        match queue.backend() {
            QueueBackend::Redis(r) => Self::redis(r.connection(), r.namespace()),
            QueueBackend::Sqlite(_) => Self::local(),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis { .. })
    }

    /// Counts one request against `key` and says whether it may go ahead.
    #[crate::boxed]
    pub async fn check(&self, key: &str, quota: Quota) -> Result<Decision, LimiterError> {
        match &self.backend {
            Backend::Local(map) => {
                let now = now_ms();
                let existing = map.read().expect("rate limiter lock").get(key).cloned();
                let cell = match existing {
                    Some(cell) => cell,
                    None => {
                        let mut map = map.write().expect("rate limiter lock");
                        if map.len() >= 100_000 {
                            // Buckets in the past are full: forgetting them changes nothing.
                            map.retain(|_, c| f64::from_bits(c.load(Ordering::Relaxed)) > now);
                        }
                        Arc::clone(map.entry(key.to_owned()).or_default())
                    }
                };
                loop {
                    let current = cell.load(Ordering::Acquire);
                    let stored = (current != 0).then(|| f64::from_bits(current));
                    let (decision, new_tat) = gcra(stored, now, quota);
                    let Some(tat) = new_tat else { return Ok(decision) };
                    if cell
                        .compare_exchange(
                            current,
                            tat.to_bits(),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        return Ok(decision);
                    }
                }
            }
            Backend::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                let (allowed, remaining, reset_ms, retry_ms): (i64, i64, i64, i64) = GCRA
                    .key(format!("{namespace}:rl:{key}"))
                    .arg(quota.interval_ms())
                    .arg(quota.burst.max(1))
                    .invoke_async(&mut conn)
                    .await?;
                Ok(Decision {
                    allowed: allowed == 1,
                    limit: quota.burst,
                    remaining: remaining.max(0) as u32,
                    reset_at: (reset_ms.max(0) as u64).div_ceil(1000),
                    retry_after: Duration::from_millis(retry_ms.max(0) as u64),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_the_burst_then_the_sustained_rate() {
        let quota = Quota::per_minute(6); // one every 10 s, burst 6
        let mut tat = None;
        let now = 1_000_000.0;
        for i in 0..6 {
            let (d, new) = gcra(tat, now, quota);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 5 - i);
            tat = new;
        }
        let (d, new) = gcra(tat, now, quota);
        assert!(!d.allowed);
        assert!(new.is_none());
        assert_eq!(d.retry_after, Duration::from_secs(10));
        // Ten seconds later exactly one more.
        let (d, new) = gcra(tat, now + 10_000.0, quota);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let (d, _) = gcra(new, now + 10_000.0, quota);
        assert!(!d.allowed);
    }

    #[test]
    fn no_window_edge_lets_twice_the_limit_through() {
        // A fixed window would allow 6 at 59.9 s and 6 more at 60.1 s; GCRA allows 6, then
        // one per 10 s, whatever the phase.
        let quota = Quota::per_minute(6);
        let (mut tat, start) = (None, 0.0);
        let mut allowed = 0;
        let mut t = start;
        while t <= start + 20_000.0 {
            let (d, new) = gcra(tat, t, quota);
            if d.allowed {
                allowed += 1;
                tat = new;
            }
            t += 100.0;
        }
        assert_eq!(allowed, 6 + 2, "burst, then one at 10 s and one at 20 s");
    }

    #[tokio::test]
    async fn local_limiter_counts_per_key() {
        let limiter = RateLimiter::local();
        let quota = Quota::per_minute(2);
        assert!(limiter.check("a", quota).await.unwrap().allowed);
        assert!(limiter.check("a", quota).await.unwrap().allowed);
        let d = limiter.check("a", quota).await.unwrap();
        assert!(!d.allowed && d.retry_after > Duration::from_secs(29));
        assert!(limiter.check("b", quota).await.unwrap().allowed);
    }
}
