//! The Sikka v4 client: app credentials and request keys in headers, every JSON value a
//! string, Sikka's error codes turned into typed errors, rate-limit headers honoured (no call
//! goes out while the window is spent), and 429/503/504/timeouts retried with exponential
//! backoff and jitter. No error carries a URL or a key.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use backoff::{ExponentialBackoffBuilder, future::retry};
use reqwest::{Method, header::HeaderMap};
use serde_json::{Map, Value};
use switchyard_shared::{config::SikkaConfig, secret::Secret, telemetry};

const UPSTREAM: &str = "sikka";

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SikkaError {
    #[error("SIKKA_APP_ID and SIKKA_APP_KEY are not set")]
    NoCredentials,
    /// 400 `API1025`: refresh the request key, then retry once.
    #[error("the request key has expired (API1025)")]
    KeyExpired,
    /// 401 `API2007` (the practice withdrew its consent) or `API2003` on a practice's
    /// credentials: the practice has to authorize the app again.
    #[error("Sikka refused the practice's credentials ({code}): {message}")]
    NotAuthorized { code: String, message: String },
    /// 412 `API2017`: the practice's on-site agent is offline.
    #[error("the practice's agent is offline (API2017)")]
    AgentOffline,
    /// Any other refusal: retrying the same request will not help.
    #[error("Sikka refused the request: HTTP {status} {code}: {message}")]
    Rejected { status: u16, code: String, message: String },
    #[error("Sikka's answer could not be read: {0}")]
    Malformed(String),
    /// 429, 503, 504, timeouts, connection errors — until the retry budget ran out.
    #[error("Sikka is unavailable: {0}")]
    Unavailable(String),
}

impl SikkaError {
    /// Worth trying again later (the agent may come back, Sikka may recover).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::AgentOffline)
    }
}

/// A practice as `authorized_practices` lists it.
#[derive(Debug, Clone)]
pub(crate) struct PracticeItem {
    pub office_id: Secret<String>,
    pub secret_key: Secret<String>,
    pub practice_id: Option<String>,
    pub practice_name: Option<String>,
    pub practice_management_system: Option<String>,
    pub domain: Option<String>,
}

/// A request key as `request_key` issues it.
pub(crate) struct IssuedKey {
    pub request_key: Secret<String>,
    pub refresh_key: Secret<String>,
    pub lifetime: Duration,
}

/// Sikka's answer to a writeback.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    /// The writeback id, from `long_message` (`Id:275495`) or `more_information`.
    pub sikka_id: Option<String>,
    pub message: String,
}

/// Where a writeback stands at the practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WritebackState {
    Pending,
    Completed(String),
    Failed(String),
}

/// One writeback call: method, path under `/v4`, JSON body.
#[derive(Debug, Clone)]
pub(crate) struct WritebackCall {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

pub(crate) struct SikkaClient {
    http: reqwest::Client,
    base: String,
    app: Option<(Secret<String>, Secret<String>)>,
    retry_max: Duration,
    /// No call before this (the rate-limit window is spent).
    not_before: Mutex<Option<Instant>>,
}

/// An error without the URL.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() { "timed out".to_owned() } else { e.to_string() }
}

