//! API access: every `/api/v1` request is authenticated by key, rate limited per key, and
//! recorded for usage analytics; routes then check their scope (see [`scopes`]).
//!
//! The middleware here does the work once per request; the OpenAPI security schemes in
//! [`scopes`] only read its result (and give Swagger UI its "Authorize" button).

mod bootstrap;
mod cache;
mod conduct;
mod failures;
pub(crate) mod idempotency;
mod revocations;
pub(crate) mod scopes;
pub(crate) mod tenancy;
mod usage;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderValue, StatusCode, header},
};
use switchyard_shared::{
    CancellationToken,
    access::{ApiKeyRow, KeyStatus, UsageEvent},
    access::{Environment, Scope, check_format, digest_bytes, hex},
    audit::Actor,
    quotas::{QuotaCounter, QuotaDecision, WindowState},
    ratelimit::{Decision, Quota, RateLimiter},
    services::Services,
    telemetry,
    tenants::Owner,
};

pub use self::bootstrap::bootstrap_admin_key;
pub(crate) use self::cache::CachedKey;
use self::scopes::ScopeRefused;
use self::{cache::KeyCache, revocations::Revocations, usage::UsageRecorder};
use crate::{
    edge::{RequestId, error_response, problem_response, route_label, slug_for},
    problem::{LimitWindow, Problem},
};

/// Who is calling: set by the middleware, read by routes.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: Arc<str>,
    pub scopes: Arc<[Scope]>,
    pub environment: Environment,
    /// The key's tenant, or the platform: what it may see and change.
    pub owner: Owner,
    /// Who and from where, for audit entries.
    pub actor: Arc<Actor>,
}

/// Why a request could not be authenticated (the `reason` label of the failure metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Missing,
    Malformed,
    Unknown,
    Revoked,
    Expired,
    Suspended,
    TenantDeleted,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Suspended => "suspended",
            Self::TenantDeleted => "tenant_deleted",
        }
    }
}

/// A key refused: why (the metric label) and what the 401 says.
struct Refusal(Failure, String);

/// Authentication, rate limiting and usage recording for one API process.
pub struct Authenticator {
    services: Services,
    cache: KeyCache,
    limiter: RateLimiter,
    quotas: QuotaCounter,
    /// Hour, day, month quotas for keys without their own (0: none).
    default_quotas: [u64; 3],
    usage: UsageRecorder,
    revocations: Revocations,
    conduct: conduct::Conduct,
    failures: failures::FailureLog,
    default_per_minute: u32,
    failure_quota: Quota,
    trust_forwarded_for: bool,
    last_limiter_error_log: Mutex<Option<Instant>>,
    /// Addresses over their failure limit, until when: their keys that are not in the cache
    /// are refused without a store lookup (a flood of guesses costs no transactions).
    throttled: Mutex<HashMap<String, Instant>>,
}

/// Throttled addresses remembered at most (expired ones are dropped first).
const MAX_THROTTLED: usize = 10_000;

