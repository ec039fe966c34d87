//! Sikka writebacks: the four operations, validation of their bodies (every bad field named),
//! and the Sikka call each becomes. Sikka wants every value as a string, so numbers given to
//! us are sent as strings.

mod store;

pub use store::{
    NewTokens, NewWriteback, PracticeUpsert, SikkaPractice, SikkaWriteback, Submitted,
    practice_context,
};

use serde_json::{Map, Value};

crate::text_enum! {
    /// Where a writeback stands (`sikka_writebacks.status`).
    /// queued → submitted → pending … → completed | failed; queued → completed | failed.
    pub enum WritebackStatus {
        /// Stored, waiting for (or between tries of) its submission.
        Queued = "queued",
        /// Sikka accepted it; not checked yet.
        Submitted = "submitted",
        /// Checked at least once and still running at Sikka.
        Pending = "pending",
        Completed = "completed",
        Failed = "failed",
    }
}

impl WritebackStatus {
    /// Not ended yet.
    pub const OPEN: [WritebackStatus; 3] = [Self::Queued, Self::Submitted, Self::Pending];

    /// Submitted and waiting for a check.
    pub fn awaits_check(self) -> bool {
        matches!(self, Self::Submitted | Self::Pending)
    }
}

/// How a writeback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending<'a> {
    Completed {
        result: &'a str,
    },
    /// `result` is Sikka's own text when it reported the failure.
    Failed {
        error: &'a str,
        result: Option<&'a str>,
    },
}

impl Ending<'_> {
    pub fn status(&self) -> WritebackStatus {
        match self {
            Self::Completed { .. } => WritebackStatus::Completed,
            Self::Failed { .. } => WritebackStatus::Failed,
        }
    }
}

crate::text_enum! {
    /// A practice's request key (`sikka_practices.token_status`).
    /// none → active (issued or refreshed) → reauthorization_required (Sikka withdrew the
    /// grant) → none (authorized again).
    pub enum TokenStatus {
        /// No request key yet.
        None = "none",
        /// A request key is held (it may be due for refresh).
        Active = "active",
        /// Sikka no longer accepts the practice's grant: the practice must authorize again.
        ReauthorizationRequired = "reauthorization_required",
    }
}

/// What a writeback does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    BookAppointment,
    CreatePatient,
    /// `target_id` = `appointment_sr_no`.
    UpdateAppointment,
    /// `target_id` = `patient_id`.
    UpdatePatient,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::BookAppointment,
        Operation::CreatePatient,
        Operation::UpdateAppointment,
        Operation::UpdatePatient,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BookAppointment => "book_appointment",
            Self::CreatePatient => "create_patient",
            Self::UpdateAppointment => "update_appointment",
            Self::UpdatePatient => "update_patient",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    fn needs_target(self) -> bool {
        matches!(self, Self::UpdateAppointment | Self::UpdatePatient)
    }
}

/// One bad field of a writeback request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> BadField {
    BadField { field: field.to_owned(), message: message.into() }
}

/// A value as Sikka wants it: a string (numbers converted); `None` when absent or empty.
fn string_of(v: &Value) -> Option<Result<String, ()>> {
    match v {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(Ok(s.trim().to_owned())),
        Value::Number(n) => Some(Ok(n.to_string())),
        Value::Bool(b) => Some(Ok(b.to_string())),
        _ => Some(Err(())),
    }
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

fn is_time(s: &str) -> bool {
    chrono::NaiveTime::parse_from_str(s, "%H:%M").is_ok() && s.len() == 5
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.contains(char::is_whitespace)
}

/// A field's rule.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Date,
    Time,
    /// Minutes, a positive whole number.
    Minutes,
    Gender,
    Email,
    Phone,
}

fn check(kind: Kind, v: &str) -> Result<(), &'static str> {
    let ok = match kind {
        Kind::Text => true,
        Kind::Date => is_date(v),
        Kind::Time => is_time(v),
        Kind::Minutes => v.parse::<u32>().is_ok_and(|m| m > 0 && m <= 24 * 60),
        Kind::Gender => matches!(v, "male" | "female" | "unknown"),
        Kind::Email => is_email(v),
        Kind::Phone => {
            let digits = v.chars().filter(char::is_ascii_digit).count();
            (7..=15).contains(&digits)
                && v.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
        }
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        Kind::Text => "must be text",
        Kind::Date => "must be a date as yyyy-mm-dd",
        Kind::Time => "must be a time as HH:mm (24 h)",
        Kind::Minutes => "must be a whole number of minutes between 1 and 1440",
        Kind::Gender => "must be male, female or unknown",
        Kind::Email => "must be an email address",
        Kind::Phone => "must be a phone number (7 to 15 digits)",
    })
}

