//! PIDMS runs (a check or a sync) and their batches; each batch's answers applied to the
//! keys and to their products' counters in one transaction.

use chrono::{DateTime, Utc};

use crate::{
    ids::PidmsBatchId,
    in_tx, on_pool,
    pidms::{BatchStatus, PidkeyAnswer, RunKind, RunStatus},
    store::{Store, StoreError},
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PidmsRun {
    pub id: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub product_filter: Option<String>,
    pub keys_total: i64,
    pub batches_total: i64,
    pub batches_done: i64,
    pub batches_failed: i64,
    pub keys_updated: i64,
    pub created_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "id, kind, status, product_filter, keys_total, batches_total, \
    batches_done, batches_failed, keys_updated, created_by, started_at, finished_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PidmsBatch {
    pub id: PidmsBatchId,
    pub run_id: String,
    pub seq: i64,
    pub keys: String,
    pub status: BatchStatus,
    pub attempts: i64,
    pub keys_updated: i64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct NewPidmsRun<'a> {
    pub id: &'a str,
    pub kind: RunKind,
    pub product_filter: Option<&'a str>,
    pub keys_total: i64,
    pub created_by: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// A batch, by its id and its run's.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRef {
    pub id: PidmsBatchId,
    pub run_id: String,
}

/// One batch of a new run: its keys, newline-separated.
#[derive(Debug, Clone)]
pub struct NewPidmsBatch {
    pub id: PidmsBatchId,
    pub seq: i64,
    pub keys: String,
}

/// A key's stored product and stock, before a batch replaces them.
#[derive(Debug, Clone, sqlx::FromRow)]
struct KeyTally {
    prd: Option<String>,
    remaining: Option<i64>,
    blocked: Option<i64>,
}

/// What keys add to a product's counters in `pidms_products`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    keys: i64,
    counted: i64,
    remaining: i64,
    blocked: i64,
}

impl Tally {
    /// One key: counted towards the average when `remaining` >= 0 (retail keys say -1).
    fn of(remaining: Option<i64>, blocked: Option<i64>, sign: i64) -> Self {
        Tally {
            keys: sign,
            counted: sign * i64::from(remaining.is_some_and(|r| r >= 0)),
            remaining: sign * remaining.unwrap_or(0).max(0),
            blocked: sign * i64::from(blocked == Some(1)),
        }
    }

    fn add(&mut self, o: Tally) {
        self.keys += o.keys;
        self.counted += o.counted;
        self.remaining += o.remaining;
        self.blocked += o.blocked;
    }
}

/// The per-product changes (by product, '' for none) of replacing the `old` rows with the
/// answers; products whose counters do not move are left out.
fn product_deltas(
    old: &[KeyTally],
    answers: &[&PidkeyAnswer],
) -> std::collections::BTreeMap<String, Tally> {
    let mut deltas: std::collections::BTreeMap<String, Tally> = Default::default();
    let product = |p: &Option<String>| p.clone().unwrap_or_default();
    for o in old {
        deltas.entry(product(&o.prd)).or_default().add(Tally::of(o.remaining, o.blocked, -1));
    }
    for a in answers {
        deltas.entry(product(&a.prd)).or_default().add(Tally::of(a.remaining, a.blocked, 1));
    }
    deltas.retain(|_, t| *t != Tally::default());
    deltas
}

