//! Samples queue depth into gauges every few seconds, with the last canary of each queue
//! (read from the store, so the gauge survives the workers: `SwitchyardCanaryStale` fires
//! when they stop moving, not when their scrape disappears).

use switchyard_shared::{queue::QueueName, services::Services, telemetry};

/// Reads every queue's depth once and sets the gauges; errors are logged, not fatal.
pub async fn sample_queue_depth(services: &Services) {
    for queue in QueueName::ALL {
        match services.queue.stats(queue).await {
            Ok(s) => {
                for (state, n) in [
                    ("pending", s.pending),
                    ("scheduled", s.scheduled),
                    ("running", s.running),
                    ("failed", s.failed),
                    ("dead", s.dead),
                ] {
                    metrics::gauge!(telemetry::QUEUE_DEPTH, "queue" => queue.as_str(), "state" => state)
                        .set(n as f64);
                }
                metrics::gauge!(telemetry::QUEUE_OLDEST_PENDING_AGE, "queue" => queue.as_str())
                    .set(s.oldest_pending_age_seconds);
            }
            Err(error) => tracing::warn!(%queue, %error, "queue depth sample failed"),
        }
        match services.store.last_completed_canary(queue.as_str()).await {
            Ok(Some(run)) => {
                if let Some(at) = run.completed_at {
                    metrics::gauge!(telemetry::CANARY_LAST_SUCCESS, "queue" => queue.as_str())
                        .set(at.timestamp() as f64);
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%queue, %error, "last canary lookup failed"),
        }
    }
    match services.store.endpoint_counts().await {
        Ok((enabled, disabled)) => {
            metrics::gauge!(telemetry::WEBHOOK_ENDPOINTS, "state" => "enabled").set(enabled as f64);
            metrics::gauge!(telemetry::WEBHOOK_ENDPOINTS, "state" => "disabled")
                .set(disabled as f64);
        }
        Err(error) => tracing::warn!(%error, "webhook endpoint count failed"),
    }
}
