//! What operators look back over: events with their delivery counts, deliveries across
//! endpoints, and the recovery of an endpoint's failed deliveries. Lists page newest first by
//! keyset (`before` an id; ids are monotonic), so a page costs the same however deep.

use chrono::{DateTime, Utc};

use super::deliveries::{DELIVERY_COLUMNS, DeliveryRow};
use crate::{
    audit::AuditEntry,
    ids::{EndpointId, EventId},
    on_pool,
    store::{Store, StoreError},
    tenants::Owner,
    webhooks::DeliveryStatus,
};

/// An event with how its deliveries stand.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: EventId,
    pub event_type: String,
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
    pub tenant_id: Owner,
    pub deliveries: i64,
    pub pending: i64,
    pub delivering: i64,
    pub retrying: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// Which events to list: one owner's, filtered, older than `before`.
#[derive(Debug, Clone)]
pub struct EventFilter {
    pub owner: Owner,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<String>,
}

/// Which deliveries to list, across endpoints.
#[derive(Debug, Clone)]
pub struct DeliveryFilter {
    pub owner: Owner,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    pub endpoint_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<String>,
}

/// Counts per status of a page of events, joined once the page is chosen (so the count
/// costs the page, not the table).
const EVENT_PAGE: &str = "
WITH page AS (
  SELECT id, event_type, source, created_at, tenant_id FROM webhook_events
  WHERE {where} ORDER BY id DESC LIMIT {limit}
)
SELECT p.id, p.event_type, p.source, p.created_at, p.tenant_id,
  COUNT(d.id) AS deliveries,
  COALESCE(SUM(CASE WHEN d.status = 'pending' THEN 1 ELSE 0 END), 0) AS pending,
  COALESCE(SUM(CASE WHEN d.status = 'delivering' THEN 1 ELSE 0 END), 0) AS delivering,
  COALESCE(SUM(CASE WHEN d.status = 'retrying' THEN 1 ELSE 0 END), 0) AS retrying,
  COALESCE(SUM(CASE WHEN d.status = 'delivered' THEN 1 ELSE 0 END), 0) AS delivered,
  COALESCE(SUM(CASE WHEN d.status = 'failed' THEN 1 ELSE 0 END), 0) AS failed
FROM page p LEFT JOIN webhook_deliveries_shown d ON d.event_id = p.id
GROUP BY p.id, p.event_type, p.source, p.created_at, p.tenant_id
ORDER BY p.id DESC";

