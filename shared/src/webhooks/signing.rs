//! Standard Webhooks signing: secrets, the `webhook-signature` header, verification.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
