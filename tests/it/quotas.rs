//! Quotas per UTC calendar window on both backends: the counter driven by a clock the test
//! moves (hour, day and month resets, all windows or none taken), the 429 that names its
//! window with `Retry-After` and the tightest window's headers, the use shown on the key,
//! and one quota held across two API processes sharing Redis.

use crate::support;

use std::sync::atomic::Ordering;

use chrono::DateTime;
use serde_json::json;
use support::{Backend, TestEnv, http_with_key};
use switchyard_shared::quotas::{QuotaCounter, QuotaDecision, Window, WindowLimit};

fn at(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

async fn windows_count_and_reset_on_the_calendar(env: TestEnv) {
    let services = env.services().await;
    let counter = QuotaCounter::for_queue(&services.queue);
    let clock = counter.clock();
    let bucket = support::unique("key:quota-");
    let limits = [
        WindowLimit { window: Window::PerHour, limit: 2 },
        WindowLimit { window: Window::PerDay, limit: 5 },
        WindowLimit { window: Window::PerMonth, limit: 3 },
    ];
    clock.store(at("2026-12-31T23:59:58Z"), Ordering::Relaxed);
    for n in 1..=2 {
        match counter.take(&bucket, &limits).await.unwrap() {
            QuotaDecision::Allowed(states) => {
                assert!(states.iter().all(|s| s.used == n), "{states:?}");
                assert_eq!(states[0].resets_at, at("2027-01-01T00:00:00Z"));
                assert_eq!(states[2].resets_at, at("2027-01-01T00:00:00Z"));
            }
            refused => panic!("request {n}: {refused:?}"),
        }
    }
    let QuotaDecision::Refused(full) = counter.take(&bucket, &limits).await.unwrap() else {
        panic!("a third request in the hour is refused")
    };
    assert_eq!(
        (full.window, full.used, full.resets_at),
        (Window::PerHour, 2, at("2027-01-01T00:00:00Z"))
    );
    // A refusal takes from no window.
    let seen = counter.peek(&bucket, &limits).await.unwrap();
    assert_eq!(seen.iter().map(|s| s.used).collect::<Vec<_>>(), vec![2, 2, 2]);

    // The new hour, day and month start from zero.
    clock.store(at("2027-01-01T00:00:01Z"), Ordering::Relaxed);
    let QuotaDecision::Allowed(states) = counter.take(&bucket, &limits).await.unwrap() else {
        panic!("a new window allows again")
    };
    assert_eq!(states.iter().map(|s| s.used).collect::<Vec<_>>(), vec![1, 1, 1]);
    assert_eq!(states[2].resets_at, at("2027-02-01T00:00:00Z"));

    // Within one month, the month's quota holds across hours and days.
    for (time, allowed) in [
        ("2027-01-01T05:00:00Z", true),
        ("2027-01-20T05:00:00Z", true),
        ("2027-01-31T23:00:00Z", false),
    ] {
        clock.store(at(time), Ordering::Relaxed);
        let decision = counter.take(&bucket, &limits).await.unwrap();
        match (allowed, decision) {
            (true, QuotaDecision::Allowed(_)) => {}
            (false, QuotaDecision::Refused(full)) => {
                assert_eq!(
                    (full.window, full.resets_at),
                    (Window::PerMonth, at("2027-02-01T00:00:00Z"))
                );
            }
            (want, got) => panic!("{time}: wanted allowed={want}, got {got:?}"),
        }
    }
    // February 2028 has 29 days.
    clock.store(at("2028-02-29T12:00:00Z"), Ordering::Relaxed);
    let QuotaDecision::Allowed(states) = counter.take(&bucket, &limits).await.unwrap() else {
        panic!()
    };
    assert_eq!(states[2].resets_at, at("2028-03-01T00:00:00Z"));
}
both_backends!(windows_count_and_reset_on_the_calendar);

async fn a_used_up_quota_is_a_429_naming_its_window(env: TestEnv) {
    let app = env.start_app().await;
    let body = json!({"name": "q", "scopes": ["jobs:read"], "rate_limit_per_minute": 5,
        "rate_limits": {"per_minute": 6}});
    let refused = app.post_json("/api/v1/api-keys", &body, 422).await;
    assert_eq!(refused["errors"][0]["field"], "rate_limits.per_minute", "{refused}");
    app.post_json(
        "/api/v1/api-keys",
        &json!({"name": "q", "scopes": ["jobs:read"], "rate_limits": {"per_day": 0}}),
        422,
    )
    .await;
    let created = app
        .post_json("/api/v1/api-keys", &json!({"name": "q", "scopes": ["jobs:read"], "rate_limits": {"per_hour": 3, "per_month": 1000}}), 201)
        .await;
    assert_eq!(
        created["rate_limits"],
        json!({"per_minute": null, "per_hour": 3, "per_day": null, "per_month": 1000})
    );
    let (id, client) =
        (created["id"].as_str().unwrap(), http_with_key(created["key"].as_str().unwrap()));
    let url = app.url("/api/v1/queues");
    for remaining in [2, 1, 0] {
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        // The hour is the tightest window: its figures are the headers'.
        assert_eq!(resp.headers()["x-ratelimit-limit"], "3");
        assert_eq!(resp.headers()["x-ratelimit-remaining"], remaining.to_string().as_str());
    }
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: i64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    let to_next_hour = 3600 - now.rem_euclid(3600);
    assert!(
        (1..=3600).contains(&retry) && (retry - to_next_hour).abs() <= 2,
        "{retry} vs {to_next_hour}"
    );
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (problem["window"].as_str(), problem["status"].as_i64()),
        (Some("per_hour"), Some(429))
    );
    assert!(problem["detail"].as_str().unwrap().contains("3 requests per hour"), "{problem}");

    let view = app.get_expect(&format!("/api/v1/api-keys/{id}"), 200).await;
    let windows = view["usage_windows"].as_array().unwrap();
    let hour = windows.iter().find(|w| w["window"] == "per_hour").unwrap();
    assert_eq!(
        (hour["limit"].as_u64(), hour["used"].as_u64(), hour["remaining"].as_u64()),
        (Some(3), Some(3), Some(0))
    );
    let month = windows.iter().find(|w| w["window"] == "per_month").unwrap();
    assert_eq!(month["used"], 3, "a refused request takes from no window");
    // Lifting the hour's quota lets the key through again.
    app.patch_json(
        &format!("/api/v1/api-keys/{id}"),
        &json!({"rate_limits": {"per_hour": 100}}),
        200,
    )
    .await;
    support::wait_for("the raised quota", std::time::Duration::from_secs(5), || async {
        (client.get(&url).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    app.stop().await;
}
both_backends!(a_used_up_quota_is_a_429_naming_its_window);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_holds_across_two_api_processes() {
    let Some(env) = TestEnv::new(Backend::Fleet).await else { return };
    let a = env.start_api_only().await;
    let b = env.start_api_only().await;
    let (_, key) = a
        .create_key(
            json!({"name": "shared", "scopes": ["jobs:read"], "rate_limits": {"per_day": 4}}),
        )
        .await;
    let client = http_with_key(&key);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        statuses
            .push(client.get(app.url("/api/v1/queues")).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
    a.stop().await;
    b.stop().await;
}
