//! Realistic local simulators of the third-party APIs Switchyard talks to (their hosts are
//! unreachable here): PIDKey's `pidms_api` and Sikka's v4 API. They speak the exact wire
//! formats (as their vendors document them) over real HTTP on loopback, with the quirks and failure modes
//! that break integrations, and keep a log of requests for tests to assert on. Used by the
//! test suite, the benchmarks and `switchyard sandbox`.

pub mod pidkey;
pub mod sikka;

use std::net::SocketAddr;

use poem::{Endpoint, EndpointExt, Response, Server, endpoint::BoxEndpoint, listener::TcpAcceptor};

/// Serves `endpoint` on `addr` (port 0 picks one); returns the bound address and the task.
pub async fn serve(
    addr: SocketAddr,
    endpoint: impl Endpoint + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, spawn_server(listener, endpoint.map_to_response().boxed())?))
}

/// Neither generic nor async, so poem's server (hyper's HTTP/1 and HTTP/2 connection code) is
/// compiled once, here, instead of again in every crate that serves an endpoint.
fn spawn_server(
    listener: tokio::net::TcpListener,
    endpoint: BoxEndpoint<'static, Response>,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    Ok(tokio::spawn(Server::new_with_acceptor(acceptor).run(endpoint)))
}
