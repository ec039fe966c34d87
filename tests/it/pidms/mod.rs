//! PIDKey inventory on both backends, against the PIDKey simulator over HTTP on loopback:
//! checks and syncs field by field, separators, malformed lines, every failure mode with the
//! other batches unaffected, search, product summary, low-inventory edges, CSV export.

mod counters;
mod search;

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestApp, TestEnv, receiver::Receiver, wait_for};
use switchyard_simulators::pidkey::{FIELDS, Failure, PRODUCTS, PidkeySim, answer_for};

const API_KEY: &str = "pk-test-0123456789";

/// A valid-looking key for index `i` whose simulated answer has a product (not null).
fn key(i: usize) -> String {
    (0..)
        .map(|salt| format!("{:0>25}", format!("K{i}X{salt}")).to_uppercase())
        .find(|k| !answer_for(k, None)["prd"].is_null())
        .unwrap()
}

/// A key whose simulated answer has no product (an invalid key), for index `i`.
fn invalid_key(i: usize) -> String {
    (0..)
        .map(|salt| format!("{:0>25}", format!("V{i}Y{salt}")).to_uppercase())
        .find(|k| answer_for(k, None)["prd"].is_null())
        .unwrap()
}

async fn with_sim(mut env: TestEnv) -> (TestEnv, PidkeySim, TestApp) {
    let sim = PidkeySim::new(&[API_KEY]);
    let (addr, _task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sim.routes()).await.unwrap();
    env.set("SWITCHYARD_PIDKEY_BASE_URL", format!("http://{addr}"));
    env.set("PIDKEY_API_KEY", API_KEY);
    env.set("SWITCHYARD_PIDKEY_RATE_PER_SECOND", "200");
    env.set("SWITCHYARD_PIDKEY_RETRY_MAX_SECS", "8");
    env.set("SWITCHYARD_PIDKEY_TIMEOUT_SECS", "1");
    let app = env.start_app().await;
    (env, sim, app)
}

async fn check(app: &TestApp, keys: &str, wait: u64) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url(&format!("/api/v1/pidms/check?wait={wait}")))
        .json(&json!({"keys": keys}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn run_done(app: &TestApp, id: &str) -> Value {
    wait_for(&format!("run {id} to complete"), Duration::from_secs(30), || async {
        let (_, run) = app.get_json(&format!("/api/v1/pidms/syncs/{id}")).await;
        (run["status"] == "completed").then_some(run)
    })
    .await
}

async fn a_check_stores_every_field(env: TestEnv) {
    let (_env, sim, app) = with_sim(env).await;
    let a = key(1);
    let b = key(2);
    let dashed = |k: &str| {
        k.as_bytes()
            .chunks(5)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("-")
    };
    let input = format!(
        "{}\r\n  {}  \n\n{}\nnot-a-key\n{}\n",
        dashed(&a).to_lowercase(),
        b,
        a,
        "ABCDE-FGHIJ"
    );
    let (status, body) = check(&app, &input, 15).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(2)),
        "{body}"
    );
    let lines: Vec<u64> =
        body["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![5, 6]);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let want = answer_for(r["keyname"].as_str().unwrap(), None);
        for field in FIELDS {
            assert_eq!(r[field], want[field], "{field} of {}", r["keyname"]);
        }
        assert!(r["checked_at"].is_string() && r["created_at"].is_string());
    }
    // One request, keys CRLF-joined, deduped, dashless.
    let requests = sim.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].separator, "crlf");
    assert_eq!(requests[0].keys, vec![a.clone(), b]);
    assert!(requests[0].api_key_ok);
    // The key is in the inventory, by either form.
    let (status, stored) = app.get_json(&format!("/api/v1/pidms/keys/{}", dashed(&a))).await;
    assert_eq!(status, 200);
    assert_eq!(stored["prd"], answer_for(&a, None)["prd"]);
    let (status, _) = app.get_json("/api/v1/pidms/keys/ZZZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert_eq!(status, 404);
    // Nothing valid: 422 naming the lines.
    let (status, body) = check(&app, "bad\nworse", 0).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"].as_array().unwrap().len(), 3);
    app.stop().await;
}
both_backends!(a_check_stores_every_field);

