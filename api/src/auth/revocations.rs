//! Fleet-wide cache invalidation: a key revoked or changed through one API process is
//! published on Redis, and every API process drops it from its cache at once.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use redis::aio::ConnectionManager;
use switchyard_shared::{CancellationToken, queue::QueueBackend, services::Services};

use super::Authenticator;

pub(super) struct Revocations {
    channel: String,
    publisher: Option<ConnectionManager>,
    redis_url: Option<String>,
}

impl Revocations {
    pub(super) fn new(services: &Services) -> Self {
        match services.queue.backend() {
            QueueBackend::Redis(r) => Self {
                channel: format!("{}:api-keys:changed", r.namespace()),
                publisher: Some(r.connection()),
                redis_url: services.config.redis_url.as_ref().map(|u| u.expose().clone()),
            },
            QueueBackend::Sqlite(_) => {
                Self { channel: String::new(), publisher: None, redis_url: None }
            }
        }
    }

    pub(super) async fn publish(&self, key_id: &str) {
        let Some(conn) = &self.publisher else { return };
        let mut conn = conn.clone();
        let result: Result<i64, _> =
            redis::cmd("PUBLISH").arg(&self.channel).arg(key_id).query_async(&mut conn).await;
        if let Err(error) = result {
            // Other processes still drop it when their cache entry expires.
            tracing::warn!(%error, "could not publish a key change; other API processes will see it within the cache TTL");
        }
    }

    /// Subscribes and invalidates on every message; reconnects after errors.
    pub(super) fn listen(
        &self,
        auth: Arc<Authenticator>,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let url = self.redis_url.clone()?;
        let channel = self.channel.clone();
        Some(tokio::spawn(async move {
            loop {
                let run = async {
                    let client = redis::Client::open(url.as_str())?;
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        if let Ok(id) = msg.get_payload::<String>() {
                            auth.forget(&id);
                        }
                    }
                    Ok::<(), redis::RedisError>(())
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    result = run => {
                        if let Err(error) = result {
                            tracing::warn!(%error, "key-change subscription lost; reconnecting");
                        }
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }))
    }
}
