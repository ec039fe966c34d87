//! The audit log: filtered, newest first, keyset-paginated, and as CSV. A tenant's key sees
//! its tenant's entries only; a platform key every entry, or one tenant's with `tenant_id`.

use chrono::{DateTime, Utc};
use poem::Body;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::Query,
    payload::{Binary, Json},
};
use switchyard_shared::{
    audit::{AuditFilter, AuditRow},
    services::Services,
    tenants::Owner,
};

use super::{ApiTags, CursorPage, cursor_page, keyset_limit, pidms::csv_field};
use crate::{
    auth::scopes::{Auth, audit_read},
    problem::ApiError,
};

pub struct AuditApi {
    pub services: Services,
}

#[derive(Object)]
struct AuditView {
    /// `aud_…`, in the order entries were written.
    id: String,
    at: DateTime<Utc>,
    /// The tenant of the record changed; `null`: the platform.
    tenant_id: Option<String>,
    actor_key_id: Option<String>,
    actor_key_prefix: Option<String>,
    /// `api_key.created`, `webhook.endpoint.updated`, …
    action: String,
    target_type: String,
    target_id: Option<String>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    /// `success` for a change.
    outcome: String,
    /// The fields the change set (names only, never values).
    changed_fields: Vec<String>,
    /// A security event in words (how many failed authentications, why a key was
    /// suspended); empty for a change.
    detail: String,
}

impl From<AuditRow> for AuditView {
    fn from(r: AuditRow) -> Self {
        Self {
            changed_fields: r.changed.split_whitespace().map(str::to_owned).collect(),
            id: r.id,
            at: r.at,
            tenant_id: r.tenant_id.tenant_id().map(ToString::to_string),
            actor_key_id: r.actor_key_id,
            actor_key_prefix: r.actor_prefix,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            client_addr: r.client_addr,
            user_agent: r.user_agent,
            request_id: r.request_id,
            outcome: r.outcome,
            detail: r.detail,
        }
    }
}

#[derive(ApiResponse)]
enum CsvResponse {
    /// The entries as CSV, newest first.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Csv(Binary<Body>),
}

/// Entries in one CSV export at most.
const MAX_EXPORT: i64 = 100_000;

/// A CSV field a spreadsheet will not run as a formula.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@']) { csv_field(&format!("'{s}")) } else { csv_field(s) }
}

/// The query parameters both routes take.
struct Filters {
    action: Option<String>,
    actor_key_id: Option<String>,
    target_id: Option<String>,
    tenant_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl AuditApi {
    fn filter(&self, auth: &Auth, f: Filters) -> Result<AuditFilter, ApiError> {
        let caller = auth.principal();
        let tenant = match (&caller.owner, f.tenant_id) {
            // A platform key sees every entry unless it names a tenant (deleted ones too).
            (Owner::Platform, None) => None,
            (Owner::Platform, Some(t)) => Some(Owner::from_column(t)),
            (Owner::Tenant(own), Some(t)) if t != own.as_str() => {
                return Err(crate::auth::tenancy::no_such_tenant());
            }
            (own, _) => Some(own.clone()),
        };
        super::check_window(f.since, f.until)?;
        Ok(AuditFilter {
            tenant,
            action: f.action,
            actor_key_id: f.actor_key_id,
            target_id: f.target_id,
            since: f.since,
            until: f.until,
            before: None,
        })
    }
}

#[OpenApi(tag = "ApiTags::Keys")]
impl AuditApi {
    /// Audit entries, newest first: every change made through the API (keys, tenants,
    /// endpoints, secret rotations, Sikka practice assignments) with its actor, address,
    /// request id and the names of the fields it set. Page with `before` = the previous
    /// page's `next_cursor`. Scope: `audit:read`.
    #[oai(
        path = "/audit-log",
        method = "get",
        operation_id = "listAuditLog",
        transform = "audit_read"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        action: Query<Option<String>>,
        actor_key_id: Query<Option<String>>,
        target_id: Query<Option<String>>,
        tenant_id: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        before: Query<Option<String>>,
        limit: Query<Option<i64>>,
    ) -> Result<Json<CursorPage<AuditView>>, ApiError> {
        let limit = keyset_limit(limit.0)?;
        let filters = Filters {
            action: action.0,
            actor_key_id: actor_key_id.0,
            target_id: target_id.0,
            tenant_id: tenant_id.0,
            since: since.0,
            until: until.0,
        };
        let mut filter = self.filter(&auth, filters)?;
        filter.before = before.0;
        // One more than asked: whether there is a next page.
        let rows = self.services.store.audit_entries(&filter, limit + 1).await?;
        Ok(Json(cursor_page(rows, limit, |r| r.id.clone(), AuditView::from)))
    }

    /// The same entries as CSV (at most 100,000, newest first), for reports. Scope:
    /// `audit:read`.
    #[oai(
        path = "/audit-log/export.csv",
        method = "get",
        operation_id = "exportAuditLog",
        transform = "audit_read"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn export(
        &self,
        auth: Auth,
        action: Query<Option<String>>,
        actor_key_id: Query<Option<String>>,
        target_id: Query<Option<String>>,
        tenant_id: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
    ) -> Result<CsvResponse, ApiError> {
        let filters = Filters {
            action: action.0,
            actor_key_id: actor_key_id.0,
            target_id: target_id.0,
            tenant_id: tenant_id.0,
            since: since.0,
            until: until.0,
        };
        let filter = self.filter(&auth, filters)?;
        let rows = self.services.store.audit_entries(&filter, MAX_EXPORT).await?;
        let mut out = String::from(
            "id,at,tenant_id,actor_key_id,actor_key_prefix,action,target_type,target_id,\
             client_addr,user_agent,request_id,outcome,changed_fields,detail\n",
        );
        for r in rows {
            let o = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                r.id,
                r.at.to_rfc3339(),
                cell(r.tenant_id.as_column()),
                o(&r.actor_key_id),
                o(&r.actor_prefix),
                cell(&r.action),
                cell(&r.target_type),
                o(&r.target_id),
                o(&r.client_addr),
                o(&r.user_agent),
                o(&r.request_id),
                cell(&r.outcome),
                cell(&r.changed),
                cell(&r.detail),
            ));
        }
        Ok(CsvResponse::Csv(Binary(Body::from_string(out))))
    }
}
