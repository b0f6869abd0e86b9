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
//! bytes, and its durable record in the ledger.** It is kept in one place, `Engine::delete_remote` in [`commit`],
//! the only caller of `send_remove`: it takes the [`Landed`](crate::landing::Landed) proof by value,
//! which only a commit makes, and sends nothing unless the proof names the
//! very remote path and identity (size, mtime) of the file it deletes.
//!
//! | file | stage |
//! | --- | --- |
//! | [`listing`] | OPENDIR/READDIR many folders at once, each entry judged, the order files are taken in |
//! | [`reads`] | admission (age, free space), OPEN, pipelined READs written in order, the checks after the data |
//! | [`commit`] | the judgement, the commit on a worker, the one REMOVE, emptied folders |
//!
//! A file's state is one [`FileState`] (opening, reading, closing) plus
//! the first [`Trouble`] that ended its reads early; a file is known by its
//! job number (its index in the listing) everywhere, and each request by
//! the id the wire gave it.
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
//! file costs its name and 32 bytes here (size, mtime and folder index; its
//! paths are rebuilt from the folder chain when needed).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;

use tracing::{error, warn};

use crate::common::text::escape;
use crate::config::Verify;
use crate::config::{Config, Intersection};
use crate::landing::{CommitPool, Landed, Lander, LandingError, Partial};
use crate::ledger::{Ledger, Level, Record};
use crate::report::progress::Progress;
use crate::report::{IntersectionReport, Skipped};
use crate::ssh::sftp::{Attrs, Response, Wire};
use crate::transfer::Control;
use crate::transfer::pace::Pacer;
use crate::transfer::stop::{Cause, Stop};
use crate::transfer::window::Window;

mod commit;
mod left;
mod listing;
mod reads;

use listing::Tree;

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

/// Local failures of files in a row (no file landed between them) after
/// which the intersection stops: past that, the cause is the data folder
/// (its permissions, say), not one file, and every further file would be
/// downloaded only to fail the same way.
pub const MAX_LOCAL_FAILURES_IN_A_ROW: u32 = 10;

/// What the engine works for.
pub struct Ctx<'a> {
    pub ix: &'a Intersection,
    pub config: &'a Config,
    pub control: &'a Control,
    pub progress: &'a Progress,
    /// `<data_directory>/<intersection>`.
    pub data_root: &'a Path,
    /// The bandwidth caps READs are held to.
    pub pacer: &'a Pacer,
    /// `transfer.end_time`, if set: no file is started after its end.
    pub window: Option<Window>,
    /// Where every landed file is recorded before its REMOVE.
    pub ledger: &'a Ledger,
    /// The pass's id, for the records.
    pub pass: &'a str,
}

/// One file being pulled, from its OPEN until it is judged.
struct Active {
    partial: Partial,
    /// Bytes an earlier pass had fetched (the partial's length at OPEN).
    resumed: u64,
    /// Where the next READ starts.
    next_req: u64,
    reads_out: usize,
    /// Data that arrived ahead of the write position, by offset.
    ahead: BTreeMap<u64, Vec<u8>>,
    state: FileState,
    /// Why the reads ended early; `None` while all is well.
    trouble: Option<Trouble>,
}

/// Where a file is between OPEN and its judgement.
enum FileState {
    /// OPEN sent, no handle yet.
    Opening,
    /// READs go out while the in-flight budget allows.
    Reading { handle: Vec<u8> },
    /// The data is in or the reads stopped: CLOSE (and, if all was well,
    /// the READ at the listed end and FSTAT) sent. A server may answer them
    /// in any order; the file is judged once `awaiting` reaches zero.
    Closing {
        awaiting: u8,
        /// The READ at the listed size answered end of file.
        ended: bool,
        fstat: Option<Attrs>,
    },
}

/// Why a file's reads stopped before its end.
enum Trouble {
    /// It shrank (end of file early) or grew (data past the listed end)
    /// since the listing: discarded, taken whole by a later pass.
    Changed,
    /// The server's answer: reported, the partial kept for a resume.
    Remote(String),
    /// The local write: reported by its disposition, the partial dropped.
    Local(LandingError),
    /// The transfer window is closing and the rest would not arrive in
    /// time: the data asked for is still written, the partial kept, and
    /// the file resumes next pass (reported as deferred).
    Window,
}

