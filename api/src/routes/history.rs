//! Looking back over webhooks: the views of events with their delivery counts (listed by
//! `GET /events` and `GET /events/{id}` in `events.rs`, which owns the `/events` path), and
//! deliveries across endpoints. Keyset pages, newest first; a tenant's key sees its
//! tenant's only, a platform key the platform's or the tenant it names.

use chrono::{DateTime, Utc};
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};
use switchyard_shared::{
    services::Services,
    webhooks::{DeliveryFilter, DeliveryRow, DeliveryStatus, EventRow},
};

use super::{ApiTags, CursorPage, check_window, cursor_page, events::DeliveryView, keyset_limit};
use crate::{
    auth::scopes::{Auth, webhooks_read},
    problem::ApiError,
};

pub struct HistoryApi {
    pub services: Services,
}

#[derive(Object)]
struct DeliveryCounts {
    pending: i64,
    delivering: i64,
    retrying: i64,
    delivered: i64,
    failed: i64,
}

#[derive(Object)]
pub(super) struct EventView {
    /// `evt_…`, in the order events were published.
    id: String,
    #[oai(rename = "type")]
    event_type: String,
    /// The publishing key's id, or `system` for Switchyard's own events.
    source: Option<String>,
    created_at: DateTime<Utc>,
    /// `null`: the platform's.
    tenant_id: Option<String>,
    /// Deliveries made of it (one per endpoint subscribed when it was published).
    delivery_count: i64,
    delivery_status_counts: DeliveryCounts,
    /// The body delivered (`{"type", "timestamp", "data"}`; on `GET /events/{id}`).
    #[oai(skip_serializing_if_is_none)]
    payload: Option<serde_json::Value>,
    /// Every delivery (on `GET /events/{id}`).
    #[oai(skip_serializing_if_is_none)]
    deliveries: Option<Vec<DeliveryView>>,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> Self {
        Self {
            id: e.id.into_string(),
            event_type: e.event_type,
            source: e.source,
            created_at: e.created_at,
            tenant_id: e.tenant_id.tenant_id().map(ToString::to_string),
            delivery_count: e.deliveries,
            delivery_status_counts: DeliveryCounts {
                pending: e.pending,
                delivering: e.delivering,
                retrying: e.retrying,
                delivered: e.delivered,
                failed: e.failed,
            },
            payload: None,
            deliveries: None,
        }
    }
}

impl EventView {
    /// One event whole: with its payload and every delivery.
    pub(super) fn whole(row: EventRow, payload: &str, deliveries: Vec<DeliveryRow>) -> Self {
        let mut view = Self::from(row);
        view.payload = Some(serde_json::from_str(payload).unwrap_or(serde_json::Value::Null));
        view.deliveries =
            Some(deliveries.into_iter().map(|d| DeliveryView::new(d, None)).collect());
        view
    }
}

#[derive(Object)]
struct AttemptPoint {
    /// The step's start.
    at: DateTime<Utc>,
    /// Delivery attempts made in the step.
    attempts: i64,
    /// Of those, attempts that got no 2xx answer.
    failed: i64,
}

#[derive(Object)]
struct AttemptSeries {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    /// Seconds per step (steps are aligned to the epoch: whole minutes, hours).
    step: i64,
    /// Every step of the window, oldest first, empty ones at zero.
    points: Vec<AttemptPoint>,
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl HistoryApi {
    /// Delivery attempts over time and how many failed, in steps of `step` seconds (default
    /// 60, at least 10, at most 1,440 steps) over [`since`, `until`) (default: the last
    /// hour): what the console's overview charts. Scope: `webhooks:read`.
    #[oai(
        path = "/deliveries/series",
        method = "get",
        operation_id = "getDeliverySeries",
        transform = "webhooks_read"
    )]
    async fn delivery_series(
        &self,
        auth: Auth,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        step: Query<Option<i64>>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Json<AttemptSeries>, ApiError> {
        let until = until.0.unwrap_or_else(Utc::now);
        let since = since.0.unwrap_or(until - chrono::Duration::hours(1));
        check_window(Some(since), Some(until))?;
        let step = step.0.unwrap_or(60);
        if step < 10 {
            return Err(ApiError::field("step", "at least 10 seconds"));
        }
        if (until - since).num_seconds() / step > 1_440 {
            return Err(ApiError::field("step", "at most 1440 steps: take a larger step"));
        }
        let owner = auth.principal().acting_for(&self.services.store, tenant_id.as_deref()).await?;
        let rows = self.services.store.attempt_series(&owner, since, until, step).await?;
        let points = rows
            .into_iter()
            .map(|(at, attempts, failed)| AttemptPoint { at, attempts, failed })
            .collect();
        Ok(Json(AttemptSeries { since, until, step, points }))
    }

    /// Deliveries across endpoints, newest first, optionally by `status`, the event's type,
    /// endpoint and creation window [`since`, `until`). Page with `before` = the previous
    /// page's `next_cursor`. Scope: `webhooks:read`.
    #[oai(
        path = "/deliveries",
        method = "get",
        operation_id = "listDeliveries",
        transform = "webhooks_read"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_deliveries(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        event_type: Query<Option<String>>,
        endpoint_id: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        before: Query<Option<String>>,
        limit: Query<Option<i64>>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Json<CursorPage<DeliveryView>>, ApiError> {
        let status = super::parse_param::<DeliveryStatus>("status", status.0.as_deref())?;
        let limit = keyset_limit(limit.0)?;
        check_window(since.0, until.0)?;
        let owner = auth.principal().acting_for(&self.services.store, tenant_id.as_deref()).await?;
        let filter = DeliveryFilter {
            owner,
            status,
            event_type: event_type.0,
            endpoint_id: endpoint_id.0,
            since: since.0,
            until: until.0,
            before: before.0,
        };
        let rows = self.services.store.search_deliveries(&filter, limit + 1).await?;
        Ok(Json(cursor_page(rows, limit, |d| d.id.to_string(), |d| DeliveryView::new(d, None))))
    }
}
