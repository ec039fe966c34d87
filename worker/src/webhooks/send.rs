//! The send step: one signed request to an endpoint (through the SSRF guard, and the proxy
//! check when one is configured), and how it went as an [`Answer`].

use std::time::Duration;

use chrono::Utc;
use switchyard_shared::{telemetry, webhooks::AttemptOutcome};

use super::{BODY_LIMIT, Webhooks, client};
use crate::transport::Failure;

/// How an attempt ended, before it is turned into a delivery state.
pub(super) struct Answer {
    pub(super) status_code: Option<u16>,
    /// `status_class` label: 2xx…5xx, blocked, or a [`Failure`] (timeout, connect_refused, …).
    pub(super) class: &'static str,
    /// The `outcome` column: an HTTP answer, a redirect, blocked, or a [`Failure`].
    pub(super) kind: AttemptOutcome,
    pub(super) error: Option<String>,
    pub(super) body: Option<String>,
    pub(super) retry_after: Option<Duration>,
}

impl Answer {
    pub(super) fn success(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
    pub(super) fn gone(&self) -> bool {
        self.status_code == Some(410)
    }
    /// Retrying cannot help: the guard refused the address, or the endpoint is gone.
    pub(super) fn permanent(&self) -> bool {
        self.kind == AttemptOutcome::Blocked || self.gone()
    }
    pub(super) fn throttled_or_timed_out(&self) -> bool {
        self.status_code == Some(429) || self.kind == AttemptOutcome::Timeout
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (when.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

async fn read_limited(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(BODY_LIMIT);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends one signed request and says how it went.
pub(super) async fn call(
    hooks: &Webhooks,
    url: &str,
    headers: reqwest::header::HeaderMap,
    body: String,
) -> Answer {
    // IP-literal URLs never reach the resolver: check them here.
    if let Ok(parsed) = reqwest::Url::parse(url)
        && let Some(host) = parsed.host_str()
        && let Ok(ip) =
            host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>()
        && let Err(reason) = hooks.guard.check(ip)
    {
        return Answer {
            status_code: None,
            class: "blocked",
            kind: AttemptOutcome::Blocked,
            error: Some(format!("blocked by the SSRF guard: {ip} is a {reason} address")),
            body: None,
            retry_after: None,
        };
    }
    if hooks.proxied
        && let Ok(parsed) = reqwest::Url::parse(url)
        && let Some(host) = parsed.host_str()
        && host.parse::<std::net::IpAddr>().is_err()
        && !host.starts_with('[')
        && let Err(refused) = client::check_destination(
            &hooks.guard,
            host,
            parsed.port_or_known_default().unwrap_or(443),
        )
        .await
    {
        let (class, kind) = match refused {
            client::Refused::Dns(_) => (Failure::Dns.as_str(), Failure::Dns.outcome()),
            client::Refused::Blocked(..) => ("blocked", AttemptOutcome::Blocked),
        };
        return Answer {
            status_code: None,
            class,
            kind,
            error: Some(refused.to_string()),
            body: None,
            retry_after: None,
        };
    }
    match hooks.client.post(url).headers(headers).body(body).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = retry_after(resp.headers());
            let kind = if resp.status().is_redirection() {
                AttemptOutcome::Redirect
            } else {
                AttemptOutcome::HttpStatus
            };
            let error = match status {
                200..=299 => None,
                300..=399 => Some(format!("HTTP {status}: redirects are not followed")),
                _ => Some(format!("HTTP {status}")),
            };
            Answer {
                status_code: Some(status),
                class: telemetry::status_class(status),
                kind,
                error,
                body: Some(read_limited(resp).await),
                retry_after,
            }
        }
        Err(e) => {
            let (class, kind, message) = if let Some(reason) = client::blocked_reason(&e) {
                ("blocked", AttemptOutcome::Blocked, reason)
            } else {
                let (failure, message) = crate::transport::classify(&e);
                let message = match failure {
                    Failure::Timeout => {
                        format!("no answer within {} ms", hooks.timeout.as_millis())
                    }
                    _ => message,
                };
                (failure.as_str(), failure.outcome(), message)
            };
            Answer {
                status_code: None,
                class,
                kind,
                error: Some(message),
                body: None,
                retry_after: None,
            }
        }
    }
}
