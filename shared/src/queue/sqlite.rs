//! The embedded queue: apalis-sqlite on its own file, `jobs.db`, in the data dir.

use std::{path::Path, str::FromStr, time::Duration};

use apalis::prelude::TaskSink;
use apalis_sqlite::SqliteStorage;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    DiscardOutcome, JobRecord, JobState, QueueError, QueueName, QueueStats, RetryOutcome,
    StorageTuning, from_unix, parse_message, status_label, tasks,
};
use crate::jobs::Message;

pub(super) async fn open(data_dir: &Path) -> Result<SqlitePool, QueueError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|source| QueueError::DataDir { path: data_dir.display().to_string(), source })?;
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(data_dir.join("jobs.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // Normal is durable against a crashed process in WAL mode; apalis' own setup()
        // would switch it off, so its migrations are run directly instead.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    // One connection: apalis' fetches and acks and our pushes are nearly all writes, and
    // SQLite takes one writer at a time. They wait their turn in the pool (in order, woken
    // as the last one is done) instead of in SQLite's busy handler, which sleeps 1, 2, 5…
    // ms between tries: with 8 connections an embedded burst of 10,000 deliveries met
    // ~1,000 such sleeps here alone.
    // No ping before each use (a hop to the connection's thread): a file does not hang up.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    SqliteStorage::<()>::migrations().run(&pool).await?;
    // apalis-sqlite acks with `UPDATE Jobs … FROM json_each(?) WHERE id = … AND lock_by = ?`;
    // with its index on `lock_by` SQLite drives that from every job the worker ever ran
    // (lock_by is never cleared) and parses the JSON once per such row: quadratic, the
    // worker's CPU went to it. Without the index the ack looks jobs up by id.
    sqlx::query("DROP INDEX IF EXISTS LIdx").execute(&pool).await?;
    Ok(pool)
}

/// The apalis storage of one queue, as workers consume it.
pub fn sqlite_storage(
    pool: &SqlitePool,
    queue: QueueName,
    tuning: &StorageTuning,
) -> SqliteStorage<Message> {
    SqliteStorage::new(pool).with_config(
        apalis_sqlite::Config::default()
            .queue(queue.as_str())
            .batch_size(tuning.batch_size)
            .heartbeat_interval(tuning.heartbeat)
            .missed_heartbeats(tuning.missed_heartbeats),
    )
}

pub(super) async fn push(
    pool: &SqlitePool,
    queue: QueueName,
    messages: Vec<Message>,
) -> Result<Vec<String>, QueueError> {
    let (ids, tasks) = tasks(messages);
    let mut storage = SqliteStorage::<Message>::new(pool)
        .with_config(apalis_sqlite::Config::default().queue(queue.as_str()));
    storage
        .push_all(futures::stream::iter(tasks))
        .await
        .map_err(|e| QueueError::Push(e.to_string()))?;
    Ok(ids)
}

const STATS_SQL: &str = "
SELECT
  (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status = 'Pending' AND lock_by IS NULL
     AND run_at <= ?2),
  (SELECT MIN(run_at) FROM Jobs WHERE job_type = ?1 AND status = 'Pending' AND lock_by IS NULL
     AND run_at <= ?2),
  (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status = 'Pending' AND lock_by IS NULL
     AND run_at > ?2),
  (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status IN ('Queued', 'Running')),
  (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status = 'Failed'
     AND attempts < max_attempts),
  (SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND (status = 'Killed'
     OR (status = 'Failed' AND attempts >= max_attempts)))";

pub(super) async fn stats(pool: &SqlitePool, queue: QueueName) -> Result<QueueStats, QueueError> {
    let now = chrono::Utc::now().timestamp();
    let (pending, oldest, scheduled, running, failed, dead): (
        i64,
        Option<i64>,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(STATS_SQL).bind(queue.as_str()).bind(now).fetch_one(pool).await?;
    Ok(QueueStats {
        pending: pending as u64,
        scheduled: scheduled as u64,
        running: running as u64,
        failed: failed as u64,
        dead: dead as u64,
        oldest_pending_age_seconds: oldest.map_or(0.0, |t| (now - t).max(0) as f64),
    })
}

type JobRow =
    (Vec<u8>, String, String, String, i64, i64, i64, Option<String>, Option<String>, Option<i64>);

const JOB_COLUMNS: &str =
    "job, id, job_type, status, attempts, max_attempts, run_at, last_result, lock_by, done_at";

fn record(row: JobRow, now: i64) -> Option<JobRecord> {
    let (job, id, job_type, status, attempts, max_attempts, run_at, last, lock_by, done_at) = row;
    let queue = job_type.parse::<QueueName>().ok()?;
    let (kind, message) = parse_message(&job);
    Some(JobRecord {
        id,
        queue,
        status: status_label(&status, attempts as u64, max_attempts as u64, run_at <= now),
        attempts: attempts as u64,
        kind,
        message,
        last_result: last,
        run_at: from_unix(run_at),
        done_at: done_at.and_then(from_unix),
        worker: lock_by,
    })
}

pub(super) async fn find(pool: &SqlitePool, id: &str) -> Result<Option<JobRecord>, QueueError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM Jobs WHERE id = ?1");
    let row: Option<JobRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?;
    Ok(row.and_then(|r| record(r, chrono::Utc::now().timestamp())))
}

/// The rows of a state, as `status_label` tells them apart (?1 queue, ?2 now).
fn state_filter(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "status = 'Pending' AND lock_by IS NULL AND run_at <= ?2",
        JobState::Scheduled => "status = 'Pending' AND lock_by IS NULL AND run_at > ?2",
        JobState::Running => "status IN ('Queued', 'Running') AND ?2 IS NOT NULL",
        JobState::Failed => "status = 'Failed' AND attempts < max_attempts AND ?2 IS NOT NULL",
        JobState::Dead => {
            "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND ?2 IS NOT NULL"
        }
    }
}

