//! Logs: JSON (one object per line, with the current span's fields such as request_id and
//! job_id) or human-readable, filtered by `SWITCHYARD_LOG`.

use std::io::IsTerminal;

use switchyard_shared::config::{Config, LogFormat};
use tracing_subscriber::{EnvFilter, fmt};

pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stdout);
    if json {
        builder.json().with_current_span(true).with_span_list(false).init();
    } else {
        builder.compact().init();
    }
}
