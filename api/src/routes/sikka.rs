//! Sikka: practices (pulled from `authorized_practices`, never a secret shown) and
//! writebacks (validated, stored, then submitted and polled by the workers).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};
use switchyard_shared::{
    audit::AuditEntry,
    ids::WritebackId,
    jobs::{Job, SikkaWritebackJob},
    services::Services,
    sikka::validate,
    sikka::{
        NewWriteback, SikkaPractice, SikkaWriteback, TokenStatus, WritebackStatus, practice_context,
    },
    tenants::Owner,
};

use super::{ApiTags, Page, page_bounds};
use crate::{
    auth::scopes::{Auth, sikka_read, sikka_write, sikka_write_idempotent},
    problem::{ApiError, FieldError},
};

pub struct SikkaApi {
    pub services: Services,
}

#[derive(Object)]
struct PullAccepted {
    /// The pull's job: follow it with `GET /jobs/{job_id}`.
    job_id: String,
}

#[derive(Object)]
struct PracticeView {
    id: String,
    office_id: String,
    practice_id: Option<String>,
    practice_name: Option<String>,
    practice_management_system: Option<String>,
    domain: Option<String>,
    /// Listed by `authorized_practices` at the last pull.
    authorized: bool,
    /// `none` (no key yet), `active`, or `reauthorization_required`.
    token_status: String,
    token_expires_at: Option<DateTime<Utc>>,
    token_refreshed_at: Option<DateTime<Utc>>,
    token_refresh_count: i64,
    token_error: Option<String>,
    /// The tenant the practice is assigned to; `null`: the platform.
    tenant_id: Option<String>,
    updated_at: DateTime<Utc>,
}

#[derive(Object)]
struct AssignPractice {
    /// The tenant its writebacks and events belong to from now on; `null`: the platform.
    tenant_id: MaybeUndefined<String>,
}

#[derive(Object)]
struct WritebackRequest {
    /// The practice's office id (see `GET /sikka/practices`).
    office_id: String,
    /// `book_appointment`, `create_patient`, `update_appointment` or `update_patient`.
    operation: String,
    /// `appointment_sr_no` for `update_appointment`, `patient_id` for `update_patient`.
    target_id: Option<String>,
    /// The fields for the operation (dates `yyyy-mm-dd`, times `HH:mm`); numbers are sent to
    /// Sikka as strings.
    body: serde_json::Value,
}

#[derive(Object)]
struct WritebackView {
    id: String,
    office_id: Option<String>,
    operation: String,
    target_id: Option<String>,
    body: serde_json::Value,
    /// `queued`, `submitted`, `pending`, `completed` or `failed`.
    status: String,
    /// Sikka's writeback id, once submitted.
    sikka_id: Option<String>,
    /// Sikka's result text.
    result: Option<String>,
    error: Option<String>,
    submit_attempts: i64,
    check_count: i64,
    created_at: DateTime<Utc>,
    submitted_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    /// Not completed by then: failed as stuck.
    deadline_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum PullResponse {
    #[oai(status = 202)]
    Accepted(Json<PullAccepted>),
}

#[derive(ApiResponse)]
enum WritebackResponse {
    /// Stored and queued for submission: follow `GET /sikka/writebacks/{id}`.
    #[oai(status = 202)]
    Accepted(Json<WritebackView>),
}

impl SikkaApi {
    /// A practice as the API shows it: never a secret or a key.
    fn practice_view(&self, p: SikkaPractice) -> Result<PracticeView, ApiError> {
        Ok(PracticeView {
            office_id: self.office_of(&p)?,
            id: p.id.into_string(),
            practice_id: p.practice_id,
            practice_name: p.practice_name,
            practice_management_system: p.practice_management_system,
            domain: p.domain,
            authorized: p.authorized,
            token_status: p.token_status.to_string(),
            token_expires_at: p.key_expires_at,
            token_refreshed_at: p.refreshed_at,
            token_refresh_count: p.refresh_count,
            token_error: p.token_error,
            tenant_id: p.tenant_id.tenant_id().map(ToString::to_string),
            updated_at: p.updated_at,
        })
    }

    fn office_of(&self, p: &SikkaPractice) -> Result<String, ApiError> {
        let office = self
            .services
            .cipher
            .open_string(&practice_context("office-id", &p.id), &p.office_id_sealed)
            .map_err(|e| ApiError::internal(&e))?;
        Ok(office.expose().clone())
    }

    async fn practice_for_office(
        &self,
        office_id: &str,
    ) -> Result<Option<SikkaPractice>, ApiError> {
        let digest = self.services.cipher.digest("sikka-office", office_id.trim());
        Ok(self.services.store.sikka_practice_by_digest(&digest).await?)
    }