impl Authenticator {
    /// Starts the background parts (usage writer and counters, revocation listener). The
    /// listener and counter flusher stop with `shutdown`; the writer ends once the last
    /// `Arc` is dropped, after writing what is queued. Call [`Authenticator::finish`] after
    /// the server has stopped.
    pub fn start(
        services: &Services,
        shutdown: &CancellationToken,
    ) -> (Arc<Self>, Vec<tokio::task::JoinHandle<()>>) {
        let config = &services.config;
        let cache = KeyCache::new(Duration::from_secs(config.auth_cache_ttl_secs));
        let (usage, writer) = UsageRecorder::start(services.store.clone(), config.usage_buffer);
        let mut tasks = vec![writer];
        let revocations = Revocations::new(services);
        let auth = Arc::new(Self {
            services: services.clone(),
            cache,
            limiter: RateLimiter::for_queue(&services.queue),
            quotas: QuotaCounter::for_queue(&services.queue),
            default_quotas: [
                config.rate_limit_per_hour,
                config.rate_limit_per_day,
                config.rate_limit_per_month,
            ],
            usage,
            revocations,
            conduct: conduct::Conduct::new(
                config.key_suspend_after_refusals,
                config.key_suspend_window_secs,
            ),
            failures: failures::FailureLog::new(
                config.auth_failure_audit_after,
                config.auth_failure_audit_secs,
            ),
            default_per_minute: config.rate_limit_per_minute,
            failure_quota: Quota::per_minute(config.auth_failure_limit_per_minute),
            trust_forwarded_for: config.trust_forwarded_for,
            last_limiter_error_log: Mutex::new(None),
            throttled: Mutex::new(HashMap::new()),
        });
        if let Some(task) = auth.revocations.listen(Arc::clone(&auth), shutdown.clone()) {
            tasks.push(task);
        }
        tasks.push(tokio::spawn({
            let (auth, shutdown) = (Arc::clone(&auth), shutdown.clone());
            async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(usage::COUNTERS_EVERY) => {
                            auth.usage.flush_counters(&auth.services.store).await;
                        }
                    }
                }
            }
        }));
        tasks.push(tokio::spawn({
            let (auth, shutdown) = (Arc::clone(&auth), shutdown.clone());
            async move {
                let mut every = tokio::time::interval(auth.failures.window());
                every.tick().await;
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        _ = every.tick() => auth.failures.flush(&auth.services.store).await,
                    }
                }
            }
        }));
        (auth, tasks)
    }

    /// Writes the last usage counters (after the server stopped taking requests).
    pub async fn finish(&self) {
        self.usage.flush_counters(&self.services.store).await;
        self.failures.flush(&self.services.store).await;
    }

    /// Forgets a key in this process and tells every other API process to (fleet).
    pub(crate) async fn key_changed(&self, key_id: &str) {
        self.cache.invalidate_id(key_id);
        self.revocations.publish(key_id).await;
    }

    pub(crate) fn forget(&self, key_id: &str) {
        self.cache.invalidate_id(key_id);
    }

    fn client_addr(&self, req: &Request) -> Option<String> {
        if self.trust_forwarded_for
            && let Some(first) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
            && first.parse::<IpAddr>().is_ok()
        {
            return Some(first.to_owned());
        }
        req.remote_addr().as_socket_addr().map(|a| a.ip().to_string())
    }

    fn is_throttled(&self, addr: Option<&str>) -> bool {
        let throttled = self.throttled.lock().expect("throttled lock");
        addr.and_then(|a| throttled.get(a)).is_some_and(|until| *until > Instant::now())
    }

    fn throttle(&self, addr: Option<&str>, wait: Duration) {
        let Some(addr) = addr else { return };
        let mut throttled = self.throttled.lock().expect("throttled lock");
        if throttled.len() >= MAX_THROTTLED {
            let now = Instant::now();
            throttled.retain(|_, until| *until > now);
            if throttled.len() >= MAX_THROTTLED {
                throttled.clear();
            }
        }
        throttled.insert(addr.to_owned(), Instant::now() + wait);
    }

    /// `Err(None)`: the store did not answer, which is not the caller's fault. An address
    /// over its failure limit gets no store lookup: a key not in the cache is unknown to it.
    async fn lookup(
        &self,
        presented: &str,
        addr: Option<&str>,
    ) -> Result<Arc<CachedKey>, Option<Refusal>> {
        let digest = digest_bytes(presented);
        let key = match self.cache.get(&digest) {
            Some(hit) => hit,
            None if self.is_throttled(addr) => {
                metrics::counter!(telemetry::AUTH_LOOKUPS, "source" => "skipped").increment(1);
                None
            }
            None => {
                metrics::counter!(telemetry::AUTH_LOOKUPS, "source" => "store").increment(1);
                let row =
                    self.services.store.api_key_by_hash(&hex(&digest)).await.map_err(|e| {
                        tracing::warn!(error = %e, "key lookup failed");
                        None
                    })?;
                let entry = match row {
                    None => None,
                    Some(r) => {
                        let tenant_deleted = self.tenant_deleted(&r.tenant_id).await?;
                        Some(Arc::new(CachedKey::from_row(&r, tenant_deleted)))
                    }
                };
                self.cache.put(digest, entry.clone());
                entry
            }
        };
        let refuse = |f, detail: &str| Err(Some(Refusal(f, detail.to_owned())));
        let Some(key) = key else { return refuse(Failure::Unknown, "unknown API key") };
        if key.tenant_deleted {
            return refuse(Failure::TenantDeleted, "this API key's tenant has been deleted");
        }
        match key.status_at(Utc::now()) {
            KeyStatus::Active => Ok(key),
            KeyStatus::Revoked => refuse(Failure::Revoked, "this API key has been revoked"),
            KeyStatus::Expired => refuse(Failure::Expired, "this API key has expired"),
            KeyStatus::Suspended => Err(Some(Refusal(
                Failure::Suspended,
                format!(
                    "this API key is suspended ({}); a key with keys:manage lifts it with \
                     PATCH /api/v1/api-keys/{} {{\"active\": true}}",
                    key.suspended.as_deref().unwrap_or_default(),
                    key.id
                ),
            ))),
        }
    }

    /// Whether a key's tenant is gone (its keys stop working). `Err(None)`: no answer.
    async fn tenant_deleted(&self, owner: &Owner) -> Result<bool, Option<Refusal>> {
        let Some(id) = owner.tenant_id() else { return Ok(false) };
        let tenant = self.services.store.tenant(id).await.map_err(|e| {
            tracing::warn!(error = %e, "tenant lookup failed");
            None
        })?;
        Ok(tenant.is_none_or(|t| t.deleted_at.is_some()))
    }

    async fn check_rate(&self, bucket: &str, quota: Quota) -> Decision {
        match self.limiter.check(bucket, quota).await {
            Ok(decision) => decision,
            Err(error) => {
                // Fail open: an unreachable Redis must not take the API down with it.
                metrics::counter!(telemetry::RATE_LIMITER_ERRORS).increment(1);
                let mut last = self.last_limiter_error_log.lock().expect("log lock");
                if last.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(%error, "rate limiter unavailable; allowing requests");
                    *last = Some(Instant::now());
                }
                Decision {
                    allowed: true,
                    limit: quota.burst,
                    remaining: quota.burst,
                    reset_at: Utc::now().timestamp() as u64,
                    retry_after: Duration::ZERO,
                }
            }
        }
    }

    /// What is used of each quota window of a key (empty when it has none, or when the
    /// counter cannot be read).
    pub(crate) async fn quota_usage(&self, row: &ApiKeyRow) -> Vec<WindowState> {
        let limits = row.quotas().effective(self.default_quotas);
        let bucket = cache::bucket(&row.id);
        self.quotas.peek(&bucket, &limits).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "quota counters unavailable");
            Vec::new()
        })
    }

    /// Takes one request from every quota window of the key; `Err` names the window used
    /// up. Fails open, as the rate limiter does.
    async fn take_quota(&self, key: &CachedKey) -> Result<Vec<WindowState>, WindowState> {
        let limits = key.quotas.effective(self.default_quotas);
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        match self.quotas.take(&key.bucket, &limits).await {
            Ok(QuotaDecision::Allowed(states)) => Ok(states),
            Ok(QuotaDecision::Refused(state)) => Err(state),
            Err(error) => {
                metrics::counter!(telemetry::RATE_LIMITER_ERRORS).increment(1);
                tracing::warn!(%error, "quota counters unavailable; allowing the request");
                Ok(Vec::new())
            }
        }
    }

    /// A 401, unless this address has failed too often lately (then 429).
    async fn reject(
        &self,
        req: &Request,
        failure: Failure,
        detail: String,
        addr: Option<&str>,
    ) -> Response {
        metrics::counter!(telemetry::AUTH_FAILURES, "reason" => failure.reason()).increment(1);
        let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.as_str());
        self.failures.note(addr, failure.reason(), user_agent, request_id);
        let bucket = format!("authfail:{}", addr.unwrap_or("unknown"));
        let decision = self.check_rate(&bucket, self.failure_quota).await;
        if !decision.allowed {
            metrics::counter!(telemetry::RATE_LIMITED, "kind" => "auth_failures").increment(1);
            self.throttle(addr, decision.retry_after.max(Duration::from_secs(1)));
            let mut resp = problem_response(&Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-auth-failures",
                "too many failed authentication attempts from this address; wait and retry",
            ));
            set_retry_after(&mut resp, decision.retry_after);
            return resp;
        }
        let mut resp =
            problem_response(&Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail));
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    }
}

