//! One transfer pass: a bounded pool of workers, one intersection each.
//!
//! Per intersection: connect (retrying connection failures with backoff),
//! list `archive/`, and take every entry oldest first: regular files directly
//! in it (zipped sessions) and closed session folders, recursively. Each file
//! is classified, landed ([`crate::landing`]) and only then removed remotely
//! by [`delete_remote`], the one place in the program that deletes a remote
//! file. A folder is removed once everything in it is gone; `archive/`
//! itself never is, and nothing outside it is ever touched.
//!
//! Three bounds keep one coprocessor from holding up the night: the
//! connect timeout, the per-call I/O timeout, and the intersection's
//! deadline, enforced by a [`Watchdog`] that shuts the socket down, because
//! a peer that trickles a byte per timeout defeats per-call timeouts. The
//! same watchdog turns a cancellation (SIGTERM) into an immediate stop: the
//! current download stays as a partial file and resumes next pass.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::classify::classify;
use crate::config::{Config, Intersection};
use crate::error::Disposition;
use crate::fault;
use crate::known_hosts::KnownHosts;
use crate::landing::{self, Identity, Landed, Lander, LandingError};
use crate::remote::{self, Entry, Interrupter, Kind, Remote, RemoteError};
use crate::report::{IntersectionReport, Outcome, RunReport, Skipped};

/// How deep session folders are followed below `archive/`.
const MAX_DEPTH: usize = 8;
/// Read size: libssh2 keeps about four reads' worth of requests in flight,
/// so large reads are what make a single SFTP stream fast.
const READ_SIZE: usize = 1 << 20;

/// Running totals for progress reports (systemd STATUS, a terminal).
#[derive(Debug, Default)]
pub struct Progress {
    pub intersections_total: usize,
    pub intersections_done: AtomicUsize,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

/// What the caller lets a pass know and do while it runs.
pub struct Control {
    /// Set on SIGTERM/SIGINT: start nothing new, stop the current download.
    pub cancel: Arc<AtomicBool>,
    /// Called after every landed file and every finished intersection.
    pub on_progress: Box<dyn Fn(&Progress) + Send + Sync>,
}

impl Control {
    pub fn new() -> Control {
        Control {
            cancel: Arc::new(AtomicBool::new(false)),
            on_progress: Box::new(|_| {}),
        }
    }
}

impl Default for Control {
    fn default() -> Self {
        Control::new()
    }
}

/// Runs one pass over `intersections` and returns its report.
pub fn run(
    config: &Config,
    known: &KnownHosts,
    intersections: &[Intersection],
    control: &Control,
) -> RunReport {
    let started = SystemTime::now();
    let clock = Instant::now();
    let progress = Progress {
        intersections_total: intersections.len(),
        ..Progress::default()
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<IntersectionReport>>> =
        Mutex::new(vec![None; intersections.len()]);
    let workers = config
        .transfer
        .parallel_intersections
        .clamp(1, intersections.len().max(1));
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(ix) = intersections.get(i) else {
                        break;
                    };
                    let report = IntersectionRun::new(config, known, ix, control, &progress).run();
                    progress.intersections_done.fetch_add(1, Ordering::SeqCst);
                    (control.on_progress)(&progress);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(report);
                    }
                }
            });
        }
    });
    let intersections = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .zip(intersections)
        .map(|(r, ix)| {
            r.unwrap_or_else(|| {
                IntersectionReport::failed(ix, "worker ended without a report (a bug)")
            })
        })
        .collect();
    RunReport {
        started: unix(started),
        seconds: clock.elapsed().as_secs_f64(),
        config: config.source.clone(),
        intersections,
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl IntersectionReport {
    fn new(ix: &Intersection) -> IntersectionReport {
        IntersectionReport {
            name: ix.name.clone(),
            host: ix.host.clone(),
            outcome: Outcome::Ok,
            started: unix(SystemTime::now()),
            seconds: 0.0,
            files: 0,
            bytes: 0,
            already_present: 0,
            resumed_bytes: 0,
            skipped: Vec::new(),
            errors: Vec::new(),
            last_success: None,
        }
    }

    fn failed(ix: &Intersection, why: &str) -> IntersectionReport {
        let mut r = IntersectionReport::new(ix);
        r.outcome = Outcome::Failed;
        r.errors.push(why.to_string());
        r
    }
}

/// Why the walk of an intersection stopped early.
enum Stop {
    /// The session broke: reconnect and walk again.
    Reconnect(String),
    /// Nothing more can be done this pass.
    Fatal(String),
    Cancelled,
}

impl From<RemoteError> for Stop {
    fn from(e: RemoteError) -> Stop {
        match e.disposition() {
            Disposition::Reconnect => Stop::Reconnect(e.to_string()),
            _ => Stop::Fatal(e.to_string()),
        }
    }
}

/// Whether an entry is gone from the remote side after we handled it.
#[derive(PartialEq, Eq)]
enum Left {
    Gone,
    Kept,
}

struct IntersectionRun<'a> {
    config: &'a Config,
    known: &'a KnownHosts,
    ix: &'a Intersection,
    control: &'a Control,
    progress: &'a Progress,
    report: IntersectionReport,
    lander: Lander,
    data_root: PathBuf,
    watchdog: Watchdog,
}

