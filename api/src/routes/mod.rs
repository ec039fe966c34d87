//! The `/api/v1` operations, grouped by area; each area is one poem-openapi `OpenApi`.

mod audit;
mod events;
mod history;
mod jobs;
pub(crate) mod keys;
mod pidms;
mod queues;
mod sikka;
mod tenants;
mod usage;
mod webhooks;

use std::sync::Arc;

use poem_openapi::{
    ApiResponse, Object, OpenApiService, Tags,
    payload::Json,
    types::{ParseFromJSON, ToJSON},
};
use switchyard_shared::services::Services;

use crate::{auth::Authenticator, problem::ApiError};

#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Queues, jobs, canaries and schedules.
    Jobs,
    /// API keys and their usage.
    Keys,
    /// Webhook endpoints, events and deliveries.
    Webhooks,
    /// PIDKey inventory: checks, syncs, search.
    Pidms,
    /// Sikka practices and writebacks.
    Sikka,
    /// Tenants: each customer's keys, endpoints, events and usage, kept apart.
    Tenants,
}

/// One page of a list: `?page=1&page_size=50` (at most 500).
#[derive(Object)]
pub(crate) struct Page<T: ParseFromJSON + ToJSON> {
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
    pub items: Vec<T>,
}

/// 202 with the work's handle: stored and queued.
#[derive(ApiResponse)]
pub(crate) enum Accepted<T: poem_openapi::types::ToJSON + Send + Sync> {
    /// Accepted: the work is stored and queued.
    #[oai(status = 202)]
    Accepted(Json<T>),
}

pub(crate) const MAX_PAGE_SIZE: i64 = 500;

/// One page of a keyset-paged list, newest first: `?limit=50` (at most 500) and
/// `before` = the previous page's `next_cursor`. A page costs the same however deep.
#[derive(Object)]
pub(crate) struct CursorPage<T: ParseFromJSON + ToJSON> {
    pub items: Vec<T>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// An optional query parameter parsed as a typed state (`status=failed`): a 422 naming the
/// parameter and what it may be.
pub(crate) fn parse_param<T: std::str::FromStr<Err = String>>(
    name: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, ApiError> {
    value.map(|v| v.parse::<T>().map_err(|expected| ApiError::field(name, expected))).transpose()
}

/// A time window's bounds in order, when both are given.
pub(crate) fn check_window(
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), ApiError> {
    match (since, until) {
        (Some(s), Some(u)) if s >= u => Err(ApiError::field("since", "must be before `until`")),
        _ => Ok(()),
    }
}

/// Validates a keyset page's `limit` (default 50).
pub(crate) fn keyset_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_PAGE_SIZE}")));
    }
    Ok(limit)
}

/// A keyset page from `rows` fetched with `limit + 1`: the first `limit`, and the cursor
/// (the last one's id) when there were more.
pub(crate) fn cursor_page<R, T: ParseFromJSON + ToJSON>(
    mut rows: Vec<R>,
    limit: i64,
    id: impl Fn(&R) -> String,
    view: impl FnMut(R) -> T,
) -> CursorPage<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(&id) } else { None };
    CursorPage { items: rows.into_iter().map(view).collect(), next_cursor }
}

/// Validates `page`/`page_size` and returns (page, page_size, offset).
/// The last page a list answers: bounds the offset (page × size stays far from overflow on
/// either backend; PostgreSQL refuses a negative OFFSET, SQLite would wrap).
pub(crate) const MAX_PAGE: i64 = 1_000_000;

pub(crate) fn page_bounds(
    page: Option<i64>,
    size: Option<i64>,
) -> Result<(i64, i64, i64), ApiError> {
    let page = page.unwrap_or(1);
    let size = size.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(ApiError::field("page", format!("must be between 1 and {MAX_PAGE}")));
    }
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(ApiError::field("page_size", "must be between 1 and 500"));
    }
    Ok((page, size, (page - 1) * size))
}

pub(crate) type Apis = (
    queues::QueuesApi,
    keys::KeysApi,
    usage::UsageApi,
    webhooks::WebhooksApi,
    events::EventsApi,
    pidms::PidmsApi,
    sikka::SikkaApi,
    tenants::TenantsApi,
    audit::AuditApi,
    history::HistoryApi,
    jobs::JobsApi,
);

pub(crate) fn openapi(services: &Services, auth: &Arc<Authenticator>) -> OpenApiService<Apis, ()> {
    let apis = (
        queues::QueuesApi { services: services.clone() },
        keys::KeysApi { services: services.clone(), auth: Arc::clone(auth) },
        usage::UsageApi { services: services.clone() },
        webhooks::WebhooksApi { services: services.clone() },
        events::EventsApi { services: services.clone() },
        pidms::PidmsApi { services: services.clone() },
        sikka::SikkaApi { services: services.clone() },
        tenants::TenantsApi { services: services.clone(), auth: Arc::clone(auth) },
        audit::AuditApi { services: services.clone() },
        history::HistoryApi { services: services.clone() },
        jobs::JobsApi { services: services.clone() },
    );
    OpenApiService::new(apis, "Switchyard", env!("CARGO_PKG_VERSION"))
        .description(
            "A job-queue worker fleet for integration work: signed webhook deliveries, PIDKey \
             batch checks, Sikka writebacks, scheduled maintenance.\n\n\
             Every `/api/v1` route takes an API key (`Authorization: Bearer sy_…` or \
             `X-API-Key`), needs the scope named in its description, and answers errors as \
             RFC 9457 `application/problem+json`. Responses carry `X-RateLimit-Limit`, \
             `X-RateLimit-Remaining` and `X-RateLimit-Reset`; POSTs that enqueue work accept \
             `Idempotency-Key`.",
        )
        .server("/api/v1")
}
