//! `switchyard bench …`: the whole system as child processes (this same binary) on the
//! embedded store or a fresh PostgreSQL database + Redis namespace, driven over HTTP and
//! measured. Each benchmark prints its figures; none asserts them.
#![allow(clippy::print_stdout)]

pub mod pidms;
pub mod webhooks;

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use switchyard_shared::{
    access::{Environment, RawKey},
    config::Config,
};

/// Where the processes run: the flags every benchmark shares.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// PostgreSQL + Redis (a fresh database and key namespace on the local servers) instead
    /// of the embedded SQLite store and queue.
    #[arg(long)]
    fleet: bool,
    /// Admin URL of PostgreSQL for --fleet (a database is created and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Keep the processes' logs (their path is printed).
    #[arg(long)]
    keep_logs: bool,
}

impl StackArgs {
    pub fn label(&self) -> &'static str {
        if self.fleet { "fleet: PostgreSQL + Redis" } else { "embedded: SQLite" }
    }
}

/// A switchyard child process, stopped with SIGTERM when dropped.
pub struct Child(std::process::Child);

impl Child {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// The environment, data dir, admin key and (with --fleet) database of one benchmark run.
pub struct Stack {
    exe: PathBuf,
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
    pub admin: RawKey,
    pub base: String,
    pub http: reqwest::Client,
    args: StackArgs,
    fleet_db: Option<String>,
}

impl Stack {
    /// Prepares a run: a temporary data dir, a free API port, an admin key, and with
    /// --fleet a fresh database; `extra` settings override the defaults.
    pub async fn new(args: &StackArgs, extra: &[(&str, String)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let dir = std::env::temp_dir().join(format!("switchyard-bench-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir)?;
        let admin = RawKey::generate(Environment::Test);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut env: HashMap<String, String> = HashMap::from([
            ("SWITCHYARD_DATA_DIR".into(), dir.display().to_string()),
            ("SWITCHYARD_LISTEN".into(), format!("127.0.0.1:{port}")),
            (
                "SWITCHYARD_LOG".into(),
                std::env::var("SWITCHYARD_LOG").unwrap_or_else(|_| "warn".into()),
            ),
            ("SWITCHYARD_BOOTSTRAP_ADMIN_KEY".into(), admin.expose().to_owned()),
            ("SWITCHYARD_RATE_LIMIT_PER_MINUTE".into(), "100000000".into()),
            ("SWITCHYARD_SCHEDULE_CANARY".into(), "off".into()),
        ]);
        let mut fleet_db = None;
        if args.fleet {
            let db = format!("sybench_{}", ulid::Ulid::generate().to_string().to_lowercase());
            admin_sql(&args.postgres, &format!("CREATE DATABASE {db}")).await?;
            let base = args.postgres.rsplit_once('/').map_or(args.postgres.as_str(), |(b, _)| b);
            // Loopback: no TLS (sqlx would otherwise negotiate it with a Debian PostgreSQL).
            env.insert("DATABASE_URL".into(), format!("{base}/{db}?sslmode=disable"));
            env.insert("REDIS_URL".into(), args.redis.clone());
            env.insert("SWITCHYARD_NAMESPACE".into(), db.clone());
            let mut key = [0u8; 32];
            getrandom::fill(&mut key)?;
            env.insert("SWITCHYARD_MASTER_KEY".into(), base64_std(&key));
            fleet_db = Some(db);
        }
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        Ok(Self {
            exe,
            dir,
            env,
            admin,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().pool_max_idle_per_host(256).build()?,
            args: args.clone(),
            fleet_db,
        })
    }

    /// The configuration the child processes see (to open the store from here).
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load_with(None, &|k| self.env.get(k).cloned())?)
    }

    pub fn auth(&self) -> String {
        format!("Bearer {}", self.admin.expose())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Spawns `switchyard <args>`, logging to `<dir>/<name>.log`.
    pub fn spawn(&self, name: &str, args: &[&str]) -> anyhow::Result<Child> {
        let out = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = std::process::Command::new(&self.exe)
            .args(args)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning a switchyard process")?;
        Ok(Child(child))
    }

    /// Migrates, then starts the API and waits until it answers.
    pub async fn start_api(&self) -> anyhow::Result<Child> {
        self.start_main("api", &["api"]).await
    }

    /// Migrates, then starts the process that serves the API (`api` or `dev`) and waits
    /// until it answers.
    pub async fn start_main(&self, name: &str, args: &[&str]) -> anyhow::Result<Child> {
        let status = std::process::Command::new(&self.exe)
            .arg("migrate")
            .envs(&self.env)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("migrate failed");
        }
        let api = self.spawn(name, args)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.http.get(self.url("/healthz")).send().await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "{name} did not start; see {}",
                    self.dir.join(format!("{name}.log")).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(api)
    }

    /// Drops the fleet database, its Redis key namespace and the logs (kept when the run
    /// failed or --keep-logs).
    pub async fn finish(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        if let Some(db) = &self.fleet_db {
            let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
            let _ = admin_sql(&self.args.postgres, &sql).await;
            match switchyard_shared::queue::delete_namespace(&self.args.redis, db).await {
                Ok(keys) => tracing::debug!(keys, "benchmark Redis keys removed"),
                Err(error) => eprintln!("could not remove the Redis keys {db}:*: {error:#}"),
            }
        }
        if result.is_err() || self.args.keep_logs {
            eprintln!("logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        result
    }
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// (peak RSS in MiB, CPU seconds) of a process, from /proc.
pub fn proc_usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (hwm_kb / 1024.0, ticks / 100.0)
}

async fn admin_sql(url: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.context("connecting to PostgreSQL")?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await?;
    Ok(())
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
