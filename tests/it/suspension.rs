//! Key suspension on both backends: a key refused for missing scopes N times within the
//! window, or kept over its limit for the whole window, is suspended — 401 saying so and how
//! to lift it, its audit entry, `api_key.suspended` to platform endpoints, the counter — and
//! `PATCH {"active": true}` lifts it.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestEnv, expect_status, http_with_key, receiver::Receiver, wait_for};

async fn repeated_scope_refusals_suspend_a_key(mut env: TestEnv) {
    env.set("SWITCHYARD_KEY_SUSPEND_AFTER_REFUSALS", "3")
        .set("SWITCHYARD_KEY_SUSPEND_WINDOW_SECS", "600");
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    app.post_json(
        "/api/v1/webhooks",
        &json!({"url": rx.url("/ops"), "event_types": ["api_key.*"]}),
        201,
    )
    .await;
    let (id, key) = app.create_key(json!({"name": "nosy", "scopes": ["webhooks:read"]})).await;
    let client = http_with_key(&key);
    for _ in 0..3 {
        expect_status(client.get(app.url("/api/v1/queues")), 403, "a route outside its scopes")
            .await;
    }
    let refused =
        expect_status(client.get(app.url("/api/v1/webhooks")), 401, "after three refusals").await;
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("this API key is suspended (refused for missing scopes 3 times"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("/api/v1/api-keys/{id}")) && detail.contains("\"active\": true"),
        "{detail}"
    );
    assert_eq!(app.get_expect(&format!("/api/v1/api-keys/{id}"), 200).await["status"], "suspended");

    let entries = app
        .get_expect(&format!("/api/v1/audit-log?action=api_key.suspended&target_id={id}"), 200)
        .await;
    let entry = &entries["items"][0];
    assert_eq!(
        (entry["outcome"].as_str(), entry["actor_key_id"].as_str()),
        (Some("suspended"), Some(id.as_str()))
    );
    let event = wait_for("api_key.suspended", Duration::from_secs(15), || async {
        rx.received("/ops").into_iter().find_map(|r| {
            let e: Value = serde_json::from_slice(&r.body).ok()?;
            (e["type"] == "api_key.suspended").then_some(e)
        })
    })
    .await;
    assert_eq!(event["data"]["key_id"], id.as_str());
    assert_eq!(event["data"]["prefix"], &key[..12]);
    assert!(!event.to_string().contains(&key), "the key itself is never in the event");
    let metrics =
        app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_api_keys_suspended_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Lifted: the key works again, and its count starts over.
    let lifted =
        app.patch_json(&format!("/api/v1/api-keys/{id}"), &json!({"active": true}), 200).await;
    assert_eq!(lifted["status"], "active");
    expect_status(client.get(app.url("/api/v1/webhooks")), 200, "a lifted key").await;
    expect_status(client.get(app.url("/api/v1/queues")), 403, "one refusal after lifting").await;
    expect_status(client.get(app.url("/api/v1/webhooks")), 200, "not suspended again at once")
        .await;
    app.stop().await;
}
both_backends!(repeated_scope_refusals_suspend_a_key);

async fn a_key_kept_over_its_limit_is_suspended(mut env: TestEnv) {
    env.set("SWITCHYARD_KEY_SUSPEND_AFTER_REFUSALS", "0")
        .set("SWITCHYARD_KEY_SUSPEND_WINDOW_SECS", "1");
    let app = env.start_app().await;
    let (id, key) = app
        .create_key(json!({"name": "greedy", "scopes": ["jobs:read"], "rate_limit_per_minute": 1}))
        .await;
    let client = http_with_key(&key);
    expect_status(client.get(app.url("/api/v1/queues")), 200, "the one request a minute").await;
    let seen = std::sync::Mutex::new(Vec::new());
    let detail = wait_for("the key to be suspended", Duration::from_secs(15), || async {
        let resp = client.get(app.url("/api/v1/queues")).send().await.ok()?;
        let status = resp.status().as_u16();
        seen.lock().unwrap().push(status);
        let body: Value = resp.json().await.ok()?;
        (status == 401).then(|| body["detail"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    assert!(detail.contains("kept over its rate limit for 1 s"), "{detail}");
    let seen = seen.into_inner().unwrap();
    assert!(seen.iter().all(|s| *s == 429 || *s == 401), "only refusals before it: {seen:?}");
    assert_eq!(app.get_expect(&format!("/api/v1/api-keys/{id}"), 200).await["status"], "suspended");
    app.stop().await;
}
both_backends!(a_key_kept_over_its_limit_is_suspended);
