//! One transfer pass: a bounded pool of workers, one intersection each.
//!
//! Per intersection: connect (retrying connection failures with backoff,
//! resuming what an earlier attempt left), then hand the session to
//! [`crate::pipeline`], which lists `archive/` and takes every entry oldest
//! first, landing each file before it deletes it remotely.
//!
//! Three bounds keep one coprocessor from holding up the night: the
//! connect timeout, the per-call I/O timeout, and the intersection's
//! deadline, enforced by a [`Watchdog`] that shuts the socket down, because
//! a peer that trickles a byte per timeout defeats per-call timeouts. The
//! same watchdog turns a cancellation (SIGTERM) into an immediate stop: the
//! current download stays as a partial file and resumes next pass.
//!
//! A panic (a bug) in one intersection's work is caught around that
//! intersection ([`run_guarded`]): it ends `failed` with an "internal
//! error" and its remote data kept, while the others finish, so the pass
//! still writes its state file and metrics and exits 1. The default panic
//! hook has printed the message to stderr (the journal) by then; it is
//! ours, never a secret (see [`crate::error`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::config::{Config, Intersection};
use crate::error::{Disposition, panic_message};
use crate::fault;
use crate::known_hosts::KnownHosts;
use crate::landing::{self, Lander};
use crate::pipeline::{Ctx, Engine, Stop};
use crate::remote::{self, Interrupter, Remote};
use crate::report::{IntersectionReport, Outcome, RunReport};

/// Running totals for progress reports (systemd STATUS, a terminal).
#[derive(Debug, Default)]
pub struct Progress {
    pub intersections_total: usize,
    pub intersections_done: AtomicUsize,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    /// Sizes of the listed files old enough to be taken (for "remaining" on
    /// a terminal's progress bar; a reconnect lists and adds again).
    pub listed_bytes: AtomicU64,
    /// Bytes read from the coprocessors so far, as they arrive.
    pub transferred_bytes: AtomicU64,
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
    tracing::debug!(
        patches = crate::sftp::linked_libssh2_patches(),
        "linked libssh2"
    );
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
                    let report = run_guarded(config, known, ix, control, &progress);
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
    pub fn new(ix: &Intersection) -> IntersectionReport {
        IntersectionReport {
            name: ix.name.clone(),
            host: ix.host.clone(),
            outcome: Outcome::Ok,
            started: crate::pipeline::unix_now(),
            seconds: 0.0,
            files: 0,
            bytes: 0,
            already_present: 0,
            resumed_bytes: 0,
            skipped: Vec::new(),
            errors: Vec::new(),
            last_success: None,
            rtt_ms: None,
        }
    }

    fn failed(ix: &Intersection, why: &str) -> IntersectionReport {
        let mut r = IntersectionReport::new(ix);
        r.outcome = Outcome::Failed;
        r.errors.push(why.to_string());
        r
    }
}

/// One intersection's run, a panic in it (a bug) caught: the intersection
/// fails with what its report held so far (files already landed and
/// removed stay counted) and the message, and the pass goes on. Nothing
/// more is deleted: the panic unwinds out of the pipeline before its next
/// remove request, and dropping the pipeline only finishes local commits.
fn run_guarded(
    config: &Config,
    known: &KnownHosts,
    ix: &Intersection,
    control: &Control,
    progress: &Progress,
) -> IntersectionReport {
    fault::Tag::set(&ix.name);
    let mut run = IntersectionRun::new(config, known, ix, control, progress);
    // Unwind safety: after a panic only the report is used, plain data
    // that is whole between any two statements.
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.run())) {
        let why = format!(
            "internal error (a bug, please report it): {}",
            panic_message(payload.as_ref())
        );
        error!(intersection = %ix.name, "{why}; its remote data is kept");
        run.report.outcome = Outcome::Failed;
        run.report.errors.push(why);
        run.finish();
    }
    run.report
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
    clock: Instant,
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
            clock: Instant::now(),
        }
    }

    /// Runs the intersection; the outcome is in `self.report`.
    fn run(&mut self) {
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
            let result =
                remote::connect_adaptive(self.ix, self.known, t, &|i| self.watchdog.watch(i))
                    .map_err(|e| match e.disposition() {
                        Disposition::Reconnect => Stop::Reconnect(e.to_string()),
                        _ => Stop::Fatal(e.to_string()),
                    })
                    .and_then(|(mut remote, rtt)| {
                        if let Some(rtt) = rtt {
                            self.report.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                        }
                        let result = self.transfer(&mut remote);
                        if matches!(result, Err(Stop::Reconnect(_))) {
                            remote.abandon();
                        }
                        result
                    });
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
            // Woken early by cancellation or the deadline: the loop top says which.
            self.watchdog.sleep(wait);
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
        self.finish();
    }

    /// Settles the report's outcome and duration, and logs the summary.
    fn finish(&mut self) {
        let name = &self.ix.name;
        if self.report.outcome == Outcome::Ok && !self.report.errors.is_empty() {
            self.report.outcome = Outcome::Failed;
        }
        self.report.seconds = self.clock.elapsed().as_secs_f64();
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
    }

    fn deadline_stop(&self) -> Stop {
        Stop::Fatal(format!(
            "intersection deadline of {} passed (transfer.intersection_deadline)",
            humantime::format_duration(self.config.transfer.intersection_deadline)
        ))
    }

    /// One connected attempt: everything in `archive/`.
    fn transfer(&mut self, remote: &mut Remote) -> Result<(), Stop> {
        // Created here, not by the package alone: a data_directory moved in
        // the config starts empty, and min_free_space guards the disk it is on.
        landing::create_dir_durably(&self.data_root).map_err(|e| Stop::Fatal(e.to_string()))?;
        // The element folders first: a remote file named like one (`spat`)
        // then lands beside it as `spat.conflict-1` instead of taking the
        // name and blocking that element for good.
        for element in &self.config.elements {
            landing::create_dir_durably(&self.data_root.join(element))
                .map_err(|e| Stop::Fatal(e.to_string()))?;
        }
        let ctx = Ctx {
            ix: self.ix,
            config: self.config,
            control: self.control,
            progress: self.progress,
            data_root: &self.data_root,
        };
        // Skipped entries are listed again on a reconnect; report them once.
        let skipped_before = self.report.skipped.len();
        let result = Engine::new(&ctx, remote.channel(), &mut self.lander, &mut self.report).run();
        if matches!(result, Err(Stop::Reconnect(_))) {
            self.report.skipped.truncate(skipped_before);
        }
        result
    }
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
