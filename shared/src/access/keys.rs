//! API keys: the `sy_live_…`/`sy_test_…` format with an offline checksum, hashing, scopes.
//!
//! A key is `sy_<env>_` + 32 base62 characters from the OS CSPRNG (≈190 bits) + a 6-character
//! base62 CRC-32 of everything before it, as GitHub's token format does: a typo or a stray
//! string is recognised without a store lookup, and a leaked key is recognisable by scanners.
//! Only the SHA-256 digest is stored; see ARCHITECTURE.md for why not a slow hash.

use std::{fmt, str::FromStr};

use sha2::{Digest, Sha256};

use crate::secret::Secret;

const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters of a key shown in listings and logs: the prefix and four more.
pub const DISPLAY_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Self::Live => "sy_live_",
            Self::Test => "sy_test_",
        }
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Self::Live),
            "test" => Ok(Self::Test),
            other => Err(format!("expected live or test, got {other:?}")),
        }
    }
}

/// Why a string is not a well-formed key (decided offline, without the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("an API key starts with sy_live_ or sy_test_")]
    Prefix,
    #[error("an API key has {} characters after its prefix", RANDOM_LEN + CHECKSUM_LEN)]
    Length,
    #[error("an API key uses only letters and digits after its prefix")]
    Charset,
    #[error("the API key's checksum does not match: it is mistyped or truncated")]
    Checksum,
}

/// A raw key, as given to its owner once. Never printed by `Debug`.
#[derive(Clone)]
pub struct RawKey(Secret<String>);

impl fmt::Debug for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawKey({}…)", self.display_prefix())
    }
}

impl RawKey {
    /// A new random key from the OS CSPRNG.
    pub fn generate(env: Environment) -> Self {
        let mut body = String::with_capacity(RANDOM_LEN);
        let mut buf = [0u8; 64];
        while body.len() < RANDOM_LEN {
            getrandom::fill(&mut buf).expect("the OS random number generator is available");
            // Rejection sampling keeps every character equally likely.
            for b in buf.iter().filter(|b| **b < 248) {
                if body.len() == RANDOM_LEN {
                    break;
                }
                body.push(BASE62[(*b % 62) as usize] as char);
            }
        }
        let head = format!("{}{body}", env.prefix());
        let key = format!("{head}{}", checksum(&head));
        Self(Secret::new(key))
    }

    /// Checks prefix, length, characters and checksum; no store involved.
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        check_format(s)?;
        Ok(Self(Secret::new(s.to_owned())))
    }

    pub fn environment(&self) -> Environment {
        if self.0.expose().starts_with("sy_live_") { Environment::Live } else { Environment::Test }
    }

    /// The part shown in listings: `sy_live_Ab3x`.
    pub fn display_prefix(&self) -> &str {
        &self.0.expose()[..DISPLAY_LEN]
    }

    /// The stored form: lowercase hex SHA-256.
    pub fn digest(&self) -> String {
        digest_hex(self.0.expose())
    }

    /// The raw key, for the one response that shows it to its owner.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// Checks a presented key without keeping it (the request path: no allocation); returns its
/// environment.
pub fn check_format(s: &str) -> Result<Environment, KeyFormatError> {
    let env = if s.starts_with("sy_live_") {
        Environment::Live
    } else if s.starts_with("sy_test_") {
        Environment::Test
    } else {
        return Err(KeyFormatError::Prefix);
    };
    let rest = &s[env.prefix().len()..];
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN {
        return Err(KeyFormatError::Length);
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyFormatError::Charset);
    }
    let (head, sum) = s.split_at(s.len() - CHECKSUM_LEN);
    if checksum_bytes(head) != sum.as_bytes() {
        return Err(KeyFormatError::Checksum);
    }
    Ok(env)
}

