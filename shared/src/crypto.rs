//! Secrets at rest (webhook secrets, Sikka tokens): XChaCha20-Poly1305 under one master key.
//!
//! A sealed value is `v1:` + base64(24-byte random nonce ‖ ciphertext ‖ tag). Each value is
//! bound to a context (e.g. `webhook-secret:<endpoint id>`) as associated data, so a sealed
//! value copied onto another row does not open there.

use std::path::Path;

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};

use crate::{
    config::{Config, StoreKind},
    secret::Secret,
};

const PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("SWITCHYARD_MASTER_KEY: {0}")]
    BadKey(String),
    #[error(
        "SWITCHYARD_MASTER_KEY (or SWITCHYARD_MASTER_KEY_FILE): required with a PostgreSQL store \
         (every process must share it); generate one with `openssl rand -base64 32`"
    )]
    MissingKey,
    #[error("master key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("a sealed secret cannot be opened (wrong master key, or tampered)")]
    Open,
}

/// Seals and opens secrets with the master key.
pub struct Cipher {
    aead: XChaCha20Poly1305,
    /// Derived from the master key; keys [`Cipher::digest`].
    lookup: [u8; 32],
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    pub fn from_key(key: &[u8]) -> Result<Self, CryptoError> {
        let aead = XChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| CryptoError::BadKey("must be 32 bytes, base64-encoded".into()))?;
        let lookup = hmac_sha256(key, b"switchyard lookup digest v1");
        Ok(Self { aead, lookup })
    }

    /// The key from `SWITCHYARD_MASTER_KEY`; else from `SWITCHYARD_MASTER_KEY_FILE` (created
    /// by the first process if missing); else, on the embedded store, the key in
    /// `<data dir>/master.key` (created on first start, mode 0600).
    pub fn load(config: &Config) -> Result<Self, CryptoError> {
        if let Some(key) = &config.master_key {
            let bytes = STANDARD
                .decode(key.expose().trim())
                .map_err(|_| CryptoError::BadKey("is not valid base64".into()))?;
            return Self::from_key(&bytes);
        }
        if let Some(path) = &config.master_key_file {
            return Self::from_key(&load_or_create_key_file(path)?);
        }
        if config.store_kind() == StoreKind::Postgres {
            return Err(CryptoError::MissingKey);
        }
        Self::from_key(&load_or_create_key_file(&config.data_dir.join("master.key"))?)
    }

    /// A stable, keyed digest of `value` (hex HMAC-SHA256 under a key derived from the master
    /// key): lets a sealed value be looked up without storing it in clear, and cannot be
    /// reversed by trying every short value without the master key.
    pub fn digest(&self, context: &str, value: &str) -> String {
        let mut input = Vec::with_capacity(context.len() + 1 + value.len());
        input.extend_from_slice(context.as_bytes());
        input.push(0);
        input.extend_from_slice(value.as_bytes());
        hmac_sha256(&self.lookup, &input).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Seals `plaintext` for `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the OS random number generator is available");
        let nonce = XNonce::from(nonce);
        let sealed = self
            .aead
            .encrypt(&nonce, Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Opens a value sealed for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Secret<Vec<u8>>, CryptoError> {
        let raw = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Open)?;
        let bytes = STANDARD.decode(raw).map_err(|_| CryptoError::Open)?;
        if bytes.len() < 24 + 16 {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| CryptoError::Open)?;
        let plain = self
            .aead
            .decrypt(&nonce, Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| CryptoError::Open)?;
        Ok(Secret::new(plain))
    }

    pub fn open_string(&self, context: &str, sealed: &str) -> Result<Secret<String>, CryptoError> {
        let bytes = self.open(context, sealed)?;
        String::from_utf8(bytes.expose().clone()).map(Secret::new).map_err(|_| CryptoError::Open)
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit as _, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn load_or_create_key_file(path: &Path) -> Result<Vec<u8>, CryptoError> {
    let io = |source| CryptoError::KeyFile { path: path.display().to_string(), source };
    let read = || -> Result<Vec<u8>, CryptoError> {
        let text = std::fs::read_to_string(path).map_err(io)?;
        STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadKey(format!("{} is not valid base64", path.display())))
    };
    if path.exists() {
        return read();
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Processes started together (`api` and `worker` on a fresh data dir) race here: each
    // writes a whole key to its own file, then links it into place. The link either
    // succeeds or finds the winner's complete file, so no one reads a half-written key.
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random number generator is available");
    let tmp = path.with_extension(format!("key.{}.{}", std::process::id(), ulid::Ulid::generate()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        use std::io::Write;
        let mut file = options.open(&tmp)?;
        writeln!(file, "{}", STANDARD.encode(key))?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a master key for secrets at rest");
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(),
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_bind_the_context() {
        let cipher = Cipher::from_key(&[7u8; 32]).unwrap();
        let sealed = cipher.seal("webhook-secret:ep1", b"whsec_abc");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(cipher.open("webhook-secret:ep1", &sealed).unwrap().expose(), b"whsec_abc");
        assert!(cipher.open("webhook-secret:ep2", &sealed).is_err(), "bound to its row");
        assert_ne!(cipher.seal("c", b"x"), cipher.seal("c", b"x"), "fresh nonce each time");
        let other = Cipher::from_key(&[8u8; 32]).unwrap();
        assert!(other.open("webhook-secret:ep1", &sealed).is_err());
        let mut tampered = sealed;
        tampered.pop();
        tampered.push('A');
        assert!(cipher.open("webhook-secret:ep1", &tampered).is_err());
        assert!(Cipher::from_key(&[1u8; 16]).is_err());
    }

    #[test]
    fn a_master_key_file_is_created_once_and_serves_postgres() {
        let dir = std::env::temp_dir().join(format!("sy-crypto-{}", ulid::Ulid::generate()));
        let path = dir.join("secrets").join("master.key");
        let mut config = Config {
            database_url: Some(Secret::new("postgres://x@127.0.0.1/db".to_owned())),
            ..Config::default()
        };
        assert!(matches!(Cipher::load(&config), Err(CryptoError::MissingKey)));
        config.master_key_file = Some(path.clone());
        let first = Cipher::load(&config).unwrap();
        let second = Cipher::load(&config).unwrap();
        assert!(path.is_file());
        let sealed = first.seal("c", b"shared");
        assert_eq!(second.open("c", &sealed).unwrap().expose(), b"shared", "one key for all");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn digests_are_stable_keyed_and_bound_to_their_context() {
        let a = Cipher::from_key(&[7u8; 32]).unwrap();
        let b = Cipher::from_key(&[8u8; 32]).unwrap();
        assert_eq!(a.digest("office", "D1001"), a.digest("office", "D1001"));
        assert_eq!(a.digest("office", "D1001").len(), 64);
        assert_ne!(a.digest("office", "D1001"), b.digest("office", "D1001"), "keyed");
        assert_ne!(a.digest("office", "D1001"), a.digest("other", "D1001"));
        assert_ne!(a.digest("office", "D1001"), a.digest("office", "D1002"));
    }

    #[test]
    fn the_key_file_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("sy-crypto-{}", ulid::Ulid::generate()));
        let path = dir.join("master.key");
        let first = load_or_create_key_file(&path).unwrap();
        let second = load_or_create_key_file(&path).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn racing_starts_agree_on_one_complete_key() {
        let dir = std::env::temp_dir().join(format!("sy-crypto-{}", ulid::Ulid::generate()));
        let path = dir.join("master.key");
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..8).map(|_| s.spawn(|| load_or_create_key_file(&path).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k.len() == 32 && k == &keys[0]), "one key for all");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary files left behind");
        let _ = std::fs::remove_dir_all(dir);
    }
}
