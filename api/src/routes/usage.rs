//! Usage analytics per key.

use chrono::{DateTime, Duration, Utc};
use poem::Body;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::Query,
    payload::{Binary, Json},
};
use switchyard_shared::{
    access::{SeriesPoint, SeriesWindow},
    services::Services,
};

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

/// One step of a series.
#[derive(Object)]
struct SeriesPointView {
    /// The step's start.
    at: DateTime<Utc>,
    requests: i64,
    by_status_class: StatusClasses,
    /// Nearest-rank percentiles of the step's server-side latency, in milliseconds (0 for
    /// a step without requests).
    latency_ms: Latency,
}

impl From<SeriesPoint> for SeriesPointView {
    fn from(p: SeriesPoint) -> Self {
        let [s2xx, s3xx, s4xx, s5xx] = p.by_class;
        let [p50, p95, p99] = p.latency_ms;
        Self {
            at: p.at,
            requests: p.requests,
            by_status_class: StatusClasses { s2xx, s3xx, s4xx, s5xx },
            latency_ms: Latency { p50, p95, p99 },
        }
    }
}

#[derive(Object)]
struct UsageSeries {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    /// Seconds per step.
    step: i64,
    /// The key counted; `null`: every key of the owner.
    key_id: Option<String>,
    /// Every step of the window, oldest first, empty ones at zero.
    points: Vec<SeriesPointView>,
}

#[derive(ApiResponse)]
enum UsageCsv {
    /// One row per step and key that had requests, oldest first.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Csv(Binary<Body>),
}

/// Steps in one series at most, and requests folded into one answer at most.
const MAX_STEPS: i64 = 1_440;
const MAX_ROWS: usize = 2_000_000;

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

impl UsageApi {
    /// The window (default: the last 24 h) and step (default: an hour) of a series.
    fn series_window(
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        step: Option<i64>,
    ) -> Result<SeriesWindow, ApiError> {
        let until = until.unwrap_or_else(Utc::now);
        let since = since.unwrap_or(until - Duration::hours(24));
        super::check_window(Some(since), Some(until))?;
        let step_secs = step.unwrap_or(3600);
        if step_secs < 60 {
            return Err(ApiError::field("step", "at least 60 seconds"));
        }
        let window = SeriesWindow { since, until, step_secs };
        if window.steps() > MAX_STEPS {
            return Err(ApiError::field(
                "step",
                format!(
                    "the window holds {} steps; at most {MAX_STEPS}: take a larger step",
                    window.steps()
                ),
            ));
        }
        Ok(window)
    }

    async fn series(
        &self,
        auth: &Auth,
        key_id: Option<&str>,
        tenant_id: Option<&str>,
        window: &SeriesWindow,
        per_key: bool,
    ) -> Result<Vec<SeriesPoint>, ApiError> {
        let owner = auth.principal().acting_for(&self.services.store, tenant_id).await?;
        self.services
            .store
            .usage_series(&owner, key_id, window, per_key, MAX_ROWS)
            .await?
            .ok_or_else(|| {
                ApiError::field(
                    "since",
                    format!("over {MAX_ROWS} requests in the window: narrow it or name a key_id"),
                )
            })
    }
}

#[OpenApi(tag = "ApiTags::Keys")]
impl UsageApi {
    /// Requests over time, in steps of `step` seconds (default 3600, at least 60, at most
    /// 1,440 steps) over [`since`, `until`) (default: the last 24 h): each step's requests by
    /// status class and latency percentiles, for one key (`key_id`) or every key of the
    /// caller's tenant (or the platform's, or the tenant a platform key names). Scope:
    /// `usage:read`.
    #[oai(
        path = "/usage/series",
        method = "get",
        operation_id = "getUsageSeries",
        transform = "usage_read"
    )]
    async fn usage_series(
        &self,
        auth: Auth,
        key_id: Query<Option<String>>,
        tenant_id: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        step: Query<Option<i64>>,
    ) -> Result<Json<UsageSeries>, ApiError> {
        let window = Self::series_window(since.0, until.0, step.0)?;
        let points =
            self.series(&auth, key_id.as_deref(), tenant_id.as_deref(), &window, false).await?;
        Ok(Json(UsageSeries {
            since: window.since,
            until: window.until,
            step: window.step_secs,
            key_id: key_id.0,
            points: points.into_iter().map(Into::into).collect(),
        }))
    }

    /// The same series as CSV, one row per step and key — a usage report to keep. Takes the
    /// same parameters. Scope: `usage:read`.
    #[oai(
        path = "/usage/export.csv",
        method = "get",
        operation_id = "exportUsage",
        transform = "usage_read"
    )]
    async fn usage_csv(
        &self,
        auth: Auth,
        key_id: Query<Option<String>>,
        tenant_id: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        step: Query<Option<i64>>,
    ) -> Result<UsageCsv, ApiError> {
        let window = Self::series_window(since.0, until.0, step.0)?;
        let points =
            self.series(&auth, key_id.as_deref(), tenant_id.as_deref(), &window, true).await?;
        let mut out = String::from(
            "at,key_id,requests,status_2xx,status_3xx,status_4xx,status_5xx,p50_ms,p95_ms,p99_ms\n",
        );
        for p in points {
            let [s2, s3, s4, s5] = p.by_class;
            let [p50, p95, p99] = p.latency_ms;
            out.push_str(&format!(
                "{},{},{},{s2},{s3},{s4},{s5},{p50},{p95},{p99}\n",
                p.at.to_rfc3339(),
                super::pidms::csv_field(p.key_id.as_deref().unwrap_or_default()),
                p.requests,
            ));
        }
        Ok(UsageCsv::Csv(Binary(Body::from_string(out))))
    }

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
