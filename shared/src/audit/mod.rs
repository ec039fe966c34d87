//! The audit log: who changed what, when, from where. An entry is written in the same
//! transaction as the change it records ([`crate::audited!`]), so no change exists without
//! its entry. It names fields, never their values: no secret, key or payload is in it.

mod store;

/// The audit log's columns, in the order every insert binds them.
pub(crate) use self::store::COLUMNS;
pub use self::store::{AuditFilter, AuditRow};
use crate::{ids::AuditId, tenants::Owner};

/// Who made a request and from where (the API edge fills it in).
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub key_id: Option<String>,
    pub key_prefix: Option<String>,
    pub tenant: Owner,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: AuditId,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: Actor,
    /// The owner of the record changed (the acting tenant, or the platform).
    pub tenant: Owner,
    /// `api_key.created`, `webhook.endpoint.updated`, …
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: Option<String>,
    /// `success` for a change; `refused` or `suspended` for security events.
    pub outcome: &'static str,
    /// The names of the fields a change set, space-separated.
    pub changed: String,
    /// A security event's summary in words; empty for a change.
    pub detail: String,
}

impl AuditEntry {
    pub fn new(
        actor: &Actor,
        tenant: &Owner,
        action: &'static str,
        target_type: &'static str,
    ) -> Self {
        Self {
            id: AuditId::generate(),
            at: chrono::Utc::now(),
            actor: actor.clone(),
            tenant: tenant.clone(),
            action,
            target_type,
            target_id: None,
            outcome: "success",
            changed: String::new(),
            detail: String::new(),
        }
    }

    pub fn target(mut self, id: impl Into<String>) -> Self {
        self.target_id = Some(id.into());
        self
    }

    /// The names of the fields set (those whose value is `true`).
    pub fn changed(mut self, fields: &[(&str, bool)]) -> Self {
        let names: Vec<&str> = fields.iter().filter(|(_, set)| *set).map(|(n, _)| *n).collect();
        self.changed = names.join(" ");
        self
    }

    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// Whether a store write changed something (and so gets its audit entry).
pub trait Changed {
    fn changed(&self) -> bool;
}

impl Changed for bool {
    fn changed(&self) -> bool {
        *self
    }
}

impl<T> Changed for Vec<T> {
    fn changed(&self) -> bool {
        !self.is_empty()
    }
}

impl<T> Changed for Option<T> {
    fn changed(&self) -> bool {
        self.is_some()
    }
}
