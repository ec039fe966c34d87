//! Webhook delivery, in named steps: admit (endpoint state, per-endpoint concurrency and rate
//! limit) → claim the attempt in the store → sign and send → classify the answer → record
//! (group commit) → schedule the next attempt as a new delayed task.

mod admission;
mod claimer;
mod client;
mod endpoints;
mod group_commit;
mod maintenance;
mod recorder;
mod send;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use apalis::prelude::BoxDynError;
use chrono::Utc;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use switchyard_shared::{
    jobs::{DeliverWebhookJob, Job},
    netguard::NetGuard,
    ratelimit::{Quota, RateLimiter},
    services::Services,
    telemetry,
    tenants::Owner,
    webhooks::events::{self, Audience},
    webhooks::{AttemptOutcome, DeliveryStatus, RetrySchedule, next_delay, signature_header},
    webhooks::{AttemptRecord, ClaimedDelivery, DeliveryClaim},
};
use tokio::sync::Semaphore;

pub(crate) use self::maintenance::{cleanup, disable_failing, retry_sweep};

use self::{
    admission::{Admission, Admitted, ReadBackDone, Source},
    claimer::Claimer,
    endpoints::EndpointCache,
    recorder::Recorder,
    send::{Answer, call},
};
use crate::handlers::{JobDeps, Outcome};

/// Response bodies are kept up to this size (lossy UTF-8).
const BODY_LIMIT: usize = 4096;
/// An attempt's lease outlasts its timeout by this much; a worker killed mid-attempt
/// leaves the attempt to others once the lease has run out.
const LEASE_SLACK: Duration = Duration::from_secs(5);
/// A read-back claims at most this many rounds of an endpoint's cap at once, so a claimed
/// delivery waits in line for at most that many requests before its own.
pub(super) const READ_BACK_ROUNDS: usize = 4;

/// What delivery needs, shared by every delivery job of a worker process.
pub(crate) struct Webhooks {
    client: reqwest::Client,
    /// Requests go through `SWITCHYARD_WEBHOOK_PROXY`: names are checked before sending.
    proxied: bool,
    guard: Arc<NetGuard>,
    recorder: Recorder,
    claimer: Claimer,
    endpoints: EndpointCache,
    admission: Admission,
    /// Endpoints whose parked deliveries are to be read back (taken by [`unpark`]).
    parked: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    /// Requests in flight from this process, over all endpoints.
    sending: Arc<Semaphore>,
    limiter: RateLimiter,
    schedule: RetrySchedule,
    throttle_floor: Duration,
    timeout: Duration,
    /// How long a read-back claim is this worker's: its wait in line (at most
    /// `READ_BACK_ROUNDS` rounds of requests) and its own request, with slack.
    read_back_lease: Duration,
}

impl Webhooks {
    /// `stopping`: cancelled when the process shuts down.
    pub(crate) fn new(services: &Services, stopping: switchyard_shared::CancellationToken) -> Self {
        let config = &services.config.webhooks;
        let guard = Arc::new(NetGuard::new(services.config.webhook_allowlist()));
        let timeout = Duration::from_millis(config.timeout_ms);
        // A delivery waits in line at most this long, so that it ends within the job timeout.
        let job_timeout = Duration::from_secs(services.config.worker.job_timeout_secs);
        let max_wait =
            job_timeout.saturating_sub(2 * timeout + LEASE_SLACK).max(Duration::from_secs(1));
        let (admission, parked) =
            Admission::new(config.endpoint_concurrency, config.endpoint_queue, max_wait, stopping);
        Self {
            client: client::build(
                Arc::clone(&guard),
                timeout,
                config.proxy.as_ref().map(|p| p.expose().as_str()),
            ),
            proxied: config.proxy.is_some(),
            guard,
            recorder: Recorder::start(services.store.clone()),
            claimer: Claimer::start(services.store.clone(), timeout + LEASE_SLACK),
            endpoints: EndpointCache::new(services.store.clone(), Arc::clone(&services.cipher)),
            admission,
            parked: Mutex::new(Some(parked)),
            sending: Arc::new(Semaphore::new(services.config.worker.concurrency)),
            limiter: RateLimiter::for_queue(&services.queue),
            schedule: RetrySchedule::parse(&config.retry_schedule)
                .unwrap_or(RetrySchedule { delays: vec![] }),
            throttle_floor: Duration::from_millis(config.throttle_floor_ms),
            timeout,
            read_back_lease: timeout * (READ_BACK_ROUNDS as u32 + 1) + LEASE_SLACK,
        }
    }
}

