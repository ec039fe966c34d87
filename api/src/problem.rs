//! Errors at the API edge: RFC 9457 `application/problem+json`, one variant per status.
//! Internal errors are logged with their cause and answered as an opaque 500.

use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, payload::Json};
use switchyard_shared::{queue::QueueError, store::StoreError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// RFC 9457 problem details.
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:switchyard:problem:<slug>`).
    #[oai(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// One entry per invalid field, for validation errors (absent otherwise).
    #[oai(default, skip_serializing_if_is_empty)]
    pub errors: Vec<FieldError>,
    /// For a refused request: the limit's window (`per_minute`, `per_hour`, `per_day`,
    /// `per_month`).
    #[oai(skip_serializing_if_is_none)]
    pub window: Option<LimitWindow>,
}

/// The window of a limit a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
pub enum LimitWindow {
    #[oai(rename = "per_minute")]
    Minute,
    #[oai(rename = "per_hour")]
    Hour,
    #[oai(rename = "per_day")]
    Day,
    #[oai(rename = "per_month")]
    Month,
}

impl LimitWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "per_minute",
            Self::Hour => "per_hour",
            Self::Day => "per_day",
            Self::Month => "per_month",
        }
    }
}

impl From<switchyard_shared::quotas::Window> for LimitWindow {
    fn from(w: switchyard_shared::quotas::Window) -> Self {
        use switchyard_shared::quotas::Window;
        match w {
            Window::PerHour => Self::Hour,
            Window::PerDay => Self::Day,
            Window::PerMonth => Self::Month,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct FieldError {
    /// The field, as a JSON pointer-ish path (`url`, `event_types[2]`).
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:switchyard:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            window: None,
        }
    }

    pub fn with_window(mut self, window: LimitWindow) -> Self {
        self.window = Some(window);
        self
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::json!({
            "type": self.kind, "title": self.title, "status": self.status, "detail": self.detail,
        });
        if !self.errors.is_empty() {
            value["errors"] = self
                .errors
                .iter()
                .map(|e| serde_json::json!({"field": e.field, "message": e.message}))
                .collect();
        }
        if let Some(window) = self.window {
            value["window"] = window.as_str().into();
        }
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// Every error an operation can answer with. Each variant is one status and appears in the
/// OpenAPI document.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No valid API key.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// The key lacks the scope this route needs.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such resource.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The resource is not in a state that allows this.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body is larger than allowed.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// The body is well-formed but invalid; `errors` names each field.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many requests; see `Retry-After`.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>),
    /// Something failed on our side; the detail carries no internals.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// A dependency (store or queue) is not answering; retry after `Retry-After` seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl ApiError {
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(Json(Problem::new(StatusCode::NOT_FOUND, "not-found", detail)))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict(Json(Problem::new(StatusCode::CONFLICT, "conflict", detail)))
    }

    /// 409 `not-configured`: the work needs settings this deployment does not have (not a
    /// passing outage, so not a 503).
    pub fn not_configured(what: &str, missing: &[&str]) -> Self {
        Self::Conflict(Json(Problem::new(
            StatusCode::CONFLICT,
            "not-configured",
            format!("{what} is not configured: set {}", missing.join(" and ")),
        )))
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(Json(Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)))
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail);
        p.errors = errors;
        Self::Unprocessable(Json(p))
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.to_owned(), message: message.into() }])
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable(
            Json(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)),
            UNAVAILABLE_RETRY_AFTER_SECS,
        )
    }

    /// Logs the cause (never sent to the client) and answers an opaque 500.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, source = ?cause.source().map(ToString::to_string), "internal error");
        Self::Internal(Json(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )))
    }
}

/// The `Retry-After` of a 503: an outage is retried soon (the store's pool gives up waiting
/// for a connection after `SWITCHYARD_DATABASE_ACQUIRE_TIMEOUT_MS`).
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "store unavailable");
            Self::unavailable("the store is not answering; try again shortly")
        } else {
            Self::internal(&e)
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        tracing::warn!(error = %e, "queue unavailable");
        Self::unavailable("the queue is not answering; try again shortly")
    }
}
