//! Sikka on both backends, against the Sikka simulator over HTTP on loopback: practices pulled
//! and sealed, request keys refreshed once however many jobs need it, the fallback to a new
//! key, re-authorization, every writeback operation to completed and to failed with its
//! events, stuck writebacks, an offline agent, a worker killed mid-poll, and no secret in any
//! log or body.

mod tokens;

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestApp, TestEnv, receiver::Receiver, wait_for};
use switchyard_simulators::sikka::{Practice, SikkaFailure, SikkaSim, WritebackOutcome};

const APP_ID: &str = "app-test-id-1";
const APP_KEY: &str = "app-test-key-SECRET-1";

/// A simulator with two practices, served on loopback; the env pointed at it.
async fn sim_for(env: &mut TestEnv) -> (SikkaSim, Vec<Practice>) {
    let sim = SikkaSim::new(APP_ID, APP_KEY);
    let practices = sim.add_demo_practices(2);
    sim.set_writeback_delay(Duration::from_millis(300));
    let (addr, _task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sim.app()).await.unwrap();
    env.set("SWITCHYARD_SIKKA_BASE_URL", format!("http://{addr}/v4"));
    env.set("SIKKA_APP_ID", APP_ID);
    env.set("SIKKA_APP_KEY", APP_KEY);
    env.set("SWITCHYARD_SIKKA_POLL_INITIAL_MS", "100");
    env.set("SWITCHYARD_SIKKA_POLL_MAX_MS", "400");
    env.set("SWITCHYARD_SIKKA_TIMEOUT_SECS", "5");
    env.set("SWITCHYARD_SIKKA_RETRY_MAX_SECS", "4");
    // The tests poll the API quickly; its per-key limit is not what they are about.
    env.set("SWITCHYARD_RATE_LIMIT_PER_MINUTE", "100000");
    (sim, practices)
}

async fn with_sikka(mut env: TestEnv) -> (TestEnv, SikkaSim, Vec<Practice>, TestApp) {
    let (sim, practices) = sim_for(&mut env).await;
    let app = env.start_app().await;
    pull(&app.http, &app.base).await;
    (env, sim, practices, app)
}

/// Pulls the practices and waits until both are stored.
async fn pull(http: &reqwest::Client, base: &str) -> Vec<Value> {
    support::expect_status(
        http.post(format!("{base}/api/v1/sikka/practices/refresh")),
        202,
        "POST request",
    )
    .await;
    wait_for("the practices to be pulled", Duration::from_secs(20), || async {
        let list: Value = support::get_value(http, &format!("{base}/api/v1/sikka/practices")).await;
        let items = list.as_array().cloned().unwrap_or_default();
        (items.len() == 2).then_some(items)
    })
    .await
}

fn appointment() -> Value {
    json!({"patient_id": "1042", "date": "2026-12-01", "time": "09:30", "length": 30,
        "provider_id": "DOC1", "operatory": "OP2", "description": "Cleaning"})
}

/// (operation, target_id, body) for each of the four operations.
fn operations() -> Vec<(&'static str, Option<&'static str>, Value)> {
    vec![
        ("book_appointment", None, appointment()),
        (
            "create_patient",
            None,
            json!({"firstname": "Ada", "lastname": "Lovelace",
            "provider_id": "DOC1", "birthdate": "1985-12-10", "gender": "female",
            "email": "ada@example.com", "cell": "+1 555 010 9999"}),
        ),
        ("update_appointment", Some("88"), json!({"status": "Confirmed"})),
        ("update_patient", Some("1042"), json!({"email": "ada@example.org"})),
    ]
}