/// One attempt of one delivery, from its queue message.
pub(crate) async fn deliver(
    deps: &Arc<JobDeps>,
    job: DeliverWebhookJob,
) -> Result<Outcome, BoxDynError> {
    attempt(deps, job, None).await
}

/// One attempt: from a queue message (`read_back: None`: claimed once it has a slot), or
/// read back from the store already claimed (a parked endpoint's backlog draining), which
/// holds its slot only for the request.
async fn attempt(
    deps: &Arc<JobDeps>,
    job: DeliverWebhookJob,
    read_back: Option<ClaimedDelivery>,
) -> Result<Outcome, BoxDynError> {
    let (services, hooks) = (&deps.services, &deps.webhooks);
    let store = &services.store;
    let from = if read_back.is_some() { Source::Store } else { Source::Queue };
    // A read-back claim given up before its request: due again at once, for any worker.
    let release = |why: &'static str| {
        let (store, id, attempt) = (store.clone(), job.delivery_id.clone(), job.attempt);
        async move {
            if let Err(error) = store.release_claim(&id, attempt).await {
                tracing::warn!(%error, why, "a read-back claim not released; its lease will run out");
            }
        }
    };

    // Admit: a slot of this endpoint, in line behind the deliveries that came before.
    let slot = match hooks.admission.admit(&job.endpoint_id, from).await {
        Admitted::Go(slot) => slot,
        Admitted::Parked => {
            if read_back.is_some() {
                release("parked").await;
            }
            return Ok(Outcome::Success);
        }
        Admitted::Stopping => {
            if read_back.is_some() {
                release("stopping").await;
            }
            return defer(services, job, Duration::ZERO, "stopping").await;
        }
    };
    let now = Utc::now();
    // The endpoint must exist and be enabled.
    let endpoint = match usable(hooks.endpoints.get(&job.endpoint_id).await?) {
        Ok(endpoint) => endpoint,
        Err(reason) => {
            store.fail_delivery(&job.delivery_id, &reason, now).await?;
            return Ok(Outcome::Success);
        }
    };
    if let Some(rps) = endpoint.rate_limit_per_second {
        let bucket = format!("webhook:{}", endpoint.id);
        match hooks
            .limiter
            .check(&bucket, Quota::per_second(rps.clamp(1, u32::MAX.into()) as u32))
            .await
        {
            Ok(d) if !d.allowed => {
                if read_back.is_some() {
                    release("rate_limit").await;
                }
                return defer(services, job, d.retry_after, "rate_limit").await;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "endpoint rate limiter unavailable; sending"),
        }
    }

    // Claim the attempt: a duplicate stops here; an attempt held by another worker (maybe
    // one that was killed) is looked at again when its lease runs out.
    let claimed = match read_back {
        Some(c) => c,
        None => match hooks.claimer.claim(job.delivery_id.clone(), job.attempt).await? {
            Some(c) => c,
            None => return unclaimed(services, job, now).await,
        },
    };
    // The claim read the endpoint's `updated_at`: a copy cached before a change (a rotated
    // secret, a new URL, a disable) is read again before anything is sent.
    let endpoint =
        match usable(hooks.endpoints.at_least(endpoint, claimed.endpoint_updated_at).await?) {
            Ok(endpoint) => endpoint,
            Err(reason) => {
                store.fail_delivery(&job.delivery_id, &reason, now).await?;
                return Ok(Outcome::Success);
            }
        };
    let Some(payload) = claimed.payload.clone() else {
        store.fail_delivery(&job.delivery_id, "the event payload is gone (retention)", now).await?;
        return Ok(Outcome::Success);
    };

    // From here the request goes out. This part runs in a task of its own: apalis drops the
    // futures of a worker it stops on a backend error (a Redis reconnect), and a delivery
    // cancelled between its request and its record was sent again once its claim ran out.
    let sent =
        tokio::spawn(send_and_record(Arc::clone(deps), job, endpoint, claimed, payload, slot));
    sent.await.map_err(|e| Box::new(e) as BoxDynError)?
}

