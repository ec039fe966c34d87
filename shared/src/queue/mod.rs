//! The job queue: apalis-sqlite in embedded mode, apalis-redis in fleet mode, behind one
//! interface for producers ([`Queue::push`]) and for the inspection the API and the
//! scheduler need (depth, one job, retry, vacuum). Consumers (the worker crate) take the
//! backend's apalis storage from [`Queue::backend`].

mod redis;
mod sqlite;
pub mod wake;

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

pub use self::{
    redis::{RedisQueue, delete_namespace},
    sqlite::sqlite_storage,
};
use crate::{
    config::Config,
    jobs::{Job, Message, now_ms},
};

/// Attempts before apalis gives a job up as dead. apalis-redis hard-codes 25; every job is
/// pushed with the same limit so both backends agree.
pub const MAX_ATTEMPTS: usize = 25;

/// The named queues. Work of one kind always goes to the same queue, so a slow upstream
/// only backs up its own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Webhooks,
    Pidms,
    Sikka,
    Maintenance,
}

impl QueueName {
    pub const ALL: [QueueName; 4] =
        [QueueName::Webhooks, QueueName::Pidms, QueueName::Sikka, QueueName::Maintenance];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhooks => "webhooks",
            Self::Pidms => "pidms",
            Self::Sikka => "sikka",
            Self::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|q| q.as_str() == s).ok_or_else(|| {
            format!("unknown queue {s:?} (known: webhooks, pidms, sikka, maintenance)")
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue database: {0}")]
    Sqlite(#[from] sqlx::Error),
    #[error("queue database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("queue push: {0}")]
    Push(String),
    #[error("queue data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

/// Jobs in each state, as `GET /api/v1/queues` and the depth gauges report them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// Due now, waiting for a worker.
    pub pending: u64,
    /// Due later (delayed retries, scheduled work).
    pub scheduled: u64,
    /// Held by a worker.
    pub running: u64,
    /// Failed and waiting for a backend retry.
    pub failed: u64,
    /// Given up on (aborted or out of attempts).
    pub dead: u64,
    /// Age of the oldest pending job, 0 when none.
    pub oldest_pending_age_seconds: f64,
}

/// The state of one job as the queue backend knows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub queue: QueueName,
    /// pending, scheduled, running, done, failed (waiting for a retry) or dead.
    pub status: &'static str,
    pub attempts: u64,
    pub kind: Option<String>,
    /// The message as JSON (ids only, never secrets).
    pub message: Option<serde_json::Value>,
    /// The handler's last result or error text.
    pub last_result: Option<String>,
    pub run_at: Option<chrono::DateTime<chrono::Utc>>,
    pub done_at: Option<chrono::DateTime<chrono::Utc>>,
    pub worker: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    Requeued,
    /// The job exists but is not failed or dead.
    NotRetryable,
    NotFound,
}

crate::text_enum! {
    /// Where a job stands, as lists and bulk actions name it: due and waiting for a worker,
    /// due later, held by a worker, failed and waiting for its retry, or given up on.
    pub enum JobState {
        Pending = "pending",
        Scheduled = "scheduled",
        Running = "running",
        Failed = "failed",
        Dead = "dead",
    }
}

/// Jobs a list reaches into, or a bulk action takes, per request at most.
pub const MAX_LISTED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardOutcome {
    Discarded,
    /// The job exists but is not waiting (it is running, done or dead already).
    NotWaiting,
    NotFound,
}

/// The storage a process uses; the worker crate builds apalis workers from it.
#[derive(Clone)]
pub enum QueueBackend {
    Sqlite(sqlx::SqlitePool),
    Redis(RedisQueue),
}

/// Per-queue settings of the apalis storages (from [`crate::config::WorkerConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct StorageTuning {
    pub batch_size: usize,
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
}

impl StorageTuning {
    pub fn from_config(config: &Config) -> Self {
        Self {
            batch_size: config.worker.batch_size,
            heartbeat: Duration::from_secs(config.worker.heartbeat_secs),
            missed_heartbeats: config.worker.missed_heartbeats,
        }
    }
}

#[derive(Clone)]
pub struct Queue {
    backend: QueueBackend,
    wake: std::sync::Arc<wake::Wakeups>,
    /// Cancelled by [`Queue::stopping`] (shared by every clone).
    stopping: crate::CancellationToken,
}

