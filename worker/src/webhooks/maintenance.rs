//! The webhook schedules' jobs: the retry sweep (the outbox guarantee), cleanup, and
//! disabling endpoints that keep failing.

use apalis::prelude::BoxDynError;
use chrono::{Duration, Utc};
use switchyard_shared::{
    jobs::{DeliverWebhookJob, Job},
    queue::RedisQueue,
    services::Services,
    telemetry,
    webhooks::DueDelivery,
};

use super::announce_disabled;
use crate::handlers::Outcome;

const SWEEP_PAGE: i64 = 5_000;
/// Deliveries enqueued again at most, per broker loss; beyond, the sweep finds the rest.
const REQUEUE_LIMIT: i64 = 100_000;
/// One worker of the fleet re-enqueues per broker loss; the others see the lease and skip.
const REQUEUE_LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// Enqueues deliveries that are due (or whose attempt's lease ran out) but not in the queue.
/// A delivery enqueued twice is attempted once: the claim in the store decides.
pub(crate) async fn retry_sweep(services: &Services) -> Result<Outcome, BoxDynError> {
    // A due delivery not started `SWITCHYARD_WEBHOOK_SWEEP_GRACE_SECS` after its time is
    // presumed lost from the queue. A lost broker does not wait for it: see
    // [`requeue_after_broker_loss`].
    let grace = services.config.webhooks.sweep_grace_secs;
    let cutoff = Utc::now() - Duration::seconds(grace as i64); // at most a week: validated
    let due = services.store.overdue_deliveries(cutoff, SWEEP_PAGE).await?;
    let count = due.len();
    services.queue.push_many(due.into_iter().map(delivery_job).collect()).await?;
    if count > 0 {
        tracing::warn!(count, "re-enqueued deliveries that were due but not in the queue");
    }
    Ok(Outcome::Success)
}

/// Run when a worker's Redis connection is back after a loss. Pushes made while Redis was
/// away (the API leaves them to the sweep) and, if Redis came back empty, everything it held
/// (queued, delayed, in flight) are gone from the queue though their rows are due: enqueue
/// them now instead of after the sweep's grace. Due deliveries go at once; if Redis came back
/// empty, scheduled retries go back as delayed jobs. A message that was not lost is simply
/// there twice: the claim in the store makes it one attempt.
pub(crate) async fn requeue_after_broker_loss(
    services: &Services,
    redis: &RedisQueue,
) -> Result<(), BoxDynError> {
    let emptied = redis.mark_present().await?;
    if !redis.try_lease("requeue-after-broker-loss", REQUEUE_LEASE).await? {
        return Ok(());
    }
    let now = Utc::now();
    let due = services.store.overdue_deliveries(now, REQUEUE_LIMIT).await?;
    let due_count = due.len();
    services.queue.push_many(due.into_iter().map(delivery_job).collect()).await?;
    let mut later_count = 0;
    if emptied {
        let later = services.store.scheduled_deliveries(now, REQUEUE_LIMIT).await?;
        later_count = later.len();
        let jobs = later
            .into_iter()
            .map(|d| {
                let wait = d
                    .due_at
                    .map_or(Default::default(), |at| (at - now).to_std().unwrap_or_default());
                (delivery_job(d), wait)
            })
            .collect();
        services.queue.push_each_after(jobs).await?;
    }
    metrics::counter!(telemetry::WEBHOOK_REQUEUED, "when" => "due").increment(due_count as u64);
    metrics::counter!(telemetry::WEBHOOK_REQUEUED, "when" => "later").increment(later_count as u64);
    tracing::warn!(
        due = due_count,
        later = later_count,
        emptied,
        "Redis is back after a loss: re-enqueued the deliveries it may have lost"
    );
    Ok(())
}

/// The queue message of a delivery's next attempt.
fn delivery_job(d: DueDelivery) -> Job {
    Job::DeliverWebhook(DeliverWebhookJob {
        delivery_id: d.id,
        endpoint_id: d.endpoint_id,
        attempt: d.attempt,
    })
}

pub(crate) async fn cleanup(services: &Services) -> Result<Outcome, BoxDynError> {
    let days = services.config.webhooks.retention_days as i64;
    let (attempts, deliveries, events) =
        services.store.cleanup_webhooks(Utc::now() - Duration::days(days)).await?;
    tracing::info!(attempts, deliveries, events, "webhook cleanup");
    Ok(Outcome::Success)
}

/// Disables endpoints at or above the failure threshold with no success for 24 h, and
/// announces each with `webhook.endpoint.disabled`.
pub(crate) async fn disable_failing(services: &Services) -> Result<Outcome, BoxDynError> {
    let now = Utc::now();
    let threshold = services.config.webhooks.disable_threshold;
    let disabled =
        services.store.disable_failing_endpoints(threshold, now - Duration::hours(24), now).await?;
    for endpoint in disabled {
        let reason = endpoint.disabled_reason.clone().unwrap_or_default();
        tracing::warn!(endpoint_id = %endpoint.id, %reason, "webhook endpoint disabled");
        metrics::counter!(telemetry::WEBHOOK_ENDPOINTS_DISABLED, "reason" => "failing")
            .increment(1);
        announce_disabled(services, &endpoint.tenant_id, &endpoint.id, &endpoint.url, &reason)
            .await;
    }
    Ok(Outcome::Success)
}
