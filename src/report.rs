//! The run summary: what each intersection's pass did, as the JSON state
//! file that `status` reads and as a table for people.
//!
//! The state file is written atomically (temporary file, fsync, rename,
//! folder fsync) so `status` never reads half a report, and it carries each
//! intersection's last success forward from the previous report, so an
//! intersection that keeps failing still shows when it last worked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "last-run.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every file that could be taken was landed and removed remotely.
    Ok,
    /// Something failed; the remote data that was not landed is kept.
    Failed,
    /// Stopped by a signal before it finished.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// A remote entry left where it was, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Relative to `archive/`, with unprintable bytes escaped.
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntersectionReport {
    pub name: String,
    pub host: String,
    pub outcome: Outcome,
    /// Unix seconds.
    pub started: u64,
    pub seconds: f64,
    /// Files landed and removed remotely (including ones already present locally).
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Of `files`, those an earlier pass had already landed (rerun after a crash).
    pub already_present: u64,
    /// Bytes fetched by an earlier pass and resumed in this one.
    pub resumed_bytes: u64,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<String>,
    /// Unix seconds of the last pass that ended `ok` (this one or an earlier one).
    pub last_success: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Unix seconds.
    pub started: u64,
    pub seconds: f64,
    pub config: PathBuf,
    pub intersections: Vec<IntersectionReport>,
}

impl RunReport {
    /// Whether every intersection was handled (exit status 0).
    pub fn all_ok(&self) -> bool {
        self.intersections.iter().all(|i| i.outcome == Outcome::Ok)
    }

    /// Carries `last_success` over from the previous report for
    /// intersections that did not succeed this time.
    pub fn inherit_last_success(&mut self, previous: &RunReport) {
        let before: BTreeMap<&str, Option<u64>> = previous
            .intersections
            .iter()
            .map(|i| (i.name.as_str(), i.last_success))
            .collect();
        for ix in &mut self.intersections {
            if ix.outcome != Outcome::Ok
                && let Some(Some(t)) = before.get(ix.name.as_str())
            {
                ix.last_success = Some(*t);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write the state file {path:?}: {source} (is the state_directory writable?)")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the state file {path:?}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no pass has run yet: {path:?} does not exist")]
    Missing { path: PathBuf },
    #[error("the state file {path:?} is not a report: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn state_path(state_directory: &Path) -> PathBuf {
    state_directory.join(STATE_FILE)
}

pub fn read(state_directory: &Path) -> Result<RunReport, StateError> {
    let path = state_path(state_directory);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StateError::Missing { path }),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| StateError::Parse { path, source })
}

/// Writes the report atomically.
pub fn write(state_directory: &Path, report: &RunReport) -> Result<(), StateError> {
    let path = state_path(state_directory);
    let tmp = state_directory.join(format!(".{STATE_FILE}.tmp"));
    let werr = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(state_directory).map_err(werr)?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| werr(io::Error::other(e)))?;
    let mut f = File::create(&tmp).map_err(werr)?;
    f.write_all(&json).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    fs::rename(&tmp, &path).map_err(werr)?;
    File::open(state_directory)
        .and_then(|d| d.sync_all())
        .map_err(werr)?;
    Ok(())
}

/// Human units for bytes, powers of 1024.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
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

/// The `status` table.
pub fn render_table(report: &RunReport) -> String {
    let mut rows = vec![[
        "INTERSECTION".to_string(),
        "RESULT".into(),
        "FILES".into(),
        "BYTES".into(),
        "SECONDS".into(),
        "SKIPPED".into(),
        "ERRORS".into(),
        "LAST SUCCESS (UTC)".into(),
    ]];
    for ix in &report.intersections {
        rows.push([
            ix.name.clone(),
            ix.outcome.as_str().into(),
            ix.files.to_string(),
            human_bytes(ix.bytes),
            format!("{:.1}", ix.seconds),
            ix.skipped.len().to_string(),
            ix.errors.len().to_string(),
            ix.last_success.map(utc).unwrap_or_else(|| "never".into()),
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = format!(
        "last pass: started {} UTC, {:.1} s, config {}\n\n",
        utc(report.started),
        report.seconds,
        report.config.display()
    );
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for ix in &report.intersections {
        for e in &ix.errors {
            let _ = writeln!(out, "{}: error: {e}", ix.name);
        }
        for s in &ix.skipped {
            let _ = writeln!(out, "{}: skipped {}: {}", ix.name, s.path, s.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ix(name: &str, outcome: Outcome, last: Option<u64>) -> IntersectionReport {
        IntersectionReport {
            name: name.into(),
            host: "h".into(),
            outcome,
            started: 0,
            seconds: 1.0,
            files: 2,
            bytes: 2048,
            already_present: 0,
            resumed_bytes: 0,
            skipped: vec![],
            errors: vec![],
            last_success: last,
        }
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_651_199), "2026-11-25 23:59:59");
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn round_trips_and_inherits_last_success() {
        let tmp = tempfile::tempdir().unwrap();
        let first = RunReport {
            started: 10,
            seconds: 1.0,
            config: "/c".into(),
            intersections: vec![
                ix("a", Outcome::Ok, Some(10)),
                ix("b", Outcome::Ok, Some(10)),
            ],
        };
        write(tmp.path(), &first).unwrap();
        assert_eq!(read(tmp.path()).unwrap(), first);
        let mut second = RunReport {
            started: 20,
            seconds: 1.0,
            config: "/c".into(),
            intersections: vec![
                ix("a", Outcome::Failed, None),
                ix("b", Outcome::Ok, Some(20)),
            ],
        };
        second.inherit_last_success(&first);
        assert_eq!(second.intersections[0].last_success, Some(10));
        assert_eq!(second.intersections[1].last_success, Some(20));
        assert!(!second.all_ok());
        let table = render_table(&second);
        assert!(table.contains("failed"), "{table}");
        assert!(table.contains("1970-01-01 00:00:10"), "{table}");
    }

    #[test]
    fn missing_state_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(read(tmp.path()), Err(StateError::Missing { .. })));
    }
}
