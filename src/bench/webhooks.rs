//! `switchyard bench webhooks`: the whole delivery path, measured. Starts a fast local
//! receiver, an API process and worker processes (this same binary), creates endpoints,
//! publishes events through the REST API, and reports publish requests/s, deliveries/s,
//! end-to-end latency percentiles, worker CPU per delivery and peak RSS.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::bail;
use poem::{Endpoint, Request, Response, Server, listener::TcpAcceptor};

use super::{Stack, StackArgs, percentile, proc_usage};

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookBench {
    /// Events to publish.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Endpoints subscribed to every event (deliveries = events × endpoints).
    #[arg(long, default_value_t = 1)]
    endpoints: usize,
    /// Publish at this many events per second (0: as fast as the API takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Publish requests in flight at once.
    #[arg(long, default_value_t = 32)]
    publishers: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Jobs at once per worker.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Give up when not every delivery has arrived this long after publishing ended.
    #[arg(long, default_value_t = 600)]
    wait_secs: u64,
    #[command(flatten)]
    stack: StackArgs,
}

/// Arrival times of deliveries, by webhook-id, and each event's accepted time.
#[derive(Default)]
struct Arrivals {
    first: Option<Instant>,
    last: Option<Instant>,
    latencies_ms: Vec<f64>,
    ids: std::collections::HashSet<String>,
    requests: usize,
}

struct Sink(Arc<Mutex<Arrivals>>);

impl Endpoint for Sink {
    type Output = Response;
    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let body = req.take_body().into_vec().await.unwrap_or_default();
        let now = chrono::Utc::now();
        let id =
            req.headers().get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let accepted = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| {
            v["timestamp"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        });
        let mut a = self.0.lock().expect("arrivals lock");
        let at = Instant::now();
        a.first.get_or_insert(at);
        a.last = Some(at);
        a.requests += 1;
        if a.ids.insert(id)
            && let Some(t) = accepted
        {
            a.latencies_ms.push(
                (now - t.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0) as f64
                    / 1000.0,
            );
        }
        Ok(Response::builder().body("ok"))
    }
}

pub async fn run(opts: WebhookBench) -> anyhow::Result<()> {
    // The receiver.
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr: SocketAddr = listener.local_addr()?;
    let sink = Sink(Arc::clone(&arrivals));
    tokio::spawn(async move {
        Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?).run(sink).await
    });
    let stack = Stack::new(
        &opts.stack,
        &[
            ("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8".into()),
            ("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", opts.concurrency.to_string()),
            ("SWITCHYARD_WORKER_BATCH_SIZE", "100".into()),
        ],
    )
    .await?;
    let result = run_inner(&opts, &stack, sink_addr, &arrivals).await;
    stack.finish(result).await
}

async fn run_inner(
    opts: &WebhookBench,
    stack: &Stack,
    sink_addr: SocketAddr,
    arrivals: &Arc<Mutex<Arrivals>>,
) -> anyhow::Result<()> {
    let api = stack.start_api().await?;
    let (http, base) = (stack.http.clone(), stack.base.clone());
    let auth = stack.auth();
    for i in 0..opts.endpoints {
        let resp = http
            .post(format!("{base}/api/v1/webhooks"))
            .header("authorization", &auth)
            .json(&serde_json::json!({"url": format!("http://{sink_addr}/e{i}"), "event_types": ["bench.*"]}))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("creating an endpoint: {} {}", resp.status(), resp.text().await?);
        }
    }
    let mut workers = Vec::new();
    for i in 0..opts.workers {
        let conc = opts.concurrency.to_string();
        let args = [
            "worker",
            "--queues",
            "webhooks",
            "--concurrency",
            &conc,
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        workers.push(stack.spawn(&format!("worker-{i}"), &args)?);
    }
    let cpu_before: Vec<f64> = workers.iter().map(|w| proc_usage(w.pid()).1).collect();

    // Publish.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..opts.publishers {
        let (http, auth, base, next) =
            (http.clone(), auth.clone(), base.clone(), Arc::clone(&next));
        let (events, rate) = (opts.events, opts.rate);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    return Ok::<(), anyhow::Error>(());
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let resp = http
                    .post(format!("{base}/api/v1/events"))
                    .header("authorization", &auth)
                    .json(&serde_json::json!({"type": "bench.tick", "data": {"i": i}}))
                    .send()
                    .await?;
                if resp.status() != 202 {
                    bail!("publish: {} {}", resp.status(), resp.text().await?);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let publish_secs = started.elapsed().as_secs_f64();

    // Wait for every delivery.
    let expected = opts.events * opts.endpoints;
    let deadline = Instant::now() + Duration::from_secs(opts.wait_secs);
    loop {
        let got = arrivals.lock().expect("arrivals lock").ids.len();
        if got >= expected {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {got} of {expected} deliveries arrived within --wait-secs");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let usage: Vec<(f64, f64)> = workers.iter().map(|w| proc_usage(w.pid())).collect();
    let api_usage = proc_usage(api.pid());
    let a = arrivals.lock().expect("arrivals lock");
    let span = a.last.zip(Some(started)).map_or(0.0, |(l, s)| (l - s).as_secs_f64());
    let mut lat = a.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let worker_cpu: f64 = usage.iter().zip(&cpu_before).map(|((_, c), b)| c - b).sum();
    println!("switchyard webhook benchmark ({})", opts.stack.label());
    println!(
        "  workers {} × concurrency {}, {} endpoint(s), {} events{}",
        opts.workers,
        opts.concurrency,
        opts.endpoints,
        opts.events,
        if opts.rate > 0 { format!(" paced at {}/s", opts.rate) } else { String::new() }
    );
    println!(
        "  publish:     {:>9.0} requests/s ({} publishers)",
        opts.events as f64 / publish_secs,
        opts.publishers
    );
    println!(
        "  deliveries:  {:>9.0} /s ({expected} in {span:.2} s; {} duplicates)",
        expected as f64 / span,
        a.requests - a.ids.len()
    );
    println!(
        "  end to end:  p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99)
    );
    println!("  worker CPU:  {:.3} ms per delivery", worker_cpu * 1000.0 / expected as f64);
    println!(
        "  peak RSS:    workers {} MiB; api {:.0} MiB",
        usage.iter().map(|(r, _)| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        api_usage.0
    );
    Ok(())
}
