//! Unauthenticated probes: `/healthz`, `/readyz` (really touches the store and the queue)
//! and `/metrics`. Every role serves these; `worker` and `scheduler` on their own port.

use std::time::Duration;

use poem::{
    Response, Route, get, handler,
    http::StatusCode,
    web::{Data, Json},
};
use switchyard_shared::{services::Services, telemetry};

use crate::{edge::problem_response, problem::Problem};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[handler]
fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn check<F, E>(fut: F) -> Result<(), String>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

#[handler]
async fn readyz(services: Data<&Services>) -> Response {
    let (store, queue) = tokio::join!(check(services.store.ping()), check(services.queue.ping()));
    let failed: Vec<String> =
        [("store", services.store.kind(), &store), ("queue", services.queue.kind(), &queue)]
            .into_iter()
            .filter_map(|(what, kind, r)| r.as_ref().err().map(|e| format!("{what} ({kind}): {e}")))
            .collect();
    if failed.is_empty() {
        let body = serde_json::json!({
            "status": "ready",
            "checks": {"store": services.store.kind(), "queue": services.queue.kind()},
        });
        Response::builder().content_type("application/json").body(body.to_string())
    } else {
        tracing::warn!(failed = ?failed, "not ready");
        problem_response(&Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!("not ready: {}", failed.join("; ")),
        ))
    }
}

#[handler]
fn metrics_text() -> Response {
    Response::builder().content_type("text/plain; version=0.0.4").body(telemetry::render())
}

/// The probe routes, mounted at the root of every role's HTTP server.
pub fn probe_routes() -> Route {
    Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics_text))
}
