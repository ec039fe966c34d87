//! PIDKey batch jobs: check one batch, upsert every field of every answer in one
//! transaction, count it on its run, announce low stock once per crossing, and complete the
//! run (publishing `pidms.sync.completed`) when its last batch is done.

mod client;

use apalis::prelude::BoxDynError;
use chrono::Utc;
use switchyard_shared::{
    jobs::{Job, PidmsBatchJob},
    pidms::PidmsRun,
    pidms::{BatchStatus, RunKind, start_run},
    ratelimit::RateLimiter,
    services::Services,
    telemetry,
    tenants::Owner,
    webhooks::events::{self, Audience},
};

pub(crate) use self::client::PidkeyClient;
use crate::handlers::Outcome;

pub(crate) fn client(services: &Services) -> PidkeyClient {
    PidkeyClient::new(&services.config.pidkey, RateLimiter::for_queue(&services.queue))
}

pub(crate) async fn run_batch(
    services: &Services,
    client: &PidkeyClient,
    job: PidmsBatchJob,
) -> Result<Outcome, BoxDynError> {
    let store = &services.store;
    let Some(batch) = store.pidms_batch(&job.batch_id).await? else {
        return Ok(Outcome::Success);
    };
    if batch.status != BatchStatus::Pending {
        return Ok(Outcome::Success); // a repeated job: the batch is finished
    }
    store.bump_pidms_batch_attempts(&batch.id, Utc::now()).await?;
    let keys: Vec<String> = batch.keys.split('\n').map(str::to_owned).collect();
    match client.check(&keys).await {
        Ok(answers) => {
            if let Some(moved) = store.complete_pidms_batch(&batch, &answers, Utc::now()).await? {
                metrics::counter!(telemetry::PIDMS_KEYS_CHECKED).increment(answers.len() as u64);
                // The products answered (re-judged against the threshold as it is now) and
                // those whose counters moved: one a key left can cross too.
                let mut products: Vec<&str> = answers
                    .iter()
                    .filter_map(|a| a.prd.as_deref())
                    .chain(moved.iter().map(String::as_str))
                    .collect();
                products.sort_unstable();
                products.dedup();
                for prd in products {
                    watch_stock(services, prd).await?;
                }
            }
        }
        Err(error) => {
            tracing::warn!(batch_id = %batch.id, run_id = %batch.run_id, %error, "PIDKey batch failed");
            store.fail_pidms_batch(&batch, &error.to_string(), Utc::now()).await?;
        }
    }
    if let Some(run) = store.finish_pidms_run_if_done(&batch.run_id, Utc::now()).await? {
        completed(services, &run).await;
    }
    Ok(Outcome::Success)
}

/// Publishes `pidms.low_inventory` when a product's total remaining crosses below the
/// threshold: once per crossing (it re-arms when stock is back).
async fn watch_stock(services: &Services, prd: &str) -> Result<(), BoxDynError> {
    let threshold = services.config.pidkey.low_inventory_threshold;
    let Some((low, total)) =
        services.store.update_pidms_product_low(prd, threshold, Utc::now()).await?
    else {
        return Ok(()); // no crossing
    };
    if low {
        let data =
            serde_json::json!({"product": prd, "total_remaining": total, "threshold": threshold});
        events::publish(
            services,
            &Owner::Platform,
            "pidms.low_inventory",
            &data,
            Some("system"),
            Audience::Subscribers,
        )
        .await?;
        tracing::info!(product = prd, total, threshold, "low inventory");
    }
    {
        let low_products = services.store.count_low_pidms_products().await?;
        metrics::gauge!(telemetry::PIDMS_LOW_INVENTORY_PRODUCTS).set(low_products as f64);
    }
    Ok(())
}

async fn completed(services: &Services, run: &PidmsRun) {
    tracing::info!(run_id = %run.id, kind = %run.kind, keys_updated = run.keys_updated,
        batches_failed = run.batches_failed, "PIDKey run completed");
    if run.kind != RunKind::Sync {
        return;
    }
    let data = serde_json::json!({
        "sync_id": run.id,
        "product_filter": run.product_filter,
        "keys_total": run.keys_total,
        "keys_updated": run.keys_updated,
        "batches_total": run.batches_total,
        "batches_done": run.batches_done,
        "batches_failed": run.batches_failed,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    });
    if let Err(error) = events::publish(
        services,
        &Owner::Platform,
        "pidms.sync.completed",
        &data,
        Some("system"),
        Audience::Subscribers,
    )
    .await
    {
        tracing::warn!(%error, run_id = %run.id, "could not publish pidms.sync.completed");
    }
}

/// The `pidms-daily-sync` job: a sync of every stored key.
pub(crate) async fn sync_all(services: &Services) -> Result<Outcome, BoxDynError> {
    if services.config.pidkey.api_key.is_none() {
        tracing::info!("pidms-daily-sync skipped: PIDKEY_API_KEY is not set");
        return Ok(Outcome::Success);
    }
    let keys = services.store.pidms_keynames(None).await?;
    let run_id = start_run(services, RunKind::Sync, &keys, None, Some("schedule"), None).await?;
    tracing::info!(%run_id, keys = keys.len(), "daily PIDKey sync started");
    Ok(Outcome::Success)
}

/// A pending batch not touched this long is presumed lost from the queue (its push was lost,
/// or its worker died holding it): longer than any batch's retries with backoff.
const STALE_BATCH: chrono::Duration = chrono::Duration::minutes(5);
const SWEEP_PAGE: i64 = 5_000;

/// The `pidms-batch-sweep` job: enqueues batches left pending, the outbox guarantee of
/// runs. A batch enqueued twice is checked once: only a pending batch is worked.
pub(crate) async fn sweep_batches(services: &Services) -> Result<Outcome, BoxDynError> {
    let stale = services.store.stale_pidms_batches(Utc::now() - STALE_BATCH, SWEEP_PAGE).await?;
    if !stale.is_empty() {
        tracing::warn!(
            count = stale.len(),
            "re-enqueued PIDKey batches that were not in the queue"
        );
        let jobs = stale
            .into_iter()
            .map(|b| Job::PidmsBatch(PidmsBatchJob { batch_id: b.id, run_id: b.run_id }))
            .collect();
        services.queue.push_many(jobs).await?;
    }
    Ok(Outcome::Success)
}
