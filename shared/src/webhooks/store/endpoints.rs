//! Webhook endpoints: their records, subscriptions, secrets and health counters.

use chrono::{DateTime, Utc};

use crate::audit::AuditEntry;

use crate::{
    ids::EndpointId,
    on_pool,
    store::{Store, StoreError},
    tenants::Owner,
};

const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, secret_sealed, \
    previous_secret_sealed, previous_secret_until, rate_limit_per_second, enabled, \
    disabled_reason, disabled_at, failure_count, last_success_at, last_failure_at, last_error, \
    environment, created_by, created_at, updated_at, deleted_at, tenant_id";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: EndpointId,
    pub url: String,
    pub description: Option<String>,
    pub event_types: String,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub rate_limit_per_second: Option<i64>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failure_count: i64,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub environment: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub tenant_id: Owner,
}

impl EndpointRow {
    pub fn patterns(&self) -> Vec<String> {
        self.event_types.split_whitespace().map(str::to_owned).collect()
    }
}

/// The context a secret is sealed for: bound to its endpoint.
pub fn secret_context(endpoint_id: &str) -> String {
    format!("webhook-secret:{endpoint_id}")
}

/// An enabled endpoint's subscription patterns, space-separated as stored.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub endpoint_id: EndpointId,
    pub event_types: String,
    /// An endpoint receives only its own owner's events.
    pub tenant_id: Owner,
}

/// Every enabled endpoint's subscription, as of `version` (bumped by triggers whenever an
/// endpoint is added, removed, enabled, disabled or re-subscribed: migration 0017; `None`:
/// its row is missing, so writes cannot be checked against it).
#[derive(Debug, Clone)]
pub struct Subscriptions {
    pub version: Option<i64>,
    pub endpoints: Vec<Subscription>,
}

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub id: EndpointId,
    pub url: String,
    pub description: Option<String>,
    pub event_types: String,
    pub secret_sealed: String,
    pub rate_limit_per_second: Option<i64>,
    pub environment: String,
    pub created_by: Option<String>,
    pub tenant_id: Owner,
}

#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<String>,
    pub rate_limit_per_second: Option<i64>,
    /// `Some(true)` re-enables and resets the failure count; `Some(false)` disables.
    pub enabled: Option<bool>,
}

