//! Housekeeping jobs enqueued by the scheduler.

use std::time::Duration;

use apalis::prelude::BoxDynError;
use switchyard_shared::jobs::QueueVacuumJob;

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
