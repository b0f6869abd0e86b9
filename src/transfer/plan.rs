//! `run --dry-run`: connect and list like a pass, and say what it would do,
//! changing nothing on either side.
//!
//! A walk of its own rather than a mode of [`crate::transfer::pass`], so the transfer
//! engine stays free of "but not really" branches. It applies the same
//! rules through the same functions: [`entry_rule`] leaves names that are
//! not plain, symlinks, special files and folders nested too deep; files
//! directly in `archive/` younger than `transfer.min_age` wait ([`too_young`]:
//! a session folder's files are taken whatever their age); every other file is routed by
//! [`classify`]; a folder is removed once everything in it would be gone.
//! `tests/operator.rs` pins that a real pass then lands exactly what the dry
//! run announced.
//!
//! Only reads happen: the SFTP session lists (opendir/readdir/lstat), and
//! locally a `stat` tells whether a file of that name is already there. No
//! folder, partial file, state file or metrics file is written.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::common::scoped::each_intersection;
use crate::config::{Config, Intersection};
use crate::ssh::known_hosts::KnownHosts;
use crate::ssh::session::{self, Entry, Kind, Remote};
use crate::transfer::classify::classify;
use crate::transfer::rules::{entry_rule, too_young};

/// One thing a pass would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Land the remote file at `local`, then remove it remotely. `exists`:
    /// a file of that name is already there (an identical one counts as
    /// landed, a different one lands beside it as `.conflict-N`).
    Land {
        remote: PathBuf,
        local: PathBuf,
        bytes: u64,
        exists: bool,
    },
    /// Remove the remote folder once emptied.
    RemoveDir { remote: PathBuf },
    /// Leave the entry (relative to `archive/`) where it is, and why.
    Leave { rel: String, reason: String },
}

/// What a pass would do for one intersection.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub host: String,
    /// In walk order: oldest first, a folder's removal after its files.
    pub items: Vec<Planned>,
    /// Problems: the intersection could not be walked (completely).
    pub errors: Vec<String>,
}

impl Plan {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Files and bytes that would be pulled, folders that would be removed.
    pub fn totals(&self) -> (u64, u64, u64) {
        let mut t = (0, 0, 0);
        for item in &self.items {
            match item {
                Planned::Land { bytes, .. } => {
                    t.0 += 1;
                    t.1 += bytes;
                }
                Planned::RemoveDir { .. } => t.2 += 1,
                Planned::Leave { .. } => {}
            }
        }
        t
    }
}

/// Plans every intersection, `transfer.parallel_intersections` at a time;
/// results in the order given. One connection attempt each (no retries).
pub fn plan_all(
    config: &Config,
    known: &KnownHosts,
    intersections: &[Intersection],
    cancel: &Arc<AtomicBool>,
) -> Vec<Plan> {
    each_intersection(
        intersections,
        config.transfer.parallel_intersections,
        |ix| &ix.name,
        |ix| plan(config, known, ix, cancel),
        |ix| Plan {
            name: ix.name.clone(),
            host: ix.host.clone(),
            items: Vec::new(),
            errors: vec!["the dry run of this intersection panicked (a bug)".into()],
        },
    )
}

fn plan(config: &Config, known: &KnownHosts, ix: &Intersection, cancel: &AtomicBool) -> Plan {
    let mut walk = Walk {
        config,
        cancel,
        deadline: Instant::now() + config.transfer.intersection_deadline,
        now: crate::common::clock::unix_now(),
        data_root: config.data_directory.join(&ix.name),
        plan: Plan {
            name: ix.name.clone(),
            host: ix.host.clone(),
            items: Vec::new(),
            errors: Vec::new(),
        },
    };
    match session::connect(ix, known, &config.transfer, &|_| {}) {
        Err(e) => walk.plan.errors.push(e.to_string()),
        Ok(mut session) => {
            let archive = Path::new(&ix.v2x_data_location).join("archive");
            match session.list(&archive) {
                Err(e) => walk.plan.errors.push(format!(
                    "{e} (check v2x_data_location: it must hold an archive/ folder)"
                )),
                Ok(entries) => {
                    if let Err(why) =
                        walk.entries(&mut session, &archive, Path::new(""), entries, 0)
                    {
                        walk.plan.errors.push(why);
                    }
                }
            }
        }
    }
    walk.plan
}

struct Walk<'a> {
    config: &'a Config,
    cancel: &'a AtomicBool,
    deadline: Instant,
    now: u64,
    data_root: PathBuf,
    plan: Plan,
}

impl Walk<'_> {
    fn leave(&mut self, rel: &Path, reason: impl Into<String>) {
        self.plan.items.push(Planned::Leave {
            rel: crate::common::text::escape(rel.as_os_str()),
            reason: reason.into(),
        });
    }

    /// Returns whether every entry would be gone; `Err` stops the walk.
    fn entries(
        &mut self,
        session: &mut Remote,
        dir: &Path,
        rel: &Path,
        mut entries: Vec<Entry>,
        depth: usize,
    ) -> Result<bool, String> {
        entries.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
        let mut all_gone = true;
        for entry in entries {
            if self.cancel.load(Ordering::SeqCst) {
                return Err("cancelled".into());
            }
            if Instant::now() >= self.deadline {
                return Err("intersection deadline passed (transfer.intersection_deadline)".into());
            }
            all_gone &= self.entry(session, dir, rel, &entry, depth)?;
        }
        Ok(all_gone)
    }

    fn entry(
        &mut self,
        session: &mut Remote,
        dir: &Path,
        rel: &Path,
        entry: &Entry,
        depth: usize,
    ) -> Result<bool, String> {
        let rel = rel.join(&entry.name);
        if let Err(reason) = entry_rule(&entry.name, entry.kind, depth) {
            self.leave(&rel, reason);
            return Ok(false);
        }
        let path = dir.join(&entry.name);
        if entry.kind == Kind::File {
            return Ok(self.file(&path, &rel, entry, depth));
        }
        let entries = match session.list(&path) {
            Ok(e) => e,
            Err(e) => {
                self.plan.errors.push(format!("{}: {e}", path.display()));
                return Ok(false);
            }
        };
        let gone = self.entries(session, &path, &rel, entries, depth + 1)?;
        if gone {
            self.plan.items.push(Planned::RemoveDir { remote: path });
        }
        Ok(gone)
    }

    fn file(&mut self, path: &Path, rel: &Path, entry: &Entry, depth: usize) -> bool {
        if let Some(reason) = too_young(depth, entry.mtime, self.now, self.config.transfer.min_age)
        {
            self.leave(rel, reason);
            return false;
        }
        let name = String::from_utf8_lossy(entry.name.as_bytes());
        let local = match classify(&name, &self.config.elements) {
            Some(el) => self.data_root.join(el),
            None => self.data_root.clone(),
        }
        .join(&entry.name);
        self.plan.items.push(Planned::Land {
            remote: path.to_path_buf(),
            exists: local.exists(),
            local,
            bytes: entry.size,
        });
        true
    }
}
