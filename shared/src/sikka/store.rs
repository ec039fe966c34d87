//! Sikka: practices (credentials and request keys sealed, looked up by a keyed digest of the
//! office id), the refresh lock that makes token refreshes single-flight across the fleet,
//! and writebacks with their submission lease and poll count.

use chrono::{DateTime, Utc};

use crate::audit::AuditEntry;

use super::{Ending, TokenStatus, WritebackStatus};
use crate::{
    ids::{PracticeId, WritebackId},
    on_pool,
    store::{Store, StoreError},
    tenants::Owner,
};

const PRACTICE_COLUMNS: &str = "id, office_digest, office_id_sealed, secret_key_sealed, \
    practice_id, practice_name, practice_management_system, domain, authorized, token_status, \
    request_key_sealed, refresh_key_sealed, key_version, key_expires_at, refreshed_at, \
    refresh_count, token_error, created_at, updated_at, tenant_id";

/// A practice as stored. Sealed values open only with [`practice_context`] of this row.
#[derive(Clone, sqlx::FromRow)]
pub struct SikkaPractice {
    pub id: PracticeId,
    pub office_digest: String,
    pub office_id_sealed: String,
    pub secret_key_sealed: String,
    pub practice_id: Option<String>,
    pub practice_name: Option<String>,
    pub practice_management_system: Option<String>,
    pub domain: Option<String>,
    /// Listed by `authorized_practices` at the last pull.
    pub authorized: bool,
    /// `none` (no key yet), `active`, `reauthorization_required`.
    pub token_status: TokenStatus,
    pub request_key_sealed: Option<String>,
    pub refresh_key_sealed: Option<String>,
    /// Bumped by every new key: a caller whose key was refused refreshes only if the version
    /// it used is still the current one.
    pub key_version: i64,
    pub key_expires_at: Option<DateTime<Utc>>,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub refresh_count: i64,
    pub token_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The tenant the practice is assigned to: its writebacks' events go to that tenant.
    pub tenant_id: Owner,
}

impl std::fmt::Debug for SikkaPractice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SikkaPractice")
            .field("id", &self.id)
            .field("token_status", &self.token_status)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// The associated data a practice's sealed `field` is bound to.
pub fn practice_context(field: &str, id: &str) -> String {
    format!("sikka-{field}:{id}")
}

/// A practice as pulled from `authorized_practices`, sealed for row `id`.
#[derive(Clone)]
pub struct PracticeUpsert<'a> {
    pub id: &'a str,
    pub office_digest: &'a str,
    pub office_id_sealed: &'a str,
    pub secret_key_sealed: &'a str,
    pub practice_id: Option<&'a str>,
    pub practice_name: Option<&'a str>,
    pub practice_management_system: Option<&'a str>,
    pub domain: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// New request and refresh keys, sealed for the practice's row.
pub struct NewTokens<'a> {
    pub request_key_sealed: &'a str,
    pub refresh_key_sealed: &'a str,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

const WRITEBACK_COLUMNS: &str = "id, practice_ref, operation, target_id, body, status, \
    sikka_id, result, error, submit_attempts, check_count, lease_until, next_check_at, \
    deadline_at, created_by, created_at, submitted_at, completed_at, updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SikkaWriteback {
    pub id: WritebackId,
    /// `sikka_practices.id`.
    pub practice_ref: PracticeId,
    pub operation: String,
    pub target_id: Option<String>,
    /// The JSON body as accepted (validated for the operation).
    pub body: String,
    pub status: WritebackStatus,
    pub sikka_id: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub submit_attempts: i64,
    pub check_count: i64,
    /// A submission in progress holds this lease; a worker that died lets it lapse.
    pub lease_until: Option<DateTime<Utc>>,
    pub next_check_at: Option<DateTime<Utc>>,
    /// Still not done by then: failed as stuck.
    pub deadline_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewWriteback<'a> {
    pub id: &'a str,
    pub practice_ref: &'a str,
    pub operation: &'a str,
    pub target_id: Option<&'a str>,
    pub body: &'a str,
    pub deadline_at: DateTime<Utc>,
    pub created_by: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// How a submission ended at Sikka.
