//! The audit log on both backends: one entry per change with its actor, address, user agent,
//! request id and the names of the fields set; nothing for a change that did not happen; a
//! tenant's key sees its tenant only; keyset pages that neither skip nor repeat; the CSV
//! export; and no secret, key or payload anywhere in the stored entries.

mod security;
mod walk;

use crate::support;

use serde_json::{Value, json};
use support::{TestApp, TestEnv, expect_status, http_with_key};
use switchyard_shared::audit::AuditFilter;

/// Every entry the caller can see, following the cursor `limit` at a time.
async fn all_entries(
    app: &TestApp,
    client: &reqwest::Client,
    query: &str,
    limit: u32,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let cursor = before.as_ref().map(|b| format!("&before={b}")).unwrap_or_default();
        let url = app.url(&format!("/api/v1/audit-log?limit={limit}{query}{cursor}"));
        let page = expect_status(client.get(url), 200, "GET /audit-log").await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return out,
        }
    }
}

fn find<'a>(entries: &'a [Value], action: &str, target: &str) -> &'a Value {
    let hits: Vec<&Value> =
        entries.iter().filter(|e| e["action"] == action && e["target_id"] == target).collect();
    assert_eq!(hits.len(), 1, "one {action} of {target} in {entries:#?}");
    hits[0]
}

async fn every_change_leaves_one_entry(env: TestEnv) {
    let app = env.start_app().await;
    let me = app.get_expect("/api/v1/whoami", 200).await;
    let admin_id = me["key_id"].as_str().unwrap().to_owned();

    let traced = app
        .http
        .post(app.url("/api/v1/tenants"))
        .header("x-request-id", "audit-test-1")
        .header("user-agent", "audit-test/1.0")
        .json(&json!({"name": "Audited"}));
    let tenant = expect_status(traced, 201, "create tenant").await;
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let key = app
        .post_json(
            "/api/v1/api-keys",
            &json!({"name": "t", "scopes": ["admin"], "tenant_id": tenant}),
            201,
        )
        .await;
    let (key_id, raw_key) =
        (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    let tenant_client = http_with_key(&raw_key);
    let hook =
        json!({"url": "http://127.0.0.1:9/hook", "event_types": ["order.*"], "description": "d"});
    let ep =
        expect_status(tenant_client.post(app.url("/api/v1/webhooks")).json(&hook), 201, "endpoint")
            .await;
    let (ep_id, secret) =
        (ep["id"].as_str().unwrap().to_owned(), ep["secret"].as_str().unwrap().to_owned());
    let ep_url = app.url(&format!("/api/v1/webhooks/{ep_id}"));
    expect_status(
        tenant_client.patch(&ep_url).json(&json!({"event_types": ["x.*"], "enabled": false})),
        200,
        "patch",
    )
    .await;
    let rotated =
        expect_status(tenant_client.post(format!("{ep_url}/rotate-secret")), 200, "rotate").await;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    expect_status(tenant_client.delete(&ep_url), 204, "delete endpoint").await;
    app.patch_json(
        &format!("/api/v1/api-keys/{key_id}?tenant_id={tenant}"),
        &json!({"name": "renamed", "rate_limits": {"per_day": 10}}),
        200,
    )
    .await;
    app.patch_json(
        &format!("/api/v1/tenants/{tenant}"),
        &json!({"metadata": {"tier": "gold"}}),
        200,
    )
    .await;
    // Changes that did not happen leave nothing.
    app.patch_json("/api/v1/webhooks/ep_nope", &json!({"description": "x"}), 404).await;
    app.post_json("/api/v1/tenants", &json!({"name": ""}), 422).await;

    let seen = all_entries(&app, &app.http, "", 500).await;
    let created = find(&seen, "tenant.created", &tenant);
    assert_eq!(
        (
            created["request_id"].as_str(),
            created["user_agent"].as_str(),
            created["actor_key_id"].as_str()
        ),
        (Some("audit-test-1"), Some("audit-test/1.0"), Some(admin_id.as_str()))
    );
    assert_eq!(created["client_addr"], "127.0.0.1");
    assert_eq!(created["tenant_id"], tenant.as_str());
    assert_eq!(created["changed_fields"], json!(["name"]));
    let key_created = find(&seen, "api_key.created", &key_id);
    assert_eq!(key_created["tenant_id"], tenant.as_str());
    let ep_created = find(&seen, "webhook.endpoint.created", &ep_id);
    assert_eq!(ep_created["actor_key_id"], key_id.as_str());
    assert_eq!(ep_created["actor_key_prefix"], &raw_key[..12]);
    assert_eq!(ep_created["changed_fields"], json!(["url", "event_types", "description"]));
    assert_eq!(
        find(&seen, "webhook.endpoint.updated", &ep_id)["changed_fields"],
        json!(["event_types", "enabled"])
    );
    assert_eq!(
        find(&seen, "webhook.endpoint.secret_rotated", &ep_id)["changed_fields"],
        json!(["secret"])
    );
    find(&seen, "webhook.endpoint.deleted", &ep_id);
    assert_eq!(
        find(&seen, "api_key.updated", &key_id)["changed_fields"],
        json!(["name", "rate_limits"])
    );
    assert_eq!(find(&seen, "tenant.updated", &tenant)["changed_fields"], json!(["metadata"]));
    assert!(!seen.iter().any(|e| e["target_id"] == "ep_nope"), "a 404 leaves no entry");
    assert!(seen.iter().all(|e| e["outcome"] == "success"));

    // Pages neither skip nor repeat; filters narrow.
    let paged = all_entries(&app, &app.http, "", 2).await;
    let ids =
        |v: &[Value]| v.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(&paged), ids(&seen));
    let only =
        all_entries(&app, &app.http, &format!("&action=api_key.updated&target_id={key_id}"), 50)
            .await;
    assert_eq!(only.len(), 1);
    let by_actor = all_entries(&app, &app.http, &format!("&actor_key_id={key_id}"), 50).await;
    assert_eq!(by_actor.len(), 4, "the tenant key made four changes: {by_actor:#?}");
    let later = all_entries(&app, &app.http, "&since=2999-01-01T00:00:00Z", 50).await;
    assert!(later.is_empty());

    // A tenant's key sees its tenant's entries only.
    let theirs = all_entries(&app, &tenant_client, "", 50).await;
    assert!(
        !theirs.is_empty() && theirs.iter().all(|e| e["tenant_id"] == tenant.as_str()),
        "{theirs:#?}"
    );
    let url = app.url("/api/v1/audit-log?tenant_id=tn_someone_else");
    expect_status(tenant_client.get(url), 404, "another tenant's log").await;

    // CSV: a header and one line per entry.
    let resp = app
        .http
        .get(app.url(&format!("/api/v1/audit-log/export.csv?tenant_id={tenant}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = resp.text().await.unwrap();
    assert!(csv.starts_with("id,at,tenant_id,actor_key_id"), "{csv}");
    let tenant_entries = all_entries(&app, &app.http, &format!("&tenant_id={tenant}"), 500).await;
    assert_eq!(csv.lines().count(), 1 + tenant_entries.len());

    // No secret, key or digest in what is stored.
    let stored = app.services.store.audit_entries(&AuditFilter::default(), 10_000).await.unwrap();
    let dump = format!("{stored:?}");
    for secret in [secret.as_str(), new_secret.as_str(), raw_key.as_str(), env.admin_key()] {
        assert!(!dump.contains(secret), "a secret is in the audit log");
    }
    assert!(!dump.contains("whsec_"), "no webhook secret at all");
    app.stop().await;
}
both_backends!(every_change_leaves_one_entry);
