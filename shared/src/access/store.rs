//! API keys: stored as a digest with scopes, status and usage counters.

use chrono::{DateTime, Utc};

use crate::audit::AuditEntry;

use crate::store::{Store, StoreError};
use crate::{
    access::{Scope, scopes_from_text},
    ids::ApiKeyId,
    on_pool,
    quotas::{Window, WindowLimit},
    tenants::Owner,
};

const COLUMNS: &str = "id, name, key_hash, prefix, scopes, environment, rate_limit_per_minute, \
    expires_at, revoked_at, deleted_at, created_by, created_at, updated_at, last_used_at, usage_count, \
    tenant_id, metadata, rate_limit_per_hour, rate_limit_per_day, rate_limit_per_month, \
    suspended_at, suspended_reason";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub name: String,
    pub key_hash: String,
    pub prefix: String,
    pub scopes: String,
    pub environment: String,
    pub rate_limit_per_minute: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub usage_count: i64,
    pub tenant_id: Owner,
    /// A JSON object, the caller's own.
    pub metadata: String,
    pub rate_limit_per_hour: Option<i64>,
    pub rate_limit_per_day: Option<i64>,
    pub rate_limit_per_month: Option<i64>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub suspended_reason: Option<String>,
}

/// A key's status as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
    /// Suspended for misbehaving until `PATCH {"active": true}`.
    Suspended,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Suspended => "suspended",
        }
    }
}

impl ApiKeyRow {
    pub fn quotas(&self) -> KeyQuotas {
        KeyQuotas {
            per_hour: self.rate_limit_per_hour,
            per_day: self.rate_limit_per_day,
            per_month: self.rate_limit_per_month,
        }
    }

    pub fn scope_list(&self) -> Vec<Scope> {
        scopes_from_text(&self.scopes)
    }

    pub fn status_at(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            KeyStatus::Expired
        } else if self.suspended_at.is_some() {
            KeyStatus::Suspended
        } else {
            KeyStatus::Active
        }
    }
}

/// A key to insert; the raw key itself is never here, only its digest.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub key_hash: String,
    pub prefix: String,
    pub scopes: String,
    pub environment: String,
    pub rate_limit_per_minute: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub tenant_id: Owner,
    pub metadata: String,
    pub quotas: KeyQuotas,
}

/// A key's own quotas over calendar windows; `None`: the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyQuotas {
    pub per_hour: Option<i64>,
    pub per_day: Option<i64>,
    pub per_month: Option<i64>,
}

impl KeyQuotas {
    /// The windows that apply: the key's own, else the server's `defaults` (hour, day,
    /// month; 0 is none).
    pub fn effective(self, defaults: [u64; 3]) -> Vec<WindowLimit> {
        [Window::PerHour, Window::PerDay, Window::PerMonth]
            .into_iter()
            .zip([self.per_hour, self.per_day, self.per_month])
            .zip(defaults)
            .filter_map(|((window, own), default)| {
                let limit = own.map_or(default, |n| n.max(0) as u64);
                (limit > 0).then_some(WindowLimit { window, limit })
            })
            .collect()
    }
}

/// Changes to a key; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyPatch {
    pub name: Option<String>,
    pub scopes: Option<String>,
    pub rate_limit_per_minute: Option<i64>,
    /// `Some(false)` revokes, `Some(true)` re-activates.
    pub active: Option<bool>,
    pub metadata: Option<String>,
    /// Each `Some` replaces that window's quota.
    pub quotas: KeyQuotas,
}

/// Usage to add to a key: requests counted and the latest use.
#[derive(Debug, Clone)]
pub struct KeyUse {
    pub key_id: String,
    pub count: i64,
    pub last_used_at: DateTime<Utc>,
}

