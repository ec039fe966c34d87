//! Usage analytics per key.

use chrono::{DateTime, Duration, Utc};
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};
use switchyard_shared::services::Services;

use super::ApiTags;
use crate::{
    auth::scopes::{Auth, usage_read},
    problem::ApiError,
};

pub struct UsageApi {
    pub services: Services,
}

#[derive(Object)]
struct UsageReport {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    keys: Vec<KeyUsageView>,
}

#[derive(Object)]
struct StatusClasses {
    #[oai(rename = "2xx")]
    s2xx: i64,
    #[oai(rename = "3xx")]
    s3xx: i64,
    #[oai(rename = "4xx")]
    s4xx: i64,
    #[oai(rename = "5xx")]
    s5xx: i64,
}

#[derive(Object)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
}

#[derive(Object)]
struct KeyUsageView {
    key_id: String,
    name: Option<String>,
    prefix: Option<String>,
    requests: i64,
    by_status_class: StatusClasses,
    /// Nearest-rank percentiles of server-side latency, in milliseconds.
    latency_ms: Latency,
    last_used_at: Option<DateTime<Utc>>,
}

#[OpenApi(tag = "ApiTags::Keys")]
impl UsageApi {
    /// Requests per key of the caller's tenant (or the platform's, or the tenant a platform
    /// key names) in a period (default: the last 24 h), by status class, with latency
    /// percentiles. Records arrive within a second or two of the request. Scope: `usage:read`.
    #[oai(path = "/usage", method = "get", operation_id = "getUsage", transform = "usage_read")]
    async fn usage(
        &self,
        auth: Auth,
        key_id: Query<Option<String>>,
        tenant_id: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
    ) -> Result<Json<UsageReport>, ApiError> {
        let until = until.0.unwrap_or_else(Utc::now);
        let since = since.0.unwrap_or(until - Duration::hours(24));
        super::check_window(Some(since), Some(until))?;
        let owner = auth.principal().acting_for(&self.services.store, tenant_id.as_deref()).await?;
        let rows =
            self.services.store.usage_summary(&owner, key_id.0.as_deref(), since, until).await?;
        let mut keys = Vec::with_capacity(rows.len());
        for u in rows {
            let key = self.services.store.api_key(&u.key_id).await?;
            keys.push(KeyUsageView {
                name: key.as_ref().map(|k| k.name.clone()),
                prefix: key.map(|k| k.prefix),
                key_id: u.key_id,
                requests: u.requests,
                by_status_class: StatusClasses {
                    s2xx: u.status_2xx,
                    s3xx: u.status_3xx,
                    s4xx: u.status_4xx,
                    s5xx: u.status_5xx,
                },
                latency_ms: Latency { p50: u.p50_ms, p95: u.p95_ms, p99: u.p99_ms },
                last_used_at: u.last_used_at,
            });
        }
        Ok(Json(UsageReport { since, until, keys }))
    }
}
