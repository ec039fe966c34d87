//! `Idempotency-Key` for POST routes that enqueue work, as one middleware routes opt into
//! (`scope_transform!(… , idempotent)`).
//!
//! The first response (status and body) is stored for 24 h keyed by (API key, idempotency
//! key) with a fingerprint of the request. A repeat with the same request gets that response
//! again (`Idempotent-Replayed: true`) and enqueues nothing; the same key with a different
//! request → 422; while the first is still running → 409. Server errors and 429s are not
//! stored, so the client can retry them with the same key.

use chrono::Utc;
use poem::{
    Body, Endpoint, IntoResponse, Middleware, Request, Response,
    http::{HeaderValue, StatusCode, header},
};
use switchyard_shared::{
    access::digest_hex,
    services::Services,
    store::{Claim, StoredResponse},
};

use super::Principal;
use crate::{
    edge::{error_response, problem_response},
    problem::{ApiError, Problem},
};

pub const HEADER: &str = "idempotency-key";
const TTL: chrono::Duration = chrono::Duration::hours(24);

pub struct Idempotent;

impl<E: Endpoint> Middleware<E> for Idempotent {
    type Output = IdempotentEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        IdempotentEndpoint { inner }
    }
}

pub struct IdempotentEndpoint<E> {
    inner: E,
}

fn problem(status: StatusCode, slug: &str, detail: &str) -> Response {
    problem_response(&Problem::new(status, slug, detail))
}

impl<E: Endpoint> Endpoint for IdempotentEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let Some(raw) = req.headers().get(HEADER) else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        let key = match raw.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => {
                k.to_owned()
            }
            _ => {
                return Ok(problem(
                    StatusCode::BAD_REQUEST,
                    "bad-idempotency-key",
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ));
            }
        };
        let (Some(principal), Some(services)) =
            (req.extensions().get::<Principal>().cloned(), req.data::<Services>().cloned())
        else {
            return Ok(problem(StatusCode::UNAUTHORIZED, "unauthorized", "missing API key"));
        };
        // The body was size-limited at the edge; it is read here to fingerprint the request.
        let body = req.take_body().into_bytes().await.map_err(poem::Error::from)?;
        let mut fingerprint = format!("{} {}\n", req.method(), req.uri().path()).into_bytes();
        fingerprint.extend_from_slice(&body);
        let hash = digest_hex(&String::from_utf8_lossy(&fingerprint));
        req.set_body(Body::from_bytes(body));

        let store = &services.store;
        let claim = store.claim_idempotency(&principal.key_id, &key, &hash, Utc::now(), TTL).await;
        match claim {
            Err(e) => Ok(ApiError::from(e).into_response()),
            Ok(Claim::Replay(stored)) => Ok(replay(stored)),
            Ok(Claim::Mismatch) => Ok(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "this Idempotency-Key was used with a different request; use a new key",
            )),
            Ok(Claim::InProgress) => Ok(problem(
                StatusCode::CONFLICT,
                "idempotency-key-in-progress",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )),
            Ok(Claim::Execute) => {
                let mut resp = match self.inner.call(req).await {
                    Ok(out) => out.into_response(),
                    Err(err) => error_response(err),
                };
                let status = resp.status();
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    if let Err(e) = store.release_idempotency(&principal.key_id, &key).await {
                        tracing::warn!(error = %e, "could not release an idempotency key");
                    }
                    return Ok(resp);
                }
                let bytes = resp.take_body().into_bytes().await.map_err(poem::Error::from)?;
                let stored = StoredResponse {
                    status: status.as_u16(),
                    content_type: resp
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                };
                if let Err(e) = store.complete_idempotency(&principal.key_id, &key, &stored).await {
                    tracing::warn!(error = %e, "could not store an idempotent response");
                }
                resp.set_body(bytes);
                Ok(resp)
            }
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK))
        .header("idempotent-replayed", "true")
        .body(stored.body);
    if let Some(ct) = stored.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}
