//! The real binary as child processes, on both backends: a worker killed with SIGKILL
//! mid-job has its job finished by another; SIGTERM lets in-flight jobs finish and exits 0;
//! a bad setting is refused at start with its name.

use crate::support;

use std::time::Duration;

use support::{TestEnv, wait_for};
use switchyard_shared::{canary, queue::QueueName};

const WORKER_ARGS: &[&str] = &["worker", "--queues", "sikka", "--metrics-listen", "127.0.0.1:0"];

async fn a_killed_worker_s_job_is_finished_by_another(env: TestEnv) {
    let services = env.services().await;
    let worker_a = env.spawn("worker-a", WORKER_ARGS);
    let sent = canary::send(&services, QueueName::Sikka, 3_000, None).await.unwrap();
    // Wait until worker A holds the job, then kill it without warning.
    let held = wait_for("worker A to start the job", Duration::from_secs(20), || async {
        let job = services.queue.find(&sent.job_id).await.unwrap()?;
        (job.status == "running").then_some(job)
    })
    .await;
    let worker_a_name = held.worker.clone().expect("the job names its worker");
    worker_a.kill().await;
    assert!(services.store.canary_run(&sent.run_id).await.unwrap().unwrap().completed_at.is_none());

    // Worker B re-enqueues the orphan once A's heartbeat is older than the orphan window
    // (1 s × 2 in tests) and runs it to the end.
    let worker_b = env.spawn("worker-b", WORKER_ARGS);
    let run = wait_for("another worker to finish the job", Duration::from_secs(40), || async {
        let run = services.store.canary_run(&sent.run_id).await.unwrap()?;
        run.completed_at.is_some().then_some(run)
    })
    .await;
    assert_eq!(run.completions, 1, "killed mid-job, so it completed exactly once");
    let job = wait_for("the job to be acknowledged", Duration::from_secs(10), || async {
        let job = services.queue.find(&sent.job_id).await.unwrap()?;
        (job.status == "done").then_some(job)
    })
    .await;
    assert_ne!(job.worker.as_deref(), Some(worker_a_name.as_str()), "finished by worker B");
    // apalis-sqlite counts the killed attempt, apalis-redis does not: attempts are not
    // compared across backends (our handlers keep their own attempt history in the store).
    assert!(job.attempts >= 1, "{job:?}");
    drop(worker_b);
}
both_backends!(a_killed_worker_s_job_is_finished_by_another);

async fn sigterm_lets_in_flight_jobs_finish(env: TestEnv) {
    let services = env.services().await;
    let (worker, metrics) = env.spawn_role("worker", &["--queues", "sikka"]).await;
    let sent = canary::send(&services, QueueName::Sikka, 1_500, None).await.unwrap();
    // In its handler, not only fetched: a job fetched but not yet started when the signal
    // lands is left to orphan recovery (apalis stops reading its stream), not run here.
    wait_for("the worker to start the job", Duration::from_secs(20), || async {
        let job = services.queue.find(&sent.job_id).await.unwrap()?;
        let text = support::http().get(format!("{metrics}/metrics")).send().await.ok()?;
        let started = text.text().await.ok()?.lines().any(|l| {
            l.starts_with("switchyard_worker_inflight{queue=\"sikka\"}") && !l.ends_with(" 0")
        });
        (job.status == "running" && started).then_some(())
    })
    .await;
    worker.signal("TERM");
    let log_path = worker.log.clone();
    let code = worker.wait(Duration::from_secs(20)).await;
    let log = support::read_log(&log_path);
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(log.contains("shutdown: no new jobs"), "{log}");
    let run = services.store.canary_run(&sent.run_id).await.unwrap().unwrap();
    assert!(run.completed_at.is_some(), "the in-flight job finished before exit");
    assert_eq!(run.completions, 1);
    let job = services.queue.find(&sent.job_id).await.unwrap().unwrap();
    assert_eq!(job.status, "done", "acknowledged before exit: {job:?}");
}
both_backends!(sigterm_lets_in_flight_jobs_finish);