    fn view(&self, w: SikkaWriteback, office_id: Option<String>) -> WritebackView {
        WritebackView {
            body: serde_json::from_str(&w.body).unwrap_or(serde_json::Value::Null),
            id: w.id.into_string(),
            office_id,
            operation: w.operation,
            target_id: w.target_id,
            status: w.status.to_string(),
            sikka_id: w.sikka_id,
            result: w.result,
            error: w.error,
            submit_attempts: w.submit_attempts,
            check_count: w.check_count,
            created_at: w.created_at,
            submitted_at: w.submitted_at,
            completed_at: w.completed_at,
            deadline_at: w.deadline_at,
            updated_at: w.updated_at,
        }
    }

    async fn office_for_ref(
        &self,
        cache: &mut HashMap<String, Option<String>>,
        practice_ref: &str,
    ) -> Result<Option<String>, ApiError> {
        if let Some(office) = cache.get(practice_ref) {
            return Ok(office.clone());
        }
        let office = match self.services.store.sikka_practice(practice_ref).await? {
            Some(p) => Some(self.office_of(&p)?),
            None => None,
        };
        cache.insert(practice_ref.to_owned(), office.clone());
        Ok(office)
    }
}

#[OpenApi(tag = "ApiTags::Sikka")]
impl SikkaApi {
    /// Pull the practices that have authorized the app from Sikka (`authorized_practices`)
    /// and store them, credentials sealed. Scope: `sikka:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/sikka/practices/refresh",
        method = "post",
        operation_id = "refreshSikkaPractices",
        transform = "sikka_write_idempotent"
    )]
    async fn refresh_practices(&self, auth: Auth) -> Result<PullResponse, ApiError> {
        let sikka = &self.services.config.sikka;
        if !sikka.has_credentials() {
            let missing: Vec<&str> = [
                (sikka.app_id.is_none(), "SIKKA_APP_ID"),
                (sikka.app_key.is_none(), "SIKKA_APP_KEY"),
            ]
            .into_iter()
            .filter_map(|(absent, name)| absent.then_some(name))
            .collect();
            return Err(ApiError::not_configured("Sikka", &missing));
        }
        let job_id = self.services.queue.push(Job::SikkaPracticesPull).await?;
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &Owner::Platform,
            "sikka.practices.refresh_requested",
            "job",
        )
        .target(job_id.as_str());
        super::queues::record_queue_action(&self.services, &audit).await;
        Ok(PullResponse::Accepted(Json(PullAccepted { job_id })))
    }

    /// The stored practices: office id, name, token expiry and status — never a secret or a
    /// key. Scope: `sikka:read`.
    #[oai(
        path = "/sikka/practices",
        method = "get",
        operation_id = "listSikkaPractices",
        transform = "sikka_read"
    )]
    async fn practices(&self, _auth: Auth) -> Result<Json<Vec<PracticeView>>, ApiError> {
        let mut out = Vec::new();
        for p in self.services.store.list_sikka_practices().await? {
            out.push(self.practice_view(p)?);
        }
        Ok(Json(out))
    }

    /// Assign a practice to a tenant (`tenant_id`), or back to the platform (`null`): its
    /// writebacks' events then go to that owner's endpoints. Scope: `sikka:write`.
    #[oai(
        path = "/sikka/practices/:id",
        method = "patch",
        operation_id = "updateSikkaPractice",
        transform = "sikka_write"
    )]
    async fn assign(
        &self,
        auth: Auth,
        id: Path<String>,
        body: Json<AssignPractice>,
    ) -> Result<Json<PracticeView>, ApiError> {
        let owner = match &body.tenant_id {
            MaybeUndefined::Undefined => {
                return Err(ApiError::field("tenant_id", "required: a tenant id, or null"));
            }
            MaybeUndefined::Null => Owner::Platform,
            MaybeUndefined::Value(t) => match self.services.store.tenant(t).await? {
                Some(row) if row.deleted_at.is_none() => Owner::Tenant(row.id),
                _ => return Err(ApiError::field("tenant_id", "no such tenant")),
            },
        };
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &owner,
            "sikka.practice.updated",
            "sikka_practice",
        )
        .target(id.0.as_str())
        .changed(&[("tenant_id", true)]);
        let row =
            self.services.store.assign_sikka_practice(&id, &owner, Utc::now(), &audit).await?;
        let row = row.ok_or_else(|| ApiError::not_found("no such Sikka practice"))?;
        Ok(Json(self.practice_view(row)?))
    }

    /// Write to a practice's system: `book_appointment`, `create_patient`,
    /// `update_appointment` (target_id = appointment_sr_no), `update_patient` (target_id =
    /// patient_id). The body is checked for the operation (required fields, date and time
    /// formats) and every bad field named; then the writeback is stored, submitted to Sikka
    /// and followed until it completes or fails (`sikka.writeback.completed` /
    /// `sikka.writeback.failed`). Scope: `sikka:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/sikka/writebacks",
        method = "post",
        operation_id = "createSikkaWriteback",
        transform = "sikka_write_idempotent"
    )]
    async fn create_writeback(
        &self,
        auth: Auth,
        body: Json<WritebackRequest>,
    ) -> Result<WritebackResponse, ApiError> {
        let req = body.0;
        let valid =
            validate(&req.operation, req.target_id.as_deref(), &req.body).map_err(|errors| {
                ApiError::validation(
                    errors
                        .into_iter()
                        .map(|e| FieldError { field: e.field, message: e.message })
                        .collect(),
                )
            })?;
        let office_id = req.office_id.trim();
        if office_id.is_empty() {
            return Err(ApiError::field("office_id", "is required"));
        }
        let Some(practice) = self.practice_for_office(office_id).await? else {
            return Err(ApiError::field(
                "office_id",
                "no stored practice has this office id; pull them with POST /sikka/practices/refresh",
            ));
        };
        if !practice.authorized {
            return Err(ApiError::field("office_id", "this practice no longer authorizes the app"));
        }
        if practice.token_status == TokenStatus::ReauthorizationRequired {
            return Err(ApiError::conflict(
                "this practice must authorize the app again before writebacks can be sent",
            ));
        }
        let now = Utc::now();
        let stuck = chrono::Duration::seconds(self.services.config.sikka.stuck_after_secs as i64);
        let id = WritebackId::generate();
        let body_text = serde_json::Value::Object(valid.body).to_string();
        let caller = auth.principal().key_id.to_string();
        let row = NewWriteback {
            id: &id,
            practice_ref: &practice.id,
            operation: valid.operation.as_str(),
            target_id: valid.target_id.as_deref(),
            body: &body_text,
            deadline_at: now + stuck,
            created_by: Some(&caller),
            now,
        };
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &practice.tenant_id,
            "sikka.writeback.created",
            "sikka_writeback",
        )
        .target(id.as_str())
        .changed(&[
            ("operation", true),
            ("target_id", row.target_id.is_some()),
            ("body", true),
        ]);
        let store = &self.services.store;
        store.insert_sikka_writeback(&row, &audit).await?;
        // Written first: if this push is lost, the sweep submits it.
        let job = Job::SikkaWritebackSubmit(SikkaWritebackJob { writeback_id: id.clone() });
        if let Err(error) = self.services.queue.push(job).await {
            tracing::warn!(%error, writeback = %id, "enqueueing a writeback failed; the sweep will submit it");
        }
        let stored = store
            .sikka_writeback(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such writeback"))?;
        Ok(WritebackResponse::Accepted(Json(self.view(stored, Some(office_id.to_owned())))))
    }

    /// One writeback: status, Sikka id, result, checks made. Scope: `sikka:read`.
    #[oai(
        path = "/sikka/writebacks/:id",
        method = "get",
        operation_id = "getSikkaWriteback",
        transform = "sikka_read"
    )]
    async fn get_writeback(
        &self,
        _auth: Auth,
        id: Path<String>,
    ) -> Result<Json<WritebackView>, ApiError> {
        let w = self
            .services
            .store
            .sikka_writeback(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such writeback"))?;
        let office = self.office_for_ref(&mut HashMap::new(), &w.practice_ref).await?;
        Ok(Json(self.view(w, office)))
    }

    /// Writebacks, newest first, by status and office. Scope: `sikka:read`.
    #[oai(
        path = "/sikka/writebacks",
        method = "get",
        operation_id = "listSikkaWritebacks",
        transform = "sikka_read"
    )]
    async fn list_writebacks(
        &self,
        _auth: Auth,
        status: Query<Option<String>>,
        office_id: Query<Option<String>>,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<WritebackView>>, ApiError> {
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        let status = match status.0.as_deref() {
            Some(s) => Some(
                s.parse::<WritebackStatus>()
                    .map_err(|expected| ApiError::field("status", format!("must be {expected}")))?,
            ),
            None => None,
        };
        let practice_ref = match office_id.0.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
            Some(office) => match self.practice_for_office(office).await? {
                Some(p) => Some(p.id),
                None => {
                    return Ok(Json(Page { total: 0, page, page_size, items: Vec::new() }));
                }
            },
            None => None,
        };
        let (rows, total) = self
            .services
            .store
            .list_sikka_writebacks(status, practice_ref.as_deref(), offset, page_size)
            .await?;
        let mut cache = HashMap::new();
        let mut items = Vec::with_capacity(rows.len());
        for w in rows {
            let office = self.office_for_ref(&mut cache, &w.practice_ref).await?;
            items.push(self.view(w, office));
        }
        Ok(Json(Page { total, page, page_size, items }))
    }
}
