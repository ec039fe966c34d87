//! Test support: an isolated environment per test (its own SQLite files, or its own Postgres
//! database and Redis namespace), the app in process on port 0, the real binary as child
//! processes, a TCP proxy that can cut a dependency off, and condition waits with deadlines.
//!
//! A test that needs Postgres or Redis skips loudly when they are unreachable, and fails
//! instead under `CI=true`.

pub mod browser;
mod http;
pub mod proxy;
pub mod receiver;

pub use http::expect_status;

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use switchyard_shared::{CancellationToken, config::Config, services::Services, telemetry};

/// An audit entry for changes a test makes below the API.
pub fn test_audit() -> switchyard_shared::audit::AuditEntry {
    let actor = switchyard_shared::audit::Actor::default();
    let platform = switchyard_shared::tenants::Owner::Platform;
    switchyard_shared::audit::AuditEntry::new(&actor, &platform, "test.change", "test")
}

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite store + apalis-sqlite queue.
    Embedded,
    /// PostgreSQL store + apalis-redis queue.
    Fleet,
}

/// Runs one async scenario against both backends, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                if let Some(env) =
                    $crate::support::TestEnv::new($crate::support::Backend::Embedded).await
                {
                    super::$scenario(env).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fleet() {
                if let Some(env) =
                    $crate::support::TestEnv::new($crate::support::Backend::Fleet).await
                {
                    super::$scenario(env).await;
                }
            }
        }
    };
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Says loudly that a test cannot run here; under CI that is a failure.
pub fn skip_or_fail(what: &str) {
    if in_ci() {
        panic!("CI=true and {what}: this test must run in CI");
    }
    eprintln!("\n*** SKIPPED: {what}. .ci/run installs and starts what the tests need. ***\n");
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", ulid::Ulid::generate().to_string().to_lowercase())
}

/// An isolated environment: settings for the in-process app and for child processes.
pub struct TestEnv {
    pub backend: Backend,
    pub dir: PathBuf,
    vars: BTreeMap<String, String>,
    pg_db: Option<String>,
    namespace: String,
    admin_key: String,
}

