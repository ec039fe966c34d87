//! The canary: a no-op that records enqueue → done latency per queue.

use std::time::Duration;

use apalis::prelude::BoxDynError;
use switchyard_shared::{jobs::CanaryJob, telemetry};

use super::{JobDeps, Outcome};

pub(super) async fn run(deps: &JobDeps, job: CanaryJob) -> Result<Outcome, BoxDynError> {
    if job.hold_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.hold_ms)).await;
    }
    let now = chrono::Utc::now();
    let Some(run) = deps.services.store.complete_canary_run(&job.run_id, now).await? else {
        // The run row was vacuumed: nothing left to record.
        tracing::warn!(run_id = %job.run_id, "canary run not found");
        return Ok(Outcome::Success);
    };
    if run.completions == 1 {
        let latency = run.latency_ms.unwrap_or_default() as f64 / 1000.0;
        metrics::histogram!(telemetry::CANARY_LATENCY, "queue" => run.queue.clone())
            .record(latency);
        tracing::info!(run_id = %run.id, queue = %run.queue, latency_seconds = latency, "canary done");
    } else {
        tracing::warn!(run_id = %run.id, completions = run.completions, "canary ran again");
    }
    Ok(Outcome::Success)
}
