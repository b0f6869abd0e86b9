//! Listing `archive/`: folders opened many at once, every entry judged by
//! [`crate::transfer::rules::entry_rule`], files kept compactly (a name and
//! 32 bytes), and the order files are taken in: oldest first within each
//! folder, a folder's contents where the folder sorts.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::hash::BuildHasher;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::{Engine, MAX_DIRS, Op};
use crate::landing::Identity;
use crate::ssh::session::Kind;
use crate::ssh::sftp::{NameEntry, Response, status};
use crate::transfer::rules::entry_rule;
use crate::transfer::stop::{Cause, Stop};

/// What was listed. Paths are rebuilt from the folder chain, so a listing
/// of many folders holds each name once.
pub(super) struct Tree {
    /// `<v2x_data_location>/archive`.
    pub archive: PathBuf,
    pub dirs: Vec<Dir>,
    pub jobs: Vec<Job>,
}

/// A listed folder.
pub(super) struct Dir {
    /// Empty for `archive/` itself.
    pub name: Box<[u8]>,
    pub parent: Option<usize>,
    pub depth: u8,
    /// Children (files and folders) not yet resolved.
    pub pending: u32,
    /// READDIRs sent and unanswered: the handle is closed only at zero, or
    /// the server would answer the rest with a bad handle.
    pub readdirs_out: u8,
    /// Some child stays on the server: this folder must stay too.
    pub kept: bool,
    /// Removed or given up on; reported to the parent once.
    pub resolved: bool,
    /// The listing's end (EOF or an error) has come back.
    pub listed: bool,
    /// Children as listed; sorted (mtime, name) when the files are ordered.
    pub children: Vec<Child>,
    pub mtime: u32,
}

