//! The command line. Every flag also reads an environment variable; flags win over the
//! environment, which wins over the config file, which wins over defaults.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};
use switchyard_shared::{
    config::{Config, ConfigError, parse_queue_list},
    queue::QueueName,
};

/// `--queues webhooks,pidms`: one value holding a list.
#[derive(Debug, Clone)]
pub struct QueueList(pub Vec<QueueName>);

fn parse_queues(s: &str) -> Result<QueueList, String> {
    parse_queue_list(s).map(QueueList)
}

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about = "A job-queue worker fleet for integration work")]
pub struct Cli {
    /// TOML configuration file (settings as in README's table).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Data dir of the embedded mode (SQLite files, generated keys).
    #[arg(long, global = true, env = "SWITCHYARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// API, workers and scheduler in one process, on the embedded store and queue.
    Dev {
        /// HTTP listen address.
        #[arg(long, env = "SWITCHYARD_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// The HTTP API alone (fleet mode).
    Api {
        #[arg(long, env = "SWITCHYARD_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// A worker process: consumes queues and runs jobs.
    Worker {
        /// Queues to consume, comma-separated (default: all).
        #[arg(long, env = "SWITCHYARD_WORKER_QUEUES", value_parser = parse_queues)]
        queues: Option<QueueList>,
        /// Jobs run at once, per queue.
        #[arg(long, env = "SWITCHYARD_WORKER_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, env = "SWITCHYARD_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// The scheduler: cron schedules under a leader lock.
    Scheduler {
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, env = "SWITCHYARD_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Apply store migrations and exit.
    Migrate,
    /// Exit 0 if `url` answers 2xx within 3 s (a health check for containers, which need no
    /// curl in the image).
    Probe {
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Manage API keys directly in the store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Local simulators of PIDKey (`/ajax/pidms_api`) and Sikka (`/v4/…`) on one address,
    /// to point `dev` at for a demo without credentials.
    Sandbox(SandboxArgs),
    /// Benchmarks of the whole system, printed as figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    #[arg(long, env = "SWITCHYARD_SANDBOX_LISTEN", default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// Accept only this PIDKey API key (default: any non-empty key).
    #[arg(long)]
    pub pidkey_api_key: Option<String>,
    /// Simulated PIDKey latency per request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub pidkey_latency_ms: u64,
    /// The Sikka app id the simulator accepts.
    #[arg(long, default_value = "sandbox-app-id")]
    pub sikka_app_id: String,
    /// The Sikka app key the simulator accepts.
    #[arg(long, default_value = "sandbox-app-key")]
    pub sikka_app_key: String,
    /// How long a Sikka writeback stays pending before it completes.
    #[arg(long, default_value_t = 3000)]
    pub writeback_delay_ms: u64,
    /// Demo practices that have authorized the Sikka app.
    #[arg(long, default_value_t = 2)]
    pub sikka_practices: usize,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Publish events through the API to a local receiver; report throughput and latency.
    Webhooks(crate::bench::webhooks::WebhookBench),
    /// Seed an inventory, then sync it against the PIDKey simulator; report wall time and
    /// requests in flight against the configured rate.
    PidmsSync(crate::bench::pidms::SyncBench),
    /// Seed an inventory, then time searches; report p50/p99 and the query plan.
    PidmsSearch(crate::bench::pidms::SearchBench),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (once) on a line of its own.
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// A scope to grant (repeat for more): admin, keys:manage, webhooks:read, …
        #[arg(long = "scope", required = true)]
        scope: Vec<String>,
        /// `live` or `test`.
        #[arg(long, default_value = "live")]
        environment: String,
        /// Expire after this long: `90d`, `12h`, `30m`.
        #[arg(long)]
        expires_in: Option<String>,
        /// Requests per minute for this key (default: the server's setting).
        #[arg(long)]
        rate_limit: Option<i64>,
        /// The tenant the key belongs to (`tn_…`); without it, a platform key.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

impl Cli {
    /// Defaults → file → environment → these flags; then validation.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir.clone_from(dir);
        }
        if matches!(self.command, Command::Dev { .. }) && config.webhooks.allow_cidrs.is_none() {
            // `dev` delivers to local receivers by default; `run` says so at start.
            config.webhooks.allow_cidrs = Some("127.0.0.0/8,::1/128".to_owned());
        }
        match &self.command {
            Command::Dev { listen } | Command::Api { listen } => {
                if let Some(listen) = listen {
                    config.listen = *listen;
                }
            }
            Command::Worker { queues, concurrency, metrics_listen } => {
                if let Some(QueueList(queues)) = queues {
                    config.worker.queues.clone_from(queues);
                }
                if let Some(n) = concurrency {
                    config.worker.concurrency = *n;
                }
                if let Some(addr) = metrics_listen {
                    config.metrics_listen = *addr;
                }
            }
            Command::Scheduler { metrics_listen } => {
                if let Some(addr) = metrics_listen {
                    config.metrics_listen = *addr;
                }
            }
            Command::Migrate
            | Command::Keys { .. }
            | Command::Bench { .. }
            | Command::Sandbox(_)
            | Command::Probe { .. } => {}
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn worker_flags_parse() {
        let cli = Cli::try_parse_from([
            "switchyard",
            "worker",
            "--queues",
            "sikka,pidms",
            "--concurrency",
            "3",
        ])
        .unwrap();
        match cli.command {
            Command::Worker { queues: Some(QueueList(q)), concurrency: Some(3), .. } => {
                assert_eq!(q, vec![QueueName::Sikka, QueueName::Pidms]);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["switchyard", "worker", "--queues", "email"]).is_err());
    }
}
