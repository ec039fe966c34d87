//! Whom a request acts for. A tenant's key always acts for its tenant; a platform key acts
//! at platform level, or for the tenant it names (`tenant_id` in the body of a POST, the
//! query of anything else). A record of another owner answers 404, never 403: that would
//! confirm another tenant's id exists.

use switchyard_shared::{store::Store, tenants::Owner};

use super::Principal;
use crate::problem::ApiError;

pub(crate) fn no_such_tenant() -> ApiError {
    ApiError::not_found("no such tenant")
}

impl Principal {
    /// The owner this request acts for, given the `tenant_id` it names (if any).
    pub(crate) async fn acting_for(
        &self,
        store: &Store,
        named: Option<&str>,
    ) -> Result<Owner, ApiError> {
        match (&self.owner, named) {
            (owner, None) => Ok(owner.clone()),
            (Owner::Tenant(own), Some(name)) if own.as_str() == name => Ok(self.owner.clone()),
            (Owner::Tenant(_), Some(_)) => Err(no_such_tenant()),
            (Owner::Platform, Some(name)) => match store.tenant(name).await? {
                Some(t) if t.deleted_at.is_none() => Ok(Owner::Tenant(t.id)),
                _ => Err(no_such_tenant()),
            },
        }
    }
}

/// `Ok(row)` when the record belongs to `acting`, else the record's 404.
pub(crate) fn owned<T>(
    row: Option<T>,
    owner_of: impl Fn(&T) -> &Owner,
    acting: &Owner,
    missing: &'static str,
) -> Result<T, ApiError> {
    row.filter(|r| owner_of(r) == acting).ok_or_else(|| ApiError::not_found(missing))
}
