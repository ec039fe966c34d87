//! A Sikka API v4 simulator, mounted at `/v4`: practices, request keys (both grants, rotating
//! refresh keys), writebacks answered with the id inside `long_message`, `writeback_status`
//! that settles after a delay, rate-limit headers, and injectable 429/503/504 — the parts of
//! Sikka that break integrations. Every JSON value is a string, as Sikka sends them.
//!
//! Where Sikka's documentation is silent the simulator is strict and says so: a spent or unknown
//! refresh key is refused with 400 `API1026` (inferred), a body missing a required field with
//! 400 `API1005` (inferred).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use poem::{
    Body, Endpoint, EndpointExt, Request, Response, Route, get, handler,
    http::{Method, StatusCode},
    patch, post,
    web::Data,
};
use serde_json::{Map, Value, json};

/// A practice that has installed the Sikka agent.
#[derive(Debug, Clone)]
pub struct Practice {
    pub office_id: String,
    pub secret_key: String,
    pub practice_id: String,
    pub practice_name: String,
}

/// How a writeback ends at the practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritebackOutcome {
    Completed,
    /// `has_error = "True"` with this result text.
    Failed(String),
    /// Never completes (`is_completed` stays `"False"`).
    Never,
}

/// A way for the next request to fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SikkaFailure {
    /// 503 `API2002`.
    Overloaded,
    /// 504 `API2022`.
    GatewayTimeout,
    /// 429 `API2011` with `X-Rate-Limit-Reset` seconds.
    RateLimited(u64),
    /// Answer only after this long.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct SikkaRequest {
    pub method: String,
    /// Without `/v4`, e.g. `/request_key`.
    pub path: String,
    /// For `POST /request_key`: `request_key` or `refresh_key`.
    pub grant_type: Option<String>,
    /// The request key the call carried.
    pub request_key: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    pub at: Instant,
}

#[derive(Debug, Clone)]
struct IssuedKey {
    office_id: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    refresh_key: String,
    request_count: u64,
}

#[derive(Debug, Clone)]
struct Writeback {
    office_id: String,
    method: String,
    api: String,
    created: Instant,
    outcome: WritebackOutcome,
    created_id: String,
}

struct State {
    app_id: String,
    app_key: String,
    practices: Vec<Practice>,
    /// Offices whose access was withdrawn (`API2007`).
    revoked: Vec<String>,
    /// Offices whose on-site agent is offline (`API2017` with `check_spu`).
    offline: Vec<String>,
    key_lifetime: Duration,
    keys: HashMap<String, IssuedKey>,
    /// Refresh key → office; removed once spent.
    refresh_keys: HashMap<String, String>,
    writebacks: HashMap<u64, Writeback>,
    next_writeback: u64,
    writeback_delay: Duration,
    outcomes: VecDeque<WritebackOutcome>,
    default_outcome: WritebackOutcome,
    rate_limit: u64,
    /// The rate-limit window: 60 s, as Sikka's.
    window: Duration,
    window_start: Instant,
    window_count: u64,
    failures: VecDeque<(Option<String>, SikkaFailure)>,
    status_latency: Duration,
    log: Vec<SikkaRequest>,
    counter: u64,
    /// Every request and refresh key handed out.
    issued: Vec<String>,
}

/// A handle on the simulator; clones share state.
#[derive(Clone)]
pub struct SikkaSim {
    state: Arc<Mutex<State>>,
}

