//! PostgreSQL's writes on the delivery path, bound as one array per column (`UNNEST`): a
//! statement's text, and so its prepared plan, is the same for any number of rows, where a
//! VALUES list was a new statement (parsed, planned and cached anew) for each batch size, of
//! up to 50,000 parameters on the publish path.

use super::deliveries::{AttemptRecord, Health, NewDelivery, NewEvent};
use crate::{audit::AuditEntry, store::StoreError, webhooks::DeliveryStatus};

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

/// `INSERT INTO audit_log … SELECT … FROM UNNEST(…)`: the publishes' audit entries.
pub(super) fn push_audits(qb: &mut sqlx::QueryBuilder<sqlx::Postgres>, audits: &[AuditEntry]) {
    qb.push("INSERT INTO audit_log (").push(crate::audit::COLUMNS);
    qb.push(") SELECT * FROM UNNEST(");
    qb.push_bind(audits.iter().map(|a| a.id.as_str()).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.at).collect::<Vec<_>>()).push("::timestamptz[], ");
    qb.push_bind(audits.iter().map(|a| a.tenant.as_column()).collect::<Vec<_>>());
    qb.push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.actor.key_id.as_deref()).collect::<Vec<_>>());
    qb.push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.actor.key_prefix.as_deref()).collect::<Vec<_>>());
    qb.push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.action).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.target_type).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.target_id.as_deref()).collect::<Vec<_>>());
    qb.push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.actor.client_addr.as_deref()).collect::<Vec<_>>());
    qb.push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.actor.user_agent.as_deref()).collect::<Vec<_>>());
    qb.push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.actor.request_id.as_deref()).collect::<Vec<_>>());
    qb.push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.outcome).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.changed.as_str()).collect::<Vec<_>>()).push("::text[], ");
    qb.push_bind(audits.iter().map(|a| a.detail.as_str()).collect::<Vec<_>>()).push("::text[])");
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

/// The attempt rows, the deliveries' new states and the health of each endpoint whose
/// health changes, in one call of `switchyard_record_attempts` (migration 0016): one round
/// trip in autocommit, where a transaction of `BEGIN` with the planner settings, the
/// statements and `COMMIT` was three. The function locks the changing endpoint rows in id
/// order before writing them; every recorder calls it, so two workers recording for the
/// same endpoints wait for each other instead of deadlocking.
pub(super) async fn record_attempts(
    conn: &mut sqlx::PgConnection,
    records: &[AttemptRecord],
    health: &[Health<'_>],
) -> Result<(), StoreError> {
    // `health` is in endpoint id order. Only the rows with something to change are locked
    // and written: a batch of successes for an endpoint already healthy and recently
    // successful leaves its row alone (`SUCCESS_REFRESH`).
    sqlx::query(
        "SELECT switchyard_record_attempts($1::text[], $2::int8[], $3::timestamptz[],
           $4::int4[], $5::float8[], $6::text[], $7::text[], $8::text[], $9::text[],
           $10::timestamptz[], $11::text[], $12::timestamptz[], $13::bool[], $14::int8[],
           $15::timestamptz[], $16::timestamptz[], $17::text[], $18::bool[])",
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
    .bind(health.iter().map(|h| h.endpoint_id).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.quiet_after()).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.reset).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.failures).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.last_success_at).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.last_failure_at).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.last_error).collect::<Vec<_>>())
    .bind(health.iter().map(|h| h.gone).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
