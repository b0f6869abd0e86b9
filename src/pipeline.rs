//! One connected intersection's transfer: list `archive/`, pull every file,
//! delete what landed, remove emptied folders — with requests for many
//! folders and files in flight at once.
//!
//! Each file goes through the same steps as it would one at a time: OPEN,
//! READs (in order, written contiguously to the partial file, so a partial is
//! always a valid prefix to resume from), FSTAT and CLOSE (size and mtime
//! must still be what the listing said), [`Partial::commit`] (verified,
//! fsynced, renamed, folder fsynced), and only then REMOVE. Pipelining only
//! interleaves the steps of different files; it never reorders the steps of
//! one. The single REMOVE of a file is sent by [`Engine::delete_remote`], which
//! takes the [`Landed`] proof that only a commit makes.
//!
//! Bounds: at most [`MAX_FILES`] files open, [`MAX_INFLIGHT`] bytes of reads
//! requested and unanswered (well under the channel window, so the server
//! never blocks on us and we never deadlock on it), [`MAX_DIRS`] folders
//! being listed. Memory is those bounds plus the listing itself.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::classify::classify;
use crate::config::{Config, Intersection};
use crate::error::Disposition;
use crate::fault;
use crate::landing::{self, CommitPool, Identity, Landed, Lander, LandingError, Partial};
use crate::pass::{Control, Progress, escape};
use crate::remote::Kind;
use crate::report::{IntersectionReport, Skipped};
use crate::sftp::{Attrs, NameEntry, Response, SftpChannel, SftpError, status};

/// Files open at once.
pub const MAX_FILES: usize = 64;
/// Bytes of READs requested and not yet answered: enough for 50 MB/s at a
/// 40 ms round trip. More costs the coprocessor's sshd CPU for nothing
/// (measured: 8 MiB doubled its CPU time on the bench's W1 night).
pub const MAX_INFLIGHT: u64 = 2 << 20;
/// Size of one READ: OpenSSH's sftp-server answers at most 255 KiB
/// (SFTP_MAX_READ_LENGTH); the largest it allows keeps the per-request cost
/// on both sides small. A server that answers less gets asked for the rest.
pub const CHUNK: u32 = 255 << 10;
/// Threads that fsync and rename finished files while the network goes on.
pub const COMMIT_THREADS: usize = 4;
/// Folders listed at once.
pub const MAX_DIRS: usize = 64;
/// How deep folders are followed below `archive/`.
pub const MAX_DEPTH: usize = 8;

/// The one rule, shared by `run` and `run --dry-run`, for what may be
/// taken from a listing: a plain file or a folder within [`MAX_DEPTH`].
/// Anything else is left where it is, for the reason returned.
pub fn entry_rule(name: &std::ffi::OsStr, kind: Kind, depth: usize) -> Result<(), String> {
    if !landing::is_plain_name(name) {
        return Err("not a plain file name (empty, dot, hidden, too long, or with control characters); left alone".into());
    }
    match kind {
        Kind::File => Ok(()),
        Kind::Dir if depth >= MAX_DEPTH => Err(format!(
            "folder nested deeper than {MAX_DEPTH} levels; left alone"
        )),
        Kind::Dir => Ok(()),
        Kind::Symlink => Err("symbolic link; never followed, pulled or deleted".into()),
        Kind::Other => {
            Err("not a regular file or folder (device, FIFO, socket); left alone".into())
        }
    }
}

/// Why the transfer of an intersection stopped early.
pub enum Stop {
    /// The session broke: reconnect and go on.
    Reconnect(String),
    /// Nothing more can be done this pass.
    Fatal(String),
    Cancelled,
}

impl From<SftpError> for Stop {
    fn from(e: SftpError) -> Stop {
        Stop::Reconnect(e.to_string())
    }
}

/// What the engine works for.
pub struct Ctx<'a> {
    pub ix: &'a Intersection,
    pub config: &'a Config,
    pub control: &'a Control,
    pub progress: &'a Progress,
    /// `<data_directory>/<intersection>`.
    pub data_root: &'a Path,
}