async fn create(
    http: &reqwest::Client,
    base: &str,
    office: &str,
    op: &str,
    target: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/api/v1/sikka/writebacks"))
        .json(&json!({"office_id": office, "operation": op, "target_id": target, "body": body}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn ended(http: &reqwest::Client, base: &str, id: &str) -> Value {
    wait_for(&format!("writeback {id} to end"), Duration::from_secs(60), || async {
        let w: Value =
            support::get_value(http, &format!("{base}/api/v1/sikka/writebacks/{id}")).await;
        matches!(w["status"].as_str(), Some("completed" | "failed")).then_some(w)
    })
    .await
}

async fn subscribe(app: &TestApp, rx: &Receiver, types: &[&str]) {
    app.post_json("/api/v1/webhooks", &json!({"url": rx.url("/sikka"), "event_types": types}), 201)
        .await;
}

fn events(rx: &Receiver) -> Vec<Value> {
    rx.received("/sikka").iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

async fn practices_are_pulled_and_sealed(env: TestEnv) {
    let (_env, sim, practices, app) = with_sikka(env).await;
    let (_, list) = app.get_json("/api/v1/sikka/practices").await;
    let mut offices: Vec<&str> =
        list.as_array().unwrap().iter().map(|p| p["office_id"].as_str().unwrap()).collect();
    offices.sort_unstable();
    assert_eq!(offices, ["D1001", "D1002"]);
    assert_eq!(list[0]["token_status"], "none");
    assert_eq!(list[0]["authorized"], true);
    assert!(list[0]["practice_name"].as_str().unwrap().starts_with("Demo Dental"));
    // One pull request with the app's credentials; nothing else yet.
    assert_eq!(sim.count("GET", "/authorized_practices"), 1);
    assert_eq!(sim.grants("request_key"), 0);

    // A writeback obtains a key; then every credential in the store is sealed.
    let (status, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    assert_eq!(status, 202, "{w}");
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");
    let rows = store_query!(app.services.store, (String, String, String, Option<String>, Option<String>),
        "SELECT office_digest, office_id_sealed, secret_key_sealed, request_key_sealed, refresh_key_sealed
         FROM sikka_practices", fetch_all);
    let secrets: Vec<String> = practices
        .iter()
        .flat_map(|p| [p.office_id.clone(), p.secret_key.clone()])
        .chain(sim.issued_secrets())
        .collect();
    assert_eq!(sim.issued_secrets().len(), 2, "one request key and its refresh key");
    let mut with_keys = 0;
    for (digest, office, secret, rk, refresh) in rows {
        assert_eq!(digest.len(), 64);
        let row = format!("{digest} {office} {secret} {rk:?} {refresh:?}");
        for sealed in [Some(office), Some(secret), rk.clone(), refresh].into_iter().flatten() {
            assert!(sealed.starts_with("v1:"), "sealed: {sealed}");
        }
        with_keys += usize::from(rk.is_some());
        for s in &secrets {
            assert!(!row.contains(s.as_str()));
        }
    }
    assert_eq!(with_keys, 1);
    let (_, list) = app.get_json("/api/v1/sikka/practices").await;
    let text = list.to_string();
    for s in sim.issued_secrets() {
        assert!(!text.contains(s.as_str()), "no key in the API");
    }
    for p in &practices {
        assert!(!text.contains(&p.secret_key), "no secret in the API");
    }
    let d1001 = list.as_array().unwrap().iter().find(|p| p["office_id"] == "D1001").unwrap();
    assert_eq!(d1001["token_status"], "active");
    assert!(d1001["token_expires_at"].is_string());
    app.stop().await;
}
both_backends!(practices_are_pulled_and_sealed);

async fn each_operation_completes_and_fails_with_events(env: TestEnv) {
    let (_env, sim, _practices, app) = with_sikka(env).await;
    let rx = Receiver::start().await;
    subscribe(&app, &rx, &["sikka.*"]).await;
    let mut completed = Vec::new();
    for (op, target, body) in operations() {
        let (status, w) = create(&app.http, &app.base, "D1002", op, target, &body).await;
        assert_eq!(status, 202, "{w}");
        assert_eq!(
            (w["status"].as_str(), w["office_id"].as_str()),
            (Some("queued"), Some("D1002"))
        );
        let done = ended(&app.http, &app.base, w["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "completed", "{op}: {done}");
        assert!(done["sikka_id"].as_str().unwrap().parse::<u64>().is_ok(), "{done}");
        assert!(done["check_count"].as_i64().unwrap() >= 1);
        assert!(done["result"].as_str().unwrap().contains("successfully"), "{done}");
        completed.push(done);
    }
    // What reached Sikka: the right route per operation, every value a string.
    let calls: Vec<(String, String)> = sim
        .requests()
        .into_iter()
        .filter(|r| {
            !r.path.starts_with("/request_key")
                && r.path != "/writeback_status"
                && r.path != "/authorized_practices"
        })
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        [
            ("POST".into(), "/appointment".into()),
            ("POST".into(), "/patient".into()),
            ("PATCH".into(), "/appointments/88".into()),
            ("PATCH".into(), "/patient/1042".into()),
        ]
    );
    // Each fails when the practice's system says so.
    for (op, target, body) in operations() {
        sim.push_outcome(WritebackOutcome::Failed(format!("{op}: record locked")));
        let (_, w) = create(&app.http, &app.base, "D1002", op, target, &body).await;
        let done = ended(&app.http, &app.base, w["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["result"], format!("{op}: record locked"));
        assert_eq!(done["error"], format!("{op}: record locked"));
    }
    let got = wait_for("eight events", Duration::from_secs(20), || async {
        let e = events(&rx);
        (e.len() >= 8).then_some(e)
    })
    .await;
    let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "sikka.writeback.completed").count(), 4);
    assert_eq!(kinds.iter().filter(|k| **k == "sikka.writeback.failed").count(), 4);
    for done in &completed {
        let e = got.iter().find(|e| e["data"]["writeback_id"] == done["id"]).unwrap();
        assert_eq!(e["data"]["result"], done["result"]);
        assert_eq!(e["data"]["office_id"], "D1002");
    }
    // The list, by status and office.
    let (_, page) = app.get_json("/api/v1/sikka/writebacks?status=failed&office_id=D1002").await;
    assert_eq!(page["total"], 4);
    let (_, page) = app.get_json("/api/v1/sikka/writebacks?office_id=D1001").await;
    assert_eq!(page["total"], 0);
    let metrics =
        app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchyard_sikka_writebacks_total{outcome=\"completed\"}"));
    assert!(metrics.contains("switchyard_sikka_writeback_completion_seconds_bucket"));
    app.stop().await;
}
both_backends!(each_operation_completes_and_fails_with_events);

async fn bad_requests_are_refused_with_each_field_named(env: TestEnv) {
    let (_env, _sim, _practices, app) = with_sikka(env).await;
    let bad = json!({"patient_id": "1", "date": "01/12/2026", "time": "25:00", "length": "long",
        "provider_id": "DOC1", "colour": "red"});
    let (status, p) = create(&app.http, &app.base, "D1001", "book_appointment", None, &bad).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> =
        p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in ["body.date", "body.time", "body.length", "body.colour", "body.operatory"] {
        assert!(fields.contains(&f), "{f} in {p}");
    }
    let (status, p) =
        create(&app.http, &app.base, "D1001", "update_patient", None, &json!({"email": "x@y.z"}))
            .await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("target_id")));
    let (status, p) =
        create(&app.http, &app.base, "D9999", "book_appointment", None, &appointment()).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("office_id")), "{p}");
    let (status, _) =
        create(&app.http, &app.base, "D1001", "delete_everything", None, &json!({})).await;
    assert_eq!(status, 422);
    let (status, _) = app.get_json("/api/v1/sikka/writebacks?status=lost").await;
    assert_eq!(status, 422);
    let (status, _) = app.get_json("/api/v1/sikka/writebacks/01NOPE").await;
    assert_eq!(status, 404);
    let (_, page) = app.get_json("/api/v1/sikka/writebacks").await;
    assert_eq!(page["total"], 0, "nothing stored for refused requests");
    app.stop().await;
}
both_backends!(bad_requests_are_refused_with_each_field_named);

async fn stuck_offline_and_overloaded(mut env: TestEnv) {
    env.set("SWITCHYARD_SIKKA_STUCK_AFTER_SECS", "5");
    let (_env, sim, practices, app) = with_sikka(env).await;
    // Never completes: failed as stuck after the deadline.
    sim.push_outcome(WritebackOutcome::Never);
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    let stuck = ended(&app.http, &app.base, w["id"].as_str().unwrap()).await;
    assert_eq!(stuck["status"], "failed");
    assert!(stuck["error"].as_str().unwrap().contains("stuck"), "{stuck}");
    assert!(stuck["check_count"].as_i64().unwrap() >= 3, "{stuck}");

    // The practice's agent is offline: 412, retried, submitted once it is back.
    sim.set_agent_offline(&practices[0].office_id, true);
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let waiting = wait_for("a deferred submission", Duration::from_secs(10), || async {
        let (_, w) = app.get_json(&format!("/api/v1/sikka/writebacks/{id}")).await;
        (w["submit_attempts"].as_i64().unwrap() >= 2).then_some(w)
    })
    .await;
    assert_eq!(waiting["status"], "queued");
    assert!(waiting["error"].as_str().unwrap().contains("offline"), "{waiting}");
    assert!(sim.requests().iter().any(|r| r.status == 412));
    sim.set_agent_offline(&practices[0].office_id, false);
    assert_eq!(ended(&app.http, &app.base, &id).await["status"], "completed");

    // Offline past the deadline: failed, saying why.
    sim.set_agent_offline(&practices[0].office_id, true);
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    let gave_up = ended(&app.http, &app.base, w["id"].as_str().unwrap()).await;
    assert_eq!(gave_up["status"], "failed");
    assert!(gave_up["error"].as_str().unwrap().contains("offline"), "{gave_up}");
    sim.set_agent_offline(&practices[0].office_id, false);

    // 503, 504 and 429 on the status checks are retried with backoff.
    sim.fail_next(
        Some("/writeback_status"),
        [SikkaFailure::Overloaded, SikkaFailure::GatewayTimeout, SikkaFailure::RateLimited(1)],
    );
    let before = sim.count("GET", "/writeback_status");
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");
    let checks: Vec<_> =
        sim.requests().into_iter().filter(|r| r.path == "/writeback_status").skip(before).collect();
    let statuses: Vec<u16> = checks.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], [503, 504, 429]);
    // A 503 or 504 is retried on the backoff schedule, not after the rate-limit window's
    // reset (which every answer carries, and which only a 429 is about).
    for pair in checks[..3].windows(2) {
        assert!(pair[1].at - pair[0].at < Duration::from_secs(5), "{statuses:?}");
    }
    assert!(checks[3].at - checks[2].at >= Duration::from_millis(900), "the 429's reset: 1 s");
    let metrics =
        app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchyard_upstream_rate_limited_total{upstream=\"sikka\"}"));
    app.stop().await;
}
both_backends!(stuck_offline_and_overloaded);