impl SikkaSim {
    /// Accepts these app credentials; request keys last 24 h, writebacks settle after 3 s.
    pub fn new(app_id: &str, app_key: &str) -> Self {
        let state = State {
            app_id: app_id.to_owned(),
            app_key: app_key.to_owned(),
            practices: Vec::new(),
            revoked: Vec::new(),
            offline: Vec::new(),
            key_lifetime: Duration::from_secs(24 * 3600),
            keys: HashMap::new(),
            refresh_keys: HashMap::new(),
            writebacks: HashMap::new(),
            next_writeback: 275_495,
            writeback_delay: Duration::from_secs(3),
            outcomes: VecDeque::new(),
            default_outcome: WritebackOutcome::Completed,
            rate_limit: 10_000,
            window: Duration::from_secs(60),
            window_start: Instant::now(),
            window_count: 0,
            failures: VecDeque::new(),
            status_latency: Duration::ZERO,
            log: Vec::new(),
            counter: seed(),
            issued: Vec::new(),
        };
        Self { state: Arc::new(Mutex::new(state)) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn add_practice(&self, practice: Practice) {
        self.with(|s| s.practices.push(practice));
    }

    /// `n` practices with made-up ids and secrets (`D1000…`, `practice-1…`).
    pub fn add_demo_practices(&self, n: usize) -> Vec<Practice> {
        (1..=n)
            .map(|i| {
                let p = Practice {
                    office_id: format!("D{}", 1000 + i),
                    secret_key: format!("{:032x}", hash(i as u64, 77)),
                    practice_id: i.to_string(),
                    practice_name: format!("Demo Dental {i}"),
                };
                self.add_practice(p.clone());
                p
            })
            .collect()
    }

    pub fn set_key_lifetime(&self, lifetime: Duration) {
        self.with(|s| s.key_lifetime = lifetime);
    }

    /// Makes every request key issued so far expired.
    pub fn expire_keys(&self) {
        let past = Utc::now() - chrono::Duration::seconds(1);
        self.with(|s| s.keys.values_mut().for_each(|k| k.end = past));
    }

    /// Spends every refresh key issued so far, as if someone else had used them.
    pub fn spend_refresh_keys(&self) {
        self.with(|s| s.refresh_keys.clear());
    }

    /// Withdraws (or restores) a practice's consent: its grants answer 401 `API2007`.
    pub fn set_revoked(&self, office_id: &str, revoked: bool) {
        self.with(|s| toggle(&mut s.revoked, office_id, revoked));
    }

    /// Takes a practice's on-site agent offline (or back): writebacks with `check_spu` get 412.
    pub fn set_agent_offline(&self, office_id: &str, offline: bool) {
        self.with(|s| toggle(&mut s.offline, office_id, offline));
    }

    pub fn set_writeback_delay(&self, delay: Duration) {
        self.with(|s| s.writeback_delay = delay);
    }

    /// How writebacks end unless `push_outcome` says otherwise.
    pub fn set_default_outcome(&self, outcome: WritebackOutcome) {
        self.with(|s| s.default_outcome = outcome);
    }

    /// The next writeback created ends this way.
    pub fn push_outcome(&self, outcome: WritebackOutcome) {
        self.with(|s| s.outcomes.push_back(outcome));
    }

    /// Requests per window (Sikka's is 60 s; shorter in tests) before 429 `API2011`.
    pub fn set_rate_limit(&self, per_window: u64, window: Duration) {
        self.with(|s| {
            s.rate_limit = per_window;
            s.window = window;
            s.window_start = Instant::now();
            s.window_count = 0;
        });
    }

    /// The next requests (to `path`, e.g. `/writeback_status`, or any) fail this way.
    pub fn fail_next(&self, path: Option<&str>, failures: impl IntoIterator<Item = SikkaFailure>) {
        self.with(|s| {
            s.failures.extend(failures.into_iter().map(|f| (path.map(str::to_owned), f)))
        });
    }

    /// Every `writeback_status` answer waits this long first.
    pub fn set_status_latency(&self, latency: Duration) {
        self.with(|s| s.status_latency = latency);
    }

    pub fn requests(&self) -> Vec<SikkaRequest> {
        self.with(|s| s.log.clone())
    }

    /// Requests with this method and path (without `/v4`).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.with(|s| s.log.iter().filter(|r| r.method == method && r.path == path).count())
    }

    /// `POST /request_key` requests of this grant type.
    pub fn grants(&self, grant_type: &str) -> usize {
        self.with(|s| s.log.iter().filter(|r| r.grant_type.as_deref() == Some(grant_type)).count())
    }

    /// Every request key and refresh key issued so far (to search logs for).
    pub fn issued_secrets(&self) -> Vec<String> {
        self.with(|s| s.issued.clone())
    }

    /// The routes, to mount at `/v4` (see [`SikkaSim::app`]).
    pub fn routes(&self) -> impl Endpoint + use<> {
        Route::new()
            .at("/authorized_practices", get(authorized_practices))
            .at("/request_key", post(issue_key).delete(end_session))
            .at("/request_key_info", get(request_key_info))
            .at("/appointment", post(writeback))
            .at("/patient", post(writeback))
            .at("/appointments/:id", patch(writeback).put(writeback))
            .at("/patient/:id", patch(writeback))
            .at("/writeback_status", get(writeback_status))
            .data(self.clone())
    }

    /// The whole simulator, `/v4/…` at the root of a server.
    pub fn app(&self) -> impl Endpoint + use<> {
        Route::new().nest("/v4", self.routes())
    }
}

fn toggle(list: &mut Vec<String>, office_id: &str, on: bool) {
    list.retain(|o| o != office_id);
    if on {
        list.push(office_id.to_owned());
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// SplitMix64: distinct, unpredictable-looking keys from a counter.
fn hash(x: u64, salt: u64) -> u64 {
    let mut z = x.wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn new_secret(s: &mut State) -> String {
    s.counter = s.counter.wrapping_add(1);
    format!("{:016x}{:016x}", hash(s.counter, 1), hash(s.counter, 2))
}

fn error(status: StatusCode, code: &str, short: &str, long: &str) -> Response {
    let body = json!({
        "http_code": status.as_u16().to_string(),
        "http_code_desc": status.canonical_reason().unwrap_or(""),
        "error_code": code,
        "short_message": short,
        "long_message": long,
        "more_information": "https://apidocs.sikkasoft.com",
    });
    Response::builder().status(status).content_type("application/json").body(body.to_string())
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder().status(status).content_type("application/json").body(body.to_string())
}

fn list(items: Vec<Value>) -> Value {
    let n = items.len().to_string();
    json!({
        "offset": "0", "limit": "50", "total_count": n, "execution_time": "12",
        "pagination": {"first": "", "previous": "", "current": "", "next": "", "last": ""},
        "items": items,
    })
}

fn sikka_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn key_body(request_key: &str, k: &IssuedKey) -> Value {
    let left = (k.end - Utc::now()).num_seconds().max(0);
    json!({
        "href": "https://api.sikkasoft.com/v4/request_key",
        "request_key": request_key,
        "start_time": sikka_time(k.start),
        "end_time": sikka_time(k.end),
        "expires_in": format!("{left} second(s)"),
        "issued_to": k.office_id,
        "status": if left > 0 { "active" } else { "expired" },
        "request_count": k.request_count.to_string(),
        "scope": "read write",
        "domain": "Dental",
        "refresh_key": k.refresh_key,
    })
}

/// What every request goes through: the log, rate limit, injected failures.
struct Gate {
    sim: SikkaSim,
    index: usize,
}

impl Gate {
    async fn enter(
        sim: &SikkaSim,
        req: &Request,
        grant_type: Option<String>,
    ) -> (Self, Option<Response>) {
        let path = req.uri().path().trim_start_matches("/v4").to_owned();
        let request_key = request_key_of(req);
        let (index, failure, limited, latency) = sim.with(|s| {
            s.log.push(SikkaRequest {
                method: req.method().to_string(),
                path: path.clone(),
                grant_type,
                request_key,
                status: 0,
                at: Instant::now(),
            });
            let failure = match s.failures.front() {
                Some((None, _)) => s.failures.pop_front().map(|f| f.1),
                Some((Some(p), _)) if *p == path => s.failures.pop_front().map(|f| f.1),
                _ => None,
            };
            if s.window_start.elapsed() >= s.window {
                s.window_start = Instant::now();
                s.window_count = 0;
            }
            s.window_count += 1;
            let latency =
                if path == "/writeback_status" { s.status_latency } else { Duration::ZERO };
            (s.log.len() - 1, failure, s.window_count > s.rate_limit, latency)
        });
        let gate = Self { sim: sim.clone(), index };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let early = match failure {
            Some(SikkaFailure::Overloaded) => Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "API2002",
                "Service is overloaded",
                "Please retry after some time",
            )),
            Some(SikkaFailure::GatewayTimeout) => Some(error(
                StatusCode::GATEWAY_TIMEOUT,
                "API2022",
                "Gateway timeout",
                "The practice did not answer in time",
            )),
            Some(SikkaFailure::RateLimited(reset)) => {
                let r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "API2011",
                    "Rate limit exceeded",
                    "Too many requests",
                );
                Some(with_header(r, "X-Rate-Limit-Reset", &reset.to_string()))
            }
            Some(SikkaFailure::Slow(d)) => {
                tokio::time::sleep(d).await;
                None
            }
            None if limited => Some(error(
                StatusCode::TOO_MANY_REQUESTS,
                "API2011",
                "Rate limit exceeded",
                "Too many requests in this window",
            )),
            None => None,
        };
        (gate, early)
    }

    /// Stamps the rate-limit headers and logs the status.
    fn leave(self, resp: Response) -> Response {
        let (limit, remaining, reset) = self.sim.with(|s| {
            // Whole seconds, rounded up: a client that waits this long finds a new window.
            let left = s.window.saturating_sub(s.window_start.elapsed());
            let reset = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            (s.rate_limit, s.rate_limit.saturating_sub(s.window_count), reset)
        });
        let status = resp.status().as_u16();
        self.sim.with(|s| s.log[self.index].status = status);
        let mut resp = with_header(resp, "X-Rate-Limit-Limit", &limit.to_string());
        resp = with_header(resp, "X-Rate-Limit-Remaining", &remaining.to_string());
        if !resp.headers().contains_key("X-Rate-Limit-Reset") {
            resp = with_header(resp, "X-Rate-Limit-Reset", &reset.to_string());
        }
        resp
    }
}

fn with_header(mut resp: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = value.parse() {
        resp.headers_mut().insert(name, v);
    }
    resp
}

fn request_key_of(req: &Request) -> Option<String> {
    req.header("Request-Key").map(str::to_owned).or_else(|| {
        req.uri().query().and_then(|q| {
            q.split('&').find_map(|kv| kv.strip_prefix("request_key=").map(str::to_owned))
        })
    })
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    })
}

