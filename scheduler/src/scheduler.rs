//! The scheduler loop: keep (or try for) the leader lease, run whatever schedule is due,
//! sleep until the next tick or lease renewal, and sample queue depth on the side.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use switchyard_shared::{
    CancellationToken, config::ConfigError, schedules::ScheduleName, services::Services, telemetry,
};

use crate::{
    actions,
    depth::sample_queue_depth,
    leader::Leader,
    ticks::{Due, next_due},
};

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
}

struct Entry {
    name: ScheduleName,
    cron: cron::Schedule,
}

pub struct Scheduler {
    services: Services,
    entries: Vec<Entry>,
    leader: Leader,
    ttl: Duration,
    is_leader: Arc<AtomicBool>,
}

impl Scheduler {
    /// Parses every enabled schedule (a bad expression is refused here, by setting name).
    pub fn new(services: Services) -> Result<Self, SchedulerError> {
        let config = &services.config;
        let mut entries = Vec::new();
        for name in ScheduleName::ALL {
            let Some(expr) = config.schedule_expr(name) else {
                tracing::info!(schedule = %name, "schedule switched off");
                continue;
            };
            if name == ScheduleName::PidmsDailySync && config.pidkey.api_key.is_none() {
                tracing::info!(schedule = %name, "schedule off: PIDKEY_API_KEY is not set");
                continue;
            }
            if name == ScheduleName::SikkaTokenRefresh && !config.sikka.has_credentials() {
                tracing::info!(schedule = %name, "schedule off: SIKKA_APP_ID/SIKKA_APP_KEY are not set");
                continue;
            }
            let cron = switchyard_shared::schedules::parse_cron(&expr).map_err(|e| {
                ConfigError::Invalid { setting: name.env_var(), message: e.to_string() }
            })?;
            entries.push(Entry { name, cron });
        }
        let holder = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "scheduler".into()),
            std::process::id(),
            ulid::Ulid::generate()
        );
        let ttl = Duration::from_secs(config.scheduler.leader_ttl_secs);
        let leader = Leader::new(&services, holder);
        Ok(Self { services, entries, leader, ttl, is_leader: Arc::new(AtomicBool::new(false)) })
    }

    /// True while this scheduler holds the lease (tests and `/readyz` details read it).
    pub fn leader_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.is_leader)
    }

    /// Runs until `shutdown` is cancelled, then gives the lease up.
    #[switchyard_shared::boxed]
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            holder = self.leader.holder(),
            schedules = ?self.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            "scheduler starting"
        );
        for entry in &self.entries {
            // The gap between the next two ticks: alerts compare a schedule's last success
            // with it ("late by twice its interval") without knowing any cron.
            let mut ticks = entry.cron.upcoming(Utc);
            if let (Some(a), Some(b)) = (ticks.next(), ticks.next()) {
                metrics::gauge!(telemetry::SCHEDULE_INTERVAL, "schedule" => entry.name.as_str())
                    .set((b - a).num_seconds() as f64);
            }
            for outcome in ["success", "failure"] {
                // Registered at zero so that rates and alerts see the series from the start.
                metrics::counter!(telemetry::SCHEDULE_RUNS,
                    "schedule" => entry.name.as_str(), "outcome" => outcome)
                .increment(0);
            }
        }
        let sampler = self.spawn_depth_sampler(shutdown.clone());
        let renew_every = self.ttl / 3;
        loop {
            let leading = self.leader.try_lead(self.ttl).await;
            if leading != self.is_leader.swap(leading, Ordering::SeqCst) {
                tracing::info!(holder = self.leader.holder(), leading, "leadership changed");
            }
            metrics::gauge!(telemetry::SCHEDULER_IS_LEADER).set(if leading { 1.0 } else { 0.0 });

            let mut wake = Utc::now() + chrono::Duration::from_std(renew_every).unwrap_or_default();
            if leading {
                self.run_requested().await;
                if let Some(next) = self.run_due().await {
                    wake = wake.min(next);
                }
            }
            self.export_last_success().await;

            let sleep = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(sleep) => {}
            }
        }
        if self.is_leader.swap(false, Ordering::SeqCst) {
            self.leader.release().await;
            metrics::gauge!(telemetry::SCHEDULER_IS_LEADER).set(0.0);
        }
        sampler.abort();
        tracing::info!("scheduler stopped");
    }

    /// Runs every due schedule once; returns the earliest time one is due next.
    async fn run_due(&self) -> Option<DateTime<Utc>> {
        let mut next: Option<DateTime<Utc>> = None;
        for entry in &self.entries {
            let name = entry.name.as_str();
            let last = match self.services.store.schedule_state(name).await {
                Ok(state) => state.map(|s| s.last_tick_at),
                Err(error) => {
                    tracing::warn!(schedule = name, %error, "cannot read schedule state");
                    continue;
                }
            };
            let now = Utc::now();
            match next_due(&entry.cron, last, now) {
                Due::Wait(at) => next = Some(next.map_or(at, |n| n.min(at))),
                Due::Adopt(tick) => {
                    if let Err(error) = self.services.store.claim_schedule_tick(name, tick).await {
                        tracing::warn!(schedule = name, %error, "cannot record schedule");
                    }
                    next = Some(now);
                }
                Due::Run(tick) => {
                    self.run_tick(entry.name, tick).await;
                    // Look again at once: the next decision will be a Wait.
                    next = Some(now);
                }
            }
        }
        next
    }

    async fn run_tick(&self, name: ScheduleName, tick: DateTime<Utc>) {
        let store = &self.services.store;
        match store.claim_schedule_tick(name.as_str(), tick).await {
            Ok(true) => {}
            Ok(false) => return, // another scheduler ran it
            Err(error) => {
                tracing::warn!(schedule = %name, %error, "cannot claim tick");
                return;
            }
        }
        self.run_schedule(name, &tick.to_rfc3339()).await;
    }

    /// Runs the schedules asked for through the API (`POST /schedules/{name}/run`), whether
    /// or not their cron is switched on; each request is taken once.
    async fn run_requested(&self) {
        let states = match self.services.store.schedule_states().await {
            Ok(states) => states,
            Err(error) => {
                tracing::warn!(%error, "cannot read schedule requests");
                return;
            }
        };
        for state in states {
            let (Some(at), Ok(name)) = (state.run_requested_at, state.name.parse::<ScheduleName>())
            else {
                continue;
            };
            match self.services.store.take_schedule_request(name.as_str(), at).await {
                Ok(true) => self.run_schedule(name, "requested").await,
                Ok(false) => {}
                Err(error) => tracing::warn!(schedule = %name, %error, "cannot take a request"),
            }
        }
    }

    /// Runs one schedule's action and records how it went.
    async fn run_schedule(&self, name: ScheduleName, why: &str) {
        let store = &self.services.store;
        let result = actions::enqueue(&self.services, name).await;
        let outcome = if result.is_ok() { "success" } else { "failure" };
        match &result {
            Ok(()) => tracing::info!(schedule = %name, tick = why, "schedule ran"),
            Err(error) => tracing::warn!(schedule = %name, tick = why, %error, "schedule failed"),
        }
        metrics::counter!(telemetry::SCHEDULE_RUNS, "schedule" => name.as_str(), "outcome" => outcome)
            .increment(1);
        if let Err(error) = store.record_schedule_run(name.as_str(), result, Utc::now()).await {
            tracing::warn!(schedule = %name, %error, "cannot record schedule run");
        }
    }

    /// Every replica exports the last success from the store, so the gauge survives a
    /// change of leader.
    async fn export_last_success(&self) {
        let Ok(states) = self.services.store.schedule_states().await else { return };
        for state in states {
            if let Some(at) = state.last_success_at {
                metrics::gauge!(telemetry::SCHEDULE_LAST_SUCCESS, "schedule" => state.name)
                    .set(at.timestamp() as f64);
            }
        }
    }

    fn spawn_depth_sampler(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let services = self.services.clone();
        let every = Duration::from_secs(services.config.queue_depth_sample_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => sample_queue_depth(&services).await,
                }
            }
        })
    }
}
