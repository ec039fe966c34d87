//! The foundation, in process, on both backends: the pipeline moves, the scheduler keeps
//! its promises (missed ticks once, one leader), probes tell the truth, errors are
//! problem+json, and the queue vacuum spares jobs waiting to retry.

use crate::support;

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use serde_json::Value;
use support::{Backend, TestEnv, proxy::Proxy, wait_for};
use switchyard_shared::{
    CancellationToken,
    queue::{QueueBackend, QueueName},
};

async fn canary_travels_the_pipeline(mut env: TestEnv) {
    env.set("SWITCHYARD_SCHEDULE_CANARY", "* * * * * *");
    let app = env.start_app().await;

    // scheduler → queue → worker: every queue shows a completed canary.
    let queues = wait_for("a completed canary on every queue", Duration::from_secs(20), || async {
        let (status, body) = app.get_json("/api/v1/queues").await;
        assert_eq!(status, 200);
        let done =
            body["queues"].as_array()?.iter().all(|q| q["canary"]["completed_at"].is_string());
        done.then_some(body)
    })
    .await;
    let expected_backend = if env.backend == Backend::Embedded { "sqlite" } else { "redis" };
    assert_eq!(queues["backend"], expected_backend);
    for q in queues["queues"].as_array().unwrap() {
        let canary = &q["canary"];
        assert_eq!(canary["completions"], 1, "{q}");
        assert!(canary["latency_seconds"].as_f64().unwrap() >= 0.0);
        // The job itself is visible and done (the queue acks it just after the handler
        // recorded the canary, so it may still read `running` for a moment).
        let job_id = canary["job_id"].as_str().unwrap();
        let job = wait_for("the canary job to be acked", Duration::from_secs(10), || async {
            let (status, job) = app.get_json(&format!("/api/v1/jobs/{job_id}")).await;
            assert_eq!(status, 200, "{job}");
            (job["status"] == "done").then_some(job)
        })
        .await;
        assert_eq!(job["kind"], "canary.v1");
        assert_eq!(job["queue"], q["name"]);
    }

    // ...and in /metrics.
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for queue in ["webhooks", "pidms", "sikka", "maintenance"] {
        assert!(
            metrics
                .contains(&format!("switchyard_canary_latency_seconds_count{{queue=\"{queue}\"}}")),
            "no canary latency for {queue}"
        );
        assert!(metrics.contains(&format!(
            "switchyard_jobs_completed_total{{queue=\"{queue}\",job=\"canary\",outcome=\"success\"}}"
        )));
    }
    assert!(
        metrics.contains("switchyard_schedule_runs_total{schedule=\"canary\",outcome=\"success\"}")
    );
    assert!(metrics.contains("switchyard_build_info{version="));
    app.stop().await;
}
both_backends!(canary_travels_the_pipeline);