fn app_ok(s: &State, app_id: Option<&str>, app_key: Option<&str>) -> bool {
    app_id == Some(s.app_id.as_str()) && app_key == Some(s.app_key.as_str())
}

fn bad_app() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "API2003",
        "Invalid App-Id or App-Key",
        "Check your application credentials",
    )
}

fn not_granted() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "API2007",
        "Practice has not granted access",
        "The practice must authorize this application again",
    )
}

#[handler]
async fn authorized_practices(req: &Request, sim: Data<&SikkaSim>) -> Response {
    let (gate, early) = Gate::enter(&sim, req, None).await;
    if let Some(r) = early {
        return gate.leave(r);
    }
    let resp = sim.with(|s| {
        if !app_ok(s, req.header("App-Id"), req.header("App-Key")) {
            return bad_app();
        }
        let items = s
            .practices
            .iter()
            .filter(|p| !s.revoked.contains(&p.office_id))
            .map(|p| {
                json!({
                    "office_id": p.office_id, "secret_key": p.secret_key,
                    "practice_id": p.practice_id, "practice_name": p.practice_name,
                    "practice_management_system": "Dentrix", "domain": "Dental",
                    "data_synchronization_date": "2026-11-21T23:10:04",
                    "address_line1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701",
                })
            })
            .collect();
        json_response(StatusCode::OK, &list(items))
    });
    gate.leave(resp)
}

