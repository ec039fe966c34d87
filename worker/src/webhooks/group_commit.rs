//! Group commit: requests arriving while one batch is being written wait for the next batch,
//! and each gets its own answer. Under load many requests share one statement or
//! transaction; when idle a request is written at once. Used for delivery claims and for
//! attempt records.

use std::{future::Future, sync::Arc, time::Duration};

use switchyard_shared::store::StoreError;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Why a request got no answer of its own.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum GroupError {
    /// The writer task is gone (the process is stopping).
    #[error("the {0} stopped")]
    Stopped(&'static str),
    /// The batch's write failed; every request in it gets the same error.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

type Request<T, R> = (T, oneshot::Sender<Result<R, GroupError>>);

pub(crate) struct GroupCommit<T, R> {
    name: &'static str,
    tx: mpsc::Sender<Request<T, R>>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        Self { name: self.name, tx: self.tx.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts the writer: `write` gets up to `max_batch` items (moved, not copied) and
    /// returns one answer per item, in their order. Up to `in_flight` batches are written at
    /// once (1: strictly one after another); a batch is gathered only once it may start, so
    /// while every writer is busy the next batch keeps growing. Under load — more than one
    /// item already waiting when a batch starts — it waits up to `linger` for more; a lone
    /// item is written at once.
    pub(crate) fn start<F, Fut>(
        name: &'static str,
        max_batch: usize,
        in_flight: usize,
        linger: Duration,
        mut write: F,
    ) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, StoreError>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Request<T, R>>(4 * max_batch);
        let writers = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let Ok(writer) = Arc::clone(&writers).acquire_owned().await else { return };
                let mut items = vec![first.0];
                let mut answers = vec![first.1];
                while items.len() < max_batch {
                    match rx.try_recv() {
                        Ok((item, done)) => {
                            items.push(item);
                            answers.push(done);
                        }
                        Err(_) => break,
                    }
                }
                if items.len() > 1 && !linger.is_zero() {
                    let until = tokio::time::Instant::now() + linger;
                    while items.len() < max_batch {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Some((item, done))) => {
                                items.push(item);
                                answers.push(done);
                            }
                            _ => break,
                        }
                    }
                }
                let count = items.len();
                let written = write(items);
                tokio::spawn(async move {
                    let outcome = written.await;
                    drop(writer);
                    match outcome {
                        Ok(results) => {
                            for (done, result) in answers.into_iter().zip(results) {
                                let _ = done.send(Ok(result));
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, batch = count, writer = name, "a group commit failed; its requests will be retried");
                            let error = Arc::new(error);
                            for done in answers {
                                let _ = done.send(Err(GroupError::Store(Arc::clone(&error))));
                            }
                        }
                    }
                });
            }
        });
        Self { name, tx }
    }

    /// Hands `item` to the next batch; returns its answer once that batch is written.
    pub(crate) async fn submit(&self, item: T) -> Result<R, GroupError> {
        let (done, wait) = oneshot::channel();
        self.tx.send((item, done)).await.map_err(|_| GroupError::Stopped(self.name))?;
        wait.await.map_err(|_| GroupError::Stopped(self.name))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_answer() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&batches);
        let doubler =
            GroupCommit::start("doubler", 8, 1, Duration::ZERO, move |items: Vec<u32>| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push(items.len());
                    tokio::task::yield_now().await;
                    Ok(items.into_iter().map(|n| n * 2).collect())
                }
            });
        let answers = futures::future::join_all((0..40u32).map(|n| doubler.submit(n))).await;
        for (n, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap(), n as u32 * 2);
        }
        let batches = batches.lock().unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 40);
        assert!(batches.iter().all(|b| *b <= 8), "{batches:?}");
        assert!(batches.len() < 40, "some requests shared a batch: {batches:?}");
    }

    #[tokio::test]
    async fn a_failed_write_fails_every_request_of_its_batch() {
        let failing =
            GroupCommit::start("failing", 8, 1, Duration::ZERO, |_items: Vec<u32>| async {
                Err::<Vec<()>, _>(StoreError::DataDir {
                    path: "x".into(),
                    source: std::io::Error::other("boom"),
                })
            });
        let err = failing.submit(1).await.unwrap_err();
        assert!(matches!(err, GroupError::Store(_)), "{err}");
    }

    #[tokio::test]
    async fn with_two_in_flight_a_batch_does_not_wait_behind_the_one_being_written() {
        // The first batch's write cannot finish until a second one is being written at the
        // same time: with one writer this would never answer.
        let started = Arc::new(tokio::sync::Notify::new());
        let both = Arc::new(tokio::sync::Barrier::new(2));
        let (s, b) = (Arc::clone(&started), Arc::clone(&both));
        let pipelined =
            GroupCommit::start("pipelined", 8, 2, Duration::ZERO, move |items: Vec<u32>| {
                let (started, both) = (Arc::clone(&s), Arc::clone(&b));
                async move {
                    started.notify_one();
                    both.wait().await;
                    Ok(items)
                }
            });
        let first = tokio::spawn({
            let p = pipelined.clone();
            async move { p.submit(1).await }
        });
        started.notified().await;
        let second = pipelined.submit(2);
        let answers = tokio::time::timeout(Duration::from_secs(10), async {
            (second.await.unwrap(), first.await.unwrap().unwrap())
        })
        .await
        .expect("two batches were written at once");
        assert_eq!(answers, (2, 1));
    }

    #[tokio::test]
    async fn under_load_a_batch_lingers_for_more_and_a_lone_item_does_not() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let started = Arc::new(tokio::sync::Notify::new());
        let (seen, g, s) = (Arc::clone(&batches), Arc::clone(&gate), Arc::clone(&started));
        let linger = Duration::from_secs(1);
        let group = GroupCommit::start("lingering", 8, 1, linger, move |items: Vec<u32>| {
            let (seen, gate, started) = (Arc::clone(&seen), Arc::clone(&g), Arc::clone(&s));
            async move {
                // The first batch is held until the test lets it go, so others queue behind.
                if items == [1] {
                    started.notify_one();
                    gate.acquire().await.unwrap().forget();
                }
                seen.lock().unwrap().push(items.clone());
                Ok(items)
            }
        });
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit(1).await.unwrap() }
        });
        started.notified().await;
        // 2 and 3 wait behind the batch being written.
        let mut answers = Vec::new();
        for n in [2, 3] {
            let (done, answer) = oneshot::channel();
            group.tx.send((n, done)).await.unwrap();
            answers.push(answer);
        }
        gate.add_permits(1);
        // Their batch started with two: it lingers, and 4 — sent long after a batch that did
        // not linger would have been written, well within the linger — joins it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let four = group.submit(4);
        assert_eq!(four.await.unwrap(), 4);
        assert_eq!(first.await.unwrap(), 1);
        for (answer, n) in answers.into_iter().zip([2, 3]) {
            assert_eq!(answer.await.unwrap().unwrap(), n);
        }
        assert_eq!(*batches.lock().unwrap(), vec![vec![1], vec![2, 3, 4]]);

        // Alone, an item is written at once, not after the linger.
        let alone = std::time::Instant::now();
        assert_eq!(group.submit(5).await.unwrap(), 5);
        assert!(alone.elapsed() < linger / 2, "a lone item waited {:?}", alone.elapsed());
    }
}
