//! API keys: create (the raw key shown once), list, show, change, revoke.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use switchyard_shared::{
    access::{ApiKeyPatch, ApiKeyRow, KeyQuotas, NewApiKey},
    access::{Environment, RawKey, Scope, grants, scopes_to_text},
    audit::AuditEntry,
    ids::ApiKeyId,
    services::Services,
    tenants::Owner,
};

use super::{ApiTags, Page, page_bounds};
use crate::{
    auth::{
        Authenticator,
        scopes::{Auth, keys_manage},
        tenancy::owned,
    },
    problem::{ApiError, FieldError},
};

pub struct KeysApi {
    pub services: Services,
    pub auth: Arc<Authenticator>,
}

#[derive(Object)]
struct CreateKey {
    /// What the key is for (1–100 characters).
    name: String,
    /// Scopes to grant; a key can grant only scopes it holds itself.
    #[oai(validator(max_items = 64))]
    scopes: Vec<String>,
    /// `live` or `test` (default: the environment of the creating key).
    environment: Option<String>,
    /// When the key stops working (RFC 3339, in the future).
    expires_at: Option<DateTime<Utc>>,
    /// Requests per minute for this key (default: the server's setting); the same as
    /// `rate_limits.per_minute`.
    rate_limit_per_minute: Option<i64>,
    /// Limits per window: `per_minute` (smooth, GCRA) and quotas per UTC hour, day and
    /// calendar month; any left out take the server's defaults.
    rate_limits: Option<RateLimits>,
    /// The tenant the key belongs to (platform keys only; a tenant's key always makes keys
    /// of its own tenant). Without it, a platform key makes a platform key.
    tenant_id: Option<String>,
    /// A JSON object of your own (at most 4 KiB), shown back as given.
    metadata: Option<serde_json::Value>,
}

#[derive(Object)]
struct UpdateKey {
    name: Option<String>,
    #[oai(validator(max_items = 64))]
    scopes: Option<Vec<String>>,
    rate_limit_per_minute: Option<i64>,
    /// Each window given replaces that limit.
    rate_limits: Option<RateLimits>,
    /// `false` revokes the key; `true` re-activates a revoked (not deleted) key.
    active: Option<bool>,
    /// Replaces the metadata (a JSON object, at most 4 KiB).
    metadata: Option<serde_json::Value>,
}

/// A key's limits; `null` in a view means the server's default.
#[derive(Object, Clone, Copy, Default)]
struct RateLimits {
    per_minute: Option<i64>,
    per_hour: Option<i64>,
    per_day: Option<i64>,
    per_month: Option<i64>,
}

/// What is used of one window now.
#[derive(Object)]
struct WindowUsage {
    /// per_hour, per_day or per_month.
    window: String,
    limit: u64,
    used: u64,
    remaining: u64,
    resets_at: DateTime<Utc>,
}

#[derive(Object)]
pub(crate) struct KeyView {
    id: String,
    name: String,
    /// The first characters of the key, to recognise it (`sy_live_Ab3x`).
    prefix: String,
    scopes: Vec<String>,
    environment: String,
    /// active, revoked or expired.
    status: String,
    expires_at: Option<DateTime<Utc>>,
    rate_limit_per_minute: Option<i64>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Updated in batches every few seconds.
    last_used_at: Option<DateTime<Utc>>,
    usage_count: i64,
    /// The key's tenant; `null` for a platform key.
    tenant_id: Option<String>,
    metadata: serde_json::Value,
    deleted_at: Option<DateTime<Utc>>,
    /// The key's own limits (`null`: the server's default).
    rate_limits: RateLimits,
    /// What is used of each quota window now (on `GET /api-keys/{id}`).
    #[oai(default, skip_serializing_if_is_empty)]
    usage_windows: Vec<WindowUsage>,
}

impl From<ApiKeyRow> for KeyView {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            status: r.status_at(Utc::now()).as_str().to_owned(),
            scopes: r.scope_list().iter().map(ToString::to_string).collect(),
            id: r.id.into_string(),
            name: r.name,
            prefix: r.prefix,
            environment: r.environment,
            expires_at: r.expires_at,
            rate_limit_per_minute: r.rate_limit_per_minute,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_used_at: r.last_used_at,
            usage_count: r.usage_count,
            tenant_id: r.tenant_id.tenant_id().map(|t| t.to_string()),
            metadata: serde_json::from_str(&r.metadata).unwrap_or_default(),
            deleted_at: r.deleted_at,
            rate_limits: RateLimits {
                per_minute: r.rate_limit_per_minute,
                per_hour: r.rate_limit_per_hour,
                per_day: r.rate_limit_per_day,
                per_month: r.rate_limit_per_month,
            },
            usage_windows: Vec::new(),
        }
    }
}

