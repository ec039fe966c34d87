//! Event-driven pickup: the poll strategy our workers fetch with, and the Redis subscription
//! that turns other processes' pushes into wake-ups (see `switchyard_shared::queue::wake`).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use futures::StreamExt;
use switchyard_shared::{
    CancellationToken,
    queue::{
        QueueName, RedisQueue,
        wake::{self, Wakeups},
    },
};

/// Fetch when this process' signal for the queue moves, and at least every `safety`.
///
/// apalis parks a worker after an empty fetch and polls the strategy on every turn of the
/// worker; a notice consumed while a fetch is already in flight would be lost if that fetch
/// came back empty (it ran before the push). So a turn that sees a new generation wakes
/// the worker once more: the next turn, after the fetch in flight has settled, fetches again.
pub(crate) struct WakeStrategy {
    wake: Arc<Wakeups>,
    queue: QueueName,
    seen: u64,
    safety: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WakeStrategy {
    pub(crate) fn new(wake: Arc<Wakeups>, queue: QueueName, safety: Duration) -> Self {
        let seen = wake.signal(queue).generation();
        Self { wake, queue, seen, safety, sleep: None }
    }
}

impl PollStrategy for WakeStrategy {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let signal = self.wake.signal(self.queue);
        signal.register(cx.waker());
        let generation = signal.generation();
        if generation != self.seen {
            self.seen = generation;
            self.sleep = None;
            cx.waker().wake_by_ref();
            return Poll::Ready(Some(()));
        }
        let safety = self.safety;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(safety)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                cx.waker().wake_by_ref();
                Poll::Ready(Some(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Subscribes to the wake channels of `queues` and bumps the local signals; reconnects after
/// a lost connection (a Redis restart) and then wakes every queue, since pushes made while
/// it was away were not heard, and tells `back` (pushes may have been lost, not only
/// notices: see `webhooks::requeue_after_broker_loss`).
pub(crate) async fn subscribe(
    redis: RedisQueue,
    wake: Arc<Wakeups>,
    queues: Vec<QueueName>,
    back: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let channels: Vec<String> = queues.iter().map(|q| redis.wake_channel(*q)).collect();
    let mut failures = 0u32;
    loop {
        let run = async {
            let mut pubsub = redis.client().get_async_pubsub().await?;
            for channel in &channels {
                pubsub.subscribe(channel).await?;
            }
            if failures > 0 {
                tracing::info!("wake-up subscription is back");
                back.notify_one();
            }
            failures = 0;
            wake.notify_all();
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                if let Some(queue) = redis.queue_of_channel(msg.get_channel_name()) {
                    wake.notify(queue);
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        let error = tokio::select! {
            () = stop.cancelled() => return,
            result = run => result.err(),
        };
        failures += 1;
        if failures == 1 || failures.is_multiple_of(30) {
            match error {
                Some(error) => {
                    tracing::warn!(%error, "wake-up subscription lost; polling until it is back")
                }
                None => tracing::warn!("wake-up subscription closed; polling until it is back"),
            }
        }
        let backoff = Duration::from_millis(100 * u64::from(failures.min(10)));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Moves due delayed jobs of a Redis queue onto its active list, in chunks of 1000, then
/// sleeps until the next one is due, a local delayed push, or `rest`, whichever is first
/// (see `redis_push.lua` for why apalis' own promotion is not used).
pub(crate) async fn promote_delayed(
    redis: RedisQueue,
    wake: Arc<Wakeups>,
    queue: QueueName,
    rest: Duration,
) {
    let mut failures = 0u32;
    let pushed = wake.delayed(queue);
    let mut seen = pushed.generation();
    loop {
        let mut wait = rest;
        match redis.promote(queue, 1000).await {
            Ok((1000, _)) => {
                failures = 0;
                tokio::task::yield_now().await;
                continue;
            }
            Ok((_, next)) => {
                failures = 0;
                if let Some(at) = next {
                    let until = (at - switchyard_shared::jobs::now_ms()).max(0) as u64;
                    wait = wait.min(Duration::from_millis(until));
                }
            }
            Err(error) => {
                failures += 1;
                wait = Duration::from_secs(1);
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(%queue, %error, "cannot promote delayed jobs");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            g = wake::changed(pushed, seen) => seen = g,
        }
    }
}
