//! Canary runs: a no-op job per queue, timed from enqueue to done.

use chrono::{DateTime, Utc};

use crate::on_pool;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CanaryRun {
    pub id: String,
    pub queue: String,
    pub job_id: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub latency_ms: Option<i64>,
    pub completions: i64,
}

impl Store {
    #[crate::boxed]
    pub async fn insert_canary_run(
        &self,
        id: &str,
        queue: &str,
        enqueued_at: DateTime<Utc>,
        audit: Option<&crate::audit::AuditEntry>,
    ) -> Result<(), StoreError> {
        crate::audited!(self, maybe audit, tx => sqlx::query(
            "INSERT INTO canary_runs (id, queue, enqueued_at) VALUES ($1, $2, $3)")
            .bind(id).bind(queue).bind(enqueued_at).execute(&mut *tx).await?.rows_affected() > 0);
        Ok(())
    }

    #[crate::boxed]
    pub async fn set_canary_job_id(&self, id: &str, job_id: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("UPDATE canary_runs SET job_id = $2 WHERE id = $1")
            .bind(id).bind(job_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Marks a run done; the first completion sets the time and latency, every one is
    /// counted (one atomic update, so readers never see a half-completed run).
    /// Returns the run as it now stands, or `None` if it is unknown (vacuumed).
    #[crate::boxed]
    pub async fn complete_canary_run(
        &self,
        id: &str,
        completed_at: DateTime<Utc>,
    ) -> Result<Option<CanaryRun>, StoreError> {
        let Some(run) = self.canary_run(id).await? else { return Ok(None) };
        let latency = (completed_at - run.enqueued_at).num_milliseconds().max(0);
        let row = on_pool!(self, pool => sqlx::query_as::<_, CanaryRun>(
            "UPDATE canary_runs SET
               completed_at = COALESCE(completed_at, $2),
               latency_ms = COALESCE(latency_ms, $3),
               completions = completions + 1
             WHERE id = $1
             RETURNING id, queue, job_id, enqueued_at, completed_at, latency_ms, completions")
            .bind(id).bind(completed_at).bind(latency).fetch_optional(pool).await)?;
        Ok(row)
    }

    #[crate::boxed]
    pub async fn canary_run(&self, id: &str) -> Result<Option<CanaryRun>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, CanaryRun>(
            "SELECT id, queue, job_id, enqueued_at, completed_at, latency_ms, completions
             FROM canary_runs WHERE id = $1").bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// The newest completed run of a queue.
    #[crate::boxed]
    pub async fn last_completed_canary(
        &self,
        queue: &str,
    ) -> Result<Option<CanaryRun>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, CanaryRun>(
            "SELECT id, queue, job_id, enqueued_at, completed_at, latency_ms, completions
             FROM canary_runs WHERE queue = $1 AND completed_at IS NOT NULL
             ORDER BY enqueued_at DESC LIMIT 1").bind(queue).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Deletes runs enqueued before `cutoff`; returns how many.
    #[crate::boxed]
    pub async fn delete_canary_runs_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n = on_pool!(self, pool => sqlx::query("DELETE FROM canary_runs WHERE enqueued_at < $1")
            .bind(cutoff).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n)
    }
}