fn header_secs(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// A string field (Sikka sends every value as a string; numbers are accepted too).
pub(crate) fn text(o: &Map<String, Value>, name: &str) -> Option<String> {
    match o.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `Id:275495` in `long_message`, or `?id=275495` in `more_information`.
pub(crate) fn writeback_id(o: &Map<String, Value>) -> Option<String> {
    let digits = |s: &str| -> Option<String> {
        let d: String = s.trim().chars().take_while(char::is_ascii_digit).collect();
        (!d.is_empty()).then_some(d)
    };
    if let Some(long) = text(o, "long_message") {
        let lower = long.to_ascii_lowercase();
        if let Some(id) = lower.find("id:").and_then(|at| digits(&long[at + 3..])) {
            return Some(id);
        }
    }
    let more = text(o, "more_information")?;
    let at = more.find("id=")?;
    digits(&more[at + 3..])
}

/// `"85603 second(s)"` → 85603 s.
fn lifetime(o: &Map<String, Value>) -> Duration {
    text(o, "expires_in")
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .map_or(Duration::from_secs(24 * 3600), Duration::from_secs)
}

impl SikkaClient {
    pub(crate) fn new(config: &SikkaConfig) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(config.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the Sikka HTTP client builds");
        let app = config.app_id.clone().zip(config.app_key.clone());
        Self {
            http,
            base: config.base_url.trim_end_matches('/').to_owned(),
            app,
            retry_max: Duration::from_secs(config.retry_max_secs),
            not_before: Mutex::new(None),
        }
    }

    fn app(&self) -> Result<&(Secret<String>, Secret<String>), SikkaError> {
        self.app.as_ref().ok_or(SikkaError::NoCredentials)
    }

    async fn pace(&self) {
        let wait =
            self.not_before.lock().unwrap().and_then(|t| t.checked_duration_since(Instant::now()));
        if let Some(d) = wait {
            tokio::time::sleep(d).await;
        }
    }

    fn note_limits(&self, headers: &HeaderMap) {
        if header_secs(headers, "x-rate-limit-remaining") == Some(0) {
            let reset = header_secs(headers, "x-rate-limit-reset").unwrap_or(60).min(60);
            *self.not_before.lock().unwrap() = Some(Instant::now() + Duration::from_secs(reset));
        }
    }

    /// One request; `Err(Transient)` retries.
    async fn once(
        &self,
        method: &Method,
        path: &str,
        headers: &[(&str, &str)],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Map<String, Value>), backoff::Error<SikkaError>> {
        self.pace().await;
        let mut req =
            self.http.request(method.clone(), format!("{}{path}", self.base)).query(query);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let started = Instant::now();
        let sent = req.send().await;
        metrics::histogram!(telemetry::UPSTREAM_REQUEST_DURATION, "upstream" => UPSTREAM)
            .record(started.elapsed().as_secs_f64());
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let class = crate::transport::classify(&e).0.as_str();
                metrics::counter!(telemetry::UPSTREAM_REQUESTS, "upstream" => UPSTREAM, "status_class" => class).increment(1);
                return Err(backoff::Error::transient(SikkaError::Unavailable(describe(
                    &e.without_url(),
                ))));
            }
        };
        let status = resp.status().as_u16();
        metrics::counter!(telemetry::UPSTREAM_REQUESTS, "upstream" => UPSTREAM,
            "status_class" => telemetry::status_class(status))
        .increment(1);
        self.note_limits(resp.headers());
        // After a 429 the wait is the window's reset; a 503/504 says nothing about the window
        // (every answer carries its reset), so only its own Retry-After counts.
        let retry_after = header_secs(resp.headers(), "retry-after");
        let reset = if status == 429 {
            header_secs(resp.headers(), "x-rate-limit-reset").or(retry_after)
        } else {
            retry_after
        };
        let bytes = resp.bytes().await.map_err(|e| {
            backoff::Error::transient(SikkaError::Unavailable(describe(&e.without_url())))
        })?;
        let object = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| match v {
            Value::Object(o) => Some(o),
            _ => None,
        });
        let code = object.as_ref().and_then(|o| text(o, "error_code")).unwrap_or_default();
        let message = object
            .as_ref()
            .and_then(|o| text(o, "long_message").or_else(|| text(o, "short_message")))
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message: String = message.chars().take(300).collect();
        match status {
            200..=299 => object.map(|o| (status, o)).ok_or_else(|| {
                backoff::Error::permanent(SikkaError::Malformed(format!(
                    "HTTP {status} with a body that is not a JSON object ({} bytes)",
                    bytes.len()
                )))
            }),
            400 if code == "API1025" => Err(backoff::Error::permanent(SikkaError::KeyExpired)),
            401 if code == "API2007" || code == "API2003" || code == "API2004" => {
                Err(backoff::Error::permanent(SikkaError::NotAuthorized { code, message }))
            }
            412 => Err(backoff::Error::permanent(SikkaError::AgentOffline)),
            429 | 503 | 504 | 502 => {
                if status == 429 {
                    metrics::counter!(telemetry::UPSTREAM_RATE_LIMITED, "upstream" => UPSTREAM)
                        .increment(1);
                }
                let err =
                    SikkaError::Unavailable(format!("HTTP {status} {code}").trim().to_owned());
                Err(match reset {
                    Some(s) => backoff::Error::retry_after(err, Duration::from_secs(s.min(60))),
                    None => backoff::Error::transient(err),
                })
            }
            500..=599 => {
                Err(backoff::Error::transient(SikkaError::Unavailable(format!("HTTP {status}"))))
            }
            _ => Err(backoff::Error::permanent(SikkaError::Rejected { status, code, message })),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Map<String, Value>), SikkaError> {
        let policy = ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(250))
            .with_multiplier(2.0)
            .with_randomization_factor(0.3)
            .with_max_interval(Duration::from_secs(15))
            .with_max_elapsed_time(Some(self.retry_max))
            .build();
        retry(policy, || self.once(&method, path, headers, query, body)).await
    }

    /// Every practice that has authorized the app (every page).
    pub(crate) async fn authorized_practices(&self) -> Result<Vec<PracticeItem>, SikkaError> {
        let (id, key) = self.app()?;
        let headers = [("App-Id", id.expose().as_str()), ("App-Key", key.expose().as_str())];
        let mut out = Vec::new();
        // `offset` is a page number, not an item offset.
        for page in 0.. {
            let offset = page.to_string();
            let query = [("show", "all"), ("limit", "500"), ("offset", offset.as_str())];
            let (_, body) =
                self.call(Method::GET, "/authorized_practices", &headers, &query, None).await?;
            let items = match body.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => {
                    return Err(SikkaError::Malformed("authorized_practices without items".into()));
                }
            };
            let n = items.len();
            for item in items {
                let Value::Object(o) = item else { continue };
                let (Some(office), Some(secret)) = (text(&o, "office_id"), text(&o, "secret_key"))
                else {
                    return Err(SikkaError::Malformed(
                        "a practice without office_id or secret_key".into(),
                    ));
                };
                out.push(PracticeItem {
                    office_id: Secret::new(office),
                    secret_key: Secret::new(secret),
                    practice_id: text(&o, "practice_id"),
                    practice_name: text(&o, "practice_name"),
                    practice_management_system: text(&o, "practice_management_system"),
                    domain: text(&o, "domain"),
                });
            }
            let total = text(&body, "total_count").and_then(|t| t.parse::<usize>().ok());
            if n < 500 || total.is_some_and(|t| out.len() >= t) {
                break;
            }
        }
        Ok(out)
    }

    async fn grant(&self, mut body: Map<String, Value>) -> Result<IssuedKey, SikkaError> {
        let (id, key) = self.app()?;
        body.insert("app_id".into(), id.expose().clone().into());
        body.insert("app_key".into(), key.expose().clone().into());
        let (_, answer) =
            self.call(Method::POST, "/request_key", &[], &[], Some(&Value::Object(body))).await?;
        match (text(&answer, "request_key"), text(&answer, "refresh_key")) {
            (Some(rk), Some(refresh)) => Ok(IssuedKey {
                request_key: Secret::new(rk),
                refresh_key: Secret::new(refresh),
                lifetime: lifetime(&answer),
            }),
            _ => Err(SikkaError::Malformed("request_key answer without keys".into())),
        }
    }

    /// A new request key from the practice's credentials.
    pub(crate) async fn new_key(
        &self,
        office_id: &str,
        secret_key: &str,
    ) -> Result<IssuedKey, SikkaError> {
        let mut body = Map::new();
        body.insert("grant_type".into(), "request_key".into());
        body.insert("office_id".into(), office_id.into());
        body.insert("secret_key".into(), secret_key.into());
        self.grant(body).await
    }

    /// A new request key (and refresh key) for a refresh key, which is spent by this.
    pub(crate) async fn refresh(&self, refresh_key: &str) -> Result<IssuedKey, SikkaError> {
        let mut body = Map::new();
        body.insert("grant_type".into(), "refresh_key".into());
        body.insert("refresh_key".into(), refresh_key.into());
        self.grant(body).await
    }

    pub(crate) async fn writeback(
        &self,
        request_key: &str,
        call: &WritebackCall,
    ) -> Result<Accepted, SikkaError> {
        let headers = [("Request-Key", request_key)];
        let (_, answer) =
            self.call(call.method.clone(), &call.path, &headers, &[], Some(&call.body)).await?;
        Ok(Accepted {
            sikka_id: writeback_id(&answer),
            message: text(&answer, "short_message").unwrap_or_default(),
        })
    }

    pub(crate) async fn writeback_status(
        &self,
        request_key: &str,
        id: &str,
    ) -> Result<WritebackState, SikkaError> {
        let headers = [("Request-Key", request_key)];
        let (_, body) =
            self.call(Method::GET, "/writeback_status", &headers, &[("id", id)], None).await?;
        let item = match body.get("items") {
            Some(Value::Array(items)) => items.iter().find_map(|i| match i {
                Value::Object(o) if text(o, "id").as_deref() == Some(id) => Some(o.clone()),
                _ => None,
            }),
            _ => None,
        };
        let Some(item) = item else {
            return Err(SikkaError::Malformed(format!("writeback_status has no item {id}")));
        };
        let yes = |name| text(&item, name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let result = text(&item, "result").unwrap_or_default();
        Ok(match (yes("is_completed"), yes("has_error")) {
            (false, _) => WritebackState::Pending,
            (true, false) => WritebackState::Completed(result),
            (true, true) => WritebackState::Failed(result),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_writeback_id_hides_in_long_message_or_more_information() {
        let a = obj(json!({"error_code": "API2016", "long_message": "Id:275495",
            "more_information": "https://api.sikkasoft.com/v4/writeback_status?id=275495"}));
        assert_eq!(writeback_id(&a).as_deref(), Some("275495"));
        let b = obj(
            json!({"long_message": "created", "more_information": "https://x/v4/writeback_status?id=42"}),
        );
        assert_eq!(writeback_id(&b).as_deref(), Some("42"));
        let c = obj(json!({"long_message": "ID: 7 queued"}));
        assert_eq!(writeback_id(&c).as_deref(), Some("7"));
        assert_eq!(writeback_id(&obj(json!({"long_message": "Updated"}))), None);
    }

    #[test]
    fn lifetimes_and_string_values() {
        assert_eq!(
            lifetime(&obj(json!({"expires_in": "85603 second(s)"}))),
            Duration::from_secs(85603)
        );
        assert_eq!(lifetime(&obj(json!({}))), Duration::from_secs(86400));
        let o = obj(json!({"a": "x", "b": 5, "c": "", "d": null}));
        assert_eq!(text(&o, "a").as_deref(), Some("x"));
        assert_eq!(text(&o, "b").as_deref(), Some("5"));
        assert_eq!(text(&o, "c"), None);
        assert_eq!(text(&o, "d"), None);
    }
}
