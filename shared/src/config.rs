//! The one typed configuration of every Switchyard process.
//!
//! Sources, later ones winning: built-in defaults → an optional TOML file → environment
//! variables → command-line flags (the binary applies those). [`Config::validate`] runs at
//! start and names the setting that is wrong.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use serde::Deserialize;

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
    fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address of `api` and `dev`. `SWITCHYARD_LISTEN`.
    pub listen: SocketAddr,
    /// Metrics/health address of `worker` and `scheduler`. `SWITCHYARD_METRICS_LISTEN`.
    pub metrics_listen: SocketAddr,
    /// Data dir of the embedded mode (SQLite files, dev keys). `SWITCHYARD_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`: unset or `sqlite:` → SQLite in the data dir; `postgres://` → PostgreSQL.
    pub database_url: Option<Secret<String>>,
    /// `REDIS_URL`: set → fleet mode (apalis-redis queue, Redis locks and limits).
    pub redis_url: Option<Secret<String>>,
    /// Prefix of every Redis key and queue name, so that several deployments (or tests)
    /// can share one Redis. `SWITCHYARD_NAMESPACE`.
    pub namespace: String,
    /// `SWITCHYARD_LOG_FORMAT`: json, pretty or auto.
    pub log_format: LogFormat,
    /// `SWITCHYARD_LOG`: a tracing filter such as `info` or `info,switchyard_worker=debug`.
    pub log: String,
    /// Grace period for in-flight work after SIGTERM/Ctrl-C. `SWITCHYARD_SHUTDOWN_GRACE_SECS`.
    pub shutdown_grace_secs: u64,
    /// Largest request body the API accepts (413 beyond). `SWITCHYARD_HTTP_BODY_LIMIT_BYTES`.
    pub http_body_limit_bytes: usize,
    /// How long a client has to send a request's head, on every HTTP port; on HTTP/1.1 it
    /// also bounds the wait for the next request on a kept-alive connection (hyper counts
    /// that wait as header reading). `SWITCHYARD_HTTP_HEADER_TIMEOUT_MS`.
    pub http_header_timeout_ms: u64,
    /// A connection with no request in flight and no byte read or written for this long is
    /// closed (HTTP/2 included). `SWITCHYARD_HTTP_IDLE_TIMEOUT_MS`.
    pub http_idle_timeout_ms: u64,
    /// Connections in the store pool. `SWITCHYARD_DATABASE_MAX_CONNECTIONS`.
    pub database_max_connections: u32,
    /// How long work waits for a store connection before giving up (the API then answers
    /// 503 with `Retry-After`): while the database is down, every request fails this fast.
    /// `SWITCHYARD_DATABASE_ACQUIRE_TIMEOUT_MS`.
    pub database_acquire_timeout_ms: u64,
    /// Redis response timeout (redis-rs defaults to 500 ms, which apalis turns into a fatal
    /// worker error under load). `SWITCHYARD_REDIS_RESPONSE_TIMEOUT_MS`.
    pub redis_response_timeout_ms: u64,
    /// How often queue depth gauges are sampled. `SWITCHYARD_QUEUE_DEPTH_SAMPLE_SECS`.
    pub queue_depth_sample_secs: u64,
    /// A full `sy_…` key made an admin key at start (automation, compose).
    /// `SWITCHYARD_BOOTSTRAP_ADMIN_KEY`.
    pub bootstrap_admin_key: Option<Secret<String>>,
    /// How long a validated key is trusted without asking the store; revocation takes effect
    /// everywhere within this (at once in fleet mode). `SWITCHYARD_AUTH_CACHE_TTL_SECS`.
    pub auth_cache_ttl_secs: u64,
    /// Requests per minute per key unless the key says otherwise.
    /// `SWITCHYARD_RATE_LIMIT_PER_MINUTE`.
    pub rate_limit_per_minute: u32,
    /// Failed authentications per minute per client address before 429s.
    /// `SWITCHYARD_AUTH_FAILURE_LIMIT_PER_MINUTE`.
    pub auth_failure_limit_per_minute: u32,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    /// `SWITCHYARD_TRUST_FORWARDED_FOR`.
    pub trust_forwarded_for: bool,
    /// API usage records older than this are deleted by `usage-retention`.
    /// `SWITCHYARD_USAGE_RETENTION_DAYS`.
    pub usage_retention_days: u64,
    /// Usage records waiting to be written; beyond this they are dropped and counted.
    /// `SWITCHYARD_USAGE_BUFFER`.
    pub usage_buffer: usize,
    /// Base64 of 32 bytes: the key that seals webhook secrets and Sikka tokens at rest.
    /// Required with PostgreSQL; embedded, it is created in the data dir. `SWITCHYARD_MASTER_KEY`.
    pub master_key: Option<Secret<String>>,
    /// A file holding the master key (base64), created (mode 0600) by the first process to
    /// start if it does not exist: for fleets that share a volume or a mounted secret.
    /// `SWITCHYARD_MASTER_KEY_FILE`.
    pub master_key_file: Option<PathBuf>,
    pub webhooks: WebhookConfig,
    pub pidkey: PidkeyConfig,
    pub sikka: SikkaConfig,
    pub worker: WorkerConfig,
    pub scheduler: SchedulerConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Delays between attempts. `SWITCHYARD_WEBHOOK_RETRY_SCHEDULE`.
    pub retry_schedule: String,
    /// Per-attempt timeout (at most 30 s). `SWITCHYARD_WEBHOOK_TIMEOUT_MS`.
    pub timeout_ms: u64,
    /// Least wait after a 429 or a timeout. `SWITCHYARD_WEBHOOK_THROTTLE_FLOOR_MS`.
    pub throttle_floor_ms: u64,
    /// Largest event payload (413 beyond). `SWITCHYARD_WEBHOOK_MAX_PAYLOAD_BYTES`.
    pub max_payload_bytes: usize,
    /// CIDRs webhooks may reach although private or loopback. Unset: loopback in `dev`,
    /// nothing otherwise. `SWITCHYARD_WEBHOOK_ALLOW_CIDRS`.
    pub allow_cidrs: Option<String>,
    /// The HTTP proxy deliveries go through (`http://[user:pass@]host:port`). Unset: none,
    /// whatever `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` say (a proxy resolves names
    /// itself, past the SSRF guard). With one, each destination is still resolved here and
    /// every address it has must pass the guard before the request is handed over.
    /// `SWITCHYARD_WEBHOOK_PROXY`.
    pub proxy: Option<Secret<String>>,
    /// Refuse plain-http URLs for endpoints created with live keys.
    /// `SWITCHYARD_WEBHOOK_REQUIRE_HTTPS_FOR_LIVE`.
    pub require_https_for_live: bool,
    /// Deliveries in flight per endpoint per worker process.
    /// `SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY`.
    pub endpoint_concurrency: usize,
    /// Deliveries per endpoint that wait in order in a worker process for one of its slots;
    /// beyond that they wait in the store (parked) until the line is short again.
    /// `SWITCHYARD_WEBHOOK_ENDPOINT_QUEUE`.
    pub endpoint_queue: usize,
    /// Deliveries a worker process holds waiting for their endpoint, over all endpoints
    /// (room beyond `SWITCHYARD_WORKER_CONCURRENCY`; waiting costs no connection).
    /// `SWITCHYARD_WEBHOOK_WAITING`.
    pub waiting: usize,
    /// Consecutive failures at which `webhook-disable-failing` disables an endpoint that has
    /// not succeeded for a day. `SWITCHYARD_WEBHOOK_DISABLE_THRESHOLD`.
    pub disable_threshold: i64,
    /// Attempts and payloads older than this are deleted by `webhook-delivery-cleanup`.
    /// `SWITCHYARD_WEBHOOK_RETENTION_DAYS`.
    pub retention_days: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retry_schedule: "5s,5m,30m,2h,5h,10h,10h".to_owned(),
            timeout_ms: 15_000,
            throttle_floor_ms: 60_000,
            max_payload_bytes: 256 * 1024,
            allow_cidrs: None,
            proxy: None,
            require_https_for_live: true,
            endpoint_concurrency: 8,
            endpoint_queue: 128,
            waiting: 1024,
            disable_threshold: 10,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PidkeyConfig {
    /// `SWITCHYARD_PIDKEY_BASE_URL`.
    pub base_url: String,
    /// `PIDKEY_API_KEY`; without it PIDKey work fails with a clear error and the daily sync
    /// is off.
    pub api_key: Option<Secret<String>>,
    /// Keys per request (PIDKey takes at most 50). `SWITCHYARD_PIDKEY_BATCH_SIZE`.
    pub batch_size: usize,
    /// Requests per second to PIDKey, across the fleet. `SWITCHYARD_PIDKEY_RATE_PER_SECOND`.
    pub rate_per_second: u32,
    /// Per-request timeout. `SWITCHYARD_PIDKEY_TIMEOUT_SECS`.
    pub timeout_secs: u64,
    /// How long a batch keeps retrying transient failures. `SWITCHYARD_PIDKEY_RETRY_MAX_SECS`.
    pub retry_max_secs: u64,
    /// A product is low when its keys' total remaining is below this.
    /// `SWITCHYARD_PIDMS_LOW_INVENTORY_THRESHOLD`.
    pub low_inventory_threshold: i64,
}