impl Active {
    /// Records why the reads stopped. The first failure is the one
    /// reported, but a failure outranks a change: a file that changed and
    /// then failed to read is reported as the failure.
    fn fail(&mut self, why: Trouble) {
        if matches!(
            self.trouble,
            None | Some(Trouble::Changed) | Some(Trouble::Window)
        ) {
            self.trouble = Some(why);
        }
    }
}

/// A request in flight, by the id the wire gave it.
enum Op {
    OpenDir(usize),
    ReadDir(usize, Vec<u8>),
    CloseDir,
    Open(usize),
    Read {
        job: usize,
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
    /// `statvfs@openssh.com` of `v2x_data_location`: before the listing,
    /// or (`true`) after the deletes.
    Statvfs(bool),
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
            Op::Statvfs(_) => "statvfs@openssh.com",
        }
    }
}

pub struct Engine<'a, 'c> {
    ctx: &'a Ctx<'c>,
    wire: &'a mut dyn Wire,
    lander: &'a mut Lander,
    report: &'a mut IntersectionReport,
    ops: HashMap<u32, Op>,
    tree: Tree,
    // ---- listing ----
    /// Names listed so far, against `transfer.max_listed_entries`.
    listed: u64,
    /// Hashes of (folder, name) listed so far: a name a server lists twice
    /// is taken once. Dropped when the listing is done.
    seen: HashSet<u64>,
    hasher: RandomState,
    /// Every folder was listed to its end: leftovers may be swept.
    listing_complete: bool,
    // ---- reads ----
    /// Files between OPEN and judgement, by job number.
    files: HashMap<usize, Active>,
    /// Files still reading, in the order they were admitted (the order
    /// READs are issued in).
    reading: Vec<usize>,
    inflight: u64,
    /// Set when a READ waits for the bandwidth caps: how long.
    paced: Option<std::time::Duration>,
    /// Files the window left for the next pass (job numbers).
    deferred: Vec<usize>,
    /// When this attempt's reads began, and the bytes read since: the
    /// rate the window's last call judges by.
    reads_began: std::time::Instant,
    read_this_attempt: u64,
    /// This intersection's share of [`PASS_INFLIGHT`].
    max_inflight: u64,
    // ---- commit and delete ----
    commits: CommitPool,
    /// Per file being committed: bytes an earlier pass had fetched, and
    /// how it was checked.
    resumed: HashMap<usize, (u64, Level)>,
    local_failures_in_a_row: u32,
    /// Files removed remotely (job numbers): the rest of the listing is
    /// what `archive/` still holds after the pass (its backlog).
    removed: HashSet<usize>,
    /// The free space after the deletes was asked for, and answered.
    space_asked_after: bool,
    space_answered_after: bool,
    // ---- chain of custody ----
    /// How files are checked on this connection (`sha256` until the first
    /// batch shows the account cannot hash, see [`Engine::no_hasher`]).
    level: Level,
    /// The remote hash batch of each file admitted under `sha256`
    /// ([`NO_BATCH`]: its batch could not start, see `batch_error`).
    batch_of: HashMap<usize, u32>,
    /// Files of each batch not yet judged: at zero the batch is ended.
    batch_left: HashMap<u32, usize>,
    batch_error: String,
    /// Committed files waiting for their ledger record, then their REMOVE.
    to_record: Vec<(usize, Landed, Option<Record>)>,
}

/// Files one `sha256sum` batch hashes at most.
pub const HASH_BATCH: usize = 256;
/// A file whose hash batch could not start.
const NO_BATCH: u32 = u32::MAX;

impl<'a, 'c> Engine<'a, 'c> {
    pub fn new(
        ctx: &'a Ctx<'c>,
        wire: &'a mut dyn Wire,
        lander: &'a mut Lander,
        report: &'a mut IntersectionReport,
    ) -> Self {
        Engine {
            ctx,
            wire,
            lander,
            report,
            ops: HashMap::new(),
            tree: Tree::new(Path::new(&ctx.ix.v2x_data_location).join("archive")),
            listed: 0,
            seen: HashSet::new(),
            hasher: RandomState::new(),
            listing_complete: true,
            files: HashMap::new(),
            reading: Vec::new(),
            inflight: 0,
            paced: None,
            deferred: Vec::new(),
            reads_began: std::time::Instant::now(),
            read_this_attempt: 0,
            removed: HashSet::new(),
            space_asked_after: false,
            space_answered_after: false,
            max_inflight: inflight_per_intersection(ctx.config.transfer.parallel_intersections),
            commits: CommitPool::new(
                commit_threads_per_intersection(ctx.config.transfer.parallel_intersections),
                ctx.config.transfer.io_timeout,
            ),
            resumed: HashMap::new(),
            local_failures_in_a_row: 0,
            level: Level::Size,
            batch_of: HashMap::new(),
            batch_left: HashMap::new(),
            batch_error: String::new(),
            to_record: Vec::new(),
        }
    }

