//! `switchyard bench webhooks`: the whole delivery path, measured where users live. Starts a
//! fast local receiver (or uses `--sink`), the system as child processes of this same binary
//! (`dev` embedded; an API and `--workers` worker processes with `--fleet`), creates
//! endpoints, warms every worker up with a delivery of its own, then publishes through the
//! REST API (one event a request, or `--batch N` through `/events/batch`), steadily at
//! `--rate` or as fast as it goes, and reports publish latency and rate, deliveries/s,
//! end-to-end latency (arrival at the receiver minus the moment the publish request was
//! sent) as p50/p99/max, worker CPU per delivery and peak RSS.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use poem::{Endpoint, Request, Response};

use super::{Child, Stack, StackArgs, percentile, proc_usage};

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookBench {
    /// Events to publish (after the warm-up).
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Endpoints subscribed to every event (deliveries = events × endpoints).
    #[arg(long, default_value_t = 1)]
    endpoints: usize,
    /// Publish at this many events per second (0: as fast as the API takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Publish requests in flight at once (at most; a steady rate needs fewer).
    #[arg(long, default_value_t = 32)]
    publishers: usize,
    /// Events per request, through `POST /api/v1/events/batch` (1: `POST /api/v1/events`).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Worker processes (with --fleet; embedded runs everything in one `dev` process).
    /// 0: no workers, publishing alone is measured.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs at once per worker (`SWITCHYARD_WORKER_CONCURRENCY`).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Requests in flight per endpoint per worker (`SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY`).
    #[arg(long, default_value_t = 8)]
    endpoint_concurrency: usize,
    /// Also subscribe this many misbehaving endpoints to the same events, on the built-in
    /// receiver, cycling through: one that never answers, one that answers after 14 s, one
    /// that closes the connection mid-answer, one that streams an endless body. Only the
    /// healthy endpoints' deliveries are counted and timed.
    #[arg(long, default_value_t = 0)]
    misbehaving: usize,
    /// Deliver to this receiver instead of the built-in one (latency is then the
    /// receiver's to measure: each event's `data.sent_us` is when it was sent, in unix µs).
    #[arg(long)]
    sink: Option<String>,
    /// Give up when not every delivery has arrived this long after publishing ended.
    #[arg(long, default_value_t = 600)]
    wait_secs: u64,
    #[command(flatten)]
    stack: StackArgs,
}

/// What the built-in receiver saw.
#[derive(Default)]
struct Arrivals {
    last: Option<Instant>,
    latencies_ms: Vec<f64>,
    ids: std::collections::HashSet<String>,
    requests: usize,
    warmups: usize,
}

struct Sink(Arc<Mutex<Arrivals>>);

fn unix_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// How long the slow misbehaving endpoint takes to answer (just under the default timeout).
const SLOW_ANSWER: Duration = Duration::from_millis(14_000);

/// The misbehaving kinds, by path prefix.
const MISBEHAVING: [&str; 4] = ["/hang", "/slow", "/close", "/endless"];

async fn misbehave(path: &str) -> Response {
    use futures::StreamExt;
    if path.starts_with("/hang") {
        // Never answers: the worker's request timeout ends it.
        std::future::pending::<()>().await;
    } else if path.starts_with("/slow") {
        tokio::time::sleep(SLOW_ANSWER).await;
    } else if path.starts_with("/close") {
        let chunks = futures::stream::iter([
            Ok(bytes_of("partial answer")),
            Err(std::io::Error::other("closed mid-answer")),
        ]);
        return Response::builder().body(poem::Body::from_bytes_stream(chunks));
    } else {
        let endless =
            futures::stream::repeat_with(|| Ok::<_, std::io::Error>(bytes_of(&"x".repeat(8192))))
                .then(|chunk| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    chunk
                });
        return Response::builder().body(poem::Body::from_bytes_stream(endless));
    }
    Response::builder().body("late")
}

