//! One connected intersection's transfer: list `archive/`, pull every file,
//! delete what landed, remove emptied folders — with requests for many
//! folders and files in flight at once.
//!
//! Each file goes through the same steps as it would one at a time: OPEN,
//! READs (in order, written contiguously to the partial file, so a partial is
//! always a valid prefix to resume from), a READ past the end that must
//! answer EOF, FSTAT and CLOSE (size and mtime must still be what the
//! listing said), [`Partial::commit`] (verified, fsynced, renamed, folder
//! fsynced), and only then REMOVE. Pipelining only interleaves the steps of
//! different files; it never reorders the steps of one.
//!
//! **The invariant: a REMOVE follows only the commit of that remote file's
//! bytes.** It is kept in one place, [`Engine::delete_remote`], the only
//! caller of `send_remove`: it takes the [`Landed`] proof by value, which
//! only a commit makes, and sends nothing unless the proof names the very
//! remote path and identity (size, mtime) of the file it deletes.
//!
//! A failure is as wide as its cause: one file's trouble (a rename refused,
//! a name clash, a short or oversized answer) fails that file, which stays
//! on the coprocessor for the next pass, while the others go on; a full or
//! failing disk, a broken session or a listing over its bound stops the
//! intersection.
//!
//! Bounds: at most [`MAX_FILES`] files open, [`MAX_INFLIGHT`] bytes of reads
//! requested and unanswered (less when many intersections run at once:
//! [`inflight_per_intersection`]) (well under the channel window, so the server
//! never blocks on us and we never deadlock on it), [`MAX_DIRS`] folders
//! being listed, and `transfer.max_listed_entries` names listed. A listed
//! file costs about 100 bytes here (name, size, mtime and folder index; its
//! paths are rebuilt from the folder chain when needed).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::hash::BuildHasher;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::classify::classify;
use crate::config::{Config, Intersection};
use crate::error::Disposition;
use crate::fault;
use crate::landing::{CommitPool, Identity, Landed, Lander, LandingError, Partial};
use crate::pass::{Control, Progress, escape};
use crate::remote::Kind;
use crate::report::{IntersectionReport, Skipped};
use crate::sftp::{Attrs, NameEntry, Response, SftpError, Wire, status};

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
/// Bytes of READs in flight and commit threads for the whole pass, shared by
/// the intersections worked on at once: at `parallel_intersections = 64`
/// a pass would otherwise hold 64 x [`MAX_INFLIGHT`] of answers that a
/// CPU-starved client has not read yet (libssh2 queues each packet) and 256
/// commit threads. At the default of 4 each intersection keeps the full
/// [`MAX_INFLIGHT`] and [`COMMIT_THREADS`].
pub const PASS_INFLIGHT: u64 = 32 << 20;
pub const PASS_COMMIT_THREADS: usize = 16;

/// [`MAX_INFLIGHT`] for one of `parallel` intersections: at least 256 KiB
/// (a 40 ms round trip then still carries 6 MB/s).
pub fn inflight_per_intersection(parallel: usize) -> u64 {
    (PASS_INFLIGHT / parallel.max(1) as u64).clamp(256 << 10, MAX_INFLIGHT)
}

/// [`COMMIT_THREADS`] for one of `parallel` intersections: at least one.
pub fn commit_threads_per_intersection(parallel: usize) -> usize {
    (PASS_COMMIT_THREADS / parallel.max(1)).clamp(1, COMMIT_THREADS)
}
/// Folders listed at once.
pub const MAX_DIRS: usize = 64;
/// How deep folders are followed below `archive/`.
pub const MAX_DEPTH: usize = 8;

/// Local failures of files in a row (no file landed between them) after
/// which the intersection stops: past that, the cause is the data folder
/// (its permissions, say), not one file, and every further file would be
/// downloaded only to fail the same way.
pub const MAX_LOCAL_FAILURES_IN_A_ROW: u32 = 10;

