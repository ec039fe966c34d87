//! Endpoints as delivery needs them (URL, opened secrets, state), cached for a second so a
//! burst of deliveries to one endpoint costs one store read and one decryption.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use switchyard_shared::{
    crypto::Cipher,
    store::{Store, StoreError},
    webhooks::secret_context,
    webhooks::secret_key,
};

const TTL: Duration = Duration::from_secs(1);

pub(crate) struct Endpoint {
    pub id: switchyard_shared::ids::EndpointId,
    pub url: String,
    /// The signing keys: the current secret, and the previous one during a rotation.
    pub keys: Vec<Vec<u8>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub rate_limit_per_second: Option<i64>,
    /// Whose endpoint it is (its `webhook.endpoint.disabled` goes to the same owner).
    pub owner: switchyard_shared::tenants::Owner,
    /// The row's `updated_at` when read: a claim that sees a later one reads it again.
    pub updated_at: chrono::DateTime<Utc>,
}

pub(crate) struct EndpointCache {
    store: Store,
    cipher: Arc<Cipher>,
    entries: Mutex<HashMap<String, Entry>>,
}

/// When it was read, and what was found (`None`: no such endpoint).
type Entry = (Instant, Option<Arc<Endpoint>>);

#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the endpoint's secret cannot be opened with this master key")]
    Secret,
}

impl EndpointCache {
    pub(crate) fn new(store: Store, cipher: Arc<Cipher>) -> Self {
        Self { store, cipher, entries: Mutex::new(HashMap::new()) }
    }

    /// `None` when the endpoint does not exist (or was deleted).
    pub(crate) async fn get(&self, id: &str) -> Result<Option<Arc<Endpoint>>, EndpointError> {
        if let Some((at, entry)) = self.entries.lock().expect("endpoint cache lock").get(id)
            && at.elapsed() < TTL
        {
            return Ok(entry.clone());
        }
        let entry = match self.store.endpoint(id).await? {
            None => None,
            Some(row) => {
                let context = secret_context(&row.id);
                let open = |sealed: &str| -> Result<Vec<u8>, EndpointError> {
                    let secret = self
                        .cipher
                        .open_string(&context, sealed)
                        .map_err(|_| EndpointError::Secret)?;
                    secret_key(secret.expose()).ok_or(EndpointError::Secret)
                };
                let mut keys = vec![open(&row.secret_sealed)?];
                if let (Some(previous), Some(until)) =
                    (&row.previous_secret_sealed, row.previous_secret_until)
                    && until > Utc::now()
                {
                    keys.push(open(previous)?);
                }
                Some(Arc::new(Endpoint {
                    id: row.id,
                    url: row.url,
                    keys,
                    enabled: row.enabled,
                    disabled_reason: row.disabled_reason,
                    rate_limit_per_second: row.rate_limit_per_second,
                    owner: row.tenant_id,
                    updated_at: row.updated_at,
                }))
            }
        };
        let mut entries = self.entries.lock().expect("endpoint cache lock");
        if entries.len() > 10_000 {
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        entries.insert(id.to_owned(), (Instant::now(), entry.clone()));
        Ok(entry)
    }

    pub(crate) fn forget(&self, id: &str) {
        self.entries.lock().expect("endpoint cache lock").remove(id);
    }

    /// The endpoint as of `seen` (its `updated_at` as a claim read it): the cached copy when it
    /// is that recent, else a fresh read, so a delivery claimed after a rotation is signed
    /// with the new secret at once rather than within the cache's second.
    pub(crate) async fn at_least(
        &self,
        cached: Arc<Endpoint>,
        seen: Option<chrono::DateTime<Utc>>,
    ) -> Result<Option<Arc<Endpoint>>, EndpointError> {
        if seen == Some(cached.updated_at) {
            return Ok(Some(cached));
        }
        self.forget(&cached.id);
        self.get(&cached.id).await
    }
}
