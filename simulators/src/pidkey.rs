//! A PIDKey `pidms_api` simulator: `GET /ajax/pidms_api?keys=…&justgetdescription=0&apikey=…`
//! answering the exact shape public clients read, with data derived from each key (so runs
//! repeat), and the failure modes the real service is known or likely to have.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use poem::{
    Endpoint, EndpointExt, FromRequest, IntoResponse, Request, Response, Route, get, handler,
    http::StatusCode,
    web::{Data, Query},
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Products the simulator hands out (real `prd` strings).
pub const PRODUCTS: [&str; 6] = [
    "Office15_ProPlusVL_MAK",
    "Office16_StandardVL_MAK",
    "Office19_ProPlus2019VL_MAK_AE",
    "Office21_ProPlus2021VL_MAK_AE",
    "Win10_RTM_ProfessionalVL_MAK",
    "Win11_RTM_EnterpriseVL_MAK",
];
/// Every field of an answer, in the order PIDKey sends them.
pub const FIELDS: [&str; 13] = [
    "keyname",
    "keyname_with_dash",
    "prd",
    "eid",
    "is_key_type",
    "is_retail",
    "remaining",
    "blocked",
    "errorcode",
    "sub",
    "had_occurred",
    "invalid",
    "datetime_checked_done",
];
/// The most keys one request may carry.
pub const MAX_KEYS: usize = 50;

/// A way for a request to fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 200 with `{"short_result", "result"}` (what a bad key or an exhausted quota gets).
    ErrorObject,
    /// HTTP 200 with one object instead of an array.
    SingleObject,
    Unauthorized,
    /// 429, with `Retry-After` seconds or without.
    RateLimited(Option<u64>),
    ServerError(u16),
    /// Answer only after this long (past a client's timeout).
    Slow(Duration),
    /// A body cut off in the middle.
    Truncated,
}

#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// The keys as the client sent them (dashes kept).
    pub keys: Vec<String>,
    /// `crlf`, `lf` or `literal` (the four characters `\r\n`).
    pub separator: &'static str,
    pub api_key_ok: bool,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    api_keys: Vec<String>,
    latency: Duration,
    failures: VecDeque<Failure>,
    always: Option<Failure>,
    overrides: HashMap<String, i64>,
    products: HashMap<String, Option<String>>,
    log: Vec<LoggedRequest>,
    in_flight: usize,
    max_in_flight: usize,
}

/// A handle on a running (or mountable) simulator; clones share state.
#[derive(Clone, Default)]
pub struct PidkeySim {
    state: Arc<Mutex<State>>,
}

