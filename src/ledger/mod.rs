//! The ledger: one JSON line per landed file, written and fsynced **before**
//! the remote copy is removed, so every file a coprocessor ever gave up has a
//! record here of what it was (intersection, remote path, size, mtime), where
//! it went (its path under the data directory), its SHA-256, how it was
//! checked (`sha256`: the coprocessor hashed it too; `size`: size and mtime
//! only), and which pass took it.
//!
//! Layout: `<state_directory>/ledger/YYYY-MM-DD.jsonl`, one file per UTC day
//! of the record's time. Appending stays cheap however old the ledger grows
//! (one `write` and one `fdatasync` per batch of records, never a rewrite),
//! a day or a range of days is a handful of files to read, and a day's file
//! can be archived or compressed by the operator once the day is over.
//!
//! **No file gets two records.** A record is keyed by intersection, remote
//! path, size, mtime and SHA-256 ([`Key`]). The only way one remote file
//! can be landed twice is a crash between its record and its REMOVE: the
//! next pass downloads it again, finds the identical copy already here
//! (`already_present`), and asks [`Ledger::recorded`] before writing: the
//! earlier record can only be in a day file from the day the remote file
//! was last modified (less a day for clock skew) up to today, so only those
//! are read, and only for files that were already present.
//!
//! A crash in the middle of an append leaves a torn last line, never a
//! record that was reported written; the next append starts on a new line,
//! and readers skip what does not parse (and say so: [`Scan::bad_lines`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::common::clock::{unix_now, utc};

/// The ledger's folder inside the state directory.
pub const LEDGER_DIR: &str = "ledger";
/// Days before a remote file's mtime still searched for its record: a
/// coprocessor clock a day ahead of ours must not hide one.
const SKEW_DAYS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "cannot {op} the ledger {path:?}: {source}; nothing more is removed from the \
         coprocessors until it can be written (check the state directory: free space, \
         permissions)"
    )]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// How a landed file was checked before its remote copy went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The coprocessor's `sha256sum` gave the same hash as the bytes landed.
    Sha256,
    /// Byte count, size and mtime before and after the download only.
    Size,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Sha256 => "sha256",
            Level::Size => "size",
        }
    }
}

/// One landed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub intersection: String,
    /// As listed on the coprocessor (UTF-8; see `remote_path_hex`).
    pub remote_path: String,
    /// The exact bytes, hex, when the remote path is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_path_hex: Option<String>,
    pub size: u64,
    /// Unix seconds.
    pub mtime: u64,
    /// Relative to the data directory (UTF-8; see `path_hex`).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// Lower-case hex, as `sha256sum` prints it.
    pub sha256: String,
    pub verified: Level,
    /// The pass that landed it (see `last-run.json`).
    pub pass: String,
    /// Unix seconds when it was recorded.
    pub time: u64,
}

/// What makes two records the same file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    intersection: String,
    remote: Vec<u8>,
    size: u64,
    mtime: u64,
    sha256: String,
}

impl Record {
    /// A record for remote file `remote` of `intersection`, landed at
    /// `path` (relative to the data directory).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        intersection: &str,
        remote: &[u8],
        size: u64,
        mtime: u64,
        path: &Path,
        sha256: &[u8; 32],
        verified: Level,
        pass: &str,
    ) -> Record {
        let (remote_path, remote_path_hex) = text_and_hex(remote);
        let (path, path_hex) = text_and_hex(path.as_os_str().as_bytes());
        Record {
            intersection: intersection.to_string(),
            remote_path,
            remote_path_hex,
            size,
            mtime,
            path,
            path_hex,
            sha256: hex(sha256),
            verified,
            pass: pass.to_string(),
            time: unix_now(),
        }
    }

    pub fn key(&self) -> Key {
        Key {
            intersection: self.intersection.clone(),
            remote: self.remote_bytes(),
            size: self.size,
            mtime: self.mtime,
            sha256: self.sha256.clone(),
        }
    }

    pub fn remote_bytes(&self) -> Vec<u8> {
        self.remote_path_hex
            .as_deref()
            .and_then(unhex)
            .unwrap_or_else(|| self.remote_path.as_bytes().to_vec())
    }

    /// The landed file, relative to the data directory.
    pub fn local_path(&self) -> PathBuf {
        let bytes = self
            .path_hex
            .as_deref()
            .and_then(unhex)
            .unwrap_or_else(|| self.path.as_bytes().to_vec());
        PathBuf::from(OsStr::from_bytes(&bytes))
    }

    /// The line `sha256sum -c` checks, run in the data directory: names
    /// with a backslash or newline get GNU's escaped form.
    pub fn sha256sum_line(&self) -> Vec<u8> {
        let path = self.local_path();
        let bytes = path.as_os_str().as_bytes();
        let mut out = Vec::new();
        if bytes
            .iter()
            .any(|&b| b == b'\\' || b == b'\n' || b == b'\r')
        {
            out.push(b'\\');
            out.extend_from_slice(self.sha256.as_bytes());
            out.extend_from_slice(b"  ");
            for &b in bytes {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b => out.push(b),
                }
            }
        } else {
            out.extend_from_slice(self.sha256.as_bytes());
            out.extend_from_slice(b"  ");
            out.extend_from_slice(bytes);
        }
        out.push(b'\n');
        out
    }
}