/// (field, kind, required) per operation.
fn rules(op: Operation) -> &'static [(&'static str, Kind, bool)] {
    use Kind::*;
    match op {
        Operation::BookAppointment => &[
            ("patient_id", Text, true),
            ("date", Date, true),
            ("time", Time, true),
            ("length", Minutes, true),
            ("provider_id", Text, true),
            ("operatory", Text, true),
            ("description", Text, false),
            ("practice_id", Text, false),
        ],
        Operation::CreatePatient => &[
            ("firstname", Text, true),
            ("lastname", Text, true),
            ("provider_id", Text, true),
            ("birthdate", Date, true),
            ("gender", Gender, true),
            ("email", Email, false),
            ("cell", Phone, false),
            ("practice_id", Text, false),
        ],
        Operation::UpdateAppointment => &[
            ("status", Text, false),
            ("date", Date, false),
            ("time", Time, false),
            ("length", Minutes, false),
            ("provider_id", Text, false),
            ("operatory", Text, false),
            ("practice_id", Text, false),
        ],
        Operation::UpdatePatient => &[
            ("firstname", Text, false),
            ("lastname", Text, false),
            ("provider_id", Text, false),
            ("birthdate", Date, false),
            ("gender", Gender, false),
            ("email", Email, false),
            ("cell", Phone, false),
            ("practice_id", Text, false),
        ],
    }
}

/// A writeback request that passed validation: the body with every value a string.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid {
    pub operation: Operation,
    pub target_id: Option<String>,
    pub body: Map<String, Value>,
}

/// Checks a writeback request; every bad field is named (as `body.date`, `target_id`, …).
pub fn validate(
    operation: &str,
    target_id: Option<&str>,
    body: &Value,
) -> Result<Valid, Vec<BadField>> {
    let Some(op) = Operation::parse(operation) else {
        let known: Vec<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        return Err(vec![bad("operation", format!("must be one of {}", known.join(", ")))]);
    };
    let mut errors = Vec::new();
    let target = target_id.map(str::trim).filter(|t| !t.is_empty());
    match (op.needs_target(), target) {
        (true, None) => errors.push(bad(
            "target_id",
            match op {
                Operation::UpdateAppointment => "is required: the appointment's appointment_sr_no",
                _ => "is required: the patient's patient_id",
            },
        )),
        (false, Some(_)) => {
            errors.push(bad("target_id", format!("is not used by {}", op.as_str())))
        }
        _ => {}
    }
    let Value::Object(given) = body else {
        errors.push(bad("body", "must be a JSON object"));
        return Err(errors);
    };
    let rules = rules(op);
    let mut out = Map::new();
    for (name, value) in given {
        let field = format!("body.{name}");
        let Some((_, kind, _)) = rules.iter().find(|(n, _, _)| n == name) else {
            errors.push(bad(&field, format!("is not a field of {}", op.as_str())));
            continue;
        };
        match string_of(value) {
            None => {}
            Some(Err(())) => errors.push(bad(&field, "must be a string or a number")),
            Some(Ok(v)) => match check(*kind, &v) {
                Ok(()) => {
                    out.insert(name.clone(), Value::String(v));
                }
                Err(m) => errors.push(bad(&field, m)),
            },
        }
    }
    for (name, _, required) in rules {
        if *required
            && !out.contains_key(*name)
            && given.get(*name).is_none_or(|v| string_of(v).is_none())
        {
            errors.push(bad(&format!("body.{name}"), "is required"));
        }
    }
    let updates = out.keys().filter(|k| *k != "practice_id").count();
    if op.needs_target() && updates == 0 && errors.is_empty() {
        errors.push(bad("body", "names nothing to change"));
    }
    if errors.is_empty() {
        Ok(Valid { operation: op, target_id: target.map(str::to_owned), body: out })
    } else {
        Err(errors)
    }
}

/// A Sikka writeback call: method, path under `/v4`, JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub body: Value,
}