impl Store {
    #[crate::boxed]
    pub async fn insert_api_key(
        &self,
        k: &NewApiKey,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<ApiKeyRow, StoreError> {
        let sql = format!(
            "INSERT INTO api_keys (id, name, key_hash, prefix, scopes, environment,
               rate_limit_per_minute, expires_at, created_by, created_at, updated_at,
               tenant_id, metadata, rate_limit_per_hour, rate_limit_per_day, rate_limit_per_month)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15)
             RETURNING {COLUMNS}"
        );
        let row = crate::audited!(self, audit, tx => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql))
            .bind(&k.id).bind(&k.name).bind(&k.key_hash).bind(&k.prefix).bind(&k.scopes)
            .bind(&k.environment).bind(k.rate_limit_per_minute).bind(k.expires_at)
            .bind(&k.created_by).bind(now).bind(&k.tenant_id).bind(&k.metadata)
            .bind(k.quotas.per_hour).bind(k.quotas.per_day).bind(k.quotas.per_month)
            .fetch_one(&mut *tx).await.map(Some)?);
        Ok(row.expect("an insert returns its row"))
    }

    #[crate::boxed]
    pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql))
            .bind(hash).fetch_optional(pool).await)?;
        Ok(row)
    }

    #[crate::boxed]
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql))
            .bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// A page of one owner's keys (every owner's with `None`), newest first, and the total;
    /// deleted keys only when asked for.
    #[crate::boxed]
    pub async fn list_api_keys(
        &self,
        owner: Option<&Owner>,
        include_deleted: bool,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<ApiKeyRow>), StoreError> {
        let filter = "WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 OR deleted_at IS NULL)";
        let sql =
            format!("SELECT {COLUMNS} FROM api_keys {filter} ORDER BY id DESC LIMIT $3 OFFSET $4");
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(owner).bind(include_deleted).bind(limit).bind(offset).fetch_all(pool).await)?;
        let count = format!("SELECT COUNT(*) FROM api_keys {filter}");
        let (total,): (i64,) = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(count.clone()))
            .bind(owner).bind(include_deleted).fetch_one(pool).await)?;
        Ok((total, rows))
    }

    #[crate::boxed]
    pub async fn count_api_keys(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, pool => sqlx::query_as("SELECT COUNT(*) FROM api_keys")
            .fetch_one(pool).await)?;
        Ok(n)
    }

    /// Applies a patch; returns the key as it now is, or `None` when there is no such key.
    #[crate::boxed]
    pub async fn update_api_key(
        &self,
        id: &str,
        patch: &ApiKeyPatch,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Option<ApiKeyRow>, StoreError> {
        let revoke = patch.active == Some(false);
        let reactivate = patch.active == Some(true);
        let sql = format!(
            "UPDATE api_keys SET
               name = COALESCE($2, name),
               scopes = COALESCE($3, scopes),
               rate_limit_per_minute = COALESCE($4, rate_limit_per_minute),
               revoked_at = CASE WHEN $5 THEN COALESCE(revoked_at, $7)
                                 WHEN $6 THEN NULL ELSE revoked_at END,
               suspended_at = CASE WHEN $6 THEN NULL ELSE suspended_at END,
               suspended_reason = CASE WHEN $6 THEN NULL ELSE suspended_reason END,
               metadata = COALESCE($8, metadata),
               rate_limit_per_hour = COALESCE($9, rate_limit_per_hour),
               rate_limit_per_day = COALESCE($10, rate_limit_per_day),
               rate_limit_per_month = COALESCE($11, rate_limit_per_month),
               updated_at = $7
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row = crate::audited!(self, audit, tx => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql))
            .bind(id).bind(&patch.name).bind(&patch.scopes).bind(patch.rate_limit_per_minute)
            .bind(revoke).bind(reactivate).bind(now).bind(&patch.metadata)
            .bind(patch.quotas.per_hour).bind(patch.quotas.per_day).bind(patch.quotas.per_month)
            .fetch_optional(&mut *tx).await?);
        Ok(row)
    }

    /// Suspends an active key (once: `false` when it was already suspended, revoked or
    /// gone), with its audit entry in the same transaction.
    #[crate::boxed]
    pub async fn suspend_api_key(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let done = crate::audited!(self, audit, tx => sqlx::query(
            "UPDATE api_keys SET suspended_at = $2, suspended_reason = $3, updated_at = $2
             WHERE id = $1 AND suspended_at IS NULL AND revoked_at IS NULL")
            .bind(id).bind(now).bind(reason).execute(&mut *tx).await?.rows_affected() == 1);
        Ok(done)
    }

    /// Revokes and marks deleted (a soft delete: the row stays for audit and usage).
    #[crate::boxed]
    pub async fn delete_api_key(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let n = crate::audited!(self, audit, tx => sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2),
                                 deleted_at = COALESCE(deleted_at, $2), updated_at = $2
             WHERE id = $1")
            .bind(id).bind(now).execute(&mut *tx).await?.rows_affected() == 1);
        Ok(n)
    }

    /// Makes the key with this digest an active admin key, creating it if needed (used by
    /// `SWITCHYARD_BOOTSTRAP_ADMIN_KEY`). Returns its id.
    #[crate::boxed]
    pub async fn ensure_admin_key(
        &self,
        hash: &str,
        prefix: &str,
        environment: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let (id,): (String,) = on_pool!(self, pool => sqlx::query_as(
            "INSERT INTO api_keys (id, name, key_hash, prefix, scopes, environment, created_by,
                                   created_at, updated_at)
             VALUES ($1, 'bootstrap admin', $2, $3, 'admin', $4, 'bootstrap', $5, $5)
             ON CONFLICT (key_hash) DO UPDATE SET scopes = 'admin', revoked_at = NULL,
               deleted_at = NULL, expires_at = NULL, updated_at = excluded.updated_at
             RETURNING id")
            .bind(crate::ids::ApiKeyId::generate().into_string()).bind(hash).bind(prefix).bind(environment)
            .bind(now).fetch_one(pool).await)?;
        Ok(id)
    }

    /// Adds batched usage: one statement per key, never one per request.
    #[crate::boxed]
    pub async fn add_api_key_usage(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        for u in uses {
            on_pool!(self, pool => sqlx::query(
                "UPDATE api_keys SET usage_count = usage_count + $2,
                   last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $3
                                       THEN $3 ELSE last_used_at END
                 WHERE id = $1")
                .bind(&u.key_id).bind(u.count).bind(u.last_used_at)
                .execute(pool).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }
}
