//! The operator console at `/console`: a page and its scripts, embedded at compile time and
//! served by every API process, with a strict Content-Security-Policy (scripts and styles
//! from this origin only, no inline script, no framing). The pages are hand-written
//! JavaScript that call the public `/api/v1` with the key the operator pastes, kept in the
//! tab's sessionStorage: the console can do nothing the key cannot.

use std::sync::LazyLock;

use poem::{
    Request, Response, Route, handler,
    http::{HeaderValue, StatusCode, header},
    web::Path,
};

const INDEX: &str = include_str!("../console/index.html");

/// (name, content type, text) of each asset under `/console/assets/`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("../console/app.css")),
    ("core.js", "text/javascript; charset=utf-8", include_str!("../console/core.js")),
    ("widgets.js", "text/javascript; charset=utf-8", include_str!("../console/widgets.js")),
    ("pages.js", "text/javascript; charset=utf-8", include_str!("../console/pages.js")),
];

/// The page, its asset links stamped with the version so a new build is fetched anew.
static PAGE: LazyLock<String> =
    LazyLock::new(|| INDEX.replace("VERSION", env!("CARGO_PKG_VERSION")));

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

pub fn routes() -> Route {
    Route::new().at("/", page).at("/*rest", page_or_asset)
}

fn respond(status: StatusCode, content_type: &str, body: &'static str) -> Response {
    let mut resp = Response::builder().status(status).content_type(content_type).body(body);
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[handler]
fn page(req: &Request) -> Response {
    page_response(req)
}

fn page_response(req: &Request) -> Response {
    if req.method() != poem::http::Method::GET && req.method() != poem::http::Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "GET only");
    }
    respond(StatusCode::OK, "text/html; charset=utf-8", PAGE.as_str())
}

/// An asset by name, or the page for any other `/console/…` path (the pages route
/// themselves, so every page has a deep link).
#[handler]
fn page_or_asset(req: &Request, Path(rest): Path<String>) -> Response {
    match rest.strip_prefix("assets/") {
        Some(name) => match ASSETS.iter().find(|(n, _, _)| *n == name) {
            Some((_, content_type, text)) => respond(StatusCode::OK, content_type, text),
            None => respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "no such asset"),
        },
        None => page_response(req),
    }
}
