//! PostgreSQL connections kept out of the pool between uses on the busy paths (claims,
//! transactions), because sqlx pings a connection each time it goes back to the pool: one
//! more round trip for every statement run straight on the pool, a third of a webhook
//! burst's round trips. A connection is kept only after a use that went through (so it is
//! between statements, nothing pending) and for a second at most; any other goes back to
//! the pool, which pings it and closes it if it is broken.

use std::{
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex},
    time::Instant,
};

use sqlx::{PgPool, Postgres, pool::PoolConnection, postgres::PgConnection};

use super::{IDLE_BEFORE_PING, StoreError};

/// At most this share of the pool is kept (none below four connections): the rest stays for
/// every other use, which waits in the pool and would not see a kept one.
const KEPT_OF_POOL: u32 = 4;

/// Each kept connection with when it was given back.
type Kept = Vec<(PoolConnection<Postgres>, Instant)>;

#[derive(Clone, Debug, Default)]
pub struct Spares(Arc<Mutex<Kept>>);

/// A connection lent by [`Spares::lend`]; [`Lent::give_back`] keeps it for the next use,
/// dropping it returns it to the pool.
pub(crate) struct Lent {
    conn: Option<PoolConnection<Postgres>>,
    home: Spares,
    pool: PgPool,
}

impl Spares {
    /// A kept connection back within [`IDLE_BEFORE_PING`], or one from the pool.
    pub(crate) async fn lend(&self, pool: &PgPool) -> Result<Lent, StoreError> {
        let kept = {
            let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // Older ones go back to the pool (dropping one does), which pings them.
            kept.retain(|(_, at)| at.elapsed() < IDLE_BEFORE_PING);
            kept.pop()
        };
        let conn = match kept {
            Some((conn, _)) => conn,
            None => pool.acquire().await?,
        };
        Ok(Lent { conn: Some(conn), home: self.clone(), pool: pool.clone() })
    }

    /// Hands every kept connection back to the pool: before the pool is closed, which waits
    /// for all of its connections to come back.
    pub(crate) fn release_all(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Lent {
    /// Keeps the connection for the next use: only after a use that went through, and only
    /// while the pool has an idle connection (so no one is waiting in it for this one).
    pub(crate) fn give_back(mut self) {
        let Some(conn) = self.conn.take() else { return };
        let most = (self.pool.options().get_max_connections() / KEPT_OF_POOL) as usize;
        let mut kept = self.home.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < most && self.pool.num_idle() > 0 {
            kept.push((conn, Instant::now()));
        }
    }
}

impl Deref for Lent {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn.as_deref().expect("a lent connection until given back")
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_deref_mut().expect("a lent connection until given back")
    }
}
