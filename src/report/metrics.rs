//! The Prometheus node_exporter textfile (`metrics_textfile`): per
//! intersection, when it last succeeded and what its last pass did, so that
//! monitoring can alert on an intersection that has gone silent, e.g.
//!
//! ```text
//! time() - v2x_data_sftp_client_last_success_timestamp_seconds > 36 * 3600
//! ```
//!
//! Written after every pass (not a dry run) from the same report as the state
//! file, so `run --only` keeps the other intersections' series. The file is
//! replaced atomically (a temporary file whose name does not end in `.prom`,
//! fsync, rename, folder fsync): node_exporter reads the folder at any time
//! and must never see half a file. An intersection that never succeeded has
//! a last success of 0, so the alert above fires for it too.
//!
//! Thresholds from the config (`status.no_data_after`,
//! `status.remote_min_free`, `status.stale_after`) are applied here and
//! exported as `no_data`, `remote_free_low` and `stale_after_seconds`, so
//! the shipped alert rules (`packaging/prometheus-alerts.yml`, checked by
//! `tests/links.rs` with `promtool test rules`) never disagree with
//! `status`. A series the last pass could not measure (free space of a
//! server without `statvfs@openssh.com`, the backlog of a pass that could
//! not list) is left out rather than given a made-up value.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::common::durable::{self, Ownership};
use crate::report::{IntersectionReport, Limits, Outcome, RunReport, no_data};

