//! Request keys per practice: obtained on first use, refreshed ahead of expiry (schedule) or
//! after Sikka says `API1025`, **single-flight per practice across the fleet**.
//!
//! Sikka's refresh keys rotate: a refresh spends the old one, so two concurrent refreshes of
//! one practice would leave one of them with a dead key. Callers in one process queue on a
//! per-practice mutex; processes take a lock row in the store (a conditional update with an
//! expiry, so a process that dies holding it only delays the next refresh). Whoever gets the
//! lock first re-reads the practice: if the key moved on while it waited (`key_version`),
//! the refresh already happened and it uses the new key.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use switchyard_shared::{
    crypto::CryptoError,
    secret::Secret,
    services::Services,
    sikka::{NewTokens, SikkaPractice, TokenStatus, practice_context},
    store::StoreError,
    telemetry,
    webhooks::events::{self, Audience},
};

use super::client::{IssuedKey, SikkaClient, SikkaError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("no Sikka practice {0}")]
    UnknownPractice(String),
    #[error("the practice must authorize the app again: {0}")]
    ReauthorizationRequired(String),
    #[error(transparent)]
    Sikka(#[from] SikkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl TokenError {
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Sikka(e) => e.is_transient(),
            Self::Store(_) => true,
            _ => false,
        }
    }
}

/// A request key in hand and the version it is.
pub(crate) struct Session {
    pub key: Secret<String>,
    pub version: i64,
}

/// Why a refresh is wanted: it happens only while this still holds for the stored practice.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// No key, or it expires within the margin.
    Usable,
    /// The key of this version was refused.
    Replace(i64),
    /// The key expires before this (the schedule's look-ahead).
    ExpiresBefore(chrono::DateTime<Utc>),
}

/// Refreshing a key never takes longer than this; a lock older than it is taken over.
const LOCK_TTL: Duration = Duration::from_secs(60);
/// A key with less than this left is refreshed before use.
const MARGIN: chrono::Duration = chrono::Duration::seconds(60);
/// How often a caller waiting on another process's refresh looks again.
const WAIT_STEP: Duration = Duration::from_millis(50);

pub(crate) struct Tokens {
    services: Services,
    client: Arc<SikkaClient>,
    /// This process, as the owner of store locks.
    owner: String,
    local: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Need {
    fn holds(self, p: &SikkaPractice) -> bool {
        let now = Utc::now();
        match self {
            Need::Usable => {
                p.request_key_sealed.is_none() || p.key_expires_at.is_none_or(|t| t - MARGIN < now)
            }
            Need::Replace(version) => p.key_version == version,
            Need::ExpiresBefore(t) => {
                p.token_status == TokenStatus::Active && p.key_expires_at.is_some_and(|e| e < t)
            }
        }
    }
}

impl Tokens {
    pub(crate) fn new(services: Services, client: Arc<SikkaClient>) -> Self {
        Self {
            services,
            client,
            owner: format!("worker-{}-{}", std::process::id(), ulid::Ulid::generate()),
            local: Mutex::new(HashMap::new()),
        }
    }

    async fn practice(&self, id: &str) -> Result<SikkaPractice, TokenError> {
        self.services
            .store
            .sikka_practice(id)
            .await?
            .ok_or_else(|| TokenError::UnknownPractice(id.to_owned()))
    }

    fn session_of(&self, p: &SikkaPractice) -> Result<Session, TokenError> {
        if p.token_status == TokenStatus::ReauthorizationRequired {
            return Err(TokenError::ReauthorizationRequired(
                p.token_error.clone().unwrap_or_else(|| "access withdrawn".into()),
            ));
        }
        let sealed = p.request_key_sealed.as_deref().ok_or_else(|| {
            TokenError::ReauthorizationRequired("the practice has no request key".into())
        })?;
        let key =
            self.services.cipher.open_string(&practice_context("request-key", &p.id), sealed)?;
        Ok(Session { key, version: p.key_version })
    }

    /// A key to call Sikka with for this practice (refreshed first when missing or about to
    /// expire).
    pub(crate) async fn session(&self, practice_id: &str) -> Result<Session, TokenError> {
        let p = self.practice(practice_id).await?;
        if p.token_status != TokenStatus::ReauthorizationRequired && Need::Usable.holds(&p) {
            return self.refresh(practice_id, Need::Usable).await;
        }
        self.session_of(&p)
    }

    /// The key of `version` was refused as expired: a new one, refreshed once however many
    /// callers ask at the same time.
    pub(crate) async fn replace(
        &self,
        practice_id: &str,
        version: i64,
    ) -> Result<Session, TokenError> {
        self.refresh(practice_id, Need::Replace(version)).await
    }

    /// The schedule's refresh: only if the key still expires before `before`. `true` if it
    /// refreshed.
    pub(crate) async fn refresh_expiring(
        &self,
        practice_id: &str,
        before: chrono::DateTime<Utc>,
    ) -> Result<bool, TokenError> {
        let version = self.practice(practice_id).await?.key_version;
        let s = self.refresh(practice_id, Need::ExpiresBefore(before)).await?;
        Ok(s.version != version)
    }

    /// Calls `f` with a key; after `API1025` replaces the key and calls once more. A practice
    /// that withdrew access is marked and announced.
    pub(crate) async fn call<T, F, Fut>(&self, practice_id: &str, f: F) -> Result<T, TokenError>
    where
        F: Fn(Secret<String>) -> Fut,
        Fut: std::future::Future<Output = Result<T, SikkaError>>,
    {
        let session = self.session(practice_id).await?;
        let result = match f(session.key).await {
            Err(SikkaError::KeyExpired) => {
                tracing::info!(practice = practice_id, "Sikka request key expired; refreshing");
                let fresh = self.replace(practice_id, session.version).await?;
                f(fresh.key).await
            }
            other => other,
        };
        match result {
            Err(SikkaError::NotAuthorized { code, message }) => {
                let reason = format!("{code}: {message}");
                self.needs_reauthorization(practice_id, &reason).await?;
                Err(TokenError::ReauthorizationRequired(reason))
            }
            other => Ok(other?),
        }
    }