impl Dir {
    /// A folder found, not yet listed.
    fn new(name: Box<[u8]>, parent: Option<usize>, depth: u8, mtime: u32) -> Dir {
        Dir {
            name,
            parent,
            depth,
            pending: 0,
            readdirs_out: 0,
            kept: false,
            resolved: false,
            listed: false,
            children: Vec::new(),
            mtime,
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Child {
    File(u32),
    Dir(u32),
}

/// A listed file: 32 bytes and its name.
pub(super) struct Job {
    pub name: Box<[u8]>,
    pub size: u64,
    pub mtime: u32,
    pub dir: u32,
}

impl Job {
    pub fn identity(&self) -> Identity {
        Identity {
            size: self.size,
            mtime: u64::from(self.mtime),
        }
    }
}

impl Tree {
    pub fn new(archive: PathBuf) -> Tree {
        Tree {
            archive,
            dirs: Vec::new(),
            jobs: Vec::new(),
        }
    }

    /// Folder `d` relative to `archive/`.
    pub fn dir_rel(&self, d: usize) -> PathBuf {
        let mut names = Vec::new();
        let mut at = Some(d);
        while let Some(i) = at {
            if i != 0 {
                names.push(OsStr::from_bytes(&self.dirs[i].name));
            }
            at = self.dirs[i].parent;
        }
        names.iter().rev().collect()
    }

    pub fn dir_path(&self, d: usize) -> PathBuf {
        if d == 0 {
            // `join("")` would add a trailing slash.
            return self.archive.clone();
        }
        self.archive.join(self.dir_rel(d))
    }

    /// File `j` relative to `archive/`, as reports show it.
    pub fn job_rel(&self, j: usize) -> PathBuf {
        let job = &self.jobs[j];
        self.dir_rel(job.dir as usize)
            .join(OsStr::from_bytes(&job.name))
    }

    /// File `j`'s remote path.
    pub fn job_path(&self, j: usize) -> PathBuf {
        self.archive.join(self.job_rel(j))
    }

    /// The folder file `j` was listed in.
    pub fn job_dir(&self, j: usize) -> usize {
        self.jobs[j].dir as usize
    }

    /// Depth of the folder a job was listed in (0: directly in `archive/`).
    pub fn job_depth(&self, j: usize) -> usize {
        usize::from(self.dirs[self.job_dir(j)].depth)
    }

    /// Files in the order they are taken: oldest first within each folder,
    /// a folder's contents where the folder sorts.
    pub fn file_order(&mut self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.jobs.len());
        let mut visit: Vec<Child> = Vec::new();
        // Iterative DFS keeping each folder's sorted order.
        let mut children = std::mem::take(&mut self.dirs[0].children);
        loop {
            let key = |c: &Child| match *c {
                Child::File(j) => (self.jobs[j as usize].mtime, &self.jobs[j as usize].name),
                Child::Dir(d) => (self.dirs[d as usize].mtime, &self.dirs[d as usize].name),
            };
            children.sort_by(|a, b| key(a).cmp(&key(b)));
            visit.extend(children.into_iter().rev());
            let next = loop {
                match visit.pop() {
                    Some(Child::File(j)) => out.push(j as usize),
                    Some(Child::Dir(d)) => break Some(d as usize),
                    None => break None,
                }
            };
            let Some(d) = next else { break };
            children = std::mem::take(&mut self.dirs[d].children);
        }
        out
    }
}

impl Engine<'_, '_> {
    /// Lists `archive/` and every folder below it, [`MAX_DIRS`] at once.
    pub(super) fn list_all(&mut self) -> Result<(), Stop> {
        self.tree.dirs.push(Dir::new(Box::new([]), None, 0, 0));
        let mut queue: VecDeque<usize> = VecDeque::from([0]);
        // Folders opened and not yet closed: a handle is closed once its
        // last READDIR is answered, so at zero no answer can still arrive.
        let mut listing = 0usize;
        while !queue.is_empty() || listing > 0 {
            if self.cancelled() {
                return Err(Stop::cancelled());
            }
            while listing < MAX_DIRS
                && let Some(d) = queue.pop_front()
            {
                let path = self.tree.dir_path(d);
                let id = self.wire.send_opendir(path.as_os_str().as_bytes());
                self.ops.insert(id, Op::OpenDir(d));
                listing += 1;
            }
            let (id, response) = self.wire.recv()?;
            let Some(op) = self.ops.remove(&id) else {
                continue;
            };
            match (op, response) {
                (Op::OpenDir(d), Response::Handle(h)) => {
                    // Two READDIRs at once, and another each time names come
                    // back: a folder that fits in one answer (sftp-server
                    // sends up to 100 names) is listed one round trip after
                    // its open, the second answer being its end.
                    for _ in 0..2 {
                        self.send_readdir(d, &h);
                    }
                }
                (Op::OpenDir(0), r) => {
                    return Err(Cause::NoArchive {
                        path: self.tree.archive.display().to_string(),
                        answer: r.describe(),
                    }
                    .into());
                }
                (Op::OpenDir(d), r) => {
                    listing -= 1;
                    let rel = self.tree.dir_rel(d);
                    self.file_error(
                        &rel,
                        format!("cannot list this folder: {}; left alone", r.describe()),
                    );
                    self.listing_failed(d);
                }
                (Op::ReadDir(d, h), Response::Name(entries)) => {
                    self.tree.dirs[d].readdirs_out -= 1;
                    for e in entries {
                        if let Some(sub) = self.add_entry(d, e)? {
                            queue.push_back(sub);
                        }
                    }
                    if !self.tree.dirs[d].listed {
                        self.send_readdir(d, &h);
                    } else if self.tree.dirs[d].readdirs_out == 0 {
                        // Names after the end: a server that answers out of
                        // order. Recorded all the same.
                        self.close_dir(&h);
                        listing -= 1;
                    }
                }
                (Op::ReadDir(d, h), r) => {
                    self.tree.dirs[d].readdirs_out -= 1;
                    if self.tree.dirs[d].readdirs_out == 0 {
                        self.close_dir(&h);
                        listing -= 1;
                    }
                    if std::mem::replace(&mut self.tree.dirs[d].listed, true) {
                        // The second end of a folder read in one answer.
                        continue;
                    }
                    if !matches!(
                        r,
                        Response::Status {
                            code: status::EOF,
                            ..
                        }
                    ) {
                        let rel = self.tree.dir_rel(d);
                        self.file_error(
                            &rel,
                            format!("listing ended early: {}; left alone", r.describe()),
                        );
                        self.tree.dirs[d].kept = true;
                        self.listing_complete = false;
                    }
                }
                (Op::CloseDir, _) => {}
                (Op::Statvfs(after), r) => self.space_answered(r, after),
                (op, r) => {
                    return Err(Cause::Unexpected {
                        request: op.kind(),
                        answer: r.describe(),
                    }
                    .into());
                }
            }
        }
        // Outstanding CLOSEs of folder handles are answered before anything
        // sent later; their answers are simply dropped by `recv` callers.
        Ok(())
    }

    fn send_readdir(&mut self, d: usize, handle: &[u8]) {
        let id = self.wire.send_readdir(handle);
        self.ops.insert(id, Op::ReadDir(d, handle.to_vec()));
        self.tree.dirs[d].readdirs_out += 1;
    }

    fn close_dir(&mut self, handle: &[u8]) {
        let id = self.wire.send_close(handle);
        self.ops.insert(id, Op::CloseDir);
    }

    /// Records one listed entry of folder `d`; returns a folder to list.
    fn add_entry(&mut self, d: usize, e: NameEntry) -> Result<Option<usize>, Stop> {
        if e.name == b"." || e.name == b".." {
            return Ok(None);
        }
        self.listed += 1;
        let max = self.ctx.config.transfer.max_listed_entries;
        if self.listed > max {
            return Err(Cause::TooManyEntries {
                path: self.tree.archive.display().to_string(),
                max,
            }
            .into());
        }
        if !self.seen.insert(self.hasher.hash_one((d, &e.name))) {
            let rel = self.tree.dir_rel(d).join(OsStr::from_bytes(&e.name));
            self.skip(&rel, "listed more than once by the server; taken once");
            return Ok(None);
        }
        let name = OsString::from_vec(e.name);
        let mtime = e.attrs.mtime.unwrap_or(0);
        let kind = Kind::of(e.attrs.perm);
        let dirs = &mut self.tree.dirs;
        let depth = usize::from(dirs[d].depth);
        if let Err(reason) = entry_rule(&name, kind, depth) {
            let rel = self.tree.dir_rel(d).join(&name);
            self.skip(&rel, &reason);
            self.tree.dirs[d].kept = true;
            return Ok(None);
        }
        let name = name.into_vec().into_boxed_slice();
        dirs[d].pending += 1;
        if kind == Kind::File {
            let jobs = &mut self.tree.jobs;
            let job = jobs.len() as u32;
            jobs.push(Job {
                name,
                size: e.attrs.size.unwrap_or(0),
                mtime,
                dir: d as u32,
            });
            dirs[d].children.push(Child::File(job));
            return Ok(None);
        }
        let sub = dirs.len();
        // `entry_rule` keeps depth below MAX_DEPTH.
        let depth = dirs[d].depth + 1;
        dirs.push(Dir::new(name, Some(d), depth, mtime));
        dirs[d].children.push(Child::Dir(sub as u32));
        Ok(Some(sub))
    }

    fn listing_failed(&mut self, d: usize) {
        self.listing_complete = false;
        self.tree.dirs[d].kept = true;
        if let Some(p) = self.tree.dirs[d].parent {
            self.tree.dirs[p].kept = true;
        }
    }
}
