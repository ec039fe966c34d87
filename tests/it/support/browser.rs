//! A real headless Chromium, driven over the W3C WebDriver protocol (chromedriver on a
//! loopback port, spoken to with reqwest: no WebDriver crate needed for these few commands).
//! Without Debian's `chromium` and `chromium-driver` the console tests skip loudly locally
//! and fail under `CI=true` (`.ci/run` installs both).

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::{Value, json};

use super::{free_port, skip_or_fail, wait_for, which};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
}

impl Browser {
    /// Chromium at 1280×800, or `None` (after saying so) when it is not installed.
    pub async fn start() -> Option<Self> {
        let (Some(chromium), Some(driver)) = (which("chromium"), which("chromedriver")) else {
            skip_or_fail(
                "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        let port = free_port();
        let driver = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver to be ready", Duration::from_secs(20), || async {
            let r = http.get(format!("{base}/status")).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,800", "--no-first-run", "--disable-extensions"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"))
            .to_owned();
        Some(Self { http, session: format!("{base}/session/{session}"), _driver: driver })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = resp["value"]["error"].as_str() {
            panic!("WebDriver {method} {path}: {err}: {}", resp["value"]["message"]);
        }
        resp["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// The first element matching an XPath expression, if any now.
    pub async fn find(&self, xpath: &str) -> Option<String> {
        let found = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "xpath", "value": xpath})),
            )
            .await;
        found.as_array()?.first().and_then(|e| e[ELEMENT].as_str()).map(str::to_owned)
    }

    /// Waits for an element matching `xpath` (the pages render asynchronously).
    pub async fn wait(&self, xpath: &str) -> String {
        wait_for(&format!("an element at {xpath}"), Duration::from_secs(15), || self.find(xpath))
            .await
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        let path = format!("/element/{element}/value");
        self.cmd(reqwest::Method::POST, &path, Some(json!({"text": text}))).await;
    }

    pub async fn click(&self, element: &str) {
        self.cmd(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({})))
            .await;
    }

    /// Runs `body` (a function body) in the page; its return value.
    pub async fn script(&self, body: &str) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": body, "args": []})))
            .await
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.script("return document.body.innerText").await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn screenshot(&self, path: &Path) {
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            png.as_str().unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub async fn resize(&self, width: u32, height: u32) {
        let rect = json!({"width": width, "height": height});
        self.cmd(reqwest::Method::POST, "/window/rect", Some(rect)).await;
    }

    /// Browser console entries since the last call (errors are level `SEVERE`).
    pub async fn console(&self) -> Vec<Value> {
        let logs =
            self.cmd(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        logs.as_array().cloned().unwrap_or_default()
    }

    pub async fn quit(self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
    }
}
