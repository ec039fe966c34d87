//! Webhook endpoints: create, list, change, delete, rotate the secret, test, and their
//! deliveries. Publishing and single deliveries are in `events.rs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use switchyard_shared::{
    access::Environment,
    audit::AuditEntry,
    ids::EndpointId,
    jobs::{DeliverWebhookJob, Job},
    netguard::NetGuard,
    services::Services,
    webhooks::events::{self, Audience},
    webhooks::{self, DeliveryStatus},
    webhooks::{EndpointPatch, EndpointRow, NewEndpoint, secret_context},
};

use super::{
    Accepted, ApiTags, Page,
    events::{DeliveryView, publish_error},
    page_bounds,
};
use crate::{
    auth::scopes::{Auth, webhooks_read, webhooks_write, webhooks_write_idempotent},
    auth::tenancy::owned,
    problem::{ApiError, FieldError},
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
    /// The tenant the endpoint belongs to (platform keys acting for a tenant; a tenant's
    /// key always creates in its own tenant).
    tenant_id: Option<String>,
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
    /// When an attempt last succeeded; while successes continue with no failure between
    /// them it is refreshed at most once a second.
    last_success_at: Option<DateTime<Utc>>,
    last_failure_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    disabled_reason: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
    rate_limit_per_second: Option<i64>,
    environment: String,
    /// The endpoint's tenant; `null` for a platform endpoint.
    tenant_id: Option<String>,
    /// While set, the previous secret still signs alongside the current one.
    previous_secret_valid_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<EndpointRow> for EndpointView {
    fn from(r: EndpointRow) -> Self {
        let patterns = r.patterns();
        Self {
            id: r.id.into_string(),
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
            tenant_id: r.tenant_id.tenant_id().map(ToString::to_string),
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
struct TestSent {
    event_id: String,
    delivery_id: String,
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

    /// The endpoint `id` when it belongs to the owner this request acts for, else 404.
    async fn endpoint_or_404(
        &self,
        auth: &Auth,
        id: &str,
        tenant_id: Option<&str>,
    ) -> Result<EndpointRow, ApiError> {
        let acting = auth.principal().acting_for(&self.services.store, tenant_id).await?;
        let row = self.services.store.endpoint(id).await?;
        owned(row, |r| &r.tenant_id, &acting, "no such webhook endpoint")
    }
}

/// Which failed deliveries to attempt again: those created in [`since`, `until`).
#[derive(Object)]
struct RecoverRequest {
    since: DateTime<Utc>,
    /// Default: now.
    until: Option<DateTime<Utc>>,
}

#[derive(Object)]
struct RecoverAccepted {
    /// Failed deliveries given one more attempt (0 when none was failed: a repeat finds
    /// those it recovered pending or delivered).
    count: u64,
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
        let owner = caller.acting_for(&self.services.store, body.tenant_id.as_deref()).await?;
        let mut errors = Vec::new();
        self.check_url(&body.url, caller.environment, &mut errors).await;
        check_patterns(&body.event_types, &mut errors);
        check_rate(body.rate_limit_per_second, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let id = EndpointId::generate();
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
            tenant_id: owner,
        };
        let audit = AuditEntry::new(
            &caller.actor,
            &new.tenant_id,
            "webhook.endpoint.created",
            "webhook_endpoint",
        )
        .target(new.id.as_str())
        .changed(&[
            ("url", true),
            ("event_types", true),
            ("description", new.description.is_some()),
            ("rate_limit_per_second", new.rate_limit_per_second.is_some()),
        ]);
        let row = self.services.store.insert_endpoint(&new, Utc::now(), &audit).await?;
        tracing::info!(endpoint_id = %row.id, "webhook endpoint created");
        Ok(Created::Created(Json(EndpointCreated { secret, endpoint: row.into() })))
    }

    /// The endpoints of the caller's tenant (or the platform's, or of the tenant a platform
    /// key names), newest first. Scope: `webhooks:read`.
    #[oai(
        path = "/webhooks",
        method = "get",
        operation_id = "listWebhooks",
        transform = "webhooks_read"
    )]
    async fn list(
        &self,
        auth: Auth,
        tenant_id: Query<Option<String>>,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<EndpointView>>, ApiError> {
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        let owner = auth.principal().acting_for(&self.services.store, tenant_id.as_deref()).await?;
        let (total, rows) = self.services.store.list_endpoints(&owner, offset, page_size).await?;
        Ok(Json(Page { total, page, page_size, items: rows.into_iter().map(Into::into).collect() }))
    }

    /// One endpoint, with its health. Scope: `webhooks:read`.
    #[oai(
        path = "/webhooks/:id",
        method = "get",
        operation_id = "getWebhook",
        transform = "webhooks_read"
    )]
    async fn get(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Json<EndpointView>, ApiError> {
        Ok(Json(self.endpoint_or_404(&auth, &id, tenant_id.as_deref()).await?.into()))
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
        tenant_id: Query<Option<String>>,
        body: Json<UpdateEndpoint>,
    ) -> Result<Json<EndpointView>, ApiError> {
        let existing = self.endpoint_or_404(&auth, &id, tenant_id.as_deref()).await?;
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
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &existing.tenant_id,
            "webhook.endpoint.updated",
            "webhook_endpoint",
        )
        .target(existing.id.as_str())
        .changed(&[
            ("url", patch.url.is_some()),
            ("description", patch.description.is_some()),
            ("event_types", patch.event_types.is_some()),
            ("rate_limit_per_second", patch.rate_limit_per_second.is_some()),
            ("enabled", patch.enabled.is_some()),
        ]);
        let row = self.services.store.update_endpoint(&id, &patch, Utc::now(), &audit).await?;
        Ok(Json(row.ok_or_else(|| ApiError::not_found("no such webhook endpoint"))?.into()))
    }

    /// Delete an endpoint. Scope: `webhooks:write`.
    #[oai(
        path = "/webhooks/:id",
        method = "delete",
        operation_id = "deleteWebhook",
        transform = "webhooks_write"
    )]
    async fn delete(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Deleted, ApiError> {
        let existing = self.endpoint_or_404(&auth, &id, tenant_id.as_deref()).await?;
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &existing.tenant_id,
            "webhook.endpoint.deleted",
            "webhook_endpoint",
        )
        .target(existing.id.as_str());
        if !self.services.store.delete_endpoint(&id, Utc::now(), &audit).await? {
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
    async fn rotate(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Json<SecretRotated>, ApiError> {
        let existing = self.endpoint_or_404(&auth, &id, tenant_id.as_deref()).await?;
        let secret = webhooks::generate_secret();
        let sealed = self.services.cipher.seal(&secret_context(&existing.id), secret.as_bytes());
        let now = Utc::now();
        let until = now + ROTATION_OVERLAP;
        self.services
            .store
            .rotate_endpoint_secret(
                &existing.id,
                &sealed,
                &existing.secret_sealed,
                until,
                now,
                &AuditEntry::new(
                    &auth.principal().actor,
                    &existing.tenant_id,
                    "webhook.endpoint.secret_rotated",
                    "webhook_endpoint",
                )
                .target(existing.id.as_str())
                .changed(&[("secret", true)]),
            )
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
    async fn test(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Accepted<TestSent>, ApiError> {
        let endpoint = self.endpoint_or_404(&auth, &id, tenant_id.as_deref()).await?;
        let data = serde_json::json!({"endpoint_id": endpoint.id, "message": "a test event from Switchyard"});
        let caller = auth.principal();
        let source = caller.key_id.to_string();
        let event = events::prepare(
            &self.services,
            &endpoint.tenant_id,
            "webhook.test",
            &data,
            Some(&source),
            Audience::Endpoint(&endpoint.id),
        )
        .map_err(publish_error)?
        .audited(
            &caller.actor,
            "webhook.endpoint.tested",
            Some(("webhook_endpoint", endpoint.id.as_str())),
        );
        let published = events::publish_one(&self.services, event).await.map_err(publish_error)?;
        let delivery_id = published.delivery_ids.into_iter().next().unwrap_or_default();
        Ok(Accepted::Accepted(Json(TestSent { event_id: published.event_id, delivery_id })))
    }

    /// Attempt again, now, every failed delivery of this endpoint created in [`since`,
    /// `until`): each gets one more attempt. Idempotent: a repeat finds them no longer
    /// failed. Scope: `webhooks:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/webhooks/:id/recover",
        method = "post",
        operation_id = "recoverWebhook",
        transform = "webhooks_write_idempotent"
    )]
    async fn recover(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
        body: Json<RecoverRequest>,
    ) -> Result<Accepted<RecoverAccepted>, ApiError> {
        super::check_window(Some(body.since), body.until)?;
        let endpoint = self.endpoint_or_404(&auth, &id, tenant_id.as_deref()).await?;
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &endpoint.tenant_id,
            "webhook.endpoint.recovered",
            "webhook_endpoint",
        )
        .target(endpoint.id.as_str());
        let recovered = self
            .services
            .store
            .recover_deliveries(&endpoint.id, body.since, body.until, Utc::now(), &audit)
            .await?;
        let count = recovered.len() as u64;
        let jobs = recovered
            .into_iter()
            .map(|(delivery, attempt)| {
                Job::DeliverWebhook(DeliverWebhookJob {
                    delivery_id: delivery.into(),
                    endpoint_id: endpoint.id.clone(),
                    attempt,
                })
            })
            .collect();
        // Written first; if the push is lost, the retry sweep enqueues them.
        if let Err(error) = self.services.queue.push_many(jobs).await {
            tracing::warn!(%error, "recovered deliveries written but not enqueued; the sweep will");
        }
        Ok(Accepted::Accepted(Json(RecoverAccepted { count })))
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
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
        status: Query<Option<String>>,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<DeliveryView>>, ApiError> {
        let status = super::parse_param::<DeliveryStatus>("status", status.0.as_deref())?;
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        self.endpoint_or_404(&auth, &id, tenant_id.as_deref()).await?;
        let (total, rows) =
            self.services.store.list_deliveries(&id, status, offset, page_size).await?;
        let items = rows.into_iter().map(|d| DeliveryView::new(d, None)).collect();
        Ok(Json(Page { total, page, page_size, items }))
    }
}
