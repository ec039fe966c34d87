//! Standard Webhooks: secrets, signatures, event types, subscriptions and the retry schedule.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";
/// Receivers accept timestamps within this of their clock (Standard Webhooks).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret)).ok()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter().map(|k| sign(k, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header")]
    MissingHeader,
    #[error("timestamp outside the tolerance")]
    Timestamp,
    #[error("no signature matches")]
    Signature,
}

/// Verifies as a receiver does (constant-time comparison, ±5 min tolerance); used by tests
/// and by the recording receiver of the benchmark.
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let (Some(id), Some(ts), Some(sigs)) = (id, timestamp, signature) else {
        return Err(VerifyError::MissingHeader);
    };
    let ts: i64 = ts.parse().map_err(|_| VerifyError::Timestamp)?;
    if (now - ts).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::Timestamp);
    }
    let key = secret_key(secret).ok_or(VerifyError::Signature)?;
    for candidate in sigs.split(' ') {
        let Some(b64) = candidate.strip_prefix("v1,") else { continue };
        let Ok(given) = STANDARD.decode(b64) else { continue };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        if mac.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Signature)
}

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

/// Where a delivery stands; stored as its lower-case name in `webhook_deliveries.status`.
/// pending → delivering (claimed) → delivered | retrying → delivering … | failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt.
    Pending,
    /// An attempt is claimed and in flight (until `claimed_until`).
    Delivering,
    /// An attempt failed; the next is due at `next_attempt_at`.
    Retrying,
    /// An attempt got a 2xx.
    Delivered,
    /// Given up: out of attempts, 410 Gone, refused by the SSRF guard, or its endpoint is gone.
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 5] =
        [Self::Pending, Self::Delivering, Self::Retrying, Self::Delivered, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|d| d.as_str()).collect();
            format!("one of {}", names.join(", "))
        })
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

    /// The Standard Webhooks specification's own test vectors.
    const V1: (&str, &str, i64, &str, &str) = (
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        r#"{"email":"test@example.com","username":"test_user"}"#,
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    );
    const V2: (&str, &str, i64, &str, &str) = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        r#"{"test": 2432232314}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    );

    #[test]
    fn signs_the_standard_webhooks_test_vectors() {
        for (secret, id, ts, body, sig) in [V1, V2] {
            assert_eq!(sign(&secret_key(secret).unwrap(), id, ts, body.as_bytes()), sig);
            let ts_s = ts.to_string();
            assert_eq!(
                verify(secret, Some(id), Some(&ts_s), Some(sig), body.as_bytes(), ts),
                Ok(())
            );
        }
    }

    #[test]
    fn refuses_what_must_not_verify() {
        let (secret, id, ts, body, _) = V1;
        let ts_s = ts.to_string();
        let v = |sig: Option<&str>, ts: Option<&str>, now: i64| {
            verify(secret, Some(id), ts, sig, body.as_bytes(), now)
        };
        assert_eq!(
            v(Some("v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU="), Some(&ts_s), ts),
            Err(VerifyError::Signature)
        );
        assert_eq!(v(Some("v1,"), Some(&ts_s), ts), Err(VerifyError::Signature));
        assert_eq!(v(Some(V1.4), Some(&ts_s), ts + 301), Err(VerifyError::Timestamp));
        assert_eq!(v(Some(V1.4), Some(&ts_s), ts - 301), Err(VerifyError::Timestamp));
        assert_eq!(v(None, Some(&ts_s), ts), Err(VerifyError::MissingHeader));
        assert_eq!(v(Some(V1.4), None, ts), Err(VerifyError::MissingHeader));
        assert_eq!(
            verify(secret, None, Some(&ts_s), Some(V1.4), body.as_bytes(), ts),
            Err(VerifyError::MissingHeader)
        );
        // Two signatures (secret rotation): either may match.
        let both = format!("v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU= {}", V1.4);
        assert_eq!(v(Some(&both), Some(&ts_s), ts), Ok(()));
    }

    #[test]
    fn secrets_are_32_random_bytes() {
        let s = generate_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        assert_ne!(generate_secret(), s);
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
