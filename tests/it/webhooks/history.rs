//! Looking back and recovering, on both backends: events listed newest first with their
//! deliveries counted by status, one event with its payload and deliveries, deliveries
//! filtered across endpoints, keyset pages that neither skip nor repeat, an endpoint's
//! failed deliveries recovered in a window (idempotently), and another tenant seeing none.

use std::time::Duration;

use serde_json::{Value, json};

use super::{create_endpoint, publish, wait_delivery_status};
use crate::support::{
    TestApp, TestEnv, expect_status, http_with_key,
    receiver::{Receiver, Reply},
    wait_for,
};

/// Every item of a keyset-paged list, `limit` at a time.
async fn every_item(app: &TestApp, path: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before = String::new();
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let page = app.get_expect(&format!("{path}{sep}limit={limit}{before}"), 200).await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => return out,
        }
    }
}

fn ids(items: &[Value]) -> Vec<&str> {
    items.iter().map(|i| i["id"].as_str().unwrap()).collect()
}

async fn events_and_deliveries_are_listed_and_recovered(env: TestEnv) {
    let app = env.start_app().await;
    let started = chrono::Utc::now();
    let rx = Receiver::start().await;
    rx.script("/bad", vec![Reply::Status(500)]);
    let (good, _) = create_endpoint(&app, &rx.url("/good"), &["a.*", "b.*"]).await;
    let (bad, _) = create_endpoint(&app, &rx.url("/bad"), &["a.*"]).await;
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(publish(&app, "a.thing", json!({"n": n})).await);
    }
    published.push(publish(&app, "b.other", json!({"n": 3})).await);
    // The bad endpoint's three run out of attempts; every good one arrives.
    for p in &published {
        for d in p["deliveries"].as_array().unwrap() {
            let d = d.as_str().unwrap();
            let status =
                wait_for(&format!("delivery {d} to end"), Duration::from_secs(30), || async {
                    let (_, body) = app.get_json(&format!("/api/v1/deliveries/{d}")).await;
                    let s = body["status"].as_str().unwrap_or_default().to_owned();
                    (s == "delivered" || s == "failed").then_some(s)
                })
                .await;
            assert!(status == "delivered" || status == "failed");
        }
    }

    // Events, newest first, counted; pages of one neither skip nor repeat.
    let events = every_item(&app, "/api/v1/events", 50).await;
    let want: Vec<&str> = published.iter().rev().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids(&events), want);
    assert_eq!(ids(&every_item(&app, "/api/v1/events", 1).await), want);
    for e in &events[1..] {
        assert_eq!(e["type"], "a.thing");
        assert_eq!(e["delivery_count"], 2);
        assert_eq!(
            e["delivery_status_counts"],
            json!({"pending": 0, "delivering": 0,
            "retrying": 0, "delivered": 1, "failed": 1})
        );
        assert!(e.get("payload").is_none(), "lists carry no payloads");
    }
    assert_eq!(events[0]["delivery_count"], 1);
    let only_b = every_item(&app, "/api/v1/events?type=b.other", 50).await;
    assert_eq!(ids(&only_b), vec![want[0]]);
    let none = every_item(&app, "/api/v1/events?since=2999-01-01T00:00:00Z", 50).await;
    assert!(none.is_empty());
    app.get_expect("/api/v1/events?since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z", 422)
        .await;

    // One event: its payload and deliveries.
    let first = published[0]["id"].as_str().unwrap();
    let event = app.get_expect(&format!("/api/v1/events/{first}"), 200).await;
    assert_eq!(event["payload"]["data"], json!({"n": 0}));
    assert_eq!(event["payload"]["type"], "a.thing");
    let endpoints: Vec<&str> = event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["endpoint_id"].as_str().unwrap())
        .collect();
    assert_eq!(endpoints.len(), 2);
    assert!(endpoints.contains(&good.as_str()) && endpoints.contains(&bad.as_str()));
    app.get_expect("/api/v1/events/evt_nope", 404).await;

    // Deliveries across endpoints, filtered.
    let failed = every_item(&app, "/api/v1/deliveries?status=failed", 2).await;
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|d| d["endpoint_id"] == bad.as_str()));
    let to_good = every_item(&app, &format!("/api/v1/deliveries?endpoint_id={good}"), 50).await;
    assert_eq!(to_good.len(), 4);
    let of_b = every_item(&app, "/api/v1/deliveries?event_type=b.other", 50).await;
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0]["endpoint_id"], good.as_str());
    app.get_expect("/api/v1/deliveries?status=lost", 422).await;

    // Attempts over time: every one counted once, the failed ones apart; steps aligned.
    let since = (started - chrono::Duration::minutes(2)).to_rfc3339().replace('+', "%2B");
    let series =
        app.get_expect(&format!("/api/v1/deliveries/series?since={since}&step=60"), 200).await;
    let points = series["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{series}");
    let total = |f: &str| points.iter().map(|p| p[f].as_i64().unwrap()).sum::<i64>();
    assert_eq!((total("attempts"), total("failed")), (4 + 3 * 4, 3 * 4));
    assert!(points.iter().all(|p| p["at"].as_str().unwrap().contains(":00")), "{series}");
    app.get_expect("/api/v1/deliveries/series?step=1", 422).await;

    // Recovery: a window before any of them finds none; the right one all three, once.
    rx.script("/bad", vec![Reply::Status(200)]);
    let recover = format!("/api/v1/webhooks/{bad}/recover");
    let early = json!({"since": "2020-01-01T00:00:00Z", "until": started.to_rfc3339()});
    assert_eq!(app.post_json(&recover, &early, 202).await["count"], 0);
    let window = json!({"since": started.to_rfc3339()});
    assert_eq!(app.post_json(&recover, &window, 202).await["count"], 3);
    assert_eq!(app.post_json(&recover, &window, 202).await["count"], 0, "idempotent");
    for d in &failed {
        let id = d["id"].as_str().unwrap();
        let done = wait_delivery_status(&app, id, "delivered", Duration::from_secs(20)).await;
        assert_eq!(done["attempt_count"], 5, "one attempt more");
    }
    assert_eq!(rx.received("/bad").len(), 3 * 4 + 3);
    app.post_json(
        &recover,
        &json!({"since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"}),
        422,
    )
    .await;
    app.post_json("/api/v1/webhooks/ep_nope/recover", &window, 404).await;

    // Another tenant sees none of it.
    let tenant = app.post_json("/api/v1/tenants", &json!({"name": "other"}), 201).await;
    let key = app
        .post_json(
            "/api/v1/api-keys",
            &json!({"name": "t", "scopes": ["webhooks:write"], "tenant_id": tenant["id"]}),
            201,
        )
        .await;
    let theirs = http_with_key(key["key"].as_str().unwrap());
    let page = expect_status(theirs.get(app.url("/api/v1/events")), 200, "their events").await;
    assert_eq!(page["items"], json!([]));
    let page = expect_status(theirs.get(app.url("/api/v1/deliveries")), 200, "theirs").await;
    assert_eq!(page["items"], json!([]));
    let url = app.url(&format!("/api/v1/deliveries/series?since={since}"));
    let series = expect_status(theirs.get(url), 200, "their series").await;
    let attempts: i64 =
        series["points"].as_array().unwrap().iter().map(|p| p["attempts"].as_i64().unwrap()).sum();
    assert_eq!(attempts, 0);
    expect_status(theirs.get(app.url(&format!("/api/v1/events/{first}"))), 404, "ours").await;
    expect_status(theirs.post(app.url(&recover)).json(&window), 404, "recover ours").await;
    app.stop().await;
}
both_backends!(events_and_deliveries_are_listed_and_recovered);