struct Dir {
    path: PathBuf,
    rel: PathBuf,
    depth: usize,
    parent: Option<usize>,
    /// Children (files and folders) not yet resolved.
    pending: usize,
    /// Some child stays on the server: this folder must stay too.
    kept: bool,
    /// Removed or given up on; reported to the parent once.
    resolved: bool,
    /// Children as listed, for ordering: (mtime, name, what).
    children: Vec<(u64, OsString, Child)>,
    /// READDIRs sent and unanswered: the handle is closed only at zero, or
    /// the server would answer the rest with a bad handle.
    readdirs_out: usize,
    /// The listing's end (EOF or an error) has come back.
    listed: bool,
}

impl Dir {
    /// A folder found, not yet listed.
    fn new(path: PathBuf, rel: PathBuf, depth: usize, parent: Option<usize>) -> Dir {
        Dir {
            path,
            rel,
            depth,
            parent,
            pending: 0,
            kept: false,
            resolved: false,
            children: Vec::new(),
            readdirs_out: 0,
            listed: false,
        }
    }
}

#[derive(Clone, Copy)]
enum Child {
    File(usize),
    Dir(usize),
}

struct Job {
    path: PathBuf,
    rel: PathBuf,
    name: OsString,
    size: u64,
    mtime: u64,
    dir: usize,
}

struct Active {
    job: usize,
    partial: Option<Partial>,
    handle: Vec<u8>,
    next_req: u64,
    reads_out: usize,
    /// Data that arrived ahead of the write position, by offset.
    ahead: BTreeMap<u64, Vec<u8>>,
    changed: bool,
    failed: Option<String>,
    fstat: Option<Attrs>,
    closing: bool,
    resumed: u64,
}

enum Op {
    OpenDir(usize),
    ReadDir(usize, Vec<u8>),
    CloseDir,
    Open(usize),
    Read {
        slot: usize,
        offset: u64,
        len: u32,
    },
    Fstat(usize),
    Close(usize),
    Remove {
        job: usize,
        bytes: u64,
        already_present: bool,
    },
    Rmdir(usize),
}

pub struct Engine<'a, 'c> {
    ctx: &'a Ctx<'c>,
    ch: &'a mut SftpChannel,
    lander: &'a mut Lander,
    report: &'a mut IntersectionReport,
    ops: HashMap<u32, Op>,
    dirs: Vec<Dir>,
    jobs: Vec<Job>,
    active: HashMap<usize, Active>,
    next_slot: usize,
    inflight: u64,
    commits: CommitPool,
    /// Bytes an earlier pass had fetched, per job being committed.
    resumed: HashMap<usize, u64>,
}

impl<'a, 'c> Engine<'a, 'c> {
    pub fn new(
        ctx: &'a Ctx<'c>,
        ch: &'a mut SftpChannel,
        lander: &'a mut Lander,
        report: &'a mut IntersectionReport,
    ) -> Self {
        Engine {
            ctx,
            ch,
            lander,
            report,
            ops: HashMap::new(),
            dirs: Vec::new(),
            jobs: Vec::new(),
            active: HashMap::new(),
            next_slot: 0,
            inflight: 0,
            commits: CommitPool::new(COMMIT_THREADS, ctx.config.transfer.io_timeout),
            resumed: HashMap::new(),
        }
    }

    fn name(&self) -> &str {
        &self.ctx.ix.name
    }

    fn cancelled(&self) -> bool {
        self.ctx.control.cancel.load(Ordering::SeqCst)
    }

    /// Lists and pulls everything in `archive/`.
    pub fn run(mut self) -> Result<(), Stop> {
        let archive = Path::new(&self.ctx.ix.v2x_data_location).join("archive");
        self.list_all(&archive)?;
        let order = self.file_order();
        self.transfer(order)
    }

    // ---- listing ----