    fn local_lock(&self, practice_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.local.lock().unwrap().entry(practice_id.to_owned()).or_default())
    }

    async fn refresh(&self, practice_id: &str, need: Need) -> Result<Session, TokenError> {
        let local = self.local_lock(practice_id);
        let _one_here = local.lock().await;
        let store = &self.services.store;
        loop {
            let p = self.practice(practice_id).await?;
            if !need.holds(&p) || p.token_status == TokenStatus::ReauthorizationRequired {
                return self.session_of(&p);
            }
            let now = Utc::now();
            let until = now + chrono::Duration::from_std(LOCK_TTL).unwrap_or_default();
            if store.try_lock_sikka_refresh(practice_id, &self.owner, until, now).await? {
                // Someone may have finished a refresh between our read and our lock.
                let p = self.practice(practice_id).await?;
                let result =
                    if need.holds(&p) { self.obtain(&p).await } else { self.session_of(&p) };
                store.unlock_sikka_refresh(practice_id, &self.owner).await?;
                return result;
            }
            // Another process is refreshing this practice: wait for its result.
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// Under the lock: the refresh grant, falling back to a new key from the practice's
    /// secret; if that is refused too, the practice needs re-authorization.
    async fn obtain(&self, p: &SikkaPractice) -> Result<Session, TokenError> {
        let cipher = &self.services.cipher;
        if let Some(sealed) = &p.refresh_key_sealed {
            let refresh = cipher.open_string(&practice_context("refresh-key", &p.id), sealed)?;
            match self.client.refresh(refresh.expose()).await {
                Ok(issued) => {
                    metrics::counter!(telemetry::SIKKA_TOKEN_REFRESH, "outcome" => "refreshed")
                        .increment(1);
                    return self.keep(p, issued).await;
                }
                Err(e) if e.is_transient() => {
                    metrics::counter!(telemetry::SIKKA_TOKEN_REFRESH, "outcome" => "error")
                        .increment(1);
                    return Err(e.into());
                }
                Err(error) => {
                    metrics::counter!(telemetry::SIKKA_TOKEN_REFRESH, "outcome" => "refresh_refused").increment(1);
                    tracing::warn!(practice = %p.id, %error, "Sikka refused the refresh key; asking for a new key");
                }
            }
        }
        let office =
            cipher.open_string(&practice_context("office-id", &p.id), &p.office_id_sealed)?;
        let secret =
            cipher.open_string(&practice_context("secret-key", &p.id), &p.secret_key_sealed)?;
        match self.client.new_key(office.expose(), secret.expose()).await {
            Ok(issued) => {
                metrics::counter!(telemetry::SIKKA_TOKEN_REFRESH, "outcome" => "new_key")
                    .increment(1);
                self.keep(p, issued).await
            }
            Err(e) if e.is_transient() || matches!(e, SikkaError::NoCredentials) => {
                metrics::counter!(telemetry::SIKKA_TOKEN_REFRESH, "outcome" => "error")
                    .increment(1);
                Err(e.into())
            }
            Err(error) => {
                metrics::counter!(telemetry::SIKKA_TOKEN_REFRESH, "outcome" => "reauthorization_required").increment(1);
                let reason = error.to_string();
                self.needs_reauthorization(&p.id, &reason).await?;
                Err(TokenError::ReauthorizationRequired(reason))
            }
        }
    }

    async fn keep(&self, p: &SikkaPractice, issued: IssuedKey) -> Result<Session, TokenError> {
        let cipher = &self.services.cipher;
        let now = Utc::now();
        let request_key_sealed = cipher
            .seal(&practice_context("request-key", &p.id), issued.request_key.expose().as_bytes());
        let refresh_key_sealed = cipher
            .seal(&practice_context("refresh-key", &p.id), issued.refresh_key.expose().as_bytes());
        let expires_at = now + chrono::Duration::from_std(issued.lifetime).unwrap_or_default();
        let tokens = NewTokens {
            request_key_sealed: &request_key_sealed,
            refresh_key_sealed: &refresh_key_sealed,
            expires_at,
            now,
        };
        self.services.store.store_sikka_tokens(&p.id, &tokens).await?;
        tracing::info!(practice = %p.id, %expires_at, "Sikka request key obtained");
        Ok(Session { key: issued.request_key, version: p.key_version + 1 })
    }

    /// Marks the practice and publishes `sikka.reauthorization_required` once per change.
    async fn needs_reauthorization(
        &self,
        practice_id: &str,
        reason: &str,
    ) -> Result<(), TokenError> {
        let store = &self.services.store;
        if !store.mark_sikka_reauthorization(practice_id, reason, Utc::now()).await? {
            return Ok(());
        }
        tracing::warn!(practice = practice_id, reason, "Sikka practice needs re-authorization");
        let p = self.practice(practice_id).await?;
        let office = self
            .services
            .cipher
            .open_string(&practice_context("office-id", &p.id), &p.office_id_sealed)?;
        let data = serde_json::json!({
            "practice": p.id,
            "office_id": office.expose(),
            "practice_name": p.practice_name,
            "reason": reason,
        });
        if let Err(error) = events::publish(
            &self.services,
            &p.tenant_id,
            "sikka.reauthorization_required",
            &data,
            Some("system"),
            Audience::Subscribers,
        )
        .await
        {
            tracing::warn!(%error, "could not publish sikka.reauthorization_required");
        }
        Ok(())
    }
}
