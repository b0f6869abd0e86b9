//! The run summary: what each intersection's pass did, as the JSON state
//! file that `status` reads and as a table for people.
//!
//! The state file is written atomically (temporary file, fsync, rename,
//! folder fsync) so `status` never reads half a report, and it carries each
//! intersection's last success forward from the previous report, so an
//! intersection that keeps failing still shows when it last worked.
//!
//! | module | owns |
//! | --- | --- |
//! | this file | [`RunReport`], the state file, the `status` table and JSON |
//! | [`metrics`] | the Prometheus node_exporter textfile |
//! | [`progress`] | running totals, and the progress bar of `run` on a terminal |

pub mod metrics;
pub mod progress;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::clock::utc;
use crate::common::durable::{self, Ownership};
use crate::common::text::{human_age, human_bytes};

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

/// What `archive/` still held after the pass: every listed file not
/// removed (deferred, failed, too young), as the last connected attempt
/// listed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub files: u64,
    pub bytes: u64,
    /// Unix seconds: the modification time of the oldest file left.
    pub oldest_mtime: Option<u64>,
    /// False when the listing was cut short (then these are lower bounds).
    pub complete: bool,
}

/// What the transfer window (`transfer.end_time`) left for the next pass:
/// files not started, or stopped with their prefix kept to resume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    pub files: u64,
    pub bytes: u64,
}

/// The coprocessor's free space (`statvfs@openssh.com` of its
/// `v2x_data_location`), or why it is unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSpace {
    /// Bytes available to unprivileged users (`df`'s "Avail").
    pub free_bytes: Option<u64>,
    /// The filesystem's size.
    pub size_bytes: Option<u64>,
    /// Unix seconds of the measurement.
    pub measured: Option<u64>,
    /// `status.remote_min_free` in bytes for this filesystem, at the pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_bytes: Option<u64>,
    /// Why there is no measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl RemoteSpace {
    pub fn measured(free: u64, size: u64, at: u64) -> RemoteSpace {
        RemoteSpace {
            free_bytes: Some(free),
            size_bytes: Some(size),
            measured: Some(at),
            ..RemoteSpace::default()
        }
    }

    /// The server did not advertise `statvfs@openssh.com`.
    pub fn unsupported() -> RemoteSpace {
        RemoteSpace::failed(
            "the coprocessor's SFTP server does not offer statvfs@openssh.com (OpenSSH's \
             sftp-server and internal-sftp do); its free space cannot be watched from here",
        )
    }

    pub fn failed(why: &str) -> RemoteSpace {
        RemoteSpace {
            unknown: Some(why.to_string()),
            ..RemoteSpace::default()
        }
    }

    /// Below `status.remote_min_free` at the pass.
    pub fn low(&self) -> bool {
        matches!((self.free_bytes, self.min_free_bytes), (Some(f), Some(m)) if f < m)
    }
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
    /// The link's round trip in milliseconds, measured when `compression`
    /// is left to the link: the server's KEXINIT answering our banner, or
    /// where that is not clear the shortest of the later samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// What ended the intersection early, as a short stable name
    /// (`deadline`, `host-key`, `disk-space`, ...; the message is in
    /// `errors`), for scripts and alert rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// File bytes read from the coprocessor in this pass (resumed and
    /// partial files included): what the link carried, before SSH.
    #[serde(default)]
    pub read_bytes: u64,
    /// Unix seconds of the last pass (this or an earlier one) that landed
    /// at least one file; `None`: none yet.
    #[serde(default)]
    pub last_data: Option<u64>,
    /// Unix seconds of the first pass this state file knows of for the
    /// intersection: a collector that never sent anything is judged from it.
    #[serde(default)]
    pub first_pass: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,
    /// Set when the transfer window closed during this pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Deferred>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_space: Option<RemoteSpace>,
    /// Ledger records this pass wrote for the intersection (files landed
    /// and removed, or about to be; a file already recorded by a crashed
    /// pass is not recorded again).
    #[serde(default)]
    pub recorded: u64,
    /// How files were checked before their remote copies went on the last
    /// connection: `sha256` or `size` (see `transfer.verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
}

