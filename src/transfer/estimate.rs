//! `run --dry-run`'s answer to "does tonight's backlog fit the window?":
//! each intersection's bytes to pull over the rate its last pass reached
//! (file bytes read over the pass's seconds, connecting and listing
//! included, so a little pessimistic), held to its `max_rate`; the
//! intersections scheduled as a pass runs them (`parallel_intersections`
//! at a time, in config order), and the whole held to `max_rate_total`.
//! An estimate: a link whose speed changes night to night makes it wrong
//! by as much.

use std::time::Duration;

use crate::config::{Config, StartTime};
use crate::report::RunReport;

/// Below this a pass's rate says more about connecting than the link.
const MIN_MEASURED_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct IntersectionEstimate {
    pub name: String,
    pub bytes: u64,
    /// Bytes per second expected, and where it comes from.
    pub rate: Option<(f64, &'static str)>,
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub intersections: Vec<IntersectionEstimate>,
    /// The nightly window, start_time to end_time, when end_time is set.
    pub window: Option<(StartTime, StartTime, Duration)>,
    /// Seconds the whole pass needs; `None` if a rate is unknown.
    pub seconds: Option<f64>,
}

impl Estimate {
    /// Whether it fits the window (`None`: no window or no estimate).
    pub fn fits(&self) -> Option<bool> {
        let (_, _, window) = self.window?;
        Some(self.seconds? <= window.as_secs_f64())
    }

    /// Bytes a pass would leave for the next night, about.
    pub fn deferred_bytes(&self) -> Option<u64> {
        let (_, _, window) = self.window?;
        let need = self.seconds?;
        let total: u64 = self.intersections.iter().map(|i| i.bytes).sum();
        if need <= window.as_secs_f64() || need <= 0.0 {
            return Some(0);
        }
        Some((total as f64 * (1.0 - window.as_secs_f64() / need)) as u64)
    }
}

/// `to_pull`: (intersection name, bytes a pass would pull tonight).
pub fn estimate(
    config: &Config,
    to_pull: &[(String, u64)],
    previous: Option<&RunReport>,
) -> Estimate {
    let mut intersections = Vec::new();
    for (name, bytes) in to_pull {
        let cap = config
            .intersections
            .iter()
            .find(|i| &i.name == name)
            .and_then(|i| i.max_rate)
            .map(|r| r as f64);
        let measured = previous
            .and_then(|r| r.intersections.iter().find(|i| &i.name == name))
            .and_then(|i| {
                // Reports from before read_bytes counted only landed bytes.
                let moved = i.read_bytes.max(i.bytes);
                (moved >= MIN_MEASURED_BYTES && i.seconds > 0.0).then(|| moved as f64 / i.seconds)
            });
        let rate = match (measured, cap) {
            (Some(m), Some(c)) if c < m => Some((c, "max_rate")),
            (Some(m), _) => Some((m, "last pass")),
            (None, Some(c)) => Some((c, "max_rate, no earlier pass to measure")),
            (None, None) => None,
        };
        let seconds = match (rate, *bytes) {
            (_, 0) => Some(0.0),
            (Some((r, _)), b) => Some(b as f64 / r),
            (None, _) => None,
        };
        intersections.push(IntersectionEstimate {
            name: name.clone(),
            bytes: *bytes,
            rate,
            seconds,
        });
    }
    let seconds = makespan(
        &intersections,
        config.transfer.parallel_intersections,
        config.transfer.max_rate_total,
    );
    let window = config.transfer.end_time.map(|end| {
        let start = config
            .start_time
            .unwrap_or(StartTime { hour: 0, minute: 0 });
        let minutes = |t: StartTime| i64::from(t.hour) * 60 + i64::from(t.minute);
        let mut span = (minutes(end) - minutes(start)).rem_euclid(24 * 60);
        if span == 0 {
            span = 24 * 60;
        }
        (start, end, Duration::from_secs(span as u64 * 60))
    });
    Estimate {
        intersections,
        window,
        seconds,
    }
}

/// The pass's length: `workers` at a time, each taking the next
/// intersection in order, and no faster than `total_rate` for all bytes.
fn makespan(list: &[IntersectionEstimate], workers: usize, total_rate: Option<u64>) -> Option<f64> {
    let mut free_at = vec![0.0f64; workers.max(1)];
    for i in list {
        let s = i.seconds?;
        if let Some(w) = free_at
            .iter_mut()
            .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
        {
            *w += s;
        }
    }
    let parallel = free_at.into_iter().fold(0.0, f64::max);
    let total: u64 = list.iter().map(|i| i.bytes).sum();
    Some(match total_rate {
        Some(r) => parallel.max(total as f64 / r as f64),
        None => parallel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{IntersectionReport, Outcome};

    fn config() -> Config {
        let mut h = crate::transfer::harness::Harness::new().config;
        let mut b = h.intersections[0].clone();
        b.name = "b".into();
        h.intersections[0].name = "a".into();
        h.intersections.push(b);
        h
    }

    fn last(name: &str, read: u64, seconds: f64) -> IntersectionReport {
        let mut r = IntersectionReport::new(&config().intersections[0]);
        r.name = name.into();
        r.outcome = Outcome::Ok;
        r.read_bytes = read;
        r.seconds = seconds;
        r
    }

    #[test]
    fn last_rates_caps_and_workers_decide_whether_the_night_fits() {
        let mut c = config();
        c.start_time = Some(StartTime {
            hour: 23,
            minute: 0,
        });
        c.transfer.end_time = Some(StartTime { hour: 1, minute: 0 });
        let previous = RunReport {
            pass: String::new(),
            ledger: Vec::new(),
            started: 0,
            seconds: 10.0,
            config: "/c".into(),
            intersections: vec![last("a", 100 << 20, 100.0), last("b", 10, 1.0)],
        };
        let pull = [("a".to_string(), 7200u64 << 20), ("b".to_string(), 0)];
        let e = estimate(&c, &pull, Some(&previous));
        // a: 1 MiB/s measured -> 7200 s, in a window of 23:00-01:00 = 7200 s.
        assert_eq!(
            e.intersections[0].rate,
            Some((f64::from(1u32 << 20), "last pass"))
        );
        assert_eq!(e.window.map(|w| w.2), Some(Duration::from_secs(7200)));
        assert_eq!(e.seconds, Some(7200.0));
        assert_eq!(e.fits(), Some(true));
        // A cap below the measured rate decides: 4 h, half of it deferred.
        c.intersections[0].max_rate = Some(512 << 10);
        let e = estimate(&c, &pull, Some(&previous));
        assert_eq!(e.intersections[0].rate.map(|r| r.1), Some("max_rate"));
        assert_eq!(e.fits(), Some(false));
        assert_eq!(e.deferred_bytes(), Some(3600 << 20));
        // Unknown rate (no history, no cap): no verdict.
        let e = estimate(&c, &[("b".into(), 5 << 20)], None);
        assert_eq!((e.seconds, e.fits()), (None, None));
        // Two intersections, one worker: one after the other; the total cap binds.
        c.intersections[0].max_rate = Some(1 << 20);
        c.intersections[1].max_rate = Some(1 << 20);
        c.transfer.parallel_intersections = 1;
        let pull = [("a".to_string(), 60u64 << 20), ("b".to_string(), 60 << 20)];
        assert_eq!(estimate(&c, &pull, None).seconds, Some(120.0));
        c.transfer.parallel_intersections = 2;
        assert_eq!(estimate(&c, &pull, None).seconds, Some(60.0));
        c.transfer.max_rate_total = Some(1 << 20);
        assert_eq!(estimate(&c, &pull, None).seconds, Some(120.0));
    }
}
