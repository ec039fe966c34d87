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

/// A path of the document as segments, `None` for a `{parameter}`.
pub(crate) struct PathTemplate(Vec<Option<String>>);

impl PathTemplate {
    pub(crate) fn parse(path: &str) -> Self {
        Self(
            path.trim_matches('/')
                .split('/')
                .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                .collect(),
        )
    }

    /// Whether a request path is one of this template's.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let want: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.0.len() == want.len()
            && self.0.iter().zip(&want).all(|(s, w)| s.as_deref().is_none_or(|s| s == *w))
    }

    /// Literal segments: the more, the more specific (`/jobs/stats` before `/jobs/{id}`).
    fn literals(&self) -> usize {
        self.0.iter().filter(|s| s.is_some()).count()
    }
}

/// Each path of the document with its methods.
static ALLOWED: OnceLock<Vec<(PathTemplate, String)>> = OnceLock::new();

/// Remembers the methods of every path of `spec`, mounted under `prefix`.
pub(crate) fn remember_methods(spec: &Value, prefix: &str) {
    let mut allowed = Vec::new();
    for (path, ops) in spec["paths"].as_object().into_iter().flatten() {
        let methods: Vec<String> =
            ops.as_object().into_iter().flatten().map(|(m, _)| m.to_uppercase()).collect();
        allowed.push((PathTemplate::parse(&format!("{prefix}{path}")), methods.join(", ")));
    }
    let _ = ALLOWED.set(allowed);
}

/// The `Allow` value for a request path, if the document has a path it matches.
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    ALLOWED
        .get()?
        .iter()
        .filter(|(template, _)| template.matches(path))
        .max_by_key(|(template, _)| template.literals())
        .map(|(_, methods)| methods.as_str())
}