/// Every metric name starts with this.
pub const PREFIX: &str = "v2x_data_sftp_client_";

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write the metrics textfile {path:?}: {source} (does its folder exist, and may the \
     service user write there? check metrics_textfile)"
)]
pub struct MetricsError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// The exposition text for `report`; `limits` and `now` decide the
/// `no_data` gauge, as `status` would at the end of the pass.
pub fn render(report: &RunReport, limits: Limits, now: u64) -> String {
    type Value = fn(&IntersectionReport) -> Option<String>;
    let per_intersection: [(&str, &str, Value); 21] = [
        (
            "last_success_timestamp_seconds",
            "Unix time the last pass that ended ok started (0: never).",
            |i| Some(i.last_success.unwrap_or(0).to_string()),
        ),
        (
            "last_pass_timestamp_seconds",
            "Unix time the intersection's last pass started.",
            |i| Some(i.started.to_string()),
        ),
        (
            "last_pass_success",
            "1 if the intersection's last pass ended ok, else 0.",
            |i| Some(u8::from(i.outcome == Outcome::Ok).to_string()),
        ),
        (
            "last_pass_files",
            "Files landed and removed remotely by the last pass.",
            |i| Some(i.files.to_string()),
        ),
        (
            "last_pass_bytes",
            "Bytes of the files landed by the last pass.",
            |i| Some(i.bytes.to_string()),
        ),
        (
            "last_pass_read_bytes",
            "File bytes the last pass read from the coprocessor (partial files included).",
            |i| Some(i.read_bytes.to_string()),
        ),
        (
            "last_pass_errors",
            "Errors in the last pass (0 when it ended ok).",
            |i| Some(i.errors.len().to_string()),
        ),
        (
            "last_pass_skipped",
            "Remote entries the last pass left alone (too young, symlinks, odd names).",
            |i| Some(i.skipped.len().to_string()),
        ),
        (
            "last_pass_duration_seconds",
            "How long the intersection's last pass took.",
            |i| Some(format!("{:.3}", i.seconds)),
        ),
        (
            "last_data_timestamp_seconds",
            "Unix time of the last pass that landed at least one file (0: never).",
            |i| Some(i.last_data.unwrap_or(0).to_string()),
        ),
        (
            "deferred_files",
            "Files the transfer window (transfer.end_time) left for the next pass.",
            |i| Some(i.deferred.as_ref().map_or(0, |d| d.files).to_string()),
        ),
        (
            "deferred_bytes",
            "Bytes of the files the transfer window left for the next pass.",
            |i| Some(i.deferred.as_ref().map_or(0, |d| d.bytes).to_string()),
        ),
        (
            "backlog_files",
            "Files left in the coprocessor's archive/ after the last pass.",
            |i| i.backlog.as_ref().map(|b| b.files.to_string()),
        ),
        (
            "backlog_bytes",
            "Bytes left in the coprocessor's archive/ after the last pass.",
            |i| i.backlog.as_ref().map(|b| b.bytes.to_string()),
        ),
        (
            "backlog_oldest_file_timestamp_seconds",
            "Modification time of the oldest file left in archive/ (absent: none left).",
            |i| {
                i.backlog
                    .as_ref()
                    .and_then(|b| b.oldest_mtime)
                    .map(|t| t.to_string())
            },
        ),
        (
            "remote_free_bytes",
            "Bytes free for users on the coprocessor's v2x_data_location filesystem (df's Avail).",
            |i| {
                i.remote_space
                    .as_ref()
                    .and_then(|s| s.free_bytes)
                    .map(|v| v.to_string())
            },
        ),
        (
            "remote_size_bytes",
            "Size of the coprocessor's v2x_data_location filesystem.",
            |i| {
                i.remote_space
                    .as_ref()
                    .and_then(|s| s.size_bytes)
                    .map(|v| v.to_string())
            },
        ),
        (
            "remote_min_free_bytes",
            "status.remote_min_free for that filesystem, in bytes.",
            |i| {
                i.remote_space
                    .as_ref()
                    .and_then(|s| s.min_free_bytes)
                    .map(|v| v.to_string())
            },
        ),
        (
            "remote_free_low",
            "1 if the coprocessor's free space is below status.remote_min_free, else 0.",
            |i| {
                i.remote_space
                    .as_ref()
                    .filter(|s| s.free_bytes.is_some())
                    .map(|s| u8::from(s.low()).to_string())
            },
        ),
        (
            "remote_free_known",
            "1 if the last pass could ask the coprocessor's free space (statvfs@openssh.com), else 0.",
            |i| {
                Some(
                    u8::from(
                        i.remote_space
                            .as_ref()
                            .is_some_and(|s| s.free_bytes.is_some()),
                    )
                    .to_string(),
                )
            },
        ),
        (
            "window_closed",
            "1 if the transfer window closed during the last pass.",
            |i| Some(u8::from(i.deferred.is_some()).to_string()),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in per_intersection {
        let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}{name} gauge");
        for ix in &report.intersections {
            if let Some(v) = value(ix) {
                let _ = writeln!(
                    out,
                    "{PREFIX}{name}{{intersection=\"{}\"}} {v}",
                    escape_label(&ix.name),
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP {PREFIX}no_data 1 if the intersection's passes succeed but no file landed for \
         longer than status.no_data_after (its collector may have stopped), at the end of the \
         last pass.\n# TYPE {PREFIX}no_data gauge"
    );
    for ix in &report.intersections {
        let _ = writeln!(
            out,
            "{PREFIX}no_data{{intersection=\"{}\"}} {}",
            escape_label(&ix.name),
            u8::from(no_data(ix, limits.no_data_after, now))
        );
    }
    let _ = writeln!(
        out,
        "# HELP {PREFIX}stale_after_seconds status.stale_after: an intersection with no success \
         for longer is stale.\n# TYPE {PREFIX}stale_after_seconds gauge\n\
         {PREFIX}stale_after_seconds {}",
        limits.stale_after.as_secs()
    );
    let _ = writeln!(
        out,
        "# HELP {PREFIX}pass_timestamp_seconds Unix time the last pass started.\n\
         # TYPE {PREFIX}pass_timestamp_seconds gauge\n\
         {PREFIX}pass_timestamp_seconds {}",
        report.started
    );
    let _ = writeln!(
        out,
        "# HELP {PREFIX}pass_duration_seconds How long the last pass took.\n\
         # TYPE {PREFIX}pass_duration_seconds gauge\n\
         {PREFIX}pass_duration_seconds {:.3}",
        report.seconds
    );
    out
}

/// Label values escape `\`, `"` and newlines (exposition format).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replaces the textfile durably (see [`crate::common::durable`]); its
/// temporary name does not end in `.prom`, so the collector never reads it
/// half written. The folder must exist (it belongs to node_exporter's
/// package, not to us).
///
/// # Errors
/// [`MetricsError`] naming the file: the folder is missing or not writable.
pub fn write(
    path: &Path,
    report: &RunReport,
    limits: Limits,
    now: u64,
) -> Result<(), MetricsError> {
    let own = Ownership {
        mode: 0o644,
        owner: None,
    };
    durable::replace_file(path, render(report, limits, now).as_bytes(), own).map_err(|source| {
        MetricsError {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::IntersectionReport;
    use std::fs;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        stale_after: Duration::from_secs(36 * 3600),
        no_data_after: Duration::from_secs(36 * 3600),
    };

    fn report() -> RunReport {
        let ix = |name: &str, outcome, last| IntersectionReport {
            outcome,
            seconds: 2.5,
            files: 3,
            bytes: 4096,
            errors: if outcome == Outcome::Ok {
                vec![]
            } else {
                vec!["x".into()]
            },
            last_success: last,
            ..IntersectionReport::starting(name, "h", 1_700_000_000)
        };
        RunReport {
            pass: String::new(),
            ledger: Vec::new(),
            started: 1_700_000_000,
            seconds: 3.0,
            config: "/c".into(),
            intersections: vec![
                ix("a", Outcome::Ok, Some(1_700_000_000)),
                ix("b\"q", Outcome::Failed, None),
            ],
        }
    }

    #[test]
    fn every_sample_has_help_and_type_and_the_prefix() {
        let text = render(&report(), LIMITS, 1_700_000_100);
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "TYPE twice: {name}");
                assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with(PREFIX), "{line}");
                assert!(declared.contains(name), "sample before its TYPE: {line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert!(text.contains(
            "v2x_data_sftp_client_last_success_timestamp_seconds{intersection=\"a\"} 1700000000\n"
        ));
        assert!(text.contains(
            "v2x_data_sftp_client_last_success_timestamp_seconds{intersection=\"b\\\"q\"} 0\n"
        ));
        assert!(
            text.contains("v2x_data_sftp_client_last_pass_success{intersection=\"b\\\"q\"} 0\n")
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v2x.prom");
        fs::write(&p, "old").unwrap();
        write(&p, &report(), LIMITS, 1_700_000_100).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            render(&report(), LIMITS, 1_700_000_100)
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("nope/v2x.prom");
        let e = write(&missing, &report(), LIMITS, 1_700_000_100).unwrap_err();
        assert!(e.to_string().contains("metrics_textfile"), "{e}");
    }
}