    /// Lists and pulls everything in `archive/`.
    ///
    /// # Errors
    /// A [`Stop`]: the session broke (reconnect), the listing is over its
    /// bound or `archive/` cannot be listed, the local disk is full or
    /// failing, or the pass was cancelled. Failures of single files are
    /// reported in the intersection's report instead.
    pub fn run(mut self) -> Result<(), Stop> {
        self.choose_level();
        self.ask_remote_space(false);
        self.list_all()?;
        self.seen = HashSet::new();
        let order = self.tree.file_order();
        self.reads_began = std::time::Instant::now();
        let result = self.transfer(order);
        self.account_left();
        result?;
        // Hash batches of files that were never judged (skipped, failed).
        // Only on success: closing a channel waits for the server's answer,
        // which a broken link never gives; the pass abandons that session.
        for b in std::mem::take(&mut self.batch_left).into_keys() {
            self.wire.hash_end(b);
        }
        // The free space after the deletes was asked with the last
        // REMOVEs and is answered by now (see `transfer`).
        if self.listing_complete {
            let swept = self.lander.sweep_leftovers();
            if swept > 0 {
                tracing::info!(
                    removed = swept,
                    "removed partial downloads of files no longer listed"
                );
            }
        }
        Ok(())
    }

    /// `transfer.verify` on this connection: `size` asks the coprocessor
    /// for nothing; `sha256` and `auto` hash remotely, and the first batch
    /// finds out whether the account can ([`Engine::no_hasher`] if not).
    fn choose_level(&mut self) {
        self.level = match self.ctx.config.transfer.verify {
            Verify::Size => {
                self.report.verification = Some(Level::Size.as_str().to_string());
                Level::Size
            }
            Verify::Auto | Verify::Sha256 => Level::Sha256,
        };
    }

    /// The account cannot hash files: `auto` checks sizes from now on
    /// (files already read included), `sha256` stops the intersection.
    ///
    /// # Errors
    /// [`Cause::VerifyUnavailable`] under `verify = "sha256"`.
    fn no_hasher(&mut self, why: String) -> Result<(), Stop> {
        if self.ctx.config.transfer.verify == Verify::Sha256 {
            return Err(Cause::VerifyUnavailable(why).into());
        }
        if self.level == Level::Sha256 {
            tracing::info!(
                "verify = \"auto\": this account cannot hash files on the coprocessor \
                 ({why}); files are checked by size and mtime only"
            );
        }
        self.level = Level::Size;
        self.report.verification = Some(Level::Size.as_str().to_string());
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.ctx.control.cancel.load(Ordering::SeqCst)
    }

    /// Routes an answer to the stage that sent its request.
    fn answered(&mut self, op: Op, response: Response) -> Result<(), Stop> {
        match op {
            Op::Open(j) => self.opened(j, response),
            Op::Read { job, offset, len } => self.read_answered(job, offset, len, response),
            Op::ReadEnd(j) => self.end_answered(j, response),
            Op::Fstat(j) => self.fstat_answered(j, response),
            Op::Close(j) => self.after_reads_answered(j),
            Op::Remove {
                job,
                bytes,
                already_present,
            } => self.removed(job, bytes, already_present, response),
            Op::Rmdir(d) => self.rmdir_answered(d, response),
            Op::Statvfs(after) => {
                self.space_answered(response, after);
                Ok(())
            }
            // Late answers of the listing (closing folder handles).
            Op::OpenDir(_) | Op::ReadDir(..) | Op::CloseDir => Ok(()),
        }
    }

    fn skip(&mut self, rel: &Path, reason: &str) {
        let shown = escape(rel.as_os_str());
        warn!(remote_path = %shown, "skipped: {reason}");
        self.report.skipped.push(Skipped {
            path: shown,
            reason: reason.to_string(),
        });
    }

    fn file_error(&mut self, rel: &Path, why: String) {
        let shown = escape(rel.as_os_str());
        error!(remote_path = %shown, "{why}");
        self.report.errors.push(format!("{shown}: {why}"));
    }
}

// The window, the caps, the backlog and free space (a file named tests.rs,
// as the layer rule's test exemption wants).
#[cfg(test)]
#[path = "links/tests.rs"]
mod links_tests;
#[cfg(test)]
mod tests;