/// A message whose attempt could not be claimed: held by another worker (maybe one that was
/// killed), it is looked at again when that lease runs out; else a duplicate or stale one.
async fn unclaimed(
    services: &Services,
    job: DeliverWebhookJob,
    now: chrono::DateTime<Utc>,
) -> Result<Outcome, BoxDynError> {
    match services.store.unclaimed(&job.delivery_id, job.attempt).await? {
        DeliveryClaim::Held { until } => {
            let wait = (until - now).to_std().unwrap_or_default() + Duration::from_millis(100);
            defer(services, job, wait, "held").await
        }
        _ => {
            tracing::debug!(delivery_id = %job.delivery_id, attempt = job.attempt, "a duplicate or stale message");
            Ok(Outcome::Success)
        }
    }
}

/// The endpoint if deliveries may go to it, else why the delivery fails.
fn usable(endpoint: Option<Arc<endpoints::Endpoint>>) -> Result<Arc<endpoints::Endpoint>, String> {
    match endpoint {
        None => Err("the endpoint was deleted".to_owned()),
        Some(e) if !e.enabled => Err(format!(
            "the endpoint is disabled: {}",
            e.disabled_reason.as_deref().unwrap_or("no reason recorded")
        )),
        Some(e) => Ok(e),
    }
}

