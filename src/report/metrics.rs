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

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::common::durable::{self, Ownership};
use crate::report::{Outcome, RunReport};

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

/// The exposition text for `report`.
pub fn render(report: &RunReport) -> String {
    type Value = fn(&crate::report::IntersectionReport) -> String;
    let per_intersection: [(&str, &str, &str, Value); 8] = [
        (
            "last_success_timestamp_seconds",
            "gauge",
            "Unix time the last pass that ended ok started (0: never).",
            |i| i.last_success.unwrap_or(0).to_string(),
        ),
        (
            "last_pass_timestamp_seconds",
            "gauge",
            "Unix time the intersection's last pass started.",
            |i| i.started.to_string(),
        ),
        (
            "last_pass_success",
            "gauge",
            "1 if the intersection's last pass ended ok, else 0.",
            |i| u8::from(i.outcome == Outcome::Ok).to_string(),
        ),
        (
            "last_pass_files",
            "gauge",
            "Files landed and removed remotely by the last pass.",
            |i| i.files.to_string(),
        ),
        (
            "last_pass_bytes",
            "gauge",
            "Bytes of the files landed by the last pass.",
            |i| i.bytes.to_string(),
        ),
        (
            "last_pass_errors",
            "gauge",
            "Errors in the last pass (0 when it ended ok).",
            |i| i.errors.len().to_string(),
        ),
        (
            "last_pass_skipped",
            "gauge",
            "Remote entries the last pass left alone (too young, symlinks, odd names).",
            |i| i.skipped.len().to_string(),
        ),
        (
            "last_pass_duration_seconds",
            "gauge",
            "How long the intersection's last pass took.",
            |i| format!("{:.3}", i.seconds),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in per_intersection {
        let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
        for ix in &report.intersections {
            let _ = writeln!(
                out,
                "{PREFIX}{name}{{intersection=\"{}\"}} {}",
                escape_label(&ix.name),
                value(ix)
            );
        }
    }
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
pub fn write(path: &Path, report: &RunReport) -> Result<(), MetricsError> {
    let own = Ownership {
        mode: 0o644,
        owner: None,
    };
    durable::replace_file(path, render(report).as_bytes(), own).map_err(|source| MetricsError {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::IntersectionReport;
    use std::fs;

    fn report() -> RunReport {
        let ix = |name: &str, outcome, last| IntersectionReport {
            name: name.into(),
            host: "h".into(),
            outcome,
            started: 1_700_000_000,
            seconds: 2.5,
            files: 3,
            bytes: 4096,
            already_present: 0,
            resumed_bytes: 0,
            skipped: vec![],
            errors: if outcome == Outcome::Ok {
                vec![]
            } else {
                vec!["x".into()]
            },
            last_success: last,
            rtt_ms: None,
            stopped_by: None,
            recorded: 0,
            verification: None,
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
        let text = render(&report());
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
        write(&p, &report()).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), render(&report()));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("nope/v2x.prom");
        let e = write(&missing, &report()).unwrap_err();
        assert!(e.to_string().contains("metrics_textfile"), "{e}");
    }
}
