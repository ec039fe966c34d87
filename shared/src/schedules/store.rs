//! Schedule bookkeeping: the last tick each schedule handled and how its runs went.

use chrono::{DateTime, Utc};

use crate::on_pool;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ScheduleState {
    pub name: String,
    pub last_tick_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub runs: i64,
    pub failures: i64,
    /// A run asked for through the API, not yet run by the leader.
    pub run_requested_at: Option<DateTime<Utc>>,
}

const STATE_COLUMNS: &str = "name, last_tick_at, last_run_at, last_success_at, last_error, runs, failures, run_requested_at";

impl Store {
    #[crate::boxed]
    pub async fn schedule_states(&self) -> Result<Vec<ScheduleState>, StoreError> {
        let sql = format!("SELECT {STATE_COLUMNS} FROM schedule_state ORDER BY name");
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ScheduleState>(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_all(pool).await)?;
        Ok(rows)
    }

    #[crate::boxed]
    pub async fn schedule_state(&self, name: &str) -> Result<Option<ScheduleState>, StoreError> {
        let sql = format!("SELECT {STATE_COLUMNS} FROM schedule_state WHERE name = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, ScheduleState>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(name).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Claims the cron tick at `tick_at` for `name`: true when no earlier claim covers it.
    /// The claim comes before the run, so two schedulers that both think they lead (a lease
    /// lost mid-tick) still run a tick once, and a missed tick is never claimed twice.
    #[crate::boxed]
    pub async fn claim_schedule_tick(
        &self,
        name: &str,
        tick_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => sqlx::query(
            "INSERT INTO schedule_state (name, last_tick_at) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET last_tick_at = excluded.last_tick_at
             WHERE schedule_state.last_tick_at < excluded.last_tick_at")
            .bind(name).bind(tick_at)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Records how a claimed tick's run went.
    #[crate::boxed]
    pub async fn record_schedule_run(
        &self,
        name: &str,
        result: Result<(), String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (success_at, error, failures) = match result {
            Ok(()) => (Some(now), None, 0i64),
            Err(e) => (None, Some(e), 1),
        };
        on_pool!(self, pool => sqlx::query(
            "UPDATE schedule_state SET
               last_run_at = $2,
               last_success_at = COALESCE($3, last_success_at),
               last_error = $4,
               runs = runs + 1,
               failures = failures + $5
             WHERE name = $1")
            .bind(name).bind(now).bind(success_at).bind(error).bind(failures)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Asks the leader to run `name` now, with `audit` in the same transaction: false when a
    /// run asked for earlier has not run yet. A schedule never seen before starts with its
    /// ticks up to `now` handled (as the scheduler would adopt them), so asking for one run
    /// never also runs a missed tick.
    #[crate::boxed]
    pub async fn request_schedule_run(
        &self,
        name: &str,
        now: DateTime<Utc>,
        audit: &crate::audit::AuditEntry,
    ) -> Result<bool, StoreError> {
        Ok(crate::audited!(self, audit, tx => sqlx::query(
            "INSERT INTO schedule_state (name, last_tick_at, run_requested_at) VALUES ($1, $2, $2)
             ON CONFLICT (name) DO UPDATE SET run_requested_at = excluded.run_requested_at
             WHERE schedule_state.run_requested_at IS NULL")
            .bind(name).bind(now).execute(&mut *tx).await?.rows_affected() == 1))
    }

    /// Takes the request to run `name` made at `at` (once: two leaders never both run it).
    #[crate::boxed]
    pub async fn take_schedule_request(
        &self,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => sqlx::query(
            "UPDATE schedule_state SET run_requested_at = NULL
             WHERE name = $1 AND run_requested_at = $2")
            .bind(name).bind(at).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}