/// The Sikka call a (validated) writeback becomes, for a practice whose Sikka
/// `practice_id` is given (the body's own `practice_id` wins). Creates ask Sikka to check
/// the practice's agent first (`check_spu`), so an offline agent is a 412 now rather than a
/// writeback that never completes.
pub fn call_for(
    operation: Operation,
    target_id: Option<&str>,
    body: &Map<String, Value>,
    practice_id: Option<&str>,
) -> Call {
    let mut body = body.clone();
    if let (false, Some(p)) = (body.contains_key("practice_id"), practice_id) {
        body.insert("practice_id".into(), p.into());
    }
    let target = target_id.unwrap_or_default();
    match operation {
        Operation::BookAppointment => {
            body.insert("check_spu".into(), "true".into());
            Call { method: "POST", path: "/appointment".into(), body: Value::Object(body) }
        }
        Operation::CreatePatient => {
            body.insert("check_spu".into(), "true".into());
            Call { method: "POST", path: "/patient".into(), body: Value::Object(body) }
        }
        Operation::UpdateAppointment => {
            let path = format!("/appointments/{target}");
            let only_status = body.keys().all(|k| k == "status" || k == "practice_id");
            if only_status {
                // A status change is a JSON-patch-like replace.
                let mut patch = Map::new();
                patch.insert("op".into(), "replace".into());
                patch.insert("path".into(), "/status".into());
                patch.insert("value".into(), body.get("status").cloned().unwrap_or_default());
                if let Some(p) = body.get("practice_id") {
                    patch.insert("practice_id".into(), p.clone());
                }
                patch.insert("appointment_sr_no".into(), target.into());
                Call { method: "PATCH", path, body: Value::Object(patch) }
            } else {
                // Anything else reschedules: PUT with the fields.
                body.insert("appointment_sr_no".into(), target.into());
                Call { method: "PUT", path, body: Value::Object(body) }
            }
        }
        Operation::UpdatePatient => {
            body.insert("patient_id".into(), target.into());
            Call { method: "PATCH", path: format!("/patient/{target}"), body: Value::Object(body) }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(r: Result<Valid, Vec<BadField>>) -> Vec<String> {
        r.err().unwrap_or_default().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn each_bad_field_is_named() {
        let body = json!({"patient_id": "12", "date": "2026-13-01", "time": "9:5", "length": "0",
            "provider_id": "DOC1", "color": "red"});
        assert_eq!(
            fields(validate("book_appointment", None, &body)),
            ["body.color", "body.date", "body.length", "body.time", "body.operatory"]
        );
        assert_eq!(
            fields(validate("book_appointment", Some("9"), &json!([]))),
            ["target_id", "body"]
        );
        assert_eq!(fields(validate("drop_table", None, &json!({}))), ["operation"]);
        assert_eq!(
            fields(validate("update_patient", None, &json!({"email": "x"}))),
            ["target_id", "body.email"]
        );
        assert_eq!(fields(validate("update_patient", Some("5"), &json!({}))), ["body"]);
        let p = json!({"firstname": "Ada", "lastname": "L", "provider_id": 7, "birthdate": "1990-02-30", "gender": "other"});
        assert_eq!(fields(validate("create_patient", None, &p)), ["body.birthdate", "body.gender"]);
    }

    #[test]
    fn valid_bodies_become_sikka_calls_with_string_values() {
        let body = json!({"patient_id": 12, "date": "2026-12-01", "time": "09:30", "length": 30,
            "provider_id": "DOC1", "operatory": "OP1"});
        let v = validate("book_appointment", None, &body).unwrap();
        let call = call_for(v.operation, None, &v.body, Some("1"));
        assert_eq!((call.method, call.path.as_str()), ("POST", "/appointment"));
        assert_eq!(call.body["length"], "30");
        assert_eq!(call.body["patient_id"], "12");
        assert_eq!(call.body["practice_id"], "1");
        assert_eq!(call.body["check_spu"], "true");

        let v =
            validate("update_appointment", Some("88"), &json!({"status": "Confirmed"})).unwrap();
        let call = call_for(v.operation, v.target_id.as_deref(), &v.body, Some("1"));
        assert_eq!((call.method, call.path.as_str()), ("PATCH", "/appointments/88"));
        assert_eq!(
            call.body,
            json!({"op": "replace", "path": "/status", "value": "Confirmed",
            "practice_id": "1", "appointment_sr_no": "88"})
        );

        let v = validate(
            "update_appointment",
            Some("88"),
            &json!({"date": "2026-12-02", "time": "10:00"}),
        )
        .unwrap();
        let call = call_for(v.operation, v.target_id.as_deref(), &v.body, Some("1"));
        assert_eq!(call.method, "PUT");

        let v =
            validate("update_patient", Some("5"), &json!({"cell": "+1 (555) 010-9999"})).unwrap();
        let call = call_for(v.operation, v.target_id.as_deref(), &v.body, None);
        assert_eq!((call.method, call.path.as_str()), ("PATCH", "/patient/5"));
        assert_eq!(call.body["patient_id"], "5");
    }
}
