//! Webhooks on both backends, against a recording receiver on loopback: signed deliveries,
//! the retry schedule, Retry-After, 410, redirects, a blackholed endpoint beside a healthy
//! one, the SSRF guard, disabling failing endpoints, secret rotation, test events and
//! manual retries, validation.

mod history;
mod network;

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    TestApp, TestEnv,
    receiver::{Receiver, Reply},
    wait_for,
};
use switchyard_shared::webhooks;

async fn create_endpoint(app: &TestApp, url: &str, types: &[&str]) -> (String, String) {
    let resp = app
        .http
        .post(app.url("/api/v1/webhooks"))
        .json(&json!({"url": url, "event_types": types}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let body: Value = resp.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

async fn publish(app: &TestApp, event_type: &str, data: Value) -> Value {
    let resp = app
        .http
        .post(app.url("/api/v1/events"))
        .json(&json!({"type": event_type, "data": data}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

async fn delivery(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("/api/v1/deliveries/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_delivery_status(app: &TestApp, id: &str, want: &str, within: Duration) -> Value {
    wait_for(&format!("delivery {id} to be {want}"), within, || async {
        let d = delivery(app, id).await;
        (d["status"] == want).then_some(d)
    })
    .await
}

async fn signed_deliveries_reach_the_receiver(env: TestEnv) {
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    let (endpoint, secret) = create_endpoint(&app, &rx.url("/hook"), &["order.*"]).await;
    assert!(secret.starts_with("whsec_"));

    let accepted = publish(&app, "order.paid", json!({"order": 42})).await;
    let delivery_id = accepted["deliveries"][0].as_str().unwrap().to_owned();
    assert_eq!(accepted["deliveries"].as_array().unwrap().len(), 1);
    assert!(accepted["id"].as_str().unwrap().starts_with("evt_"));
    let got = wait_for("the delivery", Duration::from_secs(15), || async {
        rx.received("/hook").into_iter().next()
    })
    .await;
    let h = &got.headers;
    assert_eq!(h["webhook-id"], delivery_id, "webhook-id is the delivery id");
    assert_eq!(h["content-type"], "application/json");
    assert!(h["user-agent"].starts_with("Switchyard-Webhooks/"), "{}", h["user-agent"]);
    let ts: i64 = h["webhook-timestamp"].parse().unwrap();
    assert!((ts - chrono::Utc::now().timestamp()).abs() <= 5);
    let now = chrono::Utc::now().timestamp();
    webhooks::verify(
        &secret,
        Some(&h["webhook-id"]),
        Some(&h["webhook-timestamp"]),
        Some(&h["webhook-signature"]),
        &got.body,
        now,
    )
    .expect("the signature verifies with the endpoint's secret");
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["type"], "order.paid");
    assert_eq!(body["data"], json!({"order": 42}));
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());

    let d = wait_delivery_status(&app, &delivery_id, "delivered", Duration::from_secs(10)).await;
    assert_eq!(d["endpoint_id"], endpoint.as_str());
    assert_eq!(d["attempt_count"], 1);
    let attempt = &d["attempts"][0];
    assert_eq!((attempt["n"].as_i64(), attempt["status_code"].as_i64()), (Some(1), Some(200)));
    assert_eq!(attempt["response_body"], "answer 200");
    assert!(attempt["duration_ms"].as_f64().unwrap() > 0.0);
    let (_, ep) = app.get_json(&format!("/api/v1/webhooks/{endpoint}")).await;
    assert_eq!((ep["status"].as_str(), ep["failure_count"].as_i64()), (Some("enabled"), Some(0)));
    assert!(ep["last_success_at"].is_string());
    assert!(ep.get("secret").is_none(), "the secret is shown only at creation");

    // Not subscribed: no delivery.
    let other = publish(&app, "invoice.paid", json!({})).await;
    assert_eq!(other["deliveries"], json!([]));
    // The endpoint's delivery list.
    let (_, list) =
        app.get_json(&format!("/api/v1/webhooks/{endpoint}/deliveries?status=delivered")).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], delivery_id.as_str());
    let metrics =
        app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(
        "switchyard_webhook_deliveries_total{outcome=\"delivered\",status_class=\"2xx\"}"
    ));
    assert!(metrics.contains("switchyard_webhook_end_to_end_seconds_bucket"));
    app.stop().await;
}
both_backends!(signed_deliveries_reach_the_receiver);

async fn retries_follow_the_schedule(env: TestEnv) {
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    rx.script(
        "/flaky",
        vec![Reply::Status(500), Reply::Status(503), Reply::Status(502), Reply::Status(200)],
    );
    let (endpoint, _) = create_endpoint(&app, &rx.url("/flaky"), &["thing.*"]).await;
    let accepted = publish(&app, "thing.happened", json!({})).await;
    let id = accepted["deliveries"][0].as_str().unwrap().to_owned();
    let d = wait_delivery_status(&app, &id, "delivered", Duration::from_secs(20)).await;

    let arrivals = rx.received("/flaky");
    assert_eq!(arrivals.len(), 4, "three failures, then success");
    // The schedule is 200 ms, 400 ms, 800 ms with ±20 % jitter: never earlier; later by at
    // most a second (the whole suite shares two cores, and a busy worker fetches late).
    for (i, want_ms) in [200u64, 400, 800].into_iter().enumerate() {
        let gap = arrivals[i + 1].at - arrivals[i].at;
        let low = Duration::from_millis(want_ms * 8 / 10);
        let high = Duration::from_millis(want_ms * 12 / 10 + 1000);
        assert!(gap >= low && gap <= high, "gap {} was {gap:?}, want about {want_ms} ms", i + 1);
    }
    // One id across every attempt; a fresh timestamp on each.
    assert!(arrivals.iter().all(|a| a.headers["webhook-id"] == id));
    let attempts = d["attempts"].as_array().unwrap();
    let codes: Vec<i64> = attempts.iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, vec![500, 503, 502, 200]);
    let (_, ep) = app.get_json(&format!("/api/v1/webhooks/{endpoint}")).await;
    assert_eq!(ep["failure_count"], 0, "a success resets the count");

    // Out of attempts: failed after 1 + 3.
    rx.script("/down", vec![Reply::Status(500)]);
    let (down, _) = create_endpoint(&app, &rx.url("/down"), &["down.*"]).await;
    let accepted = publish(&app, "down.now", json!({})).await;
    let id = accepted["deliveries"][0].as_str().unwrap().to_owned();
    let d = wait_delivery_status(&app, &id, "failed", Duration::from_secs(20)).await;
    assert_eq!(d["attempt_count"], 4);
    assert!(d["next_attempt_at"].is_null());
    assert_eq!(rx.received("/down").len(), 4);
    let (_, ep) = app.get_json(&format!("/api/v1/webhooks/{down}")).await;
    assert_eq!(ep["failure_count"], 4);
    assert_eq!(ep["last_error"], "HTTP 500");

    // A manual retry attempts once more, now.
    rx.script("/down", vec![Reply::Status(200)]);
    let resp =
        app.http.post(app.url(&format!("/api/v1/deliveries/{id}/retry"))).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let d = wait_delivery_status(&app, &id, "delivered", Duration::from_secs(10)).await;
    assert_eq!(d["attempt_count"], 5);
    let resp =
        app.http.post(app.url(&format!("/api/v1/deliveries/{id}/retry"))).send().await.unwrap();
    assert_eq!(resp.status(), 409, "only failed deliveries are retried");
    app.stop().await;
}
both_backends!(retries_follow_the_schedule);

async fn retry_after_is_honoured(mut env: TestEnv) {
    env.set("SWITCHYARD_WEBHOOK_RETRY_SCHEDULE", "1s");
    env.set("SWITCHYARD_WEBHOOK_THROTTLE_FLOOR_MS", "100");
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    // Asks for 2 s; the schedule says 1 s: honoured, as it is within [1 s, 2 s]. (Never
    // earlier; later by up to 2 s when the suite loads both cores.)
    rx.script("/busy", vec![Reply::RetryAfter(429, 2), Reply::Status(200)]);
    create_endpoint(&app, &rx.url("/busy"), &["x.y"]).await;
    let accepted = publish(&app, "x.y", json!({})).await;
    let id = accepted["deliveries"][0].as_str().unwrap().to_owned();
    wait_delivery_status(&app, &id, "delivered", Duration::from_secs(15)).await;
    let arrivals = rx.received("/busy");
    let gap = arrivals[1].at - arrivals[0].at;
    assert!(gap >= Duration::from_millis(1950) && gap < Duration::from_millis(4000), "gap {gap:?}");

    // Asks for 10 s: clamped to twice the schedule (2 s).
    rx.script("/busier", vec![Reply::RetryAfter(503, 10), Reply::Status(200)]);
    create_endpoint(&app, &rx.url("/busier"), &["x.z"]).await;
    let started = Instant::now();
    let accepted = publish(&app, "x.z", json!({})).await;
    assert_eq!(accepted["deliveries"].as_array().unwrap().len(), 1);
    wait_for("the second arrival", Duration::from_secs(15), || async {
        (rx.received("/busier").len() >= 2).then_some(())
    })
    .await;
    let arrivals = rx.received("/busier");
    let gap = arrivals[1].at - arrivals[0].at;
    assert!(gap >= Duration::from_millis(1950) && gap < Duration::from_millis(4000), "gap {gap:?}");
    assert!(started.elapsed() < Duration::from_secs(9), "did not wait the 10 s asked for");
    app.stop().await;
}
both_backends!(retry_after_is_honoured);

async fn gone_disables_and_announces(env: TestEnv) {
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    rx.script("/gone", vec![Reply::Status(410)]);
    let (gone, _) = create_endpoint(&app, &rx.url("/gone"), &["order.*"]).await;
    let (_, watcher_secret) = create_endpoint(&app, &rx.url("/watcher"), &["webhook.*"]).await;
    let accepted = publish(&app, "order.paid", json!({})).await;
    let id = accepted["deliveries"][0].as_str().unwrap().to_owned();
    let d = wait_delivery_status(&app, &id, "failed", Duration::from_secs(10)).await;
    assert_eq!(d["attempt_count"], 1, "410 is not retried");
    let (_, ep) = app.get_json(&format!("/api/v1/webhooks/{gone}")).await;
    assert_eq!(ep["status"], "disabled");
    assert!(ep["disabled_reason"].as_str().unwrap().contains("410"));

    // The watcher hears about it, signed.
    let note = wait_for("webhook.endpoint.disabled", Duration::from_secs(10), || async {
        rx.received("/watcher").into_iter().next()
    })
    .await;
    let body: Value = serde_json::from_slice(&note.body).unwrap();
    assert_eq!(body["type"], "webhook.endpoint.disabled");
    assert_eq!(body["data"]["endpoint_id"], gone.as_str());
    let h = &note.headers;
    webhooks::verify(
        &watcher_secret,
        Some(&h["webhook-id"]),
        Some(&h["webhook-timestamp"]),
        Some(&h["webhook-signature"]),
        &note.body,
        chrono::Utc::now().timestamp(),
    )
    .unwrap();

    // A disabled endpoint gets no new deliveries; re-enabling resets it.
    let accepted = publish(&app, "order.paid", json!({})).await;
    assert_eq!(accepted["deliveries"], json!([]));
    let resp = app
        .http
        .patch(app.url(&format!("/api/v1/webhooks/{gone}")))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    let ep: Value = resp.json().await.unwrap();
    assert_eq!((ep["status"].as_str(), ep["failure_count"].as_i64()), (Some("enabled"), Some(0)));
    assert!(ep["disabled_reason"].is_null());
    app.stop().await;
}
both_backends!(gone_disables_and_announces);

async fn redirects_are_failures_not_followed(env: TestEnv) {
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    rx.script("/moved", vec![Reply::Redirect("/target")]);
    create_endpoint(&app, &rx.url("/moved"), &["*"]).await;
    let accepted = publish(&app, "a.b", json!({})).await;
    let id = accepted["deliveries"][0].as_str().unwrap().to_owned();
    let d = wait_delivery_status(&app, &id, "failed", Duration::from_secs(20)).await;
    let attempt = &d["attempts"][0];
    assert_eq!(
        (attempt["status_code"].as_i64(), attempt["outcome"].as_str()),
        (Some(302), Some("redirect"))
    );
    assert!(rx.received("/target").is_empty(), "the redirect was not followed");
    app.stop().await;
}
both_backends!(redirects_are_failures_not_followed);

async fn a_blackholed_endpoint_does_not_delay_a_healthy_one(mut env: TestEnv) {
    env.set("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", "2");
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "8");
    env.set("SWITCHYARD_WEBHOOK_TIMEOUT_MS", "3000");
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    rx.script("/blackhole", vec![Reply::Hang]);
    create_endpoint(&app, &rx.url("/blackhole"), &["load.*"]).await;
    let (_, _) = create_endpoint(&app, &rx.url("/healthy"), &["load.*"]).await;
    let started = Instant::now();
    for i in 0..30 {
        publish(&app, "load.test", json!({"i": i})).await;
    }
    wait_for("30 deliveries to the healthy endpoint", Duration::from_secs(10), || async {
        (rx.received("/healthy").len() >= 30).then_some(())
    })
    .await;
    let took = started.elapsed();
    // The blackhole holds at most 2 slots at a time for 3 s each; the healthy endpoint's
    // 30 deliveries do not wait behind it.
    assert!(took < Duration::from_millis(2900), "healthy deliveries took {took:?}");
    assert!(rx.received("/blackhole").len() <= 4, "at most two in flight per timeout");
    app.stop().await;
}
both_backends!(a_blackholed_endpoint_does_not_delay_a_healthy_one);

