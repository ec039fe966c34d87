//! Sending a canary: a run row in the store, then a no-op job on the queue.

mod store;

pub use store::CanaryRun;

use crate::{
    jobs::{CanaryJob, Job},
    queue::{QueueError, QueueName},
    services::Services,
    store::StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// A canary on its way: the run row's id and the queue job's id.
#[derive(Debug, Clone)]
pub struct SentCanary {
    pub run_id: String,
    pub job_id: String,
}

/// Records a canary run (write first) and pushes its job onto `queue` (enqueue second).
/// `hold_ms` keeps the job running that long, to watch slow-job behaviour.
#[crate::boxed]
pub async fn send(
    services: &Services,
    queue: QueueName,
    hold_ms: u64,
    audit: Option<crate::audit::AuditEntry>,
) -> Result<SentCanary, CanaryError> {
    let run_id = crate::ids::CanaryRunId::generate().into_string();
    let audit = audit.map(|a| a.target(run_id.as_str()));
    let now = chrono::Utc::now();
    services.store.insert_canary_run(&run_id, queue.as_str(), now, audit.as_ref()).await?;
    let job_id = services
        .queue
        .push(Job::Canary(CanaryJob { run_id: run_id.clone(), queue, hold_ms }))
        .await?;
    services.store.set_canary_job_id(&run_id, &job_id).await?;
    Ok(SentCanary { run_id, job_id })
}
