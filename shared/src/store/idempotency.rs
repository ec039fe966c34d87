//! Idempotency keys: the first response to a POST, kept for 24 h per (API key, key).

use chrono::{DateTime, Duration, Utc};

use super::{Store, StoreError};
use crate::on_pool;

/// A request that claimed its key and is still running is presumed crashed after this.
const ABANDONED_AFTER: Duration = Duration::seconds(60);

/// A stored first response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// What a request carrying an idempotency key should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First use: run the request, then [`Store::complete_idempotency`].
    Execute,
    /// Seen before with the same request: answer this.
    Replay(StoredResponse),
    /// Seen before with a different request body or route.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

type Row =
    (String, String, Option<i32>, Option<String>, Option<String>, DateTime<Utc>, DateTime<Utc>);

impl Store {
    /// Claims `(api_key_id, key)` for a request whose fingerprint is `request_hash`.
    #[crate::boxed]
    pub async fn claim_idempotency(
        &self,
        api_key_id: &str,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        for _ in 0..2 {
            let inserted = on_pool!(self, pool => sqlx::query(
                "INSERT INTO idempotency_keys
                   (api_key_id, idem_key, request_hash, state, created_at, expires_at)
                 VALUES ($1, $2, $3, 'running', $4, $5)
                 ON CONFLICT (api_key_id, idem_key) DO NOTHING")
                .bind(api_key_id).bind(key).bind(request_hash).bind(now).bind(now + ttl)
                .execute(pool).await.map(|r| r.rows_affected()))?;
            if inserted == 1 {
                return Ok(Claim::Execute);
            }
            let row: Option<Row> = on_pool!(self, pool => sqlx::query_as(
                "SELECT request_hash, state, response_status, response_content_type,
                        response_body, created_at, expires_at
                 FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2")
                .bind(api_key_id).bind(key).fetch_optional(pool).await)?;
            let Some((hash, state, status, ctype, body, created_at, expires_at)) = row else {
                continue; // deleted meanwhile: try to claim again
            };
            let stale =
                expires_at <= now || (state == "running" && created_at + ABANDONED_AFTER <= now);
            if stale {
                // Expired, or its request died mid-way: forget it (only that exact row) and retry.
                on_pool!(self, pool => sqlx::query(
                    "DELETE FROM idempotency_keys
                     WHERE api_key_id = $1 AND idem_key = $2 AND created_at = $3")
                    .bind(api_key_id).bind(key).bind(created_at)
                    .execute(pool).await.map(|r| r.rows_affected()))?;
                continue;
            }
            if hash != request_hash {
                return Ok(Claim::Mismatch);
            }
            return Ok(match (state.as_str(), status) {
                ("done", Some(status)) => Claim::Replay(StoredResponse {
                    status: status as u16,
                    content_type: ctype,
                    body: body.unwrap_or_default(),
                }),
                _ => Claim::InProgress,
            });
        }
        Ok(Claim::InProgress)
    }

    /// Stores the response of a claimed request.
    #[crate::boxed]
    pub async fn complete_idempotency(
        &self,
        api_key_id: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', response_status = $3,
               response_content_type = $4, response_body = $5
             WHERE api_key_id = $1 AND idem_key = $2")
            .bind(api_key_id).bind(key).bind(i32::from(response.status))
            .bind(&response.content_type).bind(&response.body)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Gives a claim up (the request failed in a way worth retrying).
    #[crate::boxed]
    pub async fn release_idempotency(&self, api_key_id: &str, key: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2")
            .bind(api_key_id).bind(key).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    #[crate::boxed]
    pub async fn delete_expired_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n = on_pool!(self, pool => sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n)
    }
}