impl IntersectionReport {
    /// An intersection's report before anything happened: `ok`, nothing
    /// landed, nothing measured. Every other field is filled in by the pass.
    pub fn starting(name: &str, host: &str, started: u64) -> IntersectionReport {
        IntersectionReport {
            name: name.to_string(),
            host: host.to_string(),
            outcome: Outcome::Ok,
            started,
            seconds: 0.0,
            files: 0,
            bytes: 0,
            already_present: 0,
            resumed_bytes: 0,
            skipped: Vec::new(),
            errors: Vec::new(),
            last_success: None,
            rtt_ms: None,
            stopped_by: None,
            read_bytes: 0,
            last_data: None,
            first_pass: None,
            backlog: None,
            deferred: None,
            remote_space: None,
            recorded: 0,
            verification: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The pass's id, as its ledger records name it (`pass`).
    #[serde(default)]
    pub pass: String,
    /// The ledger's day files that hold this pass's records, relative to
    /// the state directory: `ledger --pass last` reads these.
    #[serde(default)]
    pub ledger: Vec<String>,
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
    /// intersections that did not succeed this time, `last_data` for
    /// those that landed nothing, and `first_pass` always.
    pub fn inherit_last_success(&mut self, previous: &RunReport) {
        let before: BTreeMap<&str, &IntersectionReport> = previous
            .intersections
            .iter()
            .map(|i| (i.name.as_str(), i))
            .collect();
        for ix in &mut self.intersections {
            let Some(old) = before.get(ix.name.as_str()) else {
                continue;
            };
            if ix.outcome != Outcome::Ok && old.last_success.is_some() {
                ix.last_success = old.last_success;
            }
            if ix.last_data.is_none() {
                ix.last_data = old.last_data;
            }
            // Reports from before `first_pass` existed: their pass is the earliest known.
            let old_first = old.first_pass.unwrap_or(old.started);
            ix.first_pass = Some(ix.first_pass.map_or(old_first, |f| f.min(old_first)));
        }
    }

    /// After a pass over some intersections (`run --only`): keeps the
    /// previous report's entries of the other configured ones, so their
    /// last pass and last success are not forgotten. `configured` gives
    /// the order; intersections no longer configured are dropped.
    pub fn keep_unselected(&mut self, previous: &RunReport, configured: &[String]) {
        for old in &previous.intersections {
            let here = self.intersections.iter().any(|i| i.name == old.name);
            if !here && configured.contains(&old.name) {
                self.intersections.push(old.clone());
            }
        }
        self.intersections.sort_by_key(|i| {
            configured
                .iter()
                .position(|n| *n == i.name)
                .unwrap_or(usize::MAX)
        });
    }
}

/// One row of `status`: a configured intersection and how its passes went.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    pub name: String,
    /// `None`: no pass has taken this intersection yet.
    pub last: Option<IntersectionReport>,
    /// No success within `status.stale_after` (or never).
    pub stale: bool,
    /// Its passes succeed, but no file landed within `status.no_data_after`.
    pub no_data: bool,
}

/// How old is too old, from `[status]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub stale_after: Duration,
    pub no_data_after: Duration,
}

/// Whether an intersection whose last pass ended ok has landed nothing
/// for longer than `no_data_after`: since its last landed file, or, if
/// none ever landed, since the first pass known. A failing intersection
/// is STALE instead, not NO DATA: nothing can land while it fails.
pub fn no_data(ix: &IntersectionReport, no_data_after: Duration, now: u64) -> bool {
    if ix.outcome != Outcome::Ok {
        return false;
    }
    let since = ix.last_data.or(ix.first_pass).unwrap_or(ix.started);
    now.saturating_sub(since) > no_data_after.as_secs()
}

