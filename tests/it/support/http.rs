//! Typed requests for tests: send, expect a status, get the JSON back, or fail naming the
//! request and what came back.

use super::TestApp;

/// Sends `request`, expecting `expect`: the answer's JSON (`Null` when empty, a JSON string
/// when it is not JSON). Another status fails the test with `what` and the body.
pub async fn expect_status(
    request: reqwest::RequestBuilder,
    expect: u16,
    what: &str,
) -> serde_json::Value {
    let resp = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, expect, "{what} answered {status}: {text}");
    if text.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

impl TestApp {
    /// `method path` with the admin key (and `body` as JSON when given), expecting `expect`:
    /// the answer's JSON (`Null` when empty). Another status fails the test, naming the
    /// request and the body that came back.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        expect: u16,
    ) -> serde_json::Value {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        expect_status(request, expect, &format!("{method} {path}")).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        expect: u16,
    ) -> serde_json::Value {
        self.call(reqwest::Method::POST, path, Some(body), expect).await
    }

    pub async fn patch_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        expect: u16,
    ) -> serde_json::Value {
        self.call(reqwest::Method::PATCH, path, Some(body), expect).await
    }

    pub async fn get_expect(&self, path: &str, expect: u16) -> serde_json::Value {
        self.call(reqwest::Method::GET, path, None, expect).await
    }

    pub async fn delete_expect(&self, path: &str, expect: u16) -> serde_json::Value {
        self.call(reqwest::Method::DELETE, path, None, expect).await
    }
}
