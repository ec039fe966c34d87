//! The one typed configuration of every Switchyard process.
//!
//! Sources, later ones winning: built-in defaults → an optional TOML file → environment
//! variables → command-line flags (the binary applies those). [`Config::validate`] runs at
//! start and names the setting that is wrong.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use serde::Deserialize;

mod setting;

pub use setting::{Section, Setting, SettingInfo, markdown_table};
use setting::{any, at_least, between, http_url, positive, settings};

use crate::{
    queue::QueueName,
    schedules::{self, ScheduleName},
    secret::Secret,
};

/// A setting that cannot be used, named the way the operator wrote it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {message}")]
    Invalid { setting: String, message: String },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { setting: setting.into(), message: message.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, human-readable when it is.
    #[default]
    Auto,
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected json, pretty or auto, got {other:?}")),
        }
    }
}

/// Which store and queue a process uses, decided by `DATABASE_URL` and `REDIS_URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

settings! {
    /// Every setting of every process. Sections are TOML tables in the file.
    pub struct Config {
        /// HTTP listen address of `api` and `dev` (`--listen`).
        listen: SocketAddr = "127.0.0.1:8080", "SWITCHYARD_LISTEN", any;
        /// Metrics and health address of `worker` and `scheduler` (`--metrics-listen`).
        metrics_listen: SocketAddr = "127.0.0.1:9464", "SWITCHYARD_METRICS_LISTEN", any;
        /// Data dir of the embedded mode: SQLite files, dev keys (`--data-dir`).
        data_dir: PathBuf = "./.switchyard", "SWITCHYARD_DATA_DIR", any;
        /// Unset or `sqlite:…`: SQLite in the data dir; `postgres://…`: PostgreSQL.
        database_url: Option<Secret<String>> = "", "DATABASE_URL", database_url;
        /// Set: fleet mode (the apalis-redis queue, Redis locks and limits).
        redis_url: Option<Secret<String>> = "", "REDIS_URL", redis_url;
        /// Prefix of every Redis key and queue name, so that deployments can share a Redis.
        namespace: String = "switchyard", "SWITCHYARD_NAMESPACE", namespace;
        /// Log format: `json`, `pretty`, or `auto` (JSON unless stdout is a terminal).
        log_format: LogFormat = "auto", "SWITCHYARD_LOG_FORMAT", any;
        /// A tracing filter such as `info` or `info,switchyard_worker=debug`.
        log: String = "info", "SWITCHYARD_LOG", any;
        /// Seconds in-flight work gets after SIGTERM or Ctrl-C.
        shutdown_grace_secs: u64 = "30", "SWITCHYARD_SHUTDOWN_GRACE_SECS", any;
        /// Largest request body the API accepts (413 beyond).
        http_body_limit_bytes: usize = "1048576", "SWITCHYARD_HTTP_BODY_LIMIT_BYTES", positive;
        /// How long a client has to send a request's head, on every HTTP port; on HTTP/1.1
        /// also the wait for the next request on a kept-alive connection.
        http_header_timeout_ms: u64 = "10000", "SWITCHYARD_HTTP_HEADER_TIMEOUT_MS", positive;
        /// A connection with no request in flight and no byte moved for this long is closed.
        http_idle_timeout_ms: u64 = "60000", "SWITCHYARD_HTTP_IDLE_TIMEOUT_MS", positive;
        /// Connections in the store pool.
        database_max_connections: u32 = "16", "SWITCHYARD_DATABASE_MAX_CONNECTIONS", positive;
        /// How long work waits for a store connection; the API then answers 503 with
        /// `Retry-After`, so while the database is down every request fails this fast.
        database_acquire_timeout_ms: u64 = "1000", "SWITCHYARD_DATABASE_ACQUIRE_TIMEOUT_MS", positive;
        /// Redis response timeout (redis-rs' 500 ms turns into fatal worker errors under load).
        redis_response_timeout_ms: u64 = "5000", "SWITCHYARD_REDIS_RESPONSE_TIMEOUT_MS", positive;
        /// Seconds between samples of the queue depth gauges.
        queue_depth_sample_secs: u64 = "5", "SWITCHYARD_QUEUE_DEPTH_SAMPLE_SECS", positive;
        /// A full `sy_…` key made an admin key at start (automation, compose).
        bootstrap_admin_key: Option<Secret<String>> = "", "SWITCHYARD_BOOTSTRAP_ADMIN_KEY", bootstrap_key;
        /// Seconds a validated key is trusted without asking the store; revocation takes
        /// effect everywhere within this (at once in fleet mode).
        auth_cache_ttl_secs: u64 = "30", "SWITCHYARD_AUTH_CACHE_TTL_SECS", positive;
        /// Requests per minute per key unless the key says otherwise.
        rate_limit_per_minute: u32 = "600", "SWITCHYARD_RATE_LIMIT_PER_MINUTE", positive;
        /// Requests per UTC hour per key unless the key says otherwise (0: no hourly quota).
        rate_limit_per_hour: u64 = "0", "SWITCHYARD_RATE_LIMIT_PER_HOUR", any;
        /// Requests per UTC day per key unless the key says otherwise (0: no daily quota).
        rate_limit_per_day: u64 = "0", "SWITCHYARD_RATE_LIMIT_PER_DAY", any;
        /// Requests per UTC calendar month per key unless the key says otherwise (0: none).
        rate_limit_per_month: u64 = "0", "SWITCHYARD_RATE_LIMIT_PER_MONTH", any;
        /// Failed authentications per minute per client address before 429s.
        auth_failure_limit_per_minute: u32 = "30", "SWITCHYARD_AUTH_FAILURE_LIMIT_PER_MINUTE", positive;
        /// Failed authentications from one address within the audit window that leave an
        /// `auth.failures` audit entry (0: none).
        auth_failure_audit_after: u32 = "5", "SWITCHYARD_AUTH_FAILURE_AUDIT_AFTER", any;
        /// Seconds over which failed authentications are tallied into one entry per address.
        auth_failure_audit_secs: u64 = "60", "SWITCHYARD_AUTH_FAILURE_AUDIT_SECS", positive;
        /// A key refused for missing scopes this many times within the suspension window is
        /// suspended (0: never for this).
        key_suspend_after_refusals: u32 = "20", "SWITCHYARD_KEY_SUSPEND_AFTER_REFUSALS", any;
        /// Seconds of the suspension window: refusals are counted over it, and a key kept
        /// over its limit (every request a 429) for this long is suspended (0: never for that).
        key_suspend_window_secs: u64 = "600", "SWITCHYARD_KEY_SUSPEND_WINDOW_SECS", any;
        /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
        trust_forwarded_for: bool = "false", "SWITCHYARD_TRUST_FORWARDED_FOR", any;
        /// Days API usage records are kept (`usage-retention`).
        usage_retention_days: u64 = "30", "SWITCHYARD_USAGE_RETENTION_DAYS", positive;
        /// Days audit log entries are kept (`audit-retention`).
        audit_retention_days: u64 = "365", "SWITCHYARD_AUDIT_RETENTION_DAYS", positive;
        /// Days `event.published` entries are kept: one per event published, by far the
        /// most numerous, so kept like the events themselves rather than like changes.
        audit_publish_retention_days: u64 = "30", "SWITCHYARD_AUDIT_PUBLISH_RETENTION_DAYS", positive;
        /// Usage records waiting to be written; beyond this they are dropped and counted.
        usage_buffer: usize = "10000", "SWITCHYARD_USAGE_BUFFER", positive;
        /// Base64 of 32 bytes: the key sealing webhook secrets and Sikka tokens at rest.
        /// Required with PostgreSQL; embedded, `dev` creates `<data dir>/master.key`.
        master_key: Option<Secret<String>> = "", "SWITCHYARD_MASTER_KEY", any;
        /// A file holding the master key, created (mode 0600) by the first process if it
        /// does not exist: for fleets sharing a volume or a mounted secret.
        master_key_file: Option<PathBuf> = "", "SWITCHYARD_MASTER_KEY_FILE", any;
        @sections {
            webhooks: WebhookConfig,
            pidkey: PidkeyConfig,
            sikka: SikkaConfig,
            worker: WorkerConfig,
            scheduler: SchedulerConfig,
        }
    }
}

