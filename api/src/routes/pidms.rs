//! PIDKey inventory: checks, syncs, search, product summary, CSV export.

use std::time::Duration;

use chrono::{DateTime, Utc};
use poem::Body;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::{Binary, Json},
};
use switchyard_shared::{
    audit::AuditEntry,
    pidms::{KeySearch, PidmsKey, PidmsRun},
    pidms::{LineError, RunKind, RunStatus, normalise_key, parse_key_lines, start_run},
    services::Services,
    tenants::Owner,
};

use super::{ApiTags, Page, page_bounds};
use crate::{
    auth::scopes::{Auth, pidms_read, pidms_write_idempotent},
    problem::{ApiError, FieldError},
};

pub struct PidmsApi {
    pub services: Services,
}

#[derive(Object)]
struct CheckRequest {
    /// One key per line (CRLF or LF); dashes optional, case ignored, duplicates dropped.
    keys: String,
}

#[derive(Object, Clone)]
struct LineProblem {
    /// 1-based line number in `keys`.
    line: u64,
    value: String,
    message: String,
}

impl From<LineError> for LineProblem {
    fn from(e: LineError) -> Self {
        Self { line: e.line as u64, value: e.value, message: e.message }
    }
}

#[derive(Object)]
struct CheckAccepted {
    /// The check's id: follow it with `GET /pidms/checks/{id}`.
    job_id: String,
    accepted: u64,
    rejected: u64,
    errors: Vec<LineProblem>,
}

#[derive(Object)]
struct CheckResult {
    job_id: String,
    /// completed when every batch is done; running otherwise.
    status: String,
    accepted: u64,
    rejected: u64,
    errors: Vec<LineProblem>,
    /// Failed batches (e.g. PIDKey refused the request).
    batch_errors: Vec<BatchError>,
    results: Vec<PidmsKeyView>,
}

#[derive(Object)]
struct SyncRequest {
    /// Only keys whose product contains this (case-insensitive); all keys when absent.
    product_filter: Option<String>,
}

#[derive(Object)]
struct SyncAccepted {
    sync_id: String,
    keys_total: i64,
    batches_total: i64,
}

#[derive(Object)]
struct BatchError {
    /// 0-based batch number.
    batch: i64,
    error: String,
}

#[derive(Object)]
struct RunView {
    id: String,
    /// check or sync.
    kind: String,
    /// running or completed.
    status: String,
    product_filter: Option<String>,
    keys_total: i64,
    batches_total: i64,
    batches_done: i64,
    batches_failed: i64,
    keys_updated: i64,
    errors: Vec<BatchError>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

/// Every field PIDKey returned for a key, plus when we checked it.
#[derive(Object)]
struct PidmsKeyView {
    keyname: String,
    keyname_with_dash: String,
    /// The product; null when PIDKey does not know the key.
    prd: Option<String>,
    eid: Option<String>,
    is_key_type: Option<String>,
    is_retail: Option<i64>,
    /// Activations left; -1 when the key has no count (retail).
    remaining: Option<i64>,
    /// 1 blocked, -1 not blocked.
    blocked: Option<i64>,
    errorcode: Option<String>,
    sub: Option<String>,
    had_occurred: Option<i64>,
    invalid: Option<i64>,
    /// PIDKey's own text, as given.
    datetime_checked_done: Option<String>,
    checked_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PidmsKey> for PidmsKeyView {
    fn from(k: PidmsKey) -> Self {
        Self {
            keyname: k.keyname,
            keyname_with_dash: k.keyname_with_dash,
            prd: k.prd,
            eid: k.eid,
            is_key_type: k.is_key_type,
            is_retail: k.is_retail,
            remaining: k.remaining,
            blocked: k.blocked,
            errorcode: k.errorcode,
            sub: k.sub,
            had_occurred: k.had_occurred,
            invalid: k.invalid,
            datetime_checked_done: k.datetime_checked_done,
            checked_at: k.checked_at,
            created_at: k.created_at,
            updated_at: k.updated_at,
        }
    }
}

#[derive(Object)]
struct ProductView {
    prd: String,
    key_count: i64,
    total_remaining: i64,
    avg_remaining: f64,
    /// total_remaining below the threshold.
    low_inventory: bool,
}

#[derive(Object)]
struct ProductList {
    threshold: i64,
    products: Vec<ProductView>,
}

#[derive(ApiResponse)]
enum CheckResponse {
    /// Done within `wait`: the results of every key.
    #[oai(status = 200)]
    Done(Json<CheckResult>),
    /// Queued (or not done within `wait`): follow `GET /pidms/checks/{job_id}`.
    #[oai(status = 202)]
    Accepted(Json<CheckAccepted>),
}

#[derive(ApiResponse)]
enum SyncResponse {
    #[oai(status = 202)]
    Accepted(Json<SyncAccepted>),
}

#[derive(ApiResponse)]
enum CsvResponse {
    /// The search as CSV, streamed.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Csv(Binary<Body>),
}

impl PidmsApi {
    /// PIDKey work needs its API key: without it, a 409 naming the setting (the check could
    /// only fail in the worker).
    fn configured(&self) -> Result<(), ApiError> {
        match self.services.config.pidkey.api_key {
            Some(_) => Ok(()),
            None => Err(ApiError::not_configured("PIDKey", &["PIDKEY_API_KEY"])),
        }
    }

