//! Job handlers, one module per kind of work. Every handler is idempotent: running it twice
//! leaves the same state, because the queue delivers at least once.

mod canary;
mod maintenance;

use std::{sync::Arc, time::Duration};

use crate::{pidms, sikka, webhooks};
use apalis::prelude::{AbortError, Attempt, BoxDynError, Data};
use serde::{Deserialize, Serialize};
use switchyard_shared::{
    jobs::{Job, Message},
    queue::{MAX_ATTEMPTS, Queue, QueueBackend},
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
    /// The job failed and the metrics layer pushed its retry (Redis: see `metrics_layer`).
    Failed,
}

/// What every handler may use; shared by all jobs of a worker process.
pub(crate) struct JobDeps {
    pub services: Services,
    pub webhooks: crate::webhooks::Webhooks,
    pub pidkey: crate::pidms::PidkeyClient,
    pub sikka: crate::sikka::Sikka,
}

/// The one apalis handler: routes a message to the handler of its kind. On Redis a failure
/// is retried here, not by apalis: see [`retry_failed`].
pub(crate) async fn dispatch(
    message: Message,
    deps: Data<Arc<JobDeps>>,
    attempt: Attempt,
) -> Result<Outcome, BoxDynError> {
    // Only Redis needs the message again (to retry a failure itself).
    let on_redis = matches!(deps.services.queue.backend(), QueueBackend::Redis(_));
    let kept = on_redis.then(|| message.clone());
    let failures = message.failures as usize;
    match (run(message.job, &deps).await, kept) {
        (Err(error), Some(message)) if error.downcast_ref::<AbortError>().is_none() => {
            let attempts = attempt.current() + failures;
            retry_failed(&deps.services.queue, &message, attempts, error).await
        }
        (result, _) => result,
    }
}

async fn run(job: Job, deps: &Arc<JobDeps>) -> Result<Outcome, BoxDynError> {
    match job {
        Job::Canary(job) => canary::run(deps, job).await,
        Job::QueueVacuum(job) => maintenance::queue_vacuum(deps, job).await,
        Job::UsageRetention(job) => maintenance::usage_retention(deps, job).await,
        Job::AuditRetention(job) => maintenance::audit_retention(deps, job).await,
        Job::DeliverWebhook(job) => webhooks::deliver(deps, job).await,
        Job::WebhookRetrySweep => webhooks::retry_sweep(&deps.services).await,
        Job::WebhookCleanup => webhooks::cleanup(&deps.services).await,
        Job::WebhookDisableFailing => webhooks::disable_failing(&deps.services).await,
        Job::PidmsBatch(job) => pidms::run_batch(&deps.services, &deps.pidkey, job).await,
        Job::PidmsSyncAll => pidms::sync_all(&deps.services).await,
        Job::PidmsBatchSweep => pidms::sweep_batches(&deps.services).await,
        Job::SikkaPracticesPull => sikka::pull_practices(&deps.services, &deps.sikka).await,
        Job::SikkaTokenRefresh => sikka::refresh_tokens(&deps.services, &deps.sikka).await,
        Job::SikkaWritebackSubmit(job) => sikka::submit(&deps.services, &deps.sikka, job).await,
        Job::SikkaWritebackPoll(job) => sikka::poll(&deps.services, &deps.sikka, job).await,
        Job::SikkaWritebackSweep => sikka::sweep(&deps.services).await,
    }
}

/// When a failed job runs again: 1 s after its first failure, doubling up to a minute, with
/// ±20 % jitter so that jobs that failed together do not come back together.
fn retry_delay(failures: u32) -> Duration {
    let base = Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60));
    switchyard_shared::webhooks::jitter(base, 0.2)
}

/// A failed job on Redis: pushed again through our own delayed set (which workers promote in
/// bounded chunks) carrying its failure count, and this message acknowledged; past
/// `MAX_ATTEMPTS` it goes to the dead set. apalis-redis would park it in its `scheduled`
/// set, whose fetch script promotes every due id with one `unpack()`: past ~8,000 falling
/// due in the same second (the store failing under a backlog) every fetch fails, and every
/// worker stops for good. Should the push fail too, apalis' own retry is the fallback.
async fn retry_failed(
    queue: &Queue,
    message: &Message,
    attempts: usize,
    error: BoxDynError,
) -> Result<Outcome, BoxDynError> {
    if attempts >= MAX_ATTEMPTS {
        return Err(permanent(error));
    }
    let delay = retry_delay(message.failures);
    match queue.push_retry(message, delay).await {
        Ok(_) => {
            tracing::warn!(%error, attempts, retry_in_ms = delay.as_millis() as u64, "job failed; retrying");
            Ok(Outcome::Failed)
        }
        Err(push) => {
            tracing::warn!(error = %push, "could not enqueue the retry of a failed job");
            Err(error)
        }
    }
}

/// A failure that retrying cannot fix: the job goes to the dead set.
pub(crate) fn permanent(error: impl Into<BoxDynError>) -> BoxDynError {
    Box::new(AbortError::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_a_minute() {
        for (failures, base) in [(0u32, 1.0f64), (1, 2.0), (3, 8.0), (6, 60.0), (20, 60.0)] {
            let d = retry_delay(failures).as_secs_f64();
            assert!((base * 0.8..=base * 1.2).contains(&d), "{failures}: {d}");
        }
    }
}