/// Once the process is stopping, a push into `jobs.db` waits at most this long more, once.
/// apalis-core stops polling a worker's fetch when shutdown begins; one caught between its
/// `UPDATE` and its `COMMIT` keeps `jobs.db` (its only connection, and its write lock) until
/// the in-flight jobs have drained — and a job pushing a follow-up waited behind it, five
/// tries of up to 5 s each, for the whole grace period.
pub const STOPPING_PUSH_WAIT: Duration = Duration::from_secs(1);

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("backend", &self.kind()).finish()
    }
}

impl Queue {
    /// Opens the queue the configuration asks for: Redis when `REDIS_URL` is set, else the
    /// SQLite file `jobs.db` in the data dir (its own file: see "apalis-sqlite gets its own file" in ARCHITECTURE.md).
    #[crate::boxed]
    pub async fn connect(config: &Config) -> Result<Self, QueueError> {
        let backend = match &config.redis_url {
            Some(url) => QueueBackend::Redis(
                RedisQueue::connect(
                    url.expose(),
                    &config.namespace,
                    Duration::from_millis(config.redis_response_timeout_ms),
                )
                .await?,
            ),
            None => QueueBackend::Sqlite(sqlite::open(&config.data_dir).await?),
        };
        Ok(Self { backend, wake: Default::default(), stopping: Default::default() })
    }

    /// The process is stopping: from now on a push into the embedded queue is tried once and
    /// waits at most [`STOPPING_PUSH_WAIT`]. A push that fails fails its job, which apalis
    /// runs again at the next start; a webhook's row stays due in the store for the sweeps.
    /// A push already waiting is given up [`STOPPING_PUSH_WAIT`] after this.
    pub fn stopping(&self) {
        self.stopping.cancel();
    }

    /// A push into `jobs.db`, given up once the process has been stopping for
    /// [`STOPPING_PUSH_WAIT`].
    async fn push_sqlite(
        &self,
        pool: &sqlx::SqlitePool,
        queue: QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<String>, QueueError> {
        let given_up = async {
            self.stopping.cancelled().await;
            tokio::time::sleep(STOPPING_PUSH_WAIT).await;
        };
        tokio::select! {
            pushed = sqlite::push(pool, queue, messages) => pushed,
            () = given_up => Err(QueueError::Push("the process is stopping and jobs.db is held".to_owned())),
        }
    }

    pub fn backend(&self) -> &QueueBackend {
        &self.backend
    }

    /// The wake-up signals workers of this queue wait on.
    pub fn wakeups(&self) -> &std::sync::Arc<wake::Wakeups> {
        &self.wake
    }

    pub fn kind(&self) -> &'static str {
        match self.backend {
            QueueBackend::Sqlite(_) => "sqlite",
            QueueBackend::Redis(_) => "redis",
        }
    }

    /// Enqueues a job to run now, on its kind's queue ([`Job::queue`]); returns its id.
    #[crate::boxed]
    pub async fn push(&self, job: Job) -> Result<String, QueueError> {
        Ok(self.push_routed(vec![message(job, None)]).await?.remove(0))
    }

    /// Enqueues a job to run after `delay` (millisecond precision, see [`Message`]).
    #[crate::boxed]
    pub async fn push_after(&self, job: Job, delay: Duration) -> Result<String, QueueError> {
        Ok(self.push_routed(vec![message(job, Some(delay))]).await?.remove(0))
    }

    /// Enqueues many jobs, a round trip per queue (and thousand); returns their ids in order.
    #[crate::boxed]
    pub async fn push_many(&self, jobs: Vec<Job>) -> Result<Vec<String>, QueueError> {
        self.push_routed(jobs.into_iter().map(|j| message(j, None)).collect()).await
    }

    /// Enqueues many jobs to run after `delay`.
    #[crate::boxed]
    pub async fn push_many_after(
        &self,
        jobs: Vec<Job>,
        delay: Duration,
    ) -> Result<Vec<String>, QueueError> {
        self.push_routed(jobs.into_iter().map(|j| message(j, Some(delay))).collect()).await
    }

    /// Enqueues a failed job's retry after `delay`, carrying its failure count.
    #[crate::boxed]
    pub async fn push_retry(
        &self,
        failed: &Message,
        delay: Duration,
    ) -> Result<String, QueueError> {
        let mut retry = message(failed.job.clone(), Some(delay));
        retry.failures = failed.failures + 1;
        Ok(self.push_routed(vec![retry]).await?.remove(0))
    }

