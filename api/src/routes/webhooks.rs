//! Webhook endpoints, events, deliveries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use switchyard_shared::{
    access::Environment,
    jobs::{DeliverWebhookJob, Job},
    netguard::NetGuard,
    services::Services,
    webhooks::events::{self, Audience, PublishError},
    webhooks::{self, DeliveryStatus},
    webhooks::{AttemptRow, DeliveryRow, EndpointPatch, EndpointRow, NewEndpoint, secret_context},
};

use super::{ApiTags, Page, page_bounds};
use crate::{
    auth::scopes::{
        Auth, events_publish_idempotent, webhooks_read, webhooks_write, webhooks_write_idempotent,
    },
    problem::{ApiError, FieldError, Problem},
};

pub struct WebhooksApi {
    pub services: Services,
}

/// How long the old secret keeps signing after a rotation.
const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

#[derive(Object)]
struct CreateEndpoint {
    /// Where to POST events. `https` is required for endpoints created with live keys.
    url: String,
    /// Event types to receive: exact (`pidms.sync.completed`), `*`, or a prefix (`pidms.*`);
    /// at most 256.
    #[oai(validator(max_items = 256))]
    event_types: Vec<String>,
    /// At most 500 characters.
    #[oai(validator(max_length = 500))]
    description: Option<String>,
    /// At most this many deliveries per second to this endpoint, across the fleet.
    rate_limit_per_second: Option<i64>,
}

#[derive(Object)]
struct UpdateEndpoint {
    url: Option<String>,
    #[oai(validator(max_items = 256))]
    event_types: Option<Vec<String>>,
    /// At most 500 characters.
    #[oai(validator(max_length = 500))]
    description: Option<String>,
    rate_limit_per_second: Option<i64>,
    /// `true` re-enables a disabled endpoint and resets its failure count.
    enabled: Option<bool>,
}

