//! Dispatch on both backends: pickup is event-driven (a push wakes an idle worker; polling
//! is only the safety net, set to 10 s here), also after a Redis restart; deliveries to an
//! endpoint at its cap keep their order; the batch publish route; a publish answered once
//! written, its push behind it (and waited for by a stopping API); the Redis key layout the
//! queue relies on, and a namespace deleted whole.

use crate::support;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{
    Backend, TestApp, TestEnv, free_port,
    receiver::{Receiver, Reply},
    wait_for, which,
};

/// Far longer than any wait below: a delivery that arrives in time was not found by a poll.
const SAFETY_POLL_MS: &str = "10000";

async fn create_endpoint(app: &TestApp, url: &str) -> String {
    let resp = app
        .http
        .post(app.url("/api/v1/webhooks"))
        .json(&json!({"url": url, "event_types": ["dispatch.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn publish(app: &TestApp, i: usize) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/events"))
        .json(&json!({"type": "dispatch.tick", "data": {"i": i}}))
        .send()
        .await
        .unwrap()
}

/// Publishes event `i` and waits at most 1 s for it to reach `path`.
async fn delivered_within_a_second(app: &TestApp, rx: &Receiver, path: &str, i: usize) {
    let before = rx.received(path).len();
    let resp = publish(app, i).await;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    // Fails unless it arrives within 1 s of the 202 (the safety poll is 10 s).
    wait_for(
        &format!("event {i} within 1 s (no poll for 10 s)"),
        Duration::from_secs(1),
        || async { (rx.received(path).len() > before).then_some(()) },
    )
    .await;
}

async fn pickup_is_event_driven(mut env: TestEnv) {
    env.set("SWITCHYARD_WORKER_POLL_INTERVAL_MS", SAFETY_POLL_MS);
    let rx = Receiver::start().await;
    if env.var("REDIS_URL").is_some() {
        // Fleet: the worker is another process, so only the Redis channel can wake it.
        let app = env.start_api_only().await;
        create_endpoint(&app, &rx.url("/hook")).await;
        let (worker, _) = env.spawn_role("worker", &[]).await;
        for i in 0..5 {
            delivered_within_a_second(&app, &rx, "/hook", i).await;
            // Idle again between events, so each one has to wake the worker.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        worker.kill().await;
        app.stop().await;
    } else {
        // Embedded: the API and the worker share a process, as in `dev`.
        let app = env.start_app().await;
        create_endpoint(&app, &rx.url("/hook")).await;
        for i in 0..5 {
            delivered_within_a_second(&app, &rx, "/hook", i).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        app.stop().await;
    }
}
both_backends!(pickup_is_event_driven);

/// A private `redis-server`, killed when dropped.
struct PrivateRedis {
    child: std::process::Child,
}

impl PrivateRedis {
    async fn start(port: u16) -> Self {
        let server = which("redis-server").expect("redis-server is installed with Redis");
        let child = std::process::Command::new(server)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let url = format!("redis://127.0.0.1:{port}");
        wait_for("the private redis-server to answer", Duration::from_secs(10), || async {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.ok()
        })
        .await;
        Self { child }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis only: the embedded queue has no broker to restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_survives_a_redis_restart() {
    let Some(mut env) = TestEnv::new(Backend::Fleet).await else { return };
    let port = free_port();
    let redis = PrivateRedis::start(port).await;
    env.set("REDIS_URL", format!("redis://127.0.0.1:{port}"));
    env.set("SWITCHYARD_WORKER_POLL_INTERVAL_MS", SAFETY_POLL_MS);
    let rx = Receiver::start().await;
    let app = env.start_api_only().await;
    create_endpoint(&app, &rx.url("/hook")).await;
    let (worker, _) = env.spawn_role("worker", &[]).await;
    delivered_within_a_second(&app, &rx, "/hook", 0).await;

    drop(redis);
    let _redis = PrivateRedis::start(port).await;
    // The worker re-subscribes (and re-registers, its keys gone with the old server).
    wait_for("the worker to subscribe again", Duration::from_secs(20), || async {
        worker.log_text().contains("wake-up subscription is back").then_some(())
    })
    .await;
    wait_for("the API to publish again", Duration::from_secs(20), || async {
        let resp = publish(&app, 1).await;
        (resp.status() == 202).then_some(())
    })
    .await;
    wait_for("the first event after the restart", Duration::from_secs(20), || async {
        (rx.received("/hook").len() >= 2).then_some(())
    })
    .await;
    // The worker may still be re-registering (its keys went with the old server): within
    // 20 s, three events in a row must each arrive within 1 s — a 10 s poll cannot do that.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut in_a_row, mut i) = (0, 2);
    while in_a_row < 3 {
        assert!(Instant::now() < deadline, "pickup did not become event-driven again");
        let before = rx.received("/hook").len();
        assert_eq!(publish(&app, i).await.status(), 202);
        let sent = Instant::now();
        wait_for(&format!("event {i}"), Duration::from_secs(15), || async {
            (rx.received("/hook").len() > before).then_some(())
        })
        .await;
        in_a_row = if sent.elapsed() < Duration::from_secs(1) { in_a_row + 1 } else { 0 };
        i += 1;
    }
    worker.kill().await;
    app.stop().await;
}

/// Publishes one batch of events `{"i": n}` for each `n` in `numbers` (at most 100).
async fn publish_batch(app: &TestApp, event_type: &str, numbers: std::ops::Range<usize>) {
    let events: Vec<Value> =
        numbers.map(|i| json!({"type": event_type, "data": {"i": i}})).collect();
    let resp = app
        .http
        .post(app.url("/api/v1/events/batch"))
        .json(&json!({"events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
}

/// Redis restarted empty while deliveries are in flight, and no worker killed: every accepted
/// delivery arrives exactly once, soon after Redis is back. Before, attempts in flight when
/// the worker reconnected went out but were never recorded (apalis drops a stopped worker's
/// futures), and were sent again once their claim ran out; and the deliveries Redis lost
/// waited for the retry sweep's grace. The retry sweep is off here: only the re-enqueueing
/// on reconnection can bring the lost ones back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_and_duplicates_nothing() {
    const EVENTS: usize = 60;
    let Some(mut env) = TestEnv::new(Backend::Fleet).await else { return };
    let port = free_port();
    let redis = PrivateRedis::start(port).await;
    env.set("REDIS_URL", format!("redis://127.0.0.1:{port}"));
    env.set("SWITCHYARD_WEBHOOK_TIMEOUT_MS", "5000");
    env.set("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", "8");
    let rx = Receiver::start().await;
    rx.script("/slow", vec![Reply::Slow(200, Duration::from_millis(400))]);
    let app = env.start_app().await;
    create_endpoint(&app, &rx.url("/slow")).await;
    publish_batch(&app, "dispatch.restart", 0..EVENTS).await;
    wait_for("deliveries in flight", Duration::from_secs(20), || async {
        (rx.received("/slow").len() >= 8).then_some(())
    })
    .await;

    drop(redis);
    let _redis = PrivateRedis::start(port).await;
    let back = Instant::now();
    let store = &app.services.store;
    wait_for("every delivery to be delivered", Duration::from_secs(30), || async {
        let (n,) = store_query!(
            store,
            (i64,),
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'delivered'",
            fetch_one
        );
        (n as usize == EVENTS).then_some(())
    })
    .await;
    eprintln!("all {EVENTS} delivered {:?} after Redis was back", back.elapsed());
    let mut ids: Vec<String> =
        rx.received("/slow").iter().map(|r| r.headers["webhook-id"].clone()).collect();
    ids.sort();
    let total = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), EVENTS, "every delivery arrived");
    assert_eq!(total, EVENTS, "{} duplicates", total - EVENTS);
    app.stop().await;
}

async fn deliveries_over_the_cap_keep_their_order(mut env: TestEnv) {
    const CAP: usize = 2;
    const EVENTS: usize = 200;
    env.set("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", CAP.to_string());
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    // Each answer takes 50 ms, so a slot frees only after one: for a delivery to be overtaken
    // by more than the cap, its own request would have to stall for 100 ms on the way out.
    // (An instant receiver measures the machine's scheduling under load, not the line.)
    rx.script("/ordered", vec![Reply::Slow(200, Duration::from_millis(50))]);
    create_endpoint(&app, &rx.url("/ordered")).await;
    for start in (0..EVENTS).step_by(100) {
        publish_batch(&app, "dispatch.order", start..(start + 100).min(EVENTS)).await;
    }
    let arrived: Vec<usize> = wait_for("every delivery", Duration::from_secs(60), || async {
        let got = rx.received("/ordered");
        (got.len() >= EVENTS).then(|| {
            got.iter()
                .map(|r| {
                    let body: Value = serde_json::from_slice(&r.body).unwrap();
                    body["data"]["i"].as_u64().unwrap() as usize
                })
                .collect()
        })
    })
    .await;
    assert_eq!(arrived.len(), EVENTS, "each event once");
    // How many later events arrived before each one: with `CAP` requests in flight, at most
    // the others in flight with it (the old push-back scheme let some wait behind hundreds).
    let mut worst = 0;
    for (pos, i) in arrived.iter().enumerate() {
        let overtaken_by = arrived[..pos].iter().filter(|j| *j > i).count();
        worst = worst.max(overtaken_by);
    }
    assert!(worst <= CAP, "a delivery waited behind {worst} later ones (cap {CAP}): {arrived:?}");
    app.stop().await;
}
both_backends!(deliveries_over_the_cap_keep_their_order);

async fn the_batch_route(env: TestEnv) {
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    let endpoint = create_endpoint(&app, &rx.url("/batch")).await;
    let url = app.url("/api/v1/events/batch");

    // Over 100 events: 413.
    let many: Vec<Value> =
        (0..101).map(|i| json!({"type": "dispatch.many", "data": {"i": i}})).collect();
    let resp = app.http.post(&url).json(&json!({"events": many})).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // Bad events: 422 naming each by index and field, and nothing written.
    let big = "x".repeat(300 * 1024);
    let problem = support::expect_status(app.http.post(&url).json(&json!({"events": [ {"type": "dispatch.ok", "data": {}}, {"type": "not a type!", "data": {}}, {"type": "dispatch.big", "data": {"blob": big}}, ]})), 422, "POST request").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["events[1].type", "events[2].data"], "{problem}");
    let (status, page) = app.get_json(&format!("/api/v1/webhooks/{endpoint}/deliveries")).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 0, "a refused batch writes nothing: {page}");

    // A good batch: each event answered with its id and deliveries; replayed by its key.
    let body = json!({"events": [
        {"type": "dispatch.a", "data": {"n": 1}},
        {"type": "dispatch.b", "data": {"n": 2}},
        {"type": "other.c", "data": {"n": 3}},
    ]});
    let send = || app.http.post(&url).header("idempotency-key", "batch-1").json(&body).send();
    let first = send().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let events = first["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["id"].as_str().unwrap().starts_with("evt_")));
    let deliveries: Vec<usize> =
        events.iter().map(|e| e["deliveries"].as_array().unwrap().len()).collect();
    assert_eq!(deliveries, [1, 1, 0], "other.c matches no endpoint");
    let again = send().await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    wait_for("both deliveries", Duration::from_secs(10), || async {
        (rx.received("/batch").len() >= 2).then_some(())
    })
    .await;
    let (_, page) = app.get_json(&format!("/api/v1/webhooks/{endpoint}/deliveries")).await;
    assert_eq!(page["total"], 2, "the replay wrote nothing: {page}");
    app.stop().await;
}
both_backends!(the_batch_route);

/// A publish is answered once its rows are committed; its deliveries' first attempts are
/// pushed behind it (groups written meanwhile share a push), and `flushed` — what the API
/// waits for when it stops — says when every answered publish has been pushed. Embedded:
/// holding `jobs.db`'s one connection holds every push (for less than the pusher's 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_answered_before_their_push_and_flushed_after() {
    use switchyard_shared::{
        queue::{QueueBackend, QueueName},
        tenants::Owner,
        webhooks::{
            DeliveryStatus,
            events::{Audience, publish},
        },
    };
    let Some(env) = TestEnv::new(Backend::Embedded).await else { return };
    let services = env.services().await;
    support::insert_endpoint(&services, "http://127.0.0.1:9/x", "dispatch.*").await;
    let QueueBackend::Sqlite(jobs_db) = services.queue.backend() else {
        panic!("the embedded queue is jobs.db")
    };

    let held = jobs_db.acquire().await.unwrap();
    let publishes = (0..20).map(|i| {
        let data = json!({"i": i});
        let services = &services;
        async move {
            let owner = Owner::Platform;
            publish(services, &owner, "dispatch.tick", &data, None, Audience::Subscribers).await
        }
    });
    let published =
        tokio::time::timeout(Duration::from_millis(500), futures::future::join_all(publishes))
            .await
            .expect("publishes are answered without waiting for the queue");
    for p in &published {
        let id = &p.as_ref().unwrap().delivery_ids[0];
        let row = services.store.delivery(id).await.unwrap().expect("written before answered");
        assert_eq!(row.status, DeliveryStatus::Pending);
    }
    assert!(
        !services.publisher.flushed(Duration::from_millis(100)).await,
        "not flushed while no push can be made"
    );
    drop(held);
    assert!(services.publisher.flushed(Duration::from_secs(10)).await, "flushed once pushed");
    let stats = services.queue.stats(QueueName::Webhooks).await.unwrap();
    assert_eq!(stats.pending, 20, "every answered publish's delivery is queued: {stats:?}");
}

/// A stopping API waits until its answered publishes have been pushed (here: held back by
/// `jobs.db`'s one connection until the API has begun to stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_api_waits_for_its_last_pushes() {
    use switchyard_shared::queue::{QueueBackend, QueueName};
    let Some(env) = TestEnv::new(Backend::Embedded).await else { return };
    let app = env.start_api_only().await;
    support::insert_endpoint(&app.services, "http://127.0.0.1:9/x", "dispatch.*").await;
    let services = app.services.clone();
    let QueueBackend::Sqlite(jobs_db) = services.queue.backend() else {
        panic!("the embedded queue is jobs.db")
    };
    let held = jobs_db.acquire().await.unwrap();
    let resp = publish(&app, 1).await;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let stopping = tokio::spawn(app.stop());
    // The push cannot have happened: the API must still be waiting for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "the API stopped with a push still to make");
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), stopping).await.unwrap().unwrap();
    let stats = services.queue.stats(QueueName::Webhooks).await.unwrap();
    assert_eq!(stats.pending, 1, "pushed before the API stopped: {stats:?}");
}

/// The apalis-redis layout our own scripts write into and read (pinned with apalis =1.0.0):
/// a due push lands on `<ns>:<queue>:active` with its data in `<ns>:<queue>:data` and its
/// metadata in `<ns>:<queue>:meta:<id>`, and is announced on `tasks:<active list>:available`;
/// a delayed one waits in our `<ns>:<queue>:delayed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_key_layout() {
    let Some(env) = TestEnv::new(Backend::Fleet).await else { return };
    let url = env.var("REDIS_URL").expect("a fleet environment has Redis").to_owned();
    let services = env.services().await;
    let ns = env.namespace().to_owned();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    let channel = format!("tasks:{ns}:webhooks:active:available");
    pubsub.subscribe(&channel).await.unwrap();
    let job = || {
        switchyard_shared::jobs::Job::DeliverWebhook(switchyard_shared::jobs::DeliverWebhookJob {
            delivery_id: "msg_layout".into(),
            endpoint_id: "ep_layout".into(),
            attempt: 1,
        })
    };
    let id = services.queue.push(job()).await.unwrap();
    let later = services.queue.push_after(job(), Duration::from_secs(600)).await.unwrap();

    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let active: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{ns}:webhooks:active"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(active, std::slice::from_ref(&id));
    let data: Option<String> = redis::cmd("HGET")
        .arg(format!("{ns}:webhooks:data"))
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(data.unwrap().contains("webhook_deliver.v1"));
    let status: Option<String> = redis::cmd("HGET")
        .arg(format!("{ns}:webhooks:meta:{id}"))
        .arg("status")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("Pending"));
    let delayed: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{ns}:webhooks:delayed"))
        .arg(&later)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(delayed.is_some(), "a delayed push waits in our delayed set");
    use futures::StreamExt;
    let msg = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("the push was announced")
        .unwrap();
    assert_eq!(msg.get_channel_name(), channel);
}