settings! {
    pub struct WebhookConfig {
        /// Delays between delivery attempts.
        retry_schedule: String = "5s,5m,30m,2h,5h,10h,10h", "SWITCHYARD_WEBHOOK_RETRY_SCHEDULE", retry_schedule;
        /// Per-attempt timeout.
        timeout_ms: u64 = "15000", "SWITCHYARD_WEBHOOK_TIMEOUT_MS", between(1, 30_000);
        /// Least wait after a 429 or a timeout.
        throttle_floor_ms: u64 = "60000", "SWITCHYARD_WEBHOOK_THROTTLE_FLOOR_MS", any;
        /// Largest event payload (413 beyond).
        max_payload_bytes: usize = "262144", "SWITCHYARD_WEBHOOK_MAX_PAYLOAD_BYTES", positive;
        /// CIDRs webhooks may reach although private or loopback; unset: `127.0.0.0/8,::1/128`
        /// in `dev`, none otherwise.
        allow_cidrs: Option<String> = "", "SWITCHYARD_WEBHOOK_ALLOW_CIDRS", allow_cidrs;
        /// The HTTP proxy deliveries go through (`http://[user:pass@]host:port`); unset: none,
        /// whatever `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` say. Every address a
        /// destination resolves to still passes the SSRF guard first.
        proxy: Option<Secret<String>> = "", "SWITCHYARD_WEBHOOK_PROXY", proxy_url;
        /// Refuse plain-http URLs for endpoints created with live keys.
        require_https_for_live: bool = "true", "SWITCHYARD_WEBHOOK_REQUIRE_HTTPS_FOR_LIVE", any;
        /// Deliveries in flight per endpoint per worker process.
        endpoint_concurrency: usize = "8", "SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", positive;
        /// Deliveries per endpoint waiting in order in a worker for one of its slots; beyond,
        /// they wait in the store (parked) until the line is short again.
        endpoint_queue: usize = "128", "SWITCHYARD_WEBHOOK_ENDPOINT_QUEUE", positive;
        /// Deliveries a worker holds waiting for their endpoint, over all endpoints (room
        /// beyond the worker concurrency; waiting costs no connection).
        waiting: usize = "1024", "SWITCHYARD_WEBHOOK_WAITING", any;
        /// `webhook-retry-sweep` re-enqueues deliveries due this many seconds ago and not
        /// started (a lost push, a claim whose worker died); shorter would enqueue a second
        /// message for each delivery of a backlog merely waiting its turn.
        sweep_grace_secs: u64 = "120", "SWITCHYARD_WEBHOOK_SWEEP_GRACE_SECS", between(0, 604_800);
        /// Consecutive failures at which `webhook-disable-failing` disables an endpoint that
        /// has not succeeded for a day.
        disable_threshold: i64 = "10", "SWITCHYARD_WEBHOOK_DISABLE_THRESHOLD", positive;
        /// Days attempts and payloads are kept (`webhook-delivery-cleanup`).
        retention_days: u64 = "30", "SWITCHYARD_WEBHOOK_RETENTION_DAYS", positive;
    }
}

