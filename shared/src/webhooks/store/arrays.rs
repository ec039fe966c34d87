//! PostgreSQL's writes on the delivery path, bound as one array per column (`UNNEST`): a
//! statement's text, and so its prepared plan, is the same for any number of rows, where a
//! VALUES list was a new statement (parsed, planned and cached anew) for each batch size, of
//! up to 50,000 parameters on the publish path.

use super::deliveries::{AttemptRecord, Health, NewDelivery, NewEvent};
use crate::{store::StoreError, webhooks::DeliveryStatus};

/// `INSERT INTO webhook_events … SELECT … FROM UNNEST(…)`: one array bind per column.
pub(super) fn push_events(qb: &mut sqlx::QueryBuilder<sqlx::Postgres>, events: &[NewEvent<'_>]) {
    qb.push(
        "INSERT INTO webhook_events (id, event_type, payload, source, created_at, tenant_id) \
         SELECT * FROM UNNEST(",
    );
    qb.push_bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(events.iter().map(|e| e.event_type).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(events.iter().map(|e| e.payload).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(events.iter().map(|e| e.source).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(events.iter().map(|e| e.now).collect::<Vec<_>>()).push("::timestamptz[], ");
    qb.push_bind(events.iter().map(|e| e.tenant_id.as_column()).collect::<Vec<_>>());
    qb.push("::text[])");
}

/// `INSERT INTO webhook_deliveries … SELECT … FROM UNNEST(…)`: pending, no attempt yet, due
/// when published.
pub(super) fn push_deliveries(
    qb: &mut sqlx::QueryBuilder<sqlx::Postgres>,
    rows: &[(&NewEvent<'_>, &NewDelivery)],
) {
    qb.push(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, \
         max_attempts, next_attempt_at, created_at, updated_at, tenant_id) \
         SELECT id, event_id, endpoint_id, ",
    );
    qb.push_bind(DeliveryStatus::Pending);
    qb.push(", 0, max_attempts, at, at, at, tenant_id FROM UNNEST(");
    qb.push_bind(rows.iter().map(|(_, d)| d.id.as_str()).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(rows.iter().map(|(e, _)| e.event_id).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(rows.iter().map(|(_, d)| d.endpoint_id.as_str()).collect::<Vec<_>>());
    qb.push("::text[], ");
    qb.push_bind(rows.iter().map(|(e, _)| e.max_attempts).collect::<Vec<_>>()).push("::int8[], ");
    qb.push_bind(rows.iter().map(|(e, _)| e.now).collect::<Vec<_>>()).push("::timestamptz[], ");
    qb.push_bind(rows.iter().map(|(e, _)| e.tenant_id.as_column()).collect::<Vec<_>>());
    qb.push("::text[]) AS r(id, event_id, endpoint_id, max_attempts, at, tenant_id)");
}

/// The attempt rows, the deliveries' new states and the lock on each endpoint whose health
/// changes, in one statement (one round trip fewer than a separate lock), then that health
/// in a second. The main query locks the endpoint rows in id order; PostgreSQL runs the
/// unreferenced data-modifying CTEs to completion after it. Every recorder runs this same
/// statement, so all take their locks in one order and two workers recording for the same
/// endpoints wait for each other instead of deadlocking. Inside the caller's transaction.
pub(super) async fn record_attempts(
    tx: &mut sqlx::PgConnection,
    records: &[AttemptRecord],
    health: &[Health<'_>],
) -> Result<(), StoreError> {
    // `health` is in endpoint id order. Only the rows with something to change are locked
    // and written: a batch of successes for an endpoint already healthy and recently
    // successful leaves its row alone (`SUCCESS_REFRESH`).
    let ids: Vec<&str> = health.iter().map(|h| h.endpoint_id).collect();
    let changing: Vec<String> = sqlx::query_scalar(
        "WITH v AS (
           SELECT * FROM UNNEST($1::text[], $2::int8[], $3::timestamptz[], $4::int4[],
             $5::float8[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])
             AS v(id, n, at, code, duration_ms, outcome, err, body, status, next_at)
         ), attempts AS (
           INSERT INTO webhook_attempts (delivery_id, n, at, status_code, duration_ms, outcome,
             error, response_body)
           SELECT id, n, at, code, duration_ms, outcome, err, body FROM v
           ON CONFLICT (delivery_id, n) DO NOTHING
         ), states AS (
           UPDATE webhook_deliveries SET attempts = v.n, status = v.status,
             next_attempt_at = v.next_at, claimed_until = NULL, last_status_code = v.code,
             last_error = v.err, updated_at = v.at,
             delivered_at = CASE WHEN v.status = 'delivered' THEN v.at
                                 ELSE webhook_deliveries.delivered_at END
           FROM v WHERE webhook_deliveries.id = v.id AND webhook_deliveries.attempts = v.n - 1
         )
         SELECT e.id FROM webhook_endpoints e
           JOIN UNNEST($11::text[], $12::timestamptz[]) AS h(id, quiet_after) ON e.id = h.id
         WHERE h.quiet_after IS NULL OR e.failure_count <> 0 OR e.last_success_at IS NULL
           OR e.last_success_at < h.quiet_after
         ORDER BY e.id FOR UPDATE OF e",
    )
    .bind(records.iter().map(|r| r.delivery_id.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.n).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.status_code).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.response_body.as_deref()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.delivery_status.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.next_attempt_at).collect::<Vec<_>>())
    .bind(&ids)
    .bind(health.iter().map(|h| h.quiet_after()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    if changing.is_empty() {
        return Ok(());
    }
    let health: Vec<&Health<'_>> =
        health.iter().filter(|h| changing.iter().any(|id| id == h.endpoint_id)).collect();
    let ids: Vec<&str> = health.iter().map(|h| h.endpoint_id).collect();
    sqlx::query(
        "UPDATE webhook_endpoints SET
           failure_count = CASE WHEN h.reset THEN h.failures ELSE failure_count + h.failures END,
           last_success_at = COALESCE(h.ok_at, last_success_at),
           last_failure_at = COALESCE(h.failed_at, last_failure_at),
           last_error = COALESCE(h.err, last_error),
           enabled = CASE WHEN h.gone THEN FALSE ELSE enabled END,
           disabled_reason = CASE WHEN h.gone THEN 'the endpoint answered 410 Gone'
                                  ELSE disabled_reason END,
           disabled_at = CASE WHEN h.gone THEN h.failed_at ELSE disabled_at END,
           -- A change other workers must see at their next claim (health alone is not).
           updated_at = CASE WHEN h.gone THEN h.failed_at ELSE updated_at END
         FROM UNNEST($1::text[], $2::bool[], $3::int8[], $4::timestamptz[], $5::timestamptz[],
           $6::text[], $7::bool[]) AS h(id, reset, failures, ok_at, failed_at, err, gone)
         WHERE webhook_endpoints.id = h.id",
    )
    .bind(&ids)
    .bind(health.iter().map(|h| h.reset).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.failures).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.last_success_at).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.last_failure_at).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.last_error).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.gone).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
