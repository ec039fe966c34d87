//! The fleet queue: apalis-redis, every key under `{namespace}:{queue}`.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use apalis_redis::{ConnectionManager, RedisStorage};
use redis::{AsyncCommands, Script, aio::ConnectionManagerConfig};

use super::{
    DiscardOutcome, JobRecord, JobState, MAX_ATTEMPTS, QueueError, QueueName, QueueStats,
    RetryOutcome, StorageTuning, from_unix, parse_message, status_label,
};
use crate::jobs::Message;

static STATS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_stats.lua")));
static VACUUM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_vacuum.lua")));
static RETRY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_retry.lua")));
static DISCARD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_discard.lua")));
static HOLDER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_holder.lua")));
static PUSH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_push.lua")));
static PROMOTE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis_promote.lua")));

/// Scheduled entries inspected when counting failed jobs: bounds the script's run time.
const FAILED_SCAN_LIMIT: usize = 5_000;

/// apalis-redis' registry of every queue's workers set, shared by all namespaces: a worker
/// adds `<namespace>:<queue>:workers` to it when it starts (its `register_worker` script).
const APALIS_QUEUE_REGISTRY: &str = "core:apalis:queues:list";

/// Deletes every key of a namespace (`<namespace>:*`, in slices of 1,000) and its entries in
/// apalis' queue registry; returns how many keys and entries. For throwaway namespaces
/// (benchmarks, tests): it does not stop anything using them.
#[crate::boxed]
pub async fn delete_namespace(url: &str, namespace: &str) -> Result<u64, QueueError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{namespace}:*");
    let mut deleted = 0u64;
    for (scan, key) in [("SCAN", None), ("ZSCAN", Some(APALIS_QUEUE_REGISTRY))] {
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd(scan);
            cmd.arg(key).arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let (next, found): (u64, Vec<String>) = cmd.query_async(&mut conn).await?;
            if !found.is_empty() {
                deleted += match key {
                    None => redis::cmd("UNLINK").arg(&found).query_async::<u64>(&mut conn).await?,
                    // ZSCAN answers member, score, member, score …
                    Some(key) => {
                        let members: Vec<&String> = found.iter().step_by(2).collect();
                        redis::cmd("ZREM").arg(key).arg(members).query_async(&mut conn).await?
                    }
                };
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(deleted)
}

#[derive(Clone)]
pub struct RedisQueue {
    client: redis::Client,
    conn: ConnectionManager,
    namespace: String,
}

impl RedisQueue {
    pub(super) async fn connect(
        url: &str,
        namespace: &str,
        response_timeout: Duration,
    ) -> Result<Self, QueueError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = client.get_connection_manager_with_config(config).await?;
        Ok(Self { client, conn, namespace: namespace.to_owned() })
    }

    /// A multiplexed connection that reconnects by itself; share it for locks and limits.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Sets this deployment's marker key if it is missing; `true` when it was: this Redis is
    /// new to the deployment or came back empty, and whatever was queued went with it.
    #[crate::boxed]
    pub async fn mark_present(&self) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:present", self.namespace))
            .arg(ulid::Ulid::generate().to_string())
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// A lease on `name` for `ttl`, for one process of the fleet; `true` if this one got it.
    #[crate::boxed]
    pub async fn try_lease(&self, name: &str, ttl: Duration) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:lease:{name}", self.namespace))
            .arg(std::process::id())
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// The client, for connections of their own (subscriptions).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The channel a push of due work to `queue` is announced on: the one apalis' own
    /// scripts publish (`tasks:<active list>:available`), so its releases wake us too.
    pub fn wake_channel(&self, queue: QueueName) -> String {
        format!("tasks:{}:available", self.storage_config(queue).active_jobs_list())
    }

    /// The queue a wake channel belongs to.
    pub fn queue_of_channel(&self, channel: &str) -> Option<QueueName> {
        QueueName::ALL.into_iter().find(|q| self.wake_channel(*q) == channel)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The apalis queue name, which prefixes every key of that queue.
    pub fn queue_key(&self, queue: QueueName) -> String {
        format!("{}:{}", self.namespace, queue.as_str())
    }

    pub fn storage_config(&self, queue: QueueName) -> apalis_redis::Config {
        apalis_redis::Config::default().queue(self.queue_key(queue))
    }

    /// The apalis storage of one queue, as workers consume it. Task leases are off:
    /// apalis' lease script runs `LREM` over the whole active list for every task, which
    /// made Redis the bottleneck under a backlog; in-flight sets (per worker) already say who
    /// runs what, and orphan recovery uses them.
    pub fn storage(&self, queue: QueueName, tuning: &StorageTuning) -> RedisStorage<Message> {
        RedisStorage::new(self.conn.clone()).with_config(
            self.storage_config(queue)
                .lock_tasks(false)
                .batch_size(tuning.batch_size)
                .heartbeat_interval(tuning.heartbeat)
                .missed_heartbeats(tuning.missed_heartbeats),
        )
    }

    /// Our own set of delayed tasks of a queue (see `redis_push.lua`).
    fn delayed_key(&self, queue: QueueName) -> String {
        format!("{}:delayed", self.queue_key(queue))
    }

    pub(super) async fn push(
        &self,
        queue: QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<String>, QueueError> {
        let c = self.storage_config(queue);
        let mut ids = Vec::with_capacity(messages.len());
        let mut conn = self.conn.clone();
        for chunk in messages.chunks(1000) {
            let mut inv = PUSH.prepare_invoke();
            inv.key(c.job_data_hash())
                .key(c.active_jobs_list())
                .key(c.signal_list())
                .key(c.job_meta_hash())
                .key(self.delayed_key(queue))
                .arg(chrono::Utc::now().timestamp_millis())
                .arg(MAX_ATTEMPTS)
                .arg(self.wake_channel(queue));
            for m in chunk {
                let id = super::job_id().to_string();
                let data = serde_json::to_vec(m).map_err(|e| QueueError::Push(e.to_string()))?;
                inv.arg(&id).arg(data).arg(m.not_before_ms.unwrap_or(0));
                ids.push(id);
            }
            let _: i64 = inv.invoke_async(&mut conn).await?;
        }
        Ok(ids)
    }

    /// Moves due delayed tasks of a queue onto its active list, at most `max` of them;
    /// returns how many, and when the next delayed task is due (unix ms). Workers call it in
    /// a loop.
    #[crate::boxed]
    pub async fn promote(
        &self,
        queue: QueueName,
        max: usize,
    ) -> Result<(usize, Option<i64>), QueueError> {
        let c = self.storage_config(queue);
        let mut conn = self.conn.clone();
        let (moved, next): (usize, Option<String>) = PROMOTE
            .key(self.delayed_key(queue))
            .key(c.active_jobs_list())
            .key(c.signal_list())
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(max)
            .arg(self.wake_channel(queue))
            .invoke_async(&mut conn)
            .await?;
        Ok((moved, next.and_then(|s| s.parse::<f64>().ok()).map(|ms| ms as i64)))
    }

    pub(super) async fn stats(&self, queue: QueueName) -> Result<QueueStats, QueueError> {
        let c = self.storage_config(queue);
        let now = chrono::Utc::now().timestamp();
        let mut conn = self.conn.clone();
        type Row = (u64, u64, u64, u64, u64, u64, u64, Option<Vec<u8>>, Option<String>);
        let (pending, future, due, running, failed, dead, _done, head, due_score): Row = STATS
            .key(c.active_jobs_list())
            .key(c.scheduled_jobs_set())
            .key(c.workers_set())
            .key(c.dead_jobs_set())
            .key(c.done_jobs_set())
            .key(c.job_data_hash())
            .key(c.job_meta_hash())
            .key(c.inflight_jobs_set())
            .key(self.delayed_key(queue))
            .arg(now)
            .arg(FAILED_SCAN_LIMIT)
            .arg(now * 1000)
            .invoke_async(&mut conn)
            .await?;
        let now_ms = now * 1000;
        let head_since =
            head.and_then(|b| serde_json::from_slice::<Message>(&b).ok()).map(|m| m.due_at_ms());
        let due_since = due_score.and_then(|s| s.parse::<f64>().ok()).map(|ms| ms as i64);
        let oldest = [head_since, due_since].into_iter().flatten().min();
        Ok(QueueStats {
            pending: pending + due,
            scheduled: future,
            running,
            failed,
            dead,
            oldest_pending_age_seconds: oldest
                .map_or(0.0, |since| ((now_ms - since).max(0) as f64) / 1000.0),
        })
    }

    pub(super) async fn find(&self, id: &str) -> Result<Option<JobRecord>, QueueError> {
        for queue in QueueName::ALL {
            if let Some(job) = self.find_in(queue, id).await? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    async fn find_in(&self, queue: QueueName, id: &str) -> Result<Option<JobRecord>, QueueError> {
        let mut conn = self.conn.clone();
        let c = self.storage_config(queue);
        let data: Option<Vec<u8>> = conn.hget(c.job_data_hash(), id).await?;
        let Some(data) = data else { return Ok(None) };
        let meta: HashMap<String, String> =
            conn.hgetall(format!("{}:{id}", c.job_meta_hash())).await?;
        let get_u64 = |k: &str| meta.get(k).and_then(|v| v.parse::<u64>().ok());
        let attempts = get_u64("attempts").unwrap_or(0);
        let status = meta.get("status").map(String::as_str).unwrap_or("Pending");
        let (kind, message) = parse_message(&data);
        let not_before = message
            .as_ref()
            .and_then(|m| m.get("not_before_ms"))
            .and_then(serde_json::Value::as_i64);
        let due = not_before.is_none_or(|ms| ms <= chrono::Utc::now().timestamp_millis());
        let scheduled_score: Option<f64> = conn.zscore(c.scheduled_jobs_set(), id).await?;
        let delayed_ms: Option<f64> = conn.zscore(self.delayed_key(queue), id).await?;
        let due =
            due && delayed_ms.is_none_or(|ms| ms as i64 <= chrono::Utc::now().timestamp_millis());
        let holder: Option<String> = HOLDER
            .key(c.workers_set())
            .arg(c.inflight_jobs_set())
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        let status = match (status, &holder) {
            ("Pending" | "Queued", Some(_)) => "Running",
            (s, _) => s,
        };
        let due = due && scheduled_score.is_none_or(|s| s as i64 <= chrono::Utc::now().timestamp());
        Ok(Some(JobRecord {
            id: id.to_owned(),
            queue,
            status: status_label(status, attempts, MAX_ATTEMPTS as u64, due),
            attempts,
            kind,
            message,
            last_result: meta.get("result").cloned(),
            run_at: not_before.and_then(chrono::DateTime::from_timestamp_millis),
            done_at: get_u64("done_at").and_then(|s| from_unix(s as i64)),
            worker: holder.or_else(|| meta.get("locked_by").cloned()),
        }))
    }

    /// How many jobs of `queue` are in `state`, and the ids of the newest `max` of them.
    /// Pending: the active list's tail; scheduled: our delayed set, latest first; running:
    /// the workers' in-flight sets; failed: apalis' scheduled set, where a failure waits for
    /// its retry; dead: the dead set. Ids are ULIDs, so sorting them sorts by age.
    pub(super) async fn state_ids(
        &self,
        queue: QueueName,
        state: JobState,
        max: usize,
    ) -> Result<(u64, Vec<String>), QueueError> {
        let c = self.storage_config(queue);
        let mut conn = self.conn.clone();
        let newest_first = |mut ids: Vec<String>| {
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.truncate(max);
            ids
        };
        Ok(match state {
            JobState::Pending => {
                let total: u64 = conn.llen(c.active_jobs_list()).await?;
                let mut ids: Vec<String> =
                    conn.lrange(c.active_jobs_list(), -(max as isize), -1).await?;
                ids.reverse();
                (total, ids)
            }
            JobState::Scheduled => {
                let key = self.delayed_key(queue);
                let total: u64 = conn.zcard(&key).await?;
                let ids: Vec<String> = conn.zrevrange(&key, 0, max as isize - 1).await?;
                (total, ids)
            }
            JobState::Running => {
                let workers: Vec<String> = conn.zrange(c.workers_set(), 0, -1).await?;
                let mut ids = Vec::new();
                for worker in workers {
                    let held: Vec<String> =
                        conn.smembers(format!("{}:{worker}", c.inflight_jobs_set())).await?;
                    ids.extend(held);
                }
                (ids.len() as u64, newest_first(ids))
            }
            JobState::Failed => {
                let waiting: Vec<String> =
                    conn.zrange(c.scheduled_jobs_set(), 0, FAILED_SCAN_LIMIT as isize - 1).await?;
                let mut failed = Vec::new();
                for id in waiting {
                    let status: Option<String> =
                        conn.hget(format!("{}:{id}", c.job_meta_hash()), "status").await?;
                    if status.as_deref() == Some("Failed") {
                        failed.push(id);
                    }
                }
                (failed.len() as u64, newest_first(failed))
            }
            JobState::Dead => {
                let ids: Vec<String> = conn.smembers(c.dead_jobs_set()).await?;
                (ids.len() as u64, newest_first(ids))
            }
        })
    }

    pub(super) async fn list(
        &self,
        queue: QueueName,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<(u64, Vec<JobRecord>), QueueError> {
        let (total, ids) = self.state_ids(queue, state, offset + limit).await?;
        let mut jobs = Vec::with_capacity(limit);
        for id in ids.iter().skip(offset) {
            // A job may move on between the two reads: it is then left out of this page.
            if let Some(job) = self.find_in(queue, id).await? {
                jobs.push(job);
            }
        }
        Ok((total, jobs))
    }

    /// The queue whose data hash holds job `id`.
    async fn queue_of(&self, id: &str) -> Result<Option<QueueName>, QueueError> {
        let mut conn = self.conn.clone();
        for queue in QueueName::ALL {
            let exists: bool = conn.hexists(self.storage_config(queue).job_data_hash(), id).await?;
            if exists {
                return Ok(Some(queue));
            }
        }
        Ok(None)
    }

    pub(super) async fn retry(&self, id: &str) -> Result<RetryOutcome, QueueError> {
        let Some(queue) = self.queue_of(id).await? else { return Ok(RetryOutcome::NotFound) };
        let c = self.storage_config(queue);
        let moved: i64 = RETRY
            .key(c.dead_jobs_set())
            .key(c.scheduled_jobs_set())
            .key(c.active_jobs_list())
            .key(format!("{}:{id}", c.job_meta_hash()))
            .key(c.signal_list())
            .arg(id)
            .arg(self.wake_channel(queue))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if moved == 1 { RetryOutcome::Requeued } else { RetryOutcome::NotRetryable })
    }

    pub(super) async fn discard(&self, id: &str) -> Result<DiscardOutcome, QueueError> {
        let Some(queue) = self.queue_of(id).await? else { return Ok(DiscardOutcome::NotFound) };
        let c = self.storage_config(queue);
        let moved: i64 = DISCARD
            .key(c.active_jobs_list())
            .key(self.delayed_key(queue))
            .key(c.scheduled_jobs_set())
            .key(c.dead_jobs_set())
            .key(format!("{}:{id}", c.job_meta_hash()))
            .arg(id)
            .arg(chrono::Utc::now().timestamp())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if moved == 1 { DiscardOutcome::Discarded } else { DiscardOutcome::NotWaiting })
    }

    pub(super) async fn vacuum(&self, queue: QueueName, cutoff: i64) -> Result<u64, QueueError> {
        let c = self.storage_config(queue);
        let mut conn = self.conn.clone();
        let mut total = 0u64;
        for set in [c.done_jobs_set(), c.dead_jobs_set()] {
            // SSCAN in slices so no single script blocks Redis for long; deleting members
            // while scanning is safe (SSCAN may then skip or repeat some, never corrupt).
            let mut cursor: u64 = 0;
            loop {
                let (next, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
                    .arg(&set)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await?;
                if !ids.is_empty() {
                    let mut inv = VACUUM.prepare_invoke();
                    inv.key(&set).key(c.job_data_hash()).key(c.job_meta_hash()).arg(cutoff);
                    for id in &ids {
                        inv.arg(id);
                    }
                    let deleted: u64 = inv.invoke_async(&mut conn).await?;
                    total += deleted;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(total)
    }

    pub(super) async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
