//! Repeated authentication failures from one address become one audit entry per window
//! (`auth.failures`, a security event): the count, why they failed, the last user agent.
//! Tallied per API process and written when the window ends, so a flood of guesses costs
//! one row per address per window rather than one per request.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use switchyard_shared::{
    audit::{Actor, AuditEntry},
    store::Store,
    tenants::Owner,
};

/// Addresses tallied at most per window; failures from more are only counted in the metric.
const MAX_ADDRESSES: usize = 10_000;

struct Tally {
    total: u32,
    reasons: BTreeMap<&'static str, u32>,
    user_agent: Option<String>,
    request_id: Option<String>,
}

pub(crate) struct FailureLog {
    /// Failures from one address within a window that make an entry (0: never).
    threshold: u32,
    window_secs: u64,
    tallies: Mutex<HashMap<String, Tally>>,
}

impl FailureLog {
    pub(crate) fn new(threshold: u32, window_secs: u64) -> Self {
        Self { threshold, window_secs, tallies: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.window_secs.max(1))
    }

    pub(crate) fn note(
        &self,
        addr: Option<&str>,
        reason: &'static str,
        user_agent: Option<&str>,
        request_id: Option<&str>,
    ) {
        if self.threshold == 0 {
            return;
        }
        let addr = addr.unwrap_or("unknown");
        let mut tallies = self.tallies.lock().expect("failure log lock");
        if tallies.len() >= MAX_ADDRESSES && !tallies.contains_key(addr) {
            return;
        }
        let tally = tallies.entry(addr.to_owned()).or_insert_with(|| Tally {
            total: 0,
            reasons: BTreeMap::new(),
            user_agent: None,
            request_id: None,
        });
        tally.total += 1;
        *tally.reasons.entry(reason).or_default() += 1;
        tally.user_agent = user_agent.map(|u| u.chars().take(256).collect());
        tally.request_id = request_id.map(str::to_owned);
    }

    /// Ends the window: one entry for each address that failed at least `threshold` times.
    pub(crate) async fn flush(&self, store: &Store) {
        let tallies = std::mem::take(&mut *self.tallies.lock().expect("failure log lock"));
        for (addr, tally) in tallies {
            if tally.total < self.threshold {
                continue;
            }
            let reasons: Vec<String> =
                tally.reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let actor = Actor {
                client_addr: Some(addr.clone()),
                user_agent: tally.user_agent,
                request_id: tally.request_id,
                ..Actor::default()
            };
            let entry =
                AuditEntry::new(&actor, &Owner::Platform, "auth.failures", "client_address")
                    .target(addr.as_str())
                    .outcome("refused")
                    .detail(format!(
                        "{} failed authentications within {} s ({})",
                        tally.total,
                        self.window_secs,
                        reasons.join(", ")
                    ));
            if let Err(error) = store.insert_audit(&entry).await {
                tracing::warn!(%error, client_addr = %addr, "could not write an auth.failures entry");
            }
        }
    }
}
