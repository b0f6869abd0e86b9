//! `ledger`: the records of landed files, for people, for scripts and for
//! the next stage (`--pass last`: exactly the files of the last pass).

use std::io::Write;
use std::path::PathBuf;

use crate::cli::LedgerFormat;
use crate::commands::{Exit, print_config_errors};
use crate::config::{self, Config};
use crate::ledger::{self, Record, Scan};
use crate::report;

/// Which records to print.
pub struct Filter<'a> {
    /// `last`, a pass id, or every pass.
    pub pass: Option<&'a str>,
    /// `YYYY-MM-DD`: records from that day (UTC) on.
    pub since: Option<&'a str>,
    /// Intersections by name; all when empty.
    pub only: &'a [String],
}

/// `ledger`: prints the selected records, JSON lines or `sha256sum` lines.
pub fn command(config_path: &std::path::Path, filter: &Filter<'_>, format: LedgerFormat) -> Exit {
    let config = match load(config_path, filter) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    let records = match select(&config, filter) {
        Ok(r) => r,
        Err(why) => {
            eprintln!("error: {why}");
            return Exit::Failed;
        }
    };
    let mut out = std::io::stdout().lock();
    for r in &records {
        let line = match format {
            LedgerFormat::Json => serde_json::to_vec(r).map(|mut l| {
                l.push(b'\n');
                l
            }),
            LedgerFormat::Sha256sum => Ok(r.sha256sum_line()),
        };
        let written = match line {
            Ok(l) => out.write_all(&l),
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(e) = written {
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Exit::Ok;
            }
            eprintln!("error: writing the records: {e}");
            return Exit::Failed;
        }
    }
    Exit::Ok
}

/// The config, with `--since` and `--only` checked against it.
pub(crate) fn load(config_path: &std::path::Path, filter: &Filter<'_>) -> Result<Config, Exit> {
    // Only the config: the ledger is read here, nothing connects.
    let config = config::load(config_path)
        .map_err(|e| {
            print_config_errors(&e);
            Exit::Config
        })?
        .config;
    if let Some(since) = filter.since
        && !ledger::is_day(since)
    {
        eprintln!("error: --since {since:?}: give a date as YYYY-MM-DD (UTC)");
        return Err(Exit::Config);
    }
    crate::commands::select(&config, filter.only, "--only ")?;
    Ok(config)
}

/// The records `filter` selects, oldest first. Lines that are not records
/// (a write torn by a crash) are reported on stderr and skipped.
///
/// # Errors
/// What cannot be read, for the message.
pub(crate) fn select(config: &Config, filter: &Filter<'_>) -> Result<Vec<Record>, String> {
    let state = &config.state_directory;
    let (pass, files): (Option<String>, Vec<PathBuf>) = match filter.pass {
        Some("last") => {
            let last = report::read(state).map_err(|e| e.to_string())?;
            if last.pass.is_empty() {
                return Err(format!(
                    "the last pass in {} names no ledger records (it ran before this version)",
                    state.display()
                ));
            }
            let files = last.ledger.iter().map(|f| state.join(f)).collect();
            (Some(last.pass), files)
        }
        Some(id) => {
            // A pass id starts with its UTC date: its records are from then on.
            let from = id.get(..10).filter(|d| ledger::is_day(d));
            let since = match (from, filter.since) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let files = ledger::day_files(state, since).map_err(|e| e.to_string())?;
            (Some(id.to_string()), files)
        }
        None => (
            None,
            ledger::day_files(state, filter.since).map_err(|e| e.to_string())?,
        ),
    };
    let since_time = filter.since.map(day_start);
    let mut out = Vec::new();
    for f in files {
        let scan = Scan::read(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        for n in &scan.bad_lines {
            eprintln!(
                "warning: {}: line {n} is not a record (a write cut short by a crash?); skipped",
                f.display()
            );
        }
        out.extend(scan.records.into_iter().filter(|r| {
            pass.as_deref().is_none_or(|p| r.pass == p)
                && since_time.is_none_or(|t| r.time >= t)
                && (filter.only.is_empty() || filter.only.contains(&r.intersection))
        }));
    }
    Ok(out)
}

/// Unix seconds of 00:00 UTC on `day` (`YYYY-MM-DD`, checked).
fn day_start(day: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| day.get(r).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d)) = (n(0..4), n(5..7), n(8..10)) else {
        return 0;
    };
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_start_is_midnight_utc() {
        assert_eq!(day_start("1970-01-01"), 0);
        assert_eq!(day_start("2000-02-29"), 951_782_400);
        assert_eq!(
            crate::common::clock::utc(day_start("2026-11-25")),
            "2026-11-25 00:00:00"
        );
    }
}
