//! A dependency stops answering while events are published (fleet: PostgreSQL and Redis
//! behind a loopback proxy the test cuts off). The store down: every answer is a fast 503
//! with `Retry-After` (never a 500, never a 5 s wait), `/readyz` names the store, and
//! publishing works again once it is back. The queue down: `POST /events` still accepts
//! within about a second (the store is the source of truth; the sweep enqueues later). The
//! store down under a backlog of 10,000 jobs: every one fails, and the workers do not wedge.
//! The store's connections killed while idle: replaced before the next use.

use crate::support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sqlx::Connection;
use support::{Backend, TestApp, TestEnv, proxy::Proxy, wait_for};
use switchyard_shared::{
    jobs::{DeliverWebhookJob, Job},
    queue::{QueueBackend, QueueName},
    store::{IDLE_BEFORE_PING, Store},
    webhooks::DeliveryStatus,
};

const PG: &str = "127.0.0.1:5432";
const REDIS: &str = "127.0.0.1:6379";

async fn publish(app: &TestApp, i: usize) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let resp = app
        .http
        .post(app.url("/api/v1/events"))
        .json(&json!({"type": "outage.test", "data": {"i": i}}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let status = resp.status().as_u16();
    let retry_after =
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry_after, resp.json().await.unwrap_or(Value::Null), took)
}

async fn fleet_behind_proxy(var: &str, target: &str) -> Option<(TestEnv, Proxy)> {
    let mut env = TestEnv::new(Backend::Fleet).await?;
    let proxy = Proxy::start(target.parse::<SocketAddr>().unwrap()).await;
    let url = env.var(var).unwrap().replace(target, &proxy.addr.to_string());
    env.set(var, url);
    Some((env, proxy))
}