impl Store {
    #[crate::boxed]
    pub async fn insert_endpoint(
        &self,
        e: &NewEndpoint,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<EndpointRow, StoreError> {
        let sql = format!(
            "INSERT INTO webhook_endpoints (id, url, description, event_types, secret_sealed,
               rate_limit_per_second, enabled, environment, created_by, created_at, updated_at,
               tenant_id)
             VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $8, $9, $9, $10) RETURNING {ENDPOINT_COLUMNS}"
        );
        let row = crate::audited!(self, audit, tx => sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(&e.id).bind(&e.url).bind(&e.description).bind(&e.event_types)
            .bind(&e.secret_sealed).bind(e.rate_limit_per_second).bind(&e.environment)
            .bind(&e.created_by).bind(now).bind(&e.tenant_id).fetch_one(&mut *tx).await.map(Some)?);
        Ok(row.expect("an insert returns its row"))
    }

    /// An endpoint that has not been deleted.
    #[crate::boxed]
    pub async fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL"
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// One owner's endpoints, newest first, and their total.
    #[crate::boxed]
    pub async fn list_endpoints(
        &self,
        owner: &Owner,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<EndpointRow>), StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
             WHERE deleted_at IS NULL AND tenant_id = $1
             ORDER BY id DESC LIMIT $2 OFFSET $3"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(owner).bind(limit).bind(offset).fetch_all(pool).await)?;
        let (total,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE deleted_at IS NULL AND tenant_id = $1")
            .bind(owner).fetch_one(pool).await)?;
        Ok((total, rows))
    }

    /// What every enabled endpoint is subscribed to, and whose it is, for fan-out, with the
    /// version of the subscriptions read (one statement, one snapshot). The version row is
    /// one row of its own (a row missing would say "no version", never "no endpoints").
    #[crate::boxed]
    pub async fn subscriptions(&self) -> Result<Subscriptions, StoreError> {
        type Row = (Option<i64>, Option<EndpointId>, Option<String>, Option<Owner>);
        let rows: Vec<Row> = on_pool!(self, pool => sqlx::query_as(
            "SELECT version, NULL, NULL, NULL FROM webhook_subscriptions_version
             UNION ALL
             SELECT NULL, id, event_types, tenant_id FROM webhook_endpoints
             WHERE enabled AND deleted_at IS NULL")
            .fetch_all(pool).await)?;
        let mut version = None;
        let mut endpoints = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                (Some(v), ..) => version = Some(v),
                (None, Some(endpoint_id), Some(event_types), Some(tenant_id)) => {
                    endpoints.push(Subscription { endpoint_id, event_types, tenant_id })
                }
                _ => {}
            }
        }
        Ok(Subscriptions { version, endpoints })
    }

    #[crate::boxed]
    pub async fn update_endpoint(
        &self,
        id: &str,
        p: &EndpointPatch,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Option<EndpointRow>, StoreError> {
        let enable = p.enabled == Some(true);
        let disable = p.enabled == Some(false);
        let sql = format!(
            "UPDATE webhook_endpoints SET
               url = COALESCE($2, url),
               description = COALESCE($3, description),
               event_types = COALESCE($4, event_types),
               rate_limit_per_second = COALESCE($5, rate_limit_per_second),
               enabled = CASE WHEN $6 THEN TRUE WHEN $7 THEN FALSE ELSE enabled END,
               failure_count = CASE WHEN $6 THEN 0 ELSE failure_count END,
               disabled_reason = CASE WHEN $6 THEN NULL WHEN $7 THEN 'disabled through the API'
                                      ELSE disabled_reason END,
               disabled_at = CASE WHEN $6 THEN NULL WHEN $7 THEN $8 ELSE disabled_at END,
               updated_at = $8
             WHERE id = $1 AND deleted_at IS NULL RETURNING {ENDPOINT_COLUMNS}"
        );
        let row = crate::audited!(self, audit, tx => sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(id).bind(&p.url).bind(&p.description).bind(&p.event_types)
            .bind(p.rate_limit_per_second).bind(enable).bind(disable).bind(now)
            .fetch_optional(&mut *tx).await?);
        Ok(row)
    }

    #[crate::boxed]
    pub async fn delete_endpoint(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let n = crate::audited!(self, audit, tx => sqlx::query(
            "UPDATE webhook_endpoints SET deleted_at = $2, enabled = FALSE, updated_at = $2
             WHERE id = $1 AND deleted_at IS NULL")
            .bind(id).bind(now).execute(&mut *tx).await?.rows_affected() == 1);
        Ok(n)
    }

    /// Installs a new secret; the current one keeps signing until `previous_until`.
    #[crate::boxed]
    pub async fn rotate_endpoint_secret(
        &self,
        id: &str,
        new_sealed: &str,
        previous_sealed: &str,
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Option<EndpointRow>, StoreError> {
        let sql = format!(
            "UPDATE webhook_endpoints SET secret_sealed = $2, previous_secret_sealed = $3,
               previous_secret_until = $4, updated_at = $5
             WHERE id = $1 AND deleted_at IS NULL RETURNING {ENDPOINT_COLUMNS}"
        );
        let row = crate::audited!(self, audit, tx => sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(id).bind(new_sealed).bind(previous_sealed).bind(previous_until).bind(now)
            .fetch_optional(&mut *tx).await?);
        Ok(row)
    }

    /// Disables endpoints that failed at least `threshold` times in a row and have not
    /// succeeded since `since`; returns them.
    #[crate::boxed]
    pub async fn disable_failing_endpoints(
        &self,
        threshold: i64,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EndpointRow>, StoreError> {
        let sql = format!(
            "UPDATE webhook_endpoints SET enabled = FALSE, disabled_at = $3, updated_at = $3,
               disabled_reason = 'failed ' || failure_count || ' times in a row with no success for 24 h'
             WHERE enabled AND deleted_at IS NULL AND failure_count >= $1
               AND (last_success_at IS NULL OR last_success_at < $2)
             RETURNING {ENDPOINT_COLUMNS}"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(threshold).bind(since).bind(now).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Endpoints by state: (enabled, disabled).
    #[crate::boxed]
    pub async fn endpoint_counts(&self) -> Result<(i64, i64), StoreError> {
        let (enabled, disabled): (i64, i64) = on_pool!(self, pool => sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN enabled THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN enabled THEN 0 ELSE 1 END), 0)
             FROM webhook_endpoints WHERE deleted_at IS NULL").fetch_one(pool).await)?;
        Ok((enabled, disabled))
    }
}