impl Store {
    /// A run and its batches (id, seq, newline-separated keys), in one transaction.
    #[crate::boxed]
    pub async fn insert_pidms_run(
        &self,
        run: &NewPidmsRun<'_>,
        batches: &[NewPidmsBatch],
        audit: Option<&crate::audit::AuditEntry>,
    ) -> Result<(), StoreError> {
        macro_rules! body {
            ($db:ty, $tx:ident) => {{
                sqlx::query(
                    "INSERT INTO pidms_runs (id, kind, status, product_filter, keys_total,
                       batches_total, created_by, started_at)
                     VALUES ($1, $2, 'running', $3, $4, $5, $6, $7)",
                )
                .bind(run.id)
                .bind(run.kind)
                .bind(run.product_filter)
                .bind(run.keys_total)
                .bind(batches.len() as i64)
                .bind(run.created_by)
                .bind(run.now)
                .execute(&mut *$tx)
                .await?;
                for chunk in batches.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO pidms_batches (id, run_id, seq, keys, status, updated_at) ",
                    );
                    qb.push_values(chunk, |mut b, batch| {
                        b.push_bind(&batch.id)
                            .push_bind(run.id)
                            .push_bind(batch.seq)
                            .push_bind(&batch.keys)
                            .push_bind(BatchStatus::Pending)
                            .push_bind(run.now);
                    });
                    qb.build().execute(&mut *$tx).await?;
                }
                if let Some(entry) = audit {
                    crate::audit_insert!(&mut *$tx, entry);
                }
            }};
        }
        in_tx!(self, Sqlite tx => body!(sqlx::Sqlite, tx), Postgres tx => body!(sqlx::Postgres, tx));
        Ok(())
    }

    /// Runs (checks and syncs), newest first, with how many there are in all.
    #[crate::boxed]
    pub async fn list_pidms_runs(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<PidmsRun>), StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM pidms_runs ORDER BY started_at DESC, id DESC
             LIMIT $1 OFFSET $2"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, PidmsRun>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(limit).bind(offset).fetch_all(pool).await)?;
        let (total,): (i64,) = on_pool!(self, pool =>
            sqlx::query_as("SELECT COUNT(*) FROM pidms_runs").fetch_one(pool).await)?;
        Ok((total, rows))
    }

    #[crate::boxed]
    pub async fn pidms_run(&self, id: &str) -> Result<Option<PidmsRun>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM pidms_runs WHERE id = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, PidmsRun>(sqlx::AssertSqlSafe(sql))
            .bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    #[crate::boxed]
    pub async fn pidms_batches(&self, run_id: &str) -> Result<Vec<PidmsBatch>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, PidmsBatch>(
            "SELECT id, run_id, seq, keys, status, attempts, keys_updated, error
             FROM pidms_batches WHERE run_id = $1 ORDER BY seq")
            .bind(run_id).fetch_all(pool).await)?;
        Ok(rows)
    }

    #[crate::boxed]
    pub async fn pidms_batch(&self, id: &str) -> Result<Option<PidmsBatch>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, PidmsBatch>(
            "SELECT id, run_id, seq, keys, status, attempts, keys_updated, error
             FROM pidms_batches WHERE id = $1")
            .bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Counts a call to PIDKey for a batch (for its attempt number).
    #[crate::boxed]
    pub async fn bump_pidms_batch_attempts(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE pidms_batches SET attempts = attempts + 1, updated_at = $2 WHERE id = $1")
            .bind(id).bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Upserts every answer of a batch, applies the per-product deltas, marks the batch done
    /// and counts it on its run, in one transaction. The products whose counters moved (keys
    /// gained, lost or changed stock; not '' for no product), or `None` when the batch was
    /// already finished (a repeated job).
    #[crate::boxed]
    pub async fn complete_pidms_batch(
        &self,
        batch: &PidmsBatch,
        answers: &[PidkeyAnswer],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        // Sorted and deduplicated: one row per key, and every transaction takes its key
        // locks, then its product-row locks, in the same order (no deadlocks).
        let mut answers: Vec<&PidkeyAnswer> = answers.iter().collect();
        answers.sort_by(|a, b| a.keyname.cmp(&b.keyname));
        answers.dedup_by(|a, b| a.keyname == b.keyname);
        let names: Vec<String> = answers.iter().map(|a| a.keyname.clone()).collect();
        let mut finished = None;
        macro_rules! body {
            ($db:ty, $tx:ident) => {{
                let n = sqlx::query(
                    "UPDATE pidms_batches SET status = 'done', keys_updated = $2, error = NULL,
                       updated_at = $3 WHERE id = $1 AND status = 'pending'",
                )
                .bind(&batch.id).bind(answers.len() as i64).bind(now)
                .execute(&mut *$tx).await?.rows_affected();
                if n == 1 {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT prd, remaining, blocked FROM pidms_keys WHERE keyname IN (",
                    );
                    let mut list = qb.separated(", ");
                    for name in &names {
                        list.push_bind(name.clone());
                    }
                    qb.push(")");
                    let old: Vec<KeyTally> = qb.build_query_as().fetch_all(&mut *$tx).await?;
                    for chunk in answers.chunks(200) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO pidms_keys (keyname, keyname_with_dash, prd, eid,
                             is_key_type, is_retail, remaining, blocked, errorcode, sub,
                             had_occurred, invalid, datetime_checked_done, checked_at,
                             created_at, updated_at) ",
                        );
                        qb.push_values(chunk, |mut b, a| {
                            let dashed = a.keyname_with_dash.clone()
                                .unwrap_or_else(|| crate::pidms::with_dashes(&a.keyname));
                            b.push_bind(a.keyname.clone()).push_bind(dashed).push_bind(a.prd.clone())
                                .push_bind(a.eid.clone()).push_bind(a.is_key_type.clone())
                                .push_bind(a.is_retail).push_bind(a.remaining).push_bind(a.blocked)
                                .push_bind(a.errorcode.clone()).push_bind(a.sub.clone())
                                .push_bind(a.had_occurred).push_bind(a.invalid)
                                .push_bind(a.datetime_checked_done.clone()).push_bind(now)
                                .push_bind(now).push_bind(now);
                        });
                        qb.push(
                            " ON CONFLICT (keyname) DO UPDATE SET
                             keyname_with_dash = excluded.keyname_with_dash, prd = excluded.prd,
                             eid = excluded.eid, is_key_type = excluded.is_key_type,
                             is_retail = excluded.is_retail, remaining = excluded.remaining,
                             blocked = excluded.blocked, errorcode = excluded.errorcode,
                             sub = excluded.sub, had_occurred = excluded.had_occurred,
                             invalid = excluded.invalid,
                             datetime_checked_done = excluded.datetime_checked_done,
                             checked_at = excluded.checked_at, updated_at = excluded.updated_at",
                        );
                        qb.build().execute(&mut *$tx).await?;
                    }
                    let mut moved = Vec::new();
                    for (prd, d) in product_deltas(&old, &answers) {
                        if !prd.is_empty() {
                            moved.push(prd.clone());
                        }
                        sqlx::query(
                            "INSERT INTO pidms_products (prd, key_count, counted_keys,
                               total_remaining, blocked_keys, updated_at)
                             VALUES ($1, $2, $3, $4, $5, $6)
                             ON CONFLICT (prd) DO UPDATE SET
                               key_count = pidms_products.key_count + excluded.key_count,
                               counted_keys = pidms_products.counted_keys + excluded.counted_keys,
                               total_remaining = pidms_products.total_remaining + excluded.total_remaining,
                               blocked_keys = pidms_products.blocked_keys + excluded.blocked_keys,
                               updated_at = excluded.updated_at",
                        )
                        .bind(prd).bind(d.keys).bind(d.counted).bind(d.remaining).bind(d.blocked)
                        .bind(now)
                        .execute(&mut *$tx).await?;
                    }
                    sqlx::query(
                        "UPDATE pidms_runs SET batches_done = batches_done + 1,
                           keys_updated = keys_updated + $2 WHERE id = $1",
                    )
                    .bind(&batch.run_id).bind(answers.len() as i64)
                    .execute(&mut *$tx).await?;
                    finished = Some(moved);
                }
            }};
        }
        in_tx!(self,
        Sqlite tx => body!(sqlx::Sqlite, tx),
        Postgres tx => {
            // SQLite has one writer at a time; on PostgreSQL two batches holding the same
            // new key (a check and a sync at once) would both count it as new: a lock
            // per key, taken before the old rows are read, makes the deltas exact.
            sqlx::query("SELECT pg_advisory_xact_lock(7401, hashtext(k)) FROM unnest($1::text[]) AS k")
                .bind(&names).execute(&mut *tx).await?;
            body!(sqlx::Postgres, tx)
        });
        Ok(finished)
    }

    /// Marks a batch failed with its error and counts it on its run; `false` when it was
    /// already finished.
    #[crate::boxed]
    pub async fn fail_pidms_batch(
        &self,
        batch: &PidmsBatch,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut failed = false;
        macro_rules! body {
            ($tx:ident) => {{
                let n = sqlx::query(
                    "UPDATE pidms_batches SET status = 'failed', error = $2, updated_at = $3
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(&batch.id)
                .bind(error)
                .bind(now)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if n == 1 {
                    sqlx::query(
                        "UPDATE pidms_runs SET batches_failed = batches_failed + 1 WHERE id = $1",
                    )
                    .bind(&batch.run_id)
                    .execute(&mut *$tx)
                    .await?;
                    failed = true;
                }
            }};
        }
        in_tx!(self, Sqlite tx => body!(tx), Postgres tx => body!(tx));
        Ok(failed)
    }

    /// Completes a run whose batches are all finished; returns it only to the one caller
    /// that completed it (so its event is published once).
    #[crate::boxed]
    pub async fn finish_pidms_run_if_done(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PidmsRun>, StoreError> {
        let sql = format!(
            "UPDATE pidms_runs SET status = 'completed', finished_at = $2
             WHERE id = $1 AND status = 'running' AND batches_done + batches_failed >= batches_total
             RETURNING {RUN_COLUMNS}"
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, PidmsRun>(sqlx::AssertSqlSafe(sql))
            .bind(run_id).bind(now).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Batches still pending that were last touched before `cutoff` (id, run id): for the
    /// sweep that re-enqueues lost batch jobs.
    #[crate::boxed]
    pub async fn stale_pidms_batches(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<BatchRef>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as(
            "SELECT id, run_id FROM pidms_batches WHERE status = 'pending' AND updated_at < $1
             ORDER BY updated_at LIMIT $2")
            .bind(cutoff).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyTally, Tally, product_deltas};
    use crate::pidms::PidkeyAnswer;

    fn answer(key: &str, prd: Option<&str>, remaining: i64, blocked: i64) -> PidkeyAnswer {
        serde_json::from_value(serde_json::json!({
            "keyname": key, "prd": prd, "remaining": remaining, "blocked": blocked
        }))
        .unwrap()
    }

    #[test]
    fn deltas_move_keys_between_products() {
        let old = vec![
            KeyTally { prd: Some("A".into()), remaining: Some(10), blocked: Some(-1) },
            KeyTally { prd: Some("B".into()), remaining: Some(-1), blocked: Some(1) },
        ];
        let (k1, k2, k3) = (
            answer("K1", Some("A"), 7, -1), // stock went down
            answer("K2", None, -1, -1),     // B's key became invalid
            answer("K3", Some("B"), 3, 1),  // a new blocked key
        );
        let d = product_deltas(&old, &[&k1, &k2, &k3]);
        assert_eq!(d["A"], Tally { keys: 0, counted: 0, remaining: -3, blocked: 0 });
        assert_eq!(d["B"], Tally { keys: 0, counted: 1, remaining: 3, blocked: 0 });
        assert_eq!(d[""], Tally { keys: 1, counted: 0, remaining: 0, blocked: 0 });
        // Nothing changed: nothing to write.
        let same = vec![KeyTally { prd: Some("A".into()), remaining: Some(7), blocked: Some(-1) }];
        assert!(product_deltas(&same, &[&k1]).is_empty());
    }
}
