//! Metric names (described below, charted in `dashboards/`) and the process-wide Prometheus
//! recorder.
//!
//! Every name is written once, here. Labels are bounded: queue, job, outcome,
//! status_class, upstream, route, method, schedule, state, reason — never ids or URLs.

use std::{sync::OnceLock, time::Duration};

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// Jobs, per queue and job.
pub const JOBS_ENQUEUED: &str = "switchyard_jobs_enqueued_total";
pub const JOBS_COMPLETED: &str = "switchyard_jobs_completed_total";
pub const JOB_WAIT: &str = "switchyard_job_wait_seconds";
pub const JOB_DURATION: &str = "switchyard_job_duration_seconds";
pub const JOB_ATTEMPTS: &str = "switchyard_job_attempts";
pub const QUEUE_DEPTH: &str = "switchyard_queue_depth";
pub const QUEUE_OLDEST_PENDING_AGE: &str = "switchyard_queue_oldest_pending_age_seconds";
pub const WORKER_INFLIGHT: &str = "switchyard_worker_inflight";
pub const WORKER_CONCURRENCY_LIMIT: &str = "switchyard_worker_concurrency_limit";
pub const JOB_RUNNING_MAX_AGE: &str = "switchyard_job_running_max_age_seconds";
pub const WORKER_RESTARTS: &str = "switchyard_worker_restarts_total";
pub const CANARY_LATENCY: &str = "switchyard_canary_latency_seconds";
pub const CANARY_LAST_SUCCESS: &str = "switchyard_canary_last_success_timestamp_seconds";

// Webhooks.
pub const WEBHOOK_EVENTS: &str = "switchyard_webhook_events_total";
pub const WEBHOOK_DELIVERIES: &str = "switchyard_webhook_deliveries_total";
pub const WEBHOOK_ATTEMPT_DURATION: &str = "switchyard_webhook_attempt_duration_seconds";
pub const WEBHOOK_END_TO_END: &str = "switchyard_webhook_end_to_end_seconds";
pub const WEBHOOK_DELIVERY_ATTEMPTS: &str = "switchyard_webhook_delivery_attempts";
pub const WEBHOOK_ENDPOINTS: &str = "switchyard_webhook_endpoints";
pub const WEBHOOK_ENDPOINTS_DISABLED: &str = "switchyard_webhook_endpoints_disabled_total";
pub const WEBHOOK_BLOCKED: &str = "switchyard_webhook_blocked_total";
pub const WEBHOOK_DEFERRED: &str = "switchyard_webhook_deferred_total";
pub const WEBHOOK_WAITING: &str = "switchyard_webhook_waiting";
pub const WEBHOOK_PUBLISH_BATCH: &str = "switchyard_webhook_publish_batch_size";
pub const WEBHOOK_PUSH_BATCH: &str = "switchyard_webhook_push_batch_size";
pub const WEBHOOK_SUBSCRIPTIONS_REREAD: &str = "switchyard_webhook_subscriptions_reread_total";
pub const WEBHOOK_REQUEUED: &str = "switchyard_webhook_requeued_after_broker_loss_total";

// Upstreams.
pub const UPSTREAM_REQUESTS: &str = "switchyard_upstream_requests_total";
pub const UPSTREAM_REQUEST_DURATION: &str = "switchyard_upstream_request_duration_seconds";
pub const UPSTREAM_RATE_LIMITED: &str = "switchyard_upstream_rate_limited_total";
pub const PIDMS_KEYS_CHECKED: &str = "switchyard_pidms_keys_checked_total";
pub const PIDMS_LOW_INVENTORY_PRODUCTS: &str = "switchyard_pidms_low_inventory_products";
pub const SIKKA_TOKEN_REFRESH: &str = "switchyard_sikka_token_refresh_total";
pub const SIKKA_TOKEN_EXPIRY: &str = "switchyard_sikka_token_expiry_seconds";
pub const SIKKA_WRITEBACKS: &str = "switchyard_sikka_writebacks_total";
pub const SIKKA_WRITEBACK_COMPLETION: &str = "switchyard_sikka_writeback_completion_seconds";
pub const SIKKA_WRITEBACKS_OPEN: &str = "switchyard_sikka_writebacks_open";