async fn a_sync_updates_every_key_and_announces(mut env: TestEnv) {
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "50");
    let (_env, sim, app) = with_sim(env).await;
    let keys: Vec<String> = (0..120).map(key).collect();
    let (status, body) = check(&app, &keys.join("\n"), 20).await;
    assert_eq!(status, 200, "{body}");
    let rx = Receiver::start().await;
    app.post_json(
        "/api/v1/webhooks",
        &json!({"url": rx.url("/ops"), "event_types": ["pidms.sync.completed"]}),
        201,
    )
    .await;

    // Stock moves between syncs.
    sim.set_remaining(&keys[0], 7);
    let accepted = app.post_json("/api/v1/pidms/sync", &json!({}), 202).await;
    assert_eq!(
        (accepted["keys_total"].as_i64(), accepted["batches_total"].as_i64()),
        (Some(120), Some(3))
    );
    let run = run_done(&app, accepted["sync_id"].as_str().unwrap()).await;
    assert_eq!(
        (
            run["batches_done"].as_i64(),
            run["batches_failed"].as_i64(),
            run["keys_updated"].as_i64()
        ),
        (Some(3), Some(0), Some(120))
    );
    assert!(run["finished_at"].is_string());
    // Listed newest first, with its progress.
    let runs = app.get_expect("/api/v1/pidms/syncs?page_size=1", 200).await;
    assert_eq!(runs["items"][0]["id"], accepted["sync_id"]);
    assert_eq!(
        (runs["items"][0]["kind"].as_str(), runs["items"][0]["batches_done"].as_i64()),
        (Some("sync"), Some(3))
    );
    assert!(runs["total"].as_i64().unwrap() >= 1);
    let (_, k0) = app.get_json(&format!("/api/v1/pidms/keys/{}", keys[0])).await;
    assert_eq!(k0["remaining"], 7);
    assert!(sim.requests().iter().all(|r| r.keys.len() <= 50));

    let note = wait_for("pidms.sync.completed", Duration::from_secs(10), || async {
        rx.received("/ops").into_iter().next()
    })
    .await;
    let event: Value = serde_json::from_slice(&note.body).unwrap();
    assert_eq!(event["type"], "pidms.sync.completed");
    assert_eq!(event["data"]["sync_id"], accepted["sync_id"]);
    assert_eq!(event["data"]["keys_updated"], 120);

    // A product filter narrows the sync.
    let product = answer_for(&keys[0], None)["prd"].as_str().unwrap().to_owned();
    let expected = keys.iter().filter(|k| answer_for(k, None)["prd"] == product.as_str()).count();
    let fragment = product[..8].to_lowercase();
    let resp = app
        .http
        .post(app.url("/api/v1/pidms/sync"))
        .json(&json!({"product_filter": fragment}))
        .send()
        .await
        .unwrap();
    let accepted: Value = resp.json().await.unwrap();
    let matching = keys
        .iter()
        .filter(|k| answer_for(k, None)["prd"].as_str().unwrap().to_lowercase().contains(&fragment))
        .count();
    assert!(matching >= expected);
    assert_eq!(accepted["keys_total"].as_u64(), Some(matching as u64));
    run_done(&app, accepted["sync_id"].as_str().unwrap()).await;
    app.stop().await;
}
both_backends!(a_sync_updates_every_key_and_announces);

async fn each_failure_mode_ends_right(mut env: TestEnv) {
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "2");
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "1");
    let (_env, sim, app) = with_sim(env).await;
    let mut n = 100;
    for (failure, permanent) in [
        (Failure::ErrorObject, true),
        (Failure::Unauthorized, true),
        (Failure::RateLimited(Some(1)), false),
        (Failure::RateLimited(None), false),
        (Failure::ServerError(503), false),
        (Failure::Slow(Duration::from_secs(3)), false),
        (Failure::Truncated, false),
    ] {
        let keys: Vec<String> = (n..n + 6).map(key).collect();
        n += 6;
        sim.fail_next([failure.clone()]);
        let before = sim.requests().len();
        let (status, body) = check(&app, &keys.join("\n"), 0).await;
        assert_eq!(status, 202, "{body}");
        let run = run_done(&app, body["job_id"].as_str().unwrap()).await;
        let failed = run["batches_failed"].as_i64().unwrap();
        if permanent {
            assert_eq!((failed, run["batches_done"].as_i64()), (1, Some(2)), "{failure:?}: {run}");
            let error = run["errors"][0]["error"].as_str().unwrap();
            assert!(error.contains("refused"), "{failure:?}: {error}");
            assert!(!error.contains(API_KEY));
            assert_eq!(sim.requests().len() - before, 3, "{failure:?} is not retried");
        } else {
            assert_eq!((failed, run["batches_done"].as_i64()), (0, Some(3)), "{failure:?}: {run}");
            assert_eq!(sim.requests().len() - before, 4, "{failure:?} is retried once");
        }
    }
    // A single object instead of an array is taken as an answer for that key.
    let keys = [key(900)];
    sim.fail_next([Failure::SingleObject]);
    let (status, body) = check(&app, &keys.join("\n"), 15).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["keyname"], keys[0].as_str());
    // Retry-After is honoured: the retry came after at least a second.
    let keys = [key(901), key(902)];
    sim.fail_next([Failure::RateLimited(Some(1))]);
    let before = sim.requests().len();
    let (status, _) = check(&app, &keys.join("\n"), 15).await;
    assert_eq!(status, 200);
    let requests = sim.requests();
    let gap = requests[before + 1].at - requests[before].at;
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    app.stop().await;
}
both_backends!(each_failure_mode_ends_right);