/// Deleting a namespace (the benchmark's clean-up, and the tests') leaves nothing of it in
/// Redis: neither its keys nor the entries its workers added to apalis' queue registry, a
/// key shared by every namespace (each run used to leave its queues there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_leaves_nothing_of_it() {
    let Some(env) = TestEnv::new(Backend::Fleet).await else { return };
    let url = env.var("REDIS_URL").expect("a fleet environment has Redis").to_owned();
    let ns = env.namespace().to_owned();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let registered = |mut conn: redis::aio::MultiplexedConnection| {
        let prefix = format!("{ns}:");
        async move {
            let all: Vec<String> = redis::cmd("ZRANGE")
                .arg("core:apalis:queues:list")
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap();
            all.into_iter().filter(|q| q.starts_with(&prefix)).collect::<Vec<_>>()
        }
    };

    let app = env.start_app().await;
    let queues = wait_for("the workers' queues registered", Duration::from_secs(10), || {
        let registered = registered(conn.clone());
        async move { Some(registered.await).filter(|q| !q.is_empty()) }
    })
    .await;
    assert!(queues.iter().all(|q| q.ends_with(":workers")), "{queues:?}");
    app.stop().await;

    let deleted = switchyard_shared::queue::delete_namespace(&url, &ns).await.unwrap();
    assert!(deleted > queues.len() as u64, "keys and registry entries: {deleted}");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{ns}:*")).query_async(&mut conn).await.unwrap();
    assert_eq!(keys, Vec::<String>::new());
    assert_eq!(registered(conn.clone()).await, Vec::<String>::new());
}