impl<'a> IntersectionRun<'a> {
    fn new(
        config: &'a Config,
        known: &'a KnownHosts,
        ix: &'a Intersection,
        control: &'a Control,
        progress: &'a Progress,
    ) -> Self {
        IntersectionRun {
            config,
            known,
            ix,
            control,
            progress,
            report: IntersectionReport::new(ix),
            lander: Lander::new(),
            data_root: config.data_directory.join(&ix.name),
            watchdog: Watchdog::start(
                Instant::now() + config.transfer.intersection_deadline,
                control.cancel.clone(),
            ),
        }
    }

    fn run(mut self) -> IntersectionReport {
        let clock = Instant::now();
        let name = self.ix.name.clone();
        info!(intersection = %name, host = %self.ix.host, "starting");
        let t = &self.config.transfer;
        let mut attempt: u32 = 0;
        let outcome = loop {
            if self.control.cancel.load(Ordering::SeqCst) {
                break Err(Stop::Cancelled);
            }
            if self.watchdog.expired() {
                break Err(self.deadline_stop());
            }
            let result = remote::connect(self.ix, self.known, t, &|i| self.watchdog.watch(i))
                .map_err(Stop::from)
                .and_then(|remote| self.walk(&remote));
            let why = match result {
                Err(Stop::Reconnect(why)) => why,
                other => break other,
            };
            if self.control.cancel.load(Ordering::SeqCst) {
                break Err(Stop::Cancelled);
            }
            if self.watchdog.expired() {
                break Err(self.deadline_stop());
            }
            attempt += 1;
            if attempt > t.retries {
                break Err(Stop::Fatal(format!(
                    "{why} (gave up after {} attempts; transfer.retries = {})",
                    attempt, t.retries
                )));
            }
            let wait = t.retry_backoff.saturating_mul(1 << (attempt - 1).min(10));
            warn!(intersection = %name, attempt, retry_in = ?wait, "{why}; retrying");
            if !self.watchdog.sleep(wait) {
                // Woken by cancellation or the deadline; the loop top says which.
                continue;
            }
        };
        match outcome {
            Ok(()) => {}
            Err(Stop::Cancelled) => {
                self.report.outcome = Outcome::Cancelled;
                warn!(intersection = %name, "stopped by a signal; what was not landed stays on the coprocessor");
            }
            Err(Stop::Fatal(why)) | Err(Stop::Reconnect(why)) => {
                error!(intersection = %name, "{why}; its remote data is kept");
                self.report.errors.push(why);
            }
        }
        if self.report.outcome == Outcome::Ok && !self.report.errors.is_empty() {
            self.report.outcome = Outcome::Failed;
        }
        self.report.seconds = clock.elapsed().as_secs_f64();
        if self.report.outcome == Outcome::Ok {
            self.report.last_success = Some(self.report.started);
        }
        let r = &self.report;
        info!(
            intersection = %name,
            result = r.outcome.as_str(),
            files = r.files,
            bytes = r.bytes,
            seconds = format!("{:.1}", r.seconds),
            skipped = r.skipped.len(),
            errors = r.errors.len(),
            "summary"
        );
        self.report
    }