    async fn run_or_404(&self, id: &str) -> Result<PidmsRun, ApiError> {
        self.services
            .store
            .pidms_run(id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such check or sync"))
    }

    async fn run_view(&self, run: PidmsRun) -> Result<RunView, ApiError> {
        let errors = self
            .services
            .store
            .pidms_batches(&run.id)
            .await?
            .into_iter()
            .filter_map(|b| b.error.map(|error| BatchError { batch: b.seq, error }))
            .collect();
        Ok(RunView {
            id: run.id,
            kind: run.kind.to_string(),
            status: run.status.to_string(),
            product_filter: run.product_filter,
            keys_total: run.keys_total,
            batches_total: run.batches_total,
            batches_done: run.batches_done,
            batches_failed: run.batches_failed,
            keys_updated: run.keys_updated,
            errors,
            started_at: run.started_at,
            finished_at: run.finished_at,
        })
    }

    async fn check_result(
        &self,
        run: PidmsRun,
        errors: Vec<LineProblem>,
        rejected: u64,
    ) -> Result<CheckResult, ApiError> {
        let batches = self.services.store.pidms_batches(&run.id).await?;
        let keys: Vec<String> =
            batches.iter().flat_map(|b| b.keys.split('\n').map(str::to_owned)).collect();
        let results = self.services.store.pidms_keys_by_name(&keys).await?;
        Ok(CheckResult {
            job_id: run.id,
            status: run.status.to_string(),
            accepted: keys.len() as u64,
            rejected,
            errors,
            batch_errors: batches
                .into_iter()
                .filter_map(|b| b.error.map(|error| BatchError { batch: b.seq, error }))
                .collect(),
            results: results.into_iter().map(Into::into).collect(),
        })
    }
}

fn search(
    product: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
    blocked: Option<bool>,
) -> Result<KeySearch, ApiError> {
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        return Err(ApiError::field("min_remaining", "must not be above max_remaining"));
    }
    Ok(KeySearch {
        product: product.filter(|p| !p.trim().is_empty()),
        min_remaining: min,
        max_remaining: max,
        blocked,
    })
}

pub(super) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_row(k: &PidmsKey) -> String {
    let n = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let t = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        k.keyname,
        k.keyname_with_dash,
        t(&k.prd),
        t(&k.eid),
        t(&k.is_key_type),
        n(k.is_retail),
        n(k.remaining),
        n(k.blocked),
        t(&k.errorcode),
        t(&k.sub),
        n(k.had_occurred),
        n(k.invalid),
        t(&k.datetime_checked_done),
        k.checked_at.to_rfc3339(),
    )
}

const CSV_HEADER: &str = "keyname,keyname_with_dash,prd,eid,is_key_type,is_retail,remaining,blocked,errorcode,sub,had_occurred,invalid,datetime_checked_done,checked_at\n";

#[OpenApi(tag = "ApiTags::Pidms")]
impl PidmsApi {
    /// Check keys against PIDKey (in batches of at most 50). With `wait` (at most 30 s) the
    /// answer carries every key's result if the check finishes in time; otherwise 202 with
    /// the check's id. Scope: `pidms:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/pidms/check",
        method = "post",
        operation_id = "checkPidmsKeys",
        transform = "pidms_write_idempotent"
    )]
    async fn check(
        &self,
        auth: Auth,
        wait: Query<Option<u64>>,
        body: Json<CheckRequest>,
    ) -> Result<CheckResponse, ApiError> {
        self.configured()?;
        let wait = wait.0.unwrap_or(0);
        if wait > 30 {
            return Err(ApiError::field("wait", "at most 30 seconds"));
        }
        let (keys, line_errors) = parse_key_lines(&body.keys);
        let errors: Vec<LineProblem> = line_errors.into_iter().map(Into::into).collect();
        let rejected = errors.len() as u64;
        if keys.is_empty() {
            let mut fields =
                vec![FieldError { field: "keys".into(), message: "no valid key".into() }];
            fields.extend(errors.iter().map(|e| FieldError {
                field: format!("keys[line {}]", e.line),
                message: e.message.clone(),
            }));
            return Err(ApiError::validation(fields));
        }
        if keys.len() > 10_000 {
            return Err(ApiError::field("keys", "at most 10000 keys per check; use several"));
        }
        let caller = auth.principal();
        let audit =
            AuditEntry::new(&caller.actor, &Owner::Platform, "pidms.check.started", "pidms_run")
                .changed(&[("keys", true)]);
        let by = caller.key_id.to_string();
        let run_id =
            start_run(&self.services, RunKind::Check, &keys, None, Some(&by), Some(audit)).await?;
        if wait > 0 {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
            loop {
                let run = self.run_or_404(&run_id).await?;
                if run.status == RunStatus::Completed {
                    return Ok(CheckResponse::Done(Json(
                        self.check_result(run, errors, rejected).await?,
                    )));
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(CheckResponse::Accepted(Json(CheckAccepted {
            job_id: run_id,
            accepted: keys.len() as u64,
            rejected,
            errors,
        })))
    }

    /// A check: its status and, once done, every key's result. Scope: `pidms:read`.
    #[oai(
        path = "/pidms/checks/:id",
        method = "get",
        operation_id = "getPidmsCheck",
        transform = "pidms_read"
    )]
    async fn get_check(
        &self,
        _auth: Auth,
        id: Path<String>,
    ) -> Result<Json<CheckResult>, ApiError> {
        let run = self.run_or_404(&id).await?;
        Ok(Json(self.check_result(run, Vec::new(), 0).await?))
    }

    /// Re-check every stored key (or those of matching products), as batch jobs. Scope:
    /// `pidms:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/pidms/sync",
        method = "post",
        operation_id = "syncPidms",
        transform = "pidms_write_idempotent"
    )]
    async fn sync(&self, auth: Auth, body: Json<SyncRequest>) -> Result<SyncResponse, ApiError> {
        self.configured()?;
        let filter = body.product_filter.as_deref().filter(|f| !f.trim().is_empty());
        let keys = self.services.store.pidms_keynames(filter).await?;
        let caller = auth.principal();
        let audit =
            AuditEntry::new(&caller.actor, &Owner::Platform, "pidms.sync.started", "pidms_run")
                .changed(&[("product_filter", filter.is_some())]);
        let by = caller.key_id.to_string();
        let run_id =
            start_run(&self.services, RunKind::Sync, &keys, filter, Some(&by), Some(audit)).await?;
        let run = self.run_or_404(&run_id).await?;
        Ok(SyncResponse::Accepted(Json(SyncAccepted {
            sync_id: run.id,
            keys_total: run.keys_total,
            batches_total: run.batches_total,
        })))
    }

    /// Checks and syncs, newest first, each with its progress. Scope: `pidms:read`.
    #[oai(
        path = "/pidms/syncs",
        method = "get",
        operation_id = "listPidmsSyncs",
        transform = "pidms_read"
    )]
    async fn list_syncs(
        &self,
        _auth: Auth,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<RunView>>, ApiError> {
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        let (total, runs) = self.services.store.list_pidms_runs(offset, page_size).await?;
        let mut items = Vec::with_capacity(runs.len());
        for run in runs {
            items.push(self.run_view(run).await?);
        }
        Ok(Json(Page { total, page, page_size, items }))
    }

    /// A sync (or check) run's progress: batches done of total, keys updated, each failed
    /// batch's error. Scope: `pidms:read`.
    #[oai(
        path = "/pidms/syncs/:id",
        method = "get",
        operation_id = "getPidmsSync",
        transform = "pidms_read"
    )]
    async fn get_sync(&self, _auth: Auth, id: Path<String>) -> Result<Json<RunView>, ApiError> {
        let run = self.run_or_404(&id).await?;
        Ok(Json(self.run_view(run).await?))
    }

    /// Search the inventory: product (case-insensitive substring), remaining range, blocked;
    /// ordered by product, then remaining (most first). Scope: `pidms:read`.
    #[oai(
        path = "/pidms/keys",
        method = "get",
        operation_id = "searchPidmsKeys",
        transform = "pidms_read"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn keys(
        &self,
        _auth: Auth,
        product: Query<Option<String>>,
        min_remaining: Query<Option<i64>>,
        max_remaining: Query<Option<i64>>,
        blocked: Query<Option<bool>>,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<PidmsKeyView>>, ApiError> {
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        let s = search(product.0, min_remaining.0, max_remaining.0, blocked.0)?;
        let (total, rows) = self.services.store.search_pidms_keys(&s, offset, page_size).await?;
        Ok(Json(Page { total, page, page_size, items: rows.into_iter().map(Into::into).collect() }))
    }

    /// The search as CSV, streamed (no page size limit). Scope: `pidms:read`.
    #[oai(
        path = "/pidms/keys/export.csv",
        method = "get",
        operation_id = "exportPidmsKeys",
        transform = "pidms_read"
    )]
    async fn export(
        &self,
        _auth: Auth,
        product: Query<Option<String>>,
        min_remaining: Query<Option<i64>>,
        max_remaining: Query<Option<i64>>,
        blocked: Query<Option<bool>>,
    ) -> Result<CsvResponse, ApiError> {
        let s = search(product.0, min_remaining.0, max_remaining.0, blocked.0)?;
        let store = self.services.store.clone();
        // Keyset pages in keyname order: constant cost per page however large the inventory.
        let stream = futures::stream::unfold(Some(None::<String>), move |after| {
            let (store, s) = (store.clone(), s.clone());
            async move {
                let after = after?;
                const PAGE: i64 = 1000;
                let mut chunk = if after.is_none() { CSV_HEADER.to_owned() } else { String::new() };
                match store.pidms_keys_after(&s, after.as_deref(), PAGE).await {
                    Ok(rows) => {
                        for row in &rows {
                            chunk.push_str(&csv_row(row));
                        }
                        let next = match rows.last() {
                            Some(last) if rows.len() as i64 == PAGE => {
                                Some(Some(last.keyname.clone()))
                            }
                            _ => None,
                        };
                        Some((Ok::<_, std::io::Error>(chunk.into_bytes()), next))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "CSV export cut short");
                        Some((Err(std::io::Error::other("the store stopped answering")), None))
                    }
                }
            }
        });
        Ok(CsvResponse::Csv(Binary(Body::from_bytes_stream(stream))))
    }

    /// One key. Scope: `pidms:read`.
    #[oai(
        path = "/pidms/keys/:keyname",
        method = "get",
        operation_id = "getPidmsKey",
        transform = "pidms_read"
    )]
    async fn key(
        &self,
        _auth: Auth,
        keyname: Path<String>,
    ) -> Result<Json<PidmsKeyView>, ApiError> {
        let name = normalise_key(&keyname).map_err(|m| ApiError::field("keyname", m))?;
        let key = self
            .services
            .store
            .pidms_key(&name)
            .await?
            .ok_or_else(|| ApiError::not_found("no such key in the inventory"))?;
        Ok(Json(key.into()))
    }

    /// Per product: key count, total and average remaining, and whether it is low. Scope:
    /// `pidms:read`.
    #[oai(
        path = "/pidms/products",
        method = "get",
        operation_id = "listPidmsProducts",
        transform = "pidms_read"
    )]
    async fn products(&self, _auth: Auth) -> Result<Json<ProductList>, ApiError> {
        let threshold = self.services.config.pidkey.low_inventory_threshold;
        let products = self
            .services
            .store
            .pidms_products()
            .await?
            .into_iter()
            .map(|p| ProductView {
                low_inventory: p.total_remaining < threshold,
                prd: p.prd,
                key_count: p.key_count,
                total_remaining: p.total_remaining,
                avg_remaining: p.avg_remaining,
            })
            .collect();
        Ok(Json(ProductList { threshold, products }))
    }
}
