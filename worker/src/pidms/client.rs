//! The PIDKey client: one batch per request (CRLF-joined, URL-encoded), a rate limit shared
//! by every batch of the process (and the fleet, through Redis), retries with exponential
//! backoff and jitter on timeouts, 5xx and 429 (honouring `Retry-After`), and no way for the
//! API key — which travels in the query string — to reach an error, a log line or a metric.

use std::time::{Duration, Instant};

use backoff::{ExponentialBackoffBuilder, future::retry};
use switchyard_shared::{
    config::PidkeyConfig,
    pidms::PidkeyAnswer,
    ratelimit::{Quota, RateLimiter},
    secret::Secret,
    telemetry,
};

const UPSTREAM: &str = "pidkey";

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum PidkeyError {
    #[error("PIDKEY_API_KEY is not set")]
    NoApiKey,
    /// PIDKey said no (bad API key, quota, a refused request): retrying will not help.
    #[error("PIDKey refused the request: {0}")]
    Refused(String),
    /// Answers that never parsed, even after retries.
    #[error("PIDKey's answer could not be read: {0}")]
    Malformed(String),
    /// Timeouts, 5xx, 429 — until the retry budget ran out.
    #[error("PIDKey is unavailable: {0}")]
    Unavailable(String),
}

pub(crate) struct PidkeyClient {
    http: reqwest::Client,
    url: String,
    api_key: Option<Secret<String>>,
    limiter: RateLimiter,
    quota: Quota,
    retry_max: Duration,
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// An error without the URL (it carries the API key in its query string).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() { "timed out".to_owned() } else { e.without_url().to_string() }
}

impl PidkeyClient {
    pub(crate) fn new(config: &PidkeyConfig, limiter: RateLimiter) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .expect("the PIDKey HTTP client builds");
        Self {
            http,
            url: format!("{}/ajax/pidms_api", config.base_url.trim_end_matches('/')),
            api_key: config.api_key.clone(),
            limiter,
            quota: Quota::per_second(config.rate_per_second),
            retry_max: Duration::from_secs(config.retry_max_secs),
        }
    }

    /// Waits for a turn under the shared rate limit (fails open if the limiter is down).
    async fn pace(&self) {
        loop {
            match self.limiter.check("upstream:pidkey", self.quota).await {
                Ok(d) if !d.allowed => tokio::time::sleep(d.retry_after).await,
                _ => return,
            }
        }
    }

    /// One request, classified: `Err(Transient)` retries, `Err(Permanent)` ends the batch.
    async fn once(
        &self,
        key: &str,
        joined: &str,
    ) -> Result<Vec<PidkeyAnswer>, backoff::Error<PidkeyError>> {
        self.pace().await;
        let started = Instant::now();
        let sent = self
            .http
            .get(&self.url)
            .query(&[("keys", joined), ("justgetdescription", "0"), ("apikey", key)])
            .send()
            .await;
        metrics::histogram!(telemetry::UPSTREAM_REQUEST_DURATION, "upstream" => UPSTREAM)
            .record(started.elapsed().as_secs_f64());
        let transient = |e: PidkeyError| backoff::Error::transient(e);
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let class = crate::transport::classify(&e).0.as_str();
                metrics::counter!(telemetry::UPSTREAM_REQUESTS, "upstream" => UPSTREAM, "status_class" => class).increment(1);
                return Err(transient(PidkeyError::Unavailable(describe(e))));
            }
        };
        let status = resp.status().as_u16();
        metrics::counter!(telemetry::UPSTREAM_REQUESTS, "upstream" => UPSTREAM,
            "status_class" => telemetry::status_class(status))
        .increment(1);
        match status {
            200 => {}
            401 | 403 => {
                return Err(backoff::Error::permanent(PidkeyError::Refused(format!(
                    "HTTP {status}: the API key was not accepted"
                ))));
            }
            429 => {
                metrics::counter!(telemetry::UPSTREAM_RATE_LIMITED, "upstream" => UPSTREAM)
                    .increment(1);
                let err = PidkeyError::Unavailable("HTTP 429: rate limited".into());
                return Err(match retry_after(resp.headers()) {
                    Some(d) => backoff::Error::retry_after(err, d),
                    None => transient(err),
                });
            }
            500..=599 => return Err(transient(PidkeyError::Unavailable(format!("HTTP {status}")))),
            _ => {
                return Err(backoff::Error::permanent(PidkeyError::Refused(format!(
                    "HTTP {status}"
                ))));
            }
        }
        let body =
            resp.bytes().await.map_err(|e| transient(PidkeyError::Unavailable(describe(e))))?;
        parse(&body)
    }

    /// Checks up to a batch of (dashless) keys; retries transient failures until the retry
    /// budget runs out.
    pub(crate) async fn check(&self, keys: &[String]) -> Result<Vec<PidkeyAnswer>, PidkeyError> {
        let Some(api_key) = &self.api_key else { return Err(PidkeyError::NoApiKey) };
        let joined = keys.join("\r\n");
        let policy = ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(200))
            .with_multiplier(2.0)
            .with_randomization_factor(0.3)
            .with_max_interval(Duration::from_secs(15))
            .with_max_elapsed_time(Some(self.retry_max))
            .build();
        retry(policy, || self.once(api_key.expose(), &joined)).await
    }
}

/// An array of answers; one object (some answers come that way) is taken as an array of
/// one; `{"short_result", "result"}` is a refusal; anything else may be a cut-off body and
/// is retried.
fn parse(body: &[u8]) -> Result<Vec<PidkeyAnswer>, backoff::Error<PidkeyError>> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        backoff::Error::transient(PidkeyError::Malformed(format!(
            "not JSON ({e}); {} bytes",
            body.len()
        )))
    })?;
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(serde_json::from_value::<PidkeyAnswer>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| backoff::Error::transient(PidkeyError::Malformed(e.to_string()))),
        serde_json::Value::Object(ref o) if o.contains_key("keyname") => {
            serde_json::from_value(value)
                .map(|a| vec![a])
                .map_err(|e| backoff::Error::transient(PidkeyError::Malformed(e.to_string())))
        }
        serde_json::Value::Object(o)
            if o.contains_key("result") || o.contains_key("short_result") =>
        {
            let text = o
                .get("result")
                .or_else(|| o.get("short_result"))
                .and_then(|v| v.as_str())
                .unwrap_or("refused");
            Err(backoff::Error::permanent(PidkeyError::Refused(text.chars().take(200).collect())))
        }
        other => Err(backoff::Error::transient(PidkeyError::Malformed(format!(
            "unexpected JSON: {}",
            other.to_string().chars().take(100).collect::<String>()
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_arrays_single_objects_and_refusals() {
        let one = r#"{"keyname":"ABC","prd":"X","remaining":3}"#;
        assert_eq!(parse(format!("[{one}]").as_bytes()).ok().unwrap().len(), 1);
        assert_eq!(parse(one.as_bytes()).ok().unwrap()[0].keyname, "ABC");
        match parse(br#"{"short_result":"error","result":"invalid API key"}"#) {
            Err(backoff::Error::Permanent(PidkeyError::Refused(m))) => {
                assert_eq!(m, "invalid API key")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(b"[{\"keyname\":\"A"), Err(backoff::Error::Transient { .. })));
    }
}
