//! Quotas over UTC calendar windows — so many requests per hour, day or month, reset on the
//! hour, at midnight UTC, on the 1st — beside the per-minute GCRA of [`crate::ratelimit`].
//! In process when embedded; one atomic Redis script (`quotas.lua`, on Redis' clock) for a
//! fleet, so every API process counts against the same windows. A request is taken from
//! every window of a key or from none.

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

use chrono::{DateTime, Datelike, TimeZone, Utc};
use redis::{Script, aio::ConnectionManager};

use crate::{
    queue::{Queue, QueueBackend},
    ratelimit::LimiterError,
};

crate::text_enum! {
    /// A calendar window of a quota (the name a refusal and a key's view use).
    pub enum Window {
        PerHour = "per_hour",
        PerDay = "per_day",
        PerMonth = "per_month",
    }
}

impl Window {
    /// `[start, end)` of the window holding `now`, in unix seconds (UTC).
    pub fn bounds(self, now: i64) -> (i64, i64) {
        match self {
            Self::PerHour => {
                let s = now - now.rem_euclid(3600);
                (s, s + 3600)
            }
            Self::PerDay => {
                let s = now - now.rem_euclid(86_400);
                (s, s + 86_400)
            }
            Self::PerMonth => {
                let at = DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default();
                let (y, m) = (at.year(), at.month());
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let first = |y, m| Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap().timestamp();
                (first(y, m), first(ny, nm))
            }
        }
    }
}

/// A window's limit on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimit {
    pub window: Window,
    pub limit: u64,
}

/// Where a window stands for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub window: Window,
    pub limit: u64,
    pub used: u64,
    /// Unix seconds when the window starts again from zero.
    pub resets_at: i64,
}

impl WindowState {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// The answer for one request: every window after it, or the window that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaDecision {
    Allowed(Vec<WindowState>),
    Refused(WindowState),
}

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("quotas.lua")));

enum Backend {
    /// (bucket, window) → (window start, used).
    Local(Mutex<HashMap<(String, Window), (i64, u64)>>),
    Redis {
        conn: ConnectionManager,
        namespace: String,
    },
}

/// Counts requests against windows.
pub struct QuotaCounter {
    backend: Backend,
    /// Unix seconds to use instead of the clock (0: the clock): tests move time with it.
    clock: Arc<AtomicI64>,
}

impl QuotaCounter {
    pub fn local() -> Self {
        Self { backend: Backend::Local(Mutex::new(HashMap::new())), clock: Arc::default() }
    }

    pub fn redis(conn: ConnectionManager, namespace: &str) -> Self {
        let backend = Backend::Redis { conn, namespace: namespace.to_owned() };
        Self { backend, clock: Arc::default() }
    }

    /// Shared through Redis in fleet mode, in process otherwise.
    pub fn for_queue(queue: &Queue) -> Self {
        match queue.backend() {
            QueueBackend::Redis(r) => Self::redis(r.connection(), r.namespace()),
            QueueBackend::Sqlite(_) => Self::local(),
        }
    }

    /// The clock this counter reads: set it (unix seconds) to move time, 0 for the real one.
    pub fn clock(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.clock)
    }

    fn now(&self) -> i64 {
        match self.clock.load(Ordering::Relaxed) {
            0 => Utc::now().timestamp(),
            t => t,
        }
    }

    /// Takes one request from every window of `bucket`, or refuses naming the first window
    /// that is used up.
    #[crate::boxed]
    pub async fn take(
        &self,
        bucket: &str,
        limits: &[WindowLimit],
    ) -> Result<QuotaDecision, LimiterError> {
        self.run(bucket, limits, true).await
    }

    /// Where every window of `bucket` stands, taking nothing.
    #[crate::boxed]
    pub async fn peek(
        &self,
        bucket: &str,
        limits: &[WindowLimit],
    ) -> Result<Vec<WindowState>, LimiterError> {
        match self.run(bucket, limits, false).await? {
            QuotaDecision::Allowed(states) => Ok(states),
            QuotaDecision::Refused(state) => Ok(vec![state]),
        }
    }

    async fn run(
        &self,
        bucket: &str,
        limits: &[WindowLimit],
        take: bool,
    ) -> Result<QuotaDecision, LimiterError> {
        if limits.is_empty() {
            return Ok(QuotaDecision::Allowed(Vec::new()));
        }
        match &self.backend {
            Backend::Local(map) => {
                let now = self.now();
                let mut map = map.lock().expect("quota lock");
                if map.len() >= 100_000 {
                    // Windows that have ended count nothing.
                    map.retain(|(_, w), (start, _)| w.bounds(now).0 == *start);
                }
                let states: Vec<WindowState> = limits
                    .iter()
                    .map(|l| {
                        let (start, end) = l.window.bounds(now);
                        let used = map
                            .get(&(bucket.to_owned(), l.window))
                            .filter(|(s, _)| *s == start)
                            .map_or(0, |(_, used)| *used);
                        WindowState { window: l.window, limit: l.limit, used, resets_at: end }
                    })
                    .collect();
                if !take {
                    return Ok(QuotaDecision::Allowed(states));
                }
                if let Some(full) = states.iter().find(|s| s.used >= s.limit) {
                    return Ok(QuotaDecision::Refused(*full));
                }
                let mut after = states;
                for s in &mut after {
                    s.used += 1;
                    let start = s.window.bounds(now).0;
                    map.insert((bucket.to_owned(), s.window), (start, s.used));
                }
                Ok(QuotaDecision::Allowed(after))
            }
            Backend::Redis { conn, namespace } => {
                let mut invocation = SCRIPT.prepare_invoke();
                for l in limits {
                    invocation.key(format!("{namespace}:quota:{bucket}:{}", l.window));
                }
                invocation.arg(self.clock.load(Ordering::Relaxed)).arg(i32::from(take));
                for l in limits {
                    invocation.arg(l.window.as_str()).arg(l.limit);
                }
                let mut conn = conn.clone();
                let out: Vec<i64> = invocation.invoke_async(&mut conn).await?;
                let refused = out.first().copied().unwrap_or(0);
                let states: Vec<WindowState> = limits
                    .iter()
                    .enumerate()
                    .map(|(i, l)| WindowState {
                        window: l.window,
                        limit: l.limit,
                        used: out.get(1 + 2 * i).copied().unwrap_or(0).max(0) as u64,
                        resets_at: out.get(2 + 2 * i).copied().unwrap_or(0),
                    })
                    .collect();
                match usize::try_from(refused).ok().filter(|i| *i > 0) {
                    Some(i) => Ok(QuotaDecision::Refused(states[i - 1])),
                    None => Ok(QuotaDecision::Allowed(states)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn windows_are_utc_calendar_windows() {
        let now = at("2024-02-29T23:59:59Z");
        assert_eq!(
            Window::PerHour.bounds(now),
            (at("2024-02-29T23:00:00Z"), at("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            Window::PerDay.bounds(now),
            (at("2024-02-29T00:00:00Z"), at("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            Window::PerMonth.bounds(now),
            (at("2024-02-01T00:00:00Z"), at("2024-03-01T00:00:00Z"))
        );
        let dec = at("2026-12-31T12:00:00Z");
        assert_eq!(
            Window::PerMonth.bounds(dec),
            (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            Window::PerHour.bounds(at("2026-01-01T00:00:00Z")).0,
            at("2026-01-01T00:00:00Z")
        );
    }
}
