//! The catalogue of schedules: names, default cron expressions and cron parsing.
//! The scheduler crate maps each name to the work it enqueues.

mod store;

pub use store::ScheduleState;

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
    /// Deletes audit log entries past their retention.
    AuditRetention,
    /// Re-enqueues webhook deliveries that are due but not in the queue.
    WebhookRetrySweep,
    /// Deletes webhook attempts and payloads past their retention.
    WebhookDeliveryCleanup,
    /// Disables endpoints that keep failing.
    WebhookDisableFailing,
    /// Re-checks every stored PIDKey key (only when `PIDKEY_API_KEY` is set).
    PidmsDailySync,
    /// Re-enqueues PIDKey batches left pending (a lost push, a worker gone).
    PidmsBatchSweep,
    /// Refreshes Sikka request keys expiring soon (only with Sikka app credentials).
    SikkaTokenRefresh,
    /// Re-enqueues Sikka writeback steps whose job is missing.
    SikkaWritebackSweep,
}

impl ScheduleName {
    pub const ALL: [ScheduleName; 11] = [
        ScheduleName::QueueVacuum,
        ScheduleName::Canary,
        ScheduleName::UsageRetention,
        ScheduleName::AuditRetention,
        ScheduleName::WebhookRetrySweep,
        ScheduleName::WebhookDeliveryCleanup,
        ScheduleName::WebhookDisableFailing,
        ScheduleName::PidmsDailySync,
        ScheduleName::PidmsBatchSweep,
        ScheduleName::SikkaTokenRefresh,
        ScheduleName::SikkaWritebackSweep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueVacuum => "queue-vacuum",
            Self::Canary => "canary",
            Self::UsageRetention => "usage-retention",
            Self::AuditRetention => "audit-retention",
            Self::WebhookRetrySweep => "webhook-retry-sweep",
            Self::WebhookDeliveryCleanup => "webhook-delivery-cleanup",
            Self::WebhookDisableFailing => "webhook-disable-failing",
            Self::PidmsDailySync => "pidms-daily-sync",
            Self::PidmsBatchSweep => "pidms-batch-sweep",
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
            Self::AuditRetention => "0 45 3 * * *",
            Self::WebhookRetrySweep => "0 */5 * * * *",
            Self::WebhookDeliveryCleanup => "0 0 2 * * *",
            Self::WebhookDisableFailing => "0 0 */6 * * *",
            Self::PidmsDailySync => "0 0 4 * * *",
            Self::PidmsBatchSweep => "20 */5 * * * *",
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

/// Parses a cron expression of 5 fields (minute first, with crontab's weekdays: 0 and 7 are
/// Sunday, 1–5 Monday to Friday, names allowed) or 6–7 fields (seconds first, as the `cron`
/// crate reads them, where Sunday is 1).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, cron::error::Error> {
    let expr = expr.trim();
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if let [minute, hour, dom, month, dow] = fields[..] {
        let dow = crontab_weekdays(dow).unwrap_or_else(|| dow.to_owned());
        cron::Schedule::from_str(&format!("0 {minute} {hour} {dom} {month} {dow}"))
    } else {
        cron::Schedule::from_str(expr)
    }
}

/// A crontab day-of-week field in the `cron` crate's numbering (Sunday = 1 … Saturday = 7),
/// as an explicit list; `None` when it is not crontab syntax (left for the crate to judge).
fn crontab_weekdays(field: &str) -> Option<String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let day = |s: &str| -> Option<u32> {
        let lower = s.to_ascii_lowercase();
        match NAMES.iter().position(|n| *n == lower) {
            Some(i) => Some(i as u32),
            None => s.parse::<u32>().ok().filter(|d| *d <= 7),
        }
    };
    if field == "*" || field == "?" {
        return Some(field.to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (item, 1),
        };
        let (from, to) = match range {
            "*" | "?" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None if step > 1 => (day(r)?, 6),
                None => (day(r)?, day(r)?),
            },
        };
        if from > to {
            return None;
        }
        for d in (from..=to).step_by(step as usize) {
            days[(d % 7) as usize] = true;
        }
    }
    let list: Vec<String> = (0..7).filter(|d| days[*d]).map(|d| (d + 1).to_string()).collect();
    (!list.is_empty()).then(|| list.join(","))
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

    /// The next run after `at` (RFC 3339), as `Mon 09:00`.
    fn next(expr: &str, at: &str) -> String {
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&chrono::Utc);
        parse_cron(expr).unwrap().after(&at).next().unwrap().format("%a %H:%M").to_string()
    }

    #[test]
    fn crontab_weekdays_mean_what_crontab_means() {
        // 2026-01-03 is a Saturday.
        let saturday = "2026-01-03T12:00:00Z";
        assert_eq!(next("0 9 * * 1-5", saturday), "Mon 09:00");
        assert_eq!(next("0 9 * * mon-fri", saturday), "Mon 09:00");
        assert_eq!(next("0 9 * * 0", saturday), "Sun 09:00");
        assert_eq!(next("0 9 * * 7", saturday), "Sun 09:00");
        assert_eq!(next("0 9 * * SUN", saturday), "Sun 09:00");
        assert_eq!(next("0 9 * * 5", saturday), "Fri 09:00");
        assert_eq!(next("0 9 * * 6", "2026-01-02T12:00:00Z"), "Sat 09:00");
        assert_eq!(next("0 9 * * 5-7", "2026-01-01T12:00:00Z"), "Fri 09:00");
        assert_eq!(next("0 9 * * 1,3", "2026-01-05T12:00:00Z"), "Wed 09:00");
        // Every other day from Sunday: Sun, Tue, Thu, Sat.
        assert_eq!(next("0 9 * * */2", "2026-01-04T12:00:00Z"), "Tue 09:00");
        assert_eq!(next("0 9 * * *", saturday), "Sun 09:00");
        assert!(parse_cron("0 9 * * 8").is_err());
        assert!(parse_cron("0 9 * * 5-1").is_err());
        // Six fields are the cron crate's own syntax: Sunday is 1 there.
        assert_eq!(next("0 0 9 * * 1", saturday), "Sun 09:00");
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