#[derive(Object)]
struct EndpointView {
    id: String,
    url: String,
    description: Option<String>,
    event_types: Vec<String>,
    /// enabled or disabled.
    status: String,
    /// Consecutive failed attempts since the last success.
    failure_count: i64,
    last_success_at: Option<DateTime<Utc>>,
    last_failure_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    disabled_reason: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
    rate_limit_per_second: Option<i64>,
    environment: String,
    /// While set, the previous secret still signs alongside the current one.
    previous_secret_valid_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<EndpointRow> for EndpointView {
    fn from(r: EndpointRow) -> Self {
        let patterns = r.patterns();
        Self {
            id: r.id,
            url: r.url,
            description: r.description,
            event_types: patterns,
            status: if r.enabled { "enabled" } else { "disabled" }.to_owned(),
            failure_count: r.failure_count,
            last_success_at: r.last_success_at,
            last_failure_at: r.last_failure_at,
            last_error: r.last_error,
            disabled_reason: r.disabled_reason,
            disabled_at: r.disabled_at,
            rate_limit_per_second: r.rate_limit_per_second,
            environment: r.environment,
            previous_secret_valid_until: r.previous_secret_until.filter(|t| *t > Utc::now()),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Object)]
struct EndpointCreated {
    /// The signing secret (`whsec_…`). Shown this once; stored encrypted.
    secret: String,
    #[oai(flatten)]
    endpoint: EndpointView,
}

#[derive(Object)]
struct SecretRotated {
    /// The new signing secret, shown this once.
    secret: String,
    /// The old secret keeps signing (a second signature) until then.
    previous_valid_until: DateTime<Utc>,
}

#[derive(Object)]
struct PublishEvent {
    /// Dot-separated `[a-zA-Z0-9_]` words, e.g. `order.paid`.
    #[oai(rename = "type")]
    event_type: String,
    /// Any JSON; the delivered body is `{"type", "timestamp", "data"}` (at most 256 KiB).
    data: serde_json::Value,
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
    events: Vec<PublishEvent>,
}

#[derive(Object)]
struct BatchAccepted {
    /// Each event's id and deliveries, in the order given.
    events: Vec<EventAccepted>,
}

/// Events per `POST /events/batch`.
pub const MAX_BATCH_EVENTS: usize = 100;

#[derive(Object)]
struct TestSent {
    event_id: String,
    delivery_id: String,
}

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
struct DeliveryView {
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
    fn new(d: DeliveryRow, attempts: Option<Vec<AttemptRow>>) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            endpoint_id: d.endpoint_id,
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

#[derive(ApiResponse)]
enum Created {
    /// Created; `secret` is shown only in this response.
    #[oai(status = 201)]
    Created(Json<EndpointCreated>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted; its pending deliveries end as failed.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
enum Accepted<T: poem_openapi::types::ToJSON + Send + Sync> {
    /// Accepted: the work is stored and queued.
    #[oai(status = 202)]
    Accepted(Json<T>),
}

fn check_patterns(patterns: &[String], errors: &mut Vec<FieldError>) {
    if patterns.is_empty() {
        errors.push(FieldError { field: "event_types".into(), message: "at least one".into() });
    }
    for (i, p) in patterns.iter().enumerate() {
        if !webhooks::valid_pattern(p) {
            errors.push(FieldError {
                field: format!("event_types[{i}]"),
                message: format!("{p:?} is not an event type, `*`, or a prefix such as `pidms.*`"),
            });
        }
    }
}

fn check_rate(rate: Option<i64>, errors: &mut Vec<FieldError>) {
    if rate.is_some_and(|r| !(1..=10_000).contains(&r)) {
        errors.push(FieldError {
            field: "rate_limit_per_second".into(),
            message: "between 1 and 10000".into(),
        });
    }
}

impl WebhooksApi {
    /// Scheme, host, no credentials; https for live keys; no private or loopback address
    /// (literal, or every address the name resolves to) unless allowlisted.
    async fn check_url(&self, url: &str, env: Environment, errors: &mut Vec<FieldError>) {
        let mut bad = |m: String| errors.push(FieldError { field: "url".into(), message: m });
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return bad(format!("not a URL: {e}")),
        };
        match parsed.scheme() {
            "https" => {}
            "http"
                if env == Environment::Test
                    || !self.services.config.webhooks.require_https_for_live => {}
            "http" => return bad("https is required for endpoints of live keys".into()),
            other => return bad(format!("scheme {other:?}: use https or http")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return bad(
                "credentials in the URL are not allowed; authenticate with the signature".into()
            );
        }
        let Some(host) = parsed.host() else { return bad("the URL has no host".into()) };
        let guard = NetGuard::new(self.services.config.webhook_allowlist());
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<std::net::IpAddr> = match host {
            url::Host::Ipv4(ip) => vec![ip.into()],
            url::Host::Ipv6(ip) => vec![ip.into()],
            url::Host::Domain(name) => {
                // A name that does not resolve now may later: only a name that resolves to
                // forbidden addresses alone is refused here (delivery checks again).
                let lookup = tokio::net::lookup_host((name, port));
                match tokio::time::timeout(Duration::from_secs(2), lookup).await {
                    Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                    _ => Vec::new(),
                }
            }
        };
        let refused: Vec<String> = addrs
            .iter()
            .filter_map(|ip| guard.check(*ip).err().map(|why| format!("{ip} ({why})")))
            .collect();
        if !addrs.is_empty() && refused.len() == addrs.len() {
            bad(format!(
                "the address is not allowed: {}; private, loopback and link-local destinations \
                 need SWITCHYARD_WEBHOOK_ALLOW_CIDRS",
                refused.join(", ")
            ));
        }
    }

    async fn endpoint_or_404(&self, id: &str) -> Result<EndpointRow, ApiError> {
        self.services
            .store
            .endpoint(id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such webhook endpoint"))
    }
}

fn publish_error(e: PublishError) -> ApiError {
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
impl WebhooksApi {
    /// Create an endpoint. The response carries its signing secret, once. Scope:
    /// `webhooks:write`.
    #[oai(
        path = "/webhooks",
        method = "post",
        operation_id = "createWebhook",
        transform = "webhooks_write"
    )]
    async fn create(&self, auth: Auth, body: Json<CreateEndpoint>) -> Result<Created, ApiError> {
        let caller = auth.principal();
        let mut errors = Vec::new();
        self.check_url(&body.url, caller.environment, &mut errors).await;
        check_patterns(&body.event_types, &mut errors);
        check_rate(body.rate_limit_per_second, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let id = format!("ep_{}", ulid::Ulid::generate());
        let secret = webhooks::generate_secret();
        let new = NewEndpoint {
            secret_sealed: self.services.cipher.seal(&secret_context(&id), secret.as_bytes()),
            id,
            url: body.url.clone(),
            description: body.description.clone(),
            event_types: body.event_types.join(" "),
            rate_limit_per_second: body.rate_limit_per_second,
            environment: caller.environment.as_str().to_owned(),
            created_by: Some(caller.key_id.to_string()),
        };
        let row = self.services.store.insert_endpoint(&new, Utc::now()).await?;
        tracing::info!(endpoint_id = %row.id, "webhook endpoint created");
        Ok(Created::Created(Json(EndpointCreated { secret, endpoint: row.into() })))
    }

    /// Every endpoint, newest first. Scope: `webhooks:read`.
    #[oai(
        path = "/webhooks",
        method = "get",
        operation_id = "listWebhooks",
        transform = "webhooks_read"
    )]
    async fn list(
        &self,
        _auth: Auth,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<EndpointView>>, ApiError> {
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        let (total, rows) = self.services.store.list_endpoints(offset, page_size).await?;
        Ok(Json(Page { total, page, page_size, items: rows.into_iter().map(Into::into).collect() }))
    }

    /// One endpoint, with its health. Scope: `webhooks:read`.
    #[oai(
        path = "/webhooks/:id",
        method = "get",
        operation_id = "getWebhook",
        transform = "webhooks_read"
    )]
    async fn get(&self, _auth: Auth, id: Path<String>) -> Result<Json<EndpointView>, ApiError> {
        Ok(Json(self.endpoint_or_404(&id).await?.into()))
    }

    /// Change an endpoint; `enabled: true` re-enables it and resets its failure count.
    /// Scope: `webhooks:write`.
    #[oai(
        path = "/webhooks/:id",
        method = "patch",
        operation_id = "updateWebhook",
        transform = "webhooks_write"
    )]
    async fn update(
        &self,
        auth: Auth,
        id: Path<String>,
        body: Json<UpdateEndpoint>,
    ) -> Result<Json<EndpointView>, ApiError> {
        let existing = self.endpoint_or_404(&id).await?;
        let env = existing.environment.parse().unwrap_or(auth.principal().environment);
        let mut errors = Vec::new();
        if let Some(url) = &body.url {
            self.check_url(url, env, &mut errors).await;
        }
        if let Some(p) = &body.event_types {
            check_patterns(p, &mut errors);
        }
        check_rate(body.rate_limit_per_second, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let patch = EndpointPatch {
            url: body.url.clone(),
            description: body.description.clone(),
            event_types: body.event_types.as_ref().map(|p| p.join(" ")),
            rate_limit_per_second: body.rate_limit_per_second,
            enabled: body.enabled,
        };
        let row = self.services.store.update_endpoint(&id, &patch, Utc::now()).await?;
        Ok(Json(row.ok_or_else(|| ApiError::not_found("no such webhook endpoint"))?.into()))
    }

    /// Delete an endpoint. Scope: `webhooks:write`.
    #[oai(
        path = "/webhooks/:id",
        method = "delete",
        operation_id = "deleteWebhook",
        transform = "webhooks_write"
    )]
    async fn delete(&self, _auth: Auth, id: Path<String>) -> Result<Deleted, ApiError> {
        if !self.services.store.delete_endpoint(&id, Utc::now()).await? {
            return Err(ApiError::not_found("no such webhook endpoint"));
        }
        Ok(Deleted::Deleted)
    }