settings! {
    pub struct PidkeyConfig {
        /// PIDKey's base URL.
        base_url: String = "https://pidkey.com", "SWITCHYARD_PIDKEY_BASE_URL", http_url;
        /// The PIDKey API key; without it PIDKey work fails with a clear error and the daily
        /// sync is off.
        api_key: Option<Secret<String>> = "", "PIDKEY_API_KEY", any;
        /// Keys per PIDKey request (PIDKey takes at most 50).
        batch_size: usize = "50", "SWITCHYARD_PIDKEY_BATCH_SIZE", between(1, 50);
        /// Requests per second to PIDKey, across the fleet.
        rate_per_second: u32 = "5", "SWITCHYARD_PIDKEY_RATE_PER_SECOND", positive;
        /// Seconds per PIDKey request.
        timeout_secs: u64 = "30", "SWITCHYARD_PIDKEY_TIMEOUT_SECS", positive;
        /// Seconds a batch keeps retrying transient failures.
        retry_max_secs: u64 = "120", "SWITCHYARD_PIDKEY_RETRY_MAX_SECS", any;
        /// A product is low when its keys' total remaining is below this.
        low_inventory_threshold: i64 = "5", "SWITCHYARD_PIDMS_LOW_INVENTORY_THRESHOLD", any;
    }
}