#[tokio::test]
async fn a_bad_setting_is_refused_by_name() {
    let Some(mut env) = TestEnv::new(support::Backend::Embedded).await else { return };
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "0");
    let child = env.spawn("bad-config", &["worker"]);
    let log_path = child.log.clone();
    let code = child.wait(Duration::from_secs(10)).await;
    let log = support::read_log(&log_path);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("SWITCHYARD_WORKER_CONCURRENCY: must be greater than zero"), "{log}");

    let mut env = TestEnv::new(support::Backend::Embedded).await.unwrap();
    env.set("DATABASE_URL", "mysql://root:hunter2@localhost/db");
    let child = env.spawn("bad-url", &["api"]);
    let log_path = child.log.clone();
    assert_eq!(child.wait(Duration::from_secs(10)).await, Some(2));
    let log = support::read_log(&log_path);
    assert!(log.contains("DATABASE_URL: must start with"), "{log}");
    assert!(!log.contains("hunter2"), "the URL's password is never printed: {log}");
}

#[tokio::test]
async fn migrate_applies_and_is_idempotent() {
    let Some(env) = TestEnv::new(support::Backend::Embedded).await else { return };
    for _ in 0..2 {
        let child = env.spawn("migrate", &["migrate"]);
        let log_path = child.log.clone();
        assert_eq!(
            child.wait(Duration::from_secs(20)).await,
            Some(0),
            "{}",
            support::read_log(&log_path)
        );
    }
    assert!(env.dir.join("switchyard.db").exists());
}

/// Everything the store holds, as text: the SQLite files' bytes, or every Postgres row.
async fn store_dump(env: &TestEnv) -> String {
    match env.backend {
        support::Backend::Embedded => {
            let mut text = String::new();
            for entry in std::fs::read_dir(&env.dir).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains(".db") {
                    text.push_str(&String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()));
                }
            }
            text
        }
        support::Backend::Fleet => {
            use sqlx::Connection;
            let mut conn =
                sqlx::PgConnection::connect(env.var("DATABASE_URL").unwrap()).await.unwrap();
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let mut text = String::new();
            for (table,) in tables {
                let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT row_to_json(t)::text FROM \"{table}\" t"
                )))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                for (row,) in rows {
                    text.push_str(&row);
                    text.push('\n');
                }
            }
            text
        }
    }
}

