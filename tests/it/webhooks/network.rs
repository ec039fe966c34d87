//! Webhooks on the network: the SSRF guard at delivery time, why an attempt got no answer, proxies.

use super::*;

/// Inserts an endpoint row directly, as if its URL had passed validation when created (e.g.
/// a name that later resolves elsewhere): the guard at delivery time must still refuse it.
async fn insert_endpoint(app: &TestApp, url: &str) -> String {
    support::insert_endpoint(&app.services, url, "guard.*").await
}

fn blocked_count(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with("switchyard_webhook_blocked_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn the_ssrf_guard_refuses_private_destinations(mut env: TestEnv) {
    env.set("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", "");
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    // At creation: a name that resolves only to loopback is refused.
    app.post_json(
        "/api/v1/webhooks",
        &json!({"url": format!("http://localhost:{port}/x"), "event_types": ["*"]}),
        422,
    )
    .await;

    let urls = [
        format!("http://127.0.0.1:{port}/a"),
        "http://10.0.0.1/b".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://[::1]:{port}/c"),
        format!("http://[::ffff:127.0.0.1]:{port}/d"),
        format!("http://localhost:{port}/e"),
    ];
    for url in &urls {
        insert_endpoint(&app, url).await;
    }
    let before = blocked_count(
        &app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap(),
    );
    let accepted = publish(&app, "guard.check", json!({})).await;
    let ids: Vec<String> = accepted["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), urls.len());
    for id in &ids {
        let d = wait_delivery_status(&app, id, "failed", Duration::from_secs(10)).await;
        assert_eq!(d["attempt_count"], 1, "blocked is permanent: {d}");
        let attempt = &d["attempts"][0];
        assert_eq!(attempt["outcome"], "blocked", "{d}");
        assert!(attempt["error"].as_str().unwrap().contains("SSRF"), "{d}");
    }
    assert_eq!(rx.count(), 0, "nothing reached the receiver");
    let after = blocked_count(
        &app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap(),
    );
    assert!(after >= before + urls.len() as f64, "{before} → {after}");
    app.stop().await;
}
both_backends!(the_ssrf_guard_refuses_private_destinations);

async fn an_allowlisted_loopback_receiver_is_still_reached(mut env: TestEnv) {
    env.set("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8");
    let app = env.start_app().await;
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    insert_endpoint(&app, &format!("http://localhost:{port}/ok")).await;
    insert_endpoint(&app, &format!("http://[::ffff:127.0.0.1]:{port}/mapped")).await;
    let accepted = publish(&app, "guard.check", json!({})).await;
    for id in accepted["deliveries"].as_array().unwrap() {
        wait_for("an outcome", Duration::from_secs(10), || async {
            let d = delivery(&app, id.as_str().unwrap()).await;
            (d["status"] == "delivered" || d["status"] == "failed").then_some(())
        })
        .await;
    }
    assert_eq!(rx.received("/ok").len(), 1, "localhost → 127.0.0.1 is allowlisted");
    assert!(rx.received("/mapped").is_empty(), "the IPv4-mapped form is not the IPv4 block");
    app.stop().await;
}
both_backends!(an_allowlisted_loopback_receiver_is_still_reached);

/// A loopback server that reads a request head and answers `reply` raw (then closes), or
/// never answers when `reply` is `None`.
async fn raw_server(reply: Option<&'static [u8]>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // TLS clients send a ClientHello, not a head: answer after the first read.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") || !seen.starts_with(b"POST") {
                        break;
                    }
                }
                match reply {
                    Some(bytes) => {
                        let _ = stream.write_all(bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    addr
}

async fn attempt_errors_name_their_cause(mut env: TestEnv) {
    env.set("SWITCHYARD_WEBHOOK_TIMEOUT_MS", "1000");
    let app = env.start_app().await;
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let closed = raw_server(Some(b"HTTP/1.1 200 OK\r\nContent-Le")).await;
    let invalid = raw_server(Some(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")).await;
    let plain = raw_server(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
    let silent = raw_server(None).await;
    // (url, outcome, a word the recorded error must contain)
    let cases = [
        (format!("http://{refused}/x"), "connect_refused", "refused"),
        (format!("http://{closed}/x"), "closed_mid_answer", "closed"),
        (format!("http://{invalid}/x"), "invalid_answer", "invalid"),
        (format!("https://{plain}/x"), "tls_error", "message"),
        (format!("http://{silent}/x"), "timeout", "1000 ms"),
    ];
    for (url, _, _) in &cases {
        create_endpoint(&app, url, &["cause.*"]).await;
    }
    let accepted = publish(&app, "cause.check", json!({})).await;
    let ids = accepted["deliveries"].as_array().unwrap().clone();
    assert_eq!(ids.len(), cases.len());
    let mut seen = Vec::new();
    for id in &ids {
        let d = wait_for("a first attempt", Duration::from_secs(20), || async {
            let d = delivery(&app, id.as_str().unwrap()).await;
            d["attempts"][0]["outcome"].is_string().then_some(d)
        })
        .await;
        let attempt = &d["attempts"][0];
        let url = d["url"].as_str().or(d["endpoint_url"].as_str()).map(str::to_owned);
        seen.push((
            attempt["outcome"].as_str().unwrap().to_owned(),
            attempt["error"].as_str().unwrap_or_default().to_owned(),
            url,
        ));
    }
    for (_, outcome, word) in &cases {
        let found = seen.iter().find(|(o, _, _)| o == outcome);
        let (_, error, _) =
            found.unwrap_or_else(|| panic!("no attempt recorded {outcome}: {seen:?}"));
        assert!(error.to_lowercase().contains(word), "{outcome}: {error}");
        assert!(!error.contains("127.0.0.1"), "the error names no URL: {error}");
    }
    let metrics =
        app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for (_, outcome, _) in &cases {
        let label = format!("status_class=\"{outcome}\"");
        assert!(
            metrics.lines().any(|l| l.starts_with("switchyard_webhook_deliveries_total") && l.contains(&label)),
            "no delivery counted with {label}"
        );
    }
    app.stop().await;
}
both_backends!(attempt_errors_name_their_cause);

/// A loopback "HTTP proxy" that answers every request itself (200) and records its request
/// lines (absolute-form `POST http://host:port/path HTTP/1.1`, or `CONNECT host:port`).
async fn recording_proxy() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>)
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let log = std::sync::Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                log.lock().unwrap().push(text.lines().next().unwrap_or_default().to_owned());
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

/// `HTTP_PROXY` and friends in a worker's environment used to send every delivery to that
/// proxy, which resolved the name itself: the guard never saw the address.
async fn proxies_from_the_environment_are_ignored(mut env: TestEnv) {
    let (proxy, proxied) = recording_proxy().await;
    let proxy_url = format!("http://{proxy}");
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]
    {
        env.set(var, proxy_url.clone());
    }
    env.set("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", "");
    let app = env.start_api_only().await;
    let (_worker, _) = env.spawn_role("worker", &["--queues", "webhooks"]).await;
    let rx = Receiver::start().await;
    insert_endpoint(&app, &format!("http://localhost:{}/private", rx.addr.port())).await;
    let accepted = publish(&app, "guard.check", json!({})).await;
    let id = accepted["deliveries"][0].as_str().unwrap().to_owned();
    let d = wait_delivery_status(&app, &id, "failed", Duration::from_secs(20)).await;
    assert_eq!(d["attempts"][0]["outcome"], "blocked", "{d}");
    assert_eq!(proxied.lock().unwrap().len(), 0, "nothing went to the proxy");
    assert_eq!(rx.count(), 0);
    app.stop().await;
}
both_backends!(proxies_from_the_environment_are_ignored);

/// With `SWITCHYARD_WEBHOOK_PROXY`, deliveries go through it, but only once the destination
/// has been resolved and checked here.
async fn a_configured_proxy_gets_only_checked_destinations(mut env: TestEnv) {
    let (proxy, proxied) = recording_proxy().await;
    env.set("SWITCHYARD_WEBHOOK_PROXY", format!("http://{proxy}"));
    // 127.0.0.2 may be reached; localhost (127.0.0.1, ::1) may not.
    env.set("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", "127.0.0.2/32");
    let app = env.start_app().await;
    insert_endpoint(&app, "http://localhost:9/private").await;
    insert_endpoint(&app, "http://127.0.0.2:9/allowed").await;
    insert_endpoint(&app, "http://127.0.0.3:9/literal").await;
    let accepted = publish(&app, "guard.check", json!({})).await;
    let mut outcomes = Vec::new();
    for id in accepted["deliveries"].as_array().unwrap() {
        let d = wait_for("an outcome", Duration::from_secs(20), || async {
            let d = delivery(&app, id.as_str().unwrap()).await;
            (d["status"] == "delivered" || d["status"] == "failed").then_some(d)
        })
        .await;
        outcomes
            .push((d["status"].as_str().unwrap().to_owned(), d["attempts"][0]["outcome"].clone()));
    }
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        outcomes,
        [
            ("delivered".to_owned(), json!("http_status")),
            ("failed".to_owned(), json!("blocked")),
            ("failed".to_owned(), json!("blocked")),
        ]
    );
    let seen = proxied.lock().unwrap().clone();
    assert_eq!(seen, ["POST http://127.0.0.2:9/allowed HTTP/1.1"], "only the allowed one went out");
    app.stop().await;
}
both_backends!(a_configured_proxy_gets_only_checked_destinations);