#[handler]
async fn issue_key(req: &Request, body: Body, sim: Data<&SikkaSim>) -> Response {
    let body: Map<String, Value> = body
        .into_bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let grant = field("grant_type");
    let (gate, early) = Gate::enter(&sim, req, grant.clone()).await;
    if let Some(r) = early {
        return gate.leave(r);
    }
    let resp = sim.with(|s| {
        if !app_ok(s, field("app_id").as_deref(), field("app_key").as_deref()) {
            return bad_app();
        }
        let office_id = match grant.as_deref() {
            Some("request_key") => {
                let (office, secret) = (field("office_id"), field("secret_key"));
                let Some(p) = s.practices.iter().find(|p| Some(&p.office_id) == office.as_ref())
                else {
                    return not_granted();
                };
                if Some(&p.secret_key) != secret.as_ref() {
                    return error(
                        StatusCode::UNAUTHORIZED,
                        "API2003",
                        "Invalid office_id or secret_key",
                        "Check the practice's credentials",
                    );
                }
                p.office_id.clone()
            }
            Some("refresh_key") => {
                let Some(office) = field("refresh_key").and_then(|k| s.refresh_keys.remove(&k))
                else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "API1026",
                        "Invalid refresh key",
                        "The refresh key is unknown or was already used",
                    );
                };
                office
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "API1005",
                    "Invalid grant_type",
                    "grant_type must be request_key or refresh_key",
                );
            }
        };
        if s.revoked.contains(&office_id) {
            return not_granted();
        }
        // A new key replaces the office's old ones.
        s.keys.retain(|_, k| k.office_id != office_id);
        s.refresh_keys.retain(|_, o| *o != office_id);
        let (rk, refresh) = (new_secret(s), new_secret(s));
        let start = Utc::now();
        let end = start + chrono::Duration::from_std(s.key_lifetime).unwrap_or_default();
        let issued = IssuedKey {
            office_id: office_id.clone(),
            start,
            end,
            refresh_key: refresh.clone(),
            request_count: 0,
        };
        let body = key_body(&rk, &issued);
        s.issued.push(rk.clone());
        s.issued.push(refresh.clone());
        s.keys.insert(rk, issued);
        s.refresh_keys.insert(refresh, office_id);
        json_response(StatusCode::OK, &body)
    });
    gate.leave(resp)
}

