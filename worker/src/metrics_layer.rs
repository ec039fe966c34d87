//! Our tower layer around every job: waits out sub-second schedules, then records wait,
//! duration, outcome, attempts and in-flight counts (the job metrics of `shared::telemetry`), inside a
//! span that carries the job id.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use apalis::prelude::{AbortError, BoxDynError, Task};
use futures::{FutureExt, future::BoxFuture};
use switchyard_shared::{
    jobs::{Message, now_ms},
    queue::QueueName,
    telemetry,
};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::handlers::Outcome;

use switchyard_shared::queue::MAX_ATTEMPTS;
/// Longest wait the layer does itself for a job fetched before its millisecond due time.
const MAX_EARLY_WAIT: Duration = Duration::from_secs(2);

/// Jobs running now in this process, per queue, with their start times.
#[derive(Default)]
pub(crate) struct Inflight {
    next: AtomicU64,
    running: Mutex<HashMap<u64, Instant>>,
}

impl Inflight {
    fn start(self: &Arc<Self>, queue: QueueName) -> InflightGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running.lock().expect("inflight lock").insert(id, Instant::now());
        metrics::gauge!(telemetry::WORKER_INFLIGHT, "queue" => queue.as_str()).increment(1.0);
        InflightGuard { registry: Arc::clone(self), id, queue }
    }

    /// Seconds the longest-running job has run, 0 when idle.
    pub(crate) fn max_age_seconds(&self) -> f64 {
        let running = self.running.lock().expect("inflight lock");
        running.values().map(|t| t.elapsed().as_secs_f64()).fold(0.0, f64::max)
    }
}

/// Decrements the gauge however the job ends (including a timeout dropping the future).
struct InflightGuard {
    registry: Arc<Inflight>,
    id: u64,
    queue: QueueName,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.registry.running.lock().expect("inflight lock").remove(&self.id);
        metrics::gauge!(telemetry::WORKER_INFLIGHT, "queue" => self.queue.as_str()).decrement(1.0);
    }
}

#[derive(Clone)]
pub(crate) struct JobMetricsLayer {
    queue: QueueName,
    inflight: Arc<Inflight>,
}

impl JobMetricsLayer {
    pub(crate) fn new(queue: QueueName, inflight: Arc<Inflight>) -> Self {
        Self { queue, inflight }
    }
}

impl<S> Layer<S> for JobMetricsLayer {
    type Service = JobMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        JobMetrics { inner, queue: self.queue, inflight: Arc::clone(&self.inflight) }
    }
}

#[derive(Clone)]
pub(crate) struct JobMetrics<S> {
    inner: S,
    queue: QueueName,
    inflight: Arc<Inflight>,
}

impl<S> Service<Task<Message>> for JobMetrics<S>
where
    S: Service<Task<Message>, Response = Outcome> + Clone + Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Future: Send,
{
    type Response = Outcome;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<Outcome, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Message>) -> Self::Future {
        // The clone is the one that was driven to readiness; keep the fresh one for later.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let queue = self.queue;
        let inflight = Arc::clone(&self.inflight);
        let job = task.args.job.kind();
        let due_ms = task.args.due_at_ms();
        let attempt = task.attempt() + 1 + task.args.failures as usize;
        let job_id = task.task_id().map(ToString::to_string).unwrap_or_default();
        let span = tracing::info_span!("job", job_id = %job_id, queue = %queue, job, attempt);
        async move {
            let early = due_ms - now_ms();
            if early > 0 {
                tokio::time::sleep(Duration::from_millis(early as u64).min(MAX_EARLY_WAIT)).await;
            }
            let labels = [("queue", queue.as_str()), ("job", job)];
            let wait = (now_ms() - due_ms).max(0) as f64 / 1000.0;
            metrics::histogram!(telemetry::JOB_WAIT, &labels).record(wait);
            let _guard = inflight.start(queue);
            let started = Instant::now();
            let result = inner.call(task).await.map_err(Into::into);
            metrics::histogram!(telemetry::JOB_DURATION, &labels)
                .record(started.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok(Outcome::Success) => "success",
                Ok(Outcome::RetryScheduled) => "retry",
                Ok(Outcome::Failed) => "failed",
                Err(e) if e.downcast_ref::<AbortError>().is_some() => "dead",
                Err(_) if attempt >= MAX_ATTEMPTS => "dead",
                Err(_) => "failed",
            };
            if let Err(e) = &result {
                tracing::warn!(outcome, error = %e, "job failed");
            }
            register_outcomes(queue, job);
            metrics::counter!(telemetry::JOBS_COMPLETED,
                "queue" => queue.as_str(), "job" => job, "outcome" => outcome)
            .increment(1);
            metrics::histogram!(telemetry::JOB_ATTEMPTS, &labels).record(attempt as f64);
            result
        }
        .instrument(span)
        .boxed()
    }
}

/// The first time a kind of job finishes in this process, every outcome of it is registered
/// at zero: an error ratio is then 0 %, not "no data", and an alert's `increase()` sees the
/// first failure (from no series to 1 is no increase).
fn register_outcomes(queue: QueueName, job: &'static str) {
    static SEEN: Mutex<Vec<(QueueName, &'static str)>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().expect("outcomes lock");
    if seen.contains(&(queue, job)) {
        return;
    }
    seen.push((queue, job));
    for outcome in ["success", "retry", "failed", "dead"] {
        metrics::counter!(telemetry::JOBS_COMPLETED,
            "queue" => queue.as_str(), "job" => job, "outcome" => outcome)
        .increment(0);
    }
}