/// The API with an endpoint, once a first event has been accepted.
async fn started_and_publishing(env: &TestEnv) -> TestApp {
    let app = env.start_api_only().await;
    support::insert_endpoint(&app.services, "http://127.0.0.1:9/x", "outage.*").await;
    let (status, _, body, _) = publish(&app, 0).await;
    assert_eq!(status, 202, "{body}");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_down_answers_503_with_retry_after_at_once() {
    let Some((env, proxy)) = fleet_behind_proxy("DATABASE_URL", PG).await else { return };
    let app = started_and_publishing(&env).await;

    proxy.cut();
    let mut slowest = Duration::ZERO;
    for i in 1..=20 {
        let (status, retry_after, body, took) = publish(&app, i).await;
        assert_eq!(status, 503, "publish {i} while the store is down: {body}");
        assert_eq!(body["type"], "urn:switchyard:problem:unavailable", "{body}");
        let secs: u64 = retry_after.expect("a 503 carries Retry-After").parse().unwrap();
        assert!((1..=30).contains(&secs), "Retry-After {secs}");
        slowest = slowest.max(took);
    }
    // The pool waits SWITCHYARD_DATABASE_ACQUIRE_TIMEOUT_MS (1 s) for a connection.
    eprintln!("store down: 20 answers 503, slowest {slowest:?}");
    assert!(slowest < Duration::from_millis(2_500), "slowest 503 took {slowest:?}");
    let resp = app.anonymous.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("store (postgres)"), "{body}");

    proxy.restore();
    wait_for("publishing to work again", Duration::from_secs(20), || async {
        (publish(&app, 99).await.0 == 202).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_down_still_accepts_within_a_second() {
    let Some((env, proxy)) = fleet_behind_proxy("REDIS_URL", REDIS).await else { return };
    let app = started_and_publishing(&env).await;

    proxy.cut();
    let mut slowest = Duration::ZERO;
    let mut accepted = Vec::new();
    for i in 1..=10 {
        let (status, _, body, took) = publish(&app, i).await;
        assert_eq!(status, 202, "publish {i} while Redis is down: {body}");
        accepted.push(body["deliveries"][0].as_str().unwrap().to_owned());
        slowest = slowest.max(took);
    }
    eprintln!("queue down: 10 answers 202, slowest {slowest:?}");
    assert!(slowest < Duration::from_millis(1_800), "slowest accept took {slowest:?}");
    // Accepted means stored: each delivery is there, due, for the sweep to enqueue.
    for id in &accepted {
        let d = app.services.store.delivery(id).await.unwrap().expect("stored");
        assert_eq!(d.status, DeliveryStatus::Pending, "{d:?}");
    }
    proxy.restore();
    app.stop().await;
}

/// The store fails while 10,000 jobs are queued: every one of them fails, some several times,
/// and all of them run once the store is back. On Redis, apalis parked failed jobs in its
/// `scheduled` set, which its fetch script promotes with one `unpack()` that fails past ~8,000
/// due ids — every worker then stopped for good. Failed jobs now come back through our own
/// delayed set, promoted in bounded chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_do_not_wedge_when_the_store_fails_under_a_backlog() {
    const JOBS: usize = 10_000;
    let Some((mut env, proxy)) = fleet_behind_proxy("DATABASE_URL", PG).await else { return };
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "64");
    let app = env.start_app().await;
    proxy.cut();
    // Each delivery names an endpoint of its own (no line to wait in) that the store, once
    // back, says does not exist: the job then finishes. While it is down, each one fails.
    let jobs: Vec<Job> = (0..JOBS)
        .map(|i| {
            Job::DeliverWebhook(DeliverWebhookJob {
                delivery_id: format!("msg_backlog{i}").into(),
                endpoint_id: format!("ep_backlog{i}").into(),
                attempt: 1,
            })
        })
        .collect();
    app.services.queue.push_many(jobs).await.unwrap();
    wait_for("every job to have failed", Duration::from_secs(60), || async {
        (completed(&app, "failed").await >= JOBS as f64).then_some(())
    })
    .await;
    // The failures wait in our delayed set, not in apalis' `scheduled` set (where thousands
    // falling due in the same second wedge every worker).
    let QueueBackend::Redis(redis) = app.services.queue.backend() else { unreachable!() };
    let mut conn = redis.connection();
    let parked_by_apalis: u64 = redis::cmd("ZCARD")
        .arg(redis.storage_config(QueueName::Webhooks).scheduled_jobs_set())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(parked_by_apalis, 0, "failed jobs went to apalis' scheduled set");

    proxy.restore();
    let started = Instant::now();
    // Every job succeeded and the queue is empty: nothing wedged, nothing left behind.
    let s = wait_for("every job to finish", Duration::from_secs(120), || async {
        let s = app.services.queue.stats(QueueName::Webhooks).await.ok()?;
        let drained = s.pending + s.scheduled + s.running + s.failed == 0;
        (drained && completed(&app, "success").await >= JOBS as f64).then_some(s)
    })
    .await;
    eprintln!("{JOBS} failed jobs all ran {:?} after the store was back", started.elapsed());
    assert_eq!(s.dead, 0, "{s:?}");
    app.stop().await;
}

/// `switchyard_jobs_completed_total` of webhook deliveries with `outcome`, from /metrics.
async fn completed(app: &TestApp, outcome: &str) -> f64 {
    let Ok(resp) = app.anonymous.get(app.url("/metrics")).send().await else { return 0.0 };
    let text = resp.text().await.unwrap_or_default();
    let label = format!("outcome=\"{outcome}\"");
    text.lines()
        .filter(|l| {
            l.starts_with("switchyard_jobs_completed_total{")
                && l.contains("job=\"webhook_deliver\"")
                && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The store's pools hand out a connection without sqlx's ping unless it sat idle over
/// [`IDLE_BEFORE_PING`] (the ping is a round trip per use): one idle longer, whose server
/// end went away meanwhile (PostgreSQL restarted, a proxy timed it out), is found dead by
/// that ping and replaced, and the first statements after the quiet spell still work —
/// plain reads, claims, and the connections the busy paths kept (`Spares`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_whose_server_end_died_while_idle_are_replaced_before_use() {
    let Some(env) = TestEnv::new(Backend::Fleet).await else { return };
    let store = env.services().await.store;
    let ep = crate::store_contract::an_endpoint(&store).await;
    let delivery = crate::store_contract::a_delivery_to(&store, &ep, 3).await;
    let Store::Postgres(pool, _) = &store else { panic!("a fleet store is PostgreSQL") };
    // Several connections open and idle in the pool (and one kept by the busy paths).
    let reads =
        (0..4).map(|_| sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(pool));
    let pids: Vec<i32> = futures::future::try_join_all(reads).await.unwrap();
    assert!(!pids.is_empty());

    // Their server ends go away, from outside the pool.
    let url = env.var("DATABASE_URL").expect("a fleet env has a database").to_string();
    let mut outside = sqlx::PgConnection::connect(&url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut outside)
    .await
    .unwrap();
    assert!(killed.iter().filter(|k| **k).count() >= 1, "the pool's backends were terminated");

    // The rule under test is about time spent idle: wait it out.
    tokio::time::sleep(IDLE_BEFORE_PING + Duration::from_millis(200)).await;
    for i in 0..8 {
        let pid: Result<i32, _> =
            sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await;
        assert!(pid.is_ok(), "read {i} after the quiet spell: {pid:?}");
    }
    let until = chrono::Utc::now() + chrono::Duration::seconds(30);
    let wanted = [(delivery.clone().into(), 1)];
    let claimed = store.claim_deliveries(&wanted, until, chrono::Utc::now()).await;
    assert_eq!(claimed.map(|c| c.len()).map_err(|e| e.to_string()), Ok(1), "the claim after it");
}
