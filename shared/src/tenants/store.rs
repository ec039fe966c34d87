//! Tenant records, soft-deleted. Deleting one disables its endpoints in the same
//! transaction; its keys are refused at authentication (the key lookup reads the tenant).

use chrono::{DateTime, Utc};

use crate::audit::AuditEntry;

use super::TenantStatus;
use crate::ids::TenantId;
use crate::on_pool;
use crate::store::{Store, StoreError};

const COLUMNS: &str = "id, name, metadata, status, created_at, updated_at, deleted_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    /// A JSON object, as the caller gave it.
    pub metadata: String,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    pub metadata: String,
}

/// Changes to a tenant; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub metadata: Option<String>,
}

impl Store {
    #[crate::boxed]
    pub async fn insert_tenant(
        &self,
        t: &NewTenant,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<TenantRow, StoreError> {
        let sql = format!(
            "INSERT INTO tenants (id, name, metadata, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}"
        );
        let row = crate::audited!(self, audit, tx => sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(sql))
            .bind(&t.id).bind(&t.name).bind(&t.metadata).bind(TenantStatus::Active).bind(now)
            .fetch_one(&mut *tx).await.map(Some)?);
        Ok(row.expect("an insert returns its row"))
    }

    /// A tenant, deleted or not.
    #[crate::boxed]
    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tenants WHERE id = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(sql))
            .bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Tenants, newest first; the total counted under the same filter.
    #[crate::boxed]
    pub async fn list_tenants(
        &self,
        include_deleted: bool,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<TenantRow>), StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tenants WHERE ($1 OR deleted_at IS NULL)
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(include_deleted).bind(limit).bind(offset).fetch_all(pool).await)?;
        let total: i64 = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM tenants WHERE ($1 OR deleted_at IS NULL)")
            .bind(include_deleted).fetch_one(pool).await)?;
        Ok((total, rows))
    }

    /// Changes a live tenant; `None` when there is none.
    #[crate::boxed]
    pub async fn update_tenant(
        &self,
        id: &str,
        patch: &TenantPatch,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Option<TenantRow>, StoreError> {
        let sql = format!(
            "UPDATE tenants SET name = COALESCE($2, name), metadata = COALESCE($3, metadata),
               updated_at = $4
             WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
        );
        let row = crate::audited!(self, audit, tx => sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(sql))
            .bind(id).bind(&patch.name).bind(&patch.metadata).bind(now)
            .fetch_optional(&mut *tx).await?);
        Ok(row)
    }

    /// Soft-deletes a live tenant and disables its endpoints, in one transaction. Returns
    /// the ids of its keys (for the caller to forget from caches), or `None` when there was
    /// no such live tenant.
    #[crate::boxed]
    pub async fn delete_tenant(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Option<Vec<String>>, StoreError> {
        macro_rules! body {
            ($tx:ident) => {{
                let done = sqlx::query(
                    "UPDATE tenants SET status = $2, deleted_at = $3, updated_at = $3
                     WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(TenantStatus::Deleted)
                .bind(now)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if done == 0 {
                    None
                } else {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET enabled = FALSE,
                           disabled_reason = 'tenant deleted', disabled_at = $2, updated_at = $2
                         WHERE tenant_id = $1 AND enabled AND deleted_at IS NULL",
                    )
                    .bind(id)
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?;
                    let keys: Vec<String> =
                        sqlx::query_scalar("SELECT id FROM api_keys WHERE tenant_id = $1")
                            .bind(id)
                            .fetch_all(&mut *$tx)
                            .await?;
                    Some(keys)
                }
            }};
        }
        Ok(crate::audited!(self, audit, tx => body!(tx)))
    }
}
