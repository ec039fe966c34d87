//! Tenants: one customer's keys, endpoints, events, deliveries, usage and Sikka practices.
//! A record either belongs to a tenant or to the platform (Switchyard's operator and its own
//! `pidms.*`/`sikka.*` events); [`Owner`] says which, and every tenant-owned query filters
//! on it, so one tenant never sees another's records.

mod store;

use std::fmt;

pub use self::store::{NewTenant, TenantPatch, TenantRow};
use crate::ids::TenantId;

crate::text_enum! {
    /// Where a tenant stands (`tenants.status`): active → deleted (soft; its keys stop
    /// working and its endpoints stop receiving).
    pub enum TenantStatus {
        Active = "active",
        Deleted = "deleted",
    }
}

/// Whose a record is. Stored as the tenant id, or `''` for the platform: one equality in
/// SQL on both backends (NULL would need `IS NOT DISTINCT FROM` on one and `IS` on the
/// other).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Owner {
    #[default]
    Platform,
    Tenant(TenantId),
}

impl Owner {
    /// The stored form.
    pub fn as_column(&self) -> &str {
        match self {
            Self::Platform => "",
            Self::Tenant(id) => id.as_str(),
        }
    }

    pub fn from_column(s: String) -> Self {
        if s.is_empty() { Self::Platform } else { Self::Tenant(TenantId::from(s)) }
    }

    pub fn tenant_id(&self) -> Option<&TenantId> {
        match self {
            Self::Platform => None,
            Self::Tenant(id) => Some(id),
        }
    }

    pub fn is_platform(&self) -> bool {
        matches!(self, Self::Platform)
    }
}

impl From<Option<TenantId>> for Owner {
    fn from(id: Option<TenantId>) -> Self {
        id.map_or(Self::Platform, Self::Tenant)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Platform => f.write_str("platform"),
            Self::Tenant(id) => f.write_str(id),
        }
    }
}

// Stored through a `String` (one allocation per bind, beside a round trip to the store).
crate::string_column!(Owner, |v| &v.as_column().to_owned(), |s| Owner::from_column(s));

/// Whether a name is acceptable: 1–200 characters, no control characters.
pub fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=200).contains(&n) && !name.chars().any(char::is_control) && !name.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_is_stored_as_the_empty_string() {
        assert_eq!(Owner::Platform.as_column(), "");
        assert_eq!(Owner::from_column(String::new()), Owner::Platform);
        let t = Owner::Tenant(TenantId::from("tn_1"));
        assert_eq!(Owner::from_column(t.as_column().to_owned()), t);
        assert_eq!(t.tenant_id().map(|t| t.as_str()), Some("tn_1"));
        assert!(valid_name("Acme Dental"));
        assert!(!valid_name("  "));
        assert!(!valid_name("a\u{7}b"));
        assert!(!valid_name(&"x".repeat(201)));
    }
}