#[derive(Object)]
struct KeyCreated {
    /// The key itself. It is shown this once and stored only as a hash: keep it now.
    key: String,
    #[oai(flatten)]
    view: KeyView,
}

#[derive(ApiResponse)]
enum CreateResponse {
    /// Created; `key` is shown only in this response.
    #[oai(status = 201)]
    Created(Json<KeyCreated>),
}

#[derive(ApiResponse)]
enum DeleteResponse {
    /// Revoked (the record stays, with status `revoked`).
    #[oai(status = 204)]
    Revoked,
}

type KeyPage = Page<KeyView>;

/// Checks names, scopes (known, held by the caller, and for a tenant's key none that only
/// platform keys hold) and limits; collects every problem.
fn check_scopes(
    raw: &[String],
    held: &[Scope],
    owner: &Owner,
    errors: &mut Vec<FieldError>,
) -> Vec<Scope> {
    let mut scopes = Vec::new();
    if raw.is_empty() {
        errors.push(FieldError { field: "scopes".into(), message: "at least one scope".into() });
    }
    for (i, s) in raw.iter().enumerate() {
        match s.parse::<Scope>() {
            Ok(scope) if scope.platform_only() && !owner.is_platform() => {
                errors.push(FieldError {
                    field: format!("scopes[{i}]"),
                    message: format!("`{scope}` is for platform keys only"),
                });
            }
            Ok(scope) if grants(held, scope) => scopes.push(scope),
            Ok(scope) => errors.push(FieldError {
                field: format!("scopes[{i}]"),
                message: format!("cannot grant `{scope}`: the calling key does not hold it"),
            }),
            Err(e) => errors.push(FieldError { field: format!("scopes[{i}]"), message: e }),
        }
    }
    scopes
}

/// Metadata: a JSON object of at most 4 KiB, stored as text.
pub(crate) fn check_metadata(
    value: Option<&serde_json::Value>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = value?;
    let text = value.to_string();
    if !value.is_object() {
        errors.push(FieldError { field: "metadata".into(), message: "a JSON object".into() });
    } else if text.len() > 4096 {
        errors.push(FieldError { field: "metadata".into(), message: "at most 4096 bytes".into() });
    }
    Some(text)
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    let len = name.trim().chars().count();
    if len == 0 || len > 100 {
        errors.push(FieldError { field: "name".into(), message: "1 to 100 characters".into() });
    }
}

/// The per-minute rate (given either way, the same if both) and the window quotas.
fn check_limits(
    alias: Option<i64>,
    limits: Option<RateLimits>,
    errors: &mut Vec<FieldError>,
) -> (Option<i64>, KeyQuotas) {
    let limits = limits.unwrap_or_default();
    if alias.is_some() && limits.per_minute.is_some() && alias != limits.per_minute {
        errors.push(FieldError {
            field: "rate_limits.per_minute".into(),
            message: "differs from rate_limit_per_minute; give one".into(),
        });
    }
    let per_minute = alias.or(limits.per_minute);
    if per_minute.is_some_and(|r| !(1..=1_000_000).contains(&r)) {
        let field =
            if alias.is_some() { "rate_limit_per_minute" } else { "rate_limits.per_minute" };
        errors.push(FieldError { field: field.into(), message: "between 1 and 1000000".into() });
    }
    for (name, value) in [
        ("per_hour", limits.per_hour),
        ("per_day", limits.per_day),
        ("per_month", limits.per_month),
    ] {
        if value.is_some_and(|v| !(1..=1_000_000_000).contains(&v)) {
            errors.push(FieldError {
                field: format!("rate_limits.{name}"),
                message: "between 1 and 1000000000".into(),
            });
        }
    }
    let quotas = KeyQuotas {
        per_hour: limits.per_hour,
        per_day: limits.per_day,
        per_month: limits.per_month,
    };
    (per_minute, quotas)
}

#[derive(Object)]
struct WhoAmI {
    key_id: String,
    scopes: Vec<String>,
    environment: String,
    /// The key's tenant; `null` for a platform key.
    tenant_id: Option<String>,
}

#[OpenApi(tag = "ApiTags::Keys")]
impl KeysApi {
    /// The calling key: its id, scopes, environment and tenant. Any valid key.
    #[oai(path = "/whoami", method = "get", operation_id = "whoAmI")]
    async fn whoami(&self, auth: Auth) -> Json<WhoAmI> {
        let p = auth.principal();
        Json(WhoAmI {
            key_id: p.key_id.to_string(),
            scopes: p.scopes.iter().map(ToString::to_string).collect(),
            environment: p.environment.as_str().to_owned(),
            tenant_id: p.owner.tenant_id().map(|t| t.to_string()),
        })
    }

