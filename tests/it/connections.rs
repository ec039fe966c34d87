//! Connections that would hold the server's file descriptors forever are closed: a client
//! sending its request head a byte at a time (slowloris) gets the header timeout, and a
//! connection that sits idle gets the idle timeout — on the API port and on the probe port
//! every worker and scheduler serves. Meanwhile ordinary requests are answered.

use crate::support;

use std::{net::SocketAddr, time::Duration};

use support::{Backend, TestEnv};
use switchyard_shared::CancellationToken;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Sends a never-ending request head a byte every 100 ms; returns how long until the server
/// closed the connection, or `None` if it was still open after `give_up`.
async fn dribble_until_closed(addr: SocketAddr, give_up: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";
    let filler = b"X-Slow: abcdefghijklmnopqrstuvwxyz\r\n";
    let mut bytes = head.iter().chain(filler.iter().cycle());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if stream.write_all(&[*bytes.next().unwrap()]).await.is_err() {
                    return Some(started.elapsed());
                }
            }
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                // hyper may answer 408 before closing: keep reading to the close.
                Ok(_) => {}
            },
        }
        if started.elapsed() > give_up {
            return None;
        }
    }
}

/// Sends one whole request on a kept-alive connection, reads its answer, then waits; how
/// long until the server closed it (`None`: still open after `give_up`).
async fn idle_until_closed(addr: SocketAddr, give_up: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let answered = tokio::time::Instant::now();
    match tokio::time::timeout(give_up, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    {
        Ok(()) => Some(answered.elapsed()),
        Err(_) => None,
    }
}

async fn env_with(header_ms: u64, idle_ms: u64) -> Option<TestEnv> {
    let mut env = TestEnv::new(Backend::Embedded).await?;
    env.set("SWITCHYARD_HTTP_HEADER_TIMEOUT_MS", header_ms.to_string())
        .set("SWITCHYARD_HTTP_IDLE_TIMEOUT_MS", idle_ms.to_string());
    Some(env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off_at_the_header_timeout() {
    let Some(env) = env_with(1_000, 60_000).await else { return };
    let app = env.start_api_only().await;
    let slow: Vec<_> = (0..50)
        .map(|_| tokio::spawn(dribble_until_closed(app.addr, Duration::from_secs(8))))
        .collect();
    // While they dribble, an ordinary request is answered.
    support::expect_status(app.anonymous.get(app.url("/healthz")), 200, "GET /healthz").await;
    for task in slow {
        let closed = task.await.unwrap().expect("a dribbling client was still connected after 8 s");
        assert!(closed >= Duration::from_millis(900), "closed before its timeout: {closed:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let Some(env) = env_with(30_000, 1_000).await else { return };
    let app = env.start_api_only().await;
    let closed = idle_until_closed(app.addr, Duration::from_secs(8))
        .await
        .expect("an idle kept-alive connection was still open after 8 s");
    assert!(closed >= Duration::from_millis(900), "closed before its timeout: {closed:?}");
    // A connection that never sends anything at all is closed the same way.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read(&mut [0u8; 16])).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "a silent connection stayed open: {read:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_port_has_the_same_limits() {
    let Some(env) = env_with(1_000, 1_000).await else { return };
    let services = env.services().await;
    let limits = switchyard_api::ServeLimits::of(&services.config);
    let (listener, addr) = switchyard_api::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(switchyard_api::serve(
        switchyard_api::probe_app(services),
        listener,
        shutdown.clone(),
        limits,
    ));
    dribble_until_closed(addr, Duration::from_secs(8))
        .await
        .expect("a dribbling client of the probe port was still connected after 8 s");
    idle_until_closed(addr, Duration::from_secs(8))
        .await
        .expect("an idle connection to the probe port was still open after 8 s");
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
