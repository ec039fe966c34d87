//! Jobs and queues: depth per queue, one job, retry, canaries, schedules.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use switchyard_shared::{
    audit::AuditEntry,
    canary,
    queue::{JobRecord, QueueName, RetryOutcome},
    schedules::{ScheduleName, parse_cron},
    services::Services,
    tenants::Owner,
};

use super::{Accepted, ApiTags};
use crate::{
    auth::scopes::{Auth, jobs_read, jobs_write_idempotent},
    problem::ApiError,
};

pub struct QueuesApi {
    pub services: Services,
}

#[derive(Object)]
struct QueueList {
    /// `sqlite` (embedded) or `redis` (fleet).
    backend: String,
    queues: Vec<QueueView>,
}

#[derive(Object)]
struct QueueView {
    name: String,
    /// Due now, waiting for a worker.
    pending: u64,
    /// Due later (delayed retries, scheduled work).
    scheduled: u64,
    running: u64,
    /// Failed, waiting for a retry by the queue.
    failed: u64,
    /// Given up on; see `POST /jobs/{id}/retry`.
    dead: u64,
    oldest_pending_age_seconds: f64,
    /// The newest canary that went through this queue.
    canary: Option<CanaryView>,
}

#[derive(Object)]
struct CanaryView {
    run_id: String,
    job_id: Option<String>,
    enqueued_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    latency_seconds: Option<f64>,
    /// More than 1 means the job ran more than once (at-least-once delivery).
    completions: i64,
}

impl From<switchyard_shared::canary::CanaryRun> for CanaryView {
    fn from(r: switchyard_shared::canary::CanaryRun) -> Self {
        Self {
            run_id: r.id,
            job_id: r.job_id,
            enqueued_at: r.enqueued_at,
            completed_at: r.completed_at,
            latency_seconds: r.latency_ms.map(|ms| ms as f64 / 1000.0),
            completions: r.completions,
        }
    }
}

#[derive(Object)]
pub(super) struct JobView {
    id: String,
    queue: String,
    /// pending, scheduled, running, done, failed (waiting for a retry) or dead.
    status: String,
    attempts: u64,
    /// The message kind, e.g. `canary.v1`.
    kind: Option<String>,
    /// The queue message (ids only).
    message: Option<serde_json::Value>,
    /// The last result or error the worker reported.
    last_result: Option<String>,
    run_at: Option<DateTime<Utc>>,
    done_at: Option<DateTime<Utc>>,
    worker: Option<String>,
}

#[derive(Object)]
struct CanaryRequest {
    /// Keep the job running this long (at most 10 minutes), to watch slow-job behaviour.
    #[oai(default, validator(maximum(value = "600000")))]
    hold_ms: u64,
}

#[derive(Object)]
struct CanaryAccepted {
    run_id: String,
    job_id: String,
}

#[derive(ApiResponse)]
enum CanaryResponse {
    /// The canary is on its way; follow it with `GET /canaries/{run_id}` or `GET /jobs/{job_id}`.
    #[oai(status = 202)]
    Accepted(Json<CanaryAccepted>),
}

#[derive(ApiResponse)]
enum RetryResponse {
    /// The job is queued to run again now.
    #[oai(status = 202)]
    Accepted(Json<JobView>),
}

#[derive(Object)]
struct ScheduleView {
    name: String,
    /// The cron expression in force (seconds first), or none when switched off.
    cron: Option<String>,
    enabled: bool,
    /// The setting that changes it.
    env_var: String,
    next_run_at: Option<DateTime<Utc>>,
    last_tick_at: Option<DateTime<Utc>>,
    last_run_at: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    runs: i64,
    failures: i64,
    /// A run asked for with `POST /schedules/{name}/run`, not yet run by the leader.
    run_requested_at: Option<DateTime<Utc>>,
}

#[derive(Object)]
struct RunRequested {
    schedule: String,
    requested_at: DateTime<Utc>,
}

