//! Tenants: create, list, show, change, delete (soft: the tenant's keys stop working and its
//! endpoints stop receiving). Platform keys only (`tenants:manage`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use switchyard_shared::{
    audit::AuditEntry,
    ids::TenantId,
    services::Services,
    tenants::Owner,
    tenants::{self, NewTenant, TenantPatch, TenantRow},
};

use super::{ApiTags, Page, keys::check_metadata, page_bounds};
use crate::{
    auth::{
        Authenticator,
        scopes::{Auth, tenants_manage},
        tenancy::no_such_tenant,
    },
    problem::{ApiError, FieldError},
};

pub struct TenantsApi {
    pub services: Services,
    pub auth: Arc<Authenticator>,
}

#[derive(Object)]
struct CreateTenant {
    /// 1–200 characters.
    name: String,
    /// A JSON object of your own (at most 4 KiB).
    metadata: Option<serde_json::Value>,
}

#[derive(Object)]
struct UpdateTenant {
    name: Option<String>,
    /// Replaces the metadata.
    metadata: Option<serde_json::Value>,
}

#[derive(Object)]
struct TenantView {
    /// `tn_…`
    id: String,
    name: String,
    metadata: serde_json::Value,
    /// active or deleted.
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

impl From<TenantRow> for TenantView {
    fn from(r: TenantRow) -> Self {
        Self {
            id: r.id.into_string(),
            name: r.name,
            metadata: serde_json::from_str(&r.metadata).unwrap_or_default(),
            status: r.status.as_str().to_owned(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
        }
    }
}

#[derive(ApiResponse)]
enum Created {
    /// Created.
    #[oai(status = 201)]
    Created(Json<TenantView>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted: its keys stop working and its endpoints stop receiving.
    #[oai(status = 204)]
    Deleted,
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    if !tenants::valid_name(name) {
        errors.push(FieldError {
            field: "name".into(),
            message: "1 to 200 characters, no control characters".into(),
        });
    }
}

#[OpenApi(tag = "ApiTags::Tenants")]
impl TenantsApi {
    /// Create a tenant. Scope: `tenants:manage` (platform keys only).
    #[oai(
        path = "/tenants",
        method = "post",
        operation_id = "createTenant",
        transform = "tenants_manage"
    )]
    async fn create(&self, auth: Auth, body: Json<CreateTenant>) -> Result<Created, ApiError> {
        let mut errors = Vec::new();
        check_name(&body.name, &mut errors);
        let metadata = check_metadata(body.metadata.as_ref(), &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let new = NewTenant {
            id: TenantId::generate(),
            name: body.name.trim().to_owned(),
            metadata: metadata.unwrap_or_else(|| "{}".to_owned()),
        };
        let owner = Owner::Tenant(new.id.clone());
        let audit = AuditEntry::new(&auth.principal().actor, &owner, "tenant.created", "tenant")
            .target(new.id.as_str())
            .changed(&[("name", true), ("metadata", body.metadata.is_some())]);
        let row = self.services.store.insert_tenant(&new, Utc::now(), &audit).await?;
        tracing::info!(tenant_id = %row.id, "tenant created");
        Ok(Created::Created(Json(row.into())))
    }

    /// Tenants, newest first; deleted ones with `include_deleted=true`. Scope:
    /// `tenants:manage`.
    #[oai(
        path = "/tenants",
        method = "get",
        operation_id = "listTenants",
        transform = "tenants_manage"
    )]
    async fn list(
        &self,
        _auth: Auth,
        include_deleted: Query<Option<bool>>,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<TenantView>>, ApiError> {
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        let include_deleted = include_deleted.0.unwrap_or(false);
        let (total, rows) =
            self.services.store.list_tenants(include_deleted, offset, page_size).await?;
        Ok(Json(Page { total, page, page_size, items: rows.into_iter().map(Into::into).collect() }))
    }

    /// One tenant (deleted ones too, with status `deleted`). Scope: `tenants:manage`.
    #[oai(
        path = "/tenants/:id",
        method = "get",
        operation_id = "getTenant",
        transform = "tenants_manage"
    )]
    async fn get(&self, _auth: Auth, id: Path<String>) -> Result<Json<TenantView>, ApiError> {
        let row = self.services.store.tenant(&id).await?.ok_or_else(no_such_tenant)?;
        Ok(Json(row.into()))
    }

    /// Rename a tenant or replace its metadata. Scope: `tenants:manage`.
    #[oai(
        path = "/tenants/:id",
        method = "patch",
        operation_id = "updateTenant",
        transform = "tenants_manage"
    )]
    async fn update(
        &self,
        auth: Auth,
        id: Path<String>,
        body: Json<UpdateTenant>,
    ) -> Result<Json<TenantView>, ApiError> {
        let mut errors = Vec::new();
        if let Some(name) = &body.name {
            check_name(name, &mut errors);
        }
        let metadata = check_metadata(body.metadata.as_ref(), &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let patch = TenantPatch { name: body.name.as_ref().map(|n| n.trim().to_owned()), metadata };
        let owner = Owner::Tenant(TenantId::from(id.0.as_str()));
        let audit = AuditEntry::new(&auth.principal().actor, &owner, "tenant.updated", "tenant")
            .target(id.0.as_str())
            .changed(&[("name", patch.name.is_some()), ("metadata", patch.metadata.is_some())]);
        let row = self.services.store.update_tenant(&id, &patch, Utc::now(), &audit).await?;
        Ok(Json(row.ok_or_else(no_such_tenant)?.into()))
    }

    /// Delete a tenant (soft): its keys stop working at once in every API process, its
    /// endpoints are disabled. Scope: `tenants:manage`.
    #[oai(
        path = "/tenants/:id",
        method = "delete",
        operation_id = "deleteTenant",
        transform = "tenants_manage"
    )]
    async fn delete(&self, auth: Auth, id: Path<String>) -> Result<Deleted, ApiError> {
        let owner = Owner::Tenant(TenantId::from(id.0.as_str()));
        let audit = AuditEntry::new(&auth.principal().actor, &owner, "tenant.deleted", "tenant")
            .target(id.0.as_str());
        let keys = self.services.store.delete_tenant(&id, Utc::now(), &audit).await?;
        let keys = keys.ok_or_else(no_such_tenant)?;
        for key in &keys {
            self.auth.key_changed(key).await;
        }
        tracing::info!(tenant_id = %id.0, keys = keys.len(), "tenant deleted");
        Ok(Deleted::Deleted)
    }
}