    fn deadline_stop(&self) -> Stop {
        Stop::Fatal(format!(
            "intersection deadline of {} passed (transfer.intersection_deadline)",
            humantime::format_duration(self.config.transfer.intersection_deadline)
        ))
    }

    /// Takes everything in `archive/`, oldest first.
    fn walk(&mut self, remote: &Remote) -> Result<(), Stop> {
        let archive = Path::new(&self.ix.v2x_data_location).join("archive");
        let entries = remote.list(&archive).map_err(|e| match e.disposition() {
            Disposition::Reconnect => Stop::Reconnect(e.to_string()),
            _ => Stop::Fatal(format!(
                "{e} (check v2x_data_location: it must hold an archive/ folder)"
            )),
        })?;
        // Created here, not by the package alone: a data_directory moved in
        // the config starts empty, and min_free_space guards the disk it is on.
        landing::create_dir_durably(&self.data_root).map_err(|e| Stop::Fatal(e.to_string()))?;
        self.walk_entries(remote, &archive, Path::new(""), entries, 0)?;
        Ok(())
    }

    /// Handles `entries` of the folder `dir` (`rel` relative to `archive/`);
    /// returns whether every one of them is gone.
    fn walk_entries(
        &mut self,
        remote: &Remote,
        dir: &Path,
        rel: &Path,
        mut entries: Vec<Entry>,
        depth: usize,
    ) -> Result<Left, Stop> {
        entries.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
        let mut all_gone = true;
        for entry in entries {
            if self.control.cancel.load(Ordering::SeqCst) {
                return Err(Stop::Cancelled);
            }
            let left = self.entry(remote, dir, rel, &entry, depth)?;
            all_gone &= left == Left::Gone;
        }
        Ok(if all_gone { Left::Gone } else { Left::Kept })
    }

    fn entry(
        &mut self,
        remote: &Remote,
        dir: &Path,
        rel: &Path,
        entry: &Entry,
        depth: usize,
    ) -> Result<Left, Stop> {
        if !landing::is_plain_name(&entry.name) {
            self.skip(&rel.join(&entry.name), "not a plain file name (empty, dot, hidden, too long, or with control characters); left alone");
            return Ok(Left::Kept);
        }
        let path = dir.join(&entry.name);
        let rel = rel.join(&entry.name);
        match entry.kind {
            Kind::File => self.file(remote, &path, &rel, entry),
            Kind::Dir if depth >= MAX_DEPTH => {
                self.skip(
                    &rel,
                    &format!("folder nested deeper than {MAX_DEPTH} levels; left alone"),
                );
                Ok(Left::Kept)
            }
            Kind::Dir => {
                let entries = remote.list(&path)?;
                let left = self.walk_entries(remote, &path, &rel, entries, depth + 1)?;
                if left == Left::Gone {
                    fault::point("before-rmdir");
                    // The server refuses a folder that is not empty, so a
                    // file that appeared since the listing is never lost.
                    match remote.remove_dir(&path) {
                        Ok(()) => {
                            info!(intersection = %self.ix.name, remote_path = %path.display(), "removed emptied folder")
                        }
                        Err(e) => {
                            warn!(intersection = %self.ix.name, remote_path = %path.display(), "{e}; left for a later pass");
                            return Ok(Left::Kept);
                        }
                    }
                }
                Ok(left)
            }
            Kind::Symlink => {
                self.skip(&rel, "symbolic link; never followed, pulled or deleted");
                Ok(Left::Kept)
            }
            Kind::Other => {
                self.skip(
                    &rel,
                    "not a regular file or folder (device, FIFO, socket); left alone",
                );
                Ok(Left::Kept)
            }
        }
    }

