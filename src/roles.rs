//! The roles the binary can play. Each opens the store and queue, serves HTTP (the API, or
//! just the probes), runs its part, and returns when a signal has been handled.

use anyhow::Context;
use switchyard_shared::{CancellationToken, config::Config, services::Services, telemetry};
use switchyard_worker::WorkerOptions;

use crate::{cli::Command, signals::shutdown_on_signal};

pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    telemetry::install();
    match command {
        Command::Migrate => {
            let store = connect_store(&config).await?;
            tracing::info!(store = store.kind(), "migrations applied");
            return Ok(());
        }
        Command::Keys { command } => {
            let store = connect_store(&config).await?;
            return crate::keys::run(command, &store).await;
        }
        Command::Bench { command } => {
            use crate::cli::BenchCommand;
            return match command {
                BenchCommand::Webhooks(opts) => crate::bench::webhooks::run(opts).await,
                BenchCommand::PidmsSync(opts) => crate::bench::pidms::run_sync(opts).await,
                BenchCommand::PidmsSearch(opts) => crate::bench::pidms::run_search(opts).await,
            };
        }
        Command::Sandbox(args) => return sandbox(args).await,
        Command::Probe { url } => return probe(&url).await,
        _ => {}
    }
    let services = Services::open(config).await.context("opening the store and queue")?;
    let shutdown = shutdown_on_signal();
    match command {
        Command::Dev { .. } => dev(services, shutdown).await,
        Command::Api { .. } => api(services, shutdown).await,
        Command::Worker { .. } => worker(services, shutdown).await,
        Command::Scheduler { .. } => scheduler(services, shutdown).await,
        Command::Migrate
        | Command::Keys { .. }
        | Command::Bench { .. }
        | Command::Sandbox(_)
        | Command::Probe { .. } => Ok(()),
    }
}

async fn connect_store(config: &Config) -> anyhow::Result<switchyard_shared::store::Store> {
    let store =
        switchyard_shared::store::Store::connect(config).await.context("connecting the store")?;
    store.migrate().await.context("migrating the store")?;
    Ok(store)
}

async fn probe(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()?;
    let status = client.get(url).send().await.with_context(|| format!("GET {url}"))?.status();
    anyhow::ensure!(status.is_success(), "GET {url}: HTTP {status}");
    Ok(())
}

/// The simulators on one address until a signal.
async fn sandbox(args: crate::cli::SandboxArgs) -> anyhow::Result<()> {
    use std::time::Duration;

    use switchyard_simulators::{pidkey::PidkeySim, sikka::SikkaSim};
    let keys: Vec<&str> = args.pidkey_api_key.as_deref().into_iter().collect();
    let pidkey = PidkeySim::new(&keys);
    pidkey.set_latency(Duration::from_millis(args.pidkey_latency_ms));
    let sikka = SikkaSim::new(&args.sikka_app_id, &args.sikka_app_key);
    sikka.set_writeback_delay(Duration::from_millis(args.writeback_delay_ms));
    let practices = sikka.add_demo_practices(args.sikka_practices);
    let app = poem::Route::new().nest("/v4", sikka.routes()).nest("/", pidkey.routes());
    let listen = args.listen;
    let (addr, server) = switchyard_simulators::serve(listen, app)
        .await
        .with_context(|| format!("binding --listen {listen}"))?;
    tracing::info!(
        %addr,
        pidkey = %format!("SWITCHYARD_PIDKEY_BASE_URL=http://{addr} PIDKEY_API_KEY=any-key"),
        sikka = %format!(
            "SWITCHYARD_SIKKA_BASE_URL=http://{addr}/v4 SIKKA_APP_ID={} SIKKA_APP_KEY={}",
            args.sikka_app_id, args.sikka_app_key
        ),
        offices = %practices.iter().map(|p| p.office_id.as_str()).collect::<Vec<_>>().join(","),
        "sandbox: PIDKey and Sikka simulators listening"
    );
    let shutdown = shutdown_on_signal();
    tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        r = server => Ok(r??),
    }
}