impl Default for PidkeyConfig {
    fn default() -> Self {
        Self {
            base_url: "https://pidkey.com".to_owned(),
            api_key: None,
            batch_size: 50,
            rate_per_second: 5,
            timeout_secs: 30,
            retry_max_secs: 120,
            low_inventory_threshold: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SikkaConfig {
    /// `SWITCHYARD_SIKKA_BASE_URL`.
    pub base_url: String,
    /// `SIKKA_APP_ID`; without it and `SIKKA_APP_KEY` Sikka work fails with a clear error and
    /// `sikka-token-refresh` is off.
    pub app_id: Option<Secret<String>>,
    /// `SIKKA_APP_KEY`.
    pub app_key: Option<Secret<String>>,
    /// Per-request timeout. `SWITCHYARD_SIKKA_TIMEOUT_SECS`.
    pub timeout_secs: u64,
    /// How long one call keeps retrying 429/503/504 and timeouts.
    /// `SWITCHYARD_SIKKA_RETRY_MAX_SECS`.
    pub retry_max_secs: u64,
    /// `sikka-token-refresh` refreshes keys expiring within this.
    /// `SWITCHYARD_SIKKA_REFRESH_AHEAD_SECS`.
    pub refresh_ahead_secs: u64,
    /// First wait before checking a writeback's status; doubles each check.
    /// `SWITCHYARD_SIKKA_POLL_INITIAL_MS`.
    pub poll_initial_ms: u64,
    /// Longest wait between checks. `SWITCHYARD_SIKKA_POLL_MAX_MS`.
    pub poll_max_ms: u64,
    /// A writeback not completed this long after it was accepted fails as stuck.
    /// `SWITCHYARD_SIKKA_STUCK_AFTER_SECS`.
    pub stuck_after_secs: u64,
    /// `sikka-writeback-sweep` re-enqueues steps overdue by this much.
    /// `SWITCHYARD_SIKKA_SWEEP_GRACE_SECS`.
    pub sweep_grace_secs: u64,
}

impl Default for SikkaConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.sikkasoft.com/v4".to_owned(),
            app_id: None,
            app_key: None,
            timeout_secs: 30,
            retry_max_secs: 60,
            refresh_ahead_secs: 2 * 3600,
            poll_initial_ms: 2_000,
            poll_max_ms: 30_000,
            stuck_after_secs: 600,
            sweep_grace_secs: 60,
        }
    }
}

