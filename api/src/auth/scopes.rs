//! Scopes per route, and the OpenAPI security schemes.
//!
//! Every operation names its scope in its `transform` attribute (`transform = "jobs_read"`):
//! the check runs before the body is parsed, so a key without the scope gets 403 whatever
//! it sends. The `Auth` parameter of each operation documents the schemes (Swagger UI's
//! "Authorize") and hands the operation the caller.

use poem::{Endpoint, EndpointExt, IntoResponse, Middleware, Request, Response, http::StatusCode};
use poem_openapi::{
    SecurityScheme,
    auth::{ApiKey, Bearer},
};
use switchyard_shared::access::{Scope, grants};

use super::{Principal, idempotency::Idempotent};
use crate::{edge::problem_response, problem::Problem};

async fn from_request<T>(req: &Request, _credential: T) -> Option<Principal> {
    req.extensions().get::<Principal>().cloned()
}

async fn bearer_principal(req: &Request, credential: Bearer) -> Option<Principal> {
    from_request(req, credential).await
}

async fn header_principal(req: &Request, credential: ApiKey) -> Option<Principal> {
    from_request(req, credential).await
}

/// `Authorization: Bearer sy_live_…`
#[derive(SecurityScheme)]
#[oai(rename = "BearerKey", ty = "bearer", checker = "bearer_principal")]
pub struct BearerKey(Principal);

/// `X-API-Key: sy_live_…`
#[derive(SecurityScheme)]
#[oai(
    rename = "HeaderKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "header_principal"
)]
pub struct HeaderKey(Principal);

/// An API key, as either header.
#[derive(SecurityScheme)]
pub enum Auth {
    Bearer(BearerKey),
    Header(HeaderKey),
}

impl Auth {
    pub fn principal(&self) -> &Principal {
        match self {
            Auth::Bearer(BearerKey(p)) | Auth::Header(HeaderKey(p)) => p,
        }
    }
}

/// Marks a response as a refusal for a missing scope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScopeRefused;

/// Refuses a request whose key lacks `scope` (403 naming it).
pub struct RequireScope(pub Scope);

impl<E: Endpoint> Middleware<E> for RequireScope {
    type Output = RequireScopeEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        RequireScopeEndpoint { inner, scope: self.0 }
    }
}

pub struct RequireScopeEndpoint<E> {
    inner: E,
    scope: Scope,
}

impl<E: Endpoint> Endpoint for RequireScopeEndpoint<E> {
    type Output = Response;
    async fn call(&self, req: Request) -> poem::Result<Response> {
        let Some(principal) = req.extensions().get::<Principal>() else {
            return Ok(problem_response(&Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing API key",
            )));
        };
        if self.scope.platform_only() && !principal.owner.is_platform() {
            return Ok(problem_response(&Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("`{}` is for platform keys only; this key belongs to a tenant", self.scope),
            )));
        }
        if !grants(&principal.scopes, self.scope) {
            let mut resp = problem_response(&Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this API key lacks the scope `{}`", self.scope),
            ));
            // Counted by the authentication middleware towards suspension.
            resp.set_data(ScopeRefused);
            return Ok(resp);
        }
        // The key may do this: now its body is checked against the document.
        let mut req = req;
        if let Err(resp) = crate::strict::check_request(&mut req).await {
            return Ok(resp);
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// Defines the `transform` functions routes name: `scope_transform!(jobs_read => JobsRead)`
/// checks a scope; `… , idempotent` also makes the route honour `Idempotency-Key`.
macro_rules! scope_transform {
    ($($name:ident => $scope:ident $(, $idem:ident)?);* $(;)?) => {$(
        pub fn $name(ep: impl Endpoint) -> impl Endpoint {
            scope_transform!(@wrap ep $(, $idem)?).with(RequireScope(Scope::$scope))
        }
    )*};
    (@wrap $ep:ident) => { $ep };
    (@wrap $ep:ident, idempotent) => { $ep.with(Idempotent) };
}

scope_transform! {
    jobs_read => JobsRead;
    jobs_write_idempotent => JobsWrite, idempotent;
    keys_manage => KeysManage;
    usage_read => UsageRead;
    webhooks_read => WebhooksRead;
    webhooks_write => WebhooksWrite;
    webhooks_write_idempotent => WebhooksWrite, idempotent;
    events_publish_idempotent => EventsPublish, idempotent;
    pidms_read => PidmsRead;
    pidms_write_idempotent => PidmsWrite, idempotent;
    sikka_read => SikkaRead;
    sikka_write => SikkaWrite;
    sikka_write_idempotent => SikkaWrite, idempotent;
    tenants_manage => TenantsManage;
    audit_read => AuditRead;
}