    /// Create a key. The raw key is in the response once; only its hash is stored. Scope:
    /// `keys:manage`.
    #[oai(
        path = "/api-keys",
        method = "post",
        operation_id = "createApiKey",
        transform = "keys_manage"
    )]
    async fn create(&self, auth: Auth, body: Json<CreateKey>) -> Result<CreateResponse, ApiError> {
        let caller = auth.principal();
        let owner = caller.acting_for(&self.services.store, body.tenant_id.as_deref()).await?;
        let mut errors = Vec::new();
        check_name(&body.name, &mut errors);
        let scopes = check_scopes(&body.scopes, &caller.scopes, &owner, &mut errors);
        let metadata = check_metadata(body.metadata.as_ref(), &mut errors);
        let (per_minute, quotas) =
            check_limits(body.rate_limit_per_minute, body.rate_limits, &mut errors);
        let environment = match body.environment.as_deref() {
            None => caller.environment,
            Some(e) => e.parse::<Environment>().unwrap_or_else(|msg| {
                errors.push(FieldError { field: "environment".into(), message: msg });
                caller.environment
            }),
        };
        if body.expires_at.is_some_and(|t| t <= Utc::now()) {
            errors.push(FieldError {
                field: "expires_at".into(),
                message: "must be in the future".into(),
            });
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let raw = RawKey::generate(environment);
        let new = NewApiKey {
            id: ApiKeyId::generate(),
            name: body.name.trim().to_owned(),
            key_hash: raw.digest(),
            prefix: raw.display_prefix().to_owned(),
            scopes: scopes_to_text(&scopes),
            environment: environment.as_str().to_owned(),
            rate_limit_per_minute: per_minute,
            expires_at: body.expires_at,
            created_by: Some(caller.key_id.to_string()),
            tenant_id: owner,
            metadata: metadata.unwrap_or_else(|| "{}".to_owned()),
            quotas,
        };
        let audit = AuditEntry::new(&caller.actor, &new.tenant_id, "api_key.created", "api_key")
            .target(new.id.as_str())
            .changed(&[
                ("name", true),
                ("scopes", true),
                ("environment", true),
                ("expires_at", new.expires_at.is_some()),
                ("rate_limit_per_minute", new.rate_limit_per_minute.is_some()),
                ("rate_limits", new.quotas != KeyQuotas::default()),
                ("metadata", body.metadata.is_some()),
            ]);
        let row = self.services.store.insert_api_key(&new, Utc::now(), &audit).await?;
        tracing::info!(key_id = %row.id, prefix = %row.prefix, created_by = %caller.key_id, "api key created");
        Ok(CreateResponse::Created(Json(KeyCreated {
            key: raw.expose().to_owned(),
            view: row.into(),
        })))
    }

    /// The keys of the caller's tenant (or of the platform, or of the tenant a platform key
    /// names), newest first, never the key itself; deleted keys with
    /// `include_deleted=true`. Scope: `keys:manage`.
    #[oai(
        path = "/api-keys",
        method = "get",
        operation_id = "listApiKeys",
        transform = "keys_manage"
    )]
    async fn list(
        &self,
        auth: Auth,
        tenant_id: Query<Option<String>>,
        include_deleted: Query<Option<bool>>,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<KeyPage>, ApiError> {
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        let owner = auth.principal().acting_for(&self.services.store, tenant_id.as_deref()).await?;
        let include_deleted = include_deleted.0.unwrap_or(false);
        let (total, rows) = self
            .services
            .store
            .list_api_keys(Some(&owner), include_deleted, offset, page_size)
            .await?;
        Ok(Json(Page { total, page, page_size, items: rows.into_iter().map(Into::into).collect() }))
    }

    /// One key. Scope: `keys:manage`.
    #[oai(
        path = "/api-keys/:id",
        method = "get",
        operation_id = "getApiKey",
        transform = "keys_manage"
    )]
    async fn get(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<Json<KeyView>, ApiError> {
        let row = self.key_of(&auth, &id, tenant_id.as_deref()).await?;
        let windows = self.auth.quota_usage(&row).await;
        let mut view = KeyView::from(row);
        view.usage_windows = windows
            .into_iter()
            .map(|w| WindowUsage {
                window: w.window.as_str().to_owned(),
                limit: w.limit,
                used: w.used.min(w.limit),
                remaining: w.remaining(),
                resets_at: DateTime::from_timestamp(w.resets_at, 0).unwrap_or_default(),
            })
            .collect();
        Ok(Json(view))
    }

    /// Rename, re-scope, re-limit, revoke (`active: false`) or re-activate a key. Takes
    /// effect in every API process at once (fleet) or within the cache TTL. A key cannot
    /// revoke or re-scope itself (409). Scope: `keys:manage`.
    #[oai(
        path = "/api-keys/:id",
        method = "patch",
        operation_id = "updateApiKey",
        transform = "keys_manage"
    )]
    async fn update(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
        body: Json<UpdateKey>,
    ) -> Result<Json<KeyView>, ApiError> {
        let caller = auth.principal();
        let existing = self.key_of(&auth, &id, tenant_id.as_deref()).await?;
        let mut errors = Vec::new();
        if let Some(name) = &body.name {
            check_name(name, &mut errors);
        }
        let scopes = body
            .scopes
            .as_ref()
            .map(|s| check_scopes(s, &caller.scopes, &existing.tenant_id, &mut errors));
        let (per_minute, quotas) =
            check_limits(body.rate_limit_per_minute, body.rate_limits, &mut errors);
        let metadata = check_metadata(body.metadata.as_ref(), &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        if *caller.key_id == *id.0 && (body.active == Some(false) || body.scopes.is_some()) {
            return Err(not_on_itself());
        }
        if body.active == Some(true) && existing.deleted_at.is_some() {
            return Err(ApiError::conflict(
                "a deleted key cannot be re-activated; create a new one",
            ));
        }
        let patch = ApiKeyPatch {
            name: body.name.as_ref().map(|n| n.trim().to_owned()),
            scopes: scopes.map(|s| scopes_to_text(&s)),
            rate_limit_per_minute: per_minute,
            active: body.active,
            metadata,
            quotas,
        };
        let audit =
            AuditEntry::new(&caller.actor, &existing.tenant_id, "api_key.updated", "api_key")
                .target(existing.id.as_str())
                .changed(&[
                    ("name", patch.name.is_some()),
                    ("scopes", patch.scopes.is_some()),
                    ("rate_limit_per_minute", patch.rate_limit_per_minute.is_some()),
                    ("rate_limits", patch.quotas != KeyQuotas::default()),
                    ("active", patch.active.is_some()),
                    ("metadata", patch.metadata.is_some()),
                ]);
        let row = self.services.store.update_api_key(&id, &patch, Utc::now(), &audit).await?;
        let row = row.ok_or_else(|| ApiError::not_found("no such API key"))?;
        self.auth.key_changed(&row.id).await;
        tracing::info!(key_id = %row.id, by = %caller.key_id, "api key updated");
        Ok(Json(row.into()))
    }

    /// Revoke a key (a soft delete: `GET` still shows it as `revoked`; lists show it with
    /// `include_deleted=true`). A key cannot revoke itself
    /// (409). Scope: `keys:manage`.
    #[oai(
        path = "/api-keys/:id",
        method = "delete",
        operation_id = "deleteApiKey",
        transform = "keys_manage"
    )]
    async fn delete(
        &self,
        auth: Auth,
        id: Path<String>,
        tenant_id: Query<Option<String>>,
    ) -> Result<DeleteResponse, ApiError> {
        if *auth.principal().key_id == *id.0 {
            return Err(not_on_itself());
        }
        let existing = self.key_of(&auth, &id, tenant_id.as_deref()).await?;
        let audit = AuditEntry::new(
            &auth.principal().actor,
            &existing.tenant_id,
            "api_key.deleted",
            "api_key",
        )
        .target(existing.id.as_str());
        if !self.services.store.delete_api_key(&id, Utc::now(), &audit).await? {
            return Err(ApiError::not_found("no such API key"));
        }
        self.auth.key_changed(&id).await;
        tracing::info!(key_id = %id.0, by = %auth.principal().key_id, "api key revoked");
        Ok(DeleteResponse::Revoked)
    }
}

impl KeysApi {
    /// The key `id` when it belongs to the owner this request acts for, else 404.
    async fn key_of(
        &self,
        auth: &Auth,
        id: &str,
        tenant_id: Option<&str>,
    ) -> Result<ApiKeyRow, ApiError> {
        let acting = auth.principal().acting_for(&self.services.store, tenant_id).await?;
        let row = self.services.store.api_key(id).await?;
        owned(row, |r| &r.tenant_id, &acting, "no such API key")
    }
}

/// A key may not revoke, delete or re-scope itself: one typo would lock its holder out (the
/// last admin key included). Another key with `keys:manage` can.
fn not_on_itself() -> ApiError {
    ApiError::conflict("a key cannot revoke, delete or re-scope itself; use another key")
}
