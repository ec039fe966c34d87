//! Claims: an attempt taken for a lease before it is made (many deliveries in one
//! statement), why one was not, and the claim's plan.

use chrono::{DateTime, Utc};

use super::deliveries::{Claim, ClaimedDelivery};
use crate::{
    ids::DeliveryId,
    on_pool,
    store::{Store, StoreError},
    webhooks::DeliveryStatus,
};

/// The claim statement (after `$prefix`, say an `EXPLAIN`): a VALUES list, not arrays, on
/// both backends. It runs outside a `begin_by_key` transaction, and a plan cached for arrays
/// (10 rows estimated) while the table was nearly empty joined by a scan of the whole table
/// once it had grown (1.5 ms a claim at 1,000 deliveries/s); a list's exact length keeps it a
/// keyed nested loop. "Not finished" is spelled `NOT IN ('delivered', 'failed')`, not as the
/// open statuses: those are the predicate of the partial `open` and `due` indexes, and a plan
/// cached on a nearly empty table scanned every open row through one of them for each claim
/// (3–43 ms each beside dead endpoints' backlogs). Only the lease is written: no indexed
/// column changes, so the row is updated in place (migration 0015).
macro_rules! claim_query {
    ($db:ty, $prefix:expr, $wanted:expr, $lease_until:expr, $now:expr) => {{
        let mut qb = sqlx::QueryBuilder::<$db>::new($prefix);
        qb.push("WITH v(id, attempt) AS (");
        qb.push_values($wanted, |mut b, (id, attempt)| {
            b.push_bind(id).push_bind(*attempt);
        });
        qb.push(") UPDATE webhook_deliveries SET claimed_until = ");
        qb.push_bind($lease_until);
        qb.push(
            " FROM v WHERE webhook_deliveries.id = v.id AND webhook_deliveries.attempts = v.attempt - 1 \
             AND webhook_deliveries.status NOT IN ('delivered', 'failed') \
             AND (webhook_deliveries.claimed_until IS NULL OR webhook_deliveries.claimed_until < ",
        );
        qb.push_bind($now);
        qb.push(
            ") RETURNING webhook_deliveries.id, webhook_deliveries.event_id, webhook_deliveries.endpoint_id, webhook_deliveries.max_attempts, webhook_deliveries.created_at, \
             (SELECT e.payload FROM webhook_events e WHERE e.id = webhook_deliveries.event_id) AS payload, \
             (SELECT ep.updated_at FROM webhook_endpoints ep WHERE ep.id = webhook_deliveries.endpoint_id) AS endpoint_updated_at",
        );
        qb
    }};
}

impl Store {
    /// Takes attempts of many deliveries at once for `lease_until`, in one statement: each
    /// (delivery id, attempt) only when the previous attempts are all recorded, the delivery
    /// is not finished, and no other worker holds a live lease on it. Returns those taken,
    /// with their payloads; [`Store::unclaimed`] says why one was not.
    #[crate::boxed]
    pub async fn claim_deliveries(
        &self,
        wanted: &[(DeliveryId, i64)],
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let rows = match self {
            Store::Sqlite(pool, writer) => {
                let _turn = writer.turn().await;
                claim_query!(sqlx::Sqlite, "", wanted, lease_until, now)
                    .build_query_as::<ClaimedDelivery>()
                    .fetch_all(pool)
                    .await?
            }
            Store::Postgres(pool, spares) => {
                let mut conn = spares.lend(pool).await?;
                let rows = claim_query!(sqlx::Postgres, "", wanted, lease_until, now)
                    .build_query_as::<ClaimedDelivery>()
                    .fetch_all(&mut *conn)
                    .await?;
                conn.give_back();
                rows
            }
        };
        Ok(rows)
    }

    /// The plan of a claim of `wanted`, as the store would run it; nothing is claimed. One
    /// line per plan node (PostgreSQL) or step (SQLite): what `tests/it/store_plans.rs` holds
    /// to primary-key lookups.
    #[crate::boxed]
    pub async fn explain_claim(
        &self,
        wanted: &[(DeliveryId, i64)],
    ) -> Result<Vec<String>, StoreError> {
        let now = Utc::now();
        Ok(match self {
            Store::Sqlite(pool, _) => {
                claim_query!(sqlx::Sqlite, "EXPLAIN QUERY PLAN ", wanted, now, now)
                    .build_query_as::<(i64, i64, i64, String)>()
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|(_, _, _, detail)| detail)
                    .collect()
            }
            Store::Postgres(pool, _) => {
                claim_query!(sqlx::Postgres, "EXPLAIN (COSTS OFF) ", wanted, now, now)
                    .build_query_as::<(String,)>()
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|(node,)| node)
                    .collect()
            }
        })
    }

    /// Why attempt `attempt` of a delivery could not be claimed.
    #[crate::boxed]
    pub async fn unclaimed(&self, id: &str, attempt: i64) -> Result<Claim, StoreError> {
        let row: Option<(DeliveryStatus, i64, Option<DateTime<Utc>>)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT status, attempts, claimed_until FROM webhook_deliveries_shown WHERE id = $1")
            .bind(id).fetch_optional(pool).await)?;
        Ok(match row {
            Some((status, attempts, Some(until)))
                if status == DeliveryStatus::Delivering && attempts == attempt - 1 =>
            {
                Claim::Held { until }
            }
            _ => Claim::Stale,
        })
    }
}
