//! Walks `/openapi.json`: every state-changing operation (each non-GET) is made to succeed
//! once, and leaves exactly one audit entry carrying its request id, with the action and
//! target it should name. An operation added to the API without an entry here fails the
//! test, as does an entry here for an operation that no longer exists.

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};
use switchyard_shared::{
    audit::AuditFilter,
    jobs::{CanaryJob, Job},
    queue::{DiscardOutcome, QueueName},
    tenants::Owner,
    webhooks::{NewDelivery, NewEvent},
};
use switchyard_simulators::{pidkey::PidkeySim, sikka::SikkaSim};

use super::support::{self, TestApp, TestEnv, wait_for};

const PIDKEY_API_KEY: &str = "walk-pidkey-key-SECRET";
const SIKKA_APP_ID: &str = "walk-app";
const SIKKA_APP_KEY: &str = "walk-app-key-SECRET";

/// The operations this test makes succeed: (method, path as documented).
const OPERATIONS: &[(&str, &str)] = &[
    ("POST", "/tenants"),
    ("PATCH", "/tenants/{id}"),
    ("DELETE", "/tenants/{id}"),
    ("POST", "/api-keys"),
    ("PATCH", "/api-keys/{id}"),
    ("DELETE", "/api-keys/{id}"),
    ("POST", "/webhooks"),
    ("PATCH", "/webhooks/{id}"),
    ("DELETE", "/webhooks/{id}"),
    ("POST", "/webhooks/{id}/rotate-secret"),
    ("POST", "/webhooks/{id}/test"),
    ("POST", "/webhooks/{id}/recover"),
    ("POST", "/events"),
    ("POST", "/events/batch"),
    ("POST", "/deliveries/{id}/retry"),
    ("POST", "/pidms/check"),
    ("POST", "/pidms/sync"),
    ("POST", "/queues/{queue}/canary"),
    ("POST", "/jobs/{id}/retry"),
    ("POST", "/jobs/retry"),
    ("POST", "/jobs/discard"),
    ("POST", "/schedules/{name}/run"),
    ("POST", "/sikka/practices/refresh"),
    ("PATCH", "/sikka/practices/{id}"),
    ("POST", "/sikka/writebacks"),
];

/// One operation made concrete: where, with what, the status it answers, and the entry it
/// must leave (action, and the target id, known before or read from the answer).
struct Call {
    path: String,
    body: Option<Value>,
    expect: u16,
    action: &'static str,
    target: Target,
}

enum Target {
    Known(String),
    /// A string at this JSON pointer of the answer.
    Answer(&'static str),
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

struct Walk<'a> {
    app: &'a TestApp,
    n: usize,
}

impl Walk<'_> {
    async fn endpoint(&self) -> String {
        let hook = json!({"url": "http://127.0.0.1:9/walk", "event_types": ["walk.*"]});
        id(&self.app.post_json("/api/v1/webhooks", &hook, 201).await)
    }

    /// A delivery written without its job (no worker attempts it meanwhile), then failed as
    /// if its attempts ran out: (endpoint id, delivery id).
    async fn failed_delivery(&self) -> (String, String) {
        let e = self.endpoint().await;
        let d = support::unique("msg_");
        let event = support::unique("evt_");
        let deliveries = [NewDelivery { id: d.clone().into(), endpoint_id: e.clone().into() }];
        let now = chrono::Utc::now();
        let store = &self.app.services.store;
        let row = NewEvent {
            event_id: &event,
            event_type: "walk.fails",
            payload: "{}",
            source: None,
            tenant_id: &Owner::Platform,
            deliveries: &deliveries,
            max_attempts: 1,
            now,
        };
        store.insert_events_with_deliveries(&[row], &[]).await.unwrap();
        store.fail_delivery(&d, "walk", now).await.unwrap();
        (e, d)
    }

    fn canary(&self) -> Job {
        Job::Canary(CanaryJob { run_id: "walk".into(), queue: QueueName::Maintenance, hold_ms: 0 })
    }