settings! {
    pub struct SikkaConfig {
        /// Sikka's base URL.
        base_url: String = "https://api.sikkasoft.com/v4", "SWITCHYARD_SIKKA_BASE_URL", http_url;
        /// Sikka app id; without it and the app key Sikka work fails with a clear error and
        /// `sikka-token-refresh` is off.
        app_id: Option<Secret<String>> = "", "SIKKA_APP_ID", any;
        /// Sikka app key.
        app_key: Option<Secret<String>> = "", "SIKKA_APP_KEY", any;
        /// Seconds per Sikka request.
        timeout_secs: u64 = "30", "SWITCHYARD_SIKKA_TIMEOUT_SECS", positive;
        /// Seconds one Sikka call keeps retrying 429, 503, 504 and timeouts.
        retry_max_secs: u64 = "60", "SWITCHYARD_SIKKA_RETRY_MAX_SECS", any;
        /// `sikka-token-refresh` refreshes request keys expiring within this many seconds.
        refresh_ahead_secs: u64 = "7200", "SWITCHYARD_SIKKA_REFRESH_AHEAD_SECS", any;
        /// First wait before checking a writeback's status; doubles each check.
        poll_initial_ms: u64 = "2000", "SWITCHYARD_SIKKA_POLL_INITIAL_MS", positive;
        /// Longest wait between writeback checks (at least the first wait).
        poll_max_ms: u64 = "30000", "SWITCHYARD_SIKKA_POLL_MAX_MS", any;
        /// A writeback not completed this many seconds after it was accepted fails as stuck.
        stuck_after_secs: u64 = "600", "SWITCHYARD_SIKKA_STUCK_AFTER_SECS", positive;
        /// `sikka-writeback-sweep` re-enqueues steps overdue by this many seconds.
        sweep_grace_secs: u64 = "60", "SWITCHYARD_SIKKA_SWEEP_GRACE_SECS", any;
    }
}

impl SikkaConfig {
    /// Both app credentials are set.
    pub fn has_credentials(&self) -> bool {
        self.app_id.is_some() && self.app_key.is_some()
    }
}

settings! {
    pub struct WorkerConfig {
        /// Queues this worker consumes, comma-separated (`--queues`).
        queues: Vec<QueueName> = "webhooks,pidms,sikka,maintenance", "SWITCHYARD_WORKER_QUEUES", any;
        /// Jobs run at once per queue (`--concurrency`).
        concurrency: usize = "64", "SWITCHYARD_WORKER_CONCURRENCY", positive;
        /// Workers are woken by pushes (a Redis channel in a fleet, in process in `dev`); an
        /// idle worker also asks the queue this often, as a safety net and for pushes from
        /// other processes on the embedded queue.
        poll_interval_ms: u64 = "1000", "SWITCHYARD_WORKER_POLL_INTERVAL_MS", positive;
        /// Jobs fetched per round trip.
        batch_size: usize = "50", "SWITCHYARD_WORKER_BATCH_SIZE", positive;
        /// Seconds between worker heartbeats.
        heartbeat_secs: u64 = "5", "SWITCHYARD_WORKER_HEARTBEAT_SECS", positive;
        /// Heartbeats a worker may miss before its jobs go to others (with the heartbeat,
        /// the orphan window).
        missed_heartbeats: usize = "3", "SWITCHYARD_WORKER_MISSED_HEARTBEATS", positive;
        /// Seconds after which a running job is cancelled and fails.
        job_timeout_secs: u64 = "300", "SWITCHYARD_WORKER_JOB_TIMEOUT_SECS", positive;
    }
}

settings! {
    pub struct SchedulerConfig {
        /// Seconds of the leader lease; a dead leader is replaced within this.
        leader_ttl_secs: u64 = "15", "SWITCHYARD_SCHEDULER_LEADER_TTL_SECS",
            at_least(3, "the lease is renewed every third of it");
        /// Days completed and dead job records are kept (`queue-vacuum`).
        queue_retention_days: u64 = "7", "SWITCHYARD_QUEUE_RETENTION_DAYS", positive;
        @sections {
            /// Cron expression per schedule, by name (5 or 6 fields, or `off`); in the
            /// environment `SWITCHYARD_SCHEDULE_<NAME>`, e.g. `SWITCHYARD_SCHEDULE_QUEUE_VACUUM`.
            schedules: Schedules,
        }
    }
}

/// The cron expressions operators set, by schedule name; the others keep their defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Schedules(BTreeMap<String, String>);

impl Section for Schedules {
    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for name in ScheduleName::ALL {
            if let Some(raw) = env(&name.env_var()) {
                self.0.insert(name.as_str().to_owned(), raw.trim().to_owned());
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (name, expr) in &self.0 {
            let schedule: ScheduleName = name.parse().map_err(|e: String| {
                ConfigError::invalid(format!("scheduler.schedules.{name}"), e)
            })?;
            if schedules::is_off(expr) {
                continue;
            }
            schedules::parse_cron(expr)
                .map_err(|e| ConfigError::invalid(schedule.env_var(), e.to_string()))?;
        }
        Ok(())
    }

    fn describe(_: &str, _: &mut Vec<SettingInfo>) {}
}

fn database_url(url: &Option<Secret<String>>) -> Result<(), String> {
    let Some(url) = url else { return Ok(()) };
    let url = url.expose();
    if ["sqlite:", "postgres://", "postgresql://"].iter().any(|p| url.starts_with(p)) {
        return Ok(());
    }
    Err("must start with sqlite:, postgres:// or postgresql://".to_owned())
}

fn redis_url(url: &Option<Secret<String>>) -> Result<(), String> {
    let Some(url) = url else { return Ok(()) };
    if url.expose().starts_with("redis://") || url.expose().starts_with("rediss://") {
        return Ok(());
    }
    Err("must start with redis:// or rediss://".to_owned())
}

fn namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() || !ns.chars().all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c)) {
        return Err(
            "must be non-empty and use only letters, digits, '-', '_', ':' and '.'".to_owned()
        );
    }
    Ok(())
}

