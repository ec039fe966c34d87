//! Bad input gets a clear 4xx, the same on both backends: NUL characters (PostgreSQL cannot
//! store them in text) in JSON strings, query parameters and path ids; pages past the end of
//! what an offset can address; work whose upstream is not configured (409, not a 503);
//! bodies held to the OpenAPI document (unknown fields, wrong types, bounded lists).

use crate::support;

use serde_json::{Value, json};
use support::{TestApp, TestEnv};

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let resp = app.http.post(app.url(path)).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

async fn nul_characters_are_refused(env: TestEnv) {
    let app = env.start_api_only().await;

    let (status, problem) = post(
        &app,
        "/api/v1/webhooks",
        json!({"url": "https://example.com/hook", "event_types": ["a.b"], "description": "a\u{0}b"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["description"]);

    let (status, problem) =
        post(&app, "/api/v1/api-keys", json!({"name": "x\u{0}", "scopes": ["webhooks:read"]}))
            .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["name"]);

    let (status, problem) = post(
        &app,
        "/api/v1/events/batch",
        json!({"events": [{"type": "a.b", "data": {}}, {"type": "a.b", "data": {"k": ["ok", "\u{0}"]}}]}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["events[1].data.k[1]"]);

    let (status, problem) = app.get_json("/api/v1/pidms/keys?product=%00").await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["product"]);

    for path in ["/api/v1/webhooks/%00", "/api/v1/deliveries/%00", "/api/v1/jobs/a%00b"] {
        let (status, problem) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}: {problem}");
    }

    // A backslash followed by "u0000" is text, not a NUL: accepted.
    let (status, body) = post(
        &app,
        "/api/v1/webhooks",
        json!({"url": "https://example.com/hook", "event_types": ["a.b"], "description": "\\u0000"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["description"], "\\u0000");
    app.stop().await;
}
both_backends!(nul_characters_are_refused);

async fn pages_past_the_last_are_refused(env: TestEnv) {
    let app = env.start_api_only().await;
    for query in
        ["page=9223372036854775807", "page=4611686018427387905&page_size=2", "page=1000001"]
    {
        let (status, problem) = app.get_json(&format!("/api/v1/webhooks?{query}")).await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(fields(&problem), ["page"], "{query}");
    }
    let (status, page) = app.get_json("/api/v1/webhooks?page=1000000&page_size=500").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(page["page"], 1_000_000);
    app.stop().await;
}
both_backends!(pages_past_the_last_are_refused);

async fn work_that_is_not_configured_is_a_conflict(mut env: TestEnv) {
    env.unset("PIDKEY_API_KEY").unset("SIKKA_APP_ID").unset("SIKKA_APP_KEY");
    let app = env.start_api_only().await;
    for (path, body, missing) in [
        ("/api/v1/sikka/practices/refresh", json!({}), "SIKKA_APP_ID and SIKKA_APP_KEY"),
        ("/api/v1/pidms/check", json!({"keys": "VK7JG-NPHTM-C97JM-9MPGT-3V66T"}), "PIDKEY_API_KEY"),
        ("/api/v1/pidms/sync", json!({}), "PIDKEY_API_KEY"),
    ] {
        let (status, problem) = post(&app, path, body).await;
        assert_eq!(status, 409, "{path}: {problem}");
        assert_eq!(problem["type"], "urn:switchyard:problem:not-configured", "{path}");
        assert!(problem["detail"].as_str().unwrap().contains(missing), "{path}: {problem}");
    }
    app.stop().await;
}
both_backends!(work_that_is_not_configured_is_a_conflict);

fn field_messages(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap().to_owned(),
                        e["message"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn bodies_are_held_to_the_document(env: TestEnv) {
    let app = env.start_api_only().await;
    let hook = |extra: Value| {
        let mut body = json!({"url": "https://example.com/hook", "event_types": ["a.b"]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };

    let (status, problem) = post(&app, "/api/v1/webhooks", hook(json!({"urll": "x"}))).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(field_messages(&problem), [("urll".to_owned(), "unknown field".to_owned())]);

    let (status, problem) = post(&app, "/api/v1/events", json!({"type": 42, "data": {}})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(field_messages(&problem), [("type".to_owned(), "must be a string".to_owned())]);

    let (status, problem) = post(
        &app,
        "/api/v1/webhooks",
        hook(json!({"description": true, "rate_limit_per_second": "5"})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let mut got = fields(&problem);
    got.sort();
    assert_eq!(got, ["description", "rate_limit_per_second"]);

    let many: Vec<String> = (0..257).map(|i| format!("t.e{i}")).collect();
    let (status, problem) =
        post(&app, "/api/v1/webhooks", hook(json!({"event_types": many}))).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["event_types"]);
    // 256 are fine.
    let (status, body) =
        post(&app, "/api/v1/webhooks", hook(json!({"event_types": &many[..256]}))).await;
    assert_eq!(status, 201, "{body}");
    // A description is at most 500 characters, on create and on change alike.
    let id = body["id"].as_str().unwrap();
    let long = "d".repeat(501);
    let (status, problem) =
        post(&app, "/api/v1/webhooks", hook(json!({"description": long}))).await;
    assert_eq!((status, fields(&problem)), (422, vec!["description"]), "{problem}");
    let problem =
        app.patch_json(&format!("/api/v1/webhooks/{id}"), &json!({"description": long}), 422).await;
    assert_eq!(fields(&problem), ["description"]);

    let (status, problem) = post(
        &app,
        "/api/v1/events/batch",
        json!({"events": [{"type": "a.b", "data": {"free": "form"}}, {"type": "a.b", "data": {}, "extra": 1}]}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["events[1].extra"]);

    // A key without the scope is refused for that, whatever its body says.
    let (_, reader) = app.create_key(json!({"name": "reader", "scopes": ["webhooks:read"]})).await;
    support::expect_status(
        support::http_with_key(&reader)
            .post(app.url("/api/v1/webhooks"))
            .json(&hook(json!({"urll": "x"}))),
        403,
        "POST /api/v1/webhooks",
    )
    .await;

    // The document says so.
    let (_, spec) = app.get_json("/openapi.json").await;
    let create = &spec["components"]["schemas"]["CreateEndpoint"];
    assert_eq!(create["additionalProperties"], false, "{create}");
    assert_eq!(create["properties"]["event_types"]["maxItems"], 256, "{create}");
    assert_eq!(spec["components"]["schemas"]["PublishEvent"]["additionalProperties"], false);
    app.stop().await;
}
both_backends!(bodies_are_held_to_the_document);

async fn the_document_matches_the_answers(env: TestEnv) {
    let app = env.start_api_only().await;
    // A 405 names what is allowed.
    let resp =
        app.http.request(reqwest::Method::TRACE, app.url("/api/v1/whoami")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    // Optional fields answered as null are declared nullable; `errors` is optional.
    let (_, spec) = app.get_json("/openapi.json").await;
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["KeyView"]["properties"]["expires_at"]["nullable"], true);
    assert_eq!(schemas["QueueView"]["properties"]["canary"]["nullable"], true);
    assert!(!schemas["Problem"]["required"].as_array().unwrap().contains(&Value::from("errors")));
    // A key cannot lock its holder out by revoking itself.
    let (_, whoami) = app.get_json("/api/v1/whoami").await;
    let me = whoami["key_id"].as_str().or(whoami["id"].as_str()).unwrap().to_owned();
    app.delete_expect(&format!("/api/v1/api-keys/{me}"), 409).await;
    app.patch_json(&format!("/api/v1/api-keys/{me}"), &json!({"active": false}), 409).await;
    let (status, _) = app.get_json("/api/v1/whoami").await;
    assert_eq!(status, 200, "still works");
    app.stop().await;
}
both_backends!(the_document_matches_the_answers);