fn bytes_of(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

impl Endpoint for Sink {
    type Output = Response;
    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if MISBEHAVING.iter().any(|p| req.uri().path().starts_with(p)) {
            return Ok(misbehave(req.uri().path()).await);
        }
        let body = req.take_body().into_vec().await.unwrap_or_default();
        let now = unix_us();
        let id =
            req.headers().get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let event = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
        let mut a = self.0.lock().expect("arrivals lock");
        if event["type"] == "bench.warmup" {
            a.warmups += 1;
            return Ok(Response::builder().body("ok"));
        }
        a.last = Some(Instant::now());
        a.requests += 1;
        if a.ids.insert(id)
            && let Some(sent) = event["data"]["sent_us"].as_i64()
        {
            a.latencies_ms.push((now - sent) as f64 / 1000.0);
        }
        Ok(Response::builder().body("ok"))
    }
}

/// Starts a built-in receiver; its base URL.
async fn serve_sink(arrivals: &Arc<Mutex<Arrivals>>) -> anyhow::Result<String> {
    let (addr, _server) =
        switchyard_simulators::serve("127.0.0.1:0".parse()?, Sink(Arc::clone(arrivals))).await?;
    Ok(format!("http://{addr}"))
}

pub async fn run(opts: WebhookBench) -> anyhow::Result<()> {
    if opts.batch == 0 || opts.batch > 100 {
        bail!("--batch is 1 to 100 events a request");
    }
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let sink_url = match &opts.sink {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => serve_sink(&arrivals).await?,
    };
    // Misbehaving endpoints get a server of their own, as another host would be: they do
    // not share connections with the healthy ones.
    let bad_url = serve_sink(&arrivals).await?;
    let stack = Stack::new(
        &opts.stack,
        &[
            ("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8,::1/128".into()),
            ("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", opts.endpoint_concurrency.to_string()),
            ("SWITCHYARD_WORKER_CONCURRENCY", opts.concurrency.to_string()),
            ("SWITCHYARD_WORKER_BATCH_SIZE", "100".into()),
        ],
    )
    .await?;
    let result = run_inner(&opts, &stack, (&sink_url, &bad_url), &arrivals).await;
    stack.finish(result).await
}

/// The processes under test: the API (`dev` embedded), the worker processes (none
/// embedded), and where to read each delivering process' metrics.
struct Processes {
    api: Child,
    workers: Vec<Child>,
    delivering: Vec<String>,
}

impl Processes {
    /// CPU seconds of the processes that deliver.
    fn worker_cpu(&self) -> f64 {
        if self.workers.is_empty() {
            return proc_usage(self.api.pid()).1;
        }
        self.workers.iter().map(|w| proc_usage(w.pid()).1).sum()
    }
}

async fn start(opts: &WebhookBench, stack: &Stack) -> anyhow::Result<Processes> {
    if !opts.stack.fleet {
        // Embedded is one process, as `cargo run -- dev` runs it.
        let dev = stack.start_main("dev", &["dev"]).await?;
        return Ok(Processes {
            api: dev,
            workers: Vec::new(),
            delivering: vec![stack.url("/metrics")],
        });
    }
    let api = stack.start_main("api", &["api"]).await?;
    let (mut workers, mut delivering) = (Vec::new(), Vec::new());
    for i in 0..opts.workers {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let args = ["worker", "--queues", "webhooks", "--metrics-listen", &listen];
        workers.push(stack.spawn(&format!("worker-{i}"), &args)?);
        delivering.push(format!("http://{listen}/metrics"));
    }
    Ok(Processes { api, workers, delivering })
}

