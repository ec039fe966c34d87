//! Group commit for attempt records: every delivery in flight hands its record to one writer,
//! which stores whatever has gathered in one transaction and answers each. Under load many
//! records share a transaction; when idle a record is written at once.

use switchyard_shared::store::{AttemptRecord, Store};
use tokio::sync::{mpsc, oneshot};

/// Records gathered into one transaction at most.
const MAX_BATCH: usize = 256;

type Request = (AttemptRecord, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<Request>,
}

impl Recorder {
    pub(crate) fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write(store, rx));
        Self { tx }
    }

    /// Returns once the record is committed.
    pub(crate) async fn record(&self, record: AttemptRecord) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((record, done))
            .await
            .map_err(|_| "the attempt recorder stopped".to_owned())?;
        wait.await.map_err(|_| "the attempt recorder stopped".to_owned())?
    }
}

async fn write(store: Store, mut rx: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let records: Vec<AttemptRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
        let result = store.record_attempts(&records).await.map_err(|e| e.to_string());
        if let Err(error) = &result {
            tracing::warn!(%error, records = records.len(), "attempt records not written; the attempts will be retried");
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(result.clone());
        }
    }
}