impl TestEnv {
    /// `None` (after a loud message) when the backend's services are unreachable locally.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = std::env::temp_dir().join(unique("switchyard-test-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let namespace = unique("sytest-");
        let admin_key = switchyard_shared::access::RawKey::generate(
            switchyard_shared::access::Environment::Test,
        )
        .expose()
        .to_owned();
        let mut vars = BTreeMap::new();
        for (k, v) in [
            ("SWITCHYARD_DATA_DIR", dir.display().to_string()),
            ("SWITCHYARD_NAMESPACE", namespace.clone()),
            ("SWITCHYARD_LOG_FORMAT", "json".into()),
            ("SWITCHYARD_LOG", "info".into()),
            ("SWITCHYARD_WORKER_POLL_INTERVAL_MS", "20".into()),
            ("SWITCHYARD_WORKER_HEARTBEAT_SECS", "1".into()),
            ("SWITCHYARD_WORKER_MISSED_HEARTBEATS", "2".into()),
            ("SWITCHYARD_SCHEDULER_LEADER_TTL_SECS", "3".into()),
            ("SWITCHYARD_QUEUE_DEPTH_SAMPLE_SECS", "1".into()),
            ("SWITCHYARD_SHUTDOWN_GRACE_SECS", "10".into()),
            ("SWITCHYARD_DATABASE_MAX_CONNECTIONS", "5".into()),
            ("SWITCHYARD_BOOTSTRAP_ADMIN_KEY", admin_key.clone()),
            // Webhooks: a compressed retry schedule, short timeouts, loopback receivers.
            ("SWITCHYARD_WEBHOOK_RETRY_SCHEDULE", "200ms,400ms,800ms".into()),
            ("SWITCHYARD_WEBHOOK_TIMEOUT_MS", "1000".into()),
            ("SWITCHYARD_WEBHOOK_THROTTLE_FLOOR_MS", "300".into()),
            ("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8,::1/128".into()),
        ] {
            vars.insert(k.to_owned(), v);
        }
        // Schedules are off unless a test switches one on.
        for name in switchyard_shared::schedules::ScheduleName::ALL {
            vars.insert(name.env_var(), "off".into());
        }
        let mut pg_db = None;
        if backend == Backend::Fleet {
            let db = unique("sy_test_");
            if let Err(e) = create_database(&db).await {
                skip_or_fail(&format!("PostgreSQL at 127.0.0.1:5432 is unreachable ({e})"));
                return None;
            }
            if let Err(e) = ping_redis(REDIS_URL).await {
                drop_database(db);
                skip_or_fail(&format!("Redis at 127.0.0.1:6379 is unreachable ({e})"));
                return None;
            }
            vars.insert(
                "DATABASE_URL".into(),
                format!("postgres://postgres@127.0.0.1:5432/{db}?sslmode=disable"),
            );
            vars.insert("REDIS_URL".into(), REDIS_URL.into());
            // Every process of a fleet shares the master key.
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            vars.insert(
                "SWITCHYARD_MASTER_KEY".into(),
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key),
            );
            pg_db = Some(db);
        }
        Some(Self { backend, dir, vars, pg_db, namespace, admin_key })
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.vars.insert(key.to_owned(), value.into());
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.vars.remove(key);
        self
    }

    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// The admin key every test app is bootstrapped with.
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn config(&self) -> Config {
        let config = Config::load_with(None, &|k| self.vars.get(k).cloned()).expect("test config");
        config.validate().expect("valid test config");
        config
    }

    pub async fn services(&self) -> Services {
        telemetry::install();
        Services::open(self.config()).await.expect("open store and queue")
    }

    /// Starts the whole system in this process (as `switchyard dev` does), API on port 0.
    pub async fn start_app(&self) -> TestApp {
        self.start(true).await
    }

    /// Only the API (no workers, no scheduler), e.g. a second API process of a fleet.
    pub async fn start_api_only(&self) -> TestApp {
        self.start(false).await
    }

    async fn start(&self, with_workers: bool) -> TestApp {
        let services = self.services().await;
        let shutdown = CancellationToken::new();
        let (listener, addr) =
            switchyard_api::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
        let mut tasks = vec![tokio::spawn({
            let (services, shutdown) = (services.clone(), shutdown.clone());
            async move {
                switchyard_api::run(services, listener, shutdown).await.expect("api");
            }
        })];
        if with_workers {
            let scheduler =
                switchyard_scheduler::Scheduler::new(services.clone()).expect("scheduler");
            tasks.push(tokio::spawn(scheduler.run(shutdown.clone())));
            let opts = switchyard_worker::WorkerOptions::from_config(&services.config);
            tasks.push(tokio::spawn({
                let (services, shutdown) = (services.clone(), shutdown.clone());
                async move {
                    switchyard_worker::run(services, opts, shutdown).await.expect("workers");
                }
            }));
        }
        let app = TestApp {
            base: format!("http://{addr}"),
            addr,
            services,
            shutdown,
            tasks,
            http: http_with_key(&self.admin_key),
            anonymous: http(),
        };
        app.wait_serving().await;
        app
    }

    /// `switchyard api` as a child process on a free port, once it answers; with its base URL.
    pub async fn spawn_api(&mut self) -> (ChildProcess, String) {
        let port = free_port();
        self.set("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"));
        let base = format!("http://127.0.0.1:{port}");
        let api = self.spawn("api", &["api"]);
        wait_healthy(&base, &api).await;
        (api, base)
    }

    /// A worker or scheduler child process (`args` after the role) on a free metrics port,
    /// once it answers; with the base URL of its metrics and probes.
    pub async fn spawn_role(&self, role: &str, args: &[&str]) -> (ChildProcess, String) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![role, "--metrics-listen", &listen];
        all.extend_from_slice(args);
        let child = self.spawn(role, &all);
        let base = format!("http://{listen}");
        wait_healthy(&base, &child).await;
        (child, base)
    }

    /// Spawns the real binary with this environment; stdout and stderr go to a log file.
    pub fn spawn(&self, name: &str, args: &[&str]) -> ChildProcess {
        let log = self.dir.join(format!("{name}-{}.log", unique("")));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.vars)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn switchyard");
        ChildProcess { child, log }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(db) = self.pg_db.take() {
            drop_database(db);
        }
        if self.backend == Backend::Fleet {
            delete_namespace(self.namespace.clone());
        }
    }
}

async fn create_database(name: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn =
        tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(PG_ADMIN_URL))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Drops a test database from a thread of its own (Drop cannot await).
fn drop_database(name: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(PG_ADMIN_URL).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            }
        });
    })
    .join();
}

