//! The transfer window (`transfer.end_time`): after it no new file is
//! started; files already being read may finish until [`GRACE`] later,
//! and at that moment the session is shut, whatever is still moving: the
//! partial files stay and resume on the next pass. What a pass did not get
//! to is reported as deferred, not as an error.
//!
//! The end is the first `end_time` on the local clock after the pass
//! starts, so a pass started by hand after the end (or at boot, after a
//! night the server was off) runs until the next day's end_time, bounded as
//! always by `transfer.intersection_deadline`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::clock::next_local_time;
use crate::config::StartTime;

/// How long files in flight at `end_time` may go on.
pub const GRACE: Duration = Duration::from_secs(60);

/// With the `fault-injection` feature (the test suite's builds, never a
/// shipped binary), this environment variable sets [`GRACE`] in seconds:
/// a test cannot wait a real minute past the end for every case, while the
/// end itself is a real `"HH:MM"` on the local clock as in production.
pub const GRACE_ENV: &str = "V2X_TEST_WINDOW_GRACE_SECONDS";

/// When one pass must stop starting files, and stop moving bytes.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// `end_time`: no file is started from here on.
    pub end: Instant,
    /// `end` + the grace: the session is shut.
    pub hard_end: Instant,
    /// `end` in Unix seconds, for messages.
    pub end_unix: i64,
}

impl Window {
    /// The window of a pass starting now, if `end_time` is set.
    pub fn starting_now(end_time: Option<StartTime>) -> Option<Window> {
        let end_time = end_time?;
        let now = SystemTime::now();
        let now_secs = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
        let end_unix = next_local_time(end_time.hour, end_time.minute, now_secs.floor() as i64)?;
        let until = Duration::from_secs_f64((end_unix as f64 - now_secs).max(0.0));
        let end = Instant::now() + until;
        Some(Window {
            end,
            hard_end: end + grace(),
            end_unix,
        })
    }

    /// Whether no new file may start.
    pub fn closed(&self, now: Instant) -> bool {
        now >= self.end
    }
}

fn grace() -> Duration {
    #[cfg(feature = "fault-injection")]
    if let Some(secs) = std::env::var(GRACE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_secs(secs);
    }
    GRACE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_is_ahead_within_a_day_and_the_hard_end_a_grace_later() {
        assert!(Window::starting_now(None).is_none());
        let w = Window::starting_now(Some(StartTime { hour: 3, minute: 0 })).unwrap();
        let now = Instant::now();
        assert!(!w.closed(now));
        assert!(w.end <= now + Duration::from_secs(25 * 3600));
        assert_eq!(w.hard_end - w.end, grace());
        assert_eq!(w.end_unix % 60, 0);
    }
}