// Scheduler.
pub const SCHEDULE_RUNS: &str = "switchyard_schedule_runs_total";
pub const SCHEDULE_LAST_SUCCESS: &str = "switchyard_schedule_last_success_timestamp_seconds";
pub const SCHEDULE_INTERVAL: &str = "switchyard_schedule_interval_seconds";
pub const SCHEDULER_IS_LEADER: &str = "switchyard_scheduler_is_leader";

// API.
pub const HTTP_REQUESTS: &str = "switchyard_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "switchyard_http_request_duration_seconds";
pub const RATE_LIMITED: &str = "switchyard_rate_limited_total";
pub const AUTH_FAILURES: &str = "switchyard_auth_failures_total";
pub const API_KEYS_SUSPENDED: &str = "switchyard_api_keys_suspended_total";
pub const AUTH_LOOKUPS: &str = "switchyard_auth_key_lookups_total";
pub const RATE_LIMITER_ERRORS: &str = "switchyard_rate_limiter_errors_total";
pub const USAGE_DROPPED: &str = "switchyard_usage_events_dropped_total";

// Every process.
pub const BUILD_INFO: &str = "switchyard_build_info";

/// Run-time shaped buckets, 5 ms … 1 h (backlog waits blow past run-time buckets).
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    1800.0, 3600.0,
];
/// Request-shaped buckets, 0.5 ms … 10 s.
const HTTP_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 25.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (later calls return the
/// same handle, so tests that start several apps in one process share it).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), HTTP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(JOB_ATTEMPTS.into()), ATTEMPT_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WEBHOOK_PUBLISH_BATCH.into()),
                        &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WEBHOOK_PUSH_BATCH.into()),
                        &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WEBHOOK_DELIVERY_ATTEMPTS.into()),
                        ATTEMPT_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                })
                .and_then(|b| b.install_recorder())
                .expect("the metrics recorder is installed once per process");
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            let upkeep = handle.clone();
            // Histograms are drained into the exporter only on upkeep; install_recorder()
            // does not schedule it.
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn metrics upkeep thread");
            handle
        })
        .clone()
}

/// The Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    install().render()
}