/// Checks the request key: the office it belongs to, or the error answer.
#[allow(clippy::result_large_err)] // the error is the answer itself, built once per request
fn authenticate(s: &mut State, req: &Request) -> Result<(String, DateTime<Utc>), Response> {
    let Some(key) = request_key_of(req) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "API1004",
            "Request key is missing",
            "Send the Request-Key header",
        ));
    };
    match s.keys.get_mut(&key) {
        Some(k) if k.end > Utc::now() => {
            k.request_count += 1;
            if s.revoked.contains(&k.office_id) {
                return Err(not_granted());
            }
            Ok((k.office_id.clone(), k.end))
        }
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "API1025",
            "Request key expired",
            "Request key is expired or invalid; refresh it",
        )),
    }
}

fn with_expiry(resp: Response, end: DateTime<Utc>) -> Response {
    with_header(resp, "Request-Key-Expires", &end.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

#[handler]
async fn end_session(req: &Request, sim: Data<&SikkaSim>) -> Response {
    let (gate, early) = Gate::enter(&sim, req, None).await;
    if let Some(r) = early {
        return gate.leave(r);
    }
    let resp = sim.with(|s| match authenticate(s, req) {
        Ok(_) => {
            if let Some(k) = request_key_of(req).and_then(|k| s.keys.remove(&k)) {
                s.refresh_keys.remove(&k.refresh_key);
            }
            error(StatusCode::OK, "API0001", "Request key deleted", "The session has ended")
        }
        Err(r) => r,
    });
    gate.leave(resp)
}

#[handler]
async fn request_key_info(req: &Request, sim: Data<&SikkaSim>) -> Response {
    let (gate, early) = Gate::enter(&sim, req, None).await;
    if let Some(r) = early {
        return gate.leave(r);
    }
    let resp = sim.with(|s| {
        let key = query_param(req, "request_key").unwrap_or_default();
        match s.keys.get(&key) {
            Some(k) => with_expiry(json_response(StatusCode::OK, &key_body(&key, k)), k.end),
            None => error(StatusCode::NOT_FOUND, "API2009", "Not found", "No such request key"),
        }
    });
    gate.leave(resp)
}

/// The fields a writeback body must carry (inferred from the published collections).
fn required(method: &Method, path: &str) -> &'static [&'static str] {
    match (method.as_str(), path) {
        ("POST", "/appointment") => {
            &["patient_id", "date", "time", "length", "provider_id", "practice_id"]
        }
        ("POST", "/patient") => &["firstname", "lastname", "provider_id", "practice_id"],
        ("PATCH", p) if p.starts_with("/appointments/") => &["op", "path", "value", "practice_id"],
        _ => &["practice_id"],
    }
}

#[handler]
async fn writeback(req: &Request, body: Body, sim: Data<&SikkaSim>) -> Response {
    let body: Option<Map<String, Value>> =
        body.into_bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok());
    let (gate, early) = Gate::enter(&sim, req, None).await;
    if let Some(r) = early {
        return gate.leave(r);
    }
    let path = req.uri().path().trim_start_matches("/v4").to_owned();
    let method = req.method().clone();
    let resp = sim.with(|s| {
        let (office_id, end) = match authenticate(s, req) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let Some(body) = body else {
            return error(
                StatusCode::BAD_REQUEST,
                "API1005",
                "Invalid request body",
                "The body must be a JSON object",
            );
        };
        for name in required(&method, &path) {
            match body.get(*name) {
                Some(Value::String(v)) if !v.is_empty() => {}
                Some(Value::String(_)) | None => {
                    return with_expiry(
                        error(
                            StatusCode::BAD_REQUEST,
                            "API1005",
                            "Missing parameter",
                            &format!("{name} is required"),
                        ),
                        end,
                    );
                }
                Some(_) => {
                    return with_expiry(
                        error(
                            StatusCode::BAD_REQUEST,
                            "API1005",
                            "Invalid parameter",
                            &format!("{name} must be a string"),
                        ),
                        end,
                    );
                }
            }
        }
        if body.get("check_spu").and_then(Value::as_str) == Some("true")
            && s.offline.contains(&office_id)
        {
            return with_expiry(
                error(
                    StatusCode::PRECONDITION_FAILED,
                    "API2017",
                    "Practice agent is offline",
                    "The SPU at the practice is not reachable; try later",
                ),
                end,
            );
        }
        let id = s.next_writeback;
        s.next_writeback += 1;
        let outcome = s.outcomes.pop_front().unwrap_or_else(|| s.default_outcome.clone());
        let created = method == Method::POST;
        s.writebacks.insert(
            id,
            Writeback {
                office_id,
                method: method.to_string(),
                api: path.trim_start_matches('/').split('/').next().unwrap_or("").to_owned(),
                created: Instant::now(),
                outcome,
                created_id: if created { (id * 7 % 100_000).to_string() } else { String::new() },
            },
        );
        let (status, code, short) = if created {
            (StatusCode::CREATED, "API2016", "New resource created successfully")
        } else {
            (StatusCode::OK, "API0007", "Resource updated successfully")
        };
        let body = json!({
            "http_code": status.as_u16().to_string(),
            "http_code_desc": status.canonical_reason().unwrap_or(""),
            "error_code": code,
            "short_message": short,
            "long_message": format!("Id:{id}"),
            "more_information": format!("https://api.sikkasoft.com/v4/writeback_status?id={id}"),
        });
        with_expiry(json_response(status, &body), end)
    });
    gate.leave(resp)
}

