//! `verify`: re-reads every landed file the ledger names and compares it
//! with its record, and looks for files under the intersections' folders
//! that no record names. What the pass checked when it landed a file, this
//! checks again later: a file changed, truncated or deleted since, or one
//! put there by hand, is reported.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::commands::Exit;
use crate::commands::ledger::{Filter, load, select};
use crate::config::Config;
use crate::landing::{hex_digest, sha256_file};

#[derive(Debug, Default, Serialize)]
struct Findings {
    /// Records checked.
    checked: u64,
    /// Recorded, and no longer there.
    missing: Vec<Problem>,
    /// Recorded, and other bytes there now (truncated, grown or changed).
    changed: Vec<Problem>,
    /// There, and no record names it.
    unrecorded: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Problem {
    /// Relative to the data directory.
    path: String,
    intersection: String,
    remote_path: String,
    pass: String,
    recorded_sha256: String,
    recorded_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `verify`: exit 0 when every selected record matches its file and no
/// file is unrecorded, 1 otherwise.
pub fn command(config_path: &Path, since: Option<&str>, only: &[String], json: bool) -> Exit {
    let filter = Filter {
        pass: None,
        since,
        only,
    };
    let config = match load(config_path, &filter) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    let findings = match check(&config, &filter) {
        Ok(f) => f,
        Err(why) => {
            eprintln!("error: {why}");
            return Exit::Failed;
        }
    };
    if json {
        match serde_json::to_string_pretty(&findings) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Failed;
            }
        }
    } else {
        for p in &findings.missing {
            println!(
                "missing     {}  (recorded {} bytes, sha256 {}, from {} of {}{})",
                p.path,
                p.recorded_size,
                p.recorded_sha256,
                p.remote_path,
                p.intersection,
                p.error
                    .as_deref()
                    .map(|e| format!("; {e}"))
                    .unwrap_or_default()
            );
        }
        for p in &findings.changed {
            println!(
                "changed     {}  ({} bytes, sha256 {}; recorded {} bytes, sha256 {})",
                p.path,
                p.size.unwrap_or(0),
                p.sha256.as_deref().unwrap_or("?"),
                p.recorded_size,
                p.recorded_sha256
            );
        }
        for p in &findings.unrecorded {
            println!("unrecorded  {p}");
        }
        println!(
            "{} landed file(s) checked against the ledger: {} missing, {} changed, {} unrecorded",
            findings.checked,
            findings.missing.len(),
            findings.changed.len(),
            findings.unrecorded.len()
        );
    }
    Exit::ok_if(
        findings.missing.is_empty()
            && findings.changed.is_empty()
            && findings.unrecorded.is_empty(),
    )
}

fn check(config: &Config, filter: &Filter<'_>) -> Result<Findings, String> {
    let data = &config.data_directory;
    let mut findings = Findings::default();
    for r in select(config, filter)? {
        findings.checked += 1;
        let path = r.local_path();
        let problem = |sha256, size, error| Problem {
            path: path.display().to_string(),
            intersection: r.intersection.clone(),
            remote_path: r.remote_path.clone(),
            pass: r.pass.clone(),
            recorded_sha256: r.sha256.clone(),
            recorded_size: r.size,
            sha256,
            size,
            error,
        };
        match sha256_file(&data.join(&path)) {
            Ok((sha, size)) => {
                let sha = hex_digest(&sha);
                if sha != r.sha256 || size != r.size {
                    findings.changed.push(problem(Some(sha), Some(size), None));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                findings.missing.push(problem(None, None, None));
            }
            Err(e) => {
                findings
                    .missing
                    .push(problem(None, None, Some(format!("cannot read it: {e}"))))
            }
        }
    }
    // Unrecorded: against every record ever written, not only those since.
    let all = Filter {
        pass: None,
        since: None,
        only: filter.only,
    };
    let recorded: HashSet<PathBuf> = select(config, &all)?
        .iter()
        .map(|r| r.local_path())
        .collect();
    let names: Vec<&str> = config
        .intersections
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| filter.only.is_empty() || filter.only.iter().any(|o| o == n))
        .collect();
    for name in names {
        let mut files = Vec::new();
        visible_files(data, Path::new(name), &mut files)
            .map_err(|e| format!("cannot list {}: {e}", data.join(name).display()))?;
        for f in files {
            if !recorded.contains(&f) {
                findings.unrecorded.push(f.display().to_string());
            }
        }
    }
    findings.unrecorded.sort();
    Ok(findings)
}

/// Files under `data/rel` (paths relative to `data`), leaving out hidden
/// ones: partial downloads and bookkeeping start with a dot.
fn visible_files(data: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let listing = match fs::read_dir(data.join(rel)) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in listing {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = rel.join(&name);
        if entry.file_type()?.is_dir() {
            visible_files(data, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
