//! Webhooks: endpoints subscribe to event types; each event becomes one delivery per
//! subscribed endpoint, attempted on the retry schedule and signed per Standard Webhooks.
//! Signing is in [`signing`], publishing in [`events`], the records in [`store`].

pub mod events;
mod pusher;
pub mod signing;
mod store;

use std::time::Duration;

pub use signing::{
    TIMESTAMP_TOLERANCE_SECS, VerifyError, generate_secret, secret_key, sign, signature_header,
    verify,
};
pub use store::{
    AttemptRecord, AttemptRow, Claim as DeliveryClaim, ClaimedDelivery, DeliveryFilter,
    DeliveryRow, DueDelivery, EndpointPatch, EndpointRow, EventFilter, EventRow, Inserted,
    NewDelivery, NewEndpoint, NewEvent, ReadBackClaim, RetriedDelivery, SUCCESS_REFRESH,
    Subscription, Subscriptions, secret_context,
};

/// Event types are dot-separated `[a-zA-Z0-9_.]`, 1–128 characters.
pub fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with('.')
        && !t.ends_with('.')
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// A subscription pattern: an exact type, `*`, or a prefix ending in `.*` (`pidms.*`).
pub fn valid_pattern(p: &str) -> bool {
    p == "*" || valid_event_type(p) || p.strip_suffix(".*").is_some_and(valid_event_type)
}

/// Whether an endpoint subscribed to `patterns` gets events of type `event_type`.
pub fn subscribed(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p == event_type
            || p.strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
    })
}

/// The body every endpoint receives: `{"type", "timestamp", "data"}`.
pub fn payload(
    event_type: &str,
    timestamp: chrono::DateTime<chrono::Utc>,
    data: &serde_json::Value,
) -> String {
    serde_json::json!({
        "type": event_type,
        "timestamp": timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

crate::text_enum! {
    /// Where a delivery stands (`webhook_deliveries_shown.status`).
    /// pending → delivering (claimed) → delivered | retrying → delivering … | failed.
    pub enum DeliveryStatus {
        /// Waiting for its first attempt.
        Pending = "pending",
        /// An attempt is claimed and in flight (until `claimed_until`). Not stored: a
        /// pending or retrying row with a lease (`claimed_until`) is shown as delivering.
        Delivering = "delivering",
        /// An attempt failed; the next is due at `next_attempt_at`.
        Retrying = "retrying",
        /// An attempt got a 2xx.
        Delivered = "delivered",
        /// Given up: out of attempts, 410 Gone, refused by the SSRF guard, or its endpoint is
        /// gone.
        Failed = "failed",
    }
}

crate::text_enum! {
    /// What one attempt came to (`webhook_attempts.outcome`): an HTTP answer, a redirect
    /// (not followed), refused by the SSRF guard, or why no answer came.
    pub enum AttemptOutcome {
        HttpStatus = "http_status",
        Redirect = "redirect",
        Blocked = "blocked",
        Timeout = "timeout",
        ConnectRefused = "connect_refused",
        DnsError = "dns_error",
        TlsError = "tls_error",
        ClosedMidAnswer = "closed_mid_answer",
        InvalidAnswer = "invalid_answer",
        ConnectError = "connect_error",
        RequestError = "request_error",
    }
}

/// Delays between attempts: after attempt n (1-based) comes `delays[n - 1]`; there are
/// `delays.len() + 1` attempts in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    pub delays: Vec<Duration>,
}

impl RetrySchedule {
    /// `5s,5m,30m,2h` (units ms, s, m, h, d).
    pub fn parse(s: &str) -> Result<Self, String> {
        let delays = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_delay)
            .collect::<Result<Vec<_>, _>>()?;
        if delays.len() > 50 {
            return Err("at most 50 retries".into());
        }
        Ok(Self { delays })
    }

    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The scheduled delay after attempt `n`, or `None` when it was the last.
    pub fn after(&self, attempt: u32) -> Option<Duration> {
        self.delays.get(attempt.checked_sub(1)? as usize).copied()
    }
}

fn parse_delay(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("{s:?}: no unit"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1_000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(format!("{s:?}: unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_millis(ms))
}

/// ±`fraction` uniform jitter.
pub fn jitter(d: Duration, fraction: f64) -> Duration {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random number generator is available");
    let unit = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    d.mul_f64(1.0 + fraction * (2.0 * unit - 1.0))
}

/// The delay before the next attempt after a failure, from the schedule and the answer:
/// `Retry-After` (on 429/503) is honoured but clamped between the scheduled delay and twice
/// it; after a 429 or a timeout the wait is at least `throttle_floor`.
pub fn next_delay(
    scheduled: Duration,
    retry_after: Option<Duration>,
    throttled_or_timed_out: bool,
    throttle_floor: Duration,
) -> Duration {
    let mut delay = jitter(scheduled, 0.2);
    if let Some(asked) = retry_after {
        delay = asked.clamp(scheduled, scheduled * 2);
    }
    if throttled_or_timed_out {
        delay = delay.max(throttle_floor);
    }
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_statuses_read_back_what_they_store() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(status));
        }
        let err = "sent".parse::<DeliveryStatus>().unwrap_err();
        assert_eq!(err, "one of pending, delivering, retrying, delivered, failed");
    }

    #[test]
    fn subscriptions_match_exact_star_and_prefix() {
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(subscribed(&p(&["*"]), "pidms.sync.completed"));
        assert!(subscribed(&p(&["pidms.*"]), "pidms.sync.completed"));
        assert!(!subscribed(&p(&["pidms.*"]), "pidmsx.sync"));
        assert!(!subscribed(&p(&["pidms.*"]), "sikka.writeback.failed"));
        assert!(subscribed(&p(&["a.b", "c"]), "c"));
        assert!(!subscribed(&p(&["a.b"]), "a.bc"));
        assert!(valid_pattern("pidms.*") && valid_pattern("*") && valid_pattern("x.y_z"));
        assert!(!valid_pattern("pid ms") && !valid_pattern("a.*.b") && !valid_pattern(".x"));
        assert!(valid_event_type("webhook.test") && !valid_event_type("a-b"));
    }

    #[test]
    fn schedules_parse_and_clamp() {
        let s = RetrySchedule::parse("5s,5m,30m,2h,5h,10h,10h").unwrap();
        assert_eq!(s.max_attempts(), 8);
        assert_eq!(s.after(1), Some(Duration::from_secs(5)));
        assert_eq!(s.after(7), Some(Duration::from_secs(36_000)));
        assert_eq!(s.after(8), None);
        assert_eq!(
            RetrySchedule::parse("10ms, 20ms").unwrap().delays[1],
            Duration::from_millis(20)
        );
        assert!(RetrySchedule::parse("5x").is_err() && RetrySchedule::parse("s").is_err());
        assert_eq!(RetrySchedule::parse("").unwrap().max_attempts(), 1);

        let base = Duration::from_secs(300);
        for _ in 0..100 {
            let d = next_delay(base, None, false, Duration::from_secs(60));
            assert!(d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2), "{d:?}");
        }
        let floor = Duration::from_secs(60);
        assert_eq!(next_delay(base, Some(Duration::from_secs(1)), true, floor), base);
        assert_eq!(next_delay(base, Some(Duration::from_secs(9999)), true, floor), base * 2);
        assert_eq!(
            next_delay(base, Some(Duration::from_secs(400)), true, floor),
            Duration::from_secs(400)
        );
        let short = Duration::from_secs(5);
        assert_eq!(
            next_delay(short, Some(Duration::from_secs(7)), true, floor),
            floor,
            "floor after 429"
        );
    }
}