pub(super) fn parse_queue(name: &str) -> Result<QueueName, ApiError> {
    name.parse().map_err(|e: String| ApiError::not_found(e))
}

#[OpenApi(tag = "ApiTags::Jobs")]
impl QueuesApi {
    /// Depth of every queue, and the last canary through it. Scope: `jobs:read`.
    #[oai(path = "/queues", method = "get", operation_id = "listQueues", transform = "jobs_read")]
    async fn list_queues(&self, _auth: Auth) -> Result<Json<QueueList>, ApiError> {
        let mut queues = Vec::new();
        for queue in QueueName::ALL {
            let stats = self.services.queue.stats(queue).await?;
            let canary = self.services.store.last_completed_canary(queue.as_str()).await?;
            queues.push(QueueView {
                name: queue.to_string(),
                pending: stats.pending,
                scheduled: stats.scheduled,
                running: stats.running,
                failed: stats.failed,
                dead: stats.dead,
                oldest_pending_age_seconds: stats.oldest_pending_age_seconds,
                canary: canary.map(Into::into),
            });
        }
        Ok(Json(QueueList { backend: self.services.queue.kind().to_owned(), queues }))
    }

    /// Send a canary (a no-op job) through one queue now. Scope: `jobs:write`; honours
    /// `Idempotency-Key`.
    #[oai(
        path = "/queues/:queue/canary",
        method = "post",
        operation_id = "sendCanary",
        transform = "jobs_write_idempotent"
    )]
    async fn send_canary(
        &self,
        auth: Auth,
        queue: Path<String>,
        body: Json<CanaryRequest>,
    ) -> Result<CanaryResponse, ApiError> {
        let queue = parse_queue(&queue)?;
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &Owner::Platform,
            "queue.canary_sent",
            "canary_run",
        )
        .changed(&[("hold_ms", body.hold_ms > 0)]);
        let sent =
            canary::send(&self.services, queue, body.hold_ms, Some(audit)).await.map_err(|e| {
                match e {
                    canary::CanaryError::Store(e) => ApiError::from(e),
                    canary::CanaryError::Queue(e) => ApiError::from(e),
                }
            })?;
        Ok(CanaryResponse::Accepted(Json(CanaryAccepted {
            run_id: sent.run_id,
            job_id: sent.job_id,
        })))
    }

    /// One canary run: when it was enqueued and completed. Scope: `jobs:read`.
    #[oai(
        path = "/canaries/:id",
        method = "get",
        operation_id = "getCanary",
        transform = "jobs_read"
    )]
    async fn get_canary(
        &self,
        _auth: Auth,
        id: Path<String>,
    ) -> Result<Json<CanaryView>, ApiError> {
        let run = self.services.store.canary_run(&id).await?;
        run.map(|r| Json(r.into())).ok_or_else(|| ApiError::not_found("no such canary run"))
    }

    /// One job as the queue backend knows it (until `queue-vacuum` trims it). Scope:
    /// `jobs:read`.
    #[oai(path = "/jobs/:id", method = "get", operation_id = "getJob", transform = "jobs_read")]
    async fn get_job(&self, _auth: Auth, id: Path<String>) -> Result<Json<JobView>, ApiError> {
        self.job_view(&id).await.map(Json)
    }

    /// Run a failed or dead job again now. Scope: `jobs:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/jobs/:id/retry",
        method = "post",
        operation_id = "retryJob",
        transform = "jobs_write_idempotent"
    )]
    async fn retry_job(&self, auth: Auth, id: Path<String>) -> Result<RetryResponse, ApiError> {
        match self.services.queue.retry(&id).await? {
            RetryOutcome::Requeued => {
                let audit = AuditEntry::new(
                    &auth.principal().actor,
                    &Owner::Platform,
                    "job.retried",
                    "job",
                )
                .target(id.0.as_str())
                .changed(&[("state", true)]);
                record_queue_action(&self.services, &audit).await;
                Ok(RetryResponse::Accepted(Json(self.job_view(&id).await?)))
            }
            RetryOutcome::NotRetryable => {
                Err(ApiError::conflict("only failed or dead jobs can be retried"))
            }
            RetryOutcome::NotFound => Err(ApiError::not_found("no such job")),
        }
    }

    /// Run a schedule now, whether or not its cron is on: the scheduler's leader runs it
    /// within a third of `SWITCHYARD_SCHEDULER_LEADER_TTL_SECS` (5 s by default) and records
    /// it like any run. 409 while a run asked for earlier has not run yet. Scope:
    /// `jobs:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/schedules/:name/run",
        method = "post",
        operation_id = "runSchedule",
        transform = "jobs_write_idempotent"
    )]
    async fn run_schedule(
        &self,
        auth: Auth,
        name: Path<String>,
    ) -> Result<Accepted<RunRequested>, ApiError> {
        let name: ScheduleName = name.parse().map_err(|e: String| ApiError::not_found(e))?;
        let now = Utc::now();
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &Owner::Platform,
            "schedule.run_requested",
            "schedule",
        )
        .target(name.as_str());
        if !self.services.store.request_schedule_run(name.as_str(), now, &audit).await? {
            return Err(ApiError::conflict(
                "a run of this schedule asked for earlier has not run yet",
            ));
        }
        Ok(Accepted::Accepted(Json(RunRequested { schedule: name.to_string(), requested_at: now })))
    }

    /// Every schedule: its cron, next run and how its runs went. Scope: `jobs:read`.
    #[oai(
        path = "/schedules",
        method = "get",
        operation_id = "listSchedules",
        transform = "jobs_read"
    )]
    async fn list_schedules(&self, _auth: Auth) -> Result<Json<Vec<ScheduleView>>, ApiError> {
        let states = self.services.store.schedule_states().await?;
        let now = Utc::now();
        let views = ScheduleName::ALL
            .into_iter()
            .map(|name| {
                let cron = self.services.config.schedule_expr(name);
                let next_run_at = cron
                    .as_deref()
                    .and_then(|c| parse_cron(c).ok())
                    .and_then(|s| s.after(&now).next());
                let state = states.iter().find(|s| s.name == name.as_str());
                ScheduleView {
                    name: name.to_string(),
                    enabled: cron.is_some(),
                    cron,
                    env_var: name.env_var(),
                    next_run_at,
                    last_tick_at: state.map(|s| s.last_tick_at),
                    last_run_at: state.and_then(|s| s.last_run_at),
                    last_success_at: state.and_then(|s| s.last_success_at),
                    last_error: state.and_then(|s| s.last_error.clone()),
                    runs: state.map_or(0, |s| s.runs),
                    failures: state.map_or(0, |s| s.failures),
                    run_requested_at: state.and_then(|s| s.run_requested_at),
                }
            })
            .collect();
        Ok(Json(views))
    }
}

impl QueuesApi {
    async fn job_view(&self, id: &str) -> Result<JobView, ApiError> {
        let job = self
            .services
            .queue
            .find(id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        Ok(job.into())
    }
}

impl From<JobRecord> for JobView {
    fn from(job: JobRecord) -> Self {
        Self {
            id: job.id,
            queue: job.queue.to_string(),
            status: job.status.to_owned(),
            attempts: job.attempts,
            kind: job.kind,
            message: job.message,
            last_result: job.last_result,
            run_at: job.run_at,
            done_at: job.done_at,
            worker: job.worker,
        }
    }
}

/// Records a change made in the queue backend. The queue may be Redis, which shares no
/// transaction with the store: the entry is written as soon as the queue has accepted the
/// change, and a failure to write it is logged loudly rather than undoing the change.
pub(super) async fn record_queue_action(services: &Services, audit: &AuditEntry) {
    if let Err(error) = services.store.insert_audit(audit).await {
        tracing::error!(%error, action = audit.action, "a queue change was made but its audit entry was not written");
    }
}