async fn raw_keys_never_reach_the_store_or_the_logs(mut env: TestEnv) {
    env.set("SWITCHYARD_LOG", "debug");
    let (api, base) = env.spawn_api().await;
    let admin = support::http_with_key(env.admin_key());
    let created = support::expect_status(
        admin
            .post(format!("{base}/api/v1/api-keys"))
            .json(&serde_json::json!({"name": "secretive", "scopes": ["jobs:write"]})),
        201,
        "POST request",
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    // Use it, mistype it, send it where it is not wanted, revoke it, use it again.
    let client = support::http_with_key(&key);
    assert_eq!(client.get(format!("{base}/api/v1/queues")).send().await.unwrap().status(), 200);
    support::expect_status(
        client
            .post(format!("{base}/api/v1/queues/sikka/canary"))
            .header("idempotency-key", "k1")
            .json(&serde_json::json!({})),
        202,
        "POST request",
    )
    .await;
    let typo = format!("{}x", &key[..key.len() - 1]);
    let resp =
        support::http_with_key(&typo).get(format!("{base}/api/v1/queues")).send().await.unwrap();
    let body = resp.text().await.unwrap();
    assert!(!body.contains(&typo[8..]), "{body}");
    assert_eq!(
        admin.delete(format!("{base}/api/v1/api-keys/{id}")).send().await.unwrap().status(),
        204
    );
    let resp = client.get(format!("{base}/api/v1/queues")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(!resp.text().await.unwrap().contains(&key[8..]));
    api.signal("TERM");
    let log_path = api.log.clone();
    assert_eq!(api.wait(Duration::from_secs(20)).await, Some(0));

    let log = support::read_log(&log_path);
    assert!(log.contains("api key created"), "the debug log was captured: {log}");
    let dump = store_dump(&env).await;
    assert!(dump.contains(&switchyard_shared::access::digest_hex(&key)), "the digest is stored");
    for secret in [key.as_str(), env.admin_key(), typo.as_str()] {
        let body = &secret[8..]; // the random part, without sy_live_/sy_test_
        assert!(!log.contains(body), "a raw key is in the log");
        assert!(!dump.contains(body), "a raw key is in the store");
    }
}
both_backends!(raw_keys_never_reach_the_store_or_the_logs);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_cli_creates_lists_and_revokes() {
    let Some(env) = TestEnv::new(support::Backend::Embedded).await else { return };
    let child = env.spawn(
        "keys-create",
        &["keys", "create", "--name", "ci", "--scope", "jobs:read", "--expires-in", "1d"],
    );
    let log_path = child.log.clone();
    assert_eq!(child.wait(Duration::from_secs(20)).await, Some(0));
    let output = support::read_log(&log_path);
    let keys: Vec<&str> = output.lines().filter(|l| l.starts_with("sy_live_")).collect();
    assert_eq!(keys.len(), 1, "{output}");
    let key = keys[0].trim().to_owned();
    assert_eq!(key.len(), 46, "the key is alone on its line");

    let app = env.start_api_only().await;
    let client = support::http_with_key(&key);
    assert_eq!(client.get(app.url("/api/v1/queues")).send().await.unwrap().status(), 200);
    support::expect_status(
        client.post(app.url("/api/v1/queues/pidms/canary")).json(&serde_json::json!({})),
        403,
        "POST /api/v1/queues/pidms/canary",
    )
    .await;
    let (_, listed) = app.get_json("/api/v1/api-keys").await;
    let row =
        listed["items"].as_array().unwrap().iter().find(|k| k["name"] == "ci").unwrap().clone();
    assert_eq!(row["created_by"], "cli");
    assert!(row["expires_at"].is_string());
    let id = row["id"].as_str().unwrap().to_owned();

    let child = env.spawn("keys-list", &["keys", "list"]);
    let log_path = child.log.clone();
    assert_eq!(child.wait(Duration::from_secs(20)).await, Some(0));
    let list = support::read_log(&log_path);
    assert!(list.contains(&id) && !list.contains(&key[8..]), "{list}");

    let child = env.spawn("keys-revoke", &["keys", "revoke", &id]);
    assert_eq!(child.wait(Duration::from_secs(20)).await, Some(0));
    let (_, view) = app.get_json(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(view["status"], "revoked");

    let child = env.spawn("keys-bad", &["keys", "create", "--name", "x", "--scope", "root"]);
    let log_path = child.log.clone();
    assert_eq!(child.wait(Duration::from_secs(20)).await, Some(1));
    assert!(support::read_log(&log_path).contains("unknown scope"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_creates_an_admin_key_on_first_start_only() {
    let Some(mut env) = TestEnv::new(support::Backend::Embedded).await else { return };
    env.unset("SWITCHYARD_BOOTSTRAP_ADMIN_KEY");
    let port = support::free_port();
    env.set("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");

    let dev = env.spawn("dev-1", &["dev"]);
    support::wait_healthy(&base, &dev).await;
    let output = dev.log_text();
    let printed: Vec<&str> = output.lines().filter(|l| l.starts_with("sy_test_")).collect();
    assert_eq!(printed.len(), 1, "{output}");
    let key = printed[0].trim().to_owned();
    let file = env.dir.join("admin.key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let client = support::http_with_key(&key);
    support::expect_status(client.get(format!("{base}/api/v1/api-keys")), 200, "GET request").await;
    dev.signal("TERM");
    assert_eq!(dev.wait(Duration::from_secs(20)).await, Some(0));

    let dev = env.spawn("dev-2", &["dev"]);
    support::wait_healthy(&base, &dev).await;
    assert!(!dev.log_text().lines().any(|l| l.starts_with("sy_")), "no second key printed");
    assert_eq!(client.get(format!("{base}/api/v1/queues")).send().await.unwrap().status(), 200);
    dev.signal("TERM");
    assert_eq!(dev.wait(Duration::from_secs(20)).await, Some(0));
}

/// A worker killed mid-stream loses nothing. What it held is recovered in two ways: its queue
/// messages by the next worker (orphans, once its heartbeat is stale; an attempt it had
/// claimed waits for the claim's lease), and deliveries it had read back from the store (its
/// endpoint's line full, their messages already gone) by `webhook-retry-sweep` once their
/// lease has run out. Both run here as deployed (a scheduler, a worker on `maintenance`),
/// with short timeouts so that the leases and the sweep's grace take seconds.
async fn no_delivery_is_lost_when_a_worker_is_killed(mut env: TestEnv) {
    env.set("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", "64");
    // Leases: an attempt's 2 + 5 s, a read-back's 5 × 2 + 5 s.
    env.set("SWITCHYARD_WEBHOOK_TIMEOUT_MS", "2000");
    env.set("SWITCHYARD_WEBHOOK_SWEEP_GRACE_SECS", "2");
    env.set("SWITCHYARD_SCHEDULE_WEBHOOK_RETRY_SWEEP", "*/2 * * * * *");
    let rx = support::receiver::Receiver::start().await;
    let app = env.start_api_only().await;
    let resp = app
        .http
        .post(app.url("/api/v1/webhooks"))
        .json(&serde_json::json!({"url": rx.url("/sink"), "event_types": ["load.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let secret =
        resp.json::<serde_json::Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();

    const EVENTS: usize = 2000;
    let worker_a = env
        .spawn("worker-a", &["worker", "--queues", "webhooks", "--metrics-listen", "127.0.0.1:0"]);
    let services = app.services.clone();
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            let published = switchyard_shared::webhooks::events::publish(
                &services,
                &switchyard_shared::tenants::Owner::Platform,
                "load.tick",
                &serde_json::json!({"i": i}),
                None,
                switchyard_shared::webhooks::events::Audience::Subscribers,
            )
            .await
            .unwrap();
            ids.extend(published.delivery_ids);
        }
        ids
    });
    // Kill the worker mid-stream, without warning.
    wait_for("some deliveries", Duration::from_secs(60), || async {
        (rx.count() >= 300).then_some(())
    })
    .await;
    let log_a = worker_a.log.clone();
    worker_a.kill().await;
    let at_kill = rx.count();
    let worker_b = env.spawn(
        "worker-b",
        &["worker", "--queues", "webhooks,maintenance", "--metrics-listen", "127.0.0.1:0"],
    );
    let scheduler = env.spawn("scheduler", &["scheduler", "--metrics-listen", "127.0.0.1:0"]);
    let ids = publisher.await.unwrap();
    assert_eq!(ids.len(), EVENTS);

    let expected: std::collections::HashSet<String> = ids.into_iter().collect();
    let seen = wait_for("every delivery at the receiver", Duration::from_secs(120), || async {
        let seen: std::collections::HashSet<String> =
            rx.all().into_iter().map(|r| r.headers["webhook-id"].clone()).collect();
        (seen.len() >= EVENTS).then_some(seen)
    })
    .await;
    assert_eq!(seen, expected, "every delivery reached the receiver at least once");
    let total = rx.count();
    eprintln!(
        "no-loss run ({:?}): {EVENTS} deliveries, {total} requests received, {} duplicates; \
         {at_kill} received before the SIGKILL",
        env.backend,
        total - EVENTS
    );
    // The store agrees: everything delivered.
    let sql = "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'";
    let undelivered =
        wait_for("the store to record every delivery", Duration::from_secs(30), || async {
            let (n,): (i64,) = store_query!(app.services.store, (i64,), sql, fetch_one);
            (n == 0).then_some(n)
        })
        .await;
    assert_eq!(undelivered, 0);

    // The signing secret is nowhere in clear: not in the store, not in the workers' logs.
    let log_b = worker_b.log.clone();
    drop((worker_b, scheduler));
    let key_part = &secret["whsec_".len()..];
    let dump = store_dump(&env).await;
    assert!(!dump.contains(key_part), "the secret is stored sealed");
    for log in [support::read_log(&log_a), support::read_log(&log_b)] {
        assert!(!log.contains(key_part));
    }
    app.stop().await;
}
both_backends!(no_delivery_is_lost_when_a_worker_is_killed);