impl SikkaConfig {
    /// Both app credentials are set.
    pub fn has_credentials(&self) -> bool {
        self.app_id.is_some() && self.app_key.is_some()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Queues this worker consumes. `SWITCHYARD_WORKER_QUEUES` (comma-separated).
    pub queues: Vec<QueueName>,
    /// Jobs run at once per queue. `SWITCHYARD_WORKER_CONCURRENCY`.
    pub concurrency: usize,
    /// Workers are woken by pushes (a Redis channel in a fleet, in process in `dev`); an idle
    /// worker also asks the queue this often, as a safety net and for pushes from other
    /// processes on the embedded queue. `SWITCHYARD_WORKER_POLL_INTERVAL_MS`.
    pub poll_interval_ms: u64,
    /// Jobs fetched per round trip. `SWITCHYARD_WORKER_BATCH_SIZE`.
    pub batch_size: usize,
    /// Worker heartbeat. `SWITCHYARD_WORKER_HEARTBEAT_SECS`.
    pub heartbeat_secs: u64,
    /// Heartbeats a worker may miss before its jobs are handed to others; with the heartbeat
    /// this is the orphan window. `SWITCHYARD_WORKER_MISSED_HEARTBEATS`.
    pub missed_heartbeats: usize,
    /// A job running longer than this is cancelled and fails. `SWITCHYARD_WORKER_JOB_TIMEOUT_SECS`.
    pub job_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Leader lease; a dead leader is replaced within this. `SWITCHYARD_SCHEDULER_LEADER_TTL_SECS`.
    pub leader_ttl_secs: u64,
    /// Completed and dead job records older than this are trimmed by `queue-vacuum`.
    /// `SWITCHYARD_QUEUE_RETENTION_DAYS`.
    pub queue_retention_days: u64,
    /// Cron expression per schedule (5 or 6 fields, or `off`). `SWITCHYARD_SCHEDULE_<NAME>`,
    /// e.g. `SWITCHYARD_SCHEDULE_QUEUE_VACUUM="0 3 * * *"`.
    pub schedules: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            data_dir: PathBuf::from("./.switchyard"),
            database_url: None,
            redis_url: None,
            namespace: "switchyard".to_owned(),
            log_format: LogFormat::Auto,
            log: "info".to_owned(),
            shutdown_grace_secs: 30,
            http_body_limit_bytes: 1024 * 1024,
            http_header_timeout_ms: 10_000,
            http_idle_timeout_ms: 60_000,
            database_max_connections: 16,
            database_acquire_timeout_ms: 1_000,
            redis_response_timeout_ms: 5_000,
            queue_depth_sample_secs: 5,
            bootstrap_admin_key: None,
            auth_cache_ttl_secs: 30,
            rate_limit_per_minute: 600,
            auth_failure_limit_per_minute: 30,
            trust_forwarded_for: false,
            usage_retention_days: 30,
            usage_buffer: 10_000,
            master_key: None,
            master_key_file: None,
            webhooks: WebhookConfig::default(),
            pidkey: PidkeyConfig::default(),
            sikka: SikkaConfig::default(),
            worker: WorkerConfig::default(),
            scheduler: SchedulerConfig::default(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: QueueName::ALL.to_vec(),
            concurrency: 64,
            poll_interval_ms: 1000,
            batch_size: 50,
            heartbeat_secs: 5,
            missed_heartbeats: 3,
            job_timeout_secs: 300,
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { leader_ttl_secs: 15, queue_retention_days: 7, schedules: BTreeMap::new() }
    }
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

fn set_from_env<T>(
    slot: &mut T,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    if let Some(raw) = env(name) {
        *slot =
            raw.trim().parse().map_err(|e: T::Err| ConfigError::invalid(name, e.to_string()))?;
    }
    Ok(())
}

fn set_secret_from_env(
    slot: &mut Option<Secret<String>>,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) {
    if let Some(raw) = env(name) {
        let raw = raw.trim().to_owned();
        *slot = if raw.is_empty() { None } else { Some(Secret::new(raw)) };
    }
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

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        set_from_env(&mut self.listen, "SWITCHYARD_LISTEN", env)?;
        set_from_env(&mut self.metrics_listen, "SWITCHYARD_METRICS_LISTEN", env)?;
        set_from_env(&mut self.data_dir, "SWITCHYARD_DATA_DIR", env)?;
        set_secret_from_env(&mut self.database_url, "DATABASE_URL", env);
        set_secret_from_env(&mut self.redis_url, "REDIS_URL", env);
        set_from_env(&mut self.namespace, "SWITCHYARD_NAMESPACE", env)?;
        set_from_env(&mut self.log_format, "SWITCHYARD_LOG_FORMAT", env)?;
        set_from_env(&mut self.log, "SWITCHYARD_LOG", env)?;
        set_from_env(&mut self.shutdown_grace_secs, "SWITCHYARD_SHUTDOWN_GRACE_SECS", env)?;
        set_from_env(&mut self.http_body_limit_bytes, "SWITCHYARD_HTTP_BODY_LIMIT_BYTES", env)?;
        set_from_env(&mut self.http_header_timeout_ms, "SWITCHYARD_HTTP_HEADER_TIMEOUT_MS", env)?;
        set_from_env(&mut self.http_idle_timeout_ms, "SWITCHYARD_HTTP_IDLE_TIMEOUT_MS", env)?;
        set_from_env(
            &mut self.database_max_connections,
            "SWITCHYARD_DATABASE_MAX_CONNECTIONS",
            env,
        )?;
        set_from_env(
            &mut self.database_acquire_timeout_ms,
            "SWITCHYARD_DATABASE_ACQUIRE_TIMEOUT_MS",
            env,
        )?;
        set_from_env(
            &mut self.redis_response_timeout_ms,
            "SWITCHYARD_REDIS_RESPONSE_TIMEOUT_MS",
            env,
        )?;
        set_from_env(&mut self.queue_depth_sample_secs, "SWITCHYARD_QUEUE_DEPTH_SAMPLE_SECS", env)?;
        set_secret_from_env(&mut self.bootstrap_admin_key, "SWITCHYARD_BOOTSTRAP_ADMIN_KEY", env);
        set_from_env(&mut self.auth_cache_ttl_secs, "SWITCHYARD_AUTH_CACHE_TTL_SECS", env)?;
        set_from_env(&mut self.rate_limit_per_minute, "SWITCHYARD_RATE_LIMIT_PER_MINUTE", env)?;
        set_from_env(
            &mut self.auth_failure_limit_per_minute,
            "SWITCHYARD_AUTH_FAILURE_LIMIT_PER_MINUTE",
            env,
        )?;
        set_from_env(&mut self.trust_forwarded_for, "SWITCHYARD_TRUST_FORWARDED_FOR", env)?;
        set_from_env(&mut self.usage_retention_days, "SWITCHYARD_USAGE_RETENTION_DAYS", env)?;
        set_from_env(&mut self.usage_buffer, "SWITCHYARD_USAGE_BUFFER", env)?;
        set_secret_from_env(&mut self.master_key, "SWITCHYARD_MASTER_KEY", env);
        if let Some(path) = env("SWITCHYARD_MASTER_KEY_FILE").filter(|p| !p.trim().is_empty()) {
            self.master_key_file = Some(PathBuf::from(path));
        }
        let h = &mut self.webhooks;
        set_from_env(&mut h.retry_schedule, "SWITCHYARD_WEBHOOK_RETRY_SCHEDULE", env)?;
        set_from_env(&mut h.timeout_ms, "SWITCHYARD_WEBHOOK_TIMEOUT_MS", env)?;
        set_from_env(&mut h.throttle_floor_ms, "SWITCHYARD_WEBHOOK_THROTTLE_FLOOR_MS", env)?;
        set_from_env(&mut h.max_payload_bytes, "SWITCHYARD_WEBHOOK_MAX_PAYLOAD_BYTES", env)?;
        if let Some(raw) = env("SWITCHYARD_WEBHOOK_ALLOW_CIDRS") {
            h.allow_cidrs = Some(raw.trim().to_owned());
        }
        set_secret_from_env(&mut h.proxy, "SWITCHYARD_WEBHOOK_PROXY", env);
        set_from_env(
            &mut h.require_https_for_live,
            "SWITCHYARD_WEBHOOK_REQUIRE_HTTPS_FOR_LIVE",
            env,
        )?;
        set_from_env(&mut h.endpoint_concurrency, "SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", env)?;
        set_from_env(&mut h.endpoint_queue, "SWITCHYARD_WEBHOOK_ENDPOINT_QUEUE", env)?;
        set_from_env(&mut h.waiting, "SWITCHYARD_WEBHOOK_WAITING", env)?;
        set_from_env(&mut h.disable_threshold, "SWITCHYARD_WEBHOOK_DISABLE_THRESHOLD", env)?;
        set_from_env(&mut h.retention_days, "SWITCHYARD_WEBHOOK_RETENTION_DAYS", env)?;
        let p = &mut self.pidkey;
        set_from_env(&mut p.base_url, "SWITCHYARD_PIDKEY_BASE_URL", env)?;
        set_secret_from_env(&mut p.api_key, "PIDKEY_API_KEY", env);
        set_from_env(&mut p.batch_size, "SWITCHYARD_PIDKEY_BATCH_SIZE", env)?;
        set_from_env(&mut p.rate_per_second, "SWITCHYARD_PIDKEY_RATE_PER_SECOND", env)?;
        set_from_env(&mut p.timeout_secs, "SWITCHYARD_PIDKEY_TIMEOUT_SECS", env)?;
        set_from_env(&mut p.retry_max_secs, "SWITCHYARD_PIDKEY_RETRY_MAX_SECS", env)?;
        set_from_env(
            &mut p.low_inventory_threshold,
            "SWITCHYARD_PIDMS_LOW_INVENTORY_THRESHOLD",
            env,
        )?;
        let k = &mut self.sikka;
        set_from_env(&mut k.base_url, "SWITCHYARD_SIKKA_BASE_URL", env)?;
        set_secret_from_env(&mut k.app_id, "SIKKA_APP_ID", env);
        set_secret_from_env(&mut k.app_key, "SIKKA_APP_KEY", env);
        set_from_env(&mut k.timeout_secs, "SWITCHYARD_SIKKA_TIMEOUT_SECS", env)?;
        set_from_env(&mut k.retry_max_secs, "SWITCHYARD_SIKKA_RETRY_MAX_SECS", env)?;
        set_from_env(&mut k.refresh_ahead_secs, "SWITCHYARD_SIKKA_REFRESH_AHEAD_SECS", env)?;
        set_from_env(&mut k.poll_initial_ms, "SWITCHYARD_SIKKA_POLL_INITIAL_MS", env)?;
        set_from_env(&mut k.poll_max_ms, "SWITCHYARD_SIKKA_POLL_MAX_MS", env)?;
        set_from_env(&mut k.stuck_after_secs, "SWITCHYARD_SIKKA_STUCK_AFTER_SECS", env)?;
        set_from_env(&mut k.sweep_grace_secs, "SWITCHYARD_SIKKA_SWEEP_GRACE_SECS", env)?;

        let w = &mut self.worker;
        if let Some(raw) = env("SWITCHYARD_WORKER_QUEUES") {
            w.queues = parse_queue_list(&raw)
                .map_err(|e| ConfigError::invalid("SWITCHYARD_WORKER_QUEUES", e))?;
        }
        set_from_env(&mut w.concurrency, "SWITCHYARD_WORKER_CONCURRENCY", env)?;
        set_from_env(&mut w.poll_interval_ms, "SWITCHYARD_WORKER_POLL_INTERVAL_MS", env)?;
        set_from_env(&mut w.batch_size, "SWITCHYARD_WORKER_BATCH_SIZE", env)?;
        set_from_env(&mut w.heartbeat_secs, "SWITCHYARD_WORKER_HEARTBEAT_SECS", env)?;
        set_from_env(&mut w.missed_heartbeats, "SWITCHYARD_WORKER_MISSED_HEARTBEATS", env)?;
        set_from_env(&mut w.job_timeout_secs, "SWITCHYARD_WORKER_JOB_TIMEOUT_SECS", env)?;

        let s = &mut self.scheduler;
        set_from_env(&mut s.leader_ttl_secs, "SWITCHYARD_SCHEDULER_LEADER_TTL_SECS", env)?;
        set_from_env(&mut s.queue_retention_days, "SWITCHYARD_QUEUE_RETENTION_DAYS", env)?;
        for name in ScheduleName::ALL {
            if let Some(raw) = env(&name.env_var()) {
                s.schedules.insert(name.as_str().to_owned(), raw.trim().to_owned());
            }
        }
        Ok(())
    }

    /// Checks every setting and returns the first one that cannot work, by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            let url = url.expose();
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(ConfigError::invalid(
                    "DATABASE_URL",
                    "must start with sqlite:, postgres:// or postgresql://",
                ));
            }
        }
        if let Some(url) = &self.redis_url {
            let url = url.expose();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::invalid(
                    "REDIS_URL",
                    "must start with redis:// or rediss://",
                ));
            }
        }
        if self.namespace.is_empty()
            || !self.namespace.chars().all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
        {
            return Err(ConfigError::invalid(
                "SWITCHYARD_NAMESPACE",
                "must be non-empty and use only letters, digits, '-', '_', ':' and '.'",
            ));
        }
        positive("SWITCHYARD_HTTP_BODY_LIMIT_BYTES", self.http_body_limit_bytes as u64)?;
        positive("SWITCHYARD_HTTP_HEADER_TIMEOUT_MS", self.http_header_timeout_ms)?;
        positive("SWITCHYARD_HTTP_IDLE_TIMEOUT_MS", self.http_idle_timeout_ms)?;
        positive("SWITCHYARD_DATABASE_MAX_CONNECTIONS", self.database_max_connections.into())?;
        positive("SWITCHYARD_DATABASE_ACQUIRE_TIMEOUT_MS", self.database_acquire_timeout_ms)?;
        positive("SWITCHYARD_REDIS_RESPONSE_TIMEOUT_MS", self.redis_response_timeout_ms)?;
        positive("SWITCHYARD_QUEUE_DEPTH_SAMPLE_SECS", self.queue_depth_sample_secs)?;
        if let Some(key) = &self.bootstrap_admin_key {
            // The message says what is wrong, never the key itself.
            crate::apikeys::RawKey::parse(key.expose()).map_err(|e| {
                ConfigError::invalid("SWITCHYARD_BOOTSTRAP_ADMIN_KEY", e.to_string())
            })?;
        }
        positive("SWITCHYARD_AUTH_CACHE_TTL_SECS", self.auth_cache_ttl_secs)?;
        positive("SWITCHYARD_RATE_LIMIT_PER_MINUTE", self.rate_limit_per_minute.into())?;
        positive(
            "SWITCHYARD_AUTH_FAILURE_LIMIT_PER_MINUTE",
            self.auth_failure_limit_per_minute.into(),
        )?;
        positive("SWITCHYARD_USAGE_RETENTION_DAYS", self.usage_retention_days)?;
        positive("SWITCHYARD_USAGE_BUFFER", self.usage_buffer as u64)?;
        let h = &self.webhooks;
        crate::webhook::RetrySchedule::parse(&h.retry_schedule)
            .map_err(|e| ConfigError::invalid("SWITCHYARD_WEBHOOK_RETRY_SCHEDULE", e))?;
        if !(1..=30_000).contains(&h.timeout_ms) {
            return Err(ConfigError::invalid(
                "SWITCHYARD_WEBHOOK_TIMEOUT_MS",
                "must be between 1 and 30000",
            ));
        }
        positive("SWITCHYARD_WEBHOOK_MAX_PAYLOAD_BYTES", h.max_payload_bytes as u64)?;
        if let Some(cidrs) = &h.allow_cidrs {
            crate::netguard::parse_cidrs(cidrs)
                .map_err(|e| ConfigError::invalid("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", e))?;
        }
        if let Some(proxy) = &h.proxy {
            // The message never repeats the value: it can carry the proxy's password.
            let ok = url::Url::parse(proxy.expose()).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            });
            if !ok {
                return Err(ConfigError::invalid(
                    "SWITCHYARD_WEBHOOK_PROXY",
                    "must be an http(s) URL with a host, such as http://proxy.internal:3128",
                ));
            }
        }
        positive("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", h.endpoint_concurrency as u64)?;
        positive("SWITCHYARD_WEBHOOK_ENDPOINT_QUEUE", h.endpoint_queue as u64)?;
        positive("SWITCHYARD_WEBHOOK_DISABLE_THRESHOLD", h.disable_threshold.max(0) as u64)?;
        positive("SWITCHYARD_WEBHOOK_RETENTION_DAYS", h.retention_days)?;
        let p = &self.pidkey;
        if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "SWITCHYARD_PIDKEY_BASE_URL",
                "must be an http(s) URL",
            ));
        }
        if !(1..=50).contains(&p.batch_size) {
            return Err(ConfigError::invalid("SWITCHYARD_PIDKEY_BATCH_SIZE", "between 1 and 50"));
        }
        positive("SWITCHYARD_PIDKEY_RATE_PER_SECOND", p.rate_per_second.into())?;
        positive("SWITCHYARD_PIDKEY_TIMEOUT_SECS", p.timeout_secs)?;
        if p.api_key.as_ref().is_some_and(|k| k.expose().trim().is_empty()) {
            return Err(ConfigError::invalid("PIDKEY_API_KEY", "is empty"));
        }
        let k = &self.sikka;
        if !(k.base_url.starts_with("http://") || k.base_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "SWITCHYARD_SIKKA_BASE_URL",
                "must be an http(s) URL",
            ));
        }
        if k.app_id.is_some() != k.app_key.is_some() {
            let missing = if k.app_id.is_none() { "SIKKA_APP_ID" } else { "SIKKA_APP_KEY" };
            return Err(ConfigError::invalid(missing, "is needed with the other Sikka credential"));
        }
        positive("SWITCHYARD_SIKKA_TIMEOUT_SECS", k.timeout_secs)?;
        positive("SWITCHYARD_SIKKA_POLL_INITIAL_MS", k.poll_initial_ms)?;
        if k.poll_max_ms < k.poll_initial_ms {
            return Err(ConfigError::invalid(
                "SWITCHYARD_SIKKA_POLL_MAX_MS",
                "must be at least SWITCHYARD_SIKKA_POLL_INITIAL_MS",
            ));
        }
        positive("SWITCHYARD_SIKKA_STUCK_AFTER_SECS", k.stuck_after_secs)?;
        let w = &self.worker;
        if w.queues.is_empty() {
            return Err(ConfigError::invalid("SWITCHYARD_WORKER_QUEUES", "at least one queue"));
        }
        positive("SWITCHYARD_WORKER_CONCURRENCY", w.concurrency as u64)?;
        positive("SWITCHYARD_WORKER_POLL_INTERVAL_MS", w.poll_interval_ms)?;
        positive("SWITCHYARD_WORKER_BATCH_SIZE", w.batch_size as u64)?;
        positive("SWITCHYARD_WORKER_HEARTBEAT_SECS", w.heartbeat_secs)?;
        positive("SWITCHYARD_WORKER_MISSED_HEARTBEATS", w.missed_heartbeats as u64)?;
        positive("SWITCHYARD_WORKER_JOB_TIMEOUT_SECS", w.job_timeout_secs)?;
        let s = &self.scheduler;
        positive("SWITCHYARD_SCHEDULER_LEADER_TTL_SECS", s.leader_ttl_secs)?;
        if s.leader_ttl_secs < 3 {
            return Err(ConfigError::invalid(
                "SWITCHYARD_SCHEDULER_LEADER_TTL_SECS",
                "must be at least 3 (the lease is renewed every third of it)",
            ));
        }
        positive("SWITCHYARD_QUEUE_RETENTION_DAYS", s.queue_retention_days)?;
        for (name, expr) in &s.schedules {
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
            .get(name.as_str())
            .cloned()
            .unwrap_or_else(|| name.default_cron().to_owned());
        (!schedules::is_off(&expr)).then_some(expr)
    }
}

