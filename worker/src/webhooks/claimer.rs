//! Group commit for claims: deliveries starting at about the same time claim their attempts
//! (and read their payloads) in one statement instead of one round trip each.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use switchyard_shared::store::{ClaimedDelivery, Store};
use tokio::sync::{mpsc, oneshot};

const MAX_BATCH: usize = 256;

type Answer = Result<Option<ClaimedDelivery>, String>;
type Request = (String, i64, oneshot::Sender<Answer>);

#[derive(Clone)]
pub(crate) struct Claimer {
    tx: mpsc::Sender<Request>,
}

impl Claimer {
    /// `lease`: how long a claimed attempt is this worker's.
    pub(crate) fn start(store: Store, lease: Duration) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(claim_batches(store, lease, rx));
        Self { tx }
    }

    /// The attempt with its payload, or `None` when it is not this worker's to make.
    pub(crate) async fn claim(&self, delivery_id: String, attempt: i64) -> Answer {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((delivery_id, attempt, done))
            .await
            .map_err(|_| "the claimer stopped".to_owned())?;
        wait.await.map_err(|_| "the claimer stopped".to_owned())?
    }
}

async fn claim_batches(store: Store, lease: Duration, mut rx: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let wanted: Vec<(String, i64)> = batch.iter().map(|(id, n, _)| (id.clone(), *n)).collect();
        match store.claim_deliveries(&wanted, until, now).await {
            Ok(rows) => {
                let mut claimed: HashMap<String, ClaimedDelivery> =
                    rows.into_iter().map(|c| (c.id.clone(), c)).collect();
                // Two copies of one message in a batch: the first gets the claim.
                for (id, _, done) in batch.drain(..) {
                    let _ = done.send(Ok(claimed.remove(&id)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, claims = batch.len(), "claims failed; the attempts will be retried");
                for (_, _, done) in batch.drain(..) {
                    let _ = done.send(Err(e.to_string()));
                }
            }
        }
    }
}
