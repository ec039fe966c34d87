//! The console in a real headless Chromium: sign in (the key in the tab's session only);
//! every page loads with no console error; create an endpoint, send a test, see it fail,
//! redeliver, see it delivered; create a key (shown once, gone after a reload) and revoke
//! one; a read-only key sees no write control; a tenant's key sees only its tenant; hostile
//! text stays text. Screenshots of each page land in `target/console-screenshots/`.

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};

use crate::support::{
    Backend, TestApp, TestEnv,
    browser::Browser,
    expect_status, http_with_key,
    receiver::{Receiver, Reply},
    wait_for,
};

const PAGES: &[(&str, &str)] = &[
    ("/console", "Overview"),
    ("/console/queues/webhooks", "Queue webhooks"),
    ("/console/webhooks", "Webhooks"),
    ("/console/events", "Events"),
    ("/console/api-keys", "API keys"),
    ("/console/tenants", "Tenants"),
    ("/console/audit-log", "Audit log"),
    ("/console/pidms", "PIDMS"),
    ("/console/sikka", "Sikka"),
    ("/console/schedules", "Schedules"),
];

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}

/// A button or link by its text.
fn by_text(tag: &str, text: &str) -> String {
    format!("//{tag}[normalize-space()='{text}']")
}

/// Opens `path` and waits until its page has rendered (its heading is up, loading is over).
async fn open(b: &Browser, app: &TestApp, path: &str, heading: &str) {
    b.goto(&app.url(path)).await;
    let h1 = format!("//main//h1[starts-with(normalize-space(), '{heading}')]");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let loading = b.find("//main//p[normalize-space()='Loading…']").await.is_some();
        if !loading && b.find(&h1).await.is_some() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let (text, logs) = (b.text().await, b.console().await);
            panic!("{path} did not render {heading:?}; the page says:\n{text}\nconsole: {logs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(b: &Browser, app: &TestApp, key: &str) {
    b.goto(&app.url("/console")).await;
    let input = b.wait("//input[@name='api_key']").await;
    b.type_into(&input, &format!("{key}\u{E007}")).await; // Enter submits
    b.wait("//button[normalize-space()='Sign out']").await;
}

async fn sign_out(b: &Browser) {
    let out = b.wait(&by_text("button", "Sign out")).await;
    b.click(&out).await;
    b.wait("//input[@name='api_key']").await;
}

/// Reloads `path` until its text contains `want`. The deadline is generous: each reload
/// renders a page in Chromium while the rest of the suite (the SDK suites' servers among it)
/// shares the machine's two cores.
async fn reload_until(b: &Browser, app: &TestApp, path: &str, heading: &str, want: &str) {
    wait_for(&format!("{path} to show {want:?}"), Duration::from_secs(45), || async {
        open(b, app, path, heading).await;
        b.text().await.contains(want).then_some(())
    })
    .await;
}

fn severe(logs: &[Value]) -> Vec<&Value> {
    logs.iter().filter(|l| l["level"] == "SEVERE").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let Some(mut env) = TestEnv::new(Backend::Embedded).await else { return };
    let Some(b) = Browser::start().await else { return };
    env.set("SWITCHYARD_RATE_LIMIT_PER_MINUTE", "100000");
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    rx.script("/hook", vec![Reply::Status(500)]);

    // Sign in: the key is in this tab's session storage, nowhere else.
    sign_in(&b, &app, env.admin_key()).await;
    let kept = b
        .script(
            "return [sessionStorage.getItem('switchyard.api_key'), localStorage.length, \
             document.cookie, location.href]",
        )
        .await;
    assert_eq!(kept[0], env.admin_key());
    assert_eq!((kept[1].as_i64(), kept[2].as_str()), (Some(0), Some("")));
    assert!(!kept[3].as_str().unwrap().contains(env.admin_key()), "not in the URL");

    // Every page loads, without a problem shown or a console error.
    b.console().await;
    for (path, heading) in PAGES {
        open(&b, &app, path, heading).await;
        assert!(b.find("//div[@class='problem']").await.is_none(), "{path}: {}", b.text().await);
        let name = path.trim_start_matches('/').replace('/', "-");
        b.screenshot(&shots().join(format!("{name}.png"))).await;
    }
    let logs = b.console().await;
    assert!(severe(&logs).is_empty(), "console errors: {logs:#?}");

    // An endpoint made in the console; a test sent, failed, redelivered, delivered.
    open(&b, &app, "/console/webhooks", "Webhooks").await;
    let url = b.wait("//input[@name='url']").await;
    b.type_into(&url, &rx.url("/hook")).await;
    let types = b.wait("//input[@name='event_types']").await;
    b.type_into(&types, "console.*").await;
    b.click(&b.wait(&by_text("button", "Create")).await).await;
    b.wait("//div[@class='once']//code").await;
    assert!(b.text().await.contains("whsec_"), "the secret is shown once");
    b.click(&b.wait("//a[starts-with(normalize-space(), 'Open ep_')]").await).await;
    b.click(&b.wait(&by_text("button", "Send test")).await).await;
    let delivery = b.wait("//p[starts-with(normalize-space(), 'Test sent')]/a").await;
    b.click(&delivery).await;
    b.wait("//main//h1[starts-with(normalize-space(), 'Delivery')]").await;
    let path = b.script("return location.pathname").await.as_str().unwrap().to_owned();
    reload_until(&b, &app, &path, "Delivery", "Redeliver").await;
    assert_eq!(rx.received("/hook").len(), 4, "four attempts, all 500");
    rx.script("/hook", vec![Reply::Status(200)]);
    b.click(&b.wait(&by_text("button", "Redeliver")).await).await;
    // The receiver's side first, so a failure says which half was slow: the redelivery
    // itself, or the page showing it.
    wait_for("the redelivery at the receiver", Duration::from_secs(45), || async {
        (rx.received("/hook").len() >= 5).then_some(())
    })
    .await;
    reload_until(&b, &app, &path, "Delivery", "delivered").await;
    assert_eq!(rx.received("/hook").len(), 5);
    b.screenshot(&shots().join("console-deliveries-id.png")).await;

    // Keys: shown once (gone after a reload); revoked from the list.
    open(&b, &app, "/console/api-keys", "API keys").await;
    b.type_into(&b.wait("//input[@name='name']").await, "reader").await;
    b.click(&b.wait("//input[@value='webhooks:read']").await).await;
    b.click(&b.wait(&by_text("button", "Create key")).await).await;
    b.wait("//div[@class='once']//code").await;
    let reader = b
        .script("return document.querySelector('div.once code').textContent")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reader.starts_with("sy_"), "{reader}");
    open(&b, &app, "/console/api-keys", "API keys").await;
    assert!(!b.text().await.contains(&reader), "the key is not shown again");
    let (doomed, _) = app.create_key(json!({"name": "doomed", "scopes": ["usage:read"]})).await;
    open(&b, &app, "/console/api-keys", "API keys").await;
    b.click(
        &b.wait("//tr[td[normalize-space()='doomed']]//button[normalize-space()='Revoke']").await,
    )
    .await;
    wait_for("the key revoked", Duration::from_secs(10), || async {
        let (_, key) =
            app.get_json(&format!("/api/v1/api-keys/{doomed}?include_deleted=true")).await;
        (key["status"] == "revoked").then_some(())
    })
    .await;

    // A read-only key: no write controls anywhere it can look.
    sign_out(&b).await;
    assert_eq!(b.script("return sessionStorage.length").await, 0, "sign-out forgets the key");
    sign_in(&b, &app, &reader).await;
    open(&b, &app, "/console/webhooks", "Webhooks").await;
    assert!(b.find(&by_text("button", "Create")).await.is_none());
    let endpoint = b.wait("//td/a[starts-with(normalize-space(), 'ep_')]").await;
    b.click(&endpoint).await;
    b.wait("//main//h1[starts-with(normalize-space(), 'Webhook')]").await;
    b.wait("//dl[@class='facts']").await;
    for control in ["Send test", "Rotate secret", "Disable", "Recover"] {
        assert!(b.find(&by_text("button", control)).await.is_none(), "{control} is hidden");
    }
    let nav = b.script("return document.getElementById('nav').innerText").await;
    assert!(!nav.as_str().unwrap().contains("API keys"), "{nav}");

    // A tenant's key sees only its tenant; hostile text stays text.
    let tenant = app.post_json("/api/v1/tenants", &json!({"name": "acme"}), 201).await;
    let key = app
        .post_json(
            "/api/v1/api-keys",
            &json!({"name": "acme", "scopes": ["admin"], "tenant_id": tenant["id"]}),
            201,
        )
        .await;
    let tenant_key = key["key"].as_str().unwrap().to_owned();
    let theirs = http_with_key(&tenant_key);
    let hostile = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";
    let body = json!({"url": rx.url("/acme"), "event_types": ["acme.*"], "description": hostile});
    let ep = expect_status(theirs.post(app.url("/api/v1/webhooks")).json(&body), 201, "ep").await;
    let ep = ep["id"].as_str().unwrap().to_owned();
    let event = json!({"type": "acme.hostile", "data": {"html": hostile}});
    let published =
        expect_status(theirs.post(app.url("/api/v1/events")).json(&event), 202, "event").await;
    sign_out(&b).await;
    sign_in(&b, &app, &tenant_key).await;
    open(&b, &app, "/console/webhooks", "Webhooks").await;
    let text = b.text().await;
    assert!(text.contains(&ep) && text.contains(hostile), "{text}");
    assert_eq!(
        b.script("return document.querySelectorAll('main td a').length").await,
        1,
        "only the tenant's endpoint: {text}"
    );
    let nav = b.script("return document.getElementById('nav').innerText").await;
    for platform in ["Tenants", "PIDMS", "Sikka", "Schedules"] {
        assert!(!nav.as_str().unwrap().contains(platform), "{platform} in {nav}");
    }
    let event_id = published["id"].as_str().unwrap();
    open(&b, &app, &format!("/console/events/{event_id}"), "Event").await;
    assert!(b.text().await.contains("window.__pwned=2"), "the payload is shown as text");
    open(&b, &app, &format!("/console/webhooks/{ep}"), "Webhook").await;
    let inert = b
        .script("return window.__pwned === undefined && document.querySelectorAll('main img, main script').length === 0")
        .await;
    assert_eq!(inert, true, "hostile text ran or became markup");

    // The overview with some traffic on it (the README's picture), then at phone width:
    // nothing wider than the screen.
    sign_out(&b).await;
    sign_in(&b, &app, env.admin_key()).await;
    open(&b, &app, "/console", "Overview").await;
    b.wait("//figure//*[name()='text' and contains(., '/min')]").await;
    b.screenshot(&shots().join("console-overview.png")).await;
    b.resize(390, 844).await;
    open(&b, &app, "/console", "Overview").await;
    let fits = b.script("return document.documentElement.scrollWidth <= window.innerWidth").await;
    assert_eq!(fits, true, "the overview fits a phone-width screen");
    b.screenshot(&shots().join("console-phone.png")).await;
    b.quit().await;
    app.stop().await;
}