/// The one rule, shared by `run` and `run --dry-run`, for what may be
/// taken from a listing: a plain file or a folder within [`MAX_DEPTH`].
/// Anything else is left where it is, for the reason returned.
pub fn entry_rule(name: &OsStr, kind: Kind, depth: usize) -> Result<(), String> {
    if !crate::landing::is_plain_name(name) {
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

/// The one rule, shared by `run` and `run --dry-run`, for files that wait
/// for a later pass: `transfer.min_age` guards only what can still be
/// written in place. The collector closes a session by renaming its whole
/// folder into `archive/`, so a file inside a folder there (`depth` > 0) is
/// final however fresh its mtime, and waiting would hold the night's data
/// back a whole day. A file directly in `archive/` (`depth` 0) may be a
/// compressor's `<session>.zip` being written: it waits until it is
/// `min_age` old. For every file, the size and mtime check after the read
/// still keeps a file that changed from being deleted.
pub fn too_young(depth: usize, mtime: u64, now: u64, min_age: Duration) -> Option<String> {
    let age = now.saturating_sub(mtime);
    (depth == 0 && age < min_age.as_secs()).then(|| {
        format!(
            "directly in archive/ and modified {age} s ago, younger than transfer.min_age ({}): \
             it may still be being written; taken by a later pass",
            humantime::format_duration(min_age)
        )
    })
}

/// Now, in Unix seconds, as remote mtimes are.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// A listed folder. Its paths are rebuilt from `name` and `parent`, so a
/// listing of many folders holds each name once.
struct Dir {
    /// Empty for `archive/` itself.
    name: Box<[u8]>,
    parent: Option<usize>,
    depth: u8,
    /// Children (files and folders) not yet resolved.
    pending: u32,
    /// READDIRs sent and unanswered: the handle is closed only at zero, or
    /// the server would answer the rest with a bad handle.
    readdirs_out: u8,
    /// Some child stays on the server: this folder must stay too.
    kept: bool,
    /// Removed or given up on; reported to the parent once.
    resolved: bool,
    /// The listing's end (EOF or an error) has come back.
    listed: bool,
    /// Children as listed; sorted (mtime, name) when the files are ordered.
    children: Vec<Child>,
    mtime: u32,
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
enum Child {
    File(u32),
    Dir(u32),
}

/// A listed file: 32 bytes and its name.
struct Job {
    name: Box<[u8]>,
    size: u64,
    mtime: u32,
    dir: u32,
}

impl Job {
    fn identity(&self) -> Identity {
        Identity {
            size: self.size,
            mtime: u64::from(self.mtime),
        }
    }
}

/// Why a file's reads stopped before its end.
enum Failed {
    /// The server's answer: reported, the partial kept for a resume.
    Remote(String),
    /// The local write: reported by its disposition, the partial dropped.
    Local(LandingError),
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
    failed: Option<Failed>,
    /// The READ past the end answered EOF.
    ended: bool,
    fstat: Option<Attrs>,
    closing: bool,
    /// Answers still due after the reads (the READ at the end, FSTAT,
    /// CLOSE): a server may answer them in any order, and the file is
    /// judged only once all are in.
    awaiting: u8,
    resumed: u64,
}

impl Active {
    /// Records why the reads stopped; the first reason is the one reported.
    fn fail(&mut self, why: Failed) {
        self.failed.get_or_insert(why);
    }

    /// One of the answers after the reads is in; true when it was the last.
    fn answered(&mut self) -> bool {
        self.awaiting = self.awaiting.saturating_sub(1);
        self.awaiting == 0
    }
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
    /// The READ at the listed size, which must answer EOF.
    ReadEnd(usize),
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
    ch: &'a mut dyn Wire,
    lander: &'a mut Lander,
    report: &'a mut IntersectionReport,
    archive: PathBuf,
    ops: HashMap<u32, Op>,
    dirs: Vec<Dir>,
    jobs: Vec<Job>,
    active: HashMap<usize, Active>,
    next_slot: usize,
    inflight: u64,
    /// This intersection's share of [`PASS_INFLIGHT`].
    max_inflight: u64,
    commits: CommitPool,
    /// Bytes an earlier pass had fetched, per job being committed.
    resumed: HashMap<usize, u64>,
    /// Names listed so far, against `transfer.max_listed_entries`.
    listed: u64,
    /// Hashes of (folder, name) listed so far: a name a server lists twice
    /// is taken once. Dropped when the listing is done.
    seen: HashSet<u64>,
    hasher: RandomState,
    /// Every folder was listed to its end: leftovers may be swept.
    listing_complete: bool,
    local_failures_in_a_row: u32,
}

impl<'a, 'c> Engine<'a, 'c> {
    pub fn new(
        ctx: &'a Ctx<'c>,
        ch: &'a mut dyn Wire,
        lander: &'a mut Lander,
        report: &'a mut IntersectionReport,
    ) -> Self {
        Engine {
            ctx,
            ch,
            lander,
            report,
            archive: Path::new(&ctx.ix.v2x_data_location).join("archive"),
            ops: HashMap::new(),
            dirs: Vec::new(),
            jobs: Vec::new(),
            active: HashMap::new(),
            next_slot: 0,
            inflight: 0,
            max_inflight: inflight_per_intersection(ctx.config.transfer.parallel_intersections),
            commits: CommitPool::new(
                commit_threads_per_intersection(ctx.config.transfer.parallel_intersections),
                ctx.config.transfer.io_timeout,
            ),
            resumed: HashMap::new(),
            listed: 0,
            seen: HashSet::new(),
            hasher: RandomState::new(),
            listing_complete: true,
            local_failures_in_a_row: 0,
        }
    }

    fn name(&self) -> &str {
        &self.ctx.ix.name
    }

    fn cancelled(&self) -> bool {
        self.ctx.control.cancel.load(Ordering::SeqCst)
    }

    /// Lists and pulls everything in `archive/`.
    ///
    /// # Errors
    /// A [`Stop`]: the session broke (reconnect), the listing is over its
    /// bound or `archive/` cannot be listed, the local disk is full or
    /// failing, or the pass was cancelled. Failures of single files are
    /// reported in the intersection's report instead.
    pub fn run(mut self) -> Result<(), Stop> {
        self.list_all()?;
        self.seen = HashSet::new();
        let order = self.file_order();
        self.transfer(order)?;
        if self.listing_complete {
            let swept = self.lander.sweep_leftovers();
            if swept > 0 {
                info!(intersection = %self.name(), removed = swept, "removed partial downloads of files no longer listed");
            }
        }
        Ok(())
    }

    // ---- paths, rebuilt from the folder chain ----

    fn dir_rel(&self, d: usize) -> PathBuf {
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

    fn dir_path(&self, d: usize) -> PathBuf {
        if d == 0 {
            // `join("")` would add a trailing slash.
            return self.archive.clone();
        }
        self.archive.join(self.dir_rel(d))
    }

    fn job_rel(&self, j: usize) -> PathBuf {
        let job = &self.jobs[j];
        self.dir_rel(job.dir as usize)
            .join(OsStr::from_bytes(&job.name))
    }

    fn job_path(&self, j: usize) -> PathBuf {
        self.archive.join(self.job_rel(j))
    }

    // ---- listing ----

    fn list_all(&mut self) -> Result<(), Stop> {
        self.dirs.push(Dir::new(Box::new([]), None, 0, 0));
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
                let path = self.dir_path(d);
                let id = self.ch.send_opendir(path.as_os_str().as_bytes());
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
                        self.archive.display(),
                        r.describe()
                    )));
                }
                (Op::OpenDir(d), r) => {
                    listing -= 1;
                    let rel = self.dir_rel(d);
                    self.file_error(
                        &rel,
                        format!("cannot list this folder: {}; left alone", r.describe()),
                    );
                    self.resolve_dir_listing_failed(d);
                }
                (Op::ReadDir(d, h), Response::Name(entries)) => {
                    self.dirs[d].readdirs_out -= 1;
                    for e in entries {
                        if let Some(sub) = self.add_entry(d, e)? {
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
                        let rel = self.dir_rel(d);
                        self.file_error(
                            &rel,
                            format!("listing ended early: {}; left alone", r.describe()),
                        );
                        self.dirs[d].kept = true;
                        self.listing_complete = false;
                    }
                }
                (Op::CloseDir, _) => {}
                (op, r) => {
                    return Err(Stop::Reconnect(format!(
                        "the server answered a {} request with {} while listing",
                        op.kind(),
                        r.describe()
                    )));
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
    fn add_entry(&mut self, d: usize, e: NameEntry) -> Result<Option<usize>, Stop> {
        if e.name == b"." || e.name == b".." {
            return Ok(None);
        }
        self.listed += 1;
        let max = self.ctx.config.transfer.max_listed_entries;
        if self.listed > max {
            return Err(Stop::Fatal(format!(
                "{} lists more than {max} entries (transfer.max_listed_entries); stopped \
                 before transferring anything, nothing was deleted. A server that never ends \
                 a listing does this; so does an archive/ that was not pulled for years: then \
                 raise transfer.max_listed_entries",
                self.archive.display()
            )));
        }
        if !self.seen.insert(self.hasher.hash_one((d, &e.name))) {
            let rel = self.dir_rel(d).join(OsStr::from_bytes(&e.name));
            self.skip(&rel, "listed more than once by the server; taken once");
            return Ok(None);
        }
        let name = OsString::from_vec(e.name);
        let mtime = e.attrs.mtime.unwrap_or(0);
        let kind = Kind::of(e.attrs.perm);
        let depth = usize::from(self.dirs[d].depth);
        if let Err(reason) = entry_rule(&name, kind, depth) {
            let rel = self.dir_rel(d).join(&name);
            self.skip(&rel, &reason);
            self.dirs[d].kept = true;
            return Ok(None);
        }
        let name = name.into_vec().into_boxed_slice();
        self.dirs[d].pending += 1;
        if kind == Kind::File {
            let job = self.jobs.len() as u32;
            self.jobs.push(Job {
                name,
                size: e.attrs.size.unwrap_or(0),
                mtime,
                dir: d as u32,
            });
            self.dirs[d].children.push(Child::File(job));
            return Ok(None);
        }
        let sub = self.dirs.len();
        // `entry_rule` keeps depth below MAX_DEPTH.
        let depth = self.dirs[d].depth + 1;
        self.dirs.push(Dir::new(name, Some(d), depth, mtime));
        self.dirs[d].children.push(Child::Dir(sub as u32));
        Ok(Some(sub))
    }

    fn resolve_dir_listing_failed(&mut self, d: usize) {
        self.listing_complete = false;
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
                && self.inflight < self.max_inflight
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

    /// Depth of the folder a job was listed in (0: directly in `archive/`).
    fn job_depth(&self, j: usize) -> usize {
        usize::from(self.dirs[self.jobs[j].dir as usize].depth)
    }

    /// Adds what this attempt will read to the progress totals.
    fn count_listed(&self, order: &[usize]) {
        let now = unix_now();
        let min_age = self.ctx.config.transfer.min_age;
        let listed: u64 = order
            .iter()
            .filter(|&&j| {
                too_young(
                    self.job_depth(j),
                    u64::from(self.jobs[j].mtime),
                    now,
                    min_age,
                )
                .is_none()
            })
            .map(|&j| self.jobs[j].size)
            .sum();
        self.ctx
            .progress
            .listed_bytes
            .fetch_add(listed, Ordering::Relaxed);
    }

    /// Starts a file: age and space checks, the partial, OPEN.
    fn admit(&mut self, j: usize) -> Result<(), Stop> {
        let min_age = self.ctx.config.transfer.min_age;
        let dir = self.jobs[j].dir as usize;
        if let Some(reason) = too_young(
            self.job_depth(j),
            u64::from(self.jobs[j].mtime),
            unix_now(),
            min_age,
        ) {
            let rel = self.job_rel(j);
            self.skip(&rel, &reason);
            return self.child_done(dir, false);
        }
        self.check_free_space(self.jobs[j].size)?;
        let job = &self.jobs[j];
        let name = OsStr::from_bytes(&job.name);
        let element = classify(&name.to_string_lossy(), &self.ctx.config.elements);
        let target_dir = match element {
            Some(el) => self.ctx.data_root.join(el),
            None => self.ctx.data_root.to_path_buf(),
        };
        let id = job.identity();
        let path = self.job_path(j);
        let partial = match self
            .lander
            .open(&target_dir, name, path.as_os_str().as_bytes(), id)
        {
            Ok(p) => p,
            Err(e) => return self.local_failure(j, e),
        };
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
                ended: false,
                fstat: None,
                closing: false,
                awaiting: 0,
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
            while a.next_req < size && self.inflight < self.max_inflight {
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
            if self.inflight >= self.max_inflight {
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

    /// All data is in (or the file went wrong): one READ at the listed size,
    /// which must answer EOF (a server whose listing and FSTAT both
    /// understate the size is caught here, not by a REMOVE that loses the
    /// rest), FSTAT and CLOSE, all at once.
    fn finish_reading(&mut self, slot: usize) {
        let Some(a) = self.active.get_mut(&slot) else {
            return;
        };
        a.closing = true;
        let handle = std::mem::take(&mut a.handle);
        if !a.changed && a.failed.is_none() {
            let id = self.ch.send_read(&handle, self.jobs[a.job].size, 1);
            self.ops.insert(id, Op::ReadEnd(slot));
            let id = self.ch.send_fstat(&handle);
            self.ops.insert(id, Op::Fstat(slot));
            a.awaiting += 2;
        }
        let id = self.ch.send_close(&handle);
        self.ops.insert(id, Op::Close(slot));
        a.awaiting += 1;
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
                    let (rel, dir) = (self.job_rel(a.job), self.jobs[a.job].dir as usize);
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
                self.read_answered(slot, offset, len, response)?;
            }
            Op::ReadEnd(slot) => {
                let Some(a) = self.active.get_mut(&slot) else {
                    return Ok(());
                };
                match response {
                    Response::Status {
                        code: status::EOF, ..
                    } => a.ended = true,
                    // More bytes than listed: it grew, or the server
                    // understated its size.
                    Response::Data(_) => a.changed = true,
                    r => a.fail(Failed::Remote(format!(
                        "the READ at its listed end ({} bytes) answered {} instead of end of file",
                        self.jobs[a.job].size,
                        r.describe()
                    ))),
                }
                self.after_reads_answered(slot)?;
            }
            Op::Fstat(slot) => {
                let Some(a) = self.active.get_mut(&slot) else {
                    return Ok(());
                };
                if let Response::Attrs(attrs) = response {
                    a.fstat = Some(attrs);
                }
                self.after_reads_answered(slot)?;
            }
            Op::Close(slot) => self.after_reads_answered(slot)?,
            Op::Remove {
                job,
                bytes,
                already_present,
            } => {
                let dir = self.jobs[job].dir as usize;
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
                        let rel = self.job_rel(job);
                        self.file_error(
                            &rel,
                            format!(
                                "landed here but could not be removed remotely: {}; a later pass \
                                 finds the identical copy here and removes it then",
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
                let path = self.dir_path(d);
                if gone {
                    info!(intersection = %self.name(), remote_path = %escape(path.as_os_str()), "removed emptied folder");
                } else {
                    warn!(
                        intersection = %self.name(),
                        remote_path = %escape(path.as_os_str()),
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

    /// One READ's answer: data goes to the partial in order; a short answer
    /// asks for the rest; anything else ends this file's reads.
    fn read_answered(
        &mut self,
        slot: usize,
        offset: u64,
        len: u32,
        response: Response,
    ) -> Result<(), Stop> {
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
                if a.failed.is_some() {
                    return Ok(());
                }
                a.ahead.insert(offset, data);
                if let Err(e) = drain_in_order(a) {
                    if e.disposition() != Disposition::SkipFile {
                        let job = a.job;
                        return Err(landing_stop(&self.job_path(job), e));
                    }
                    a.ahead.clear();
                    a.fail(Failed::Local(e));
                    return Ok(());
                }
                self.ctx
                    .progress
                    .transferred_bytes
                    .fetch_add(u64::from(got), Ordering::Relaxed);
                (self.ctx.control.on_progress)(self.ctx.progress);
            }
            // Shrank since the listing.
            Response::Status {
                code: status::EOF, ..
            } => a.changed = true,
            Response::Data(data) if data.is_empty() => a.fail(Failed::Remote(format!(
                "the server answered the READ of {len} bytes at offset {offset} with no data \
                     (SFTP says end of file must be a status)"
            ))),
            Response::Data(data) => a.fail(Failed::Remote(format!(
                "the server answered the READ of {len} bytes at offset {offset} with {} bytes, \
                     more than was asked for",
                data.len()
            ))),
            r => a.fail(Failed::Remote(format!(
                "the READ of {len} bytes at offset {offset} failed: {}",
                r.describe()
            ))),
        }
        Ok(())
    }

    /// Counts one of the answers after a file's reads; with the last one in,
    /// the file is judged.
    fn after_reads_answered(&mut self, slot: usize) -> Result<(), Stop> {
        if self.active.get_mut(&slot).is_some_and(Active::answered)
            && let Some(a) = self.active.remove(&slot)
        {
            return self.file_read(a);
        }
        Ok(())
    }

    /// A file's reads are over and its handle closed: land it or keep it.
    fn file_read(&mut self, mut a: Active) -> Result<(), Stop> {
        let j = a.job;
        let (rel, dir) = (self.job_rel(j), self.jobs[j].dir as usize);
        let Some(partial) = a.partial.take() else {
            return self.child_done(dir, false);
        };
        match a.failed {
            Some(Failed::Remote(why)) => {
                // The prefix already written stays for a later resume.
                drop(partial);
                self.file_error(&rel, format!("{why}; left on the coprocessor"));
                return self.child_done(dir, false);
            }
            Some(Failed::Local(e)) => {
                // What the failed write left is not trusted for a resume.
                partial.discard();
                return self.local_failure(j, e);
            }
            None => {}
        }
        let job = &self.jobs[j];
        let unchanged = a.ended
            && a.fstat.is_some_and(|f| {
                f.size == Some(job.size)
                    && f.mtime == Some(job.mtime)
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
        self.resumed.insert(j, a.resumed);
        self.commits.submit(j, partial);
        Ok(())
    }

    /// A commit finished on a worker: on success, and only then, delete.
    fn committed(&mut self, j: usize, result: Result<Landed, LandingError>) -> Result<(), Stop> {
        let resumed = self.resumed.remove(&j).unwrap_or(0);
        let landed = match result {
            Ok(l) => l,
            Err(e) => return self.local_failure(j, e),
        };
        self.local_failures_in_a_row = 0;
        self.report.resumed_bytes += resumed;
        info!(
            intersection = %self.name(),
            remote_path = %escape(self.job_path(j).as_os_str()),
            local_path = %landed.path().display(),
            bytes = landed.bytes(),
            resumed_from = resumed,
            already_present = landed.already_present(),
            "landed"
        );
        fault::point("after-commit");
        self.delete_remote(j, landed)
    }

    /// The only place that asks the server to delete a file; see the module
    /// docs for the invariant it keeps. `proof` is consumed: one commit
    /// allows one REMOVE, of the file it was made for.
    fn delete_remote(&mut self, j: usize, proof: Landed) -> Result<(), Stop> {
        let path = self.job_path(j);
        if !proof.is_for(path.as_os_str().as_bytes(), self.jobs[j].identity()) {
            // Unreachable by design; if the bookkeeping ever mixes two files
            // up, the remote file stays.
            let rel = self.job_rel(j);
            self.file_error(
                &rel,
                "internal error: the landing proof is for another remote file; not deleted (a bug, please report it)".into(),
            );
            return self.child_done(self.jobs[j].dir as usize, false);
        }
        let id = self.ch.send_remove(path.as_os_str().as_bytes());
        self.ops.insert(
            id,
            Op::Remove {
                job: j,
                bytes: proof.bytes(),
                already_present: proof.already_present(),
            },
        );
        Ok(())
    }

    /// A local error landing file `j`: that file's alone when its
    /// disposition says so (reported, kept remotely, retried next pass),
    /// else the intersection stops.
    fn local_failure(&mut self, j: usize, e: LandingError) -> Result<(), Stop> {
        if e.disposition() != Disposition::SkipFile {
            return Err(landing_stop(&self.job_path(j), e));
        }
        let rel = self.job_rel(j);
        self.file_error(
            &rel,
            format!("{e}; left on the coprocessor, retried next pass"),
        );
        self.local_failures_in_a_row += 1;
        if self.local_failures_in_a_row >= MAX_LOCAL_FAILURES_IN_A_ROW {
            return Err(Stop::Fatal(format!(
                "{MAX_LOCAL_FAILURES_IN_A_ROW} files in a row failed to land here, the last with: {e}; \
                 stopped this intersection, its remote data is kept. Check the data directory \
                 {} (permissions, the filesystem)",
                self.ctx.data_root.display()
            )));
        }
        self.child_done(self.jobs[j].dir as usize, false)
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
        let path = self.dir_path(d);
        let id = self.ch.send_rmdir(path.as_os_str().as_bytes());
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
        match crate::landing::free_bytes(probe) {
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

impl Op {
    /// The request's SFTP name, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Op::OpenDir(_) => "OPENDIR",
            Op::ReadDir(..) => "READDIR",
            Op::CloseDir | Op::Close(_) => "CLOSE",
            Op::Open(_) => "OPEN",
            Op::Read { .. } | Op::ReadEnd(_) => "READ",
            Op::Fstat(_) => "FSTAT",
            Op::Remove { .. } => "REMOVE",
            Op::Rmdir(_) => "RMDIR",
        }
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

/// A local write, fsync or rename failed in a way that fails every further
/// file too: the disk is full or failing.
fn landing_stop(path: &Path, e: LandingError) -> Stop {
    Stop::Fatal(format!("{}: {e}", escape(path.as_os_str())))
}

#[cfg(test)]
mod tests;
