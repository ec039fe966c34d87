//! Audit entries: written inside a change's transaction, read newest first by keyset.

use chrono::{DateTime, Utc};

use crate::on_pool;
use crate::store::{Store, StoreError};
use crate::tenants::Owner;

/// Runs `$body` (statements on `&mut *$tx`) in a transaction and, when its value says it
/// changed something ([`crate::audit::Changed`]), writes `$entry` in the same transaction.
/// The body's value is the macro's. `maybe $entry` takes an `Option<&AuditEntry>` (a path
/// that is audited only when a request, not Switchyard itself, takes it).
#[macro_export]
macro_rules! audited {
    ($store:expr, maybe $entry:expr, $tx:ident => $body:expr) => {{
        let entry: Option<&$crate::audit::AuditEntry> = $entry;
        match $store {
            $crate::store::Store::Sqlite(pool, writer) => {
                let (_turn, mut $tx) = writer.begin(pool).await?;
                let out = $body;
                if let Some(entry) = entry.filter(|_| $crate::audit::Changed::changed(&out)) {
                    $crate::audit_insert!(&mut *$tx, entry);
                }
                $tx.commit().await?;
                out
            }
            $crate::store::Store::Postgres(pool, spares) => {
                let mut conn = spares.lend(pool).await?;
                let mut $tx = sqlx::Connection::begin(&mut *conn).await?;
                let out = $body;
                if let Some(entry) = entry.filter(|_| $crate::audit::Changed::changed(&out)) {
                    $crate::audit_insert!(&mut *$tx, entry);
                }
                $tx.commit().await?;
                conn.give_back();
                out
            }
        }
    }};
    ($store:expr, $entry:expr, $tx:ident => $body:expr) => {{
        let entry: &$crate::audit::AuditEntry = $entry;
        $crate::audited!($store, maybe Some(entry), $tx => $body)
    }};
}

/// The one INSERT of an entry, on whichever executor is given.
#[macro_export]
macro_rules! audit_insert {
    ($exec:expr, $e:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (id, at, tenant_id, actor_key_id, actor_prefix, action,
               target_type, target_id, client_addr, user_agent, request_id, outcome, changed,
               detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
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
        .bind(&$e.detail)
        .execute($exec)
        .await?
    };
}

/// Pushes a multi-row INSERT of `$rows` (`&AuditEntry`s) onto the `QueryBuilder` `$qb`
/// (the group-commit writers add their requests' entries to the same statement or
/// transaction as the change).
#[macro_export]
macro_rules! audit_push_values {
    ($qb:ident, $rows:expr) => {
        $qb.push("INSERT INTO audit_log (").push($crate::audit::COLUMNS).push(") ");
        $qb.push_values($rows, |mut b, e: &$crate::audit::AuditEntry| {
            b.push_bind(&e.id)
                .push_bind(e.at)
                .push_bind(&e.tenant)
                .push_bind(&e.actor.key_id)
                .push_bind(&e.actor.key_prefix)
                .push_bind(e.action)
                .push_bind(e.target_type)
                .push_bind(&e.target_id)
                .push_bind(&e.actor.client_addr)
                .push_bind(&e.actor.user_agent)
                .push_bind(&e.actor.request_id)
                .push_bind(e.outcome)
                .push_bind(&e.changed)
                .push_bind(&e.detail);
        });
    };
}

pub(crate) const COLUMNS: &str = "id, at, tenant_id, actor_key_id, actor_prefix, action, target_type, \
    target_id, client_addr, user_agent, request_id, outcome, changed, detail";

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
    pub detail: String,
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
    #[crate::boxed]
    pub async fn insert_audit(&self, e: &super::AuditEntry) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            crate::audit_insert!(pool, e);
        });
        Ok(())
    }

    /// Entries newest first, at most `limit`.
    #[crate::boxed]
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

    /// Deletes entries before `cutoff`, and `event.published` entries before `publishes`
    /// (when given), in bounded batches; returns how many.
    #[crate::boxed]
    pub async fn delete_audit_before(
        &self,
        cutoff: DateTime<Utc>,
        publishes: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        let mut deleted = self
            .delete_in_batches(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT 5000)",
                5000,
                cutoff,
            )
            .await?;
        if let Some(publishes) = publishes.filter(|p| *p > cutoff) {
            deleted += self
                .delete_in_batches(
                    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log
                       WHERE action = 'event.published' AND at < $1 LIMIT 5000)",
                    5000,
                    publishes,
                )
                .await?;
        }
        Ok(deleted)
    }
}
