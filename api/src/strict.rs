//! Request bodies checked against the OpenAPI document before an operation parses them:
//! poem-openapi alone ignores unknown fields and takes `42` or `true` for a string. Here a
//! JSON body gets a 422 naming every field that is unknown, of the wrong type, missing, past
//! its `maxItems`/`maxLength`, or not one of its enum values — the same rules the document
//! states (its request objects say `additionalProperties: false`).

use std::sync::OnceLock;

use poem::http::Method;
use serde_json::{Map, Value};

use crate::{document::PathTemplate, problem::FieldError};

struct Route {
    method: Method,
    path: PathTemplate,
    schema: Value,
}

pub(crate) struct BodySchemas {
    components: Map<String, Value>,
    routes: Vec<Route>,
}

static SCHEMAS: OnceLock<BodySchemas> = OnceLock::new();

const JSON: &str = "application/json";

/// Reads the request schemas out of `spec` (mounted under `prefix`), and marks the objects
/// they use `additionalProperties: false` in `spec`, which is then what is served.
pub(crate) fn install(spec: &mut Value, prefix: &str) {
    let components = spec["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let mut routes = Vec::new();
    let mut closed = Vec::new();
    if let Some(paths) = spec["paths"].as_object() {
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                // poem-openapi names it `application/json; charset=utf-8`.
                let content = op["requestBody"]["content"].as_object();
                let schema = content
                    .and_then(|c| c.iter().find(|(k, _)| k.starts_with(JSON)))
                    .map_or(&Value::Null, |(_, v)| &v["schema"]);
                let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
                if schema.is_null() {
                    continue;
                }
                collect_objects(&components, schema, &mut closed);
                routes.push(Route {
                    method,
                    path: PathTemplate::parse(&format!("{prefix}{path}")),
                    schema: schema.clone(),
                });
            }
        }
    }
    if let Some(schemas) = spec["components"]["schemas"].as_object_mut() {
        for name in &closed {
            if let Some(obj) = schemas.get_mut(name).and_then(Value::as_object_mut)
                && !obj.contains_key("additionalProperties")
            {
                obj.insert("additionalProperties".into(), Value::Bool(false));
            }
        }
    }
    let components = spec["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let _ = SCHEMAS.set(BodySchemas { components, routes });
}

/// The component names of every object schema reachable from `schema`.
fn collect_objects(components: &Map<String, Value>, schema: &Value, out: &mut Vec<String>) {
    if let Some(name) = ref_name(schema) {
        if out.iter().any(|n| n == name) {
            return;
        }
        if let Some(target) = components.get(name) {
            if target["type"] == "object" {
                out.push(name.to_owned());
            }
            collect_objects(components, target, out);
        }
        return;
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for s in schema[key].as_array().into_iter().flatten() {
            collect_objects(components, s, out);
        }
    }
    for s in schema["properties"].as_object().into_iter().flat_map(|p| p.values()) {
        collect_objects(components, s, out);
    }
    if !schema["items"].is_null() {
        collect_objects(components, &schema["items"], out);
    }
}

fn ref_name(schema: &Value) -> Option<&str> {
    schema["$ref"].as_str()?.strip_prefix("#/components/schemas/")
}

/// The schema of the JSON body of `method path`, if the document has one.
pub(crate) fn schema_for(method: &Method, path: &str) -> Option<&'static Value> {
    let schemas = SCHEMAS.get()?;
    schemas.routes.iter().find(|r| r.method == method && r.path.matches(path)).map(|r| &r.schema)
}

/// Checks a JSON request body against its operation's schema: a 422 naming every field that
/// breaks it. Bodies that are not JSON are left to the operation.
pub(crate) async fn check_request(req: &mut poem::Request) -> Result<(), poem::Response> {
    let is_json = req
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(JSON));
    let Some(schema) =
        is_json.then(|| schema_for(req.method(), req.original_uri().path())).flatten()
    else {
        return Ok(());
    };
    let bytes = req.take_body().into_bytes().await.unwrap_or_default();
    let parsed = serde_json::from_slice::<Value>(&bytes);
    req.set_body(poem::Body::from_bytes(bytes));
    let Ok(value) = parsed else { return Ok(()) };
    let errors = check(schema, &value);
    if errors.is_empty() {
        Ok(())
    } else {
        use poem::IntoResponse;
        Err(crate::problem::ApiError::validation(errors).into_response())
    }
}

/// Every way `body` breaks `schema`, as field errors (`events[1].type`).
pub(crate) fn check(schema: &Value, body: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(schemas) = SCHEMAS.get() {
        schemas.check(schema, body, "", &mut errors);
    }
    errors
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") }
}

impl BodySchemas {
    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<FieldError>) {
        let mut fail = |message: String| {
            errors.push(FieldError { field: at.to_owned(), message });
        };
        if let Some(name) = ref_name(schema) {
            if let Some(target) = self.components.get(name) {
                self.check(target, value, at, errors);
            }
            return;
        }
        if let Some(all) = schema["allOf"].as_array() {
            for s in all {
                self.check(s, value, at, errors);
            }
            return;
        }
        // Absent and null are the operation's to judge (optional or nullable fields).
        if value.is_null() || schema.get("oneOf").is_some() || schema.get("anyOf").is_some() {
            return;
        }
        match schema["type"].as_str() {
            Some("string") => {
                let Some(s) = value.as_str() else { return fail("must be a string".into()) };
                if let Some(max) = schema["maxLength"].as_u64()
                    && s.chars().count() as u64 > max
                {
                    fail(format!("must be at most {max} characters"));
                }
                if let Some(allowed) = schema["enum"].as_array()
                    && !allowed.iter().any(|a| a == value)
                {
                    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                    fail(format!("must be one of {}", names.join(", ")));
                }
            }
            Some("integer") if !(value.is_i64() || value.is_u64()) => {
                fail("must be an integer".into())
            }
            Some("number") if !value.is_number() => fail("must be a number".into()),
            Some("boolean") if !value.is_boolean() => fail("must be true or false".into()),
            Some("array") => {
                let Some(items) = value.as_array() else { return fail("must be an array".into()) };
                if let Some(max) = schema["maxItems"].as_u64()
                    && items.len() as u64 > max
                {
                    return fail(format!("must have at most {max} items"));
                }
                if let Some(min) = schema["minItems"].as_u64()
                    && (items.len() as u64) < min
                {
                    fail(format!("must have at least {min} items"));
                }
                let item = &schema["items"];
                if !item.is_null() {
                    for (i, v) in items.iter().enumerate() {
                        self.check(item, v, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            Some("object") => {
                let Some(obj) = value.as_object() else { return fail("must be an object".into()) };
                let properties = schema["properties"].as_object();
                let extra = &schema["additionalProperties"];
                for (key, v) in obj {
                    match properties.and_then(|p| p.get(key)) {
                        Some(s) => self.check(s, v, &join(at, key), errors),
                        None if extra.is_object() => self.check(extra, v, &join(at, key), errors),
                        None if extra == &Value::Bool(true) => {}
                        None if properties.is_some() || extra == &Value::Bool(false) => errors
                            .push(FieldError {
                                field: join(at, key),
                                message: "unknown field".into(),
                            }),
                        None => {}
                    }
                }
                for key in schema["required"].as_array().into_iter().flatten() {
                    if let Some(key) = key.as_str()
                        && !obj.contains_key(key)
                    {
                        errors.push(FieldError {
                            field: join(at, key),
                            message: "is required".into(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
}