/// The SHA-256 digest of a key, as bytes (for in-memory lookups).
pub fn digest_bytes(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The stored form of a digest: lowercase hex.
pub fn hex(digest: &[u8]) -> String {
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        out.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    out
}

pub fn digest_hex(s: &str) -> String {
    hex(&digest_bytes(s))
}

fn checksum_bytes(head: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = u64::from(crc32(head.as_bytes()));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

fn checksum(head: &str) -> String {
    String::from_utf8(checksum_bytes(head).to_vec()).expect("base62 is ASCII")
}

/// CRC-32 (IEEE 802.3) lookup table, built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3), checked on every request before any store lookup.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// What a key may do. `admin` implies every scope; `<area>:write` implies `<area>:read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Admin,
    KeysManage,
    WebhooksRead,
    WebhooksWrite,
    EventsPublish,
    PidmsRead,
    PidmsWrite,
    SikkaRead,
    SikkaWrite,
    JobsRead,
    JobsWrite,
    UsageRead,
    /// Tenants: create, change, delete. Only platform keys (keys without a tenant) hold it.
    TenantsManage,
    /// The audit log (a tenant's key: its tenant's entries).
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 14] = [
        Scope::Admin,
        Scope::KeysManage,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::EventsPublish,
        Scope::PidmsRead,
        Scope::PidmsWrite,
        Scope::SikkaRead,
        Scope::SikkaWrite,
        Scope::JobsRead,
        Scope::JobsWrite,
        Scope::UsageRead,
        Scope::TenantsManage,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::KeysManage => "keys:manage",
            Self::WebhooksRead => "webhooks:read",
            Self::WebhooksWrite => "webhooks:write",
            Self::EventsPublish => "events:publish",
            Self::PidmsRead => "pidms:read",
            Self::PidmsWrite => "pidms:write",
            Self::SikkaRead => "sikka:read",
            Self::SikkaWrite => "sikka:write",
            Self::JobsRead => "jobs:read",
            Self::JobsWrite => "jobs:write",
            Self::UsageRead => "usage:read",
            Self::TenantsManage => "tenants:manage",
            Self::AuditRead => "audit:read",
        }
    }

    /// Scopes over what belongs to no tenant (queues, the PIDMS inventory, Sikka, tenants
    /// themselves): a tenant's key never holds them, `admin` included.
    pub fn platform_only(self) -> bool {
        matches!(
            self,
            Self::TenantsManage
                | Self::JobsRead
                | Self::JobsWrite
                | Self::PidmsRead
                | Self::PidmsWrite
                | Self::SikkaRead
                | Self::SikkaWrite
        )
    }

    /// Whether holding `self` grants `needed`.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed
            || self == Scope::Admin
            || matches!(
                (self, needed),
                (Scope::WebhooksWrite, Scope::WebhooksRead)
                    | (Scope::PidmsWrite, Scope::PidmsRead)
                    | (Scope::SikkaWrite, Scope::SikkaRead)
                    | (Scope::JobsWrite, Scope::JobsRead)
            )
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}"))
    }
}

/// Scopes as stored: space-separated, sorted, no duplicates.
pub fn scopes_to_text(scopes: &[Scope]) -> String {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

/// The inverse of [`scopes_to_text`]; unknown words (from a newer version) are skipped.
pub fn scopes_from_text(text: &str) -> Vec<Scope> {
    text.split_whitespace().filter_map(|s| s.parse().ok()).collect()
}

/// Whether a set of scopes grants `needed`.
pub fn grants(held: &[Scope], needed: Scope) -> bool {
    held.iter().any(|s| s.grants(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_carry_their_environment() {
        for env in [Environment::Live, Environment::Test] {
            let key = RawKey::generate(env);
            assert_eq!(key.expose().len(), 8 + 32 + 6);
            let parsed = RawKey::parse(key.expose()).unwrap();
            assert_eq!(parsed.environment(), env);
            assert_eq!(parsed.digest(), key.digest());
            assert_eq!(key.digest().len(), 64);
            assert!(key.display_prefix().starts_with(env.prefix()));
            assert!(!format!("{key:?}").contains(&key.expose()[DISPLAY_LEN..]));
        }
        assert_ne!(
            RawKey::generate(Environment::Live).expose(),
            RawKey::generate(Environment::Live).expose()
        );
    }

    #[test]
    fn every_one_character_typo_is_caught_offline() {
        let key = RawKey::generate(Environment::Live);
        let s = key.expose();
        let mut caught = 0;
        let mut tried = 0;
        for i in 8..s.len() {
            for &c in BASE62 {
                if c == s.as_bytes()[i] {
                    continue;
                }
                let mut typo = s.as_bytes().to_vec();
                typo[i] = c;
                tried += 1;
                if RawKey::parse(std::str::from_utf8(&typo).unwrap()).err()
                    == Some(KeyFormatError::Checksum)
                {
                    caught += 1;
                }
            }
        }
        assert_eq!(caught, tried, "CRC-32 catches every single-character substitution");
        assert_eq!(RawKey::parse(&s[..s.len() - 1]).unwrap_err(), KeyFormatError::Length);
        assert_eq!(RawKey::parse("ghp_abc").unwrap_err(), KeyFormatError::Prefix);
        let bad_char = format!("{}-{}", &s[..20], &s[21..]);
        assert_eq!(RawKey::parse(&bad_char).unwrap_err(), KeyFormatError::Charset);
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn admin_and_write_imply() {
        assert!(grants(&[Scope::Admin], Scope::KeysManage));
        assert!(grants(&[Scope::WebhooksWrite], Scope::WebhooksRead));
        assert!(!grants(&[Scope::WebhooksRead], Scope::WebhooksWrite));
        assert!(!grants(&[Scope::PidmsWrite], Scope::SikkaRead));
        let text = scopes_to_text(&[Scope::PidmsRead, Scope::Admin, Scope::PidmsRead]);
        assert_eq!(text, "admin pidms:read");
        assert_eq!(scopes_from_text(&text), vec![Scope::Admin, Scope::PidmsRead]);
        assert_eq!("jobs:read".parse::<Scope>().unwrap(), Scope::JobsRead);
        assert!("jobs:delete".parse::<Scope>().is_err());
    }
}
