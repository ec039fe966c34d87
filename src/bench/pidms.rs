//! `switchyard bench pidms-sync` and `bench pidms-search`: the PIDKey inventory against the
//! simulator (in this process, on loopback), with the API and a worker as child processes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use switchyard_shared::pidms::KeySearch;
use switchyard_shared::store::Store;
use switchyard_simulators::pidkey::PidkeySim;

use super::{Stack, StackArgs, percentile, proc_usage};

const API_KEY: &str = "bench-pidkey-key";

#[derive(Debug, Clone, clap::Args)]
pub struct SyncBench {
    /// Keys in the inventory (seeded with checks first, then synced).
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// The simulated PIDKey latency per request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// The client-side rate limit, requests per second (SWITCHYARD_PIDKEY_RATE_PER_SECOND).
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Keys per request (SWITCHYARD_PIDKEY_BATCH_SIZE).
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Jobs at once in the worker.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SearchBench {
    /// Keys in the inventory.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Search requests to time (after 100 to warm up).
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Search requests in flight at once.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    #[command(flatten)]
    stack: StackArgs,
}

/// A well-formed key (25 × [A-Z0-9]) for index `i`.
fn bench_key(i: usize) -> String {
    format!("{:0>25}", format!("B{i}Z"))
}

/// The simulator on a free loopback port, and the settings that point a stack at it.
async fn start_sim(latency: Duration) -> anyhow::Result<(PidkeySim, String)> {
    let sim = PidkeySim::new(&[API_KEY]);
    sim.set_latency(latency);
    let (addr, _task) = switchyard_simulators::serve("127.0.0.1:0".parse()?, sim.routes()).await?;
    Ok((sim, format!("http://{addr}")))
}

/// Polls a run until it completes.
async fn wait_run(stack: &Stack, id: &str, within: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let run: Value = stack
            .http
            .get(stack.url(&format!("/api/v1/pidms/syncs/{id}")))
            .header("authorization", stack.auth())
            .send()
            .await?
            .json()
            .await?;
        if run["status"] == "completed" {
            return Ok(run);
        }
        if Instant::now() > deadline {
            bail!("run {id} did not complete in {within:?}: {run}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks `keys` in checks of at most 10,000 (the API's limit), all started before any is
/// awaited; returns when every run has completed.
async fn seed(stack: &Stack, keys: usize) -> anyhow::Result<()> {
    let all: Vec<String> = (0..keys).map(bench_key).collect();
    let mut ids = Vec::new();
    for chunk in all.chunks(10_000) {
        let resp = stack
            .http
            .post(stack.url("/api/v1/pidms/check"))
            .header("authorization", stack.auth())
            .json(&json!({"keys": chunk.join("\n")}))
            .send()
            .await?;
        if resp.status() != 202 {
            bail!("check: {} {}", resp.status(), resp.text().await?);
        }
        let body: Value = resp.json().await?;
        ids.push(body["job_id"].as_str().context("job_id")?.to_owned());
    }
    for id in ids {
        let run = wait_run(stack, &id, Duration::from_secs(3600)).await?;
        if run["batches_failed"] != 0 {
            bail!("a seeding batch failed: {run}");
        }
    }
    Ok(())
}

pub async fn run_sync(opts: SyncBench) -> anyhow::Result<()> {
    let (sim, sim_url) = start_sim(Duration::from_millis(opts.latency_ms)).await?;
    let stack = Stack::new(
        &opts.stack,
        &[
            ("SWITCHYARD_PIDKEY_BASE_URL", sim_url),
            ("PIDKEY_API_KEY", API_KEY.into()),
            ("SWITCHYARD_PIDKEY_RATE_PER_SECOND", opts.rate.to_string()),
            ("SWITCHYARD_PIDKEY_BATCH_SIZE", opts.batch_size.to_string()),
        ],
    )
    .await?;
    let result = sync_inner(&opts, &stack, &sim).await;
    stack.finish(result).await
}

async fn sync_inner(opts: &SyncBench, stack: &Stack, sim: &PidkeySim) -> anyhow::Result<()> {
    let _api = stack.start_api().await?;
    let conc = opts.concurrency.to_string();
    let worker = stack.spawn(
        "worker",
        &["worker", "--queues", "pidms", "--concurrency", &conc, "--metrics-listen", "127.0.0.1:0"],
    )?;
    let started = Instant::now();
    seed(stack, opts.keys).await?;
    let seed_secs = started.elapsed().as_secs_f64();
    // Let the limiter's burst refill, so that the sync starts as a daily sync would.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = sim.request_count();
    let cpu_before = proc_usage(worker.pid()).1;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (sim, sampling) = (sim.clone(), Arc::clone(&sampling));
        async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                samples.push(sim.in_flight() as f64);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples
        }
    });
    let started = Instant::now();
    let resp = stack
        .http
        .post(stack.url("/api/v1/pidms/sync"))
        .header("authorization", stack.auth())
        .json(&json!({}))
        .send()
        .await?;
    if resp.status() != 202 {
        bail!("sync: {} {}", resp.status(), resp.text().await?);
    }
    let accepted: Value = resp.json().await?;
    let id = accepted["sync_id"].as_str().context("sync_id")?.to_owned();
    let run = wait_run(stack, &id, Duration::from_secs(3600)).await?;
    let wall = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let mut samples = sampler.await?;
    let cpu = proc_usage(worker.pid()).1 - cpu_before;
    let requests = sim.request_count() - before;
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    let latency = opts.latency_ms as f64 / 1000.0;
    let rate_bound = requests.saturating_sub(opts.rate as usize) as f64 / f64::from(opts.rate);
    let latency_bound = (requests as f64 / opts.concurrency as f64).ceil() * latency;
    let bound = rate_bound.max(latency_bound);

    println!("switchyard PIDKey sync benchmark ({})", opts.stack.label());
    println!(
        "  {} keys, batches of {}, simulator latency {} ms, rate limit {}/s, worker concurrency {}",
        opts.keys, opts.batch_size, opts.latency_ms, opts.rate, opts.concurrency
    );
    println!("  seeding check: {seed_secs:.2} s");
    println!(
        "  sync:          {wall:.2} s wall, {requests} requests ({:.1}/s), {} keys updated, {} batches failed",
        requests as f64 / wall,
        run["keys_updated"],
        run["batches_failed"]
    );
    println!(
        "  in flight:     mean {mean:.2}, p50 {:.0}, max {}",
        percentile(&samples, 0.5),
        sim.max_in_flight()
    );
    println!(
        "  bound:         {bound:.2} s (rate: {rate_bound:.2} s after a burst of {}; latency: {latency_bound:.2} s); overhead {:.2} s ({:.1} %)",
        opts.rate,
        wall - bound,
        (wall - bound) / bound.max(f64::EPSILON) * 100.0
    );
    println!("  worker CPU:    {:.2} ms per request", cpu * 1000.0 / requests.max(1) as f64);
    Ok(())
}

/// The searches timed: a mix of what an administrator types.
fn search_queries() -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    for (name, product) in [
        ("product, common", "office"),
        ("product, narrow", "win11"),
        ("product, middle", "proplus20"),
        ("product, none", "visio"),
    ] {
        q.push((name, format!("product={product}")));
        q.push((name, format!("product={product}&page=5&page_size=50")));
    }
    q.push(("remaining range", "min_remaining=100&max_remaining=120".into()));
    q.push(("product + range", "product=win10&min_remaining=300".into()));
    q.push(("blocked", "blocked=true".into()));
    q.push(("everything", String::new()));
    q
}

