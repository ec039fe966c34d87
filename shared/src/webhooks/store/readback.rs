//! Parked deliveries read back into their endpoint's line, claimed as they are read: one
//! statement takes the oldest due deliveries of an endpoint (after a keyset cursor) and
//! leases them to this worker, so two workers draining one backlog share it instead of
//! racing for the same rows, and a delivery read back goes to its slot already claimed.

use chrono::{DateTime, Utc};

use crate::{
    on_pool,
    store::{Store, StoreError, begin_by_key},
    webhooks::ClaimedDelivery,
};

/// A delivery read back and claimed: the attempt to make, with what a claim returns.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReadBackClaim {
    pub attempt: i64,
    #[sqlx(flatten)]
    pub claimed: ClaimedDelivery,
}

/// Due: waiting for an attempt whose time has come, or held under a lease that ran out. The
/// first term is the predicate of the partial index `webhook_deliveries_open` (migration
/// 0015), written out so that both planners use it: a read-back then sees only open rows,
/// not every delivered one before them.
const DUE: &str = "status IN ('pending', 'retrying') \
                   AND ((claimed_until IS NULL AND next_attempt_at <= $2) OR claimed_until < $2)";

/// The read-back statement's parameters, in [`Store::read_back_sql`]'s order.
macro_rules! read_back_binds {
    ($query:expr, $endpoint:expr, $now:expr, $limit:expr, $lease_until:expr, $after:expr) => {{
        let q = $query.bind($endpoint).bind($now).bind($limit).bind($lease_until);
        match $after {
            Some(after) => q.bind(after),
            None => q,
        }
    }};
}

impl Store {
    /// Claims up to `limit` due deliveries of `endpoint_id`, oldest first, after `after`
    /// (a cursor: the last id the previous read-back took), leased until `lease_until`.
    /// PostgreSQL skips rows another worker is claiming at the same moment.
    #[crate::boxed]
    pub async fn claim_due_of(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        limit: i64,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReadBackClaim>, StoreError> {
        let sql = self.read_back_sql(after.is_some());
        // Bound for whichever backend the store holds.
        macro_rules! claim {
            () => {
                read_back_binds!(
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)),
                    endpoint_id,
                    now,
                    limit,
                    lease_until,
                    after
                )
            };
        }
        let mut rows: Vec<ReadBackClaim> = match self {
            Store::Sqlite(pool, writer) => {
                let _turn = writer.turn().await;
                claim!().fetch_all(pool).await?
            }
            Store::Postgres(pool, spares) => {
                let mut conn = spares.lend(pool).await?;
                let mut tx = begin_by_key(&mut conn).await?;
                let rows = claim!().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                conn.give_back();
                rows
            }
        };
        // RETURNING keeps no order: the line takes them in publish order.
        rows.sort_by(|a, b| a.claimed.id.cmp(&b.claimed.id));
        Ok(rows)
    }

    /// The read-back statement: `$1` endpoint, `$2` now, `$3` limit, `$4` lease end, and `$5`
    /// the cursor when there is one.
    fn read_back_sql(&self, with_cursor: bool) -> String {
        let after_clause = if with_cursor { "AND id > $5" } else { "" };
        let skip_locked = if self.kind() == "postgres" { "FOR UPDATE SKIP LOCKED" } else { "" };
        format!(
            "UPDATE webhook_deliveries SET claimed_until = $4
             WHERE id IN (SELECT id FROM webhook_deliveries
                          WHERE endpoint_id = $1 AND {DUE} {after_clause}
                          ORDER BY id LIMIT $3 {skip_locked})
             RETURNING attempts + 1 AS attempt, id, event_id, endpoint_id, max_attempts, created_at,
               (SELECT e.payload FROM webhook_events e WHERE e.id = webhook_deliveries.event_id) AS payload,
               (SELECT ep.updated_at FROM webhook_endpoints ep WHERE ep.id = webhook_deliveries.endpoint_id) AS endpoint_updated_at"
        )
    }

    /// The plan of a read-back from the start of `endpoint_id`'s backlog, as the store runs
    /// it (on PostgreSQL under [`begin_by_key`]); nothing is claimed. One line per plan
    /// node (PostgreSQL) or step (SQLite): what `tests/it/store_plans.rs` holds to an ordered index scan.
    #[crate::boxed]
    pub async fn explain_read_back(&self, endpoint_id: &str) -> Result<Vec<String>, StoreError> {
        let sql = self.read_back_sql(false);
        let now = Utc::now();
        let none: Option<&str> = None;
        Ok(match self {
            Store::Sqlite(pool, _) => {
                let q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(format!(
                    "EXPLAIN QUERY PLAN {sql}"
                )));
                let steps = read_back_binds!(q, endpoint_id, now, 32i64, now, none).fetch_all(pool);
                steps.await?.into_iter().map(|(_, _, _, detail)| detail).collect()
            }
            Store::Postgres(pool, _) => {
                let mut conn = pool.acquire().await?;
                let mut tx = begin_by_key(&mut conn).await?;
                let q = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(format!(
                    "EXPLAIN (COSTS OFF) {sql}"
                )));
                let nodes = read_back_binds!(q, endpoint_id, now, 32i64, now, none)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.rollback().await?;
                nodes.into_iter().map(|(node,)| node).collect()
            }
        })
    }

    /// Gives back a read-back claim that was not used (its endpoint's line gave up, the
    /// process is stopping): the delivery is due again at once, for any worker.
    #[crate::boxed]
    pub async fn release_claim(&self, id: &str, attempt: i64) -> Result<(), StoreError> {
        on_pool!(self, writing pool => sqlx::query(
            "UPDATE webhook_deliveries SET claimed_until = NULL
             WHERE id = $1 AND status NOT IN ('delivered', 'failed') AND attempts = $2 - 1")
            .bind(id).bind(attempt).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