fn text_and_hex(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(hex(bytes)),
        ),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn day_of(unix: u64) -> String {
    utc(unix)[..10].to_string()
}

/// The day file of `day` under `state_directory`.
pub fn day_file(state_directory: &Path, day: &str) -> PathBuf {
    state_directory
        .join(LEDGER_DIR)
        .join(format!("{day}.jsonl"))
}

/// The ledger a pass appends to; shared by its intersections.
pub struct Ledger {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The day file open for appending, and its day.
    open: Option<(String, File)>,
    /// Keys of the day files read by [`Ledger::recorded`], by day.
    known: HashMap<String, HashSet<Key>>,
    /// Day files this ledger appended to (names relative to the state directory).
    written: BTreeSet<String>,
}

impl Ledger {
    /// The ledger under `state_directory`, its folder created (durably) if
    /// missing.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn open(state_directory: &Path) -> Result<Ledger, LedgerError> {
        let dir = state_directory.join(LEDGER_DIR);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|source| LedgerError::Io {
                op: "create",
                path: dir.clone(),
                source,
            })?;
            if let Some(parent) = dir.parent() {
                let _ = File::open(parent).and_then(|f| f.sync_all());
            }
        }
        Ok(Ledger {
            dir,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Appends `records` and makes them durable (one write, one
    /// `fdatasync`) before returning: only then may their remote copies go.
    ///
    /// # Errors
    /// Opening, writing or syncing the day file failed; none of the records
    /// may then be taken as written.
    pub fn append(&self, records: &[Record]) -> Result<(), LedgerError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let day = day_of(unix_now());
        let path = self.dir.join(format!("{day}.jsonl"));
        let io_err = |op, source| LedgerError::Io {
            op,
            path: path.clone(),
            source,
        };
        if inner.open.as_ref().is_none_or(|(d, _)| *d != day) {
            inner.open = None;
            let file = open_day_file(&self.dir, &path).map_err(|e| io_err("open", e))?;
            inner.open = Some((day.clone(), file));
            inner.written.insert(format!("{LEDGER_DIR}/{day}.jsonl"));
        }
        let mut text = Vec::new();
        for r in records {
            // Plain data: serialising it cannot fail.
            if let Ok(line) = serde_json::to_vec(r) {
                text.extend_from_slice(&line);
                text.push(b'\n');
            }
        }
        crate::common::fault::point("ledger-append");
        let result = match inner.open.as_mut() {
            Some((_, file)) => file.write_all(&text).and_then(|()| file.sync_data()),
            None => Err(io::Error::other("no day file open")),
        };
        if let Err(e) = result {
            // What was half written is a torn line for readers to skip;
            // the next append starts on a fresh line after reopening.
            inner.open = None;
            return Err(io_err("append to", e));
        }
        if let Some(keys) = inner.known.get_mut(&day) {
            keys.extend(records.iter().map(Record::key));
        }
        Ok(())
    }

    /// Whether `record`'s file already has a record (written by an earlier
    /// pass that crashed before its REMOVE); see the module docs for where
    /// it is looked for.
    ///
    /// # Errors
    /// A day file exists but cannot be read.
    pub fn recorded(&self, record: &Record) -> Result<bool, LedgerError> {
        let key = record.key();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let today = unix_now() / 86_400;
        let first = (record.mtime / 86_400).min(today).saturating_sub(SKEW_DAYS);
        for d in first..=today {
            let day = day_of(d * 86_400);
            if !inner.known.contains_key(&day) {
                let path = self.dir.join(format!("{day}.jsonl"));
                let scan = Scan::read(&path).map_err(|source| LedgerError::Io {
                    op: "read",
                    path,
                    source,
                })?;
                let keys = scan.records.iter().map(Record::key).collect();
                inner.known.insert(day.clone(), keys);
            }
            if inner.known.get(&day).is_some_and(|k| k.contains(&key)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The day files appended to, relative to the state directory.
    pub fn files_written(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.written.iter().cloned().collect()
    }
}

/// Opens (creating durably) a day file for appending, and makes sure the
/// next record starts on a line of its own after a torn one.
fn open_day_file(dir: &Path, path: &Path) -> io::Result<File> {
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    if !existed {
        File::open(dir)?.sync_all()?;
    }
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

/// The records of one day file, and the lines that are not records.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    /// 1-based numbers of lines that did not parse (a torn write).
    pub bad_lines: Vec<usize>,
}

impl Scan {
    /// Reads `path`; a missing file is an empty scan.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn read(path: &Path) -> io::Result<Scan> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Scan::default()),
            Err(e) => return Err(e),
        };
        let mut scan = Scan::default();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(line) {
                Ok(r) => scan.records.push(r),
                Err(_) => scan.bad_lines.push(n + 1),
            }
        }
        Ok(scan)
    }
}

/// The day files under `state_directory`, oldest first, from `since`
/// (`YYYY-MM-DD`) on when given.
///
/// # Errors
/// The ledger folder exists but cannot be listed.
pub fn day_files(state_directory: &Path, since: Option<&str>) -> io::Result<Vec<PathBuf>> {
    let dir = state_directory.join(LEDGER_DIR);
    let listing = match fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in listing {
        let name = entry?.file_name();
        let Some(day) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        if is_day(day) && since.is_none_or(|s| day >= s) {
            out.push(dir.join(&name));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `s` is a `YYYY-MM-DD` date.
pub fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests;