fn delete_namespace(namespace: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _ = rt.block_on(switchyard_shared::queue::delete_namespace(REDIS_URL, &namespace));
    })
    .join();
}

async fn ping_redis(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn =
        tokio::time::timeout(Duration::from_secs(3), client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| e.to_string())?;
    Ok(())
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

/// A client that sends `Authorization: Bearer <key>` on every request.
pub fn http_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .expect("http client")
}

/// The system running in this test process.
pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub services: Services,
    pub shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Sends the admin key.
    pub http: reqwest::Client,
    /// Sends no key.
    pub anonymous: reqwest::Client,
}

impl TestApp {
    /// Waits until the server answers (it starts serving after the bootstrap key is in place).
    async fn wait_serving(&self) {
        wait_for("the API to serve", Duration::from_secs(20), || async {
            let resp = self.anonymous.get(self.url("/healthz")).send().await.ok()?;
            resp.status().is_success().then_some(())
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Creates a key through the API with the admin key; returns (id, raw key).
    pub async fn create_key(&self, body: serde_json::Value) -> (String, String) {
        let v = self.post_json("/api/v1/api-keys", &body, 201).await;
        (v["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned())
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("app stops within its grace period")
                .expect("app task");
        }
    }
}

/// A `switchyard` child process.
pub struct ChildProcess {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl ChildProcess {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running child")
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// Waits for exit and returns the exit code.
    pub async fn wait(mut self, within: Duration) -> Option<i32> {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("process did not exit within {within:?}; log:\n{}", self.log_text())
            })
            .expect("wait");
        status.code()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs one query against the test's store, whichever backend it is, e.g.
/// `store_query!(app.services.store, (i64,), "SELECT COUNT(*) FROM t", fetch_one)`.
#[macro_export]
macro_rules! store_query {
    ($store:expr, $row:ty, $sql:expr, $fetch:ident $(, $bind:expr)*) => {
        match &$store {
            switchyard_shared::store::Store::Sqlite(p, _) => {
                sqlx::query_as::<_, $row>($sql)$(.bind($bind))*.$fetch(p).await.unwrap()
            }
            switchyard_shared::store::Store::Postgres(p, _) => {
                sqlx::query_as::<_, $row>($sql)$(.bind($bind))*.$fetch(p).await.unwrap()
            }
        }
    };
}

pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A free TCP port on loopback (for child processes, which pick their own listeners).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until a child's HTTP endpoint answers `/healthz`.
pub async fn wait_healthy(base: &str, child: &ChildProcess) {
    let client = http();
    let url = format!("{base}/healthz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base} never became healthy; log:\n{}",
            child.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET `url` with `client` and parse the JSON body (panics on a transport or JSON error).
pub async fn get_value(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// The log filter of tests that search every line for secrets.
pub const TRACE_LOG: &str =
    "debug,switchyard_worker=trace,switchyard_shared=trace,switchyard_api=trace";

/// A program on the PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join(program)).find(|p| p.is_file())
    })
}

/// promtool, or a loud skip (a failure under CI).
pub fn promtool() -> Option<PathBuf> {
    let found = which("promtool");
    if found.is_none() {
        skip_or_fail("promtool is not installed (Debian package `prometheus`)");
    }
    found
}

/// Runs promtool in `dir` with `stdin`; panics with its output unless it succeeds.
pub fn run_promtool(promtool: &Path, dir: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = std::process::Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A webhook endpoint written straight to the store, past the API's URL checks (to reach
/// the SSRF guard at connect time).
pub async fn insert_endpoint(services: &Services, url: &str, event_types: &str) -> String {
    let id = format!("ep_{}", ulid::Ulid::generate());
    let secret = switchyard_shared::webhooks::generate_secret();
    let sealed =
        services.cipher.seal(&switchyard_shared::webhooks::secret_context(&id), secret.as_bytes());
    let endpoint = switchyard_shared::webhooks::NewEndpoint {
        id: id.clone().into(),
        url: url.to_owned(),
        description: None,
        event_types: event_types.to_owned(),
        secret_sealed: sealed,
        rate_limit_per_second: None,
        environment: "test".into(),
        created_by: None,
        tenant_id: switchyard_shared::tenants::Owner::Platform,
    };
    let audit = test_audit();
    services.store.insert_endpoint(&endpoint, chrono::Utc::now(), &audit).await.unwrap();
    id
}
