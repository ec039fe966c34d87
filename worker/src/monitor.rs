//! One apalis worker per queue, registered in a `Monitor` that restarts a worker (under a
//! fresh name) after a backend error and, on shutdown, stops fetching and lets in-flight
//! jobs finish within the grace period.

use std::{sync::Arc, time::Duration};

use apalis::prelude::{BackendExt, Monitor, WorkerBuilder, WorkerBuilderExt};
use switchyard_shared::{
    CancellationToken,
    queue::{QueueBackend, QueueName, StorageTuning},
    services::Services,
    telemetry,
};

use crate::{
    handlers::{JobDeps, dispatch},
    metrics_layer::{Inflight, JobMetricsLayer},
    wake::WakeStrategy,
};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("workers stopped with an error: {0}")]
    Monitor(String),
}

/// What this worker process consumes and how hard it works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queues: Vec<QueueName>,
    /// Jobs run at once, per queue.
    pub concurrency: usize,
    /// Webhook deliveries that may wait for their endpoint's slot besides those running.
    pub webhook_waiting: usize,
    /// The safety-net poll: workers are woken by pushes, and ask anyway this often.
    pub poll_interval: Duration,
    pub job_timeout: Duration,
    pub grace: Duration,
    pub tuning: StorageTuning,
}

impl WorkerOptions {
    pub fn from_config(config: &switchyard_shared::config::Config) -> Self {
        let w = &config.worker;
        Self {
            queues: w.queues.clone(),
            concurrency: w.concurrency,
            webhook_waiting: config.webhooks.waiting,
            poll_interval: Duration::from_millis(w.poll_interval_ms),
            job_timeout: Duration::from_secs(w.job_timeout_secs),
            grace: config.shutdown_grace(),
            tuning: StorageTuning::from_config(config),
        }
    }
}

impl WorkerOptions {
    /// Jobs a queue's worker holds at once. Webhook deliveries waiting in order for their
    /// endpoint's slot hold a job but no connection: they get room of their own, so that
    /// waiting never stops other endpoints' deliveries from being fetched.
    fn room(&self, queue: QueueName) -> usize {
        match queue {
            QueueName::Webhooks => self.concurrency + self.webhook_waiting,
            _ => self.concurrency,
        }
    }
}

/// A worker name unique to this process and restart, so a restarted Redis worker is not
/// refused as "still active" under its old name.
fn worker_name(queue: QueueName, restarts: usize, instance: &str) -> String {
    format!("{queue}-{instance}-r{restarts}")
}

/// Builds one worker over a backend. A macro rather than a function: the bounds apalis puts
/// on a generic worker factory would be longer than the body.
macro_rules! build_worker {
    ($name:expr, $backend:expr, $wake:expr, $opts:expr, $queue:expr, $inflight:expr, $deps:expr) => {
        WorkerBuilder::new($name)
            .backend($backend.poll_with_strategy(WakeStrategy::new(
                Arc::clone($wake),
                $queue,
                $opts.poll_interval,
            )))
            .concurrency($opts.room($queue))
            .layer(JobMetricsLayer::new($queue, $inflight))
            .timeout($opts.job_timeout)
            .catch_panic()
            .data($deps)
            .build(dispatch)
    };
}

/// Counters that alerts take `increase()` of are registered at zero, so the first event after
/// a start counts (an increase from "no series" to 1 is not seen) and dashboards show 0, not
/// "no data".
fn register_counters() {
    for name in [
        telemetry::WORKER_RESTARTS,
        telemetry::WEBHOOK_BLOCKED,
        telemetry::WEBHOOK_DEFERRED,
        telemetry::PIDMS_KEYS_CHECKED,
    ] {
        metrics::counter!(name).increment(0);
    }
    for reason in ["gone", "failing"] {
        metrics::counter!(telemetry::WEBHOOK_ENDPOINTS_DISABLED, "reason" => reason).increment(0);
    }
    for upstream in ["pidkey", "sikka"] {
        metrics::counter!(telemetry::UPSTREAM_RATE_LIMITED, "upstream" => upstream).increment(0);
    }
    for outcome in ["refreshed", "new_key", "refresh_refused", "reauthorization_required", "error"]
    {
        metrics::counter!(telemetry::SIKKA_TOKEN_REFRESH, "outcome" => outcome).increment(0);
    }
    for outcome in ["completed", "failed", "stuck"] {
        metrics::counter!(telemetry::SIKKA_WRITEBACKS, "outcome" => outcome).increment(0);
    }
}

