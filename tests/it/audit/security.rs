//! Security events in the audit log: repeated failed authentications from one address are
//! tallied into one `auth.failures` entry per window (count and reasons, never the key
//! presented); an address that failed fewer times than the threshold leaves none.

use std::time::Duration;

use serde_json::Value;
use switchyard_shared::access::{Environment, RawKey};

use super::support::{TestEnv, expect_status, wait_for};

async fn entries_for(app: &super::TestApp, addr: &str) -> Vec<Value> {
    let url = format!("/api/v1/audit-log?action=auth.failures&target_id={addr}");
    let page = app.get_expect(&url, 200).await;
    page["items"].as_array().unwrap().clone()
}

/// The count an `auth.failures` entry's detail gives.
fn count(entry: &Value) -> u64 {
    let detail = entry["detail"].as_str().unwrap();
    detail.split_whitespace().next().unwrap().parse().unwrap()
}

async fn fail(app: &super::TestApp, from: &str, times: usize, key: &str) {
    for _ in 0..times {
        let request = app
            .anonymous
            .get(app.url("/api/v1/whoami"))
            .header("x-forwarded-for", from)
            .header("user-agent", "guesser/1.0")
            .bearer_auth(key);
        expect_status(request, 401, "a wrong key").await;
    }
}

async fn repeated_auth_failures_are_one_entry_per_window(mut env: TestEnv) {
    env.set("SWITCHYARD_AUTH_FAILURE_AUDIT_AFTER", "3");
    env.set("SWITCHYARD_AUTH_FAILURE_AUDIT_SECS", "1");
    env.set("SWITCHYARD_TRUST_FORWARDED_FOR", "true");
    let app = env.start_app().await;
    // A well-formed key that does not exist.
    let guess = RawKey::generate(Environment::Live).expose().to_owned();
    // Six from one address: whatever the window edges, some window holds three or more.
    fail(&app, "203.0.113.7", 6, &guess).await;
    let first = wait_for("an auth.failures entry", Duration::from_secs(10), || async {
        let found = entries_for(&app, "203.0.113.7").await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    for entry in &first {
        assert_eq!(entry["outcome"], "refused");
        assert_eq!(entry["target_type"], "client_address");
        assert_eq!(entry["client_addr"], "203.0.113.7");
        assert_eq!(entry["user_agent"], "guesser/1.0");
        assert!(entry["actor_key_id"].is_null(), "no key authenticated");
        assert!((3..=6).contains(&count(entry)), "{entry}");
        assert!(entry["detail"].as_str().unwrap().contains("unknown"), "{entry}");
    }
    // One failure from another address, then six from a third: once the third's entry is
    // written, the window holding the single failure has been written too, with no entry.
    fail(&app, "203.0.113.8", 1, &guess).await;
    fail(&app, "203.0.113.9", 6, &guess).await;
    wait_for("the third address' entry", Duration::from_secs(10), || async {
        (!entries_for(&app, "203.0.113.9").await.is_empty()).then_some(())
    })
    .await;
    assert!(entries_for(&app, "203.0.113.8").await.is_empty(), "below the threshold");

    let stored = app
        .services
        .store
        .audit_entries(&switchyard_shared::audit::AuditFilter::default(), 10_000)
        .await
        .unwrap();
    assert!(!format!("{stored:?}").contains(&guess), "the key presented is not kept");
    app.stop().await;
}
both_backends!(repeated_auth_failures_are_one_entry_per_window);
