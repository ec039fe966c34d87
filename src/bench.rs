//! `switchyard bench webhooks`: the whole delivery path, measured. Starts a fast local
//! receiver, an API process and worker processes (this same binary), creates endpoints,
//! publishes events through the REST API, and reports publish requests/s, deliveries/s,
//! end-to-end latency percentiles, worker CPU per delivery and peak RSS.
#![allow(clippy::print_stdout)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use poem::{Endpoint, Request, Response, Server, listener::TcpAcceptor};
use switchyard_shared::apikeys::{Environment, RawKey};

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
    /// PostgreSQL + Redis (a fresh database and key namespace on the local servers) instead
    /// of the embedded SQLite store and queue.
    #[arg(long)]
    fleet: bool,
    /// Admin URL of PostgreSQL for --fleet (a database is created and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Give up when not every delivery has arrived this long after publishing ended.
    #[arg(long, default_value_t = 600)]
    wait_secs: u64,
    /// Keep the processes' logs (their path is printed).
    #[arg(long)]
    keep_logs: bool,
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

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// (peak RSS in MiB, CPU seconds) of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (hwm_kb / 1024.0, ticks / 100.0)
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn spawn(
    exe: &Path,
    args: &[&str],
    env: &HashMap<String, String>,
    log: &Path,
) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log)?;
    let child = std::process::Command::new(exe)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("spawning a switchyard process")?;
    Ok(Child(child))
}

pub async fn run(opts: WebhookBench) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("switchyard-bench-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir)?;
    let admin = RawKey::generate(Environment::Test);
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();

    // The receiver.
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr: SocketAddr = listener.local_addr()?;
    let sink = Sink(Arc::clone(&arrivals));
    tokio::spawn(async move {
        Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?).run(sink).await
    });

    let mut env: HashMap<String, String> = HashMap::from([
        ("SWITCHYARD_DATA_DIR".into(), dir.display().to_string()),
        ("SWITCHYARD_LISTEN".into(), format!("127.0.0.1:{api_port}")),
        (
            "SWITCHYARD_LOG".into(),
            std::env::var("SWITCHYARD_LOG").unwrap_or_else(|_| "warn".into()),
        ),
        ("SWITCHYARD_BOOTSTRAP_ADMIN_KEY".into(), admin.expose().to_owned()),
        ("SWITCHYARD_WEBHOOK_ALLOW_CIDRS".into(), "127.0.0.0/8".into()),
        ("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY".into(), opts.concurrency.to_string()),
        ("SWITCHYARD_RATE_LIMIT_PER_MINUTE".into(), "100000000".into()),
        ("SWITCHYARD_WORKER_POLL_INTERVAL_MS".into(), "10".into()),
        ("SWITCHYARD_WORKER_BATCH_SIZE".into(), "100".into()),
        ("SWITCHYARD_SCHEDULE_CANARY".into(), "off".into()),
    ]);
    let mut fleet_db = None;
    if opts.fleet {
        let db = format!("sybench_{}", ulid::Ulid::generate().to_string().to_lowercase());
        admin_sql(&opts.postgres, &format!("CREATE DATABASE {db}")).await?;
        let base = opts.postgres.rsplit_once('/').map_or(opts.postgres.as_str(), |(b, _)| b);
        // Loopback: no TLS (sqlx would otherwise negotiate it with a Debian PostgreSQL).
        env.insert("DATABASE_URL".into(), format!("{base}/{db}?sslmode=disable"));
        env.insert("REDIS_URL".into(), opts.redis.clone());
        env.insert("SWITCHYARD_NAMESPACE".into(), db.clone());
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        env.insert("SWITCHYARD_MASTER_KEY".into(), base64_std(&key));
        fleet_db = Some(db);
    }
    let result = run_inner(&opts, &exe, &dir, &env, api_port, sink_addr, &admin, &arrivals).await;
    if let Some(db) = fleet_db {
        let _ =
            admin_sql(&opts.postgres, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
    }
    if result.is_err() || opts.keep_logs {
        eprintln!("logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_inner(
    opts: &WebhookBench,
    exe: &Path,
    dir: &Path,
    env: &HashMap<String, String>,
    api_port: u16,
    sink_addr: SocketAddr,
    admin: &RawKey,
    arrivals: &Arc<Mutex<Arrivals>>,
) -> anyhow::Result<()> {
    // `migrate` first, so that processes starting together do not race on the schema.
    let status =
        std::process::Command::new(exe).arg("migrate").envs(env).stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("migrate failed");
    }
    let api = spawn(exe, &["api"], env, &dir.join("api.log"))?;
    let base = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::builder().pool_max_idle_per_host(opts.publishers).build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("the API did not start; see {}", dir.join("api.log").display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let auth = format!("Bearer {}", admin.expose());
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
        workers.push(spawn(exe, &args, env, &dir.join(format!("worker-{i}.log")))?);
    }
    let cpu_before: Vec<f64> = workers.iter().map(|w| proc_usage(w.0.id()).1).collect();

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
    let usage: Vec<(f64, f64)> = workers.iter().map(|w| proc_usage(w.0.id())).collect();
    let api_usage = proc_usage(api.0.id());
    let a = arrivals.lock().expect("arrivals lock");
    let span = a.last.zip(Some(started)).map_or(0.0, |(l, s)| (l - s).as_secs_f64());
    let mut lat = a.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let worker_cpu: f64 = usage.iter().zip(&cpu_before).map(|((_, c), b)| c - b).sum();
    println!(
        "switchyard webhook benchmark ({})",
        if opts.fleet { "fleet: PostgreSQL + Redis" } else { "embedded: SQLite" }
    );
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

async fn admin_sql(url: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.context("connecting to PostgreSQL")?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await?;
    Ok(())
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
