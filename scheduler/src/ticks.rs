//! When a schedule is due, from its cron expression and the last tick it handled.

use chrono::{DateTime, SubsecRound, Utc};

/// What a schedule should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Run the tick at this time (the latest one not yet handled; older missed ticks are
    /// folded into it, so downtime leads to one run, not one per missed tick).
    Run(DateTime<Utc>),
    /// First sight of the schedule: remember this tick without running it.
    Adopt(DateTime<Utc>),
    /// Nothing to do before this time.
    Wait(DateTime<Utc>),
}

/// The latest tick at or before `now`. Ticks fall on whole seconds: `includes` ignores the
/// fraction, so it is cut off first (else every loop within that second would be a new tick).
fn latest_tick(schedule: &cron::Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let second = now.trunc_subsecs(0);
    if schedule.includes(second) {
        return Some(second);
    }
    schedule.after(&now).next_back()
}

/// Decides what a schedule does at `now`, given the last tick it handled (`None` when the
/// schedule has never been seen).
pub fn next_due(
    schedule: &cron::Schedule,
    last_tick: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Due {
    let latest = latest_tick(schedule, now);
    match (last_tick, latest) {
        (None, Some(tick)) => Due::Adopt(tick),
        (None, None) => Due::Adopt(now),
        (Some(last), Some(tick)) if tick > last => Due::Run(tick),
        _ => match schedule.after(&now).next() {
            Some(next) => Due::Wait(next),
            // A schedule with no future tick (a past year): check again in a day.
            None => Due::Wait(now + chrono::Duration::days(1)),
        },
    }
}

#[cfg(test)]
mod tests {
    use switchyard_shared::schedules::parse_cron;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn first_sight_adopts_the_latest_tick_without_running() {
        let every_min = parse_cron("* * * * *").unwrap();
        assert_eq!(
            next_due(&every_min, None, t("2026-01-01T10:05:30Z")),
            Due::Adopt(t("2026-01-01T10:05:00Z"))
        );
    }

    #[test]
    fn ten_missed_ticks_run_once() {
        let every_min = parse_cron("* * * * *").unwrap();
        let last = t("2026-01-01T10:00:00Z");
        let now = t("2026-01-01T10:10:30Z");
        assert_eq!(next_due(&every_min, Some(last), now), Due::Run(t("2026-01-01T10:10:00Z")));
        // After that run is recorded, the next decision is to wait for 10:11.
        assert_eq!(
            next_due(&every_min, Some(t("2026-01-01T10:10:00Z")), now),
            Due::Wait(t("2026-01-01T10:11:00Z"))
        );
    }

    #[test]
    fn a_tick_exactly_now_is_due() {
        let hourly = parse_cron("0 * * * *").unwrap();
        let now = t("2026-01-01T11:00:00Z");
        assert_eq!(next_due(&hourly, Some(t("2026-01-01T10:00:00Z")), now), Due::Run(now));
        assert_eq!(next_due(&hourly, Some(now), now), Due::Wait(t("2026-01-01T12:00:00Z")));
    }

    #[test]
    fn a_tick_runs_once_within_its_second() {
        let every_sec = parse_cron("* * * * * *").unwrap();
        let now = t("2026-01-01T11:00:07.002Z");
        assert_eq!(
            next_due(&every_sec, Some(t("2026-01-01T11:00:06Z")), now),
            Due::Run(t("2026-01-01T11:00:07Z"))
        );
        let later = t("2026-01-01T11:00:07.900Z");
        assert_eq!(
            next_due(&every_sec, Some(t("2026-01-01T11:00:07Z")), later),
            Due::Wait(t("2026-01-01T11:00:08Z"))
        );
    }

    #[test]
    fn seconds_schedules_work() {
        let every_5s = parse_cron("*/5 * * * * *").unwrap();
        let now = t("2026-01-01T11:00:07Z");
        assert_eq!(
            next_due(&every_5s, Some(t("2026-01-01T11:00:00Z")), now),
            Due::Run(t("2026-01-01T11:00:05Z"))
        );
    }
}