fn positive(setting: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(setting, "must be greater than zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_valid_and_embedded() {
        let c = Config::load_with(None, &env_of(&[])).unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.store_kind(), StoreKind::Sqlite);
        assert!(!c.is_fleet_queue());
        assert_eq!(c.worker.queues.len(), 4);
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("sy-config-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchyard.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nnamespace = \"fromfile\"\n[worker]\nconcurrency = 7\n",
        )
        .unwrap();
        let c = Config::load_with(
            Some(&path),
            &env_of(&[
                ("SWITCHYARD_NAMESPACE", "fromenv"),
                ("DATABASE_URL", "postgres://u:p@127.0.0.1/db"),
                ("SWITCHYARD_WORKER_QUEUES", "webhooks, pidms"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.namespace, "fromenv");
        assert_eq!(c.worker.concurrency, 7);
        assert_eq!(c.worker.queues, vec![QueueName::Webhooks, QueueName::Pidms]);
        assert_eq!(c.store_kind(), StoreKind::Postgres);
        assert_eq!(format!("{:?}", c.database_url), "Some([redacted])");
    }

    #[test]
    fn errors_name_the_setting() {
        let err = Config::load_with(None, &env_of(&[("SWITCHYARD_WORKER_CONCURRENCY", "lots")]))
            .unwrap_err();
        assert!(err.to_string().starts_with("SWITCHYARD_WORKER_CONCURRENCY:"), "{err}");

        let c = Config::load_with(None, &env_of(&[("DATABASE_URL", "mysql://x")])).unwrap();
        let err = c.validate().unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL:"), "{err}");

        let c =
            Config::load_with(None, &env_of(&[("SWITCHYARD_WORKER_CONCURRENCY", "0")])).unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "SWITCHYARD_WORKER_CONCURRENCY: must be greater than zero"
        );

        let c = Config::load_with(None, &env_of(&[("SWITCHYARD_SCHEDULE_CANARY", "every now")]))
            .unwrap();
        assert!(c.validate().unwrap_err().to_string().starts_with("SWITCHYARD_SCHEDULE_CANARY:"));

        let err =
            Config::load_with(None, &env_of(&[("SWITCHYARD_WORKER_QUEUES", "email")])).unwrap_err();
        assert!(err.to_string().contains("unknown queue"), "{err}");
    }

    #[test]
    fn a_bad_webhook_proxy_is_refused_without_echoing_it() {
        for bad in ["socks5://user:hunter2@proxy:1080", "proxy:3128", "http://"] {
            let c = Config::load_with(None, &env_of(&[("SWITCHYARD_WEBHOOK_PROXY", bad)])).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with("SWITCHYARD_WEBHOOK_PROXY:"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let c = Config::load_with(
            None,
            &env_of(&[("SWITCHYARD_WEBHOOK_PROXY", "http://user:pw@proxy.internal:3128")]),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(format!("{:?}", c.webhooks.proxy), "Some([redacted])");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("sy-config-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load_with(Some(&path), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn schedules_can_be_switched_off_or_changed() {
        let c = Config::load_with(
            None,
            &env_of(&[
                ("SWITCHYARD_SCHEDULE_CANARY", "off"),
                ("SWITCHYARD_SCHEDULE_QUEUE_VACUUM", "15 3 * * *"),
            ]),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.schedule_expr(ScheduleName::Canary), None);
        assert_eq!(c.schedule_expr(ScheduleName::QueueVacuum).as_deref(), Some("15 3 * * *"));
    }
}
