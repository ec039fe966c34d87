//! Usage over time: requests in fixed steps, by status class, with latency percentiles per
//! step — folded here from the stored rows, one pass, the same on both backends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// One stored request, as the series reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UsageSample {
    pub at: DateTime<Utc>,
    pub key_id: String,
    pub status: i32,
    pub latency_ms: f64,
}

/// One step of a series (of one key, or of all when `key_id` is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    /// The step's start.
    pub at: DateTime<Utc>,
    pub key_id: Option<String>,
    pub requests: i64,
    /// Requests answered 2xx, 3xx, 4xx, 5xx.
    pub by_class: [i64; 4],
    /// Nearest-rank p50, p95, p99 of the step's latencies (0 when it had none).
    pub latency_ms: [f64; 3],
}

/// The shape of a series: `[since, until)` in steps of `step_secs`.
#[derive(Debug, Clone, Copy)]
pub struct SeriesWindow {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub step_secs: i64,
}

impl SeriesWindow {
    /// How many steps cover the window (the last may end past `until`).
    pub fn steps(&self) -> i64 {
        let span = (self.until - self.since).num_seconds().max(0);
        (span + self.step_secs - 1) / self.step_secs.max(1)
    }

    fn step_of(&self, at: DateTime<Utc>) -> Option<i64> {
        let offset = (at - self.since).num_milliseconds();
        (offset >= 0 && at < self.until).then(|| offset / (self.step_secs * 1000))
    }

    fn start_of(&self, step: i64) -> DateTime<Utc> {
        self.since + chrono::Duration::seconds(step * self.step_secs)
    }
}

#[derive(Default)]
struct Acc {
    by_class: [i64; 4],
    latencies: Vec<f64>,
}

/// 1-based nearest rank of percentile `q` among `n` values.
pub(crate) fn nearest_rank(q: f64, n: i64) -> i64 {
    ((q * n as f64).ceil() as i64).clamp(1, n.max(1))
}

/// Folds samples into steps. Every step of the window is present, empty ones at zero (a
/// chart's time axis has no holes); with `per_key`, one point per step and key that had
/// requests instead.
#[derive(Default)]
pub struct SeriesBuilder {
    steps: BTreeMap<(i64, Option<String>), Acc>,
}

impl SeriesBuilder {
    pub fn add(&mut self, window: &SeriesWindow, sample: UsageSample, per_key: bool) {
        let Some(step) = window.step_of(sample.at) else { return };
        let acc = self.steps.entry((step, per_key.then_some(sample.key_id))).or_default();
        let class = match sample.status {
            200..=299 => Some(0),
            300..=399 => Some(1),
            400..=499 => Some(2),
            s if s >= 500 => Some(3),
            _ => None,
        };
        if let Some(c) = class {
            acc.by_class[c] += 1;
        }
        acc.latencies.push(sample.latency_ms);
    }

    pub fn finish(mut self, window: &SeriesWindow, per_key: bool) -> Vec<SeriesPoint> {
        if !per_key {
            for step in 0..window.steps() {
                self.steps.entry((step, None)).or_default();
            }
        }
        self.steps
            .into_iter()
            .map(|((step, key_id), mut acc)| {
                acc.latencies.sort_by(f64::total_cmp);
                let n = acc.latencies.len() as i64;
                let pick = |q: f64| {
                    if n == 0 { 0.0 } else { acc.latencies[(nearest_rank(q, n) - 1) as usize] }
                };
                SeriesPoint {
                    at: window.start_of(step),
                    key_id,
                    requests: n,
                    by_class: acc.by_class,
                    latency_ms: [pick(0.5), pick(0.95), pick(0.99)],
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn sample(t: &str, key: &str, status: i32, ms: f64) -> UsageSample {
        UsageSample { at: at(t), key_id: key.into(), status, latency_ms: ms }
    }

    #[test]
    fn steps_cover_the_window_with_no_holes() {
        let w = SeriesWindow {
            since: at("2026-12-01T00:00:00Z"),
            until: at("2026-12-01T00:03:30Z"),
            step_secs: 60,
        };
        assert_eq!(w.steps(), 4);
        let mut b = SeriesBuilder::default();
        for (t, status, ms) in [
            ("2026-12-01T00:00:10Z", 200, 3.0),
            ("2026-12-01T00:00:50Z", 503, 9.0),
            ("2026-12-01T00:02:00Z", 404, 1.0),
            ("2026-12-01T00:03:29Z", 200, 2.0),
            ("2026-12-01T00:03:30Z", 200, 7.0), // at `until`: outside
            ("2026-11-30T23:59:59Z", 200, 7.0), // before `since`: outside
        ] {
            b.add(&w, sample(t, "k1", status, ms), false);
        }
        let points = b.finish(&w, false);
        let requests: Vec<i64> = points.iter().map(|p| p.requests).collect();
        assert_eq!(requests, vec![2, 0, 1, 1]);
        assert_eq!(points[0].by_class, [1, 0, 0, 1]);
        assert_eq!(points[0].latency_ms, [3.0, 9.0, 9.0]);
        assert_eq!(points[1].latency_ms, [0.0; 3]);
        assert_eq!(points[2].at, at("2026-12-01T00:02:00Z"));
        assert!(points.iter().all(|p| p.key_id.is_none()));
    }

    #[test]
    fn per_key_points_are_only_where_a_key_had_requests() {
        let w = SeriesWindow {
            since: at("2026-12-01T00:00:00Z"),
            until: at("2026-12-01T01:00:00Z"),
            step_secs: 600,
        };
        let mut b = SeriesBuilder::default();
        b.add(&w, sample("2026-12-01T00:01:00Z", "b", 200, 1.0), true);
        b.add(&w, sample("2026-12-01T00:02:00Z", "a", 200, 1.0), true);
        b.add(&w, sample("2026-12-01T00:31:00Z", "a", 500, 4.0), true);
        let points = b.finish(&w, true);
        let shape: Vec<(i64, Option<&str>, i64)> = points
            .iter()
            .map(|p| ((p.at - w.since).num_minutes(), p.key_id.as_deref(), p.requests))
            .collect();
        assert_eq!(shape, vec![(0, Some("a"), 1), (0, Some("b"), 1), (30, Some("a"), 1)]);
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(0.5, 10), 5);
        assert_eq!(nearest_rank(0.95, 10), 10);
        assert_eq!(nearest_rank(0.99, 100), 99);
        assert_eq!(nearest_rank(0.5, 1), 1);
    }
}