fn set_retry_after(resp: &mut Response, wait: Duration) {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
}

/// `X-RateLimit-*` values: (limit, remaining, reset at).
type RateHeaders = (u64, u64, u64);

/// The tightest of the per-minute rate and the quota windows: the one with the fewest
/// requests left (the refusing window when one refused).
fn tightest(minute: &Decision, quota: &Result<Vec<WindowState>, WindowState>) -> RateHeaders {
    let as_headers = |w: &WindowState| (w.limit, w.remaining(), w.resets_at.max(0) as u64);
    let mut best = (u64::from(minute.limit), u64::from(minute.remaining), minute.reset_at);
    match quota {
        Err(full) => best = as_headers(full),
        Ok(states) => {
            for w in states {
                if w.remaining() < best.1 {
                    best = as_headers(w);
                }
            }
        }
    }
    best
}

fn set_rate_headers(resp: &mut Response, (limit, remaining, reset): &RateHeaders) {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(*limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(*remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(*reset));
}

/// The raw key from `Authorization: Bearer …` or `X-API-Key`.
fn presented_key(req: &Request) -> Option<&str> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The middleware around `/api/v1`.
/// The middleware around `/api/v1` (a plain `Middleware`, not `around`, which would box
/// every call).
pub struct Authenticate(pub Arc<Authenticator>);

impl<E: Endpoint> poem::Middleware<E> for Authenticate {
    type Output = AuthenticateEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        AuthenticateEndpoint { inner, auth: Arc::clone(&self.0) }
    }
}

