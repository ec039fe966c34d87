//! The edge every request passes: a request id (in logs and `X-Request-Id`), the body size
//! limit, HTTP metrics by route template, and any error turned into problem+json.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Instant,
};

use poem::{
    Body, Endpoint, IntoResponse, PathPattern, Request, Response,
    http::{HeaderValue, StatusCode, header},
};
use switchyard_shared::telemetry;
use tracing::Instrument;

use crate::problem::{PROBLEM_JSON, Problem};

pub const REQUEST_ID: &str = "x-request-id";

/// The request id of the request being handled, for handlers that want to log it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Incoming ids are reused when they look like ids (so a caller can correlate), else a
/// fresh ULID is used.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| ulid::Ulid::generate().to_string(), str::to_owned)
}

/// A problem+json response for a status, without going through an operation.
pub fn problem_response(problem: &Problem) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type(PROBLEM_JSON)
        .body(problem.to_json_bytes())
}

pub(crate) fn slug_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        s if s.is_client_error() => "bad-request",
        _ => "internal",
    }
}

/// Turns an error into problem+json. Operation errors (`ApiError`) already are; anything
/// else (no route, bad JSON, wrong content type, a panic) is wrapped here. Server errors keep
/// their cause in the log, never in the body.
pub(crate) fn error_response(err: poem::Error) -> Response {
    let status = err.status();
    let pattern = err.data::<PathPattern>().cloned();
    let message = err.to_string();
    let is_route_miss = err.is::<poem::error::NotFoundError>();
    let mut resp = err.into_response();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if !is_problem {
        let detail = if status.is_server_error() {
            tracing::error!(error = %message, "unhandled error");
            "an internal error occurred; it has been logged".to_owned()
        } else if is_route_miss {
            "no such route".to_owned()
        } else {
            message
        };
        resp = problem_response(&Problem::new(status, slug_for(status), detail));
    }
    if let Some(pattern) = pattern {
        resp.set_data(pattern);
    }
    resp
}

/// Route templates as the OpenAPI document names them (`/api/v1/jobs/{id}`); poem's own
/// patterns name parameters `:param0`, so labels are mapped back to these.
static ROUTE_TEMPLATES: OnceLock<HashMap<String, Arc<str>>> = OnceLock::new();

pub(crate) fn set_route_templates(templates: Vec<String>) {
    let map = templates.into_iter().map(|t| (shape(&t), Arc::from(t.as_str()))).collect();
    let _ = ROUTE_TEMPLATES.set(map);
}

/// The path with every parameter replaced by `*`, to compare shapes.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with(':') || seg.starts_with('{') { "*" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The route template (`/api/v1/jobs/{id}`), never the raw path: a bounded label. Computed
/// once per response and kept on it.
pub(crate) fn route_label(resp: &mut Response) -> Arc<str> {
    if let Some(RouteLabel(label)) = resp.data::<RouteLabel>() {
        return Arc::clone(label);
    }
    let label: Arc<str> = match resp.data::<PathPattern>() {
        None => Arc::from("unmatched"),
        Some(PathPattern(pattern)) => ROUTE_TEMPLATES
            .get()
            .and_then(|all| all.get(&shape(pattern)))
            .cloned()
            .unwrap_or_else(|| Arc::clone(pattern)),
    };
    resp.set_data(RouteLabel(Arc::clone(&label)));
    label
}

#[derive(Clone)]
struct RouteLabel(Arc<str>);

