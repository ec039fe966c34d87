//! The handles every role opens at start: configuration, store and queue.

use std::sync::Arc;

use crate::{
    config::Config,
    crypto::{Cipher, CryptoError},
    queue::{Queue, QueueError},
    secret::redact_url,
    store::{Store, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

#[derive(Clone, Debug)]
pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub queue: Queue,
    /// Seals and opens secrets at rest.
    pub cipher: Arc<Cipher>,
}

impl Services {
    /// Connects the store (migrating it) and the queue named by the configuration.
    pub async fn open(config: Config) -> Result<Self, OpenError> {
        let cipher = Arc::new(Cipher::load(&config)?);
        let store = Store::connect(&config).await?;
        store.migrate().await?;
        let queue = Queue::connect(&config).await?;
        tracing::info!(
            store = store.kind(),
            store_url = config.database_url.as_ref().map(|u| redact_url(u.expose())),
            queue = queue.kind(),
            data_dir = %config.data_dir.display(),
            "store and queue ready"
        );
        Ok(Self { config: Arc::new(config), store, queue, cipher })
    }
}
