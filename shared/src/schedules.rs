//! The catalogue of schedules: names, default cron expressions and cron parsing.
//! The scheduler crate maps each name to the work it enqueues.

use std::{fmt, str::FromStr};

/// Every schedule Switchyard knows. Adding one here makes the scheduler refuse to compile
/// until it has an action for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScheduleName {
    /// Trims completed and dead job records older than the retention period.
    QueueVacuum,
    /// Sends a no-op job through every queue and measures enqueue → done.
    Canary,
    /// Deletes API usage records past their retention, and expired idempotency keys.
    UsageRetention,
    /// Re-enqueues webhook deliveries that are due but not in the queue.
    WebhookRetrySweep,
    /// Deletes webhook attempts and payloads past their retention.
    WebhookDeliveryCleanup,
    /// Disables endpoints that keep failing.
    WebhookDisableFailing,
    /// Re-checks every stored PIDKey key (only when `PIDKEY_API_KEY` is set).
    PidmsDailySync,
    /// Refreshes Sikka request keys expiring soon (only with Sikka app credentials).
    SikkaTokenRefresh,
    /// Re-enqueues Sikka writeback steps whose job is missing.
    SikkaWritebackSweep,
}

impl ScheduleName {
    pub const ALL: [ScheduleName; 9] = [
        ScheduleName::QueueVacuum,
        ScheduleName::Canary,
        ScheduleName::UsageRetention,
        ScheduleName::WebhookRetrySweep,
        ScheduleName::WebhookDeliveryCleanup,
        ScheduleName::WebhookDisableFailing,
        ScheduleName::PidmsDailySync,
        ScheduleName::SikkaTokenRefresh,
        ScheduleName::SikkaWritebackSweep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueVacuum => "queue-vacuum",
            Self::Canary => "canary",
            Self::UsageRetention => "usage-retention",
            Self::WebhookRetrySweep => "webhook-retry-sweep",
            Self::WebhookDeliveryCleanup => "webhook-delivery-cleanup",
            Self::WebhookDisableFailing => "webhook-disable-failing",
            Self::PidmsDailySync => "pidms-daily-sync",
            Self::SikkaTokenRefresh => "sikka-token-refresh",
            Self::SikkaWritebackSweep => "sikka-writeback-sweep",
        }
    }

    /// Six-field cron (seconds first), UTC.
    pub fn default_cron(self) -> &'static str {
        match self {
            Self::QueueVacuum => "0 17 * * * *",
            Self::Canary => "0 * * * * *",
            Self::UsageRetention => "0 30 3 * * *",
            Self::WebhookRetrySweep => "0 */5 * * * *",
            Self::WebhookDeliveryCleanup => "0 0 2 * * *",
            Self::WebhookDisableFailing => "0 0 */6 * * *",
            Self::PidmsDailySync => "0 0 4 * * *",
            Self::SikkaTokenRefresh => "0 */15 * * * *",
            Self::SikkaWritebackSweep => "30 * * * * *",
        }
    }

    /// `SWITCHYARD_SCHEDULE_QUEUE_VACUUM` for `queue-vacuum`.
    pub fn env_var(self) -> String {
        format!("SWITCHYARD_SCHEDULE_{}", self.as_str().to_ascii_uppercase().replace('-', "_"))
    }
}

impl fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScheduleName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|n| n.as_str() == s).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|n| n.as_str()).collect();
            format!("unknown schedule {s:?} (known: {})", known.join(", "))
        })
    }
}

/// `off`, `disabled` or an empty string switch a schedule off.
pub fn is_off(expr: &str) -> bool {
    matches!(expr.trim(), "" | "off" | "disabled" | "none")
}

/// Parses a cron expression of 5 fields (minute first, as crontab) or 6–7 fields
/// (seconds first, as the `cron` crate).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, cron::error::Error> {
    let expr = expr.trim();
    if expr.split_whitespace().count() == 5 {
        cron::Schedule::from_str(&format!("0 {expr}"))
    } else {
        cron::Schedule::from_str(expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_defaults_parse() {
        for name in ScheduleName::ALL {
            assert_eq!(name.as_str().parse::<ScheduleName>().unwrap(), name);
            parse_cron(name.default_cron()).unwrap();
        }
        assert_eq!(ScheduleName::QueueVacuum.env_var(), "SWITCHYARD_SCHEDULE_QUEUE_VACUUM");
        assert!("nope".parse::<ScheduleName>().unwrap_err().contains("queue-vacuum"));
    }

    #[test]
    fn five_field_crontab_is_accepted() {
        let s = parse_cron("*/5 * * * *").unwrap();
        let after = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:30Z").unwrap();
        let next = s.after(&after.with_timezone(&chrono::Utc)).next().unwrap();
        assert_eq!(next.to_rfc3339(), "2026-01-01T00:05:00+00:00");
        assert!(parse_cron("61 * * * *").is_err());
        assert!(is_off("off") && is_off("") && !is_off("* * * * *"));
    }
}