fn describe() {
    describe_counter!(JOBS_ENQUEUED, "Jobs pushed onto a queue.");
    describe_counter!(JOBS_COMPLETED, "Jobs finished by a worker, by outcome.");
    describe_histogram!(
        JOB_WAIT,
        Unit::Seconds,
        "Time from due (enqueued or scheduled-for) to start."
    );
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Time a job ran.");
    describe_histogram!(JOB_ATTEMPTS, "Attempt number of a job when it completed.");
    describe_gauge!(QUEUE_DEPTH, "Jobs in a queue by state, sampled every few seconds.");
    describe_gauge!(
        QUEUE_OLDEST_PENDING_AGE,
        Unit::Seconds,
        "Age of the oldest due job not yet started."
    );
    describe_gauge!(WORKER_INFLIGHT, "Jobs this worker process is running now.");
    describe_gauge!(WORKER_CONCURRENCY_LIMIT, "Jobs this worker process may run at once.");
    describe_gauge!(
        JOB_RUNNING_MAX_AGE,
        Unit::Seconds,
        "How long the longest-running job in this process has run."
    );
    describe_counter!(WORKER_RESTARTS, "Workers restarted after a queue backend error.");
    describe_histogram!(CANARY_LATENCY, Unit::Seconds, "Canary job latency from enqueue to done.");
    describe_gauge!(
        CANARY_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last canary job done on a queue."
    );
    describe_counter!(WEBHOOK_EVENTS, "Events published, by source (api or system).");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by outcome and status class."
    );
    describe_histogram!(
        WEBHOOK_ATTEMPT_DURATION,
        Unit::Seconds,
        "Time of one delivery attempt (request to response)."
    );
    describe_histogram!(
        WEBHOOK_END_TO_END,
        Unit::Seconds,
        "Time from an event accepted to its delivery succeeding."
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_ATTEMPTS,
        "Attempts a finished webhook delivery took, by outcome (delivered, failed, blocked)."
    );
    describe_gauge!(WEBHOOK_ENDPOINTS, "Webhook endpoints by state (enabled, disabled).");
    describe_counter!(
        WEBHOOK_ENDPOINTS_DISABLED,
        "Endpoints disabled (410 Gone, or failing too long), by reason."
    );
    describe_counter!(WEBHOOK_BLOCKED, "Delivery attempts refused by the SSRF guard.");
    describe_counter!(
        WEBHOOK_DEFERRED,
        "Deliveries put off without an attempt, by reason: rate_limit and held (put back in \
         the queue for later), parked (over their endpoint's line; the row waits in the store)."
    );
    describe_gauge!(
        WEBHOOK_WAITING,
        "Deliveries waiting in line in this worker process for their endpoint's slot."
    );
    describe_counter!(
        WEBHOOK_REQUEUED,
        "Deliveries enqueued again when a worker's Redis connection came back after a loss, by \
         when (due: at once; later: a scheduled retry, when Redis came back empty)."
    );
    describe_histogram!(
        WEBHOOK_PUBLISH_BATCH,
        "Events written per publish group commit (concurrent requests share one)."
    );
    describe_histogram!(
        WEBHOOK_PUSH_BATCH,
        "First attempts enqueued per queue push after publishing (groups committed while a \
         push was under way share the next one)."
    );
    describe_counter!(
        WEBHOOK_SUBSCRIPTIONS_REREAD,
        "Publish groups written again because endpoints' subscriptions changed since the \
         publisher last read them (an endpoint added, removed, enabled, disabled or \
         re-subscribed)."
    );
    describe_counter!(UPSTREAM_REQUESTS, "Requests to PIDKey and Sikka, by status class.");
    describe_histogram!(
        UPSTREAM_REQUEST_DURATION,
        Unit::Seconds,
        "Time of one request to an upstream."
    );
    describe_counter!(UPSTREAM_RATE_LIMITED, "Upstream answers of 429 (rate limited).");
    describe_counter!(PIDMS_KEYS_CHECKED, "PIDKey keys checked and stored.");
    describe_gauge!(
        PIDMS_LOW_INVENTORY_PRODUCTS,
        "Products whose keys' total remaining is below the threshold."
    );
    describe_counter!(
        SIKKA_TOKEN_REFRESH,
        "Sikka request-key refreshes, by outcome (refreshed, new_key, refresh_refused, \
         reauthorization_required, error)."
    );
    describe_gauge!(
        SIKKA_TOKEN_EXPIRY,
        Unit::Seconds,
        "The least time left on an active Sikka request key, across practices (+Inf: none)."
    );
    describe_counter!(
        SIKKA_WRITEBACKS,
        "Sikka writebacks ended, by outcome (completed, failed, stuck)."
    );
    describe_histogram!(
        SIKKA_WRITEBACK_COMPLETION,
        Unit::Seconds,
        "Time from a writeback's acceptance to its end."
    );
    describe_gauge!(SIKKA_WRITEBACKS_OPEN, "Sikka writebacks not yet ended, by status.");
    describe_counter!(SCHEDULE_RUNS, "Schedule ticks run, by outcome.");
    describe_gauge!(
        SCHEDULE_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of a schedule's last successful run."
    );
    describe_gauge!(
        SCHEDULE_INTERVAL,
        Unit::Seconds,
        "Seconds between a schedule's next two ticks (for lateness alerts)."
    );
    describe_gauge!(SCHEDULER_IS_LEADER, "1 while this scheduler holds the leader lock.");
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template and status class.");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by route template."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429, by kind (key limit or auth failures)."
    );
    describe_counter!(AUTH_FAILURES, "Requests refused for want of a valid API key, by reason.");
    describe_counter!(
        AUTH_LOOKUPS,
        "API keys missing from the cache, by source: store (looked up) or skipped (the \
         address is over its failure limit)."
    );
    describe_counter!(
        RATE_LIMITER_ERRORS,
        "Rate limiter checks that failed (the limiter then fails open)."
    );
    describe_counter!(USAGE_DROPPED, "API usage records dropped (buffer full or write failed).");
    describe_gauge!(BUILD_INFO, "Always 1; the version label says which build runs.");
}

/// `2xx`, `3xx`, `4xx` or `5xx` for an HTTP status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
