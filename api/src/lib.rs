//! The Switchyard HTTP API (poem + poem-openapi): `/api/v1` behind API keys, the OpenAPI
//! document and Swagger UI, and the probes every role serves. Only this crate (and the
//! simulators) depend on poem.

mod auth;
mod console;
mod document;
mod edge;
mod health;
mod problem;
mod routes;
mod server;
mod strict;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use poem::{Endpoint, EndpointExt, Route, middleware::CatchPanic};
use switchyard_shared::{CancellationToken, services::Services, store::StoreError};

pub use auth::{Authenticator, Principal, bootstrap_admin_key};
pub use edge::RequestId;
pub use problem::{ApiError, FieldError, Problem};
pub use server::{ServeLimits, ServedEndpoint, serve};

#[derive(Debug, thiserror::Error)]
pub enum ApiRunError {
    #[error("bootstrap admin key: {0}")]
    Bootstrap(#[from] StoreError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// The whole API: `/api/v1/…` (authenticated), `/openapi.json`, `/docs`, the console at
/// `/console`, and the probes.
fn app(services: Services, auth: Arc<Authenticator>) -> impl Endpoint {
    let api = routes::openapi(&services, &auth);
    let mut spec: serde_json::Value =
        serde_json::from_str(&api.spec()).expect("poem-openapi writes valid JSON");
    if let Some(paths) = spec["paths"].as_object() {
        edge::set_route_templates(paths.keys().map(|p| format!("/api/v1{p}")).collect());
    }
    strict::install(&mut spec, "/api/v1");
    document::mark_optional_nullable(&mut spec);
    document::remember_methods(&spec, "/api/v1");
    let spec_text = spec.to_string();
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder().content_type("application/json").body(spec_text.clone())
    });
    let docs = api.swagger_ui();
    let body_limit = services.config.http_body_limit_bytes;
    let authenticated = api.with(auth::Authenticate(auth));
    Route::new()
        .nest("/api/v1", authenticated)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/console", console::routes())
        .nest("/", health::probe_routes())
        .data(services)
        .with(CatchPanic::new())
        .around(move |ep, req| edge::edge(ep, req, body_limit))
}

/// Only the probes (`/healthz`, `/readyz`, `/metrics`): what `worker` and `scheduler` serve
/// on their metrics port.
pub fn probe_app(services: Services) -> ServedEndpoint {
    Route::new()
        .nest("/", health::probe_routes())
        .data(services)
        .with(CatchPanic::new())
        .around(move |ep, req| edge::edge(ep, req, 64 * 1024))
        .map_to_response()
        .boxed()
}

/// Binds `addr` (port 0 picks a free one) and returns the listener and its real address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Runs the API on `listener` until `shutdown` is cancelled: puts the bootstrap admin key in
/// place, serves, lets requests in flight finish within the grace period, then writes the
/// last usage records.
#[switchyard_shared::boxed]
pub async fn run(
    services: Services,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ApiRunError> {
    bootstrap_admin_key(&services).await?;
    let limits = ServeLimits::of(&services.config);
    let (auth, tasks) = Authenticator::start(&services, &shutdown);
    let publisher = services.publisher.clone();
    let app = app(services, Arc::clone(&auth)).map_to_response().boxed();
    serve(app, listener, shutdown, limits).await?;
    // Publishes answered are committed; their first attempts may still be on their way to
    // the queue.
    if !publisher.flushed(Duration::from_secs(5)).await {
        tracing::warn!("some published deliveries were not enqueued; the retry sweep will");
    }
    auth.finish().await;
    drop(auth);
    for task in tasks {
        if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
            tracing::warn!("a background task of the API did not stop in time");
        }
    }
    Ok(())
}