/// Runs workers for `opts.queues` until `shutdown` is cancelled, then waits up to the grace
/// period for in-flight jobs.
#[switchyard_shared::boxed]
pub async fn run(
    services: Services,
    opts: WorkerOptions,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let deps = Arc::new(JobDeps {
        services: services.clone(),
        webhooks: crate::webhooks::Webhooks::new(&services, shutdown.clone()),
        pidkey: crate::pidms::client(&services),
        sikka: crate::sikka::Sikka::new(&services),
    });
    register_counters();
    let unparker = opts
        .queues
        .contains(&QueueName::Webhooks)
        .then(|| tokio::spawn(crate::webhooks::unpark(Arc::clone(&deps))));
    let instance = format!("{}-{}", std::process::id(), &ulid::Ulid::generate().to_string()[20..]);
    let mut monitor = Monitor::new()
        .should_restart(|ctx, err| {
            tracing::warn!(worker = ctx.name(), error = %err, "worker stopped; restarting");
            metrics::counter!(telemetry::WORKER_RESTARTS).increment(1);
            true
        })
        .shutdown_timeout(opts.grace);

    let mut samplers = Vec::new();
    for queue in opts.queues.iter().copied() {
        let inflight = Arc::new(Inflight::default());
        samplers.push((queue, Arc::clone(&inflight)));
        metrics::gauge!(telemetry::WORKER_CONCURRENCY_LIMIT, "queue" => queue.as_str())
            .set(opts.concurrency as f64);
        metrics::gauge!(telemetry::WORKER_INFLIGHT, "queue" => queue.as_str()).set(0.0);
        let deps = Arc::clone(&deps);
        let opts = opts.clone();
        let instance = instance.clone();
        let wake = Arc::clone(services.queue.wakeups());
        monitor = match services.queue.backend().clone() {
            QueueBackend::Sqlite(pool) => monitor.register(move |restarts| {
                let storage = switchyard_shared::queue::sqlite_storage(&pool, queue, &opts.tuning);
                build_worker!(
                    worker_name(queue, restarts, &instance),
                    storage,
                    &wake,
                    opts,
                    queue,
                    Arc::clone(&inflight),
                    Arc::clone(&deps)
                )
            }),
            QueueBackend::Redis(redis) => monitor.register(move |restarts| {
                let storage = redis.storage(queue, &opts.tuning);
                build_worker!(
                    worker_name(queue, restarts, &instance),
                    storage,
                    &wake,
                    opts,
                    queue,
                    Arc::clone(&inflight),
                    Arc::clone(&deps)
                )
            }),
        };
    }

    let background = CancellationToken::new();
    let promoters: Vec<_> = match services.queue.backend() {
        QueueBackend::Redis(redis) => {
            let mut tasks: Vec<_> = opts
                .queues
                .iter()
                .map(|q| {
                    tokio::spawn(crate::wake::promote_delayed(
                        redis.clone(),
                        Arc::clone(services.queue.wakeups()),
                        *q,
                        opts.poll_interval,
                    ))
                })
                .collect();
            let back = Arc::new(tokio::sync::Notify::new());
            tasks.push(tokio::spawn(crate::wake::subscribe(
                redis.clone(),
                Arc::clone(services.queue.wakeups()),
                opts.queues.clone(),
                Arc::clone(&back),
                background.clone(),
            )));
            if opts.queues.contains(&QueueName::Webhooks) {
                tasks.push(tokio::spawn(crate::webhooks::requeue_when_back(
                    services.clone(),
                    redis.clone(),
                    back,
                )));
            }
            tasks
        }
        QueueBackend::Sqlite(_) => Vec::new(),
    };
    let sampler = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            for (queue, inflight) in &samplers {
                metrics::gauge!(telemetry::JOB_RUNNING_MAX_AGE, "queue" => queue.as_str())
                    .set(inflight.max_age_seconds());
            }
        }
    });

    tracing::info!(
        queues = ?opts.queues,
        concurrency = opts.concurrency,
        backend = services.queue.kind(),
        orphan_window_secs = (opts.tuning.heartbeat * opts.tuning.missed_heartbeats as u32).as_secs(),
        "workers starting"
    );
    // On the runtime's workers, not in the caller's `block_on` (the main thread): there
    // every I/O readiness and timer would be a cross-thread wake-up of a parked thread.
    let queue = services.queue.clone();
    let running = tokio::spawn(monitor.run_with_signal(async move {
        shutdown.cancelled().await;
        // In-flight jobs must not wait out the grace behind a fetch apalis stops polling.
        queue.stopping();
        tracing::info!("shutdown: no new jobs; waiting for in-flight ones");
        Ok(())
    }));
    let result = match running.await {
        Ok(result) => result.map_err(|e| WorkerError::Monitor(e.to_string())),
        Err(join) => Err(WorkerError::Monitor(join.to_string())),
    };
    sampler.abort();
    background.cancel();
    if let Some(u) = unparker {
        u.abort();
    }
    for p in promoters {
        p.abort();
    }
    tracing::info!("workers stopped");
    result
}