/// Deliveries a process has made, from its metrics (0 before it answers).
async fn delivered_by(http: &reqwest::Client, metrics_url: &str) -> f64 {
    let Ok(resp) = http.get(metrics_url).send().await else { return 0.0 };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("switchyard_webhook_deliveries_total{") && l.contains("delivered")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn run_inner(
    opts: &WebhookBench,
    stack: &Stack,
    (sink_url, bad_url): (&str, &str),
    arrivals: &Arc<Mutex<Arrivals>>,
) -> anyhow::Result<()> {
    let procs = start(opts, stack).await?;
    let (http, auth) = (stack.http.clone(), stack.auth());
    let mut endpoint_ids = Vec::new();
    for i in 0..opts.endpoints {
        let resp = http
            .post(stack.url("/api/v1/webhooks"))
            .header("authorization", &auth)
            .json(
                &serde_json::json!({"url": format!("{sink_url}/e{i}"), "event_types": ["bench.*"]}),
            )
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("creating an endpoint: {} {}", resp.status(), resp.text().await?);
        }
        let body: serde_json::Value = resp.json().await?;
        endpoint_ids.push(body["id"].as_str().unwrap_or_default().to_owned());
    }
    for i in 0..opts.misbehaving {
        if opts.sink.is_some() {
            bail!("--misbehaving needs the built-in receiver");
        }
        let path = MISBEHAVING[i % MISBEHAVING.len()];
        let resp = http
            .post(stack.url("/api/v1/webhooks"))
            .header("authorization", &auth)
            .json(&serde_json::json!({"url": format!("{bad_url}{path}{i}"), "event_types": ["bench.tick"]}))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("creating an endpoint: {} {}", resp.status(), resp.text().await?);
        }
    }

    let publish_only = procs.delivering.is_empty();
    // Warm up: every worker delivers at least one event before the clock starts.
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    let mut warmups = 0usize;
    loop {
        let mut cold = 0;
        for metrics in &procs.delivering {
            if delivered_by(&http, metrics).await < 1.0 {
                cold += 1;
            }
        }
        if cold == 0 {
            break;
        }
        if Instant::now() > warm_deadline {
            bail!("{cold} worker(s) delivered nothing within 60 s of warm-up");
        }
        for _ in 0..cold * 2 {
            publish(
                &http,
                stack,
                &auth,
                vec![serde_json::json!({"type": "bench.warmup", "data": {}})],
            )
            .await?;
            warmups += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if publish_only {
        // The API's own warm-up: its connections open, its key cached.
        publish(
            &http,
            stack,
            &auth,
            vec![serde_json::json!({"type": "bench.warmup", "data": {}}); 20],
        )
        .await?;
    } else if opts.sink.is_none() {
        let want = warmups * opts.endpoints;
        wait_until("the warm-up deliveries", Duration::from_secs(60), || {
            arrivals.lock().expect("arrivals lock").warmups >= want
        })
        .await?;
    }
    let cpu_before = procs.worker_cpu();
    let api_cpu_before = proc_usage(procs.api.pid()).1;

    // Publish.
    let started = Instant::now();
    let requests = opts.events.div_ceil(opts.batch);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publish_ms = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let mut tasks = Vec::new();
    for _ in 0..opts.publishers.max(1) {
        let (http, auth, next, publish_ms) =
            (http.clone(), auth.clone(), Arc::clone(&next), Arc::clone(&publish_ms));
        let (events, batch, rate) = (opts.events, opts.batch, opts.rate);
        let url_single = stack.url("/api/v1/events");
        let url_batch = stack.url("/api/v1/events/batch");
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let first = r * batch;
                if first >= events {
                    return Ok::<(), anyhow::Error>(());
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(first as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let sent_us = unix_us();
                let items: Vec<serde_json::Value> = (first..(first + batch).min(events))
                    .map(|i| serde_json::json!({"type": "bench.tick", "data": {"i": i, "sent_us": sent_us}}))
                    .collect();
                let resp = if batch == 1 {
                    http.post(&url_single).header("authorization", &auth).json(&items[0]).send().await?
                } else {
                    http.post(&url_batch)
                        .header("authorization", &auth)
                        .json(&serde_json::json!({"events": items}))
                        .send()
                        .await?
                };
                if resp.status() != 202 {
                    bail!("publish: {} {}", resp.status(), resp.text().await?);
                }
                let took = sent.elapsed().as_secs_f64() * 1000.0;
                publish_ms.lock().expect("publish latencies").push(took);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let publish_secs = started.elapsed().as_secs_f64();

    // Wait for every delivery.
    let expected = opts.events * opts.endpoints;
    let wait = Duration::from_secs(opts.wait_secs);
    if publish_only {
        println!("switchyard publish benchmark ({}), no workers", opts.stack.label());
        println!(
            "  publish:     {:>9.0} requests/s = {:.0} events/s ({} publishers, {} a request); request p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; api CPU {:.3} ms per event",
            requests as f64 / publish_secs,
            opts.events as f64 / publish_secs,
            opts.publishers,
            opts.batch,
            percentile(&sorted(&publish_ms), 0.5),
            percentile(&sorted(&publish_ms), 0.99),
            sorted(&publish_ms).last().copied().unwrap_or(0.0),
            (proc_usage(procs.api.pid()).1 - api_cpu_before) * 1000.0 / opts.events as f64,
        );
        return Ok(());
    }
    if opts.sink.is_none() {
        wait_until("every delivery", wait, || {
            arrivals.lock().expect("arrivals lock").ids.len() >= expected
        })
        .await?;
    } else {
        let store = switchyard_shared::store::Store::connect(&stack.config()?).await?;
        let deadline = Instant::now() + wait;
        loop {
            let mut delivered = 0;
            for id in &endpoint_ids {
                delivered += store
                    .list_deliveries(
                        id,
                        Some(switchyard_shared::webhooks::DeliveryStatus::Delivered),
                        0,
                        1,
                    )
                    .await?
                    .0;
            }
            if delivered as usize >= expected + warmups * opts.endpoints {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {delivered} deliveries were made within --wait-secs");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let span = started.elapsed().as_secs_f64();
    let worker_cpu = procs.worker_cpu() - cpu_before;
    let api_cpu = proc_usage(procs.api.pid()).1 - api_cpu_before;
    let pub_ms = sorted(&publish_ms);

    println!("switchyard webhook benchmark ({})", opts.stack.label());
    println!(
        "  {} × concurrency {} (endpoint cap {}), {} endpoint(s), {} events{}{}",
        if opts.stack.fleet { format!("{} workers", opts.workers) } else { "dev".into() },
        opts.concurrency,
        opts.endpoint_concurrency,
        opts.endpoints,
        opts.events,
        if opts.rate > 0 { format!(" paced at {}/s", opts.rate) } else { " as a burst".into() },
        if opts.batch > 1 { format!(", {} a batch", opts.batch) } else { String::new() },
    );
    if opts.misbehaving > 0 {
        println!(
            "  + {} misbehaving endpoint(s) on the same events (not counted)",
            opts.misbehaving
        );
    }
    println!(
        "  publish:     {:>9.0} requests/s = {:.0} events/s ({} publishers); request p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        requests as f64 / publish_secs,
        opts.events as f64 / publish_secs,
        opts.publishers,
        percentile(&pub_ms, 0.5),
        percentile(&pub_ms, 0.99),
        pub_ms.last().copied().unwrap_or(0.0),
    );
    if opts.sink.is_none() {
        let a = arrivals.lock().expect("arrivals lock");
        let span = a.last.map_or(span, |l| (l - started).as_secs_f64());
        let mut lat = a.latencies_ms.clone();
        lat.sort_by(f64::total_cmp);
        println!(
            "  deliveries:  {:>9.0} /s ({expected} in {span:.2} s; {} duplicates)",
            expected as f64 / span,
            a.requests - a.ids.len()
        );
        println!(
            "  end to end:  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
    } else {
        println!(
            "  deliveries:  {:>9.0} /s ({expected} in {span:.2} s; latency: see the sink)",
            expected as f64 / span
        );
    }
    let per = |cpu: f64| cpu * 1000.0 / expected as f64;
    if opts.stack.fleet {
        println!(
            "  CPU:         workers {:.3} ms, api {:.3} ms per delivery",
            per(worker_cpu),
            per(api_cpu)
        );
    } else {
        println!(
            "  CPU:         dev process {:.3} ms per delivery (API, worker, store)",
            per(api_cpu)
        );
    }
    println!(
        "  peak RSS:    {} MiB",
        std::iter::once(&procs.api)
            .chain(&procs.workers)
            .map(|w| format!("{:.0}", proc_usage(w.pid()).0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn sorted(values: &Mutex<Vec<f64>>) -> Vec<f64> {
    let mut v = values.lock().expect("publish latencies").clone();
    v.sort_by(f64::total_cmp);
    v
}

async fn publish(
    http: &reqwest::Client,
    stack: &Stack,
    auth: &str,
    events: Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    for event in events {
        let resp = http
            .post(stack.url("/api/v1/events"))
            .header("authorization", auth)
            .json(&event)
            .send()
            .await
            .context("publishing")?;
        if resp.status() != 202 {
            bail!("publish: {} {}", resp.status(), resp.text().await?);
        }
    }
    Ok(())
}

async fn wait_until(
    what: &str,
    within: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what} did not arrive within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
