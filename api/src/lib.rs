//! The Switchyard HTTP API (poem + poem-openapi): `/api/v1`, the OpenAPI document and
//! Swagger UI, and the probes every role serves. Only this crate depends on poem.

mod edge;
mod health;
mod problem;
mod routes;

use std::{net::SocketAddr, time::Duration};

use poem::{Endpoint, EndpointExt, Route, Server, listener::TcpAcceptor, middleware::CatchPanic};
use switchyard_shared::{CancellationToken, services::Services};

pub use edge::RequestId;
pub use problem::{ApiError, FieldError, Problem};

/// The whole API: `/api/v1/…`, `/openapi.json`, `/docs`, and the probes.
pub fn app(services: Services) -> impl Endpoint {
    let api = routes::openapi(&services);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let body_limit = services.config.http_body_limit_bytes;
    Route::new()
        .nest("/api/v1", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", health::probe_routes())
        .data(services)
        .with(CatchPanic::new())
        .around(move |ep, req| edge::edge(ep, req, body_limit))
}

/// Only the probes (`/healthz`, `/readyz`, `/metrics`): what `worker` and `scheduler` serve
/// on their metrics port.
pub fn probe_app(services: Services) -> impl Endpoint {
    Route::new()
        .nest("/", health::probe_routes())
        .data(services)
        .with(CatchPanic::new())
        .around(move |ep, req| edge::edge(ep, req, 64 * 1024))
}

/// Binds `addr` (port 0 picks a free one) and returns the listener and its real address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `endpoint` until `shutdown` is cancelled, then lets requests in flight finish
/// within `grace`.
pub async fn serve(
    endpoint: impl Endpoint + 'static,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            endpoint,
            async move { shutdown.cancelled().await },
            Some(grace),
        )
        .await
}
