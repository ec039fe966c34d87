//! Publishing events (one, or a batch all or nothing) and single deliveries: read one with
//! its attempts, or attempt a failed one again.

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use switchyard_shared::{
    audit::AuditEntry,
    jobs::{DeliverWebhookJob, Job},
    services::Services,
    webhooks::events::{self, Audience, PublishError},
    webhooks::{AttemptRow, DeliveryRow, EventFilter, RetriedDelivery},
};

use super::{
    Accepted, ApiTags, CursorPage, check_window, cursor_page, history::EventView, keyset_limit,
};
use crate::{
    auth::scopes::{Auth, events_publish_idempotent, webhooks_read, webhooks_write_idempotent},
    auth::tenancy::owned,
    problem::{ApiError, FieldError, Problem},
};

pub struct EventsApi {
    pub services: Services,
}

#[derive(Object)]
struct EventInput {
    /// Dot-separated `[a-zA-Z0-9_]` words, e.g. `order.paid`.
    #[oai(rename = "type")]
    event_type: String,
    /// Any JSON; the delivered body is `{"type", "timestamp", "data"}` (at most 256 KiB).
    data: serde_json::Value,
}

#[derive(Object)]
struct PublishEvent {
    #[oai(flatten)]
    event: EventInput,
    /// The tenant whose endpoints receive it (platform keys acting for a tenant; a tenant's
    /// key always publishes to its own tenant). Without it: the platform's endpoints.
    tenant_id: Option<String>,
}

#[derive(Object)]
struct EventAccepted {
    id: String,
    /// One delivery per enabled endpoint subscribed to the type.
    deliveries: Vec<String>,
}

/// Events published together: all are written or none.
#[derive(Object)]
struct PublishBatch {
    /// 1 to 100 events.
    events: Vec<EventInput>,
    /// As for a single event: whose endpoints receive them.
    tenant_id: Option<String>,
}

#[derive(Object)]
struct BatchAccepted {
    /// Each event's id and deliveries, in the order given.
    events: Vec<EventAccepted>,
}

/// Events per `POST /events/batch`.
pub const MAX_BATCH_EVENTS: usize = 100;

#[derive(Object)]
struct AttemptView {
    n: i64,
    at: DateTime<Utc>,
    status_code: Option<i32>,
    duration_ms: f64,
    /// http_status or redirect (an answer came), blocked (the SSRF guard), or why no answer
    /// came: timeout, connect_refused, dns_error, tls_error, closed_mid_answer,
    /// invalid_answer, connect_error (another connect failure) or request_error. `error`
    /// carries the underlying message.
    outcome: String,
    error: Option<String>,
    /// The first 4 KiB of the answer.
    response_body: Option<String>,
}

impl From<AttemptRow> for AttemptView {
    fn from(a: AttemptRow) -> Self {
        Self {
            n: a.n,
            at: a.at,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            outcome: a.outcome.to_string(),
            error: a.error,
            response_body: a.response_body,
        }
    }
}

#[derive(Object)]
pub(super) struct DeliveryView {
    id: String,
    event_id: String,
    endpoint_id: String,
    /// pending, delivering, retrying, delivered or failed.
    status: String,
    attempt_count: i64,
    max_attempts: i64,
    next_attempt_at: Option<DateTime<Utc>>,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    /// Every attempt (on `GET /deliveries/{id}`).
    #[oai(skip_serializing_if_is_none)]
    attempts: Option<Vec<AttemptView>>,
}

impl DeliveryView {
    pub(super) fn new(d: DeliveryRow, attempts: Option<Vec<AttemptRow>>) -> Self {
        Self {
            id: d.id.into_string(),
            event_id: d.event_id.into_string(),
            endpoint_id: d.endpoint_id.into_string(),
            status: d.status.to_string(),
            attempt_count: d.attempts,
            max_attempts: d.max_attempts,
            next_attempt_at: d.next_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            attempts: attempts.map(|a| a.into_iter().map(Into::into).collect()),
        }
    }
}

