//! Job handlers, one module per kind of work. Every handler is idempotent: running it twice
//! leaves the same state, because the queue delivers at least once.

mod canary;
mod maintenance;

use std::sync::Arc;

use crate::{pidkey, sikka, webhooks};
use apalis::prelude::{AbortError, BoxDynError, Data};
use serde::{Deserialize, Serialize};
use switchyard_shared::{
    jobs::{Job, Message},
    services::Services,
};

/// What a job's run came to, for the metrics layer (errors are counted there too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Finished.
    Success,
    /// The handler recorded a failed attempt and pushed its own delayed retry.
    RetryScheduled,
}

/// What every handler may use; shared by all jobs of a worker process.
pub(crate) struct JobDeps {
    pub services: Services,
    pub webhooks: crate::webhooks::Webhooks,
    pub pidkey: crate::pidkey::PidkeyClient,
    pub sikka: crate::sikka::Sikka,
}

/// The one apalis handler: routes a message to the handler of its kind.
pub(crate) async fn dispatch(
    message: Message,
    deps: Data<Arc<JobDeps>>,
) -> Result<Outcome, BoxDynError> {
    match message.job {
        Job::Canary(job) => canary::run(&deps, job).await,
        Job::QueueVacuum(job) => maintenance::queue_vacuum(&deps, job).await,
        Job::UsageRetention(job) => maintenance::usage_retention(&deps, job).await,
        Job::DeliverWebhook(job) => webhooks::deliver(&deps, job).await,
        Job::WebhookRetrySweep => webhooks::retry_sweep(&deps.services).await,
        Job::WebhookCleanup => webhooks::cleanup(&deps.services).await,
        Job::WebhookDisableFailing => webhooks::disable_failing(&deps.services).await,
        Job::PidmsBatch(job) => pidkey::run_batch(&deps.services, &deps.pidkey, job).await,
        Job::PidmsSyncAll => pidkey::sync_all(&deps.services).await,
        Job::SikkaPracticesPull => sikka::pull_practices(&deps.services, &deps.sikka).await,
        Job::SikkaTokenRefresh => sikka::refresh_tokens(&deps.services, &deps.sikka).await,
        Job::SikkaWritebackSubmit(job) => sikka::submit(&deps.services, &deps.sikka, job).await,
        Job::SikkaWritebackPoll(job) => sikka::poll(&deps.services, &deps.sikka, job).await,
        Job::SikkaWritebackSweep => sikka::sweep(&deps.services).await,
    }
}

/// A failure that retrying cannot fix: the job goes to the dead set.
#[allow(dead_code)]
pub(crate) fn permanent(error: impl Into<BoxDynError>) -> BoxDynError {
    Box::new(AbortError::new(error))
}
