//! Audit entries: written inside a change's transaction, read newest first by keyset.

use chrono::{DateTime, Utc};

use crate::on_pool;
use crate::store::{Store, StoreError};
use crate::tenants::Owner;

/// Runs `$body` (statements on `&mut *$tx`) in a transaction and, when its value says it
/// changed something ([`crate::audit::Changed`]), writes `$entry` in the same transaction.
/// The body's value is the macro's.
#[macro_export]
macro_rules! audited {
    ($store:expr, $entry:expr, $tx:ident => $body:expr) => {{
        let entry: &$crate::audit::AuditEntry = $entry;
        match $store {
            $crate::store::Store::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                if $crate::audit::Changed::changed(&out) {
                    $crate::audit_insert!(&mut *$tx, entry);
                }
                $tx.commit().await?;
                out
            }
            $crate::store::Store::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                if $crate::audit::Changed::changed(&out) {
                    $crate::audit_insert!(&mut *$tx, entry);
                }
                $tx.commit().await?;
                out
            }
        }
    }};
}

/// The one INSERT of an entry, on whichever executor is given.
#[macro_export]
macro_rules! audit_insert {
    ($exec:expr, $e:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (id, at, tenant_id, actor_key_id, actor_prefix, action,
               target_type, target_id, client_addr, user_agent, request_id, outcome, changed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&$e.id)
        .bind($e.at)
        .bind(&$e.tenant)
        .bind(&$e.actor.key_id)
        .bind(&$e.actor.key_prefix)
        .bind($e.action)
        .bind($e.target_type)
        .bind(&$e.target_id)
        .bind(&$e.actor.client_addr)
        .bind(&$e.actor.user_agent)
        .bind(&$e.actor.request_id)
        .bind($e.outcome)
        .bind(&$e.changed)
        .execute($exec)
        .await?
    };
}

const COLUMNS: &str = "id, at, tenant_id, actor_key_id, actor_prefix, action, target_type, \
    target_id, client_addr, user_agent, request_id, outcome, changed";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub at: DateTime<Utc>,
    pub tenant_id: Owner,
    pub actor_key_id: Option<String>,
    pub actor_prefix: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub outcome: String,
    pub changed: String,
}

/// What to read: one owner's entries (every owner's with `None`), filtered, older than
/// `before` (the keyset cursor: an entry id).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant: Option<Owner>,
    pub action: Option<String>,
    pub actor_key_id: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<String>,
}

impl Store {
    /// Writes one entry on its own (security events, which change nothing else).
    pub async fn insert_audit(&self, e: &super::AuditEntry) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            crate::audit_insert!(pool, e);
        });
        Ok(())
    }

    /// Entries newest first, at most `limit`.
    pub async fn audit_entries(
        &self,
        f: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log
             WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR action = $2)
               AND ($3 IS NULL OR actor_key_id = $3) AND ($4 IS NULL OR target_id = $4)
               AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at < $6)
               AND ($7 IS NULL OR id < $7)
             ORDER BY id DESC LIMIT $8"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&f.tenant).bind(&f.action).bind(&f.actor_key_id).bind(&f.target_id)
            .bind(f.since).bind(f.until).bind(&f.before).bind(limit)
            .fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Deletes entries before `cutoff`, in bounded batches; returns how many.
    pub async fn delete_audit_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.delete_in_batches(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT 5000)",
            5000,
            cutoff,
        )
        .await
    }
}
