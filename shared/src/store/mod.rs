//! The store: every record a user can ask about, in SQLite (embedded) or PostgreSQL (fleet).
//!
//! One enum over the two native pools; each query is written once and compiled for both
//! backends by [`on_pool!`](crate::on_pool). SQL is split per backend only where the
//! dialects really differ, with both strings side by side (ARCHITECTURE.md, "Decisions and why").

mod idempotency;
mod leases;
mod spares;

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use self::idempotency::{Claim, StoredResponse};
pub use self::spares::Spares;
use crate::config::{Config, StoreKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

impl StoreError {
    /// The store cannot be reached or is going away (no connection, connection lost, server
    /// shutting down or starting, too many connections, SQLite busy): a passing outage, not a
    /// fault of the request. The API answers these 503 with `Retry-After`, never 500.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else { return false };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // SQLSTATE class 08: connection exception; 57P01–57P03: admin shutdown,
                // crash shutdown, cannot connect now; 53300: too many connections.
                // SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED (primary result codes).
                code.starts_with("08")
                    || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
                    || (db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                        && matches!(&*code, "5" | "6" | "261" | "517"))
            }),
            _ => false,
        }
    }

    /// A unique or primary-key constraint refused the write (on either backend).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

#[derive(Clone, Debug)]
pub enum Store {
    /// The pool, and the turn of SQLite's one writer ([`Writer`]).
    Sqlite(SqlitePool, Writer),
    /// The pool, and connections kept out of it between busy uses ([`Spares`]).
    Postgres(PgPool, Spares),
}

/// SQLite lets one connection write at a time. This process' writers (the publish, claims,
/// attempt records, usage rows, every transaction) take their turn here, in arrival order,
/// each woken as the one before commits. Left to SQLite, a writer that finds the file locked
/// meets its busy handler, which sleeps 1, 2, 5, 10… ms between tries whatever the lock's
/// holder needs: in an embedded burst of 10,000 deliveries, 1,000–3,000 such sleeps, the
/// p99 at 200–400 ms and a third of the throughput lost. Writes made elsewhere (another
/// process, a rare statement outside a turn) still meet the busy timeout, as before.
#[derive(Clone, Debug, Default)]
pub struct Writer(std::sync::Arc<tokio::sync::Mutex<()>>);

impl Writer {
    /// Waits for this writer's turn; it ends when the guard is dropped.
    #[crate::boxed]
    pub async fn turn<'a>(&'a self) -> tokio::sync::MutexGuard<'a, ()> {
        self.0.lock().await
    }

    /// Begins a write transaction in this writer's turn: `BEGIN IMMEDIATE` (a deferred
    /// read-then-write transaction fails with "database is locked" when another connection
    /// commits in between). Bind as `let (_turn, mut tx) = …`: the transaction, declared
    /// last, ends (commits or rolls back) before the turn is handed on.
    #[crate::boxed]
    pub async fn begin<'a>(
        &'a self,
        pool: &'a SqlitePool,
    ) -> Result<
        (tokio::sync::MutexGuard<'a, ()>, sqlx::Transaction<'static, sqlx::Sqlite>),
        StoreError,
    > {
        let turn = self.turn().await;
        let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((turn, tx))
    }
}

/// Runs the same expression against whichever pool the store holds, so the query text is
/// written once and compiled with each backend's native types. `writing` takes SQLite's
/// writer turn ([`Writer`]) around it: for single-statement writes on busy paths.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool, _) => $body,
            $crate::store::Store::Postgres($pool, _) => $body,
        }
    };
    ($store:expr, writing $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool, writer) => {
                let _turn = writer.turn().await;
                $body
            }
            $crate::store::Store::Postgres($pool, _) => $body,
        }
    };
}

/// Runs a transaction on whichever backend the store holds: [`Writer::begin`] on SQLite
/// (`BEGIN IMMEDIATE` in the writer's turn), a plain `BEGIN` on a lent connection on
/// Postgres. An early `?` rolls back.
#[macro_export]
macro_rules! in_tx {
    ($store:expr, Sqlite $stx:ident => $sbody:expr, Postgres $ptx:ident => $pbody:expr) => {
        match $store {
            $crate::store::Store::Sqlite(pool, writer) => {
                let (_turn, mut $stx) = writer.begin(pool).await?;
                $sbody;
                $stx.commit().await?;
            }
            $crate::store::Store::Postgres(pool, spares) => {
                let mut conn = spares.lend(pool).await?;
                let mut $ptx = sqlx::Connection::begin(&mut *conn).await?;
                $pbody;
                $ptx.commit().await?;
                conn.give_back();
            }
        }
    };
}

