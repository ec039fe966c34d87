//! Tenants on both backends: their lifecycle, keys bound to them, events that stay in their
//! tenant, an isolation matrix over every `{id}` route of the OpenAPI document (another
//! tenant's id answers 404, a platform-only route 403), lists that never leak, and the soft
//! delete that stops a tenant's keys and endpoints.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestApp, TestEnv, expect_status, http_with_key, receiver::Receiver, wait_for};

async fn create_tenant(app: &TestApp, name: &str) -> String {
    let t = app
        .post_json("/api/v1/tenants", &json!({"name": name, "metadata": {"plan": "pro"}}), 201)
        .await;
    assert!(t["id"].as_str().unwrap().starts_with("tn_"), "{t}");
    assert_eq!((t["name"].as_str(), t["status"].as_str()), (Some(name), Some("active")));
    assert_eq!(t["metadata"], json!({"plan": "pro"}));
    t["id"].as_str().unwrap().to_owned()
}

/// A tenant's key (created by the platform admin): (id, client).
async fn tenant_key(app: &TestApp, tenant: &str, scopes: &[&str]) -> (String, reqwest::Client) {
    let body = json!({"name": "tenant key", "scopes": scopes, "tenant_id": tenant});
    let v = app.post_json("/api/v1/api-keys", &body, 201).await;
    assert_eq!(v["tenant_id"], tenant, "{v}");
    (v["id"].as_str().unwrap().to_owned(), http_with_key(v["key"].as_str().unwrap()))
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

async fn endpoint(client: &reqwest::Client, app: &TestApp, url: &str) -> String {
    let body = json!({"url": url, "event_types": ["order.*"]});
    let v =
        expect_status(client.post(app.url("/api/v1/webhooks")).json(&body), 201, "create endpoint")
            .await;
    v["id"].as_str().unwrap().to_owned()
}

async fn publish(client: &reqwest::Client, app: &TestApp, body: Value) -> Vec<String> {
    let v = expect_status(client.post(app.url("/api/v1/events")).json(&body), 202, "publish").await;
    v["deliveries"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect()
}

async fn tenants_are_kept_apart(env: TestEnv) {
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    app.post_json("/api/v1/tenants", &json!({"name": ""}), 422).await;
    app.post_json("/api/v1/tenants", &json!({"name": "x", "metadata": [1]}), 422).await;
    let a = create_tenant(&app, "Acme Dental").await;
    let b = create_tenant(&app, "Bright Smiles").await;
    app.patch_json(&format!("/api/v1/tenants/{a}"), &json!({"name": "Acme Dental Group"}), 200)
        .await;
    assert_eq!(
        app.get_expect(&format!("/api/v1/tenants/{a}"), 200).await["name"],
        "Acme Dental Group"
    );
    app.get_expect("/api/v1/tenants/tn_nonexistent", 404).await;

    let (key_a, client_a) = tenant_key(&app, &a, &["admin"]).await;
    let (key_b, client_b) =
        tenant_key(&app, &b, &["webhooks:write", "events:publish", "keys:manage", "usage:read"])
            .await;
    let who = expect_status(client_a.get(app.url("/api/v1/whoami")), 200, "whoami").await;
    assert_eq!(who["tenant_id"], a);

    // A tenant's key: never tenants:manage or another platform-only scope, never another
    // tenant; a key it makes belongs to its tenant.
    let create = |scopes: Value, tenant: Option<&str>| {
        let mut body = json!({"name": "k", "scopes": scopes});
        if let Some(t) = tenant {
            body["tenant_id"] = json!(t);
        }
        client_a.post(app.url("/api/v1/api-keys")).json(&body)
    };
    expect_status(create(json!(["tenants:manage"]), None), 422, "tenant key grants tenants:manage")
        .await;
    expect_status(create(json!(["jobs:read"]), None), 422, "tenant key grants jobs:read").await;
    expect_status(
        create(json!(["webhooks:read"]), Some(&b)),
        404,
        "tenant key makes a key elsewhere",
    )
    .await;
    let made =
        expect_status(create(json!(["webhooks:read"]), None), 201, "tenant key makes a key").await;
    assert_eq!(made["tenant_id"], a);
    for path in ["/api/v1/tenants", "/api/v1/queues"] {
        let (status, body) = call(&client_a, "get", &app.url(path), None).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    app.post_json(
        "/api/v1/api-keys",
        &json!({"name": "k", "scopes": ["admin"], "tenant_id": "tn_nope"}),
        404,
    )
    .await;

    // Events stay in their tenant.
    let ep_a = endpoint(&client_a, &app, &rx.url("/a")).await;
    let ep_b = endpoint(&client_b, &app, &rx.url("/b")).await;
    let ep_p = endpoint(&app.http, &app, &rx.url("/p")).await;
    let order = |n: u32| json!({"type": "order.paid", "data": {"n": n}});
    let from_a = publish(&client_a, &app, order(1)).await;
    let from_b = publish(&client_b, &app, order(2)).await;
    let from_p = publish(&app.http, &app, order(3)).await;
    let mut for_a = order(4);
    for_a["tenant_id"] = json!(a);
    let for_a = publish(&app.http, &app, for_a).await;
    assert_eq!([from_a.len(), from_b.len(), from_p.len(), for_a.len()], [1, 1, 1, 1]);
    let mut naming_b = order(5);
    naming_b["tenant_id"] = json!(b);
    expect_status(
        client_a.post(app.url("/api/v1/events")).json(&naming_b),
        404,
        "publish elsewhere",
    )
    .await;
    for (client, delivery, ep) in [
        (&client_a, &from_a[0], &ep_a),
        (&client_b, &from_b[0], &ep_b),
        (&app.http, &from_p[0], &ep_p),
        (&client_a, &for_a[0], &ep_a),
    ] {
        let d = expect_status(
            client.get(app.url(&format!("/api/v1/deliveries/{delivery}"))),
            200,
            "delivery",
        )
        .await;
        assert_eq!(&d["endpoint_id"], ep);
    }
    wait_for("every delivery to arrive", Duration::from_secs(20), || async {
        (rx.count() == 4).then_some(())
    })
    .await;
    let ns = |path: &str| -> Vec<i64> {
        rx.received(path)
            .iter()
            .map(|r| {
                serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"].as_i64().unwrap()
            })
            .collect()
    };
    let mut at_a = ns("/a");
    at_a.sort_unstable();
    assert_eq!((at_a, ns("/b"), ns("/p")), (vec![1, 4], vec![2], vec![3]));

    // Lists never leak; the platform sees its own, or a tenant's when it names it.
    assert_eq!(ids(&list(&app, &client_b, "/api/v1/webhooks").await), vec![ep_b.clone()]);
    assert_eq!(ids(&list(&app, &app.http, "/api/v1/webhooks").await), vec![ep_p.clone()]);
    assert_eq!(
        ids(&list(&app, &app.http, &format!("/api/v1/webhooks?tenant_id={a}")).await),
        vec![ep_a.clone()]
    );
    let b_keys = ids(&list(&app, &client_b, "/api/v1/api-keys").await);
    assert_eq!(b_keys, vec![key_b.clone()]);
    let platform_keys = ids(&list(&app, &app.http, "/api/v1/api-keys").await);
    assert!(
        !platform_keys.contains(&key_a) && !platform_keys.contains(&key_b),
        "{platform_keys:?}"
    );
    app.get_expect(&format!("/api/v1/webhooks/{ep_a}"), 404).await;
    app.get_expect(&format!("/api/v1/webhooks/{ep_a}?tenant_id={a}"), 200).await;
    let (status, _) =
        call(&client_b, "get", &app.url(&format!("/api/v1/webhooks?tenant_id={a}")), None).await;
    assert_eq!(status, 404);

    // Every `{id}` route of the document, given tenant A's ids with tenant B's key: 404 for
    // what tenants own, 403 for what only the platform has.
    let doc = app.get_expect("/openapi.json", 200).await;
    let event_a = app.services.store.delivery(&from_a[0]).await.unwrap().unwrap().event_id;
    let own_ids = [
        ("webhooks", ep_a.as_str()),
        ("deliveries", from_a[0].as_str()),
        ("events", event_a.as_str()),
        ("api-keys", key_a.as_str()),
    ];
    let mut tried = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        let area = path.trim_start_matches('/').split('/').next().unwrap();
        let owned_id = own_ids.iter().find(|(p, _)| *p == area).map(|(_, id)| *id);
        let concrete =
            path.replace("{id}", owned_id.unwrap_or("x_someone_elses")).replace("{name}", "x");
        for (method, op) in ops.as_object().unwrap() {
            // A valid body, so what answers is the ownership check, not validation.
            let body = op.get("requestBody").map(|_| match path.as_str() {
                "/webhooks/{id}/recover" => json!({"since": "2020-01-01T00:00:00Z"}),
                _ => json!({}),
            });
            let (status, answer) =
                call(&client_b, method, &app.url(&format!("/api/v1{concrete}")), body).await;
            let want = if owned_id.is_some() { 404 } else { 403 };
            assert_eq!(status, want, "{method} {path} with another tenant's key: {answer}");
            tried += 1;
        }
    }
    assert!(tried >= 15, "only {tried} operations tried");
    // Nothing of A's changed meanwhile.
    let still = expect_status(
        client_a.get(app.url(&format!("/api/v1/webhooks/{ep_a}"))),
        200,
        "A's endpoint",
    )
    .await;
    assert_eq!(still["status"], "enabled");

    // Usage stays in its tenant.
    wait_for("tenant A's usage", Duration::from_secs(10), || async {
        let u = expect_status(client_a.get(app.url("/api/v1/usage")), 200, "usage").await;
        let keys: Vec<&str> =
            u["keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap()).collect();
        assert!(keys.iter().all(|k| *k == key_a), "only A's keys: {keys:?}");
        (!keys.is_empty()).then_some(())
    })
    .await;

    // Deleting B: its keys stop working, its endpoints stop receiving; listed on request.
    app.delete_expect(&format!("/api/v1/tenants/{b}"), 204).await;
    app.delete_expect(&format!("/api/v1/tenants/{b}"), 404).await;
    let (status, body) = call(&client_b, "get", &app.url("/api/v1/webhooks"), None).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("this API key's tenant has been deleted"))
    );
    let ep = app.services.store.endpoint(&ep_b).await.unwrap().unwrap();
    assert!(!ep.enabled && ep.disabled_reason.as_deref() == Some("tenant deleted"), "{ep:?}");
    assert!(!ids(&app.get_expect("/api/v1/tenants", 200).await).contains(&b));
    let all = app.get_expect("/api/v1/tenants?include_deleted=true", 200).await;
    let gone = all["items"].as_array().unwrap().iter().find(|t| t["id"] == b).expect("listed");
    assert_eq!(gone["status"], "deleted");
    app.post_json(
        "/api/v1/api-keys",
        &json!({"name": "k", "scopes": ["admin"], "tenant_id": b}),
        404,
    )
    .await;
    app.stop().await;
}
both_backends!(tenants_are_kept_apart);

async fn list(app: &TestApp, client: &reqwest::Client, path: &str) -> Value {
    expect_status(client.get(app.url(path)), 200, &format!("GET {path}")).await
}