async fn rotation_signs_with_both_secrets(env: TestEnv) {
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    let (endpoint, old) = create_endpoint(&app, &rx.url("/rot"), &["*"]).await;
    // A first delivery, so the worker holds the endpoint (and its one secret) in its cache.
    publish(&app, "r.before", json!({})).await;
    let first = wait_for("the delivery before the rotation", Duration::from_secs(10), || async {
        rx.received("/rot").pop()
    })
    .await;
    assert_eq!(first.headers["webhook-signature"].split(' ').count(), 1);
    let resp = app
        .http
        .post(app.url(&format!("/api/v1/webhooks/{endpoint}/rotate-secret")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rotated: Value = resp.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    // The very next event is signed by both: the claim sees the endpoint changed and the
    // worker reads it again instead of signing from its cached copy.
    publish(&app, "r.after", json!({})).await;
    wait_for("the delivery after the rotation", Duration::from_secs(10), || async {
        (rx.received("/rot").len() == 2).then_some(())
    })
    .await;
    let last = rx.received("/rot").pop().unwrap();
    let h = &last.headers;
    let sigs: Vec<&str> = h["webhook-signature"].split(' ').collect();
    assert_eq!(sigs.len(), 2, "the first delivery after the rotation is signed by both secrets");
    let now = chrono::Utc::now().timestamp();
    for secret in [&old, &new] {
        webhooks::verify(
            secret,
            Some(&h["webhook-id"]),
            Some(&h["webhook-timestamp"]),
            Some(&h["webhook-signature"]),
            &last.body,
            now,
        )
        .expect("each secret verifies");
    }
    assert_ne!(sigs[0], sigs[1]);
    let (_, ep) = app.get_json(&format!("/api/v1/webhooks/{endpoint}")).await;
    assert!(ep["previous_secret_valid_until"].is_string());
    app.stop().await;
}
both_backends!(rotation_signs_with_both_secrets);

async fn test_events_and_validation(env: TestEnv) {
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    let (endpoint, _) = create_endpoint(&app, &rx.url("/t"), &["only.this"]).await;
    let resp =
        app.http.post(app.url(&format!("/api/v1/webhooks/{endpoint}/test"))).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let sent: Value = resp.json().await.unwrap();
    let got = wait_for("the test event", Duration::from_secs(10), || async {
        rx.received("/t").into_iter().next()
    })
    .await;
    assert_eq!(got.headers["webhook-id"], sent["delivery_id"].as_str().unwrap());
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        body["type"], "webhook.test",
        "sent although the endpoint subscribes to another type"
    );

    let bad = |body: Value| {
        let req = app.http.post(app.url("/api/v1/webhooks")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = bad(json!({"url": "ftp://example.com/x", "event_types": ["a"]})).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (422, Some("url")));
    let (status, body) = bad(json!({"url": "https://example.com/x", "event_types": ["a b", "*"], "rate_limit_per_second": 0})).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["event_types[0]", "rate_limit_per_second"]);
    let (status, body) =
        bad(json!({"url": "https://user:pw@example.com/x", "event_types": ["a"]})).await;
    assert_eq!(status, 422);
    assert!(!body.to_string().contains("pw@"), "credentials are not echoed");
    let (status, body) = bad(json!({"url": "http://10.0.0.1/hook", "event_types": ["a"]})).await;
    assert_eq!(status, 422, "a private address is refused at creation");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("10.0.0.1"));

    // Live keys need https.
    let (_, live) = app
        .create_key(json!({"name": "live", "scopes": ["webhooks:write"], "environment": "live"}))
        .await;
    let body = support::expect_status(
        support::http_with_key(&live)
            .post(app.url("/api/v1/webhooks"))
            .json(&json!({"url": rx.url("/live"), "event_types": ["a"]})),
        422,
        "POST /api/v1/webhooks",
    )
    .await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("https"));

    // Events: a bad type is 422; more than 256 KiB is 413.
    app.post_json("/api/v1/events", &json!({"type": "no spaces", "data": {}}), 422).await;
    let big = "x".repeat(300 * 1024);
    let resp = app
        .http
        .post(app.url("/api/v1/events"))
        .json(&json!({"type": "big.one", "data": big}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // Deleting an endpoint: 204, then 404.
    app.delete_expect(&format!("/api/v1/webhooks/{endpoint}"), 204).await;
    let (status, _) = app.get_json(&format!("/api/v1/webhooks/{endpoint}")).await;
    assert_eq!(status, 404);
    app.stop().await;
}
both_backends!(test_events_and_validation);

async fn failing_endpoints_are_disabled_and_announced(mut env: TestEnv) {
    env.set("SWITCHYARD_WEBHOOK_RETRY_SCHEDULE", "100ms");
    env.set("SWITCHYARD_WEBHOOK_DISABLE_THRESHOLD", "2");
    env.set("SWITCHYARD_SCHEDULE_WEBHOOK_DISABLE_FAILING", "* * * * * *");
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    rx.script("/failing", vec![Reply::Status(500)]);
    let (failing, _) = create_endpoint(&app, &rx.url("/failing"), &["work.*"]).await;
    create_endpoint(&app, &rx.url("/ops"), &["webhook.*"]).await;
    publish(&app, "work.item", json!({})).await;
    let ep = wait_for("the failing endpoint to be disabled", Duration::from_secs(15), || async {
        let (_, ep) = app.get_json(&format!("/api/v1/webhooks/{failing}")).await;
        (ep["status"] == "disabled").then_some(ep)
    })
    .await;
    assert_eq!(ep["failure_count"], 2);
    assert!(ep["disabled_reason"].as_str().unwrap().contains("2 times in a row"), "{ep}");
    let note = wait_for("the announcement", Duration::from_secs(10), || async {
        rx.received("/ops").into_iter().next()
    })
    .await;
    let body: Value = serde_json::from_slice(&note.body).unwrap();
    assert_eq!(body["type"], "webhook.endpoint.disabled");
    assert_eq!(body["data"]["endpoint_id"], failing.as_str());
    // Deliveries already due to it end as failed, with the reason.
    let accepted = publish(&app, "work.item", json!({})).await;
    assert_eq!(accepted["deliveries"], json!([]), "no new deliveries to a disabled endpoint");
    app.stop().await;
}
both_backends!(failing_endpoints_are_disabled_and_announced);

/// The official `standardwebhooks` Python package verifies what we send (when it is
/// installed; `.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_standardwebhooks_package_verifies_our_signatures() {
    let Some(env) = TestEnv::new(support::Backend::Embedded).await else { return };
    let probe =
        std::process::Command::new("python3").args(["-c", "import standardwebhooks"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        support::skip_or_fail("python3 with the standardwebhooks package is not installed");
        return;
    }
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    let (_, secret) = create_endpoint(&app, &rx.url("/py"), &["*"]).await;
    publish(&app, "py.check", json!({"n": 1})).await;
    let got = wait_for("a delivery", Duration::from_secs(10), || async {
        rx.received("/py").into_iter().next()
    })
    .await;
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
given = json.load(sys.stdin)
event = Webhook(given["secret"]).verify(given["body"].encode(), given["headers"])
assert event["type"] == "py.check", event
print("verified")
"#;
    let input = json!({
        "secret": secret,
        "body": String::from_utf8(got.body.clone()).unwrap(),
        "headers": {
            "webhook-id": got.headers["webhook-id"],
            "webhook-timestamp": got.headers["webhook-timestamp"],
            "webhook-signature": got.headers["webhook-signature"],
        },
    });
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "verified");
    app.stop().await;
}