/// A worker killed while it waits on `writeback_status`: another worker finishes the
/// writeback once the dead one's jobs are orphaned, and it ends exactly once.
async fn a_worker_killed_mid_poll_still_ends_the_writeback(mut env: TestEnv) {
    let (sim, _practices) = sim_for(&mut env).await;
    let app = env.start_api_only().await;
    let args = ["worker", "--queues", "sikka,webhooks", "--metrics-listen", "127.0.0.1:0"];
    let worker_a = env.spawn("worker-a", &args);
    pull(&app.http, &app.base).await;
    let rx = Receiver::start().await;
    subscribe(&app, &rx, &["sikka.writeback.*"]).await;
    sim.set_status_latency(Duration::from_secs(3));
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    let id = w["id"].as_str().unwrap().to_owned();
    wait_for("a status check in flight", Duration::from_secs(20), || async {
        sim.requests().iter().any(|r| r.path == "/writeback_status" && r.status == 0).then_some(())
    })
    .await;
    worker_a.kill().await;
    sim.set_status_latency(Duration::ZERO);
    let (_, mid) = app.get_json(&format!("/api/v1/sikka/writebacks/{id}")).await;
    assert_eq!(mid["status"], "submitted", "{mid}");
    let worker_b = env.spawn("worker-b", &args);
    let done = ended(&app.http, &app.base, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let got = wait_for("the completion event", Duration::from_secs(20), || async {
        let e = events(&rx);
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(got.len(), 1);
    assert_eq!(sim.count("POST", "/appointment"), 1, "submitted once");
    drop(worker_b);
    app.stop().await;
}
both_backends!(a_worker_killed_mid_poll_still_ends_the_writeback);

/// API and worker as child processes logging at trace level, through pulls, writebacks,
/// refreshes and failures: no app key, practice secret, request key or refresh key in any
/// log line, API body or metric.
async fn no_secret_in_logs_or_bodies(mut env: TestEnv) {
    let (sim, practices) = sim_for(&mut env).await;
    env.set("SWITCHYARD_LOG", support::TRACE_LOG);
    let (api, base) = env.spawn_api().await;
    let (worker, worker_base) = env.spawn_role("worker", &[]).await;
    let http = support::http_with_key(env.admin_key());
    pull(&http, &base).await;
    let mut bodies = Vec::new();
    let run = |op: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let (o, t, b) = operations().swap_remove(op);
            let (_, w) = create(&http, &base, "D1002", o, t, &b).await;
            ended(&http, &base, w["id"].as_str().unwrap()).await.to_string()
        }
    };
    bodies.push(run(0).await);
    sim.expire_keys();
    bodies.push(run(1).await);
    sim.spend_refresh_keys();
    sim.expire_keys();
    bodies.push(run(2).await);
    sim.push_outcome(WritebackOutcome::Failed("no such patient".into()));
    bodies.push(run(3).await);
    sim.set_revoked(&practices[1].office_id, true);
    sim.expire_keys();
    bodies.push(run(0).await);
    assert!(bodies.last().unwrap().contains("failed"));
    for path in ["/api/v1/sikka/practices", "/api/v1/sikka/writebacks?page_size=50"] {
        bodies.push(http.get(format!("{base}{path}")).send().await.unwrap().text().await.unwrap());
    }
    bodies
        .push(reqwest::get(format!("{worker_base}/metrics")).await.unwrap().text().await.unwrap());
    bodies.push(reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap());
    let (api_log, worker_log) = (api.log.clone(), worker.log.clone());
    api.signal("TERM");
    worker.signal("TERM");
    assert_eq!(api.wait(Duration::from_secs(20)).await, Some(0));
    assert_eq!(worker.wait(Duration::from_secs(20)).await, Some(0));
    let worker_log = support::read_log(&worker_log);
    assert!(worker_log.contains("Sikka refused the refresh key"), "the fallback was logged");
    let mut secrets: Vec<String> = sim.issued_secrets();
    assert!(secrets.len() >= 6, "keys were issued and refreshed");
    secrets.push(APP_KEY.to_owned());
    secrets.extend(practices.iter().map(|p| p.secret_key.clone()));
    for (what, text) in [("api log", support::read_log(&api_log)), ("worker log", worker_log)]
        .into_iter()
        .chain(bodies.into_iter().map(|b| ("a body", b)))
    {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a secret is in {what}");
        }
    }
}
both_backends!(no_secret_in_logs_or_bodies);