pub(super) async fn list(
    pool: &SqlitePool,
    queue: QueueName,
    state: JobState,
    offset: usize,
    limit: usize,
) -> Result<(u64, Vec<JobRecord>), QueueError> {
    let now = chrono::Utc::now().timestamp();
    let filter = state_filter(state);
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM Jobs WHERE job_type = ?1 AND {filter}
         ORDER BY rowid DESC LIMIT ?3 OFFSET ?4"
    );
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(queue.as_str())
        .bind(now)
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(pool)
        .await?;
    let count = format!("SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND {filter}");
    let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(count))
        .bind(queue.as_str())
        .bind(now)
        .fetch_one(pool)
        .await?;
    Ok((total as u64, rows.into_iter().filter_map(|r| record(r, now)).collect()))
}

pub(super) async fn ids_in(
    pool: &SqlitePool,
    queue: QueueName,
    state: JobState,
    max: usize,
) -> Result<Vec<String>, QueueError> {
    let sql = format!(
        "SELECT id FROM Jobs WHERE job_type = ?1 AND {} ORDER BY rowid DESC LIMIT ?3",
        state_filter(state)
    );
    let ids: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(queue.as_str())
        .bind(chrono::Utc::now().timestamp())
        .bind(max as i64)
        .fetch_all(pool)
        .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

pub(super) async fn retry(pool: &SqlitePool, id: &str) -> Result<RetryOutcome, QueueError> {
    let now = chrono::Utc::now().timestamp();
    let updated = sqlx::query(
        "UPDATE Jobs SET status = 'Pending', attempts = 0, run_at = ?2, done_at = NULL,
                lock_by = NULL, lock_at = NULL
         WHERE id = ?1 AND status IN ('Failed', 'Killed')",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    if updated > 0 {
        return Ok(RetryOutcome::Requeued);
    }
    Ok(if exists(pool, id).await? { RetryOutcome::NotRetryable } else { RetryOutcome::NotFound })
}

pub(super) async fn discard(pool: &SqlitePool, id: &str) -> Result<DiscardOutcome, QueueError> {
    let now = chrono::Utc::now().timestamp();
    // Waiting: pending (due or not) and not held by a worker, or failed awaiting a retry.
    let updated = sqlx::query(
        "UPDATE Jobs SET status = 'Killed', done_at = ?2, last_result = '\"discarded\"'
         WHERE id = ?1 AND lock_by IS NULL AND (status = 'Pending'
           OR (status = 'Failed' AND attempts < max_attempts))",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    if updated > 0 {
        return Ok(DiscardOutcome::Discarded);
    }
    Ok(if exists(pool, id).await? { DiscardOutcome::NotWaiting } else { DiscardOutcome::NotFound })
}

async fn exists(pool: &SqlitePool, id: &str) -> Result<bool, QueueError> {
    let found: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM Jobs WHERE id = ?1").bind(id).fetch_optional(pool).await?;
    Ok(found.is_some())
}

pub(super) async fn vacuum(
    pool: &SqlitePool,
    queue: QueueName,
    cutoff: i64,
) -> Result<u64, QueueError> {
    // Bounded batches keep each write transaction short, so workers are not held up.
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM Jobs WHERE rowid IN (
               SELECT rowid FROM Jobs
               WHERE job_type = ?1 AND done_at IS NOT NULL AND done_at <= ?2
                 AND (status IN ('Done', 'Killed')
                      OR (status = 'Failed' AND attempts >= max_attempts))
               LIMIT 1000)",
        )
        .bind(queue.as_str())
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < 1000 {
            return Ok(total);
        }
    }
}