/// The `status` rows, in config order. An intersection is stale when its
/// last success is older than `stale_after`, or when it never succeeded.
pub fn status_rows(
    report: Option<&RunReport>,
    configured: &[String],
    limits: Limits,
    now: u64,
) -> Vec<StatusRow> {
    configured
        .iter()
        .map(|name| {
            let last = report
                .and_then(|r| r.intersections.iter().find(|i| &i.name == name))
                .cloned();
            let stale = match last.as_ref().and_then(|l| l.last_success) {
                Some(t) => now.saturating_sub(t) > limits.stale_after.as_secs(),
                None => true,
            };
            let no_data = last
                .as_ref()
                .is_some_and(|l| no_data(l, limits.no_data_after, now));
            StatusRow {
                name: name.clone(),
                last,
                stale,
                no_data,
            }
        })
        .collect()
}

/// Whether `status` exits 0: every configured intersection's last pass
/// ended ok, and none is stale or without data.
pub fn status_ok(rows: &[StatusRow]) -> bool {
    rows.iter().all(|r| {
        !r.stale && !r.no_data && r.last.as_ref().is_some_and(|l| l.outcome == Outcome::Ok)
    })
}

/// `status --json`: the state file's report, each intersection with
/// `stale` and `seconds_since_success` added, plus `stale_after_seconds`
/// and `not_run` (configured intersections no pass has taken yet).
pub fn status_json(
    report: &RunReport,
    rows: &[StatusRow],
    limits: Limits,
    now: u64,
) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    if let Some(list) = value
        .get_mut("intersections")
        .and_then(|v| v.as_array_mut())
    {
        for ix in list.iter_mut() {
            let name = ix
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_string();
            let row = rows.iter().find(|r| r.name == name);
            let since = row
                .and_then(|r| r.last.as_ref())
                .and_then(|l| l.last_success)
                .map(|t| now.saturating_sub(t));
            let last = row.and_then(|r| r.last.as_ref());
            let since_data = last
                .and_then(|l| l.last_data)
                .map(|t| now.saturating_sub(t));
            let oldest_age = last
                .and_then(|l| l.backlog.as_ref())
                .and_then(|b| b.oldest_mtime)
                .map(|t| now.saturating_sub(t));
            let low = last
                .and_then(|l| l.remote_space.as_ref())
                .map(RemoteSpace::low);
            if let Some(obj) = ix.as_object_mut() {
                // Not configured any more: not judged.
                obj.insert("stale".into(), row.map(|r| r.stale).into());
                obj.insert("no_data".into(), row.map(|r| r.no_data).into());
                obj.insert("seconds_since_success".into(), since.into());
                obj.insert("seconds_since_data".into(), since_data.into());
                obj.insert("backlog_oldest_age_seconds".into(), oldest_age.into());
                obj.insert("remote_space_low".into(), low.into());
            }
        }
    }
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "stale_after_seconds".into(),
            limits.stale_after.as_secs().into(),
        );
        obj.insert(
            "no_data_after_seconds".into(),
            limits.no_data_after.as_secs().into(),
        );
        let not_run: Vec<&str> = rows
            .iter()
            .filter(|r| r.last.is_none())
            .map(|r| r.name.as_str())
            .collect();
        obj.insert("not_run".into(), not_run.into());
    }
    value
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

/// The last pass's report, for `status` and for carrying `last_success`
/// over to the next one.
///
/// # Errors
/// [`StateError::Missing`] when no pass has written one yet;
/// [`StateError::Read`] when it cannot be read; [`StateError::Parse`] when
/// it is not a report (damaged, or from an incompatible version).
pub fn read(state_directory: &Path) -> Result<RunReport, StateError> {
    let path = state_path(state_directory);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StateError::Missing { path }),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| StateError::Parse { path, source })
}

/// Replaces the state file durably (see [`crate::common::durable`]).
///
/// # Errors
/// [`StateError::Write`] naming the file: the state directory cannot be
/// created or written, or the disk is full.
pub fn write(state_directory: &Path, report: &RunReport) -> Result<(), StateError> {
    let path = state_path(state_directory);
    let werr = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(state_directory).map_err(werr)?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| werr(io::Error::other(e)))?;
    // Readable by the service's group: `status` runs as an operator in it.
    let own = Ownership {
        mode: 0o640,
        owner: None,
    };
    durable::replace_file(&path, &json, own).map_err(werr)
}

