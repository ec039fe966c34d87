//! The handles every role opens at start: configuration, store and queue.

use std::sync::Arc;

use crate::{
    config::Config,
    crypto::{Cipher, CryptoError},
    queue::{Queue, QueueError},
    secret::redact_url,
    store::{Store, StoreError},
    webhooks::events::Publisher,
};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("startup lock {path}: {source}")]
    StartupLock { path: String, source: std::io::Error },
}

#[derive(Clone, Debug)]
pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub queue: Queue,
    /// Seals and opens secrets at rest.
    pub cipher: Arc<Cipher>,
    /// Writes events in group commits (see `events`).
    pub publisher: Publisher,
}

impl Services {
    /// Connects the store (migrating it) and the queue named by the configuration.
    #[crate::boxed]
    pub async fn open(config: Config) -> Result<Self, OpenError> {
        let cipher = Arc::new(Cipher::load(&config)?);
        let lock = if config.database_url.is_none() || config.redis_url.is_none() {
            Some(startup_lock(&config).await?)
        } else {
            None
        };
        let store = Store::connect(&config).await?;
        store.migrate().await?;
        let queue = Queue::connect(&config).await?;
        drop(lock);
        tracing::info!(
            store = store.kind(),
            store_url = config.database_url.as_ref().map(|u| redact_url(u.expose())),
            queue = queue.kind(),
            data_dir = %config.data_dir.display(),
            "store and queue ready"
        );
        let publisher =
            Publisher::start(store.clone(), queue.clone(), &config.webhooks.retry_schedule);
        Ok(Self { config: Arc::new(config), store, queue, cipher, publisher })
    }
}

/// Processes started together on one data dir (`api` and `worker`) would race through the
/// SQLite migrations, which sqlx does not lock (it does on Postgres, with an advisory lock):
/// an exclusive lock on `<data dir>/startup.lock` lets one migrate while the others wait.
async fn startup_lock(config: &Config) -> Result<std::fs::File, OpenError> {
    let path = config.data_dir.join("startup.lock");
    let err = |source| OpenError::StartupLock { path: path.display().to_string(), source };
    std::fs::create_dir_all(&config.data_dir).map_err(err)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .expect("the lock task does not panic")
        .map_err(err)
}