pub async fn run_search(opts: SearchBench) -> anyhow::Result<()> {
    let (_sim, sim_url) = start_sim(Duration::ZERO).await?;
    let stack = Stack::new(
        &opts.stack,
        &[
            ("SWITCHYARD_PIDKEY_BASE_URL", sim_url),
            ("PIDKEY_API_KEY", API_KEY.into()),
            ("SWITCHYARD_PIDKEY_RATE_PER_SECOND", "100000".into()),
        ],
    )
    .await?;
    let result = search_inner(&opts, &stack).await;
    stack.finish(result).await
}

async fn search_inner(opts: &SearchBench, stack: &Stack) -> anyhow::Result<()> {
    let _api = stack.start_api().await?;
    let worker = stack.spawn(
        "worker",
        &["worker", "--queues", "pidms", "--concurrency", "16", "--metrics-listen", "127.0.0.1:0"],
    )?;
    let started = Instant::now();
    seed(stack, opts.keys).await?;
    let seed_secs = started.elapsed().as_secs_f64();
    drop(worker);

    let queries = search_queries();
    let run_one = |i: usize| {
        let (name, query) = queries[i % queries.len()].clone();
        let req = stack
            .http
            .get(stack.url(&format!("/api/v1/pidms/keys?{query}")))
            .header("authorization", stack.auth());
        async move {
            let t = Instant::now();
            let resp = req.send().await?;
            if resp.status() != 200 {
                bail!("search {query}: {}", resp.status());
            }
            resp.bytes().await?;
            Ok::<_, anyhow::Error>((name, t.elapsed().as_secs_f64() * 1000.0))
        }
    };
    for i in 0..100 {
        run_one(i).await?;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let timings = Arc::new(std::sync::Mutex::new(Vec::with_capacity(opts.requests)));
    let started = Instant::now();
    let clients = (0..opts.clients.max(1)).map(|_| {
        let (next, timings, run_one) = (Arc::clone(&next), Arc::clone(&timings), &run_one);
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= opts.requests {
                    return Ok::<(), anyhow::Error>(());
                }
                let t = run_one(i).await?;
                timings.lock().expect("timings").push(t);
            }
        }
    });
    futures::future::try_join_all(clients).await?;
    let secs = started.elapsed().as_secs_f64();
    let timings = std::mem::take(&mut *timings.lock().expect("timings"));

    println!("switchyard PIDKey search benchmark ({})", opts.stack.label());
    println!(
        "  {} keys (seeded through the API in {seed_secs:.1} s, {:.0} keys/s); {} searches, {} client(s), {:.0} searches/s",
        opts.keys,
        opts.keys as f64 / seed_secs,
        timings.len(),
        opts.clients,
        timings.len() as f64 / secs
    );
    let mut all: Vec<f64> = timings.iter().map(|(_, ms)| *ms).collect();
    all.sort_by(f64::total_cmp);
    println!(
        "  all:              p50 {:6.2} ms, p99 {:6.2} ms, max {:6.2} ms",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0.0)
    );
    let mut names: Vec<&str> = timings.iter().map(|(n, _)| *n).collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let mut t: Vec<f64> =
            timings.iter().filter(|(n, _)| *n == name).map(|(_, ms)| *ms).collect();
        t.sort_by(f64::total_cmp);
        println!(
            "  {name:<17} p50 {:6.2} ms, p99 {:6.2} ms",
            percentile(&t, 0.5),
            percentile(&t, 0.99)
        );
    }
    let store = Store::connect(&stack.config()?).await?;
    let search = KeySearch { product: Some("win11".into()), ..KeySearch::default() };
    println!("  plan of ?product=win11 (page, then count):");
    for line in store.explain_pidms_search(&search).await? {
        if !line.is_empty() {
            println!("    {line}");
        }
    }
    Ok(())
}
