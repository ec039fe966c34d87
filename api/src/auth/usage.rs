//! Usage recording off the request path: events go through a bounded channel to a writer
//! that inserts them in batches; when the channel is full they are dropped and counted,
//! never waited for. Per-key counters (`usage_count`, `last_used_at`) are summed in memory
//! and written every few seconds, and once more at shutdown.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::DateTime;
use switchyard_shared::{
    access::{KeyUse, UsageEvent},
    store::Store,
    telemetry,
};
use tokio::sync::mpsc;

const BATCH: usize = 500;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
pub(super) const COUNTERS_EVERY: Duration = Duration::from_secs(5);

/// Requests and latest use of one key since the last flush; updated without a lock.
#[derive(Default)]
struct Counter {
    count: AtomicI64,
    last_used_ms: AtomicI64,
}

pub(super) struct UsageRecorder {
    tx: mpsc::Sender<UsageEvent>,
    counters: RwLock<HashMap<Arc<str>, Arc<Counter>>>,
}

impl UsageRecorder {
    /// The writer task ends, after writing everything queued, once the recorder is dropped.
    pub(super) fn start(store: Store, capacity: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let writer = tokio::spawn(write_events(store, rx));
        (Self { tx, counters: RwLock::new(HashMap::new()) }, writer)
    }

    pub(super) fn record(&self, event: UsageEvent) {
        let existing =
            self.counters.read().expect("usage counters lock").get(&event.key_id).cloned();
        let counter = existing.unwrap_or_else(|| {
            let mut map = self.counters.write().expect("usage counters lock");
            Arc::clone(map.entry(Arc::clone(&event.key_id)).or_default())
        });
        counter.count.fetch_add(1, Ordering::Relaxed);
        counter.last_used_ms.fetch_max(event.at.timestamp_millis(), Ordering::Relaxed);
        if self.tx.try_send(event).is_err() {
            metrics::counter!(telemetry::USAGE_DROPPED).increment(1);
        }
    }

    /// Writes the per-key counters summed since the last flush.
    pub(super) async fn flush_counters(&self, store: &Store) {
        let uses: Vec<KeyUse> = {
            let map = self.counters.read().expect("usage counters lock");
            map.iter()
                .filter_map(|(key_id, c)| {
                    let count = c.count.swap(0, Ordering::Relaxed);
                    let last = c.last_used_ms.load(Ordering::Relaxed);
                    (count > 0).then(|| KeyUse {
                        key_id: key_id.to_string(),
                        count,
                        last_used_at: DateTime::from_timestamp_millis(last).unwrap_or_default(),
                    })
                })
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