/// The `status` table: one row per configured intersection, then the
/// coprocessors' disks and backlogs, deferred work, errors and skipped
/// entries of the last pass.
pub fn render_table(
    report: Option<&RunReport>,
    rows: &[StatusRow],
    limits: Limits,
    now: u64,
) -> String {
    let mut table = vec![[
        "INTERSECTION".to_string(),
        "LAST PASS (UTC)".into(),
        "RESULT".into(),
        "FILES".into(),
        "BYTES".into(),
        "LAST SUCCESS (UTC)".into(),
        "COPROCESSOR FREE".into(),
        "LEFT IN ARCHIVE".into(),
        "".into(),
    ]];
    for row in rows {
        let (pass, result, files, bytes, success, free, left) = match &row.last {
            None => (
                "never".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                "never".to_string(),
                "-".to_string(),
                "-".to_string(),
            ),
            Some(ix) => (
                utc(ix.started),
                ix.outcome.as_str().to_string(),
                ix.files.to_string(),
                human_bytes(ix.bytes),
                ix.last_success
                    .map(|t| format!("{} ({} ago)", utc(t), human_age(now.saturating_sub(t))))
                    .unwrap_or_else(|| "never".into()),
                free_cell(ix.remote_space.as_ref()),
                left_cell(ix.backlog.as_ref(), now),
            ),
        };
        let mut flags = Vec::new();
        if row.stale {
            flags.push(format!(
                "STALE (no success for over {})",
                human_age(limits.stale_after.as_secs())
            ));
        }
        if row.no_data {
            flags.push(format!(
                "NO DATA (no file landed for over {})",
                human_age(limits.no_data_after.as_secs())
            ));
        }
        if row
            .last
            .as_ref()
            .and_then(|l| l.remote_space.as_ref())
            .is_some_and(RemoteSpace::low)
        {
            flags.push("COPROCESSOR DISK LOW".into());
        }
        table.push([
            row.name.clone(),
            pass,
            result,
            files,
            bytes,
            success,
            free,
            left,
            flags.join(", "),
        ]);
    }
    let mut widths = [0usize; 9];
    for r in &table {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = match report {
        Some(report) => format!(
            "last pass: started {} UTC, {:.1} s, config {}\n\n",
            utc(report.started),
            report.seconds,
            report.config.display()
        ),
        None => "no pass has run yet\n\n".to_string(),
    };
    for r in &table {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for ix in rows.iter().filter_map(|r| r.last.as_ref()) {
        if let Some(d) = &ix.deferred
            && d.files > 0
        {
            let _ = writeln!(
                out,
                "{}: deferred {} file(s), {}: the transfer window (transfer.end_time) closed; \
                 the next pass takes them",
                ix.name,
                d.files,
                human_bytes(d.bytes)
            );
        }
        if let Some(s) = &ix.remote_space {
            if let Some(why) = &s.unknown {
                let _ = writeln!(out, "{}: coprocessor free space unknown: {why}", ix.name);
            } else if s.low() {
                let _ = writeln!(
                    out,
                    "{}: the coprocessor's disk is low ({} free, status.remote_min_free wants {}); \
                     it stops recording when full",
                    ix.name,
                    free_cell(Some(s)),
                    human_bytes(s.min_free_bytes.unwrap_or(0))
                );
            }
        }
        for e in &ix.errors {
            let _ = writeln!(out, "{}: error: {e}", ix.name);
        }
        for s in &ix.skipped {
            let _ = writeln!(out, "{}: skipped {}: {}", ix.name, s.path, s.reason);
        }
    }
    out
}

/// "61.2 GiB (23%)", or "?" when unknown.
fn free_cell(space: Option<&RemoteSpace>) -> String {
    match space.map(|s| (s.free_bytes, s.size_bytes)) {
        Some((Some(free), Some(size))) if size > 0 => format!(
            "{} ({:.0}%)",
            human_bytes(free),
            free as f64 * 100.0 / size as f64
        ),
        Some((Some(free), _)) => human_bytes(free),
        _ => "?".into(),
    }
}

/// "12 file(s), 30.0 MiB, oldest 2d" or "0".
fn left_cell(backlog: Option<&Backlog>, now: u64) -> String {
    match backlog {
        None => "?".into(),
        Some(b) if b.files == 0 => "0".into(),
        Some(b) => format!(
            "{}{} file(s), {}{}",
            if b.complete { "" } else { ">= " },
            b.files,
            human_bytes(b.bytes),
            b.oldest_mtime
                .map(|t| format!(", oldest {}", human_age(now.saturating_sub(t))))
                .unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(stale_after: u64) -> Limits {
        Limits {
            stale_after: Duration::from_secs(stale_after),
            no_data_after: Duration::from_secs(36 * 3600),
        }
    }

    /// A one-second pass started at `started` of config `/c`.
    fn report(started: u64, intersections: Vec<IntersectionReport>) -> RunReport {
        RunReport {
            pass: String::new(),
            ledger: Vec::new(),
            started,
            seconds: 1.0,
            config: "/c".into(),
            intersections,
        }
    }

    fn ix(name: &str, outcome: Outcome, last: Option<u64>) -> IntersectionReport {
        IntersectionReport {
            outcome,
            seconds: 1.0,
            files: 2,
            bytes: 2048,
            last_success: last,
            ..IntersectionReport::starting(name, "h", 0)
        }
    }

    #[test]
    fn round_trips_and_inherits_last_success() {
        let tmp = tempfile::tempdir().unwrap();
        let first = report(
            10,
            vec![
                ix("a", Outcome::Ok, Some(10)),
                ix("b", Outcome::Ok, Some(10)),
            ],
        );
        write(tmp.path(), &first).unwrap();
        assert_eq!(read(tmp.path()).unwrap(), first);
        let mut second = report(
            20,
            vec![
                ix("a", Outcome::Failed, None),
                ix("b", Outcome::Ok, Some(20)),
            ],
        );
        second.inherit_last_success(&first);
        assert_eq!(second.intersections[0].last_success, Some(10));
        assert_eq!(second.intersections[1].last_success, Some(20));
        assert!(!second.all_ok());
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let rows = status_rows(Some(&second), &names, lim(5), 24);
        assert_eq!(
            rows.iter().map(|r| r.stale).collect::<Vec<_>>(),
            [true, false, true],
            "a: 14 s since success, b: 4 s, c: never"
        );
        assert!(!status_ok(&rows));
        let table = render_table(Some(&second), &rows, lim(5), 24);
        assert!(table.contains("failed"), "{table}");
        assert!(table.contains("1970-01-01 00:00:10 (14s ago)"), "{table}");
        assert!(table.contains("STALE (no success for over 5s)"), "{table}");
        let json = status_json(&second, &rows, lim(5), 24);
        assert_eq!(json["intersections"][0]["stale"], true);
        assert_eq!(json["intersections"][1]["stale"], false);
        assert_eq!(json["intersections"][1]["seconds_since_success"], 4);
        assert_eq!(json["not_run"][0], "c");
        assert_eq!(json["stale_after_seconds"], 5);
    }

    #[test]
    fn status_is_ok_only_when_all_succeeded_recently() {
        let last = report(100, vec![ix("a", Outcome::Ok, Some(100))]);
        let names = vec!["a".to_string()];
        let rows = status_rows(Some(&last), &names, lim(60), 130);
        assert!(status_ok(&rows));
        let rows = status_rows(Some(&last), &names, lim(60), 161);
        assert!(!status_ok(&rows));
        assert!(!status_ok(&status_rows(None, &names, lim(60), 0)));
    }

    #[test]
    fn keep_unselected_keeps_other_intersections_in_config_order() {
        let previous = report(
            10,
            vec![
                ix("a", Outcome::Ok, Some(10)),
                ix("b", Outcome::Ok, Some(10)),
                ix("gone", Outcome::Ok, Some(10)),
            ],
        );
        let mut only_b = report(20, vec![ix("b", Outcome::Ok, Some(20))]);
        let configured = vec!["a".to_string(), "b".to_string()];
        only_b.keep_unselected(&previous, &configured);
        let names: Vec<_> = only_b
            .intersections
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(only_b.intersections[1].last_success, Some(20));
    }

    #[test]
    fn no_data_and_stale_appear_exactly_when_they_should() {
        const DAY: u64 = 86_400;
        let now = 100 * DAY;
        let limits = Limits {
            stale_after: Duration::from_secs(36 * 3600),
            no_data_after: Duration::from_secs(36 * 3600),
        };
        let with = |name: &str, outcome, success: Option<u64>, data: Option<u64>, first| {
            let mut r = ix(name, outcome, success);
            r.started = now - 3600;
            r.last_data = data;
            r.first_pass = first;
            if data != Some(now - 3600) {
                r.files = 0;
                r.bytes = 0;
            }
            r
        };
        let last = RunReport {
            pass: String::new(),
            ledger: Vec::new(),
            started: now - 3600,
            seconds: 1.0,
            config: "/c".into(),
            intersections: vec![
                // Landed last night.
                with(
                    "healthy",
                    Outcome::Ok,
                    Some(now - 3600),
                    Some(now - 3600),
                    Some(now - 30 * DAY),
                ),
                // Passes succeed, nothing landed for two days.
                with(
                    "silent",
                    Outcome::Ok,
                    Some(now - 3600),
                    Some(now - 2 * DAY),
                    Some(now - 30 * DAY),
                ),
                // Never landed anything, watched for two days.
                with(
                    "never",
                    Outcome::Ok,
                    Some(now - 3600),
                    None,
                    Some(now - 2 * DAY),
                ),
                // Added yesterday, nothing yet: not judged too early.
                with("new", Outcome::Ok, Some(now - 3600), None, Some(now - 3600)),
                // Failing for two days: STALE, and not NO DATA as well.
                with(
                    "failing",
                    Outcome::Failed,
                    Some(now - 2 * DAY),
                    Some(now - 2 * DAY),
                    Some(now - 30 * DAY),
                ),
                // Failed once last night: neither yet.
                with(
                    "blip",
                    Outcome::Failed,
                    Some(now - DAY - 3600),
                    Some(now - DAY - 3600),
                    Some(now - 30 * DAY),
                ),
            ],
        };
        let names: Vec<String> = last.intersections.iter().map(|i| i.name.clone()).collect();
        let rows = status_rows(Some(&last), &names, limits, now);
        let flags: Vec<(&str, bool, bool)> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.stale, r.no_data))
            .collect();
        assert_eq!(
            flags,
            [
                ("healthy", false, false),
                ("silent", false, true),
                ("never", false, true),
                ("new", false, false),
                ("failing", true, false),
                ("blip", false, false),
            ]
        );
        assert!(status_ok(&rows[..1]), "a healthy intersection alone is ok");
        assert!(!status_ok(&rows[..2]), "NO DATA fails status like STALE");
        let table = render_table(Some(&last), &rows, limits, now);
        let line = |n: &str| {
            table
                .lines()
                .find(|l| l.starts_with(n))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            line("silent").contains("NO DATA (no file landed for over 1d 12h)"),
            "{table}"
        );
        assert!(!line("healthy").contains("NO DATA") && !line("healthy").contains("STALE"));
        assert!(line("failing").contains("STALE") && !line("failing").contains("NO DATA"));
        let json = status_json(&last, &rows, limits, now);
        assert_eq!(json["intersections"][1]["no_data"], true);
        assert_eq!(json["intersections"][1]["seconds_since_data"], 2 * DAY);
        assert_eq!(json["intersections"][0]["no_data"], false);
        assert_eq!(json["no_data_after_seconds"], 36 * 3600);

        // The next pass of "silent" lands nothing: last_data and first_pass carry over.
        let mut next = RunReport {
            pass: String::new(),
            ledger: Vec::new(),
            started: now,
            seconds: 1.0,
            config: "/c".into(),
            intersections: vec![with("silent", Outcome::Ok, Some(now), None, Some(now))],
        };
        next.inherit_last_success(&last);
        let s = &next.intersections[0];
        assert_eq!(
            (s.last_data, s.first_pass),
            (Some(now - 2 * DAY), Some(now - 30 * DAY))
        );
    }

    #[test]
    fn missing_state_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(read(tmp.path()), Err(StateError::Missing { .. })));
    }
}