/// Failing runs of every kind, with the API and worker as child processes logging at trace
/// level: the PIDKey API key is in no log line, no error body and no metric.
async fn the_api_key_never_leaks(mut env: TestEnv) {
    const SECRET: &str = "pk-live-SECRETVALUE-7f3a9c";
    let sim = PidkeySim::new(&[SECRET]);
    let (addr, _task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sim.routes()).await.unwrap();
    env.set("SWITCHYARD_PIDKEY_BASE_URL", format!("http://{addr}"));
    env.set("PIDKEY_API_KEY", SECRET);
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "1");
    env.set("SWITCHYARD_PIDKEY_TIMEOUT_SECS", "1");
    env.set("SWITCHYARD_PIDKEY_RETRY_MAX_SECS", "2");
    env.set("SWITCHYARD_LOG", support::TRACE_LOG);
    let (api, base) = env.spawn_api().await;
    let (worker, worker_base) = env.spawn_role("worker", &["--queues", "pidms"]).await;
    let http = support::http_with_key(env.admin_key());

    // One key per batch, one failure per batch; the last two fail on every attempt, so they
    // end with "unavailable" and "could not be read" after the retry budget.
    sim.fail_next([
        Failure::Unauthorized,
        Failure::ErrorObject,
        Failure::Slow(Duration::from_secs(3)),
        Failure::ServerError(502),
        Failure::RateLimited(None),
    ]);
    let keys: Vec<String> = (300..305).map(key).collect();
    let first = support::expect_status(
        http.post(format!("{base}/api/v1/pidms/check")).json(&json!({"keys": keys.join("\n")})),
        202,
        "POST request",
    )
    .await;
    let first_id = first["job_id"].as_str().unwrap().to_owned();
    let run_of = |id: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            wait_for(&format!("run {id}"), Duration::from_secs(60), || async {
                let run: Value =
                    support::get_value(&http, &format!("{base}/api/v1/pidms/syncs/{id}")).await;
                (run["status"] == "completed").then_some(run)
            })
            .await
        }
    };
    let run = run_of(first_id).await;
    assert_eq!(run["batches_failed"], 2, "401 and the error object are refusals: {run}");
    let mut bodies = vec![run.to_string()];

    // Failing on every attempt: "unavailable" and "could not be read" once the budget is spent.
    for (i, (failure, error)) in
        [(Failure::ServerError(503), "unavailable"), (Failure::Truncated, "could not be read")]
            .into_iter()
            .enumerate()
    {
        sim.fail_always(Some(failure));
        let resp = http
            .post(format!("{base}/api/v1/pidms/check"))
            .json(&json!({"keys": key(310 + i)}))
            .send()
            .await
            .unwrap();
        let id = resp.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_owned();
        let run = run_of(id).await;
        assert!(run["errors"][0]["error"].as_str().unwrap().contains(error), "{run}");
        bodies.push(run.to_string());
    }
    sim.fail_always(None);

    // Error bodies at the edge, too: bad input and an unknown key.
    for resp in [
        http.post(format!("{base}/api/v1/pidms/check"))
            .json(&json!({"keys": ""}))
            .send()
            .await
            .unwrap(),
        http.get(format!("{base}/api/v1/pidms/keys/{}", key(399))).send().await.unwrap(),
        http.get(format!("{base}/api/v1/pidms/keys/export.csv")).send().await.unwrap(),
    ] {
        bodies.push(resp.text().await.unwrap());
    }
    let worker_metrics =
        reqwest::get(format!("{worker_base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        worker_metrics.contains("switchyard_upstream_requests_total{"),
        "the worker counts upstream requests"
    );
    bodies.push(worker_metrics);
    bodies.push(reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap());
    let (api_log, worker_log) = (api.log.clone(), worker.log.clone());
    api.signal("TERM");
    worker.signal("TERM");
    assert_eq!(api.wait(Duration::from_secs(20)).await, Some(0));
    assert_eq!(worker.wait(Duration::from_secs(20)).await, Some(0));
    let worker_log = support::read_log(&worker_log);
    assert!(worker_log.contains("PIDKey batch failed"), "the failures were logged");
    assert!(sim.requests().iter().all(|r| r.api_key_ok), "the key did reach PIDKey");
    for (what, text) in [("api log", support::read_log(&api_log)), ("worker log", worker_log)]
        .into_iter()
        .chain(bodies.into_iter().map(|b| ("a body", b)))
    {
        assert!(
            !text.contains(SECRET) && !text.contains("SECRETVALUE"),
            "the API key is in {what}"
        );
    }
}
both_backends!(the_api_key_never_leaks);

/// A worker killed with SIGKILL in the middle of a sync: another worker picks up the
/// orphaned batches and the run still completes, every key counted once.
async fn a_killed_worker_s_sync_still_completes(mut env: TestEnv) {
    let sim = PidkeySim::new(&[API_KEY]);
    let (addr, _task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sim.routes()).await.unwrap();
    env.set("SWITCHYARD_PIDKEY_BASE_URL", format!("http://{addr}"));
    env.set("PIDKEY_API_KEY", API_KEY);
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "5");
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "2");
    let app = env.start_api_only().await;
    let args = ["worker", "--queues", "pidms", "--metrics-listen", "127.0.0.1:0"];
    let worker_a = env.spawn("worker-a", &args);
    let keys: Vec<String> = (0..60).map(key).collect();
    let (status, body) = check(&app, &keys.join("\n"), 30).await;
    assert_eq!(status, 200, "{body}");

    sim.set_latency(Duration::from_millis(400));
    let before = sim.requests().len();
    let resp = app.http.post(app.url("/api/v1/pidms/sync")).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let sync_id = resp.json::<Value>().await.unwrap()["sync_id"].as_str().unwrap().to_owned();
    // Kill A once it has finished some batches and is in the middle of others.
    let progress = wait_for("worker A to be mid-sync", Duration::from_secs(30), || async {
        let (_, run) = app.get_json(&format!("/api/v1/pidms/syncs/{sync_id}")).await;
        let done = run["batches_done"].as_i64().unwrap();
        (done >= 2 && sim.requests().len() - before > done as usize).then_some(done)
    })
    .await;
    worker_a.kill().await;
    assert!(progress < 12);
    let worker_b = env.spawn("worker-b", &args);
    let run = run_done(&app, &sync_id).await;
    assert_eq!(
        (
            run["batches_total"].as_i64(),
            run["batches_done"].as_i64(),
            run["batches_failed"].as_i64(),
            run["keys_updated"].as_i64()
        ),
        (Some(12), Some(12), Some(0), Some(60)),
        "{run}"
    );
    let (_, page) = app.get_json("/api/v1/pidms/keys?page_size=100").await;
    assert_eq!(page["total"], 60);
    drop(worker_b);
    app.stop().await;
}
both_backends!(a_killed_worker_s_sync_still_completes);

