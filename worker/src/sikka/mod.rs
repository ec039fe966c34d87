//! Sikka jobs: pulling the authorized practices, keeping their request keys fresh, and
//! writebacks (submit, then poll `writeback_status` until they end).

mod client;
mod tokens;
mod writebacks;

use std::sync::Arc;

use apalis::prelude::BoxDynError;
use chrono::Utc;
use switchyard_shared::{
    ids::PracticeId,
    services::Services,
    sikka::{PracticeUpsert, TokenStatus, practice_context},
    telemetry,
};

pub(crate) use self::writebacks::{poll, submit, sweep};
use self::{client::SikkaClient, tokens::Tokens};
use crate::handlers::Outcome;

/// What Sikka jobs share in a worker process: one client (and its view of the rate-limit
/// window) and one token manager (and its per-practice single flight).
pub(crate) struct Sikka {
    client: Arc<SikkaClient>,
    tokens: Tokens,
}

impl Sikka {
    pub(crate) fn new(services: &Services) -> Self {
        let client = Arc::new(SikkaClient::new(&services.config.sikka));
        let tokens = Tokens::new(services.clone(), Arc::clone(&client));
        Self { client, tokens }
    }
}

/// The `sikka_practices_pull` job: stores every practice `authorized_practices` lists (its
/// office id and secret sealed), and marks those no longer listed.
pub(crate) async fn pull_practices(
    services: &Services,
    sikka: &Sikka,
) -> Result<Outcome, BoxDynError> {
    let started = Utc::now();
    let items = sikka.client.authorized_practices().await?;
    let (store, cipher) = (&services.store, &services.cipher);
    for item in &items {
        let digest = cipher.digest("sikka-office", item.office_id.expose());
        // Sealed values are bound to their row: seal for the row that holds the digest.
        for _ in 0..3 {
            let id = match store.sikka_practice_by_digest(&digest).await? {
                Some(p) => p.id,
                None => PracticeId::generate(),
            };
            let office = cipher
                .seal(&practice_context("office-id", &id), item.office_id.expose().as_bytes());
            let secret = cipher
                .seal(&practice_context("secret-key", &id), item.secret_key.expose().as_bytes());
            let row = PracticeUpsert {
                id: &id,
                office_digest: &digest,
                office_id_sealed: &office,
                secret_key_sealed: &secret,
                practice_id: item.practice_id.as_deref(),
                practice_name: item.practice_name.as_deref(),
                practice_management_system: item.practice_management_system.as_deref(),
                domain: item.domain.as_deref(),
                now: started,
            };
            if store.upsert_sikka_practice(&row).await? {
                break;
            }
        }
    }
    let unlisted = store.unlist_sikka_practices(started).await?;
    tracing::info!(practices = items.len(), unlisted, "Sikka practices pulled");
    Ok(Outcome::Success)
}

/// The `sikka-token-refresh` job: refreshes every key that expires within the look-ahead,
/// and exports the least time left.
pub(crate) async fn refresh_tokens(
    services: &Services,
    sikka: &Sikka,
) -> Result<Outcome, BoxDynError> {
    let ahead = chrono::Duration::seconds(services.config.sikka.refresh_ahead_secs as i64);
    let before = Utc::now() + ahead;
    let (mut refreshed, mut failed) = (0, 0);
    for id in services.store.sikka_practices_expiring(before).await? {
        match sikka.tokens.refresh_expiring(&id, before).await {
            Ok(true) => refreshed += 1,
            Ok(false) => {}
            Err(error) => {
                failed += 1;
                tracing::warn!(practice = %id, %error, "Sikka token refresh failed");
            }
        }
    }
    export_token_expiry(services).await?;
    tracing::info!(refreshed, failed, "Sikka token refresh done");
    Ok(Outcome::Success)
}

/// `switchyard_sikka_token_expiry_seconds`: the least time left on an active key.
async fn export_token_expiry(services: &Services) -> Result<(), BoxDynError> {
    let now = Utc::now();
    let least = services
        .store
        .list_sikka_practices()
        .await?
        .iter()
        .filter(|p| p.token_status == TokenStatus::Active && p.authorized)
        .filter_map(|p| p.key_expires_at)
        .map(|t| (t - now).num_seconds())
        .min();
    // With no active key nothing expires: +Inf, so a value left over from a practice that
    // has since gone (or lost its key) cannot keep the expiry alert firing.
    let value = least.map_or(f64::INFINITY, |secs| secs as f64);
    metrics::gauge!(telemetry::SIKKA_TOKEN_EXPIRY).set(value);
    Ok(())
}
