//! `SWITCHYARD_BOOTSTRAP_ADMIN_KEY`: a key given in the environment becomes an active admin
//! key at start, for automation and compose files.

use switchyard_shared::{access::RawKey, services::Services, store::StoreError};

pub async fn bootstrap_admin_key(services: &Services) -> Result<(), StoreError> {
    let Some(raw) = &services.config.bootstrap_admin_key else { return Ok(()) };
    // Validated at start (Config::validate); a parse failure here would be a bug.
    let Ok(key) = RawKey::parse(raw.expose()) else { return Ok(()) };
    let id = services
        .store
        .ensure_admin_key(
            &key.digest(),
            key.display_prefix(),
            key.environment().as_str(),
            chrono::Utc::now(),
        )
        .await?;
    tracing::info!(key_id = %id, prefix = key.display_prefix(), "bootstrap admin key in place");
    Ok(())
}
