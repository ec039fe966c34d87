//! Usage recording off the request path: events go through a bounded channel to a writer
//! that inserts them in batches; when the channel is full they are dropped and counted,
//! never waited for. Per-key counters (`usage_count`, `last_used_at`) are summed in memory
//! and written every few seconds, and once more at shutdown.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};
use switchyard_shared::{
    store::{KeyUse, Store, UsageEvent},
    telemetry,
};
use tokio::sync::mpsc;

const BATCH: usize = 500;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
pub(super) const COUNTERS_EVERY: Duration = Duration::from_secs(5);

pub(super) struct UsageRecorder {
    tx: mpsc::Sender<UsageEvent>,
    counters: Mutex<HashMap<String, (i64, DateTime<Utc>)>>,
}

impl UsageRecorder {
    /// The writer task ends, after writing everything queued, once the recorder is dropped.
    pub(super) fn start(store: Store, capacity: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let writer = tokio::spawn(write_events(store, rx));
        (Self { tx, counters: Mutex::new(HashMap::new()) }, writer)
    }

    pub(super) fn record(&self, event: UsageEvent) {
        {
            let mut counters = self.counters.lock().expect("usage counters lock");
            let entry = counters.entry(event.key_id.clone()).or_insert((0, event.at));
            entry.0 += 1;
            entry.1 = entry.1.max(event.at);
        }
        if self.tx.try_send(event).is_err() {
            metrics::counter!(telemetry::USAGE_DROPPED).increment(1);
        }
    }

    /// Writes the per-key counters summed since the last flush.
    pub(super) async fn flush_counters(&self, store: &Store) {
        let uses: Vec<KeyUse> = {
            let mut map = self.counters.lock().expect("usage counters lock");
            map.drain()
                .map(|(key_id, (count, last_used_at))| KeyUse { key_id, count, last_used_at })
                .collect()
        };
        if !uses.is_empty()
            && let Err(error) = store.add_api_key_usage(&uses).await
        {
            tracing::warn!(%error, keys = uses.len(), "key usage counters not written");
        }
    }
}

async fn write_events(store: Store, mut rx: mpsc::Receiver<UsageEvent>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut open = true;
    while open {
        let deadline = tokio::time::sleep(FLUSH_EVERY);
        tokio::pin!(deadline);
        // Collect until the batch is full, a second has passed, or every sender is gone.
        loop {
            tokio::select! {
                () = &mut deadline => break,
                event = rx.recv() => match event {
                    Some(e) => {
                        batch.push(e);
                        if batch.len() >= BATCH { break; }
                    }
                    None => { open = false; break; }
                },
            }
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(error) = store.insert_usage(&batch).await {
            metrics::counter!(telemetry::USAGE_DROPPED).increment(batch.len() as u64);
            tracing::warn!(%error, rows = batch.len(), "usage batch lost");
        }
        batch.clear();
    }
}