    /// Enqueues many jobs, each after its own delay.
    #[crate::boxed]
    pub async fn push_each_after(
        &self,
        jobs: Vec<(Job, Duration)>,
    ) -> Result<Vec<String>, QueueError> {
        self.push_routed(jobs.into_iter().map(|(j, d)| message(j, Some(d))).collect()).await
    }

    /// Pushes each message to its job's queue (in order within a queue); ids in input order.
    async fn push_routed(&self, messages: Vec<Message>) -> Result<Vec<String>, QueueError> {
        let mut ids = vec![String::new(); messages.len()];
        let mut by_queue: Vec<(QueueName, Vec<usize>, Vec<Message>)> = Vec::new();
        for (i, m) in messages.into_iter().enumerate() {
            let queue = m.job.queue();
            match by_queue.iter_mut().find(|(q, _, _)| *q == queue) {
                Some((_, at, batch)) => {
                    at.push(i);
                    batch.push(m);
                }
                None => by_queue.push((queue, vec![i], vec![m])),
            }
        }
        for (queue, at, batch) in by_queue {
            for (i, id) in at.into_iter().zip(self.push_messages(queue, batch).await?) {
                ids[i] = id;
            }
        }
        Ok(ids)
    }

    async fn push_messages(
        &self,
        queue: QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<String>, QueueError> {
        let count = messages.len();
        let now = now_ms();
        let due_now = messages.iter().any(|m| m.not_before_ms.is_none_or(|t| t <= now));
        let earliest_later =
            messages.iter().filter_map(|m| m.not_before_ms).filter(|t| *t > now).min();
        // Pushes fail transiently (SQLite busy under write contention between processes, a
        // Redis reconnect): try a few times before leaving the row to the sweeps.
        let mut wait = Duration::from_millis(50);
        let mut tries = 0;
        let ids = loop {
            let (pushed, retry) = match &self.backend {
                QueueBackend::Sqlite(pool) => (
                    self.push_sqlite(pool, queue, messages.clone()).await,
                    !self.stopping.is_cancelled(),
                ),
                QueueBackend::Redis(redis) => (redis.push(queue, messages.clone()).await, true),
            };
            match pushed {
                Ok(ids) => break ids,
                Err(e) if tries < 4 && retry => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "queue push failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
                Err(e) => return Err(e),
            }
        };
        metrics::counter!(crate::telemetry::JOBS_ENQUEUED, "queue" => queue.as_str())
            .increment(count as u64);
        // A worker of this process (the embedded mode) hears of it at once; in a fleet the
        // push script has announced it on Redis as well.
        if due_now {
            self.wake.notify(queue);
        }
        if let Some(at_ms) = earliest_later {
            match &self.backend {
                // apalis-sqlite makes a job fetchable from the whole second it is due in.
                QueueBackend::Sqlite(_) => self.wake.notify_at(queue, at_ms / 1000 * 1000),
                // Our promoter moves it; it may have to wake sooner than it planned.
                QueueBackend::Redis(_) => self.wake.delayed(queue).notify(),
            }
        }
        Ok(ids)
    }

    #[crate::boxed]
    pub async fn stats(&self, queue: QueueName) -> Result<QueueStats, QueueError> {
        match &self.backend {
            QueueBackend::Sqlite(pool) => sqlite::stats(pool, queue).await,
            QueueBackend::Redis(redis) => redis.stats(queue).await,
        }
    }

    #[crate::boxed]
    pub async fn find(&self, id: &str) -> Result<Option<JobRecord>, QueueError> {
        match &self.backend {
            QueueBackend::Sqlite(pool) => sqlite::find(pool, id).await,
            QueueBackend::Redis(redis) => redis.find(id).await,
        }
    }

    /// Puts a failed or dead job back to run now.
    #[crate::boxed]
    pub async fn retry(&self, id: &str) -> Result<RetryOutcome, QueueError> {
        match &self.backend {
            QueueBackend::Sqlite(pool) => sqlite::retry(pool, id).await,
            QueueBackend::Redis(redis) => redis.retry(id).await,
        }
    }

    /// A page of one queue's jobs in `state`, newest first, with how many are in it. The
    /// page must lie within the newest [`MAX_LISTED`].
    #[crate::boxed]
    pub async fn list(
        &self,
        queue: QueueName,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<(u64, Vec<JobRecord>), QueueError> {
        match &self.backend {
            QueueBackend::Sqlite(pool) => sqlite::list(pool, queue, state, offset, limit).await,
            QueueBackend::Redis(redis) => redis.list(queue, state, offset, limit).await,
        }
    }

    /// The ids of one queue's jobs in `state`, newest first, at most `max`.
    #[crate::boxed]
    pub async fn ids_in(
        &self,
        queue: QueueName,
        state: JobState,
        max: usize,
    ) -> Result<Vec<String>, QueueError> {
        match &self.backend {
            QueueBackend::Sqlite(pool) => sqlite::ids_in(pool, queue, state, max).await,
            QueueBackend::Redis(redis) => Ok(redis.state_ids(queue, state, max).await?.1),
        }
    }

    /// Moves a waiting job (pending, scheduled, or failed awaiting its retry) to dead: it
    /// will not run unless retried. A running job is left alone.
    #[crate::boxed]
    pub async fn discard(&self, id: &str) -> Result<DiscardOutcome, QueueError> {
        match &self.backend {
            QueueBackend::Sqlite(pool) => sqlite::discard(pool, id).await,
            QueueBackend::Redis(redis) => redis.discard(id).await,
        }
    }

    /// Deletes done and dead job records finished before `older_than` ago. Jobs waiting for
    /// a retry are kept whatever their age.
    #[crate::boxed]
    pub async fn vacuum(&self, queue: QueueName, older_than: Duration) -> Result<u64, QueueError> {
        let cutoff = chrono::Utc::now().timestamp() - older_than.as_secs() as i64;
        match &self.backend {
            QueueBackend::Sqlite(pool) => sqlite::vacuum(pool, queue, cutoff).await,
            QueueBackend::Redis(redis) => redis.vacuum(queue, cutoff).await,
        }
    }

    /// A cheap round trip, for `/readyz`.
    #[crate::boxed]
    pub async fn ping(&self) -> Result<(), QueueError> {
        match &self.backend {
            QueueBackend::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
                Ok(())
            }
            QueueBackend::Redis(redis) => redis.ping().await,
        }
    }
}

fn message(job: Job, delay: Option<Duration>) -> Message {
    let now = now_ms();
    Message {
        job,
        enqueued_at_ms: now,
        not_before_ms: delay.map(|d| now + d.as_millis() as i64),
        failures: 0,
    }
}

/// apalis schedules in whole seconds; round the delay down so that the job is fetched no
/// later than due, and let the worker wait out the remainder.
fn run_at_secs(m: &Message) -> Option<u64> {
    m.not_before_ms.map(|ms| (ms / 1000) as u64)
}

/// A job id: a ULID, monotonic within this process, so jobs pushed together are fetched in
/// the order they were pushed (apalis-sqlite orders due jobs by second, then id).
pub(crate) fn job_id() -> ulid::Ulid {
    crate::ids::next_ulid()
}

/// apalis tasks for messages, with ids of our own (ULIDs, so `GET /jobs/{id}` can find them)
/// and the same attempt limit on both backends.
fn tasks(messages: Vec<Message>) -> (Vec<String>, Vec<apalis::prelude::Task<Message>>) {
    let mut ids = Vec::with_capacity(messages.len());
    let tasks = messages
        .into_iter()
        .map(|m| {
            let id = job_id();
            ids.push(id.to_string());
            let run_at = run_at_secs(&m);
            let mut b = apalis::prelude::TaskBuilder::new(m)
                .task_id(apalis::prelude::TaskId::from_ulid(id))
                .max_attempts(MAX_ATTEMPTS);
            if let Some(secs) = run_at {
                b = b.run_at_timestamp(secs);
            }
            b.build()
        })
        .collect();
    (ids, tasks)
}

/// Maps an apalis status to ours.
fn status_label(status: &str, attempts: u64, max_attempts: u64, due: bool) -> &'static str {
    match status {
        "Pending" if due => "pending",
        "Pending" => "scheduled",
        "Queued" | "Running" => "running",
        "Done" => "done",
        "Failed" if attempts < max_attempts => "failed",
        _ => "dead",
    }
}

fn parse_message(bytes: &[u8]) -> (Option<String>, Option<serde_json::Value>) {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(value) => {
            let kind = value.pointer("/job/kind").and_then(|k| k.as_str()).map(str::to_owned);
            (kind, Some(value))
        }
        Err(_) => (None, None),
    }
}

fn from_unix(secs: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(secs, 0)
}