pub struct AuthenticateEndpoint<E> {
    inner: E,
    auth: Arc<Authenticator>,
}

impl<E: Endpoint> Endpoint for AuthenticateEndpoint<E> {
    type Output = Response;
    async fn call(&self, req: Request) -> poem::Result<Response> {
        authenticate(&self.inner, req, &self.auth).await
    }
}

async fn authenticate<E: Endpoint>(
    next: &E,
    mut req: Request,
    auth: &Authenticator,
) -> poem::Result<Response> {
    let started = Instant::now();
    let addr = auth.client_addr(&req);
    let presented = match presented_key(&req) {
        None => {
            let detail =
                "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`";
            return Ok(auth.reject(&req, Failure::Missing, detail.into(), addr.as_deref()).await);
        }
        Some(s) => match check_format(s) {
            Ok(_) => s,
            Err(e) => {
                let detail = format!("malformed API key: {e}");
                return Ok(auth.reject(&req, Failure::Malformed, detail, addr.as_deref()).await);
            }
        },
    };
    let cached = match auth.lookup(presented, addr.as_deref()).await {
        Ok(k) => k,
        Err(None) => {
            return Ok(problem_response(&Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot check the API key: the store is not answering; try again shortly",
            )));
        }
        Err(Some(Refusal(failure, detail))) => {
            return Ok(auth.reject(&req, failure, detail, addr.as_deref()).await);
        }
    };

    let per_minute = cached
        .rate_limit_per_minute
        .map_or(auth.default_per_minute, |n| n.clamp(1, u32::MAX.into()) as u32);
    let decision = auth.check_rate(&cached.bucket, Quota::per_minute(per_minute)).await;
    let method = req.method().to_string();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());

    let actor = Arc::new(Actor {
        key_id: Some(cached.id.to_string()),
        key_prefix: Some(cached.prefix.to_string()),
        tenant: cached.owner.clone(),
        client_addr: addr.clone(),
        user_agent: user_agent.clone(),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
    });
    let quota = if decision.allowed { auth.take_quota(&cached).await } else { Ok(Vec::new()) };
    let mut resp = if let Err(full) = &quota {
        metrics::counter!(telemetry::RATE_LIMITED, "kind" => "quota").increment(1);
        let window = full.window.as_str();
        let mut resp = problem_response(
            &Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota-exceeded",
                format!(
                    "quota of {} requests {} exceeded; it resets at the start of the next \
                     UTC {}; see Retry-After",
                    full.limit,
                    window.replace('_', " "),
                    window.trim_start_matches("per_"),
                ),
            )
            .with_window(full.window.into()),
        );
        let wait = (full.resets_at - Utc::now().timestamp()).max(1) as u64;
        set_retry_after(&mut resp, Duration::from_secs(wait));
        resp
    } else if decision.allowed {
        req.extensions_mut().insert(Principal {
            key_id: cached.id.clone(),
            scopes: cached.scopes.clone(),
            environment: cached.environment,
            owner: cached.owner.clone(),
            actor: Arc::clone(&actor),
        });
        match next.call(req).await {
            Ok(out) => out.into_response(),
            Err(err) => error_response(err),
        }
    } else {
        metrics::counter!(telemetry::RATE_LIMITED, "kind" => "key").increment(1);
        let mut resp = problem_response(
            &Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!("rate limit of {per_minute} requests per minute exceeded; see Retry-After"),
            )
            .with_window(LimitWindow::Minute),
        );
        set_retry_after(&mut resp, decision.retry_after);
        resp
    };
    set_rate_headers(&mut resp, &tightest(&decision, &quota));
    let seen = if resp.data::<ScopeRefused>().is_some() {
        conduct::Seen::ScopeRefused
    } else if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        conduct::Seen::OverLimit
    } else {
        conduct::Seen::Fine
    };
    if let Some(reason) = auth.conduct.note(&cached.id, seen) {
        auth.suspend(&cached, &reason, &actor).await;
    }

    let status = resp.status();
    let route = route_label(&mut resp);
    auth.usage.record(UsageEvent {
        key_id: Arc::clone(&cached.id),
        at: Utc::now(),
        method,
        route,
        status: status.as_u16(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        client_addr: addr,
        user_agent,
        error_kind: (status.is_client_error() || status.is_server_error())
            .then(|| slug_for(status).to_owned()),
        tenant_id: cached.owner.clone(),
    });
    Ok(resp)
}
