//! Touches to the OpenAPI document poem-openapi writes, so that it says what the API does:
//! optional fields are answered as `null` (and accepted as `null`), which poem-openapi does
//! not declare; and the methods each path allows, for the `Allow` header of a 405.

use std::sync::OnceLock;

use serde_json::{Value, json};

/// Marks every optional property of every object schema `nullable` (OpenAPI 3.0). A `$ref`
/// cannot carry siblings, so a referenced schema is wrapped in `allOf` first.
pub(crate) fn mark_optional_nullable(spec: &mut Value) {
    let Some(schemas) = spec["components"]["schemas"].as_object_mut() else { return };
    for schema in schemas.values_mut() {
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, property) in properties.iter_mut() {
            if required.contains(name) {
                continue;
            }
            if property.get("$ref").is_some() {
                *property = json!({"allOf": [property.clone()]});
            }
            if let Some(obj) = property.as_object_mut() {
                obj.insert("nullable".into(), Value::Bool(true));
            }
        }
    }
}

/// Each path of the document as segments (`None` for a `{parameter}`), with its methods.
static ALLOWED: OnceLock<Vec<(Vec<Option<String>>, String)>> = OnceLock::new();

/// Remembers the methods of every path of `spec`, mounted under `prefix`.
pub(crate) fn remember_methods(spec: &Value, prefix: &str) {
    let mut allowed = Vec::new();
    for (path, ops) in spec["paths"].as_object().into_iter().flatten() {
        let methods: Vec<String> =
            ops.as_object().into_iter().flatten().map(|(m, _)| m.to_uppercase()).collect();
        let segments = format!("{prefix}{path}")
            .trim_matches('/')
            .split('/')
            .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
            .collect();
        allowed.push((segments, methods.join(", ")));
    }
    let _ = ALLOWED.set(allowed);
}

/// The `Allow` value for a request path, if the document has a path it matches (a literal
/// segment wins over a parameter: `/jobs/stats` before `/jobs/{id}`).
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    let want: Vec<&str> = path.trim_matches('/').split('/').collect();
    ALLOWED
        .get()?
        .iter()
        .filter(|(segments, _)| {
            segments.len() == want.len()
                && segments.iter().zip(&want).all(|(s, w)| s.as_deref().is_none_or(|s| s == *w))
        })
        .max_by_key(|(segments, _)| segments.iter().filter(|s| s.is_some()).count())
        .map(|(_, methods)| methods.as_str())
}
