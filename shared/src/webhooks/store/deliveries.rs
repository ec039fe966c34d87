//! Webhook events, deliveries and attempts: the publish write, claims, the conditional
//! attempt record, and what the sweeps find.

use chrono::{DateTime, Utc};

use super::arrays;
use crate::{
    ids::{DeliveryId, EndpointId, EventId},
    on_pool,
    store::{Store, StoreError},
    tenants::Owner,
    webhooks::{AttemptOutcome, DeliveryStatus},
};

/// Whether a publish group was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Inserted {
    Written,
    /// The subscriptions changed since the version given: nothing was written.
    SubscriptionsChanged,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub max_attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The event's owner (and so the endpoint's).
    pub tenant_id: Owner,
}

pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, endpoint_id, status, attempts, max_attempts, \
    next_attempt_at, last_status_code, last_error, created_at, updated_at, delivered_at, tenant_id";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub n: i64,
    pub at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub duration_ms: f64,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// What [`Store::claim_delivery`] found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The attempt is this worker's.
    Claimed(ClaimedDelivery),
    /// Another worker holds this attempt until then (or held it and died: after `until`
    /// the attempt can be taken again).
    Held { until: DateTime<Utc> },
    /// The attempt was made already, or the delivery is finished: a duplicate message.
    Stale,
}

/// A delivery whose attempt this worker now holds, with its event's payload (`None` when
/// the event was deleted by retention).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub max_attempts: i64,
    pub created_at: DateTime<Utc>,
    pub payload: Option<String>,
    /// The endpoint's `updated_at` as the claim saw it (`None`: the endpoint row is gone), so
    /// a worker can tell that its cached copy predates a rotated secret or a new URL.
    pub endpoint_updated_at: Option<DateTime<Utc>>,
}

/// One endpoint's change of health from a batch of attempts, in order: consecutive failures
/// restart after the last success.
pub(super) struct Health<'a> {
    pub(super) endpoint_id: &'a str,
    /// A success in the batch: the count restarts at `failures`.
    pub(super) reset: bool,
    pub(super) failures: i64,
    pub(super) last_success_at: Option<DateTime<Utc>>,
    pub(super) last_failure_at: Option<DateTime<Utc>>,
    pub(super) last_error: Option<&'a str>,
    pub(super) gone: bool,
}

/// How stale an endpoint's `last_success_at` may be while it keeps succeeding: a batch of
/// successes only, for an endpoint already at no failures and a success this recent, writes
/// nothing to the endpoint row. Without it every record transaction rewrote (and locked)
/// the row of each endpoint it touched — at a steady stream to one endpoint, two workers
/// taking turns on one row, thousands of new versions a second.
pub const SUCCESS_REFRESH: chrono::Duration = chrono::Duration::seconds(1);

impl Health<'_> {
    /// For a batch of nothing but successes: the endpoint row is left as it is when its
    /// `last_success_at` is at or after this (and it counts no failures).
    pub(super) fn quiet_after(&self) -> Option<DateTime<Utc>> {
        let only_successes = self.failures == 0 && self.last_failure_at.is_none() && !self.gone;
        self.last_success_at.filter(|_| only_successes).map(|at| at - SUCCESS_REFRESH)
    }
}

fn endpoint_health(records: &[AttemptRecord]) -> Vec<Health<'_>> {
    let mut out: Vec<Health<'_>> = Vec::new();
    for r in records {
        let h = match out.iter_mut().position(|h| h.endpoint_id == r.endpoint_id.as_str()) {
            Some(i) => &mut out[i],
            None => {
                out.push(Health {
                    endpoint_id: &r.endpoint_id,
                    reset: false,
                    failures: 0,
                    last_success_at: None,
                    last_failure_at: None,
                    last_error: None,
                    gone: false,
                });
                out.last_mut().expect("just pushed")
            }
        };
        if r.success {
            h.reset = true;
            h.failures = 0;
            h.last_success_at = Some(r.at);
        } else {
            h.failures += 1;
            h.last_failure_at = Some(r.at);
            h.last_error = r.error.as_deref();
        }
        h.gone |= r.gone;
    }
    out.sort_by(|a, b| a.endpoint_id.cmp(b.endpoint_id));
    out
}