impl Store {
    /// A page of events, newest first, with their delivery counts.
    #[crate::boxed]
    pub async fn list_events(
        &self,
        f: &EventFilter,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let sql = EVENT_PAGE
            .replace(
                "{where}",
                "tenant_id = $1 AND ($2 IS NULL OR event_type = $2) AND ($3 IS NULL OR created_at >= $3)
                 AND ($4 IS NULL OR created_at < $4) AND ($5 IS NULL OR id < $5)",
            )
            .replace("{limit}", "$6");
        let rows = on_pool!(self, pool => sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&f.owner).bind(&f.event_type).bind(f.since).bind(f.until).bind(&f.before)
            .bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// One event with its delivery counts, and its payload.
    #[crate::boxed]
    pub async fn event(&self, id: &str) -> Result<Option<(EventRow, String)>, StoreError> {
        let sql = EVENT_PAGE.replace("{where}", "id = $1").replace("{limit}", "1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id).fetch_optional(pool).await)?;
        let Some(row) = row else { return Ok(None) };
        let payload: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT payload FROM webhook_events WHERE id = $1").bind(id).fetch_optional(pool).await)?;
        Ok(payload.map(|(p,)| (row, p)))
    }

    /// Every delivery of an event, oldest first.
    #[crate::boxed]
    pub async fn event_deliveries(&self, event_id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries_shown WHERE event_id = $1 ORDER BY id"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(event_id).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// A page of deliveries across endpoints, newest first.
    #[crate::boxed]
    pub async fn search_deliveries(
        &self,
        f: &DeliveryFilter,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let columns: Vec<String> =
            DELIVERY_COLUMNS.split(", ").map(|c| format!("d.{}", c.trim())).collect();
        let sql = format!(
            "SELECT {} FROM webhook_deliveries_shown d
             LEFT JOIN webhook_events e ON e.id = d.event_id
             WHERE d.tenant_id = $1 AND ($2 IS NULL OR d.status = $2)
               AND ($3 IS NULL OR e.event_type = $3) AND ($4 IS NULL OR d.endpoint_id = $4)
               AND ($5 IS NULL OR d.created_at >= $5) AND ($6 IS NULL OR d.created_at < $6)
               AND ($7 IS NULL OR d.id < $7)
             ORDER BY d.id DESC LIMIT $8",
            columns.join(", ")
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&f.owner).bind(f.status).bind(&f.event_type).bind(&f.endpoint_id)
            .bind(f.since).bind(f.until).bind(&f.before).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Gives every failed delivery of `endpoint` created in [since, until) one more attempt
    /// now, with `audit` in the same transaction; returns (delivery id, attempt) of each.
    /// Idempotent: a delivery recovered is pending, so a repeat finds it no more.
    #[crate::boxed]
    pub async fn recover_deliveries(
        &self,
        endpoint: &EndpointId,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = crate::audited!(self, audit, tx => sqlx::query_as(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4,
               max_attempts = attempts + 1, updated_at = $4
             WHERE endpoint_id = $1 AND status = 'failed' AND created_at >= $2
               AND ($3 IS NULL OR created_at < $3)
             RETURNING id, attempts + 1")
            .bind(endpoint).bind(since).bind(until).bind(now).fetch_all(&mut *tx).await?);
        Ok(rows)
    }

    /// Attempts per step of `step_secs` (aligned to the epoch) in [since, until), and how
    /// many failed (anything but a 2xx answer), of the owner's deliveries; every step
    /// present, oldest first: (step start, attempts, failed).
    #[crate::boxed]
    pub async fn attempt_series(
        &self,
        owner: &Owner,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        step_secs: i64,
    ) -> Result<Vec<(DateTime<Utc>, i64, i64)>, StoreError> {
        const BODY: &str = "COUNT(*),
               COALESCE(SUM(CASE WHEN a.status_code BETWEEN 200 AND 299 THEN 0 ELSE 1 END), 0)
             FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
             WHERE a.at >= $1 AND a.at < $2 AND d.tenant_id = $4
             GROUP BY 1 ORDER BY 1";
        // The one thing the backends spell apart: seconds since the epoch of a timestamp.
        let sql = match self {
            Store::Sqlite(..) => {
                format!("SELECT CAST(strftime('%s', a.at) AS INTEGER) / $3, {BODY}")
            }
            Store::Postgres(..) => {
                format!("SELECT CAST(floor(extract(epoch FROM a.at) / $3) AS BIGINT), {BODY}")
            }
        };
        let rows: Vec<(i64, i64, i64)> = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(since).bind(until).bind(step_secs).bind(owner).fetch_all(pool).await)?;
        Ok(steps_covering(since, until, step_secs)
            .map(|bucket| {
                let (attempts, failed) =
                    rows.iter().find(|(b, _, _)| *b == bucket).map_or((0, 0), |(_, n, f)| (*n, *f));
                let at = DateTime::from_timestamp(bucket * step_secs, 0).unwrap_or(since);
                (at, attempts, failed)
            })
            .collect())
    }
}

/// The epoch-aligned steps of `step_secs` that hold some instant of [since, until) — to the
/// millisecond: an `until` a fraction into a step still holds that step.
fn steps_covering(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    step_secs: i64,
) -> std::ops::RangeInclusive<i64> {
    let first = since.timestamp().div_euclid(step_secs);
    let last = (until.timestamp_millis() - 1).div_euclid(step_secs * 1000);
    first..=last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_cover_a_fraction_of_the_last_one() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let minute = |s: &str| at(s).timestamp() / 60;
        let steps = steps_covering(at("2026-12-03T08:44:10Z"), at("2026-12-03T08:45:00.5Z"), 60);
        assert_eq!(steps, minute("2026-12-03T08:44:00Z")..=minute("2026-12-03T08:45:00Z"));
        let steps = steps_covering(at("2026-12-03T08:44:10Z"), at("2026-12-03T08:45:00Z"), 60);
        assert_eq!(steps, minute("2026-12-03T08:44:00Z")..=minute("2026-12-03T08:44:00Z"));
    }
}