/// Begins a PostgreSQL transaction whose statements find their rows by key (the primary key,
/// an endpoint's open deliveries in id order): only index lookups in nested loops until it
/// ends. The planner's row estimates lag far behind a table that a burst fills and empties
/// within seconds (statistics from when it was small), and then it chose a sort of an
/// endpoint's whole backlog, or a scan of the whole table per batch, hundreds of times a
/// second. Its statements are planned once per connection (a generic plan: keyed under these
/// settings too), not for every execution: planning was 0.3 ms of each record transaction at
/// 1,000 deliveries/s. `SET LOCAL` ends with the transaction; `BEGIN` and the settings go as
/// one simple query, one round trip. Used by the read-backs; the record carries the same
/// settings on its function, `switchyard_record_attempts` (migration 0016): change both.
pub(crate) async fn begin_by_key(
    conn: &mut sqlx::PgConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, StoreError> {
    Ok(sqlx::Connection::begin_with(
        conn,
        "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
             SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; \
             SET LOCAL plan_cache_mode = force_generic_plan",
    )
    .await?)
}

/// How long a PostgreSQL connection may sit idle in the pool and still be handed out
/// without a ping. sqlx pings on every release (a round trip) and, by default, on every
/// acquire too: two extra round trips per statement outside a transaction, half of the
/// PostgreSQL round trips of a webhook burst. A connection back within this was pinged when
/// it was released; one idle longer (the server may have restarted meanwhile) is pinged
/// before use, and replaced if that fails.
pub const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Store {
    /// Runs `sql`, a `DELETE … LIMIT {batch}` bound to `cutoff`, until a run deletes fewer
    /// than `batch` rows; returns how many in all. Bounded batches keep each statement short
    /// (no long lock on SQLite, no huge transaction on PostgreSQL).
    pub(crate) async fn delete_in_batches(
        &self,
        sql: &'static str,
        batch: u64,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = on_pool!(self, pool => sqlx::query(sql)
                .bind(cutoff).execute(pool).await.map(|r| r.rows_affected()))?;
            total += n;
            if n < batch {
                return Ok(total);
            }
        }
    }

    /// Opens the store the configuration names (without migrating).
    #[crate::boxed]
    pub async fn connect(config: &Config) -> Result<Self, StoreError> {
        let max = config.database_max_connections;
        // How long a request waits for a connection: bounded, so an outage answers fast.
        let acquire = Duration::from_millis(config.database_acquire_timeout_ms);
        match config.store_kind() {
            StoreKind::Postgres => {
                let url = config.database_url.as_ref().map(|u| u.expose().as_str()).unwrap_or("");
                let pool = PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(acquire)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= IDLE_BEFORE_PING {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect(url)
                    .await?;
                Ok(Store::Postgres(pool, Spares::default()))
            }
            StoreKind::Sqlite => {
                let options = match &config.database_url {
                    Some(url) => SqliteConnectOptions::from_str(url.expose())?,
                    None => {
                        std::fs::create_dir_all(&config.data_dir).map_err(|source| {
                            StoreError::DataDir {
                                path: config.data_dir.display().to_string(),
                                source,
                            }
                        })?;
                        SqliteConnectOptions::from_str("sqlite://")?
                            .filename(config.data_dir.join("switchyard.db"))
                    }
                };
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(acquire)
                    // A file does not hang up: no ping (a hop to the connection's thread).
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?;
                Ok(Store::Sqlite(pool, Writer::default()))
            }
        }
    }

    /// Applies the backend's migrations; a no-op when they are current.
    #[crate::boxed]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool, _) => SQLITE_MIGRATIONS.run(pool).await?,
            Store::Postgres(pool, _) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(..) => "sqlite",
            Store::Postgres(..) => "postgres",
        }
    }

    /// A cheap round trip, for `/readyz`.
    #[crate::boxed]
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    #[crate::boxed]
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool, _) => pool.close().await,
            Store::Postgres(pool, spares) => {
                // A kept connection is still out of the pool: closing would wait for it.
                spares.release_all();
                pool.close().await;
            }
        }
    }
}
