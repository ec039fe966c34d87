//! Usage over time, on both backends: the series' steps sum to the stored usage, by status
//! class; empty steps are present at zero; the CSV export has one row per step and key; bad
//! windows and steps are 422s; another tenant sees none of it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestEnv, expect_status, http_with_key, wait_for};

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn the_series_sums_to_the_stored_usage(env: TestEnv) {
    let app = env.start_app().await;
    let (a, key_a) = app.create_key(json!({"name": "a", "scopes": ["jobs:read"]})).await;
    let (b, key_b) = app.create_key(json!({"name": "b", "scopes": ["jobs:read"]})).await;
    let since = (chrono::Utc::now() - chrono::Duration::minutes(3)).to_rfc3339();
    let (client_a, client_b) = (http_with_key(&key_a), http_with_key(&key_b));
    for _ in 0..5 {
        expect_status(client_a.get(app.url("/api/v1/queues")), 200, "queues").await;
    }
    for _ in 0..2 {
        let url = app.url("/api/v1/jobs/01J00000000000000000000000");
        expect_status(client_a.get(url), 404, "a job").await;
    }
    expect_status(client_b.get(app.url("/api/v1/queues")), 200, "queues").await;
    let until = (chrono::Utc::now() + chrono::Duration::minutes(2)).to_rfc3339();
    let window = format!("since={}&until={}", urlencode(&since), urlencode(&until));

    let usage = wait_for("usage records", Duration::from_secs(15), || async {
        let u = app.get_expect(&format!("/api/v1/usage?{window}"), 200).await;
        let total: i64 =
            u["keys"].as_array().unwrap().iter().map(|k| k["requests"].as_i64().unwrap()).sum();
        // The admin key's own requests are counted too; wait for a's and b's.
        let of = |id: &str| {
            u["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["key_id"] == id)
                .map(|k| k["requests"].clone())
        };
        (of(&a) == Some(json!(7)) && of(&b) == Some(json!(1))).then_some((u.clone(), total))
    })
    .await;

    // One key, one-minute steps over five minutes: every step present, the sum exact.
    let series =
        app.get_expect(&format!("/api/v1/usage/series?key_id={a}&{window}&step=60"), 200).await;
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 5, "{series}");
    assert_eq!(series["step"], 60);
    let sum = |field: &dyn Fn(&Value) -> i64| points.iter().map(field).sum::<i64>();
    assert_eq!(sum(&|p| p["requests"].as_i64().unwrap()), 7);
    assert_eq!(sum(&|p| p["by_status_class"]["2xx"].as_i64().unwrap()), 5);
    assert_eq!(sum(&|p| p["by_status_class"]["4xx"].as_i64().unwrap()), 2);
    assert!(points.iter().any(|p| p["requests"] == 0), "empty steps are kept: {series}");
    for p in points.iter().filter(|p| p["requests"].as_i64().unwrap() > 0) {
        let l = &p["latency_ms"];
        assert!(l["p50"].as_f64().unwrap() > 0.0 && l["p50"].as_f64() <= l["p99"].as_f64());
    }
    // Every key: the same total as the usage report.
    let all = app.get_expect(&format!("/api/v1/usage/series?{window}&step=300"), 200).await;
    let total: i64 =
        all["points"].as_array().unwrap().iter().map(|p| p["requests"].as_i64().unwrap()).sum();
    assert!(total >= usage.1, "{total} ≥ {}", usage.1);

    // CSV: a row per step and key, summing to the same.
    let resp = app
        .http
        .get(app.url(&format!("/api/v1/usage/export.csv?{window}&step=60")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = resp.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("at,key_id,requests,status_2xx,status_3xx,status_4xx,status_5xx,p50_ms,p95_ms,p99_ms")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let of_key = |id: &str| {
        rows.iter().filter(|r| r[1] == id).map(|r| r[2].parse::<i64>().unwrap()).sum::<i64>()
    };
    assert_eq!((of_key(&a), of_key(&b)), (7, 1));

    // Bad input.
    for bad in [
        format!("/api/v1/usage/series?{window}&step=1"),
        format!("/api/v1/usage/series?since={}&until={}", urlencode(&until), urlencode(&since)),
        "/api/v1/usage/series?since=2026-01-01T00:00:00Z&until=2026-12-01T00:00:00Z&step=60"
            .to_owned(),
    ] {
        app.get_expect(&bad, 422).await;
    }

    // Another tenant's key sees nothing of the platform's.
    let tenant = app.post_json("/api/v1/tenants", &json!({"name": "t"}), 201).await;
    let theirs = app
        .post_json(
            "/api/v1/api-keys",
            &json!({"name": "t", "scopes": ["usage:read"], "tenant_id": tenant["id"]}),
            201,
        )
        .await;
    let theirs = http_with_key(theirs["key"].as_str().unwrap());
    let url = app.url(&format!("/api/v1/usage/series?key_id={a}&{window}&step=60"));
    let seen = expect_status(theirs.get(url), 200, "their series").await;
    let seen: i64 =
        seen["points"].as_array().unwrap().iter().map(|p| p["requests"].as_i64().unwrap()).sum();
    assert_eq!(seen, 0);
    app.stop().await;
}
both_backends!(the_series_sums_to_the_stored_usage);
