//! Housekeeping jobs enqueued by the scheduler.

use std::time::Duration;

use apalis::prelude::BoxDynError;
use switchyard_shared::jobs::{AuditRetentionJob, QueueVacuumJob, UsageRetentionJob};

use super::{JobDeps, Outcome};

/// Trims done and dead records older than the retention period from one queue, and the
/// canary runs of the same age.
pub(super) async fn queue_vacuum(
    deps: &JobDeps,
    job: QueueVacuumJob,
) -> Result<Outcome, BoxDynError> {
    let retention = Duration::from_secs(job.retention_secs);
    let jobs = deps.services.queue.vacuum(job.queue, retention).await?;
    let cutoff = chrono::Utc::now() - chrono::Duration::seconds(job.retention_secs as i64);
    let canaries = if job.queue == switchyard_shared::queue::QueueName::Maintenance {
        deps.services.store.delete_canary_runs_before(cutoff).await?
    } else {
        0
    };
    tracing::info!(queue = %job.queue, jobs_deleted = jobs, canary_runs_deleted = canaries, "queue vacuumed");
    Ok(Outcome::Success)
}

/// Deletes API usage records older than the retention period, and expired idempotency keys.
pub(super) async fn usage_retention(
    deps: &JobDeps,
    job: UsageRetentionJob,
) -> Result<Outcome, BoxDynError> {
    let now = chrono::Utc::now();
    let cutoff = now - chrono::Duration::seconds(job.retention_secs as i64);
    let usage = deps.services.store.delete_usage_before(cutoff).await?;
    let idempotency = deps.services.store.delete_expired_idempotency(now).await?;
    tracing::info!(
        usage_deleted = usage,
        idempotency_keys_deleted = idempotency,
        "usage retention"
    );
    Ok(Outcome::Success)
}

/// Deletes audit log entries older than the retention period (publishes' sooner).
pub(super) async fn audit_retention(
    deps: &JobDeps,
    job: AuditRetentionJob,
) -> Result<Outcome, BoxDynError> {
    let now = chrono::Utc::now();
    let cutoff = now - chrono::Duration::seconds(job.retention_secs as i64);
    let publishes = job.publish_retention_secs.map(|s| now - chrono::Duration::seconds(s as i64));
    let deleted = deps.services.store.delete_audit_before(cutoff, publishes).await?;
    tracing::info!(audit_entries_deleted = deleted, "audit retention");
    Ok(Outcome::Success)
}
