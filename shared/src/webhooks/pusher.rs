//! The publisher's second stage: enqueueing the first attempts of deliveries already
//! committed. A group is answered once its rows are committed (the promise a publish makes:
//! the rows are the outbox, and `webhook-retry-sweep` enqueues any delivery whose push was
//! lost); its jobs are handed here, so the next group is written while this one is pushed.
//! Groups that wrote while a push was under way are merged into the next push: one queue
//! transaction (embedded) or one script call (Redis) for all of them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use crate::{jobs::Job, queue::Queue, telemetry};

/// Groups waiting for their push at most; a writer waits for room beyond (back-pressure on
/// publishing when the queue cannot keep up).
const WAITING_GROUPS: usize = 256;
/// Jobs merged into one push at most.
const MAX_PUSH: usize = 5_000;
/// How long one push may take before its jobs are left to the retry sweep, so that a queue
/// that is down does not hold up every group behind it.
const PUSH_WAIT: Duration = Duration::from_secs(1);

/// The handle writers hand their groups' jobs to.
#[derive(Debug, Clone)]
pub(super) struct Pusher {
    tx: mpsc::Sender<Vec<Job>>,
    /// Groups handed over, and groups whose push has ended (pushed, failed or given up).
    handed: Arc<AtomicU64>,
    ended: watch::Receiver<u64>,
}

impl Pusher {
    pub(super) fn start(queue: Queue) -> Self {
        let (tx, rx) = mpsc::channel(WAITING_GROUPS);
        let (ended_tx, ended) = watch::channel(0);
        tokio::spawn(run(queue, rx, ended_tx));
        Self { tx, handed: Arc::new(AtomicU64::new(0)), ended }
    }

    /// Hands a committed group's jobs over; waits only while too many groups are waiting.
    pub(super) async fn hand(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        self.handed.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(jobs).await.is_err() {
            // The task is gone (the runtime is shutting down): the rows are written; the
            // retry sweep enqueues them.
            tracing::warn!(
                "deliveries written but the pusher stopped; the sweep will enqueue them"
            );
        }
    }

    /// Waits (at most `within`) until every group handed over so far has had its push.
    /// Returns whether they all did.
    pub(super) async fn flushed(&self, within: Duration) -> bool {
        let target = self.handed.load(Ordering::SeqCst);
        let mut ended = self.ended.clone();
        tokio::time::timeout(within, ended.wait_for(|n| *n >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn run(queue: Queue, mut rx: mpsc::Receiver<Vec<Job>>, ended: watch::Sender<u64>) {
    while let Some(mut jobs) = rx.recv().await {
        let mut groups = 1;
        while jobs.len() < MAX_PUSH {
            match rx.try_recv() {
                Ok(more) => {
                    jobs.extend(more);
                    groups += 1;
                }
                Err(_) => break,
            }
        }
        metrics::histogram!(telemetry::WEBHOOK_PUSH_BATCH).record(jobs.len() as f64);
        match tokio::time::timeout(PUSH_WAIT, queue.push_many(jobs)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "deliveries written but not enqueued; the sweep will");
            }
            Err(_) => tracing::warn!("deliveries written, enqueueing is slow; the sweep will"),
        }
        ended.send_modify(|n| *n += groups);
    }
}