/// Runs whose batches never reached the queue (written, then the push lost): the
/// `pidms-batch-sweep` schedule enqueues a batch left pending past its grace, and the run
/// completes; a batch written just now is left to its own job.
async fn a_lost_batch_is_found_by_its_sweep(mut env: TestEnv) {
    use switchyard_shared::pidms::{BatchStatus, NewPidmsBatch, NewPidmsRun, RunKind};
    env.set("SWITCHYARD_SCHEDULE_PIDMS_BATCH_SWEEP", "* * * * * *");
    let (env, _sim, app) = with_sim(env).await;
    let store = env.services().await.store;
    let write = |id: String, at: chrono::DateTime<chrono::Utc>| {
        let store = store.clone();
        async move {
            let batch = NewPidmsBatch {
                id: format!("{id}-b").into(),
                seq: 0,
                keys: [key(1), key(2)].join("\n"),
            };
            let run = NewPidmsRun {
                id: &id,
                kind: RunKind::Check,
                product_filter: None,
                keys_total: 2,
                created_by: None,
                now: at,
            };
            store.insert_pidms_run(&run, &[batch], None).await.unwrap();
            id
        }
    };
    let now = chrono::Utc::now();
    let lost = write(support::unique("lost-"), now - chrono::Duration::minutes(10)).await;
    let fresh = write(support::unique("fresh-"), now).await;

    let run = run_done(&app, &lost).await;
    assert_eq!(run["keys_updated"], 2, "{run}");
    let batches = store.pidms_batches(&fresh).await.unwrap();
    assert_eq!(batches[0].status, BatchStatus::Pending, "a fresh batch is not the sweep's");
    app.stop().await;
}
both_backends!(a_lost_batch_is_found_by_its_sweep);
