//! Wake-ups: an idle worker sleeps until it is told that work arrived, instead of asking the
//! queue on a timer. One [`Signal`] per queue per opened queue; a push made through it bumps
//! it directly (the embedded mode, where the API and the workers share a process), and in a
//! fleet every push also publishes on the queue's Redis channel, which each worker process
//! subscribes to and turns into the same bump. Polling stays as a slow safety net: a missed
//! signal delays work by at most the poll interval, it never loses it.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use futures::task::AtomicWaker;

use super::QueueName;

/// A counter of "work may be there" notices and the waker of the worker waiting on them.
/// A counter rather than a flag: a waiter compares it with the value it last acted on, so a
/// notice that lands while a fetch is already in flight is not mistaken for one it has seen.
#[derive(Debug)]
pub struct Signal {
    generation: AtomicU64,
    waker: AtomicWaker,
}

impl Signal {
    const fn new() -> Self {
        Self { generation: AtomicU64::new(0), waker: AtomicWaker::new() }
    }

    pub fn notify(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }
}

/// The signals of one [`super::Queue`] (shared by every clone of it): the API and the
/// workers of a process that share their `Services` share these.
#[derive(Debug, Default)]
pub struct Wakeups {
    due: [Signal; 4],
    /// Delayed work was pushed: the Redis promoter re-plans its sleep.
    delayed: [Signal; 4],
}

impl Default for Signal {
    fn default() -> Self {
        Self::new()
    }
}

fn index(queue: QueueName) -> usize {
    QueueName::ALL.iter().position(|q| *q == queue).unwrap_or(0)
}

impl Wakeups {
    /// The signal that work is due on `queue`.
    pub fn signal(&self, queue: QueueName) -> &Signal {
        &self.due[index(queue)]
    }

    /// The signal of delayed pushes to `queue`.
    pub fn delayed(&self, queue: QueueName) -> &Signal {
        &self.delayed[index(queue)]
    }

    /// Tells the worker of `queue` that work may be waiting.
    pub fn notify(&self, queue: QueueName) {
        self.signal(queue).notify();
    }

    /// After a lost subscription comes back: anything pushed meanwhile is looked for at once.
    pub fn notify_all(&self) {
        for queue in QueueName::ALL {
            self.notify(queue);
        }
    }

    /// Notifies `queue` at `at_ms` (unix ms), for work that becomes due then and that no one
    /// else announces (the embedded queue has no promoter). Outside a runtime, nothing: the
    /// poll finds it.
    pub fn notify_at(self: &Arc<Self>, queue: QueueName, at_ms: i64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let wait = (at_ms - crate::jobs::now_ms()).max(0) as u64;
        let this = Arc::clone(self);
        runtime.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            this.notify(queue);
        });
    }
}

/// Waits until `signal` has moved past `seen`; returns the generation it moved to.
#[crate::boxed]
pub async fn changed(signal: &Signal, seen: u64) -> u64 {
    std::future::poll_fn(|cx| {
        signal.register(cx.waker());
        match signal.generation() {
            g if g != seen => std::task::Poll::Ready(g),
            _ => std::task::Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notice_moves_only_its_queue() {
        let wake = Wakeups::default();
        let seen = wake.signal(QueueName::Pidms).generation();
        let other = wake.signal(QueueName::Sikka).generation();
        wake.notify(QueueName::Pidms);
        assert_eq!(changed(wake.signal(QueueName::Pidms), seen).await, seen + 1);
        assert_eq!(wake.signal(QueueName::Sikka).generation(), other);
    }
}