/// The message says what is wrong, never the key itself.
fn bootstrap_key(key: &Option<Secret<String>>) -> Result<(), String> {
    let Some(key) = key else { return Ok(()) };
    crate::access::RawKey::parse(key.expose()).map(|_| ()).map_err(|e| e.to_string())
}

fn retry_schedule(s: &str) -> Result<(), String> {
    crate::webhooks::RetrySchedule::parse(s).map(|_| ())
}

fn allow_cidrs(cidrs: &Option<String>) -> Result<(), String> {
    let Some(cidrs) = cidrs else { return Ok(()) };
    crate::netguard::parse_cidrs(cidrs).map(|_| ())
}

/// The message never repeats the value: it can carry the proxy's password.
fn proxy_url(proxy: &Option<Secret<String>>) -> Result<(), String> {
    let Some(proxy) = proxy else { return Ok(()) };
    let ok = url::Url::parse(proxy.expose()).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    if !ok {
        return Err(
            "must be an http(s) URL with a host, such as http://proxy.internal:3128".to_owned()
        );
    }
    Ok(())
}

/// A comma-separated list of queue names, as `--queues` and `SWITCHYARD_WORKER_QUEUES` take it.
pub fn parse_queue_list(s: &str) -> Result<Vec<QueueName>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let q = part.parse::<QueueName>()?;
        if !out.contains(&q) {
            out.push(q);
        }
    }
    if out.is_empty() {
        return Err("at least one queue is needed".to_owned());
    }
    Ok(out)
}

impl Config {
    /// Defaults, then the TOML file if one is given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, &|name| std::env::var(name).ok())
    }

    /// As [`Config::load`], reading variables through `env` (tests pass a map).
    pub fn load_with(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_toml_file(path)?,
            None => Self::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { path: path.to_owned(), message: e.to_string() })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::File { path: path.to_owned(), message: e.to_string() })
    }

    /// Every declared setting, in declaration order (the README's table).
    pub fn settings() -> Vec<SettingInfo> {
        let mut out = Vec::new();
        <Self as Section>::describe("", &mut out);
        out
    }

    /// Checks every setting against its bounds, then the rules that tie two together, and
    /// returns the first one that cannot work, by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check()?;
        let k = &self.sikka;
        if k.app_id.is_some() != k.app_key.is_some() {
            let missing = if k.app_id.is_none() { "SIKKA_APP_ID" } else { "SIKKA_APP_KEY" };
            return Err(ConfigError::invalid(missing, "is needed with the other Sikka credential"));
        }
        if k.poll_max_ms < k.poll_initial_ms {
            return Err(ConfigError::invalid(
                "SWITCHYARD_SIKKA_POLL_MAX_MS",
                "must be at least SWITCHYARD_SIKKA_POLL_INITIAL_MS",
            ));
        }
        Ok(())
    }

    pub fn store_kind(&self) -> StoreKind {
        match &self.database_url {
            Some(url) if url.expose().starts_with("postgres") => StoreKind::Postgres,
            _ => StoreKind::Sqlite,
        }
    }

    pub fn is_fleet_queue(&self) -> bool {
        self.redis_url.is_some()
    }

    /// The SSRF allowlist (validated at start). `switchyard dev` sets loopback when unset.
    pub fn webhook_allowlist(&self) -> Vec<crate::netguard::Cidr> {
        self.webhooks
            .allow_cidrs
            .as_deref()
            .map(|s| crate::netguard::parse_cidrs(s).unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The cron expression in force for a schedule: the configured one, else its default.
    /// `None` when the schedule is switched off.
    pub fn schedule_expr(&self, name: ScheduleName) -> Option<String> {
        let expr = self
            .scheduler
            .schedules
            .0
            .get(name.as_str())
            .cloned()
            .unwrap_or_else(|| name.default_cron().to_owned());
        (!schedules::is_off(&expr)).then_some(expr)
    }
}

#[cfg(test)]
mod tests;
