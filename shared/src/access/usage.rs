//! Usage analytics: one row per authenticated request, written in batches, aggregated per
//! key on demand.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use futures::TryStreamExt;

use super::series::{SeriesBuilder, SeriesPoint, SeriesWindow, UsageSample, nearest_rank};
use crate::on_pool;
use crate::store::{Store, StoreError};
use crate::tenants::Owner;

#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub key_id: Arc<str>,
    pub at: DateTime<Utc>,
    pub method: String,
    /// The route template (`/api/v1/jobs/{id}`), never the raw path.
    pub route: Arc<str>,
    pub status: u16,
    pub latency_ms: f64,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// The problem type slug of an error answer (`validation`, `not-found`, …).
    pub error_kind: Option<String>,
    /// The calling key's tenant.
    pub tenant_id: Owner,
}

/// One key's requests in a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyUsage {
    pub key_id: String,
    pub requests: i64,
    pub status_2xx: i64,
    pub status_3xx: i64,
    pub status_4xx: i64,
    pub status_5xx: i64,
    /// Nearest-rank percentiles (the smallest latency with at least that share at or below).
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub last_used_at: Option<DateTime<Utc>>,
}

type CountRow = (String, i64, i64, i64, i64, i64, Option<DateTime<Utc>>);

const COUNTS: &str = "
SELECT key_id, COUNT(*),
  SUM(CASE WHEN status BETWEEN 200 AND 299 THEN 1 ELSE 0 END),
  SUM(CASE WHEN status BETWEEN 300 AND 399 THEN 1 ELSE 0 END),
  SUM(CASE WHEN status BETWEEN 400 AND 499 THEN 1 ELSE 0 END),
  SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END),
  MAX(at)
FROM api_usage
WHERE at >= $1 AND at < $2 AND ($3 IS NULL OR key_id = $3) AND tenant_id = $4
GROUP BY key_id ORDER BY key_id";

impl Store {
    /// Inserts a batch in one statement.
    #[crate::boxed]
    pub async fn insert_usage(&self, events: &[UsageEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        macro_rules! insert {
            ($db:ty, $pool:expr) => {{
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO api_usage (key_id, at, method, route, status, latency_ms, \
                     client_addr, user_agent, error_kind, tenant_id) ",
                );
                qb.push_values(events, |mut b, e| {
                    b.push_bind(e.key_id.as_ref())
                        .push_bind(e.at)
                        .push_bind(&e.method)
                        .push_bind(e.route.as_ref())
                        .push_bind(i32::from(e.status))
                        .push_bind(e.latency_ms)
                        .push_bind(&e.client_addr)
                        .push_bind(&e.user_agent)
                        .push_bind(&e.error_kind)
                        .push_bind(&e.tenant_id);
                });
                qb.build().execute($pool).await.map(|r| r.rows_affected())
            }};
        }
        match self {
            Store::Sqlite(pool, writer) => {
                let _turn = writer.turn().await;
                insert!(sqlx::Sqlite, pool)?
            }
            Store::Postgres(pool, _) => insert!(sqlx::Postgres, pool)?,
        };
        Ok(())
    }

    /// Requests per key of one owner in `[since, until)`, by status class, with latency
    /// percentiles.
    #[crate::boxed]
    pub async fn usage_summary(
        &self,
        owner: &Owner,
        key_id: Option<&str>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<KeyUsage>, StoreError> {
        let rows: Vec<CountRow> = on_pool!(self, pool => sqlx::query_as(COUNTS)
            .bind(since).bind(until).bind(key_id).bind(owner).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for (key_id, requests, s2, s3, s4, s5, last) in rows {
            let mut usage = KeyUsage {
                key_id,
                requests,
                status_2xx: s2,
                status_3xx: s3,
                status_4xx: s4,
                status_5xx: s5,
                last_used_at: last,
                ..KeyUsage::default()
            };
            let [p50, p95, p99] = [0.5, 0.95, 0.99].map(|q| nearest_rank(q, requests));
            // Ranks are computed once and read with OFFSET on both backends, so the answer is
            // the same on SQLite (no percentile functions) and Postgres.
            let mut values = [0.0; 3];
            for (slot, rank) in values.iter_mut().zip([p50, p95, p99]) {
                let v: Option<(f64,)> = on_pool!(self, pool => sqlx::query_as(
                    "SELECT latency_ms FROM api_usage
                     WHERE key_id = $1 AND at >= $2 AND at < $3
                     ORDER BY latency_ms LIMIT 1 OFFSET $4")
                    .bind(&usage.key_id).bind(since).bind(until).bind(rank - 1)
                    .fetch_optional(pool).await)?;
                *slot = v.map_or(0.0, |(x,)| x);
            }
            [usage.p50_ms, usage.p95_ms, usage.p99_ms] = values;
            out.push(usage);
        }
        Ok(out)
    }

    /// The owner's requests in `window` (of one key, or every key) folded into steps — one
    /// point per step, or per step and key with `per_key`. `None` when the window holds
    /// more than `max_rows` requests (too many to fold in one answer).
    #[crate::boxed]
    pub async fn usage_series(
        &self,
        owner: &Owner,
        key_id: Option<&str>,
        window: &SeriesWindow,
        per_key: bool,
        max_rows: usize,
    ) -> Result<Option<Vec<SeriesPoint>>, StoreError> {
        const SAMPLES: &str = "SELECT at, key_id, status, latency_ms FROM api_usage
            WHERE at >= $1 AND at < $2 AND ($3 IS NULL OR key_id = $3) AND tenant_id = $4";
        let mut series = SeriesBuilder::default();
        let mut rows = 0usize;
        macro_rules! fold {
            ($pool:expr) => {{
                let mut samples = sqlx::query_as::<_, UsageSample>(SAMPLES)
                    .bind(window.since)
                    .bind(window.until)
                    .bind(key_id)
                    .bind(owner)
                    .fetch($pool);
                while let Some(sample) = samples.try_next().await? {
                    rows += 1;
                    if rows > max_rows {
                        return Ok(None);
                    }
                    series.add(window, sample, per_key);
                }
            }};
        }
        match self {
            Store::Sqlite(pool, _) => fold!(pool),
            Store::Postgres(pool, _) => fold!(pool),
        }
        Ok(Some(series.finish(window, per_key)))
    }

    /// Deletes usage rows before `cutoff`, in bounded batches; returns how many.
    #[crate::boxed]
    pub async fn delete_usage_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.delete_in_batches(
            "DELETE FROM api_usage WHERE id IN (SELECT id FROM api_usage WHERE at < $1 LIMIT 5000)",
            5000,
            cutoff,
        )
        .await
    }
}