    async fn practice(&self) -> Value {
        let (_, list) = self.app.get_json("/api/v1/sikka/practices").await;
        list[0].clone()
    }

    /// Prepares `method path` (creating what it needs first, through the API or the store).
    async fn prepare(&self, method: &str, path: &str) -> Call {
        let app = self.app;
        let call = |path: String, body: Option<Value>, expect, action, target| Call {
            path,
            body,
            expect,
            action,
            target,
        };
        match (method, path) {
            ("POST", "/tenants") => call(
                "/tenants".into(),
                Some(json!({"name": "walk"})),
                201,
                "tenant.created",
                Target::Answer("/id"),
            ),
            ("PATCH", "/tenants/{id}") | ("DELETE", "/tenants/{id}") => {
                let t = id(&app.post_json("/api/v1/tenants", &json!({"name": "w"}), 201).await);
                if method == "PATCH" {
                    let body = json!({"name": "renamed"});
                    call(
                        format!("/tenants/{t}"),
                        Some(body),
                        200,
                        "tenant.updated",
                        Target::Known(t),
                    )
                } else {
                    call(format!("/tenants/{t}"), None, 204, "tenant.deleted", Target::Known(t))
                }
            }
            ("POST", "/api-keys") => call(
                "/api-keys".into(),
                Some(json!({"name": "walk", "scopes": ["usage:read"]})),
                201,
                "api_key.created",
                Target::Answer("/id"),
            ),
            ("PATCH", "/api-keys/{id}") | ("DELETE", "/api-keys/{id}") => {
                let (k, _) = app.create_key(json!({"name": "w", "scopes": ["usage:read"]})).await;
                if method == "PATCH" {
                    let body = json!({"name": "renamed"});
                    call(
                        format!("/api-keys/{k}"),
                        Some(body),
                        200,
                        "api_key.updated",
                        Target::Known(k),
                    )
                } else {
                    call(format!("/api-keys/{k}"), None, 204, "api_key.deleted", Target::Known(k))
                }
            }
            ("POST", "/webhooks") => call(
                "/webhooks".into(),
                Some(json!({"url": "http://127.0.0.1:9/walk", "event_types": ["walk.*"]})),
                201,
                "webhook.endpoint.created",
                Target::Answer("/id"),
            ),
            ("PATCH", "/webhooks/{id}") => {
                let e = self.endpoint().await;
                let body = json!({"description": "walked"});
                call(
                    format!("/webhooks/{e}"),
                    Some(body),
                    200,
                    "webhook.endpoint.updated",
                    Target::Known(e),
                )
            }
            ("DELETE", "/webhooks/{id}") => {
                let e = self.endpoint().await;
                call(
                    format!("/webhooks/{e}"),
                    None,
                    204,
                    "webhook.endpoint.deleted",
                    Target::Known(e),
                )
            }
            ("POST", "/webhooks/{id}/rotate-secret") => {
                let e = self.endpoint().await;
                let path = format!("/webhooks/{e}/rotate-secret");
                call(path, None, 200, "webhook.endpoint.secret_rotated", Target::Known(e))
            }
            ("POST", "/webhooks/{id}/test") => {
                let e = self.endpoint().await;
                let path = format!("/webhooks/{e}/test");
                call(path, None, 202, "webhook.endpoint.tested", Target::Known(e))
            }
            ("POST", "/webhooks/{id}/recover") => {
                let (e, _) = self.failed_delivery().await;
                let body = json!({"since": "2020-01-01T00:00:00Z"});
                let path = format!("/webhooks/{e}/recover");
                call(path, Some(body), 202, "webhook.endpoint.recovered", Target::Known(e))
            }
            ("POST", "/events") => call(
                "/events".into(),
                Some(json!({"type": "walk.one", "data": {"n": 1}})),
                202,
                "event.published",
                Target::Answer("/id"),
            ),
            ("POST", "/events/batch") => call(
                "/events/batch".into(),
                Some(json!({"events": [{"type": "walk.batch", "data": {}}]})),
                202,
                "event.published",
                Target::Answer("/events/0/id"),
            ),
            ("POST", "/deliveries/{id}/retry") => {
                let (_, d) = self.failed_delivery().await;
                let path = format!("/deliveries/{d}/retry");
                call(path, None, 202, "webhook.delivery.retried", Target::Known(d))
            }
            ("POST", "/pidms/check") => call(
                "/pidms/check".into(),
                Some(json!({"keys": "ABCDE-FGHIJ-KLMNO-PQRST-UVWX1"})),
                202,
                "pidms.check.started",
                Target::Answer("/job_id"),
            ),
            ("POST", "/pidms/sync") => call(
                "/pidms/sync".into(),
                Some(json!({})),
                202,
                "pidms.sync.started",
                Target::Answer("/sync_id"),
            ),
            ("POST", "/queues/{queue}/canary") => call(
                "/queues/maintenance/canary".into(),
                Some(json!({})),
                202,
                "queue.canary_sent",
                Target::Answer("/run_id"),
            ),
            ("POST", "/jobs/{id}/retry") => {
                // A job waiting an hour, discarded: dead, so it can be retried.
                let queue = &app.services.queue;
                let j = queue.push_after(self.canary(), Duration::from_secs(3600)).await.unwrap();
                assert_eq!(queue.discard(&j).await.unwrap(), DiscardOutcome::Discarded);
                call(format!("/jobs/{j}/retry"), None, 202, "job.retried", Target::Known(j))
            }
            ("POST", "/jobs/retry") | ("POST", "/jobs/discard") => {
                // A job waiting an hour: discarded by state, or discarded then retried.
                let queue = &app.services.queue;
                let j = queue.push_after(self.canary(), Duration::from_secs(3600)).await.unwrap();
                let (state, action) = if path == "/jobs/retry" {
                    assert_eq!(queue.discard(&j).await.unwrap(), DiscardOutcome::Discarded);
                    ("dead", "jobs.retried")
                } else {
                    ("scheduled", "jobs.discarded")
                };
                let body = json!({"queue": "maintenance", "state": state});
                call(path.into(), Some(body), 200, action, Target::Known("maintenance".into()))
            }
            ("POST", "/schedules/{name}/run") => call(
                "/schedules/queue-vacuum/run".into(),
                None,
                202,
                "schedule.run_requested",
                Target::Known("queue-vacuum".into()),
            ),
            ("POST", "/sikka/practices/refresh") => call(
                "/sikka/practices/refresh".into(),
                None,
                202,
                "sikka.practices.refresh_requested",
                Target::Answer("/job_id"),
            ),
            ("PATCH", "/sikka/practices/{id}") => {
                let p = id(&self.practice().await);
                let body = json!({"tenant_id": null});
                call(
                    format!("/sikka/practices/{p}"),
                    Some(body),
                    200,
                    "sikka.practice.updated",
                    Target::Known(p),
                )
            }
            ("POST", "/sikka/writebacks") => {
                let office = self.practice().await["office_id"].as_str().unwrap().to_owned();
                let body = json!({"office_id": office, "operation": "book_appointment",
                    "body": {"patient_id": "1042", "date": "2026-12-01", "time": "09:30",
                        "length": 30, "provider_id": "DOC1", "operatory": "OP2"}});
                call(
                    "/sikka/writebacks".into(),
                    Some(body),
                    202,
                    "sikka.writeback.created",
                    Target::Answer("/id"),
                )
            }
            _ => panic!(
                "{method} {path} changes state but this test does not know it: add it to \
                 OPERATIONS with the audit entry it must leave"
            ),
        }
    }

