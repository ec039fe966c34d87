//! An address over its authentication-failure limit costs no store lookups: its guesses
//! (well-formed keys with valid checksums) are refused from memory, while a key already in
//! the cache keeps working. Its own test binary, so the process-wide metrics it reads are
//! moved by nothing else; the two backends run one after the other.

use crate::support;

use support::{Backend, TestEnv};
use switchyard_shared::access::{Environment, RawKey};

const LIMIT: u32 = 5;
const GUESSES: usize = 200;

fn counter(metrics: &str, source: &str) -> f64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("switchyard_auth_key_lookups_total{")
                && l.contains(&format!("source=\"{source}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn throttled_guesses_skip_the_store(mut env: TestEnv) {
    env.set("SWITCHYARD_AUTH_FAILURE_LIMIT_PER_MINUTE", LIMIT.to_string());
    let app = env.start_api_only().await;
    // The admin key is looked up once and cached.
    let (status, _) = app.get_json("/api/v1/whoami").await;
    assert_eq!(status, 200);
    let guess = || async {
        let key = RawKey::generate(Environment::Test);
        let resp = app
            .anonymous
            .get(app.url("/api/v1/whoami"))
            .bearer_auth(key.expose())
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    };
    let mut statuses = Vec::new();
    for _ in 0..=LIMIT {
        statuses.push(guess().await);
    }
    assert_eq!(statuses.last(), Some(&429), "over the limit: {statuses:?}");
    let metrics = |app: &support::TestApp| {
        let url = app.url("/metrics");
        let http = app.anonymous.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let before = metrics(&app).await;
    for _ in 0..GUESSES {
        assert_eq!(guess().await, 429);
    }
    let after = metrics(&app).await;
    assert_eq!(
        counter(&after, "store"),
        counter(&before, "store"),
        "a throttled address's guesses were looked up in the store"
    );
    assert_eq!(counter(&after, "skipped") - counter(&before, "skipped"), GUESSES as f64);
    // A key in the cache is not a guess: it keeps working from that address.
    let (status, _) = app.get_json("/api/v1/whoami").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_guesses_skip_the_store_on_both_backends() {
    for backend in [Backend::Embedded, Backend::Fleet] {
        if let Some(env) = TestEnv::new(backend).await {
            throttled_guesses_skip_the_store(env).await;
        }
    }
}