#[derive(Object)]
struct RetryAccepted {
    delivery_id: String,
    attempt: i64,
}

impl EventsApi {
    /// The delivery `id` when it belongs to the owner this request acts for, else 404.
    async fn delivery_or_404(
        &self,
        auth: &Auth,
        id: &str,
        tenant_id: Option<&str>,
    ) -> Result<DeliveryRow, ApiError> {
        let acting = auth.principal().acting_for(&self.services.store, tenant_id).await?;
        let row = self.services.store.delivery(id).await?;
        owned(row, |r| &r.tenant_id, &acting, "no such delivery")
    }
}

pub(super) fn publish_error(e: PublishError) -> ApiError {
    match e {
        PublishError::InvalidType(_) => ApiError::field("type", e.to_string()),
        PublishError::TooLarge { .. } => ApiError::PayloadTooLarge(Json(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            e.to_string(),
        ))),
        PublishError::Store(e) => e.into(),
        PublishError::Stopped => ApiError::unavailable("the publisher is shutting down"),
    }
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl EventsApi {
    /// Publish an event to every enabled endpoint subscribed to its type. Scope:
    /// `events:publish`; honours `Idempotency-Key`.
    #[oai(
        path = "/events",
        method = "post",
        operation_id = "publishEvent",
        transform = "events_publish_idempotent"
    )]
    async fn publish(
        &self,
        auth: Auth,
        body: Json<PublishEvent>,
    ) -> Result<Accepted<EventAccepted>, ApiError> {
        let caller = auth.principal();
        let owner = caller.acting_for(&self.services.store, body.tenant_id.as_deref()).await?;
        let source = caller.key_id.to_string();
        let event = events::prepare(
            &self.services,
            &owner,
            &body.event.event_type,
            &body.event.data,
            Some(&source),
            Audience::Subscribers,
        )
        .map_err(publish_error)?
        .audited(&caller.actor, "event.published", None);
        let published = events::publish_one(&self.services, event).await.map_err(publish_error)?;
        Ok(Accepted::Accepted(Json(EventAccepted {
            id: published.event_id,
            deliveries: published.delivery_ids,
        })))
    }

    /// Publish up to 100 events in one request, all or nothing: every event is checked
    /// first, and one bad event (its index and field named in the 422) means none is
    /// written. Scope: `events:publish`; honours `Idempotency-Key` (per batch).
    #[oai(
        path = "/events/batch",
        method = "post",
        operation_id = "publishEventBatch",
        transform = "events_publish_idempotent"
    )]
    async fn publish_batch(
        &self,
        auth: Auth,
        body: Json<PublishBatch>,
    ) -> Result<Accepted<BatchAccepted>, ApiError> {
        let count = body.events.len();
        if count > MAX_BATCH_EVENTS {
            return Err(ApiError::PayloadTooLarge(Json(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch-too-large",
                format!("{count} events; a batch holds at most {MAX_BATCH_EVENTS}"),
            ))));
        }
        if count == 0 {
            return Err(ApiError::field("events", "at least one event"));
        }
        let caller = auth.principal();
        let owner = caller.acting_for(&self.services.store, body.tenant_id.as_deref()).await?;
        let source = caller.key_id.to_string();
        let mut prepared = Vec::with_capacity(count);
        let mut errors = Vec::new();
        for (i, event) in body.0.events.iter().enumerate() {
            match events::prepare(
                &self.services,
                &owner,
                &event.event_type,
                &event.data,
                Some(&source),
                Audience::Subscribers,
            ) {
                Ok(p) => prepared.push(p.audited(&caller.actor, "event.published", None)),
                Err(e) => {
                    let field = match e {
                        PublishError::InvalidType(_) => "type",
                        _ => "data",
                    };
                    errors.push(FieldError {
                        field: format!("events[{i}].{field}"),
                        message: e.to_string(),
                    });
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let published = self.services.publisher.publish(prepared).await.map_err(publish_error)?;
        Ok(Accepted::Accepted(Json(BatchAccepted {
            events: published
                .into_iter()
                .map(|p| EventAccepted { id: p.event_id, deliveries: p.delivery_ids })
                .collect(),
        })))
    }

    /// One delivery with every attempt. Scope: `webhooks:read`.
    #[oai(
        path = "/deliveries/:id",
        method = "get",
        operation_id = "getDelivery",
        transform = "webhooks_read"
    )]
    async fn delivery(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Json<DeliveryView>, ApiError> {
        let d = self.delivery_or_404(&auth, &id, tenant_id.as_deref()).await?;
        let attempts = self.services.store.delivery_attempts(&id).await?;
        Ok(Json(DeliveryView::new(d, Some(attempts))))
    }

    /// Attempt a failed delivery once more, now. Scope: `webhooks:write`; honours
    /// `Idempotency-Key`.
    #[oai(
        path = "/deliveries/:id/retry",
        method = "post",
        operation_id = "retryDelivery",
        transform = "webhooks_write_idempotent"
    )]
    async fn retry(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Accepted<RetryAccepted>, ApiError> {
        let delivery = self.delivery_or_404(&auth, &id, tenant_id.as_deref()).await?;
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &delivery.tenant_id,
            "webhook.delivery.retried",
            "webhook_delivery",
        )
        .target(id.0.as_str())
        .changed(&[("status", true)]);
        let Some(RetriedDelivery { endpoint_id, attempt }) =
            self.services.store.retry_delivery(&id, Utc::now(), &audit).await?
        else {
            return match self.services.store.delivery(&id).await? {
                Some(_) => Err(ApiError::conflict("only failed deliveries can be retried")),
                None => Err(ApiError::not_found("no such delivery")),
            };
        };
        let job = Job::DeliverWebhook(DeliverWebhookJob {
            delivery_id: id.0.clone().into(),
            endpoint_id,
            attempt,
        });
        // Written first; if the push is lost, the retry sweep enqueues it.
        if let Err(error) = self.services.queue.push(job).await {
            tracing::warn!(%error, "retry written but not enqueued; the sweep will");
        }
        Ok(Accepted::Accepted(Json(RetryAccepted { delivery_id: id.0, attempt })))
    }

    /// Published events, newest first, each with its deliveries counted by status;
    /// optionally of one `type` (exact) and within [`since`, `until`). Page with `before` =
    /// the previous page's `next_cursor`. Scope: `webhooks:read`.
    #[oai(
        path = "/events",
        method = "get",
        operation_id = "listEvents",
        transform = "webhooks_read"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_events(
        &self,
        auth: Auth,
        #[oai(name = "type")] event_type: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        before: Query<Option<String>>,
        limit: Query<Option<i64>>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Json<CursorPage<EventView>>, ApiError> {
        let limit = keyset_limit(limit.0)?;
        check_window(since.0, until.0)?;
        let owner = auth.principal().acting_for(&self.services.store, tenant_id.as_deref()).await?;
        let filter = EventFilter {
            owner,
            event_type: event_type.0,
            since: since.0,
            until: until.0,
            before: before.0,
        };
        let rows = self.services.store.list_events(&filter, limit + 1).await?;
        Ok(Json(cursor_page(rows, limit, |e| e.id.to_string(), EventView::from)))
    }

    /// One event: its payload, and every delivery made of it. Scope: `webhooks:read`.
    #[oai(
        path = "/events/:id",
        method = "get",
        operation_id = "getEvent",
        transform = "webhooks_read"
    )]
    async fn get_event(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Json<EventView>, ApiError> {
        let acting =
            auth.principal().acting_for(&self.services.store, tenant_id.as_deref()).await?;
        let found = self.services.store.event(&id).await?;
        let (row, payload) = owned(found, |(e, _)| &e.tenant_id, &acting, "no such event")?;
        let deliveries = self.services.store.event_deliveries(&id).await?;
        let view = EventView::whole(row, &payload, deliveries);
        Ok(Json(view))
    }
}