    /// Runs `call` with its own request id; the one entry with that id.
    async fn run(&mut self, method: &str, call: &Call) -> (Value, Vec<Value>) {
        self.n += 1;
        let request_id = format!("walk-{}", self.n);
        let method: reqwest::Method = method.parse().unwrap();
        let mut request = self
            .app
            .http
            .request(method.clone(), self.app.url(&format!("/api/v1{}", call.path)))
            .header("x-request-id", &request_id);
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let what = format!("{method} {}", call.path);
        let answer = support::expect_status(request, call.expect, &what).await;
        // The entry is in the change's transaction (or, for queue changes, written before
        // the answer): it is there now. Others with the action are filtered out by id.
        let url = format!("/api/v1/audit-log?limit=500&action={}", call.action);
        let page = self.app.get_expect(&url, 200).await;
        let entries: Vec<Value> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["request_id"] == request_id.as_str())
            .cloned()
            .collect();
        (answer, entries)
    }
}

async fn every_operation_leaves_exactly_one_entry(mut env: TestEnv) {
    let pidkey = PidkeySim::new(&[PIDKEY_API_KEY]);
    let (addr, _pidkey_task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), pidkey.routes())
            .await
            .unwrap();
    env.set("SWITCHYARD_PIDKEY_BASE_URL", format!("http://{addr}"));
    env.set("PIDKEY_API_KEY", PIDKEY_API_KEY);
    let sikka = SikkaSim::new(SIKKA_APP_ID, SIKKA_APP_KEY);
    sikka.add_demo_practices(1);
    let (addr, _sikka_task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sikka.app()).await.unwrap();
    env.set("SWITCHYARD_SIKKA_BASE_URL", format!("http://{addr}/v4"));
    env.set("SIKKA_APP_ID", SIKKA_APP_ID);
    env.set("SIKKA_APP_KEY", SIKKA_APP_KEY);
    env.set("SWITCHYARD_RATE_LIMIT_PER_MINUTE", "100000");
    let app = env.start_app().await;
    // A practice to assign and write to.
    app.post_json("/api/v1/sikka/practices/refresh", &json!(null), 202).await;
    wait_for("the practice to be pulled", Duration::from_secs(20), || async {
        let (_, list) = app.get_json("/api/v1/sikka/practices").await;
        (list.as_array().is_some_and(|l| !l.is_empty())).then_some(())
    })
    .await;

    let (_, spec) = app.get_json("/openapi.json").await;
    let mut documented = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if method != "get" {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let known: BTreeSet<(String, String)> =
        OPERATIONS.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    let stale: Vec<_> = known.difference(&documented).collect();
    assert!(stale.is_empty(), "operations here but not in the document: {stale:?}");

    let mut walk = Walk { app: &app, n: 0 };
    for (method, path) in &documented {
        let call = walk.prepare(method, path).await;
        let (answer, entries) = walk.run(method, &call).await;
        assert_eq!(entries.len(), 1, "{method} {path}: one entry, got {entries:#?}");
        let entry = &entries[0];
        let target = match &call.target {
            Target::Known(t) => t.clone(),
            Target::Answer(pointer) => answer
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{method} {path}: no {pointer} in {answer}"))
                .to_owned(),
        };
        assert_eq!(entry["action"], call.action, "{method} {path}: {entry}");
        assert_eq!(entry["target_id"], target.as_str(), "{method} {path}: {entry}");
        assert_eq!(entry["outcome"], "success", "{method} {path}");
        assert!(entry["actor_key_id"].is_string(), "{method} {path}: an actor");
        assert_eq!(entry["client_addr"], "127.0.0.1", "{method} {path}");
    }
    assert_eq!(walk.n, OPERATIONS.len(), "every operation was walked");

    // Nothing secret in any of it.
    let stored = app.services.store.audit_entries(&AuditFilter::default(), 10_000).await.unwrap();
    let dump = format!("{stored:?}");
    for secret in [PIDKEY_API_KEY, SIKKA_APP_KEY, env.admin_key(), "whsec_"] {
        assert!(!dump.contains(secret), "a secret is in the audit log");
    }
    app.stop().await;
}
both_backends!(every_operation_leaves_exactly_one_entry);