/// A writeback stored without its job (a push lost to a crash): the sweep submits it.
async fn the_sweep_finds_writebacks_without_a_job(mut env: TestEnv) {
    env.set("SWITCHYARD_SCHEDULE_SIKKA_WRITEBACK_SWEEP", "* * * * * *");
    env.set("SWITCHYARD_SIKKA_SWEEP_GRACE_SECS", "1");
    let (_sim, _practices) = sim_for(&mut env).await;
    let app = env.start_app().await;
    pull(&app.http, &app.base).await;
    let store = &app.services.store;
    let practice = store.list_sikka_practices().await.unwrap().remove(0);
    let now = chrono::Utc::now();
    let body = json!({"firstname": "Lost", "lastname": "Push", "provider_id": "DOC1",
        "birthdate": "1990-01-01", "gender": "unknown"})
    .to_string();
    let row = switchyard_shared::sikka::NewWriteback {
        id: "01LOSTPUSH0000000000000000",
        practice_ref: &practice.id,
        operation: "create_patient",
        target_id: None,
        body: &body,
        deadline_at: now + chrono::Duration::minutes(10),
        created_by: None,
        now,
    };
    store.insert_sikka_writeback(&row, &crate::support::test_audit()).await.unwrap();
    let done = ended(&app.http, &app.base, row.id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["submit_attempts"], 1);
    app.stop().await;
}
both_backends!(the_sweep_finds_writebacks_without_a_job);