#[handler]
async fn writeback_status(req: &Request, sim: Data<&SikkaSim>) -> Response {
    let (gate, early) = Gate::enter(&sim, req, None).await;
    if let Some(r) = early {
        return gate.leave(r);
    }
    let resp = sim.with(|s| {
        let (office_id, end) = match authenticate(s, req) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let id: Option<u64> = query_param(req, "id").and_then(|v| v.parse().ok());
        let Some(wb) = id.and_then(|id| s.writebacks.get(&id)).filter(|w| w.office_id == office_id)
        else {
            return with_expiry(
                error(StatusCode::NOT_FOUND, "API2009", "Not found", "No writeback with this id"),
                end,
            );
        };
        let settled =
            wb.created.elapsed() >= s.writeback_delay && wb.outcome != WritebackOutcome::Never;
        let (completed, has_error, result) = match (&wb.outcome, settled) {
            (_, false) => ("False", "False", String::new()),
            (WritebackOutcome::Failed(text), true) => ("True", "True", text.clone()),
            (_, true) => (
                "True",
                "False",
                format!("{} {} applied successfully", wb.api, wb.method.to_lowercase()),
            ),
        };
        let item = json!({
            "id": id.unwrap_or_default().to_string(),
            "office_id": wb.office_id,
            "method": wb.method,
            "api": wb.api,
            "is_completed": completed,
            "has_error": has_error,
            "completed_time": if settled { sikka_time(Utc::now()) } else { String::new() },
            "result": result,
            "status": if settled { "Completed" } else { "Pending" },
            "created_id": if settled { wb.created_id.clone() } else { String::new() },
            "patient_id": "",
            "appointment_sr_no": "",
        });
        with_expiry(json_response(StatusCode::OK, &list(vec![item])), end)
    });
    gate.leave(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct() {
        let sim = SikkaSim::new("a", "b");
        let mut s = sim.state.lock().unwrap();
        let a = new_secret(&mut s);
        let b = new_secret(&mut s);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