/// One delivery of a new event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
}

/// An event and its deliveries, to write together.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
    pub source: Option<&'a str>,
    /// Whose event it is; its deliveries are the same owner's.
    pub tenant_id: &'a Owner,
    pub deliveries: &'a [NewDelivery],
    pub max_attempts: i64,
    pub now: DateTime<Utc>,
}

/// A delivery whose next attempt is to be enqueued (again): which attempt, and when it is
/// due.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub attempt: i64,
    pub due_at: Option<DateTime<Utc>>,
}

/// The columns of a [`DueDelivery`]: its next attempt and when it is due.
const DUE_COLUMNS: &str = "id, endpoint_id, attempts + 1 AS attempt, next_attempt_at AS due_at";

/// A failed delivery given one more attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetriedDelivery {
    pub endpoint_id: EndpointId,
    pub attempt: i64,
}

/// The outcome of one attempt, as the worker records it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub n: i64,
    pub at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub duration_ms: f64,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// The delivery's status after this attempt: delivered, retrying or failed.
    pub delivery_status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Whether the endpoint answered 2xx (resets its failure count).
    pub success: bool,
    /// The endpoint answered 410 Gone: disable it now.
    pub gone: bool,
}

impl Store {
    /// Writes events, one pending delivery per endpoint of each and the publishes' audit
    /// entries, in one transaction.
    #[crate::boxed]
    pub async fn insert_events_with_deliveries(
        &self,
        events: &[NewEvent<'_>],
        audits: &[crate::audit::AuditEntry],
    ) -> Result<(), StoreError> {
        self.insert_events_at(events, audits, None).await.map(|_| ())
    }

    /// [`Store::insert_events_with_deliveries`], only while the subscriptions are still at
    /// `subscriptions_at` (the version they were read at, [`Store::subscriptions`]), checked
    /// in the same transaction (on PostgreSQL, the same statement); `None`: unchecked.
    #[crate::boxed]
    pub async fn insert_events_at(
        &self,
        events: &[NewEvent<'_>],
        audits: &[crate::audit::AuditEntry],
        subscriptions_at: Option<i64>,
    ) -> Result<Inserted, StoreError> {
        if events.is_empty() {
            return Ok(Inserted::Written);
        }
        // (event, delivery) pairs, so one multi-row INSERT covers many events.
        let deliveries: Vec<(&NewEvent<'_>, &NewDelivery)> =
            events.iter().flat_map(|e| e.deliveries.iter().map(move |d| (e, d))).collect();
        match self {
            Store::Postgres(pool, spares) => {
                insert_on_postgres(pool, spares, events, &deliveries, audits, subscriptions_at)
                    .await
            }
            Store::Sqlite(pool, writer) => {
                let (_turn, mut tx) = writer.begin(pool).await?;
                for (i, chunk) in events.chunks(500).enumerate() {
                    // The first insert takes its rows only at the version given: none written
                    // means the subscriptions changed (no statement of its own to ask).
                    let gate = if i == 0 { subscriptions_at } else { None };
                    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                        "INSERT INTO webhook_events (id, event_type, payload, source, \
                         created_at, tenant_id) SELECT * FROM (",
                    );
                    qb.push_values(chunk, |mut b, e| {
                        b.push_bind(e.event_id)
                            .push_bind(e.event_type)
                            .push_bind(e.payload)
                            .push_bind(e.source)
                            .push_bind(e.now)
                            .push_bind(e.tenant_id);
                    });
                    qb.push(") WHERE ");
                    qb.push_bind(gate).push(" IS NULL OR ");
                    qb.push_bind(gate)
                        .push(" = (SELECT version FROM webhook_subscriptions_version)");
                    let written = qb.build().execute(&mut *tx).await?.rows_affected();
                    if written == 0 {
                        // Dropped, the transaction rolls back.
                        return Ok(Inserted::SubscriptionsChanged);
                    }
                }
                for chunk in deliveries.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, \
                         attempts, max_attempts, next_attempt_at, created_at, updated_at, \
                         tenant_id) ",
                    );
                    qb.push_values(chunk, |mut b, (e, d)| {
                        b.push_bind(&d.id)
                            .push_bind(e.event_id)
                            .push_bind(&d.endpoint_id)
                            .push_bind(DeliveryStatus::Pending)
                            .push_bind(0i64)
                            .push_bind(e.max_attempts)
                            .push_bind(e.now)
                            .push_bind(e.now)
                            .push_bind(e.now)
                            .push_bind(e.tenant_id);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                for chunk in audits.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("");
                    crate::audit_push_values!(qb, chunk.iter());
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(Inserted::Written)
            }
        }
    }

    /// Records attempts (from many deliveries at once, atomically): the attempt rows, the
    /// deliveries' new states, and each endpoint's health. PostgreSQL binds each as arrays
    /// to one function call in autocommit ([`arrays::record_attempts`]); SQLite, whose
    /// writes are one transaction at a time in-process, takes them as VALUES lists and a
    /// statement per endpoint in one transaction.
    #[crate::boxed]
    pub async fn record_attempts(&self, records: &[AttemptRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let health = endpoint_health(records);
        macro_rules! body {
            ($db:ty, $tx:ident) => {{
                for chunk in records.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO webhook_attempts (delivery_id, n, at, status_code, \
                         duration_ms, outcome, error, response_body) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(&r.delivery_id)
                            .push_bind(r.n)
                            .push_bind(r.at)
                            .push_bind(r.status_code)
                            .push_bind(r.duration_ms)
                            .push_bind(r.outcome)
                            .push_bind(&r.error)
                            .push_bind(&r.response_body);
                    });
                    qb.push(" ON CONFLICT (delivery_id, n) DO NOTHING");
                    qb.build().execute(&mut *$tx).await?;

                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "WITH v(id, n, status, next_at, code, err, at) AS (",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(&r.delivery_id)
                            .push_bind(r.n)
                            .push_bind(r.delivery_status.as_str())
                            .push_bind(r.next_attempt_at)
                            .push_bind(r.status_code)
                            .push_bind(&r.error)
                            .push_bind(r.at);
                    });
                    qb.push(
                        ") UPDATE webhook_deliveries SET attempts = v.n, status = v.status, \
                         next_attempt_at = v.next_at, claimed_until = NULL, \
                         last_status_code = v.code, last_error = v.err, updated_at = v.at, \
                         delivered_at = CASE WHEN v.status = 'delivered' THEN v.at \
                                             ELSE webhook_deliveries.delivered_at END \
                         FROM v WHERE webhook_deliveries.id = v.id AND webhook_deliveries.attempts = v.n - 1",
                    );
                    qb.build().execute(&mut *$tx).await?;
                }
                // Endpoint health in the same transaction (one commit, one WAL flush, for the
                // whole batch: a statement of its own per endpoint cost a flush each), unless
                // nothing but successes of a healthy endpoint (`SUCCESS_REFRESH`), last
                // and in endpoint id order, so workers recording for the same endpoints take
                // those row locks in one order, after their own delivery rows, and wait for
                // each other rather than deadlock.
                for h in &health {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET
                           failure_count = CASE WHEN $2 THEN $3 ELSE failure_count + $3 END,
                           last_success_at = COALESCE($4, last_success_at),
                           last_failure_at = COALESCE($5, last_failure_at),
                           last_error = COALESCE($6, last_error),
                           enabled = CASE WHEN $7 THEN FALSE ELSE enabled END,
                           disabled_reason = CASE WHEN $7 THEN 'the endpoint answered 410 Gone'
                                                  ELSE disabled_reason END,
                           disabled_at = CASE WHEN $7 THEN $5 ELSE disabled_at END,
                           -- A change other workers must see at their next claim (health alone is not).
                           updated_at = CASE WHEN $7 THEN $5 ELSE updated_at END
                         WHERE id = $1 AND ($8 IS NULL OR failure_count <> 0
                           OR last_success_at IS NULL OR last_success_at < $8)")
                    .bind(h.endpoint_id).bind(h.reset).bind(h.failures).bind(h.last_success_at)
                    .bind(h.last_failure_at).bind(h.last_error).bind(h.gone).bind(h.quiet_after())
                    .execute(&mut *$tx).await?;
                }
            }};
        }
        match self {
            Store::Postgres(pool, spares) => {
                let mut conn = spares.lend(pool).await?;
                arrays::record_attempts(&mut conn, records, &health).await?;
                conn.give_back();
            }
            Store::Sqlite(pool, writer) => {
                let (_turn, mut tx) = writer.begin(pool).await?;
                body!(sqlx::Sqlite, tx);
                tx.commit().await?;
            }
        }
        Ok(())
    }

    #[crate::boxed]
    pub async fn delivery(&self, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries_shown WHERE id = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql))
            .bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    #[crate::boxed]
    pub async fn delivery_attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AttemptRow>(
            "SELECT n, at, status_code, duration_ms, outcome, error, response_body
             FROM webhook_attempts WHERE delivery_id = $1 ORDER BY n")
            .bind(id).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// A page of an endpoint's deliveries, newest first, optionally of one status.
    #[crate::boxed]
    pub async fn list_deliveries(
        &self,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<DeliveryRow>), StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries_shown
             WHERE endpoint_id = $1 AND ($2 IS NULL OR status = $2)
             ORDER BY id DESC LIMIT $3 OFFSET $4"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql))
            .bind(endpoint_id).bind(status).bind(limit).bind(offset).fetch_all(pool).await)?;
        let (total,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "SELECT COUNT(*) FROM webhook_deliveries_shown WHERE endpoint_id = $1 AND ($2 IS NULL OR status = $2)")
            .bind(endpoint_id).bind(status).fetch_one(pool).await)?;
        Ok((total, rows))
    }

    /// Puts a failed delivery back for one more attempt now; returns (endpoint id, that
    /// attempt's number).
    #[crate::boxed]
    pub async fn retry_delivery(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: &crate::audit::AuditEntry,
    ) -> Result<Option<RetriedDelivery>, StoreError> {
        let row = crate::audited!(self, audit, tx => sqlx::query_as(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2,
               max_attempts = attempts + 1, updated_at = $2
             WHERE id = $1 AND status = 'failed' RETURNING endpoint_id, attempts + 1 AS attempt")
            .bind(id).bind(now).fetch_optional(&mut *tx).await?);
        Ok(row)
    }

    /// Deliveries due before `cutoff` but (presumably) not in the queue: waiting ones past
    /// their time, and attempts whose lease ran out (an attempt is claimed once due, so its
    /// `next_attempt_at` is before its lease's end: one range of the `due` index holds both).
    #[crate::boxed]
    pub async fn overdue_deliveries(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let sql = format!(
            "SELECT {DUE_COLUMNS} FROM webhook_deliveries
             WHERE status IN ('pending', 'retrying') AND next_attempt_at < $1
               AND (claimed_until IS NULL OR claimed_until < $1)
             ORDER BY next_attempt_at LIMIT $2"
        );
        let rows = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(cutoff).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Deliveries waiting for a later attempt (`retrying`, due after `now`), soonest first.
    /// Re-enqueued after the queue lost them. (The `IN` is the partial `due` index's
    /// predicate, spelled out for SQLite's planner, which does not derive it.)
    #[crate::boxed]
    pub async fn scheduled_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let sql = format!(
            "SELECT {DUE_COLUMNS} FROM webhook_deliveries
             WHERE status IN ('pending', 'retrying') AND status = 'retrying'
               AND claimed_until IS NULL AND next_attempt_at >= $1
             ORDER BY next_attempt_at LIMIT $2"
        );
        let rows = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Marks a delivery failed without an HTTP attempt (its endpoint is disabled or gone).
    #[crate::boxed]
    pub async fn fail_delivery(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = $2, claimed_until = NULL,
               next_attempt_at = NULL, updated_at = $3
             WHERE id = $1 AND status NOT IN ('delivered', 'failed')")
            .bind(id).bind(reason).bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Deletes attempts, finished deliveries and events older than `cutoff`, a bounded batch
    /// at a time; returns (attempts, deliveries, events) deleted.
    #[crate::boxed]
    pub async fn cleanup_webhooks(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<(u64, u64, u64), StoreError> {
        let attempts = self
            .delete_in_batches(
                "DELETE FROM webhook_attempts WHERE (delivery_id, n) IN
                   (SELECT delivery_id, n FROM webhook_attempts WHERE at < $1 LIMIT 2000)",
                2000,
                cutoff,
            )
            .await?;
        let deliveries = self
            .delete_in_batches(
                "DELETE FROM webhook_deliveries WHERE id IN
                   (SELECT id FROM webhook_deliveries WHERE status IN ('delivered', 'failed')
                      AND updated_at < $1 LIMIT 2000)",
                2000,
                cutoff,
            )
            .await?;
        let events = self
            .delete_in_batches(
                "DELETE FROM webhook_events WHERE id IN
                   (SELECT e.id FROM webhook_events e WHERE e.created_at < $1
                      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
                    LIMIT 2000)",
                2000,
                cutoff,
            )
            .await?;
        Ok((attempts, deliveries, events))
    }
}

/// PostgreSQL's publish write: one statement (a data-modifying CTE) is atomic by itself and
/// saves the round trips of BEGIN and COMMIT. Rows go as one array per column (UNNEST): the
/// statement's text, and so its prepared plan, is the same for any number of rows, where a
/// VALUES list was a new statement of up to 50,000 parameters for each group's size. Each
/// insert takes its rows only when the subscriptions are still at the version given (`ok`,
/// read in the statement's snapshot), and the statement answers whether they were.
async fn insert_on_postgres(
    pool: &sqlx::PgPool,
    spares: &crate::store::Spares,
    events: &[NewEvent<'_>],
    deliveries: &[(&NewEvent<'_>, &NewDelivery)],
    audits: &[crate::audit::AuditEntry],
    subscriptions_at: Option<i64>,
) -> Result<Inserted, StoreError> {
    const GATE: &str = " WHERE EXISTS (SELECT 1 FROM ok)";
    // Unchecked (`None`) writes whatever the version table holds, even no row at all.
    let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new("WITH ok AS (SELECT 1 WHERE ");
    qb.push_bind(subscriptions_at).push("::int8 IS NULL OR ");
    qb.push_bind(subscriptions_at)
        .push("::int8 = (SELECT version FROM webhook_subscriptions_version)), ev AS (");
    arrays::push_events(&mut qb, events);
    qb.push(GATE);
    if !deliveries.is_empty() {
        qb.push("), de AS (");
        arrays::push_deliveries(&mut qb, deliveries);
        qb.push(GATE);
    }
    if !audits.is_empty() {
        qb.push("), au AS (");
        arrays::push_audits(&mut qb, audits);
        qb.push(GATE);
    }
    qb.push(") SELECT EXISTS (SELECT 1 FROM ok)");
    let mut conn = spares.lend(pool).await?;
    let written: bool = qb.build_query_scalar().fetch_one(&mut *conn).await?;
    conn.give_back();
    Ok(if written { Inserted::Written } else { Inserted::SubscriptionsChanged })
}
