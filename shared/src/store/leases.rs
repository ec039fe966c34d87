//! Named leases in the store: the scheduler's leader lock when there is no Redis.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::on_pool;

impl Store {
    /// Takes or renews `name` for `holder` until `expires_at`. Succeeds when the lease is
    /// free, expired, or already held by `holder`; one atomic upsert on both backends.
    #[crate::boxed]
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                                              expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4
             RETURNING holder")
            .bind(name).bind(holder).bind(expires_at).bind(now)
            .fetch_optional(pool).await)?;
        Ok(row.is_some_and(|(h,)| h == holder))
    }

    /// Gives the lease up at once (on shutdown), if `holder` still has it.
    #[crate::boxed]
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name).bind(holder).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
