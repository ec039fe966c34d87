//! API keys: create (the raw key shown once), list, show, change, revoke.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use switchyard_shared::{
    access::{ApiKeyPatch, ApiKeyRow, NewApiKey},
    access::{Environment, RawKey, Scope, grants, scopes_to_text},
    ids::ApiKeyId,
    services::Services,
};

use super::{ApiTags, Page, page_bounds};
use crate::{
    auth::{
        Authenticator,
        scopes::{Auth, keys_manage},
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
    /// Requests per minute for this key (default: the server's setting).
    rate_limit_per_minute: Option<i64>,
}

#[derive(Object)]
struct UpdateKey {
    name: Option<String>,
    #[oai(validator(max_items = 64))]
    scopes: Option<Vec<String>>,
    rate_limit_per_minute: Option<i64>,
    /// `false` revokes the key; `true` re-activates a revoked (not deleted) key.
    active: Option<bool>,
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

/// Checks names, scopes (known, and held by the caller) and limits; collects every problem.
fn check_scopes(raw: &[String], held: &[Scope], errors: &mut Vec<FieldError>) -> Vec<Scope> {
    let mut scopes = Vec::new();
    if raw.is_empty() {
        errors.push(FieldError { field: "scopes".into(), message: "at least one scope".into() });
    }
    for (i, s) in raw.iter().enumerate() {
        match s.parse::<Scope>() {
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

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    let len = name.trim().chars().count();
    if len == 0 || len > 100 {
        errors.push(FieldError { field: "name".into(), message: "1 to 100 characters".into() });
    }
}

fn check_rate(rate: Option<i64>, errors: &mut Vec<FieldError>) {
    if rate.is_some_and(|r| !(1..=1_000_000).contains(&r)) {
        errors.push(FieldError {
            field: "rate_limit_per_minute".into(),
            message: "between 1 and 1000000".into(),
        });
    }
}

#[derive(Object)]
struct WhoAmI {
    key_id: String,
    scopes: Vec<String>,
    environment: String,
}

#[OpenApi(tag = "ApiTags::Keys")]
impl KeysApi {
    /// The calling key: its id, scopes and environment. Any valid key.
    #[oai(path = "/whoami", method = "get", operation_id = "whoAmI")]
    async fn whoami(&self, auth: Auth) -> Json<WhoAmI> {
        let p = auth.principal();
        Json(WhoAmI {
            key_id: p.key_id.to_string(),
            scopes: p.scopes.iter().map(ToString::to_string).collect(),
            environment: p.environment.as_str().to_owned(),
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
        let mut errors = Vec::new();
        check_name(&body.name, &mut errors);
        let scopes = check_scopes(&body.scopes, &caller.scopes, &mut errors);
        check_rate(body.rate_limit_per_minute, &mut errors);
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
            rate_limit_per_minute: body.rate_limit_per_minute,
            expires_at: body.expires_at,
            created_by: Some(caller.key_id.to_string()),
        };
        let row = self.services.store.insert_api_key(&new, Utc::now()).await?;
        tracing::info!(key_id = %row.id, prefix = %row.prefix, created_by = %caller.key_id, "api key created");
        Ok(CreateResponse::Created(Json(KeyCreated {
            key: raw.expose().to_owned(),
            view: row.into(),
        })))
    }

    /// Every key, newest first (never the key itself). Scope: `keys:manage`.
    #[oai(
        path = "/api-keys",
        method = "get",
        operation_id = "listApiKeys",
        transform = "keys_manage"
    )]
    async fn list(
        &self,
        _auth: Auth,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<KeyPage>, ApiError> {
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        let (total, rows) = self.services.store.list_api_keys(offset, page_size).await?;
        Ok(Json(Page { total, page, page_size, items: rows.into_iter().map(Into::into).collect() }))
    }

    /// One key. Scope: `keys:manage`.
    #[oai(
        path = "/api-keys/:id",
        method = "get",
        operation_id = "getApiKey",
        transform = "keys_manage"
    )]
    async fn get(&self, _auth: Auth, id: Path<String>) -> Result<Json<KeyView>, ApiError> {
        let row = self.services.store.api_key(&id).await?;
        row.map(|r| Json(r.into())).ok_or_else(|| ApiError::not_found("no such API key"))
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
        body: Json<UpdateKey>,
    ) -> Result<Json<KeyView>, ApiError> {
        let caller = auth.principal();
        let mut errors = Vec::new();
        if let Some(name) = &body.name {
            check_name(name, &mut errors);
        }
        let scopes = body.scopes.as_ref().map(|s| check_scopes(s, &caller.scopes, &mut errors));
        check_rate(body.rate_limit_per_minute, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let existing = self
            .services
            .store
            .api_key(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such API key"))?;
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
            rate_limit_per_minute: body.rate_limit_per_minute,
            active: body.active,
        };
        let row = self.services.store.update_api_key(&id, &patch, Utc::now()).await?;
        let row = row.ok_or_else(|| ApiError::not_found("no such API key"))?;
        self.auth.key_changed(&row.id).await;
        tracing::info!(key_id = %row.id, by = %caller.key_id, "api key updated");
        Ok(Json(row.into()))
    }

    /// Revoke a key (a soft delete: it stays listed as `revoked`). A key cannot revoke itself
    /// (409). Scope: `keys:manage`.
    #[oai(
        path = "/api-keys/:id",
        method = "delete",
        operation_id = "deleteApiKey",
        transform = "keys_manage"
    )]
    async fn delete(&self, auth: Auth, id: Path<String>) -> Result<DeleteResponse, ApiError> {
        if *auth.principal().key_id == *id.0 {
            return Err(not_on_itself());
        }
        if !self.services.store.delete_api_key(&id, Utc::now()).await? {
            return Err(ApiError::not_found("no such API key"));
        }
        self.auth.key_changed(&id).await;
        tracing::info!(key_id = %id.0, by = %auth.principal().key_id, "api key revoked");
        Ok(DeleteResponse::Revoked)
    }
}

/// A key may not revoke, delete or re-scope itself: one typo would lock its holder out (the
/// last admin key included). Another key with `keys:manage` can.
fn not_on_itself() -> ApiError {
    ApiError::conflict("a key cannot revoke, delete or re-scope itself; use another key")
}
