//! API access on both backends: 401/403/429 with their headers and problem bodies, revoked
//! and expired keys, offline checksum rejection, scopes on every route, rate limits (across
//! two API processes in a fleet), usage aggregation, idempotent replays (also concurrent).

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Backend, TestApp, TestEnv, http, http_with_key, proxy::Proxy, wait_for};

async fn problem(resp: reqwest::Response) -> (u16, Value, reqwest::header::HeaderMap) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json", "status {status}");
    (status, resp.json().await.unwrap(), headers)
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

async fn keys_are_required_and_checked(env: TestEnv) {
    let app = env.start_app().await;
    let url = app.url("/api/v1/queues");

    // Missing.
    let (status, body, headers) = problem(app.anonymous.get(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().starts_with("missing API key"), "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");

    // A one-character typo is refused by its checksum, before any store lookup.
    let before =
        metric(&scrape(&app).await, "switchyard_auth_failures_total{reason=\"malformed\"}");
    let mut typo = env.admin_key().to_owned();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    let (status, body, _) = problem(http_with_key(&typo).get(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("checksum"), "{detail}");
    assert!(!detail.contains(&typo), "the key is never echoed");
    let after = metric(&scrape(&app).await, "switchyard_auth_failures_total{reason=\"malformed\"}");
    assert_eq!(after, before + 1.0);

    // Well-formed but unknown; X-API-Key works as well as Bearer.
    let stranger =
        switchyard_shared::access::RawKey::generate(switchyard_shared::access::Environment::Live);
    let resp = app.anonymous.get(&url).header("x-api-key", stranger.expose()).send().await.unwrap();
    let (status, body, _) = problem(resp).await;
    assert_eq!((status, body["detail"].as_str()), (401, Some("unknown API key")));
    support::expect_status(
        app.anonymous.get(&url).header("x-api-key", env.admin_key()),
        200,
        "GET request",
    )
    .await;

    // Revoked: effective at once in this process.
    let (id, key) = app.create_key(json!({"name": "short-lived", "scopes": ["jobs:read"]})).await;
    let client = http_with_key(&key);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    app.delete_expect(&format!("/api/v1/api-keys/{id}"), 204).await;
    let (status, body, _) = problem(client.get(&url).send().await.unwrap()).await;
    assert_eq!((status, body["detail"].as_str()), (401, Some("this API key has been revoked")));
    let (_, view) = app.get_json(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(view["status"], "revoked");
    assert!(view.get("key").is_none());
    // A deleted key cannot come back.
    app.patch_json(&format!("/api/v1/api-keys/{id}"), &json!({"active": true}), 409).await;

    // Expired.
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (_, key) = app
        .create_key(json!({"name": "expiring", "scopes": ["jobs:read"], "expires_at": expires}))
        .await;
    let client = http_with_key(&key);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let body = wait_for("the key to expire", Duration::from_secs(10), || async {
        let resp = client.get(&url).send().await.ok()?;
        (resp.status() == 401).then_some(resp)
    })
    .await;
    let (_, body, _) = problem(body).await;
    assert_eq!(body["detail"], "this API key has expired");
    app.stop().await;
}
both_backends!(keys_are_required_and_checked);

async fn scopes_are_enforced_on_every_route(mut env: TestEnv) {
    // One anonymous request per route: more than the default failed-auth budget of an address.
    env.set("SWITCHYARD_AUTH_FAILURE_LIMIT_PER_MINUTE", "10000");
    // One refused request per route from one key: more than the suspension threshold.
    env.set("SWITCHYARD_KEY_SUSPEND_AFTER_REFUSALS", "0");
    let app = env.start_app().await;
    let (_, usage_only) = app.create_key(json!({"name": "reader", "scopes": ["usage:read"]})).await;
    let client = http_with_key(&usage_only);
    let (_, spec) = app.get_json("/openapi.json").await;
    let mut checked = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let url = app.url(&format!("/api/v1{}", path.replace(['{', '}'], "")));
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            // Without a key: 401 everywhere.
            let resp =
                app.anonymous.request(method.clone(), &url).json(&json!({})).send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} without a key");
            // Every operation documents its security schemes.
            assert!(op["security"].is_array(), "{method} {path} documents its security");
            let resp = client.request(method.clone(), &url).json(&json!({})).send().await.unwrap();
            if path == "/usage" || path.starts_with("/usage/") || path == "/whoami" {
                assert_eq!(resp.status(), 200, "{method} {path}");
            } else {
                let (status, body, headers) = problem(resp).await;
                assert_eq!(status, 403, "{method} {path}: {body}");
                let scope = format!(
                    "{} {}",
                    op["summary"].as_str().unwrap_or_default(),
                    op["description"].as_str().unwrap_or_default()
                );
                let detail = body["detail"].as_str().unwrap();
                assert!(detail.starts_with("this API key lacks the scope `"), "{detail}");
                let named = detail.split('`').nth(1).unwrap();
                assert!(
                    scope.contains(&format!("`{named}`")),
                    "{method} {path} documents {named}: {scope}"
                );
                assert!(
                    headers.contains_key("x-ratelimit-limit"),
                    "authenticated answers carry rate headers"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} operations checked");
    let (_, me) = app.get_json("/api/v1/whoami").await;
    assert_eq!(me["scopes"], json!(["admin"]));

    // Scopes: write implies read; unknown scopes and escalation are refused with 422.
    let (_, writer) = app.create_key(json!({"name": "jobs", "scopes": ["jobs:write"]})).await;
    let writer = http_with_key(&writer);
    assert_eq!(writer.get(app.url("/api/v1/queues")).send().await.unwrap().status(), 200);
    let resp = app
        .http
        .post(app.url("/api/v1/api-keys"))
        .json(&json!({"name": "x", "scopes": ["jobs:read", "jobs:delete"]}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = problem(resp).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "scopes[1]");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("jobs:delete"));
    let (_, manager) = app.create_key(json!({"name": "mgr", "scopes": ["keys:manage"]})).await;
    let resp = http_with_key(&manager)
        .post(app.url("/api/v1/api-keys"))
        .json(&json!({"name": "escalate", "scopes": ["admin"]}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = problem(resp).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("does not hold it"));
    let resp = app
        .http
        .post(app.url("/api/v1/api-keys"))
        .json(&json!({"name": "", "scopes": [], "environment": "prod", "rate_limit_per_minute": 0}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = problem(resp).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in ["name", "scopes", "environment", "rate_limit_per_minute"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    app.stop().await;
}
both_backends!(scopes_are_enforced_on_every_route);

async fn rate_limits_are_smooth_and_announced(mut env: TestEnv) {
    env.set("SWITCHYARD_AUTH_FAILURE_LIMIT_PER_MINUTE", "3");
    let app = env.start_app().await;
    let (_, key) = app
        .create_key(json!({"name": "limited", "scopes": ["jobs:read"], "rate_limit_per_minute": 5}))
        .await;
    let client = http_with_key(&key);
    let url = app.url("/api/v1/queues");
    for expected_remaining in (0..5).rev() {
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["x-ratelimit-limit"], "5");
        assert_eq!(h["x-ratelimit-remaining"], expected_remaining.to_string().as_str());
        let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!(reset >= chrono::Utc::now().timestamp() as u64);
    }
    let (status, body, headers) = problem(client.get(&url).send().await.unwrap()).await;
    assert_eq!(status, 429);
    assert_eq!(body["type"], "urn:switchyard:problem:rate-limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "one request every 12 s: retry after {retry}");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    // Other keys are not affected.
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 200);

    // Repeated authentication failures from one address are throttled too.
    let bad = http();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            bad.get(&url)
                .header("x-api-key", "sy_live_nope")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
    let text = scrape(&app).await;
    assert!(metric(&text, "switchyard_rate_limited_total{kind=\"key\"}") >= 1.0);
    assert!(metric(&text, "switchyard_rate_limited_total{kind=\"auth_failures\"}") >= 2.0);
    app.stop().await;
}
both_backends!(rate_limits_are_smooth_and_announced);

/// Fleet only: two API processes sharing Redis hold one limit together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_two_api_processes() {
    let Some(env) = TestEnv::new(Backend::Fleet).await else { return };
    let a = env.start_api_only().await;
    let b = env.start_api_only().await;
    let (_, key) = a
        .create_key(json!({"name": "shared", "scopes": ["jobs:read"], "rate_limit_per_minute": 6}))
        .await;
    let client = http_with_key(&key);
    let mut allowed = 0;
    for i in 0..12 {
        let app = if i % 2 == 0 { &a } else { &b };
        if client.get(app.url("/api/v1/queues")).send().await.unwrap().status() == 200 {
            allowed += 1;
        }
    }
    // One request every 10 s beyond the burst of 6: the loop takes well under that.
    assert_eq!(allowed, 6);

    // A key revoked through one process stops working in the other at once (pub/sub),
    // even though the other has it cached.
    let (id, key) = a.create_key(json!({"name": "revoke-me", "scopes": ["jobs:read"]})).await;
    let client = http_with_key(&key);
    assert_eq!(client.get(b.url("/api/v1/queues")).send().await.unwrap().status(), 200);
    assert_eq!(
        a.http.delete(a.url(&format!("/api/v1/api-keys/{id}"))).send().await.unwrap().status(),
        204
    );
    wait_for("process B to drop the revoked key", Duration::from_secs(3), || async {
        (client.get(b.url("/api/v1/queues")).send().await.ok()?.status() == 401).then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// Fleet only: with the store unreachable, a mistyped key is still refused offline (401),
/// while a well-formed key gets 503 — not a misleading 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checksum_needs_no_store() {
    let Some(mut env) = TestEnv::new(Backend::Fleet).await else { return };
    let pg = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let db_url = env.var("DATABASE_URL").unwrap().replace("127.0.0.1:5432", &pg.addr.to_string());
    env.set("DATABASE_URL", db_url);
    let app = env.start_api_only().await;
    let url = app.url("/api/v1/queues");
    pg.cut();
    let mut typo = env.admin_key().to_owned();
    typo.replace_range(10..11, if &typo[10..11] == "x" { "y" } else { "x" });
    support::expect_status(http_with_key(&typo).get(&url), 401, "GET request").await;
    let other =
        switchyard_shared::access::RawKey::generate(switchyard_shared::access::Environment::Test);
    support::expect_status(http_with_key(other.expose()).get(&url), 503, "GET request").await;
    pg.restore();
    app.stop().await;
}

async fn usage_is_aggregated_per_key(env: TestEnv) {
    let app = env.start_app().await;
    let (id, key) = app.create_key(json!({"name": "counted", "scopes": ["jobs:read"]})).await;
    let client = http_with_key(&key).clone();
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    for _ in 0..7 {
        assert_eq!(client.get(app.url("/api/v1/queues")).send().await.unwrap().status(), 200);
    }
    for _ in 0..3 {
        support::expect_status(
            client.get(app.url("/api/v1/jobs/01J00000000000000000000000")),
            404,
            "GET /api/v1/jobs/01J00000000000000000000000",
        )
        .await;
    }
    support::expect_status(
        client.post(app.url("/api/v1/queues/pidms/canary")).json(&json!({})),
        403,
        "POST /api/v1/queues/pidms/canary",
    )
    .await;

    let url = format!("/api/v1/usage?key_id={id}&since={}", urlencode(&since.to_rfc3339()));
    let report = wait_for("usage records", Duration::from_secs(15), || async {
        let (status, body) = app.get_json(&url).await;
        assert_eq!(status, 200, "{body}");
        (body["keys"][0]["requests"] == 11).then_some(body)
    })
    .await;
    let k = &report["keys"][0];
    assert_eq!(report["keys"].as_array().unwrap().len(), 1);
    assert_eq!(k["key_id"], id.as_str());
    assert_eq!(k["name"], "counted");
    assert_eq!(k["by_status_class"], json!({"2xx": 7, "3xx": 0, "4xx": 4, "5xx": 0}));
    let (p50, p95, p99) = (
        k["latency_ms"]["p50"].as_f64().unwrap(),
        k["latency_ms"]["p95"].as_f64().unwrap(),
        k["latency_ms"]["p99"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{p50} {p95} {p99}");
    assert!(k["last_used_at"].is_string());

    // The percentiles are the nearest-rank values of the recorded latencies.
    let recorded = recorded_latencies(&app, &id).await;
    assert_eq!(recorded.len(), 11);
    let rank = |q: f64| recorded[((q * 11.0).ceil() as usize).clamp(1, 11) - 1];
    // (JSON carries the floats with at most one unit of rounding in the last place.)
    for (got, want) in [(p50, rank(0.5)), (p95, rank(0.95)), (p99, rank(0.99))] {
        assert!((got - want).abs() <= want * 1e-12, "{got} vs {want}");
    }

    // Route templates, not raw paths.
    let routes = recorded_routes(&app, &id).await;
    assert!(routes.contains(&"/api/v1/jobs/{id}".to_owned()), "{routes:?}");
    assert!(!routes.iter().any(|r| r.contains("01J0000")), "{routes:?}");

    // The key's own counters arrive in a batch within a few seconds.
    let view = wait_for("usage counters on the key", Duration::from_secs(15), || async {
        let (_, v) = app.get_json(&format!("/api/v1/api-keys/{id}")).await;
        (v["usage_count"] == 11).then_some(v)
    })
    .await;
    assert!(view["last_used_at"].is_string());

    // A bad period is a 422 naming the field.
    let (status, body) =
        app.get_json("/api/v1/usage?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z").await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (422, Some("since")));
    app.stop().await;
}
both_backends!(usage_is_aggregated_per_key);

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn recorded_latencies(app: &TestApp, key_id: &str) -> Vec<f64> {
    let sql = "SELECT latency_ms FROM api_usage WHERE key_id = $1 ORDER BY latency_ms";
    let rows: Vec<(f64,)> = store_query!(app.services.store, (f64,), sql, fetch_all, key_id);
    rows.into_iter().map(|(x,)| x).collect()
}

async fn recorded_routes(app: &TestApp, key_id: &str) -> Vec<String> {
    let sql = "SELECT DISTINCT route FROM api_usage WHERE key_id = $1";
    let rows: Vec<(String,)> = store_query!(app.services.store, (String,), sql, fetch_all, key_id);
    rows.into_iter().map(|(x,)| x).collect()
}

async fn canary_rows(app: &TestApp) -> i64 {
    let sql = "SELECT COUNT(*) FROM canary_runs";
    store_query!(app.services.store, (i64,), sql, fetch_one).0
}

async fn idempotent_posts_run_once(env: TestEnv) {
    let app = env.start_app().await;
    let url = app.url("/api/v1/queues/maintenance/canary");
    let send = |key: &'static str, body: Value| {
        let req = app.http.post(&url).header("idempotency-key", key).json(&body);
        async move { req.send().await.unwrap() }
    };
    let first = send("order-1", json!({"hold_ms": 1})).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = send("order-1", json!({"hold_ms": 1})).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json; charset=utf-8");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "the stored response, not a new run");
    assert_eq!(canary_rows(&app).await, 1, "enqueued once");

    // Same key, different body: 422 naming the conflict.
    let (status, body, _) = problem(send("order-1", json!({"hold_ms": 2})).await).await;
    assert_eq!(status, 422);
    assert_eq!(body["type"], "urn:switchyard:problem:idempotency-key-reused");

    // Keys are per API key: another key may use the same idempotency key.
    let (_, other) = app.create_key(json!({"name": "other", "scopes": ["jobs:write"]})).await;
    let resp = http_with_key(&other)
        .post(&url)
        .header("idempotency-key", "order-1")
        .json(&json!({"hold_ms": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get("idempotent-replayed").is_none());
    assert_eq!(canary_rows(&app).await, 2);

    // Concurrent repeats: exactly one executes; the rest replay it or are told it is running.
    let attempts = (0..10).map(|_| send("order-2", json!({"hold_ms": 1})));
    let results = futures::future::join_all(attempts).await;
    let mut executed = 0;
    let mut run_ids = std::collections::HashSet::new();
    for resp in results {
        match resp.status().as_u16() {
            202 => {
                if resp.headers().get("idempotent-replayed").is_none() {
                    executed += 1;
                }
                let body: Value = resp.json().await.unwrap();
                run_ids.insert(body["run_id"].as_str().unwrap().to_owned());
            }
            409 => {
                let (_, body, _) = problem(resp).await;
                assert_eq!(body["type"], "urn:switchyard:problem:idempotency-key-in-progress");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(executed, 1);
    assert_eq!(run_ids.len(), 1, "every success is the same run");
    assert_eq!(canary_rows(&app).await, 3);

    // A malformed idempotency key is a 400.
    support::expect_status(
        app.http.post(&url).header("idempotency-key", "").json(&json!({})),
        400,
        "POST request",
    )
    .await;
    app.stop().await;
}
both_backends!(idempotent_posts_run_once);

async fn keys_can_be_listed_and_changed(env: TestEnv) {
    let app = env.start_app().await;
    let (id, key) = app
        .create_key(json!({"name": "mutable", "scopes": ["jobs:read"], "environment": "live"}))
        .await;
    assert!(key.starts_with("sy_live_"));
    let client = http_with_key(&key);
    let (status, list) = app.get_json("/api/v1/api-keys?page=1&page_size=1").await;
    assert_eq!(status, 200);
    assert_eq!(list["page_size"], 1);
    assert!(list["total"].as_i64().unwrap() >= 2);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains(&key) && !text.contains(env.admin_key()), "no raw key in listings");
    let (status, _) = app.get_json("/api/v1/api-keys?page_size=501").await;
    assert_eq!(status, 422);

    // Re-scoping takes effect at once.
    assert_eq!(
        client
            .post(app.url("/api/v1/queues/pidms/canary"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let view = app
        .patch_json(
            &format!("/api/v1/api-keys/{id}"),
            &json!({"scopes": ["jobs:write"], "name": "renamed"}),
            200,
        )
        .await;
    assert_eq!(
        (view["name"].as_str(), view["scopes"][0].as_str()),
        (Some("renamed"), Some("jobs:write"))
    );
    assert_eq!(
        client
            .post(app.url("/api/v1/queues/pidms/canary"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );

    // Deactivate, then re-activate.
    let patch = |active: bool| {
        app.http
            .patch(app.url(&format!("/api/v1/api-keys/{id}")))
            .json(&json!({"active": active}))
            .send()
    };
    assert_eq!(patch(false).await.unwrap().status(), 200);
    assert_eq!(client.get(app.url("/api/v1/queues")).send().await.unwrap().status(), 401);
    assert_eq!(patch(true).await.unwrap().status(), 200);
    assert_eq!(client.get(app.url("/api/v1/queues")).send().await.unwrap().status(), 200);
    app.get_expect("/api/v1/api-keys/01J00000000000000000000000", 404).await;
    app.stop().await;
}
both_backends!(keys_can_be_listed_and_changed);
