//! The one clock: remote mtimes, ages and report times are Unix seconds,
//! read here so that a test or a rule never compares two different clocks.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds, as remote mtimes are.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The first moment after `now` (Unix seconds) when the local clock
/// reads `hour:minute:00`, in Unix seconds: the system's time zone and its
/// daylight saving rules, as systemd reads `OnCalendar=` (through the C
/// library's `localtime_r` and `mktime`). `None` if the C library cannot
/// convert (no such local time).
pub fn next_local_time(hour: u8, minute: u8, now: i64) -> Option<i64> {
    #[allow(clippy::useless_conversion)] // time_t is not i64 everywhere
    let t: libc::time_t = now.try_into().ok()?;
    // SAFETY: `tm` is plain data; localtime_r and mktime only read and
    // write the structures they are given.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    for day in 0..3 {
        let mut at = tm;
        at.tm_mday += day;
        at.tm_hour = i32::from(hour);
        at.tm_min = i32::from(minute);
        at.tm_sec = 0;
        // Let mktime decide whether daylight saving time is in effect then.
        at.tm_isdst = -1;
        let when = unsafe { libc::mktime(&mut at) };
        if when == -1 {
            return None;
        }
        #[allow(clippy::useless_conversion)]
        let when = i64::from(when);
        if when > now {
            return Some(when);
        }
    }
    None
}

/// UTC `YYYY-MM-DD HH:MM:SS` without a date crate.
pub fn utc(unix: u64) -> String {
    let secs = unix % 86_400;
    let days = (unix / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_local_time_is_after_now_and_within_a_day() {
        let now = unix_now() as i64;
        for (h, m) in [(0, 0), (5, 30), (23, 59)] {
            let t = next_local_time(h, m, now).unwrap();
            assert!(
                t > now && t <= now + 25 * 3600,
                "{h}:{m} -> {t} (now {now})"
            );
            assert_eq!(t % 60, 0, "on a minute boundary");
            // From exactly then, the next one is a day later (23-25 h with DST).
            let next = next_local_time(h, m, t).unwrap();
            assert!(
                (23 * 3600..=25 * 3600).contains(&(next - t)),
                "{next} - {t}"
            );
        }
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_651_199), "2026-11-25 23:59:59");
    }
}