    fn list_all(&mut self, archive: &Path) -> Result<(), Stop> {
        self.dirs
            .push(Dir::new(archive.to_path_buf(), PathBuf::new(), 0, None));
        let mut queue: VecDeque<usize> = VecDeque::from([0]);
        // Folders opened and not yet closed: a handle is closed once its
        // last READDIR is answered, so at zero no answer can still arrive.
        let mut listing = 0usize;
        while !queue.is_empty() || listing > 0 {
            if self.cancelled() {
                return Err(Stop::Cancelled);
            }
            while listing < MAX_DIRS
                && let Some(d) = queue.pop_front()
            {
                let id = self
                    .ch
                    .send_opendir(self.dirs[d].path.as_os_str().as_bytes());
                self.ops.insert(id, Op::OpenDir(d));
                listing += 1;
            }
            let (id, response) = self.ch.recv()?;
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
                    return Err(Stop::Fatal(format!(
                        "cannot list {}: {} (check v2x_data_location: it must hold an archive/ folder)",
                        archive.display(),
                        r.describe()
                    )));
                }
                (Op::OpenDir(d), r) => {
                    listing -= 1;
                    let rel = self.dirs[d].rel.clone();
                    self.file_error(
                        &rel,
                        format!("cannot list this folder: {}; left alone", r.describe()),
                    );
                    self.resolve_dir_listing_failed(d);
                }
                (Op::ReadDir(d, h), Response::Name(entries)) => {
                    self.dirs[d].readdirs_out -= 1;
                    for e in entries {
                        if let Some(sub) = self.add_entry(d, e) {
                            queue.push_back(sub);
                        }
                    }
                    if !self.dirs[d].listed {
                        self.send_readdir(d, &h);
                    } else if self.dirs[d].readdirs_out == 0 {
                        // Names after the end: a server that answers out of
                        // order. Recorded all the same.
                        self.close_dir(&h);
                        listing -= 1;
                    }
                }
                (Op::ReadDir(d, h), r) => {
                    self.dirs[d].readdirs_out -= 1;
                    if self.dirs[d].readdirs_out == 0 {
                        self.close_dir(&h);
                        listing -= 1;
                    }
                    if std::mem::replace(&mut self.dirs[d].listed, true) {
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
                        let rel = self.dirs[d].rel.clone();
                        self.file_error(
                            &rel,
                            format!("listing ended early: {}; left alone", r.describe()),
                        );
                        self.dirs[d].kept = true;
                    }
                }
                (Op::CloseDir, _) => {}
                _ => {
                    return Err(Stop::Reconnect(
                        "unexpected SFTP response while listing".into(),
                    ));
                }
            }
        }
        // Outstanding CLOSEs of folder handles are answered before anything
        // sent later; their answers are simply dropped by `recv` callers.
        Ok(())
    }

    fn send_readdir(&mut self, d: usize, handle: &[u8]) {
        let id = self.ch.send_readdir(handle);
        self.ops.insert(id, Op::ReadDir(d, handle.to_vec()));
        self.dirs[d].readdirs_out += 1;
    }

    fn close_dir(&mut self, handle: &[u8]) {
        let id = self.ch.send_close(handle);
        self.ops.insert(id, Op::CloseDir);
    }

    /// Records one listed entry of folder `d`; returns a folder to list.
    fn add_entry(&mut self, d: usize, e: NameEntry) -> Option<usize> {
        if e.name == b"." || e.name == b".." {
            return None;
        }
        let name = OsString::from_vec(e.name);
        let rel = self.dirs[d].rel.join(&name);
        let mtime = u64::from(e.attrs.mtime.unwrap_or(0));
        let kind = Kind::of(e.attrs.perm);
        if let Err(reason) = entry_rule(&name, kind, self.dirs[d].depth) {
            self.skip(&rel, &reason);
            self.dirs[d].kept = true;
            return None;
        }
        let path = self.dirs[d].path.join(&name);
        if kind == Kind::File {
            let job = self.jobs.len();
            self.jobs.push(Job {
                path,
                rel,
                name: name.clone(),
                size: e.attrs.size.unwrap_or(0),
                mtime,
                dir: d,
            });
            self.dirs[d].pending += 1;
            self.dirs[d].children.push((mtime, name, Child::File(job)));
            return None;
        }
        let sub = self.dirs.len();
        let depth = self.dirs[d].depth + 1;
        self.dirs.push(Dir::new(path, rel, depth, Some(d)));
        self.dirs[d].pending += 1;
        self.dirs[d].children.push((mtime, name, Child::Dir(sub)));
        Some(sub)
    }

    fn resolve_dir_listing_failed(&mut self, d: usize) {
        self.dirs[d].kept = true;
        if let Some(p) = self.dirs[d].parent {
            self.dirs[p].kept = true;
        }
    }

    /// Files in the order they are taken: oldest first within each folder,
    /// a folder's contents where the folder sorts.
    fn file_order(&mut self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.jobs.len());
        let mut visit: Vec<Child> = Vec::new();
        // Iterative DFS keeping each folder's sorted order.
        fn push_sorted(dirs: &mut [Dir], d: usize, visit: &mut Vec<Child>) {
            let mut children = std::mem::take(&mut dirs[d].children);
            children.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            for (_, _, c) in children.into_iter().rev() {
                visit.push(c);
            }
        }
        push_sorted(&mut self.dirs, 0, &mut visit);
        while let Some(c) = visit.pop() {
            match c {
                Child::File(j) => out.push(j),
                Child::Dir(d) => push_sorted(&mut self.dirs, d, &mut visit),
            }
        }
        out
    }

    // ---- transfer ----

    fn transfer(&mut self, order: Vec<usize>) -> Result<(), Stop> {
        // Folders that were empty (or held only skipped entries) resolve now.
        for d in (1..self.dirs.len()).rev() {
            if self.dirs[d].pending == 0 {
                self.dir_done(d)?;
            }
        }
        self.count_listed(&order);
        let mut queue: VecDeque<usize> = order.into();
        loop {
            if self.cancelled() {
                return Err(Stop::Cancelled);
            }
            while self.active.len() + self.commits.pending() < MAX_FILES
                && self.inflight < MAX_INFLIGHT
            {
                let Some(job) = queue.pop_front() else { break };
                self.admit(job)?;
            }
            self.request_reads();
            while let Some((job, result)) = self.commits.try_done() {
                self.committed(job, result)?;
            }
            if self.ops.is_empty() && self.ch.outstanding() == 0 {
                if let Some((job, result)) = self.commits.wait_done() {
                    self.committed(job, result)?;
                    continue;
                }
                if queue.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let (id, response) = self.ch.recv()?;
            if let Some(op) = self.ops.remove(&id) {
                self.handle(op, response)?;
            }
        }
    }

    /// Adds what this attempt will read to the progress totals.
    fn count_listed(&self, order: &[usize]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let min_age = self.ctx.config.transfer.min_age.as_secs();
        let listed: u64 = order
            .iter()
            .map(|&j| &self.jobs[j])
            .filter(|job| now.saturating_sub(job.mtime) >= min_age)
            .map(|job| job.size)
            .sum();
        self.ctx
            .progress
            .listed_bytes
            .fetch_add(listed, Ordering::Relaxed);
    }

    /// Starts a file: age and space checks, the partial, OPEN.
    fn admit(&mut self, j: usize) -> Result<(), Stop> {
        let t = &self.ctx.config.transfer;
        let job = &self.jobs[j];
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let age = now.saturating_sub(job.mtime);
        if Duration::from_secs(age) < t.min_age {
            let (rel, dir) = (job.rel.clone(), job.dir);
            let reason = format!(
                "modified {age} s ago, younger than transfer.min_age ({}); taken by a later pass",
                humantime::format_duration(t.min_age)
            );
            self.skip(&rel, &reason);
            return self.child_done(dir, false);
        }
        self.check_free_space(job.size)?;
        let element = classify(
            &String::from_utf8_lossy(job.name.as_bytes()),
            &self.ctx.config.elements,
        );
        let target_dir = match element {
            Some(el) => self.ctx.data_root.join(el),
            None => self.ctx.data_root.to_path_buf(),
        };
        let id = Identity {
            size: job.size,
            mtime: job.mtime,
        };
        let path = job.path.clone();
        let partial = self
            .lander
            .open(&target_dir, &job.name, id)
            .map_err(|e| landing_stop(&path, e))?;
        let slot = self.next_slot;
        self.next_slot += 1;
        let resumed = partial.offset();
        self.active.insert(
            slot,
            Active {
                job: j,
                next_req: partial.offset(),
                partial: Some(partial),
                handle: Vec::new(),
                reads_out: 0,
                ahead: BTreeMap::new(),
                changed: false,
                failed: None,
                fstat: None,
                closing: false,
                resumed,
            },
        );
        let id = self.ch.send_open_read(path.as_os_str().as_bytes());
        self.ops.insert(id, Op::Open(slot));
        Ok(())
    }

    /// Issues READs while the in-flight budget allows.
    fn request_reads(&mut self) {
        let mut slots: Vec<usize> = self.active.keys().copied().collect();
        slots.sort_unstable();
        for slot in slots {
            let Some(a) = self.active.get_mut(&slot) else {
                continue;
            };
            if a.handle.is_empty() || a.closing || a.changed || a.failed.is_some() {
                continue;
            }
            let size = self.jobs[a.job].size;
            while a.next_req < size && self.inflight < MAX_INFLIGHT {
                let len = u32::try_from((size - a.next_req).min(u64::from(CHUNK))).unwrap_or(CHUNK);
                let id = self.ch.send_read(&a.handle, a.next_req, len);
                self.ops.insert(
                    id,
                    Op::Read {
                        slot,
                        offset: a.next_req,
                        len,
                    },
                );
                a.next_req += u64::from(len);
                a.reads_out += 1;
                self.inflight += u64::from(len);
            }
            if self.inflight >= MAX_INFLIGHT {
                break;
            }
        }
        let done: Vec<usize> = self
            .active
            .iter()
            .filter(|(_, a)| {
                !a.handle.is_empty()
                    && !a.closing
                    && a.reads_out == 0
                    && (a.changed
                        || a.failed.is_some()
                        || a.partial
                            .as_ref()
                            .is_some_and(|p| p.offset() == self.jobs[a.job].size))
            })
            .map(|(s, _)| *s)
            .collect();
        for slot in done {
            self.finish_reading(slot);
        }
    }

    /// All data is in (or the file went wrong): FSTAT and CLOSE together.
    fn finish_reading(&mut self, slot: usize) {
        let Some(a) = self.active.get_mut(&slot) else {
            return;
        };
        a.closing = true;
        let handle = std::mem::take(&mut a.handle);
        if !a.changed && a.failed.is_none() {
            let id = self.ch.send_fstat(&handle);
            self.ops.insert(id, Op::Fstat(slot));
        }
        let id = self.ch.send_close(&handle);
        self.ops.insert(id, Op::Close(slot));
    }

    fn handle(&mut self, op: Op, response: Response) -> Result<(), Stop> {
        match op {
            Op::Open(slot) => match response {
                Response::Handle(h) => {
                    if let Some(a) = self.active.get_mut(&slot) {
                        a.handle = h;
                    }
                }
                r => {
                    let Some(a) = self.active.remove(&slot) else {
                        return Ok(());
                    };
                    let job = &self.jobs[a.job];
                    let (rel, dir) = (job.rel.clone(), job.dir);
                    if matches!(
                        r,
                        Response::Status {
                            code: status::NO_SUCH_FILE,
                            ..
                        }
                    ) {
                        self.skip(&rel, "vanished before it could be read");
                    } else {
                        self.file_error(
                            &rel,
                            format!("cannot open: {}; left on the coprocessor", r.describe()),
                        );
                    }
                    self.child_done(dir, false)?;
                }
            },
            Op::Read { slot, offset, len } => {
                self.inflight = self.inflight.saturating_sub(u64::from(len));
                let Some(a) = self.active.get_mut(&slot) else {
                    return Ok(());
                };
                a.reads_out = a.reads_out.saturating_sub(1);
                match response {
                    Response::Data(data) if !data.is_empty() && data.len() <= len as usize => {
                        let got = data.len() as u32;
                        if got < len && !a.changed && a.failed.is_none() {
                            // A short read: ask for the rest (it is written in order).
                            let rest = offset + u64::from(got);
                            let id = self.ch.send_read(&a.handle, rest, len - got);
                            self.ops.insert(
                                id,
                                Op::Read {
                                    slot,
                                    offset: rest,
                                    len: len - got,
                                },
                            );
                            a.reads_out += 1;
                            self.inflight += u64::from(len - got);
                        }
                        a.ahead.insert(offset, data);
                        let job_path = self.jobs[a.job].path.clone();
                        drain_in_order(a).map_err(|e| landing_stop(&job_path, e))?;
                        self.ctx
                            .progress
                            .transferred_bytes
                            .fetch_add(u64::from(got), Ordering::Relaxed);
                        (self.ctx.control.on_progress)(self.ctx.progress);
                    }
                    Response::Status {
                        code: status::EOF, ..
                    } => a.changed = true, // shrank
                    Response::Data(_) => {
                        a.failed = Some("the server sent more data than was asked for".into())
                    }
                    r => a.failed = Some(format!("read failed: {}", r.describe())),
                }
            }
            Op::Fstat(slot) => {
                if let (Some(a), Response::Attrs(attrs)) = (self.active.get_mut(&slot), response) {
                    a.fstat = Some(attrs);
                }
            }
            Op::Close(slot) => {
                if let Some(a) = self.active.remove(&slot) {
                    self.file_read(a)?;
                }
            }
            Op::Remove {
                job,
                bytes,
                already_present,
            } => {
                let (rel, dir) = (self.jobs[job].rel.clone(), self.jobs[job].dir);
                match response {
                    Response::Status {
                        code: status::OK, ..
                    } => {
                        fault::point("after-delete");
                        self.report.files += 1;
                        self.report.bytes += bytes;
                        self.report.already_present += u64::from(already_present);
                        self.ctx.progress.files.fetch_add(1, Ordering::Relaxed);
                        self.ctx.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
                        (self.ctx.control.on_progress)(self.ctx.progress);
                        self.child_done(dir, true)?;
                    }
                    r => {
                        self.file_error(
                            &rel,
                            format!(
                                "landed here but could not be removed remotely: {}",
                                r.describe()
                            ),
                        );
                        self.child_done(dir, false)?;
                    }
                }
            }
            Op::Rmdir(d) => {
                let gone = matches!(
                    response,
                    Response::Status {
                        code: status::OK,
                        ..
                    }
                );
                let path = self.dirs[d].path.clone();
                if gone {
                    info!(intersection = %self.name(), remote_path = %path.display(), "removed emptied folder");
                } else {
                    warn!(
                        intersection = %self.name(),
                        remote_path = %path.display(),
                        "could not remove emptied folder: {}; left for a later pass",
                        response.describe()
                    );
                }
                if let Some(p) = self.dirs[d].parent {
                    self.child_done(p, gone)?;
                }
            }
            Op::OpenDir(_) | Op::ReadDir(..) | Op::CloseDir => {}
        }
        Ok(())
    }

    /// A file's reads are over and its handle closed: land it or keep it.
    fn file_read(&mut self, mut a: Active) -> Result<(), Stop> {
        let job = &self.jobs[a.job];
        let (rel, dir) = (job.rel.clone(), job.dir);
        let Some(partial) = a.partial.take() else {
            return self.child_done(dir, false);
        };
        if let Some(why) = a.failed {
            // The prefix already written stays for a later resume.
            drop(partial);
            self.file_error(&rel, format!("{why}; left on the coprocessor"));
            return self.child_done(dir, false);
        }
        let unchanged = a.fstat.is_some_and(|f| {
            f.size == Some(job.size)
                && f.mtime.map(u64::from) == Some(job.mtime)
                && partial.offset() == job.size
        });
        if a.changed || !unchanged {
            partial.discard();
            self.skip(
                &rel,
                "changed while being read; not deleted, taken whole by a later pass",
            );
            return self.child_done(dir, false);
        }
        fault::point("before-commit");
        self.resumed.insert(a.job, a.resumed);
        self.commits.submit(a.job, partial);
        Ok(())
    }

    /// A commit finished on a worker: on success, and only then, delete.
    fn committed(&mut self, j: usize, result: Result<Landed, LandingError>) -> Result<(), Stop> {
        let job = &self.jobs[j];
        let (rel, dir, path) = (job.rel.clone(), job.dir, job.path.clone());
        let resumed = self.resumed.remove(&j).unwrap_or(0);
        let landed = match result {
            Ok(l) => l,
            Err(e) if e.disposition() == Disposition::SkipFile => {
                self.file_error(&rel, format!("{e}; left on the coprocessor"));
                return self.child_done(dir, false);
            }
            Err(e) => return Err(landing_stop(&path, e)),
        };
        self.report.resumed_bytes += resumed;
        info!(
            intersection = %self.name(),
            remote_path = %path.display(),
            local_path = %landed.path.display(),
            bytes = landed.bytes,
            resumed_from = resumed,
            already_present = landed.already_present,
            "landed"
        );
        fault::point("after-commit");
        self.delete_remote(j, &landed);
        Ok(())
    }

    /// The only place that asks the server to delete a file. It takes a
    /// [`Landed`], which only [`Partial::commit`] makes, after the local copy
    /// was verified against the remote size and fsynced with its folder.
    fn delete_remote(&mut self, job: usize, proof: &Landed) {
        let id = self
            .ch
            .send_remove(self.jobs[job].path.as_os_str().as_bytes());
        self.ops.insert(
            id,
            Op::Remove {
                job,
                bytes: proof.bytes,
                already_present: proof.already_present,
            },
        );
    }

    /// One child of folder `d` is resolved: gone from the server or kept.
    fn child_done(&mut self, d: usize, gone: bool) -> Result<(), Stop> {
        let dir = &mut self.dirs[d];
        dir.pending = dir.pending.saturating_sub(1);
        if !gone {
            dir.kept = true;
        }
        if dir.pending == 0 && d != 0 {
            self.dir_done(d)?;
        }
        Ok(())
    }

    /// Every child of folder `d` is resolved: remove it if all are gone.
    fn dir_done(&mut self, d: usize) -> Result<(), Stop> {
        if std::mem::replace(&mut self.dirs[d].resolved, true) {
            return Ok(());
        }
        if self.dirs[d].kept {
            if let Some(p) = self.dirs[d].parent {
                return self.child_done(p, false);
            }
            return Ok(());
        }
        fault::point("before-rmdir");
        // The server refuses a folder that is not empty, so a file that
        // appeared since the listing is never lost.
        let id = self.ch.send_rmdir(self.dirs[d].path.as_os_str().as_bytes());
        self.ops.insert(id, Op::Rmdir(d));
        Ok(())
    }

    fn check_free_space(&self, next: u64) -> Result<(), Stop> {
        let min = self.ctx.config.transfer.min_free_bytes;
        let probe = &self.ctx.config.data_directory;
        // Files already admitted have not written all their bytes yet: the
        // disk must hold those too, or min_free_space is not kept.
        let in_progress: u64 = self
            .active
            .values()
            .map(|a| {
                let size = self.jobs[a.job].size;
                size.saturating_sub(a.partial.as_ref().map_or(size, |p| p.offset()))
            })
            .sum();
        let need = next.saturating_add(in_progress);
        match landing::free_bytes(probe) {
            Ok(free) if free < need.saturating_add(min) => Err(Stop::Fatal(format!(
                "not enough free disk space in {}: {} free, the next file and those in progress need {} and transfer.min_free_space keeps {} free; \
                 stopped this intersection, its remote data is kept. Free space or lower transfer.min_free_space",
                probe.display(),
                crate::report::human_bytes(free),
                crate::report::human_bytes(need),
                crate::report::human_bytes(min),
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(Stop::Fatal(format!(
                "cannot check free space of {}: {e}",
                probe.display()
            ))),
        }
    }

    fn skip(&mut self, rel: &Path, reason: &str) {
        let shown = escape(rel.as_os_str());
        warn!(intersection = %self.name(), remote_path = %shown, "skipped: {reason}");
        self.report.skipped.push(Skipped {
            path: shown,
            reason: reason.to_string(),
        });
    }

    fn file_error(&mut self, rel: &Path, why: String) {
        let shown = escape(rel.as_os_str());
        error!(intersection = %self.name(), remote_path = %shown, "{why}");
        self.report.errors.push(format!("{shown}: {why}"));
    }
}

/// Writes the data that continues the partial file, in order.
fn drain_in_order(a: &mut Active) -> Result<(), LandingError> {
    let Some(partial) = a.partial.as_mut() else {
        return Ok(());
    };
    while let Some(data) = a.ahead.remove(&partial.offset()) {
        partial.write(&data)?;
    }
    Ok(())
}

/// A local write, fsync or rename failed: the disk is full or failing, and
/// every further file would fail the same way.
fn landing_stop(path: &Path, e: LandingError) -> Stop {
    Stop::Fatal(format!("{}: {e}", escape(path.as_os_str())))
}