/// Signs and sends one claimed attempt, records it, and schedules the next.
async fn send_and_record(
    deps: Arc<JobDeps>,
    job: DeliverWebhookJob,
    endpoint: Arc<endpoints::Endpoint>,
    claimed: ClaimedDelivery,
    payload: String,
    slot: admission::Slot,
) -> Result<Outcome, BoxDynError> {
    let (services, hooks) = (&deps.services, &deps.webhooks);
    // Sign and send, within this process' connection budget.
    let sending = Arc::clone(&hooks.sending).acquire_owned().await?;
    let timestamp = Utc::now().timestamp();
    let mut headers = reqwest::header::HeaderMap::new();
    let signature =
        signature_header(&endpoint.keys, &job.delivery_id, timestamp, payload.as_bytes());
    for (name, value) in [
        ("webhook-id", job.delivery_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    let started = Instant::now();
    let answer = call(hooks, &endpoint.url, headers, payload).await;
    let elapsed = started.elapsed();
    // The slots are for requests in flight; recording needs none.
    drop((sending, slot));

    let attempt = job.attempt;
    let (status, next) =
        classify(&answer, attempt, claimed.max_attempts, &hooks.schedule, hooks.throttle_floor);
    let finished = Utc::now();
    let record = AttemptRecord {
        delivery_id: job.delivery_id.clone(),
        endpoint_id: endpoint.id.clone(),
        n: attempt,
        at: finished,
        status_code: answer.status_code.map(i32::from),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        outcome: answer.kind,
        error: answer.error.clone(),
        response_body: answer.body.clone(),
        delivery_status: status,
        next_attempt_at: next
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| finished + d),
        success: answer.success(),
        gone: answer.gone(),
    };
    hooks.recorder.record(record).await?;

    metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "outcome" => status.as_str(), "status_class" => answer.class)
        .increment(1);
    metrics::histogram!(telemetry::WEBHOOK_ATTEMPT_DURATION).record(elapsed.as_secs_f64());
    if answer.kind == AttemptOutcome::Blocked {
        metrics::counter!(telemetry::WEBHOOK_BLOCKED).increment(1);
    }
    if next.is_none() {
        // The delivery ended (delivered, failed, blocked): how many attempts it took.
        metrics::histogram!(telemetry::WEBHOOK_DELIVERY_ATTEMPTS, "outcome" => status.as_str())
            .record(attempt as f64);
    }
    if status == DeliveryStatus::Delivered {
        let e2e = (finished - claimed.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!(telemetry::WEBHOOK_END_TO_END).record(e2e);
    }
    if answer.gone() {
        hooks.endpoints.forget(&endpoint.id);
        metrics::counter!(telemetry::WEBHOOK_ENDPOINTS_DISABLED, "reason" => "gone").increment(1);
        let why = "the endpoint answered 410 Gone";
        announce_disabled(services, &endpoint.owner, &endpoint.id, &endpoint.url, why).await;
    }

    // Schedule the next attempt as a new delayed task (the row already says when).
    if let Some(delay) = next {
        let next_job = Job::DeliverWebhook(DeliverWebhookJob { attempt: attempt + 1, ..job });
        if let Err(error) = services.queue.push_after(next_job, delay).await {
            tracing::warn!(%error, "next attempt not enqueued; the retry sweep will");
        }
        return Ok(Outcome::RetryScheduled);
    }
    Ok(Outcome::Success)
}

/// What an attempt's answer makes of its delivery: `delivered`, `failed` (permanent — the
/// guard refused it, 410 — or the last attempt), or `retrying` after the next delay of the
/// schedule (a `Retry-After` honoured within bounds, at least the throttle floor after a 429
/// or a timeout).
fn classify(
    answer: &Answer,
    attempt: i64,
    max_attempts: i64,
    schedule: &RetrySchedule,
    throttle_floor: Duration,
) -> (DeliveryStatus, Option<Duration>) {
    if answer.success() {
        return (DeliveryStatus::Delivered, None);
    }
    if answer.permanent() || attempt >= max_attempts {
        return (DeliveryStatus::Failed, None);
    }
    let scheduled = schedule.after(attempt as u32).unwrap_or_default();
    let delay =
        next_delay(scheduled, answer.retry_after, answer.throttled_or_timed_out(), throttle_floor);
    (DeliveryStatus::Retrying, Some(delay))
}

/// Puts the message back for later without counting an attempt.
async fn defer(
    services: &Services,
    job: DeliverWebhookJob,
    wait: Duration,
    why: &'static str,
) -> Result<Outcome, BoxDynError> {
    metrics::counter!(telemetry::WEBHOOK_DEFERRED, "reason" => why).increment(1);
    let wait = switchyard_shared::webhooks::jitter(wait.max(Duration::from_millis(50)), 0.5);
    services.queue.push_after(Job::DeliverWebhook(job), wait).await?;
    Ok(Outcome::RetryScheduled)
}

/// Reads parked deliveries back into their endpoint's line when it has emptied: the oldest
/// due ones, a line's worth at a time, each attempted in a task of its own (not a queue job:
/// should this process die, their rows are still due and the retry sweep finds them).
pub(crate) async fn unpark(deps: Arc<crate::handlers::JobDeps>) {
    let Some(mut endpoints) = deps.webhooks.parked.lock().expect("parked lock").take() else {
        return;
    };
    let admission = &deps.webhooks.admission;
    while let Some(endpoint_id) = endpoints.recv().await {
        if admission.stopping() {
            // Left `unparking`: this lane asks no more (see `maybe_unpark`).
            continue;
        }
        let plan = admission.read_back(&endpoint_id);
        let now = Utc::now();
        let lease_until =
            now + chrono::Duration::from_std(deps.webhooks.read_back_lease).unwrap_or_default();
        let due = deps
            .services
            .store
            .claim_due_of(&endpoint_id, plan.after.as_deref(), plan.limit as i64, lease_until, now)
            .await;
        let due = match due {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, endpoint_id, "parked deliveries not read back; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                admission.unparked(&endpoint_id, &plan, ReadBackDone::Failed);
                continue;
            }
        };
        let done = ReadBackDone::Read {
            got: due.len(),
            last: due.last().map(|d| d.claimed.id.to_string()),
        };
        // One task drives them all: a `FuturesUnordered` polls new futures in the order they
        // were pushed, so they take their places in line in publish order (separate tasks
        // would start in any order). The last future says when all have.
        let (joined, in_line) = tokio::sync::oneshot::channel::<()>();
        let runner = Arc::clone(&deps);
        tokio::spawn(async move {
            let deps = &runner;
            let mut attempts: FuturesUnordered<BoxFuture<'_, ()>> = due
                .into_iter()
                .map(|d| {
                    let job = DeliverWebhookJob {
                        delivery_id: d.claimed.id.clone(),
                        endpoint_id: d.claimed.endpoint_id.clone(),
                        attempt: d.attempt,
                    };
                    async move {
                        if let Err(error) = attempt(deps, job, Some(d.claimed)).await {
                            tracing::warn!(%error, "a parked delivery's attempt failed; the retry sweep will");
                        }
                    }
                    .boxed()
                })
                .collect();
            attempts.push(
                async move {
                    let _ = joined.send(());
                }
                .boxed(),
            );
            while attempts.next().await.is_some() {}
        });
        let _ = in_line.await;
        admission.unparked(&endpoint_id, &plan, done);
    }
}