    fn skip(&mut self, rel: &Path, reason: &str) {
        let shown = escape(rel.as_os_str());
        warn!(intersection = %self.ix.name, remote_path = %shown, "skipped: {reason}");
        self.report.skipped.push(Skipped {
            path: shown,
            reason: reason.to_string(),
        });
    }

    fn file_error(&mut self, path: &Path, why: String) {
        error!(intersection = %self.ix.name, remote_path = %escape(path.as_os_str()), "{why}");
        self.report
            .errors
            .push(format!("{}: {why}", escape(path.as_os_str())));
    }

    /// Pulls one file and, once it is landed, deletes the remote copy.
    fn file(
        &mut self,
        remote: &Remote,
        path: &Path,
        rel: &Path,
        entry: &Entry,
    ) -> Result<Left, Stop> {
        let t = &self.config.transfer;
        let age = unix(SystemTime::now()).saturating_sub(entry.mtime);
        if Duration::from_secs(age) < t.min_age {
            self.skip(
                rel,
                &format!(
                    "modified {age} s ago, younger than transfer.min_age ({}); taken by a later pass",
                    humantime::format_duration(t.min_age)
                ),
            );
            return Ok(Left::Kept);
        }
        let element = classify(
            &String::from_utf8_lossy(entry.name.as_bytes()),
            &self.config.elements,
        );
        let target_dir = match element {
            Some(el) => self.data_root.join(el),
            None => self.data_root.clone(),
        };
        self.check_free_space(entry.size)?;
        let id = Identity {
            size: entry.size,
            mtime: entry.mtime,
        };
        let mut partial = self
            .lander
            .open(&target_dir, &entry.name, id)
            .map_err(|e| self.landing_stop(path, e))?;
        let resumed = partial.offset();
        if partial.offset() < entry.size || entry.size == 0 {
            let mut rf = match remote.open_at(path, partial.offset()) {
                Ok(f) => f,
                Err(e) => return self.remote_file_error(path, e),
            };
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                if self.control.cancel.load(Ordering::SeqCst) {
                    return Err(Stop::Cancelled);
                }
                let n = rf.read(&mut buf).map_err(Stop::from)?;
                if n == 0 {
                    break;
                }
                partial
                    .write(&buf[..n])
                    .map_err(|e| self.landing_stop(path, e))?;
                if partial.offset() > entry.size {
                    break; // grew while being read: caught below
                }
            }
            let after = rf.fstat().map_err(Stop::from)?;
            if after.size != entry.size
                || after.mtime != entry.mtime
                || partial.offset() != entry.size
            {
                partial.discard();
                self.skip(
                    rel,
                    "changed while being read; not deleted, taken whole by a later pass",
                );
                return Ok(Left::Kept);
            }
        }
        fault::point("before-commit");
        let landed = match partial.commit() {
            Ok(l) => l,
            Err(e) if e.disposition() == Disposition::SkipFile => {
                self.file_error(path, format!("{e}; left on the coprocessor"));
                return Ok(Left::Kept);
            }
            Err(e) => return Err(self.landing_stop(path, e)),
        };
        self.report.resumed_bytes += resumed;
        info!(
            intersection = %self.ix.name,
            remote_path = %path.display(),
            local_path = %landed.path.display(),
            bytes = landed.bytes,
            resumed_from = resumed,
            already_present = landed.already_present,
            "landed"
        );
        fault::point("after-commit");
        match delete_remote(remote, &landed, path) {
            Ok(()) => {
                fault::point("after-delete");
                self.report.files += 1;
                self.report.bytes += landed.bytes;
                self.report.already_present += u64::from(landed.already_present);
                self.progress.files.fetch_add(1, Ordering::Relaxed);
                self.progress
                    .bytes
                    .fetch_add(landed.bytes, Ordering::Relaxed);
                (self.control.on_progress)(self.progress);
                Ok(Left::Gone)
            }
            Err(e) if e.disposition() == Disposition::Reconnect => Err(Stop::from(e)),
            Err(e) => {
                self.file_error(
                    path,
                    format!(
                        "landed at {:?} but could not be removed remotely: {e}",
                        landed.path
                    ),
                );
                Ok(Left::Kept)
            }
        }
    }

    fn check_free_space(&self, need: u64) -> Result<(), Stop> {
        let min = self.config.transfer.min_free_bytes;
        let probe = &self.config.data_directory;
        match landing::free_bytes(probe) {
            Ok(free) if free < need.saturating_add(min) => Err(Stop::Fatal(format!(
                "not enough free disk space in {}: {} free, the next file needs {} and transfer.min_free_space keeps {} free; \
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

    /// A local write, fsync or rename failed: the disk is full or failing,
    /// and every further file would fail the same way.
    fn landing_stop(&self, path: &Path, e: LandingError) -> Stop {
        Stop::Fatal(format!("{}: {e}", escape(path.as_os_str())))
    }

    fn remote_file_error(&mut self, path: &Path, e: RemoteError) -> Result<Left, Stop> {
        match e.disposition() {
            Disposition::SkipFile => {
                self.file_error(path, format!("{e}; left on the coprocessor"));
                Ok(Left::Kept)
            }
            _ => Err(Stop::from(e)),
        }
    }
}

/// The only place that deletes a remote file. It takes a [`Landed`], which
/// only [`landing::Partial::commit`] makes, after the local copy was
/// verified against the remote size and fsynced together with its folder.
fn delete_remote(remote: &Remote, _proof: &Landed, path: &Path) -> Result<(), RemoteError> {
    remote.remove_file(path)
}

/// Printable form of a remote name: control characters and invalid UTF-8
/// escaped, so a hostile name cannot forge log lines.
pub fn escape(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes())
        .escape_debug()
        .to_string()
}

/// Enforces the intersection's deadline and cancellation on a thread of its
/// own: a blocked libssh2 call cannot look at a clock, but it returns at once
/// when its socket is shut down.
struct Watchdog {
    inner: Arc<WatchdogInner>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

struct WatchdogInner {
    deadline: Instant,
    fired: AtomicBool,
    cancel: Arc<AtomicBool>,
    sockets: Mutex<Vec<Interrupter>>,
}

impl WatchdogInner {
    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        if let Ok(sockets) = self.sockets.lock() {
            for s in sockets.iter() {
                s.interrupt();
            }
        }
    }
}

const WATCHDOG_TICK: Duration = Duration::from_millis(100);

impl Watchdog {
    fn start(deadline: Instant, cancel: Arc<AtomicBool>) -> Watchdog {
        let inner = Arc::new(WatchdogInner {
            deadline,
            fired: AtomicBool::new(false),
            cancel,
            sockets: Mutex::new(Vec::new()),
        });
        let (tx, rx) = mpsc::channel::<()>();
        let w = inner.clone();
        let thread = thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                loop {
                    if w.cancel.load(Ordering::SeqCst) || Instant::now() >= w.deadline {
                        w.fire();
                        return;
                    }
                    match rx.recv_timeout(WATCHDOG_TICK) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .ok();
        Watchdog {
            inner,
            stop: Some(tx),
            thread,
        }
    }

    /// Registers a new session's socket; interrupts it at once if the
    /// deadline already passed.
    fn watch(&self, socket: Interrupter) {
        if self.inner.fired.load(Ordering::SeqCst) {
            socket.interrupt();
        }
        if let Ok(mut s) = self.inner.sockets.lock() {
            s.push(socket);
        }
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.inner.deadline
    }

    /// Sleeps `d` unless cancelled or past the deadline first; false if woken early.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.inner.fired.load(Ordering::SeqCst) || self.inner.cancel.load(Ordering::SeqCst) {
                return false;
            }
            thread::sleep(WATCHDOG_TICK.min(until.saturating_duration_since(Instant::now())));
        }
        true
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
