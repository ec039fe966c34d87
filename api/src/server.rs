//! The HTTP server of every port (API, worker and scheduler probes): hyper's connection
//! builder with a timer, so a client has [`ServeLimits::header_read`] to send a request head
//! (poem 3.1's own server builds hyper without a timer, which silently drops hyper's header
//! timeout: a client sending a byte a second held its connection forever), and idle
//! connections closed after [`ServeLimits::idle`]. Graceful shutdown as before: stop
//! accepting, let requests in flight finish within the grace period.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use poem::{
    Endpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use switchyard_shared::{CancellationToken, config::Config};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

/// The time limits of a served port.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Requests in flight at shutdown get this long to finish.
    pub grace: Duration,
    /// A request head must arrive within this (on HTTP/1.1 also the keep-alive wait).
    pub header_read: Duration,
    /// No request in flight and no byte either way for this long: the connection is closed.
    pub idle: Duration,
}

impl ServeLimits {
    pub fn of(config: &Config) -> Self {
        Self {
            grace: config.shutdown_grace(),
            header_read: Duration::from_millis(config.http_header_timeout_ms),
            idle: Duration::from_millis(config.http_idle_timeout_ms),
        }
    }
}

/// Serves `endpoint` until `shutdown` is cancelled, then lets requests in flight finish
/// within `limits.grace`.
#[switchyard_shared::boxed]
pub async fn serve(
    endpoint: ServedEndpoint,
    listener: TcpListener,
    shutdown: CancellationToken,
    limits: ServeLimits,
) -> io::Result<()> {
    let endpoint = Arc::new(endpoint);
    let local = LocalAddr(listener.local_addr()?.into());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(
                        stream,
                        local.clone(),
                        remote,
                        Arc::clone(&endpoint),
                        shutdown.clone(),
                        limits,
                    ));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = shutdown.cancelled() => break,
        }
    }
    drop(listener);
    // Each connection finishes its request in flight (or gives up at the grace period).
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// What a port serves: boxed, so the server below is compiled once for every endpoint.
pub type ServedEndpoint = poem::endpoint::BoxEndpoint<'static, poem::Response>;

async fn connection(
    stream: TcpStream,
    local: LocalAddr,
    remote: SocketAddr,
    endpoint: Arc<ServedEndpoint>,
    shutdown: CancellationToken,
    limits: ServeLimits,
) {
    let activity = Arc::new(Activity::new());
    let service = hyper::service::service_fn({
        let activity = Arc::clone(&activity);
        let remote = RemoteAddr(remote.into());
        move |req: hyper::Request<hyper::body::Incoming>| {
            let endpoint = Arc::clone(&endpoint);
            let request = poem::Request::from((req, local.clone(), remote.clone(), Scheme::HTTP));
            let in_flight = InFlight::enter(Arc::clone(&activity));
            async move {
                let response = endpoint.get_response(request).await;
                drop(in_flight);
                Ok::<hyper::Response<_>, Infallible>(response.into())
            }
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    let io = TokioIo::new(Tracked { inner: stream, activity: Arc::clone(&activity) });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%remote, %error, "connection ended with an error");
            }
            return;
        }
        () = activity.idle_for(limits.idle) => {
            tracing::debug!(%remote, "closing an idle connection");
            return;
        }
        () = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.grace, conn).await;
}

/// When the connection last moved a byte, and how many requests it has in flight.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once the connection has had no request in flight and moved no byte for
    /// `limit`; a request being handled (however long its handler takes) keeps it open.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep_until(deadline.max(Instant::now() + limit / 4).into()).await;
        }
    }
}

/// A request being handled; on drop the connection counts as active again from now.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting every byte moved.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