impl PidkeySim {
    /// Accepts exactly these API keys (empty: any non-empty key).
    pub fn new(api_keys: &[&str]) -> Self {
        let sim = Self::default();
        sim.state.lock().unwrap().api_keys = api_keys.iter().map(|s| (*s).to_owned()).collect();
        sim
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    /// The next requests fail this way, one failure each, in order.
    pub fn fail_next(&self, failures: impl IntoIterator<Item = Failure>) {
        self.state.lock().unwrap().failures.extend(failures);
    }

    /// Every request fails this way until cleared.
    pub fn fail_always(&self, failure: Option<Failure>) {
        self.state.lock().unwrap().always = failure;
    }

    /// Pins a key's `remaining` (to make stock move between syncs).
    pub fn set_remaining(&self, keyname: &str, remaining: i64) {
        self.state.lock().unwrap().overrides.insert(normalise(keyname), remaining);
    }

    /// Pins a key's `prd` (`None`: the answer of an invalid key), to move keys between
    /// products.
    pub fn set_product(&self, keyname: &str, prd: Option<&str>) {
        self.state.lock().unwrap().products.insert(normalise(keyname), prd.map(str::to_owned));
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.lock().unwrap().log.clone()
    }

    /// Requests in progress now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    /// How many requests were answered or are in progress.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    /// The most requests that were ever in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// The routes, to mount at the root of a server (`/ajax/pidms_api`).
    pub fn routes(&self) -> impl Endpoint + use<> {
        Route::new().at("/ajax/pidms_api", get(pidms_api)).data(self.clone())
    }
}

fn normalise(key: &str) -> String {
    key.trim().replace('-', "").to_ascii_uppercase()
}

fn well_formed(key: &str) -> bool {
    key.len() == 25 && key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// FNV-1a, for data that depends only on the key.
fn hash(key: &str, salt: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ salt;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn with_dashes(k: &str) -> String {
    k.as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// The answer for one key: every field the real service returns, derived from the key.
pub fn answer_for(key: &str, remaining_override: Option<i64>) -> Value {
    let k = normalise(key);
    let h = |salt| hash(&k, salt);
    if !well_formed(&k) || h(1) % 10 == 0 {
        return json!({
            "keyname": k, "keyname_with_dash": with_dashes(&k), "prd": null, "eid": "",
            "is_key_type": "", "is_retail": 0, "remaining": -1, "blocked": -1,
            "errorcode": "0xC004C004", "sub": "", "had_occurred": 0, "invalid": 1,
            "datetime_checked_done": checked_text(&k),
        });
    }
    let prd = PRODUCTS[(h(2) % PRODUCTS.len() as u64) as usize];
    let retail = h(3) % 7 == 0;
    let blocked = h(4) % 13 == 0;
    let remaining = remaining_override.unwrap_or(if retail { -1 } else { (h(5) % 400) as i64 });
    let errorcode = if blocked {
        "0xC004C003"
    } else if remaining == 0 {
        "0xC004C060"
    } else {
        "Online Key"
    };
    json!({
        "keyname": k,
        "keyname_with_dash": with_dashes(&k),
        "prd": prd,
        "eid": format!("{:05}-02165-456-{:06}-03-1033-9200.0000-{:07}", h(6) % 100_000, h(7) % 1_000_000, h(8) % 10_000_000),
        "is_key_type": if retail { "Retail" } else { "Volume:MAK" },
        "is_retail": if retail { 1 } else { 2 },
        "remaining": remaining,
        "blocked": if blocked { 1 } else { -1 },
        "errorcode": errorcode,
        "sub": format!("{} {}", prd.split('_').next().unwrap_or(prd), if retail { "Retail" } else { "Volume:MAK" }),
        "had_occurred": (h(9) % 3) as i64,
        "invalid": 0,
        "datetime_checked_done": checked_text(&k),
    })
}

fn checked_text(k: &str) -> String {
    let h = hash(k, 10);
    format!(
        "1/12/2026 {}:{:02}:{:02} {} (GMT+7)",
        h % 12 + 1,
        h / 12 % 60,
        h / 720 % 60,
        if h.is_multiple_of(2) { "AM" } else { "PM" }
    )
}

#[derive(Deserialize)]
struct Params {
    keys: Option<String>,
    justgetdescription: Option<String>,
    apikey: Option<String>,
}

fn error_object(short: &str, result: &str) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(json!({"short_result": short, "result": result}).to_string())
}

struct InFlight(Arc<Mutex<State>>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

#[handler]
async fn pidms_api(req: &Request, sim: Data<&PidkeySim>) -> Response {
    let params = Query::<Params>::from_request_without_body(req).await.ok().map(|q| q.0);
    let (latency, failure, accepted_keys, _guard) = {
        let mut s = sim.state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        let failure = s.failures.pop_front().or_else(|| s.always.clone());
        (s.latency, failure, s.api_keys.clone(), InFlight(Arc::clone(&sim.state)))
    };
    let Some(Params { keys, justgetdescription, apikey }) = params else {
        return error_object("error", "bad request");
    };
    let raw = keys.unwrap_or_default();
    let (separator, parts): (&'static str, Vec<String>) = if raw.contains("\r\n") {
        ("crlf", raw.split("\r\n").map(str::to_owned).collect())
    } else if raw.contains("\\r\\n") {
        ("literal", raw.split("\\r\\n").map(str::to_owned).collect())
    } else {
        ("lf", raw.split('\n').map(str::to_owned).collect())
    };
    let keys: Vec<String> =
        parts.into_iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect();
    let api_key_ok = apikey.as_deref().is_some_and(|k| {
        !k.is_empty() && (accepted_keys.is_empty() || accepted_keys.iter().any(|a| a == k))
    });
    sim.state.lock().unwrap().log.push(LoggedRequest {
        keys: keys.clone(),
        separator,
        api_key_ok,
        at: Instant::now(),
    });
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match failure {
        Some(Failure::Slow(d)) => tokio::time::sleep(d).await,
        Some(Failure::Unauthorized) => return StatusCode::UNAUTHORIZED.into_response(),
        Some(Failure::RateLimited(after)) => {
            let mut r = Response::builder().status(StatusCode::TOO_MANY_REQUESTS);
            if let Some(s) = after {
                r = r.header("retry-after", s.to_string());
            }
            return r.body("Too Many Requests");
        }
        Some(Failure::ServerError(code)) => {
            return Response::builder()
                .status(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY))
                .body("upstream error");
        }
        Some(Failure::ErrorObject) => {
            return error_object("error", "quota exceeded for this API key");
        }
        _ => {}
    }
    if !api_key_ok {
        return error_object("error", "invalid API key");
    }
    if justgetdescription.as_deref() != Some("0") {
        return error_object("error", "justgetdescription must be 0");
    }
    if keys.is_empty() {
        return error_object("error", "no keys");
    }
    if keys.len() > MAX_KEYS {
        return error_object("error", &format!("at most {MAX_KEYS} keys per request"));
    }
    let (overrides, products) = {
        let s = sim.state.lock().unwrap();
        (s.overrides.clone(), s.products.clone())
    };
    let answers: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut answer = answer_for(k, overrides.get(&normalise(k)).copied());
            if let Some(prd) = products.get(&normalise(k)) {
                answer["prd"] = prd.as_deref().map_or(Value::Null, Value::from);
            }
            answer
        })
        .collect();
    let body = match failure {
        Some(Failure::SingleObject) => answers[0].to_string(),
        Some(Failure::Truncated) => {
            let full = Value::Array(answers).to_string();
            full[..full.len() / 2].to_owned()
        }
        _ => Value::Array(answers).to_string(),
    };
    Response::builder().content_type("application/json").body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_deterministic_and_complete() {
        let a = answer_for("ABCDE-FGHIJ-KLMNO-PQRST-UVWX1", None);
        assert_eq!(a, answer_for("abcdefghijklmnopqrstuvwx1", None));
        for field in FIELDS {
            assert!(a.get(field).is_some(), "{field}");
        }
        assert_eq!(a["keyname"], "ABCDEFGHIJKLMNOPQRSTUVWX1");
        assert_eq!(a["keyname_with_dash"], "ABCDE-FGHIJ-KLMNO-PQRST-UVWX1");
        let bad = answer_for("SHORT", None);
        assert!(bad["prd"].is_null());
        let overridden = answer_for("ABCDE-FGHIJ-KLMNO-PQRST-UVWX1", Some(0));
        if !overridden["prd"].is_null() && overridden["blocked"] == -1 {
            assert_eq!(overridden["errorcode"], "0xC004C060");
        }
    }

    #[test]
    fn some_keys_are_invalid_and_products_vary() {
        let keys: Vec<String> = (0..200).map(|i| format!("{i:0>25}")).collect();
        let answers: Vec<Value> = keys.iter().map(|k| answer_for(k, None)).collect();
        let invalid = answers.iter().filter(|a| a["prd"].is_null()).count();
        assert!(invalid > 5 && invalid < 50, "{invalid}");
        let products: std::collections::HashSet<_> =
            answers.iter().filter_map(|a| a["prd"].as_str()).collect();
        assert!(products.len() >= 4);
    }
}