/// Marks this deployment present in Redis, then, each time the connection is back after a
/// loss, re-enqueues what the broker may have lost (one worker of the fleet per loss).
pub(crate) async fn requeue_when_back(
    services: Services,
    redis: switchyard_shared::queue::RedisQueue,
    back: Arc<tokio::sync::Notify>,
) {
    if let Err(error) = redis.mark_present().await {
        tracing::warn!(%error, "could not mark this deployment present in Redis");
    }
    loop {
        back.notified().await;
        if let Err(error) = maintenance::requeue_after_broker_loss(&services, &redis).await {
            tracing::warn!(%error, "re-enqueueing after a broker loss failed; the retry sweep will");
        }
    }
}

/// Publishes `webhook.endpoint.disabled` to the endpoints of the same owner subscribed to it.
pub(crate) async fn announce_disabled(
    services: &Services,
    owner: &Owner,
    id: &str,
    url: &str,
    reason: &str,
) {
    let data = serde_json::json!({"endpoint_id": id, "url": url, "reason": reason});
    if let Err(error) = events::publish(
        services,
        owner,
        "webhook.endpoint.disabled",
        &data,
        Some("system"),
        Audience::Subscribers,
    )
    .await
    {
        tracing::warn!(%error, endpoint_id = id, "could not publish webhook.endpoint.disabled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u16>, kind: AttemptOutcome, retry_after: Option<u64>) -> Answer {
        Answer {
            status_code: status,
            class: kind.as_str(),
            kind,
            error: None,
            body: None,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn classified(a: &Answer, attempt: i64) -> (DeliveryStatus, Option<Duration>) {
        let schedule = RetrySchedule::parse("10s,1m").unwrap();
        classify(a, attempt, 3, &schedule, Duration::from_secs(30))
    }

    #[test]
    fn a_2xx_is_delivered() {
        assert_eq!(
            classified(&answer(Some(204), AttemptOutcome::HttpStatus, None), 1),
            (DeliveryStatus::Delivered, None)
        );
    }

    #[test]
    fn gone_blocked_and_the_last_attempt_are_final() {
        let failed = (DeliveryStatus::Failed, None);
        assert_eq!(classified(&answer(Some(410), AttemptOutcome::HttpStatus, None), 1), failed);
        assert_eq!(classified(&answer(None, AttemptOutcome::Blocked, None), 1), failed);
        assert_eq!(classified(&answer(Some(500), AttemptOutcome::HttpStatus, None), 3), failed);
    }

    #[test]
    fn a_failure_retries_on_the_schedule_with_jitter() {
        let (status, next) = classified(&answer(Some(500), AttemptOutcome::HttpStatus, None), 1);
        assert_eq!(status, DeliveryStatus::Retrying);
        let secs = next.unwrap().as_secs_f64();
        assert!((8.0..=12.0).contains(&secs), "10 s ± 20 %: {secs}");
        let (_, next) = classified(&answer(None, AttemptOutcome::ConnectRefused, None), 2);
        assert!((48.0..=72.0).contains(&next.unwrap().as_secs_f64()));
    }

    #[test]
    fn retry_after_is_bounded_and_throttling_waits_at_least_the_floor() {
        // Asked for an hour: at most twice the scheduled 10 s; a 429 waits at least 30 s.
        let (_, next) = classified(&answer(Some(503), AttemptOutcome::HttpStatus, Some(3600)), 1);
        assert_eq!(next, Some(Duration::from_secs(20)));
        let (_, next) = classified(&answer(Some(429), AttemptOutcome::HttpStatus, Some(1)), 1);
        assert_eq!(next, Some(Duration::from_secs(30)));
        let (_, next) = classified(&answer(None, AttemptOutcome::Timeout, None), 1);
        assert_eq!(next, Some(Duration::from_secs(30)));
    }
}