    /// A new signing secret (shown once); the old one keeps signing alongside for 24 h.
    /// Scope: `webhooks:write`.
    #[oai(
        path = "/webhooks/:id/rotate-secret",
        method = "post",
        operation_id = "rotateWebhookSecret",
        transform = "webhooks_write"
    )]
    async fn rotate(&self, _auth: Auth, id: Path<String>) -> Result<Json<SecretRotated>, ApiError> {
        let existing = self.endpoint_or_404(&id).await?;
        let secret = webhooks::generate_secret();
        let sealed = self.services.cipher.seal(&secret_context(&existing.id), secret.as_bytes());
        let now = Utc::now();
        let until = now + ROTATION_OVERLAP;
        self.services
            .store
            .rotate_endpoint_secret(&existing.id, &sealed, &existing.secret_sealed, until, now)
            .await?
            .ok_or_else(|| ApiError::not_found("no such webhook endpoint"))?;
        Ok(Json(SecretRotated { secret, previous_valid_until: until }))
    }

    /// Send a `webhook.test` event to this endpoint only. Scope: `webhooks:write`; honours
    /// `Idempotency-Key`.
    #[oai(
        path = "/webhooks/:id/test",
        method = "post",
        operation_id = "testWebhook",
        transform = "webhooks_write_idempotent"
    )]
    async fn test(&self, auth: Auth, id: Path<String>) -> Result<Accepted<TestSent>, ApiError> {
        let endpoint = self.endpoint_or_404(&id).await?;
        let data = serde_json::json!({"endpoint_id": endpoint.id, "message": "a test event from Switchyard"});
        let source = auth.principal().key_id.to_string();
        let published = events::publish(
            &self.services,
            "webhook.test",
            &data,
            Some(&source),
            Audience::Endpoint(&endpoint.id),
        )
        .await
        .map_err(publish_error)?;
        let delivery_id = published.delivery_ids.into_iter().next().unwrap_or_default();
        Ok(Accepted::Accepted(Json(TestSent { event_id: published.event_id, delivery_id })))
    }

    /// An endpoint's deliveries, newest first, optionally of one status. Scope:
    /// `webhooks:read`.
    #[oai(
        path = "/webhooks/:id/deliveries",
        method = "get",
        operation_id = "listWebhookDeliveries",
        transform = "webhooks_read"
    )]
    async fn deliveries(
        &self,
        _auth: Auth,
        id: Path<String>,
        status: Query<Option<String>>,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<DeliveryView>>, ApiError> {
        let status = match status.0.as_deref() {
            Some(s) => Some(
                s.parse::<DeliveryStatus>()
                    .map_err(|expected| ApiError::field("status", expected))?,
            ),
            None => None,
        };
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        self.endpoint_or_404(&id).await?;
        let (total, rows) =
            self.services.store.list_deliveries(&id, status, offset, page_size).await?;
        let items = rows.into_iter().map(|d| DeliveryView::new(d, None)).collect();
        Ok(Json(Page { total, page, page_size, items }))
    }

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
        let source = auth.principal().key_id.to_string();
        let published = events::publish(
            &self.services,
            &body.event_type,
            &body.data,
            Some(&source),
            Audience::Subscribers,
        )
        .await
        .map_err(publish_error)?;
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
        let source = auth.principal().key_id.to_string();
        let mut prepared = Vec::with_capacity(count);
        let mut errors = Vec::new();
        for (i, event) in body.0.events.iter().enumerate() {
            match events::prepare(
                &self.services,
                &event.event_type,
                &event.data,
                Some(&source),
                Audience::Subscribers,
            ) {
                Ok(p) => prepared.push(p),
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
        _auth: Auth,
        id: Path<String>,
    ) -> Result<Json<DeliveryView>, ApiError> {
        let d = self
            .services
            .store
            .delivery(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such delivery"))?;
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
        _auth: Auth,
        id: Path<String>,
    ) -> Result<Accepted<RetryAccepted>, ApiError> {
        let Some((endpoint_id, attempt)) =
            self.services.store.retry_delivery(&id, Utc::now()).await?
        else {
            return match self.services.store.delivery(&id).await? {
                Some(_) => Err(ApiError::conflict("only failed deliveries can be retried")),
                None => Err(ApiError::not_found("no such delivery")),
            };
        };
        let job = Job::DeliverWebhook(DeliverWebhookJob {
            delivery_id: id.0.clone(),
            endpoint_id,
            attempt,
        });
        // Written first; if the push is lost, the retry sweep enqueues it.
        if let Err(error) = self.services.queue.push(job).await {
            tracing::warn!(%error, "retry written but not enqueued; the sweep will");
        }
        Ok(Accepted::Accepted(Json(RetryAccepted { delivery_id: id.0, attempt })))
    }
}