async fn api(services: Services, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (listener, addr) = switchyard_api::bind(services.config.listen)
        .await
        .with_context(|| format!("binding SWITCHYARD_LISTEN={}", services.config.listen))?;
    tracing::info!(%addr, "api listening");
    switchyard_api::run(services, listener, shutdown).await?;
    Ok(())
}

/// Waits (5 s at most) for the pushes of events the jobs published (an endpoint disabled, a
/// sync finished): their deliveries are written; their first attempts may still be on their
/// way to the queue.
async fn flush_publishes(publisher: &switchyard_shared::webhooks::events::Publisher) {
    if !publisher.flushed(std::time::Duration::from_secs(5)).await {
        tracing::warn!("some published deliveries were not enqueued; the retry sweep will");
    }
}

/// Serves the probes on the metrics port until shutdown.
async fn probe_server(
    services: &Services,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let addr = services.config.metrics_listen;
    let (listener, addr) = switchyard_api::bind(addr)
        .await
        .with_context(|| format!("binding SWITCHYARD_METRICS_LISTEN={addr}"))?;
    tracing::info!(%addr, "metrics and health listening");
    let app = switchyard_api::probe_app(services.clone());
    let limits = switchyard_api::ServeLimits::of(&services.config);
    Ok(tokio::spawn(switchyard_api::serve(app, listener, shutdown, limits)))
}

async fn worker(services: Services, shutdown: CancellationToken) -> anyhow::Result<()> {
    let probes = probe_server(&services, shutdown.clone()).await?;
    let opts = WorkerOptions::from_config(&services.config);
    let publisher = services.publisher.clone();
    switchyard_worker::run(services, opts, shutdown.clone()).await?;
    flush_publishes(&publisher).await;
    shutdown.cancel();
    probes.await??;
    Ok(())
}

async fn scheduler(services: Services, shutdown: CancellationToken) -> anyhow::Result<()> {
    let probes = probe_server(&services, shutdown.clone()).await?;
    let scheduler = switchyard_scheduler::Scheduler::new(services)?;
    scheduler.run(shutdown.clone()).await;
    probes.await??;
    Ok(())
}

/// Everything in one process: the API (with probes) on `SWITCHYARD_LISTEN`, workers for
/// every queue, and the scheduler.
async fn dev(services: Services, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (listener, addr) = switchyard_api::bind(services.config.listen)
        .await
        .with_context(|| format!("binding SWITCHYARD_LISTEN={}", services.config.listen))?;
    crate::keys::dev_admin_key(
        &services.store,
        &services.config.data_dir,
        services.config.bootstrap_admin_key.is_some(),
    )
    .await?;
    let allow: Vec<String> =
        services.config.webhook_allowlist().iter().map(ToString::to_string).collect();
    if !allow.is_empty() {
        tracing::warn!(
            allowed = ?allow,
            "dev mode: webhooks may reach these private/loopback addresses \
             (SWITCHYARD_WEBHOOK_ALLOW_CIDRS); fleet roles block them unless configured"
        );
    }
    let api = tokio::spawn(switchyard_api::run(services.clone(), listener, shutdown.clone()));
    let scheduler = switchyard_scheduler::Scheduler::new(services.clone())?;
    let scheduler = tokio::spawn(scheduler.run(shutdown.clone()));
    tracing::info!(
        %addr,
        docs = %format!("http://{addr}/docs"),
        metrics = %format!("http://{addr}/metrics"),
        data_dir = %services.config.data_dir.display(),
        "switchyard dev is up"
    );
    let opts = WorkerOptions::from_config(&services.config);
    let publisher = services.publisher.clone();
    let workers = switchyard_worker::run(services, opts, shutdown.clone()).await;
    // The API has waited for its own publishes; jobs finishing in the grace may add more.
    flush_publishes(&publisher).await;
    shutdown.cancel();
    let (api, scheduler) = tokio::join!(api, scheduler);
    workers?;
    api??;
    scheduler?;
    Ok(())
}