/// Sikka says how many calls are left in its window (`X-Rate-Limit-Remaining`, `-Reset`): the
/// client stops at zero until the window turns, so Sikka never has to answer 429.
async fn the_rate_limit_window_is_honoured(mut env: TestEnv) {
    let (sim, _practices) = sim_for(&mut env).await;
    // Three calls per two seconds; a pull, a key and a submission are three already.
    sim.set_rate_limit(3, Duration::from_secs(2));
    let app = env.start_app().await;
    pull(&app.http, &app.base).await;
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");
    let requests = sim.requests();
    assert!(requests.len() >= 4, "{} requests", requests.len());
    assert!(requests.iter().all(|r| r.status != 429), "a call went out with the window spent");
    // No two-second span holds more than three calls.
    for (i, r) in requests.iter().enumerate() {
        let within =
            requests[i..].iter().filter(|o| o.at - r.at < Duration::from_millis(1900)).count();
        assert!(within <= 3, "{within} calls within 2 s of call {i}");
    }
    app.stop().await;
}
both_backends!(the_rate_limit_window_is_honoured);

/// A practice assigned to a tenant: its writebacks' events reach that tenant's endpoints and
/// not the platform's; assigned back (`null`), the platform's again.
async fn a_practice_assigned_to_a_tenant_sends_it_its_events(env: TestEnv) {
    let (_env, _sim, _practices, app) = with_sikka(env).await;
    let (platform_rx, tenant_rx) = (Receiver::start().await, Receiver::start().await);
    subscribe(&app, &platform_rx, &["sikka.*"]).await;
    let tenant = app.post_json("/api/v1/tenants", &json!({"name": "Dental Co"}), 201).await;
    let tenant = tenant["id"].as_str().unwrap();
    let hook =
        json!({"url": tenant_rx.url("/sikka"), "event_types": ["sikka.*"], "tenant_id": tenant});
    app.post_json("/api/v1/webhooks", &hook, 201).await;
    let (_, list) = app.get_json("/api/v1/sikka/practices").await;
    let practice = list.as_array().unwrap().iter().find(|p| p["office_id"] == "D1002").unwrap();
    assert_eq!(practice["tenant_id"], Value::Null);
    let path = format!("/api/v1/sikka/practices/{}", practice["id"].as_str().unwrap());
    app.patch_json(&path, &json!({}), 422).await;
    app.patch_json(&path, &json!({"tenant_id": "tn_nope"}), 422).await;
    app.patch_json("/api/v1/sikka/practices/sp_nope", &json!({"tenant_id": null}), 404).await;
    let assigned = app.patch_json(&path, &json!({"tenant_id": tenant}), 200).await;
    assert_eq!(assigned["tenant_id"], tenant);

    let (_, w) =
        create(&app.http, &app.base, "D1002", "book_appointment", None, &appointment()).await;
    let first = w["id"].as_str().unwrap().to_owned();
    ended(&app.http, &app.base, &first).await;
    // The event goes to whoever owns the practice when it is published, just after the
    // writeback's end is written: unassign only once it is out (under load, unassigning
    // right after the end raced the announcement).
    wait_for("the first writeback's event", Duration::from_secs(20), || async {
        (platform_rx.count() + tenant_rx.count() == 1).then_some(())
    })
    .await;
    app.patch_json(&path, &json!({"tenant_id": null}), 200).await;
    let (_, w) =
        create(&app.http, &app.base, "D1002", "book_appointment", None, &appointment()).await;
    let second = w["id"].as_str().unwrap().to_owned();
    ended(&app.http, &app.base, &second).await;
    let ids = |rx: &Receiver| -> Vec<String> {
        rx.received("/sikka")
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .map(|e| e["data"]["writeback_id"].as_str().unwrap().to_owned())
            .collect()
    };
    wait_for("both events", Duration::from_secs(20), || async {
        (platform_rx.count() + tenant_rx.count() == 2).then_some(())
    })
    .await;
    assert_eq!((ids(&tenant_rx), ids(&platform_rx)), (vec![first], vec![second]));
    app.stop().await;
}
both_backends!(a_practice_assigned_to_a_tenant_sends_it_its_events);