async fn a_canary_sent_through_the_api_completes(env: TestEnv) {
    let app = env.start_app().await;
    let body = app
        .post_json("/api/v1/queues/pidms/canary", &serde_json::json!({"hold_ms": 50}), 202)
        .await;
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    let run = wait_for("the canary to complete", Duration::from_secs(15), || async {
        let (_, run) = app.get_json(&format!("/api/v1/canaries/{run_id}")).await;
        run["completed_at"].is_string().then_some(run)
    })
    .await;
    assert!(run["latency_seconds"].as_f64().unwrap() >= 0.05, "held for 50 ms: {run}");
    assert_eq!(run["completions"], 1);

    // Unknown queue → 404 problem; hold beyond the limit → 400 problem.
    let resp = app
        .http
        .post(app.url("/api/v1/queues/email/canary"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    app.post_json("/api/v1/queues/pidms/canary", &serde_json::json!({"hold_ms": 600_001}), 400)
        .await;
    app.stop().await;
}
both_backends!(a_canary_sent_through_the_api_completes);

async fn errors_are_problem_json(mut env: TestEnv) {
    env.set("SWITCHYARD_HTTP_BODY_LIMIT_BYTES", "1024");
    let app = env.start_app().await;

    let resp = app.http.get(app.url("/api/v1/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 26, "a ULID request id");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert!(body["type"].as_str().unwrap().starts_with("urn:switchyard:problem:"));

    // An incoming request id is kept; a hostile one is replaced.
    let resp =
        app.http.get(app.url("/healthz")).header("x-request-id", "trace-123").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-123");
    let resp =
        app.http.get(app.url("/healthz")).header("x-request-id", "a b\"<c>").send().await.unwrap();
    assert_ne!(resp.headers()["x-request-id"], "a b\"<c>");

    let (status, body) = app.get_json("/api/v1/jobs/01J00000000000000000000000").await;
    assert_eq!((status, body["detail"].as_str()), (404, Some("no such job")));

    // Over the body limit: 413 problem, with Content-Length and chunked alike.
    let big = format!("{{\"hold_ms\": 1, \"pad\": \"{}\"}}", "x".repeat(2048));
    let resp = app
        .http
        .post(app.url("/api/v1/queues/pidms/canary"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.into_bytes().chunks(256).map(|c| Ok(c.to_vec())).collect();
    let stream = futures::stream::iter(chunks);
    // Its own client: the server closes a connection whose body it refused, and a pooled
    // client could pick that connection for the next request before seeing it close.
    support::expect_status(
        support::http_with_key(env.admin_key())
            .post(app.url("/api/v1/queues/pidms/canary"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream)),
        413,
        "POST /api/v1/queues/pidms/canary",
    )
    .await;

    // Malformed JSON: a 400 problem that says what is wrong.
    let body = support::expect_status(
        app.http
            .post(app.url("/api/v1/queues/pidms/canary"))
            .header("content-type", "application/json")
            .body("{\"hold_ms\": "),
        400,
        "POST /api/v1/queues/pidms/canary",
    )
    .await;
    assert!(!body["detail"].as_str().unwrap().is_empty());

    // Retrying a job that is not failed is a conflict.
    let sent: Value = app
        .http
        .post(app.url("/api/v1/queues/maintenance/canary"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = sent["job_id"].as_str().unwrap().to_owned();
    wait_for("the job to finish", Duration::from_secs(15), || async {
        let (_, job) = app.get_json(&format!("/api/v1/jobs/{job_id}")).await;
        (job["status"] == "done").then_some(())
    })
    .await;
    let resp =
        app.http.post(app.url(&format!("/api/v1/jobs/{job_id}/retry"))).send().await.unwrap();
    assert_eq!(resp.status(), 409);

    // The OpenAPI document and Swagger UI are served.
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/queues"]["get"].is_object(), "{spec}");
    let resp = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("swagger"));
    app.stop().await;
}
both_backends!(errors_are_problem_json);

async fn a_missed_tick_runs_once(mut env: TestEnv) {
    env.set("SWITCHYARD_SCHEDULE_QUEUE_VACUUM", "* * * * *");
    let services = env.services().await;
    // The scheduler was down for ten minutes: its last handled tick is ten minutes old.
    let started = Utc::now();
    let ten_minutes_ago = (started - chrono::Duration::minutes(10)).trunc_subsecs(0);
    assert!(services.store.claim_schedule_tick("queue-vacuum", ten_minutes_ago).await.unwrap());

    let scheduler = switchyard_scheduler::Scheduler::new(services.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    let state = wait_for("the catch-up run", Duration::from_secs(15), || async {
        let s = services.store.schedule_state("queue-vacuum").await.unwrap()?;
        (s.runs >= 1).then_some(s)
    })
    .await;
    let checked = Utc::now();
    shutdown.cancel();
    task.await.unwrap();

    // Ten missed ticks, one run — plus one more only if a minute boundary passed meanwhile.
    let boundaries = (checked.timestamp() / 60) - (started.timestamp() / 60);
    assert!(state.runs == 1 || (boundaries >= 1 && state.runs == 2), "runs = {}", state.runs);
    assert_eq!(state.last_tick_at.timestamp() % 60, 0, "the tick is a minute boundary");
    assert!(state.last_tick_at >= (started - chrono::Duration::minutes(1)));
    assert!(state.last_success_at.is_some());
    // Each run enqueues one vacuum job per queue, and no worker runs here.
    let stats = services.queue.stats(QueueName::Maintenance).await.unwrap();
    assert_eq!(stats.pending, 4 * state.runs as u64);
}
both_backends!(a_missed_tick_runs_once);

/// `POST /schedules/{name}/run`: asked for once (409 while pending), run by the leader even
/// with its cron switched off, recorded like any run; its missed ticks are not run with it.
async fn a_schedule_runs_when_asked(env: TestEnv) {
    let app = env.start_api_only().await;
    let path = "/api/v1/schedules/queue-vacuum/run";
    let asked = app.post_json(path, &serde_json::json!(null), 202).await;
    assert_eq!(asked["schedule"], "queue-vacuum");
    app.post_json(path, &serde_json::json!(null), 409).await;
    app.post_json("/api/v1/schedules/no-such/run", &serde_json::json!(null), 404).await;
    let schedules = app.get_expect("/api/v1/schedules", 200).await;
    let vacuum = |list: &Value| {
        list.as_array().unwrap().iter().find(|s| s["name"] == "queue-vacuum").unwrap().clone()
    };
    let pending = vacuum(&schedules);
    assert_eq!((pending["enabled"].as_bool(), pending["runs"].as_i64()), (Some(false), Some(0)));
    assert!(pending["run_requested_at"].is_string());

    let scheduler = switchyard_scheduler::Scheduler::new(app.services.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    let ran = wait_for("the requested run", Duration::from_secs(15), || async {
        let v = vacuum(&app.get_expect("/api/v1/schedules", 200).await);
        (v["runs"] == 1).then_some(v)
    })
    .await;
    assert!(ran["run_requested_at"].is_null() && ran["last_error"].is_null(), "{ran}");
    assert!(ran["last_success_at"].is_string());
    // One vacuum job per queue, once (no worker runs here).
    let stats = app.services.queue.stats(QueueName::Maintenance).await.unwrap();
    assert_eq!(stats.pending, 4);
    // Asked again once it ran: accepted.
    app.post_json(path, &serde_json::json!(null), 202).await;
    shutdown.cancel();
    task.await.unwrap();
    app.stop().await;
}
both_backends!(a_schedule_runs_when_asked);

async fn one_leader_among_two_schedulers(env: TestEnv) {
    let services = env.services().await;
    let a = switchyard_scheduler::Scheduler::new(services.clone()).unwrap();
    let b = switchyard_scheduler::Scheduler::new(services.clone()).unwrap();
    let (flag_a, flag_b) = (a.leader_flag(), b.leader_flag());
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let task_a = tokio::spawn(a.run(stop_a.clone()));
    let task_b = tokio::spawn(b.run(stop_b.clone()));
    let leads = |f: &std::sync::Arc<std::sync::atomic::AtomicBool>| {
        f.load(std::sync::atomic::Ordering::SeqCst)
    };

    wait_for("a leader", Duration::from_secs(10), || async {
        (leads(&flag_a) || leads(&flag_b)).then_some(())
    })
    .await;
    // Watch through two renewal periods (ttl 3 s, renewed every second): never two leaders,
    // and the leader keeps its lease.
    let first_is_a = leads(&flag_a);
    let watch_until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < watch_until {
        assert!(!(leads(&flag_a) && leads(&flag_b)), "two leaders at once");
        assert_eq!(leads(&flag_a), first_is_a, "leadership flapped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The leader stops (and releases): the other takes over.
    let (stop_leader, follower, leader_task, follower_task, stop_follower) = if first_is_a {
        (stop_a, flag_b, task_a, task_b, stop_b)
    } else {
        (stop_b, flag_a, task_b, task_a, stop_a)
    };
    stop_leader.cancel();
    leader_task.await.unwrap();
    wait_for("the follower to take over", Duration::from_secs(10), || async {
        leads(&follower).then_some(())
    })
    .await;
    stop_follower.cancel();
    follower_task.await.unwrap();
}
both_backends!(one_leader_among_two_schedulers);

async fn queue_vacuum_spares_jobs_waiting_to_retry(env: TestEnv) {
    let services = env.services().await;
    let q = QueueName::Pidms;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            services
                .queue
                .push(switchyard_shared::jobs::Job::Canary(switchyard_shared::jobs::CanaryJob {
                    run_id: "x".into(),
                    queue: q,
                    hold_ms: 0,
                }))
                .await
                .unwrap(),
        );
    }
    // Put the four jobs in the states apalis leaves them in: done, dead (killed), dead
    // (out of attempts), and failed-waiting-for-retry — all finished an hour ago.
    let hour_ago = Utc::now().timestamp() - 3600;
    set_states(&services, q, &ids, hour_ago).await;
    let before = services.queue.stats(q).await.unwrap();
    assert_eq!((before.failed, before.dead), (1, 2), "{before:?}");

    let deleted = services.queue.vacuum(q, Duration::from_secs(600)).await.unwrap();
    assert_eq!(deleted, 3);
    assert!(services.queue.find(&ids[0]).await.unwrap().is_none(), "done job trimmed");
    assert!(services.queue.find(&ids[1]).await.unwrap().is_none(), "dead job trimmed");
    let waiting = services.queue.find(&ids[3]).await.unwrap().expect("retrying job kept");
    assert_eq!(waiting.status, "failed");
    let after = services.queue.stats(q).await.unwrap();
    assert_eq!((after.failed, after.dead), (1, 0), "{after:?}");

    // A younger finished job is kept too.
    let young = services
        .queue
        .push(switchyard_shared::jobs::Job::Canary(switchyard_shared::jobs::CanaryJob {
            run_id: "y".into(),
            queue: q,
            hold_ms: 0,
        }))
        .await
        .unwrap();
    set_states(&services, q, std::slice::from_ref(&young), Utc::now().timestamp()).await;
    assert_eq!(services.queue.vacuum(q, Duration::from_secs(600)).await.unwrap(), 0);
    assert!(services.queue.find(&young).await.unwrap().is_some());
}
both_backends!(queue_vacuum_spares_jobs_waiting_to_retry);

/// Writes apalis' own representation of finished states (as its ack code does), since no
/// handler of ours fails on purpose: ids[0] done, [1] killed, [2] failed with no attempts
/// left, [3] failed with attempts left (waiting for a retry).
async fn set_states(
    services: &switchyard_shared::services::Services,
    q: QueueName,
    ids: &[String],
    done_at: i64,
) {
    let states = [("Done", 1), ("Killed", 1), ("Failed", 25), ("Failed", 1)];
    match services.queue.backend() {
        QueueBackend::Sqlite(pool) => {
            for (id, (status, attempts)) in ids.iter().zip(states) {
                sqlx::query("UPDATE Jobs SET status = ?2, attempts = ?3, done_at = ?4, run_at = ?5 WHERE id = ?1")
                    .bind(id)
                    .bind(status)
                    .bind(attempts)
                    .bind(done_at)
                    .bind(done_at + 3600 * 24)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
        QueueBackend::Redis(redis) => {
            let c = redis.storage_config(q);
            let mut conn = redis.connection();
            for (id, (status, attempts)) in ids.iter().zip(states) {
                // apalis-redis parks every new job in the scheduled set until a fetch.
                let _: () = redis::cmd("LREM")
                    .arg(c.active_jobs_list())
                    .arg(0)
                    .arg(id)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let _: () = redis::cmd("ZREM")
                    .arg(c.scheduled_jobs_set())
                    .arg(id)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let _: () = redis::cmd("HSET")
                    .arg(format!("{}:{id}", c.job_meta_hash()))
                    .arg("status")
                    .arg(status)
                    .arg("attempts")
                    .arg(attempts)
                    .arg("done_at")
                    .arg(done_at)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let (cmd, key) = match (status, attempts) {
                    ("Done", _) => ("SADD", c.done_jobs_set()),
                    ("Failed", 1) => ("ZADD", c.scheduled_jobs_set()),
                    _ => ("SADD", c.dead_jobs_set()),
                };
                let mut command = redis::cmd(cmd);
                command.arg(key);
                if cmd == "ZADD" {
                    command.arg(done_at + 3600 * 24);
                }
                let _: () = command.arg(id).query_async(&mut conn).await.unwrap();
            }
        }
    }
}

/// Fleet only: `/readyz` names the dependency that stopped answering, and recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_postgres_and_redis() {
    let Some(mut env) = TestEnv::new(Backend::Fleet).await else { return };
    let pg = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let redis = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let db_url = env.var("DATABASE_URL").unwrap().replace("127.0.0.1:5432", &pg.addr.to_string());
    env.set("DATABASE_URL", db_url);
    env.set("REDIS_URL", format!("redis://{}", redis.addr));
    env.set("SWITCHYARD_REDIS_RESPONSE_TIMEOUT_MS", "500");
    let app = env.start_app().await;
    let ready = |want: u16| {
        let app = &app;
        async move {
            let resp = app.http.get(app.url("/readyz")).send().await.ok()?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.ok()?;
            (status == want).then_some(body)
        }
    };
    wait_for("ready", Duration::from_secs(10), || ready(200)).await;

    redis.cut();
    let body = wait_for("503 for redis", Duration::from_secs(15), || ready(503)).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("queue (redis)") && !detail.contains("store"), "{detail}");
    assert_eq!(body["status"], 503);
    redis.restore();
    wait_for("ready again after redis", Duration::from_secs(20), || ready(200)).await;

    pg.cut();
    let body = wait_for("503 for postgres", Duration::from_secs(15), || ready(503)).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("store (postgres)") && !detail.contains("queue"), "{detail}");
    pg.restore();
    wait_for("ready again after postgres", Duration::from_secs(20), || ready(200)).await;
    app.stop().await;
}

/// `promtool check metrics` accepts a live scrape after some work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_live_metrics() {
    let Some(mut env) = TestEnv::new(Backend::Embedded).await else { return };
    let Some(promtool) = support::promtool() else { return };
    env.set("SWITCHYARD_SCHEDULE_CANARY", "* * * * * *");
    let app = env.start_app().await;
    wait_for("canary metrics", Duration::from_secs(20), || async {
        let text = app.http.get(app.url("/metrics")).send().await.ok()?.text().await.ok()?;
        (text.contains("switchyard_canary_latency_seconds_bucket")
            && text.contains("switchyard_queue_depth")
            && text.contains("switchyard_http_request_duration_seconds_bucket"))
        .then_some(())
    })
    .await;
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    app.stop().await;
    support::run_promtool(&promtool, std::path::Path::new("."), &["check", "metrics"], Some(&text));
}

/// A backlog bigger than what one Lua `unpack()` takes (~8000) drains: immediate and delayed
/// jobs due at the same moment.
async fn a_large_backlog_drains(mut env: TestEnv) {
    env.set("SWITCHYARD_WORKER_BATCH_SIZE", "200");
    let services = env.services().await;
    let q = QueueName::Sikka;
    let job = || {
        switchyard_shared::jobs::Job::Canary(switchyard_shared::jobs::CanaryJob {
            run_id: "no-such-run".into(),
            queue: q,
            hold_ms: 0,
        })
    };
    services.queue.push_many((0..5_000).map(|_| job()).collect()).await.unwrap();
    let delayed = (0..10_000).map(|_| job()).collect::<Vec<_>>();
    services.queue.push_many_after(delayed, Duration::from_millis(500)).await.unwrap();
    let before = services.queue.stats(q).await.unwrap();
    assert_eq!(before.pending + before.scheduled, 15_000, "{before:?}");
    let app = env.start_app().await;
    wait_for("the backlog to drain", Duration::from_secs(120), || async {
        let s = services.queue.stats(q).await.unwrap();
        (s.pending == 0 && s.scheduled == 0 && s.running == 0).then_some(())
    })
    .await;
    let s = services.queue.stats(q).await.unwrap();
    assert_eq!((s.failed, s.dead), (0, 0), "{s:?}");
    app.stop().await;
}
both_backends!(a_large_backlog_drains);

/// Once the process is stopping, a push into the embedded queue gives up
/// (`STOPPING_PUSH_WAIT`) instead of waiting behind whoever holds `jobs.db`: apalis stops
/// polling a worker's fetch at shutdown, and one caught mid-transaction keeps the queue's
/// connection until the in-flight jobs have drained — a job pushing a follow-up then waited
/// out the whole grace period.
#[tokio::test]
async fn a_push_gives_up_once_stopping_behind_a_held_jobs_db() {
    let Some(env) = TestEnv::new(Backend::Embedded).await else { return };
    let services = env.services().await;
    let queue = services.queue.clone();
    let QueueBackend::Sqlite(pool) = queue.backend() else { unreachable!("embedded") };
    let canary = || {
        switchyard_shared::jobs::Job::Canary(switchyard_shared::jobs::CanaryJob {
            run_id: "stopping".into(),
            queue: QueueName::Maintenance,
            hold_ms: 0,
        })
    };
    // The queue's connection in a write transaction that does not end, as a fetch left
    // un-polled holds it.
    let mut held = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("UPDATE Jobs SET status = status WHERE 0").execute(&mut *held).await.unwrap();
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.push(canary()).await }
    });
    queue.stopping();
    // Without the bound this push would wait for a connection (30 s), and try four more times.
    let pushed = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("a push gives up soon after the process starts stopping")
        .unwrap();
    let err = pushed.expect_err("jobs.db is held");
    assert!(err.to_string().contains("stopping"), "{err}");

    // Once the holder lets go, a push while stopping still goes through.
    held.rollback().await.unwrap();
    let id = queue.push(canary()).await.expect("jobs.db is free again");
    assert!(queue.find(&id).await.unwrap().is_some());
}