/// The edge middleware, applied with `EndpointExt::around`.
pub async fn edge<E: Endpoint>(
    next: E,
    mut req: Request,
    body_limit: usize,
) -> poem::Result<Response> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span =
        tracing::info_span!("http", request_id = %id, method = %method, path = %req.uri().path());
    req.extensions_mut().insert(RequestId(id.clone()));

    async move {
        let checked = match limit_body(&mut req, body_limit).await {
            Ok(()) => refuse_nul(&mut req).await,
            Err(resp) => Err(resp),
        };
        let mut resp = match checked {
            Err(resp) => resp,
            Ok(()) => match next.call(req).await {
                Ok(out) => out.into_response(),
                Err(err) => error_response(err),
            },
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(REQUEST_ID, value);
        }
        let status = resp.status().as_u16();
        // A 405 says what is allowed (RFC 9110).
        if status == 405
            && let Some(allow) = crate::document::allowed_methods(&path)
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            resp.headers_mut().insert(header::ALLOW, value);
        }
        // Every 503 says when to come back (probes and middleware answers included).
        if status == 503 && !resp.headers().contains_key(poem::http::header::RETRY_AFTER) {
            resp.headers_mut().insert(
                poem::http::header::RETRY_AFTER,
                poem::http::HeaderValue::from(crate::problem::UNAVAILABLE_RETRY_AFTER_SECS),
            );
        }
        let route = route_label(&mut resp);
        let elapsed = started.elapsed().as_secs_f64();
        let method = method.as_str().to_owned();
        metrics::histogram!(telemetry::HTTP_REQUEST_DURATION,
            "route" => route.to_string(), "method" => method.clone())
        .record(elapsed);
        metrics::counter!(telemetry::HTTP_REQUESTS, "route" => route.to_string(),
            "method" => method, "status_class" => telemetry::status_class(status))
        .increment(1);
        if status >= 500 {
            tracing::warn!(status, elapsed_ms = elapsed * 1000.0, "request failed");
        } else {
            tracing::debug!(status, elapsed_ms = elapsed * 1000.0, "request");
        }
        Ok(resp)
    }
    .instrument(span)
    .await
}

/// A NUL character cannot be stored by PostgreSQL in text (SQLite would keep it), so it is
/// refused here, the same on both backends: in the path (no id holds one) with 404, in a
/// query parameter or a JSON body's string with 422 naming the field.
async fn refuse_nul(req: &mut Request) -> Result<(), Response> {
    const NUL_IN_URI: &str = "%00";
    let nul_field = |field: String| {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            format!("{field}: must not contain a NUL character"),
        );
        p.errors = vec![crate::problem::FieldError {
            field,
            message: "must not contain a NUL character".into(),
        }];
        problem_response(&p)
    };
    if req.uri().path().contains(NUL_IN_URI) {
        return Err(problem_response(&Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such resource",
        )));
    }
    if let Some(query) = req.uri().query()
        && query.contains(NUL_IN_URI)
    {
        let field = query
            .split('&')
            .find(|pair| pair.contains(NUL_IN_URI))
            .map(|pair| pair.split('=').next().unwrap_or(pair).replace(NUL_IN_URI, ""))
            .unwrap_or_default();
        return Err(nul_field(field));
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Ok(());
    }
    let bytes = req.take_body().into_bytes().await.unwrap_or_default();
    // JSON can only carry a NUL escaped; look further only when the escape is there.
    let found = bytes
        .windows(6)
        .any(|w| w == b"\\u0000")
        .then(|| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .flatten()
        .and_then(|v| nul_path(&v, String::new()));
    req.set_body(Body::from_bytes(bytes));
    match found {
        Some(field) => Err(nul_field(field)),
        None => Ok(()),
    }
}

/// Where the first string (or key) holding a NUL is, as `a.b[2].c`.
fn nul_path(value: &serde_json::Value, at: String) -> Option<String> {
    let join = |key: &str| if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(at),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| nul_path(v, format!("{at}[{i}]")))
        }
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') { Some(join(&k.replace('\0', ""))) } else { nul_path(v, join(k)) }
        }),
        _ => None,
    }
}

/// Refuses bodies over `limit` with 413: at once when Content-Length says so, else by
/// reading at most `limit` bytes of a chunked body.
async fn limit_body(req: &mut Request, limit: usize) -> Result<(), Response> {
    let too_large = || {
        problem_response(&Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the request body is larger than {limit} bytes"),
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => Err(too_large()),
        Some(_) => Ok(()),
        None if req.headers().contains_key(header::TRANSFER_ENCODING) => {
            let body = req.take_body();
            match body.into_bytes_limit(limit).await {
                Ok(bytes) => {
                    req.set_body(Body::from_bytes(bytes));
                    Ok(())
                }
                Err(poem::error::ReadBodyError::PayloadTooLarge) => Err(too_large()),
                Err(e) => Err(problem_response(&Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    format!("cannot read the request body: {e}"),
                ))),
            }
        }
        None => Ok(()),
    }
}
