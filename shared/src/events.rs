//! Publishing an event: the event and one delivery per subscribed endpoint are written in one
//! transaction, then the deliveries are enqueued (write first, enqueue second: if the push
//! is lost, `webhook-retry-sweep` finds the rows and enqueues them again). The API and the
//! workers (Switchyard's own `pidms.*`, `sikka.*`, `webhook.*` events) use this one path.

use crate::{
    jobs::{DeliverWebhookJob, Job},
    queue::QueueName,
    services::Services,
    store::{NewEvent, StoreError},
    telemetry,
    webhook::{self, RetrySchedule},
};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("event type {0:?} is not dot-separated letters, digits and underscores")]
    InvalidType(String),
    #[error("the payload is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct Published {
    pub event_id: String,
    pub delivery_ids: Vec<String>,
}

/// Where an event goes: every enabled endpoint subscribed to its type, or one endpoint
/// (`POST /webhooks/{id}/test`).
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    Subscribers,
    Endpoint(&'a str),
}

pub async fn publish(
    services: &Services,
    event_type: &str,
    data: &serde_json::Value,
    source: Option<&str>,
    audience: Audience<'_>,
) -> Result<Published, PublishError> {
    if !webhook::valid_event_type(event_type) {
        return Err(PublishError::InvalidType(event_type.to_owned()));
    }
    let now = chrono::Utc::now();
    let payload = webhook::payload(event_type, now, data);
    let limit = services.config.webhooks.max_payload_bytes;
    if payload.len() > limit {
        return Err(PublishError::TooLarge { size: payload.len(), limit });
    }
    let endpoints: Vec<String> = match audience {
        Audience::Endpoint(id) => vec![id.to_owned()],
        Audience::Subscribers => services
            .store
            .enabled_endpoint_patterns()
            .await?
            .into_iter()
            .filter(|(_, patterns)| {
                let patterns: Vec<String> =
                    patterns.split_whitespace().map(str::to_owned).collect();
                webhook::subscribed(&patterns, event_type)
            })
            .map(|(id, _)| id)
            .collect(),
    };
    let event_id = format!("evt_{}", ulid::Ulid::generate());
    let deliveries: Vec<(String, String)> = endpoints
        .into_iter()
        .map(|endpoint| (format!("msg_{}", ulid::Ulid::generate()), endpoint))
        .collect();
    let max_attempts = RetrySchedule::parse(&services.config.webhooks.retry_schedule)
        .map(|s| s.max_attempts())
        .unwrap_or(1);
    services
        .store
        .insert_event_with_deliveries(&NewEvent {
            event_id: &event_id,
            event_type,
            payload: &payload,
            source,
            deliveries: &deliveries,
            max_attempts: i64::from(max_attempts),
            now,
        })
        .await?;
    let jobs: Vec<Job> = deliveries
        .iter()
        .map(|(id, endpoint)| {
            Job::DeliverWebhook(DeliverWebhookJob {
                delivery_id: id.clone(),
                endpoint_id: endpoint.clone(),
                attempt: 1,
            })
        })
        .collect();
    if let Err(error) = services.queue.push_many(QueueName::Webhooks, jobs).await {
        // The rows are written: the retry sweep will enqueue them.
        tracing::warn!(%error, %event_id, "deliveries written but not enqueued; the sweep will");
    }
    metrics::counter!(telemetry::WEBHOOK_EVENTS, "source" => if source.is_some_and(|s| s == "system") { "system" } else { "api" })
        .increment(1);
    Ok(Published { event_id, delivery_ids: deliveries.into_iter().map(|(id, _)| id).collect() })
}