#[derive(Debug, Clone)]
pub enum Submitted<'a> {
    /// Accepted with this writeback id; first check at `next_check_at`.
    Accepted { sikka_id: &'a str, next_check_at: DateTime<Utc> },
    /// Accepted and already final (an update Sikka answered without a writeback id).
    Done { result: &'a str },
}

impl Store {
    #[crate::boxed]
    pub async fn sikka_practice(&self, id: &str) -> Result<Option<SikkaPractice>, StoreError> {
        let sql = format!("SELECT {PRACTICE_COLUMNS} FROM sikka_practices WHERE id = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SikkaPractice>(sqlx::AssertSqlSafe(sql))
            .bind(id).fetch_optional(pool).await)?)
    }

    /// Assigns a practice to an owner (its writebacks' events follow); `None` when there
    /// is no such practice.
    #[crate::boxed]
    pub async fn assign_sikka_practice(
        &self,
        id: &str,
        owner: &Owner,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Option<SikkaPractice>, StoreError> {
        let sql = format!(
            "UPDATE sikka_practices SET tenant_id = $2, updated_at = $3 WHERE id = $1
             RETURNING {PRACTICE_COLUMNS}"
        );
        Ok(
            crate::audited!(self, audit, tx => sqlx::query_as::<_, SikkaPractice>(sqlx::AssertSqlSafe(sql))
            .bind(id).bind(owner).bind(now).fetch_optional(&mut *tx).await?),
        )
    }

    #[crate::boxed]
    pub async fn sikka_practice_by_digest(
        &self,
        digest: &str,
    ) -> Result<Option<SikkaPractice>, StoreError> {
        let sql =
            format!("SELECT {PRACTICE_COLUMNS} FROM sikka_practices WHERE office_digest = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SikkaPractice>(sqlx::AssertSqlSafe(sql))
            .bind(digest).fetch_optional(pool).await)?)
    }

    #[crate::boxed]
    pub async fn list_sikka_practices(&self) -> Result<Vec<SikkaPractice>, StoreError> {
        let sql =
            format!("SELECT {PRACTICE_COLUMNS} FROM sikka_practices ORDER BY practice_name, id");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SikkaPractice>(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool).await)?)
    }

    /// Inserts or updates a practice by its office digest. `false` when another row already
    /// holds the digest under a different id (a concurrent pull): the caller re-reads and
    /// seals for that row instead, since sealed values are bound to their row's id.
    #[crate::boxed]
    pub async fn upsert_sikka_practice(&self, p: &PracticeUpsert<'_>) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query(
            "INSERT INTO sikka_practices (id, office_digest, office_id_sealed, secret_key_sealed,
                practice_id, practice_name, practice_management_system, domain, authorized,
                token_status, key_version, refresh_count, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, TRUE, 'none', 0, 0, $9, $9)
             ON CONFLICT (office_digest) DO UPDATE SET
                office_id_sealed = excluded.office_id_sealed,
                secret_key_sealed = excluded.secret_key_sealed,
                practice_id = excluded.practice_id,
                practice_name = excluded.practice_name,
                practice_management_system = excluded.practice_management_system,
                domain = excluded.domain,
                authorized = TRUE,
                token_status = CASE WHEN sikka_practices.token_status = 'reauthorization_required'
                                    THEN 'none' ELSE sikka_practices.token_status END,
                updated_at = excluded.updated_at
             WHERE sikka_practices.id = excluded.id")
            .bind(p.id).bind(p.office_digest).bind(p.office_id_sealed).bind(p.secret_key_sealed)
            .bind(p.practice_id).bind(p.practice_name).bind(p.practice_management_system)
            .bind(p.domain).bind(p.now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Practices a pull (started at `pulled_at`) did not list are no longer authorized.
    #[crate::boxed]
    pub async fn unlist_sikka_practices(
        &self,
        pulled_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_practices SET authorized = FALSE, updated_at = $1
             WHERE authorized AND updated_at < $1")
            .bind(pulled_at).execute(pool).await.map(|r| r.rows_affected()))?)
    }

    /// Takes the practice's refresh lock for `owner` until `until` unless someone holds it.
    #[crate::boxed]
    pub async fn try_lock_sikka_refresh(
        &self,
        id: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_practices SET refresh_lock_owner = $2, refresh_lock_until = $3
             WHERE id = $1 AND (refresh_lock_until IS NULL OR refresh_lock_until < $4
                                OR refresh_lock_owner = $2)")
            .bind(id).bind(owner).bind(until).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    #[crate::boxed]
    pub async fn unlock_sikka_refresh(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_practices SET refresh_lock_owner = NULL, refresh_lock_until = NULL
             WHERE id = $1 AND refresh_lock_owner = $2")
            .bind(id).bind(owner).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Stores new keys (a new version), marks the token active.
    #[crate::boxed]
    pub async fn store_sikka_tokens(&self, id: &str, t: &NewTokens<'_>) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_practices SET request_key_sealed = $2, refresh_key_sealed = $3,
                key_expires_at = $4, key_version = key_version + 1, token_status = 'active',
                token_error = NULL, refreshed_at = $5, refresh_count = refresh_count + 1,
                updated_at = $5
             WHERE id = $1")
            .bind(id).bind(t.request_key_sealed).bind(t.refresh_key_sealed).bind(t.expires_at)
            .bind(t.now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Marks the practice as needing re-authorization (its keys dropped). `true` if it was
    /// not already marked: the caller announces each change once.
    #[crate::boxed]
    pub async fn mark_sikka_reauthorization(
        &self,
        id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_practices SET token_status = 'reauthorization_required',
                token_error = $2, request_key_sealed = NULL, refresh_key_sealed = NULL,
                key_expires_at = NULL, key_version = key_version + 1, updated_at = $3
             WHERE id = $1 AND token_status <> 'reauthorization_required'")
            .bind(id).bind(error).bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Practices with an active key that expires before `before`.
    #[crate::boxed]
    pub async fn sikka_practices_expiring(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, String>(
            "SELECT id FROM sikka_practices
             WHERE token_status = 'active' AND authorized AND key_expires_at < $1 ORDER BY id")
            .bind(before).fetch_all(pool).await)?)
    }

    #[crate::boxed]
    pub async fn insert_sikka_writeback(
        &self,
        w: &NewWriteback<'_>,
        audit: &crate::audit::AuditEntry,
    ) -> Result<(), StoreError> {
        crate::audited!(self, audit, tx => sqlx::query(
            "INSERT INTO sikka_writebacks (id, practice_ref, operation, target_id, body, status,
                submit_attempts, check_count, deadline_at, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'queued', 0, 0, $6, $7, $8, $8)")
            .bind(w.id).bind(w.practice_ref).bind(w.operation).bind(w.target_id).bind(w.body)
            .bind(w.deadline_at).bind(w.created_by).bind(w.now)
            .execute(&mut *tx).await?.rows_affected() > 0);
        Ok(())
    }

    #[crate::boxed]
    pub async fn sikka_writeback(&self, id: &str) -> Result<Option<SikkaWriteback>, StoreError> {
        let sql = format!("SELECT {WRITEBACK_COLUMNS} FROM sikka_writebacks WHERE id = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SikkaWriteback>(sqlx::AssertSqlSafe(sql))
            .bind(id).fetch_optional(pool).await)?)
    }

    /// Newest first, optionally by status and practice; with the total.
    #[crate::boxed]
    pub async fn list_sikka_writebacks(
        &self,
        status: Option<WritebackStatus>,
        practice_ref: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<SikkaWriteback>, i64), StoreError> {
        let filter = "($1 IS NULL OR status = $1) AND ($2 IS NULL OR practice_ref = $2)";
        let sql = format!(
            "SELECT {WRITEBACK_COLUMNS} FROM sikka_writebacks WHERE {filter}
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let count = format!("SELECT COUNT(*) FROM sikka_writebacks WHERE {filter}");
        let rows = on_pool!(self, pool => sqlx::query_as::<_, SikkaWriteback>(sqlx::AssertSqlSafe(sql))
            .bind(status).bind(practice_ref).bind(limit).bind(offset).fetch_all(pool).await)?;
        let total = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count))
            .bind(status).bind(practice_ref).fetch_one(pool).await)?;
        Ok((rows, total))
    }

    /// Claims a queued writeback for submission until `lease_until`; `None` if it is not
    /// queued or another worker's lease is live (a duplicate message).
    #[crate::boxed]
    pub async fn claim_sikka_submission(
        &self,
        id: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<SikkaWriteback>, StoreError> {
        let sql = format!(
            "UPDATE sikka_writebacks SET submit_attempts = submit_attempts + 1, lease_until = $2,
                updated_at = $3
             WHERE id = $1 AND status = 'queued' AND (lease_until IS NULL OR lease_until < $3)
             RETURNING {WRITEBACK_COLUMNS}"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SikkaWriteback>(sqlx::AssertSqlSafe(sql))
            .bind(id).bind(lease_until).bind(now).fetch_optional(pool).await)?)
    }

    /// Records Sikka's answer to a submission. `false` if the writeback was not queued.
    #[crate::boxed]
    pub async fn record_sikka_submission(
        &self,
        id: &str,
        submitted: &Submitted<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (status, sikka_id, result, next_check, completed) = match submitted {
            Submitted::Accepted { sikka_id, next_check_at } => {
                (WritebackStatus::Submitted, Some(*sikka_id), None, Some(*next_check_at), None)
            }
            Submitted::Done { result } => {
                (WritebackStatus::Completed, None, Some(*result), None, Some(now))
            }
        };
        let n = on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_writebacks SET status = $2, sikka_id = $3, result = $4,
                next_check_at = $5, completed_at = $6, submitted_at = $7, error = NULL,
                lease_until = NULL, updated_at = $7
             WHERE id = $1 AND status = 'queued'")
            .bind(id).bind(status).bind(sikka_id).bind(result).bind(next_check).bind(completed)
            .bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// A submission that will be tried again at `retry_at`: stays queued, lease released,
    /// the reason kept in `error`.
    #[crate::boxed]
    pub async fn defer_sikka_submission(
        &self,
        id: &str,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_writebacks SET error = $2, next_check_at = $3, lease_until = NULL,
                updated_at = $4
             WHERE id = $1 AND status = 'queued'")
            .bind(id).bind(error).bind(retry_at).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Counts check `n` of a submitted writeback that is still pending, and when to look
    /// again. `false` if check `n` was already counted (a duplicate message) or it ended.
    #[crate::boxed]
    pub async fn record_sikka_check(
        &self,
        id: &str,
        n: i64,
        next_check_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_writebacks SET status = 'pending', check_count = $2,
                next_check_at = $3, updated_at = $4
             WHERE id = $1 AND check_count = $2 - 1 AND status IN ('submitted', 'pending')")
            .bind(id).bind(n).bind(next_check_at).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Ends a writeback (`completed` or `failed`) unless it already ended; `check` is the
    /// poll that saw it end (`None` for a submission that failed). `true` if this call ended
    /// it: the caller announces it once.
    #[crate::boxed]
    pub async fn finish_sikka_writeback<'e>(
        &self,
        // One named lifetime for `id` and `ending`: #[boxed] bounds the lifetimes of references.
        id: &'e str,
        ending: Ending<'e>,
        check: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (result, error) = match ending {
            Ending::Completed { result } => (Some(result), None),
            Ending::Failed { error, result } => (result, Some(error)),
        };
        let status = ending.status();
        let done = on_pool!(self, pool => sqlx::query(
            "UPDATE sikka_writebacks SET status = $2, result = $3, error = $4,
                check_count = COALESCE($5, check_count), completed_at = $6, next_check_at = NULL,
                lease_until = NULL, updated_at = $6
             WHERE id = $1 AND status IN ('queued', 'submitted', 'pending')
               AND ($5 IS NULL OR check_count = $5 - 1)")
            .bind(id).bind(status).bind(result).bind(error).bind(check).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Writebacks whose next step is overdue by the grace: submitted or pending ones whose
    /// check is due, and queued ones whose submission is due and not leased.
    #[crate::boxed]
    pub async fn overdue_sikka_writebacks(
        &self,
        due_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SikkaWriteback>, StoreError> {
        let sql = format!(
            "SELECT {WRITEBACK_COLUMNS} FROM sikka_writebacks
             WHERE (status IN ('submitted', 'pending') AND next_check_at < $1)
                OR (status = 'queued' AND COALESCE(next_check_at, updated_at) < $1
                    AND (lease_until IS NULL OR lease_until < $2))
             ORDER BY updated_at LIMIT $3"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, SikkaWriteback>(sqlx::AssertSqlSafe(sql))
            .bind(due_before).bind(now).bind(limit).fetch_all(pool).await)?)
    }

    /// Writebacks not finished by status, for the gauge.
    #[crate::boxed]
    pub async fn sikka_writeback_counts(&self) -> Result<Vec<(WritebackStatus, i64)>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, (WritebackStatus, i64)>(
            "SELECT status, COUNT(*) FROM sikka_writebacks
             WHERE status IN ('queued', 'submitted', 'pending') GROUP BY status")
            .fetch_all(pool).await)?)
    }
}
