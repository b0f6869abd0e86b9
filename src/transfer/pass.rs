//! One transfer pass: a bounded pool of workers, one intersection each.
//!
//! Per intersection: connect (retrying connection failures with backoff,
//! resuming what an earlier attempt left), then hand the session to
//! [`crate::transfer::engine`], which lists `archive/` and takes every entry oldest
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

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{error, info, info_span, warn};

use crate::common::clock::unix_now;
use crate::common::fault;
use crate::config::{Config, Intersection};
use crate::error::panic_message;
use crate::landing::{self, Lander};
use crate::ledger::Ledger;
use crate::report::progress::Progress;
use crate::report::{IntersectionReport, Outcome, RunReport};
use crate::ssh::known_hosts::KnownHosts;
use crate::ssh::session::{self, Interrupter, Remote};
use crate::transfer::Control;
use crate::transfer::engine::{Ctx, Engine};
use crate::transfer::pace::{Bucket, Pacer};
use crate::transfer::stop::{Cause, Stop};
use crate::transfer::window::Window;

/// Runs one pass over `intersections` and returns its report.
pub fn run(
    config: &Config,
    known: &KnownHosts,
    intersections: &[Intersection],
    control: &Control,
) -> RunReport {
    let started = unix_now();
    let clock = Instant::now();
    tracing::debug!(
        patches = crate::ssh::sftp::linked_libssh2_patches(),
        "linked libssh2"
    );
    let pass = pass_id(started);
    // No ledger, no deletes: every intersection fails with its data kept.
    let ledger = match Ledger::open(&config.state_directory) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            return RunReport {
                pass,
                ledger: Vec::new(),
                started,
                seconds: clock.elapsed().as_secs_f64(),
                config: config.source.clone(),
                intersections: intersections
                    .iter()
                    .map(|ix| {
                        let mut r = IntersectionReport::failed(ix, &e.to_string());
                        r.stopped_by = Some("ledger".into());
                        r
                    })
                    .collect(),
            };
        }
    };
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
    // One bucket for the whole pass (transfer.max_rate_total), shared by
    // every intersection's pacer; one window, computed once.
    let total = config
        .transfer
        .max_rate_total
        .map(|r| Arc::new(Bucket::new(r)));
    let window = Window::starting_now(config.transfer.end_time);
    if let Some(w) = &window {
        info!(
            end = %crate::common::clock::utc(u64::try_from(w.end_unix).unwrap_or(0)),
            "transfer window: no file is started after transfer.end_time (UTC shown)"
        );
    }
    let shared = Shared {
        ledger: &ledger,
        pass: &pass,
        total: total.as_ref(),
        window,
    };
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(ix) = intersections.get(i) else {
                        break;
                    };
                    let report = run_guarded(config, known, ix, control, &progress, &shared);
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
        ledger: ledger.files_written(),
        pass,
        started,
        seconds: clock.elapsed().as_secs_f64(),
        config: config.source.clone(),
        intersections,
    }
}

/// What every intersection of one pass shares.
#[derive(Clone, Copy)]
struct Shared<'a> {
    ledger: &'a Ledger,
    pass: &'a str,
    /// The `transfer.max_rate_total` bucket.
    total: Option<&'a Arc<Bucket>>,
    window: Option<Window>,
}

/// A pass's id: its start in UTC and the process id, unique since passes
/// never overlap (the single-instance lock) and readable in a ledger line.
pub fn pass_id(started: u64) -> String {
    let t = crate::common::clock::utc(started);
    format!(
        "{}T{}Z-{}",
        &t[..10],
        t[11..].replace(':', ""),
        std::process::id()
    )
}

impl IntersectionReport {
    pub fn new(ix: &Intersection) -> IntersectionReport {
        IntersectionReport::starting(&ix.name, &ix.host, unix_now())
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
/// more is deleted: the panic unwinds out of the engine before its next
/// remove request, and dropping the engine only finishes local commits.
fn run_guarded(
    config: &Config,
    known: &KnownHosts,
    ix: &Intersection,
    control: &Control,
    progress: &Progress,
    shared: &Shared<'_>,
) -> IntersectionReport {
    fault::Tag::set(&ix.name);
    // Every record of this intersection, from this thread, its commit
    // threads and its watchdog, carries INTERSECTION= in the journal.
    let span = info_span!("intersection", intersection = %ix.name);
    let _entered = span.enter();
    let mut run = IntersectionRun::new(config, known, ix, control, progress, *shared);
    // Unwind safety: after a panic only the report is used, plain data
    // that is whole between any two statements.
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.run())) {
        let cause = Cause::Panic(panic_message(payload.as_ref()).to_string());
        error!("{cause}; its remote data is kept");
        run.report.outcome = Outcome::Failed;
        run.report.stopped_by = Some(cause.kind().to_string());
        run.report.errors.push(cause.to_string());
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
    shared: Shared<'a>,
    report: IntersectionReport,
    lander: Lander,
    data_root: PathBuf,
    watchdog: Watchdog,
    clock: Instant,
    pacer: Pacer,
    window: Option<Window>,
}

impl<'a> IntersectionRun<'a> {
    fn new(
        config: &'a Config,
        known: &'a KnownHosts,
        ix: &'a Intersection,
        control: &'a Control,
        progress: &'a Progress,
        shared: Shared<'a>,
    ) -> Self {
        let deadline = Instant::now() + config.transfer.intersection_deadline;
        // The watchdog shuts the session at the window's hard end too: a
        // READ blocked on a slow link must not move bytes past it.
        let cut = shared.window.map_or(deadline, |w| w.hard_end.min(deadline));
        IntersectionRun {
            config,
            known,
            ix,
            control,
            progress,
            shared,
            report: IntersectionReport::new(ix),
            lander: Lander::new(),
            data_root: config.data_directory.join(&ix.name),
            watchdog: Watchdog::start(cut, control.cancel.clone()),
            clock: Instant::now(),
            pacer: Pacer::new(ix.max_rate, shared.total.cloned()),
            window: shared.window,
        }
    }

    /// Runs the intersection; the outcome is in `self.report`.
    fn run(&mut self) {
        info!(host = %self.ix.host, "starting");
        let t = &self.config.transfer;
        let mut attempt: u32 = 0;
        let outcome = loop {
            if let Some(stop) = self.interrupted() {
                break Err(stop);
            }
            let result =
                session::connect_adaptive(self.ix, self.known, t, &|i| self.watchdog.watch(i))
                    .map_err(|e| Stop::from(Cause::Session(e)))
                    .and_then(|(mut remote, rtt)| {
                        if let Some(rtt) = rtt {
                            self.report.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                        }
                        let result = self.transfer(&mut remote);
                        match &result {
                            Ok(()) => remote.close(),
                            Err(stop) if stop.reconnects() => remote.abandon(),
                            Err(_) => {}
                        }
                        result
                    });
            // The watchdog shut the socket down (deadline or signal): what
            // failed then (a read, even an authentication) failed because of
            // it, and the report names the cause, not the symptom.
            if result.is_err()
                && self.watchdog.fired()
                && let Some(stop) = self.interrupted()
            {
                break Err(stop);
            }
            let broken = match result {
                Err(stop) if stop.reconnects() => stop,
                other => break other,
            };
            if let Some(stop) = self.interrupted() {
                break Err(stop);
            }
            attempt += 1;
            if attempt > t.retries {
                break Err(Cause::GaveUp {
                    last: Box::new(broken.cause),
                    attempts: attempt,
                    retries: t.retries,
                }
                .into());
            }
            let wait = t.retry_backoff.saturating_mul(1 << (attempt - 1).min(10));
            warn!(attempt, retry_in = ?wait, "{broken}; retrying");
            // Woken early by cancellation or the deadline: the loop top says which.
            self.watchdog.sleep(wait);
        };
        // Past the window's hard end, whatever broke the session (the
        // watchdog shut it) is the window closing.
        let outcome = match (outcome, self.window) {
            (Err(stop), Some(w)) if !stop.is_cancelled() && Instant::now() >= w.hard_end => {
                Err(Stop::from(Cause::WindowClosed { end: w.end_unix }))
            }
            (other, _) => other,
        };
        if let Err(stop) = outcome {
            self.report.stopped_by = Some(stop.cause.kind().to_string());
            if stop.is_window() {
                info!("{stop}");
            } else if stop.is_cancelled() {
                self.report.outcome = Outcome::Cancelled;
                warn!("stopped by a signal; what was not landed stays on the coprocessor");
            } else {
                error!("{stop}; its remote data is kept");
                self.report.errors.push(stop.to_string());
            }
        }
        self.finish();
    }

    /// Settles the report's outcome and duration, and logs the summary.
    fn finish(&mut self) {
        if self.report.outcome == Outcome::Ok && !self.report.errors.is_empty() {
            self.report.outcome = Outcome::Failed;
        }
        self.report.seconds = self.clock.elapsed().as_secs_f64();
        if self.report.outcome == Outcome::Ok {
            self.report.last_success = Some(self.report.started);
        }
        if self.report.files > 0 {
            self.report.last_data = Some(self.report.started);
        }
        self.report.first_pass = Some(self.report.started);
        self.judge_remote_space();
        if let Some(d) = &self.report.deferred
            && d.files > 0
        {
            info!(
                deferred_files = d.files,
                deferred_bytes = d.bytes,
                "the transfer window closed: {} file(s), {} left for the next pass",
                d.files,
                crate::common::text::human_bytes(d.bytes)
            );
        }
        let r = &self.report;
        info!(
            result = r.outcome.as_str(),
            files = r.files,
            bytes = r.bytes,
            seconds = format!("{:.1}", r.seconds),
            skipped = r.skipped.len(),
            errors = r.errors.len(),
            "summary"
        );
    }

    /// Records `status.remote_min_free` for the coprocessor's filesystem
    /// and warns when its free space is below it: a full disk stops the
    /// collector recording.
    fn judge_remote_space(&mut self) {
        let Some(space) = self.report.remote_space.as_mut() else {
            return;
        };
        let Some(size) = space.size_bytes else {
            if let Some(why) = &space.unknown {
                warn!("free space on the coprocessor unknown: {why}");
            }
            return;
        };
        let min = self.config.remote_min_free.threshold(size);
        space.min_free_bytes = Some(min);
        if let Some(free) = space.free_bytes
            && free < min
        {
            warn!(
                remote_free_bytes = free,
                "the coprocessor's disk is low: {} free of {} on the filesystem of {} \
                 (status.remote_min_free is {}); it stops recording when full: free space there",
                crate::common::text::human_bytes(free),
                crate::common::text::human_bytes(size),
                self.ix.v2x_data_location,
                self.config.remote_min_free
            );
        }
    }

    /// A signal, the deadline or the window's hard end, if one has come.
    fn interrupted(&self) -> Option<Stop> {
        if self.control.cancel.load(Ordering::SeqCst) {
            return Some(Stop::cancelled());
        }
        if let Some(w) = self.window
            && Instant::now() >= w.hard_end
        {
            return Some(Cause::WindowClosed { end: w.end_unix }.into());
        }
        self.watchdog
            .expired()
            .then(|| Cause::Deadline(self.config.transfer.intersection_deadline).into())
    }

    /// One connected attempt: everything in `archive/`.
    fn transfer(&mut self, remote: &mut Remote) -> Result<(), Stop> {
        // Created here, not by the package alone: a data_directory moved in
        // the config starts empty, and min_free_space guards the disk it is on.
        // The element folders first: a remote file named like one (`spat`)
        // then lands beside it under another name instead of taking the
        // name and blocking that element for good.
        let folders = std::iter::once(self.data_root.clone())
            .chain(self.config.elements.iter().map(|e| self.data_root.join(e)));
        for folder in folders {
            landing::create_dir_durably(&folder).map_err(Cause::DataDirectory)?;
        }
        let ctx = Ctx {
            ix: self.ix,
            config: self.config,
            control: self.control,
            progress: self.progress,
            data_root: &self.data_root,
            pacer: &self.pacer,
            window: self.window,
            ledger: self.shared.ledger,
            pass: self.shared.pass,
        };
        // Skipped entries are listed again on a reconnect; report them once.
        let skipped_before = self.report.skipped.len();
        let result = Engine::new(&ctx, remote.channel(), &mut self.lander, &mut self.report).run();
        if result.as_ref().is_err_and(Stop::reconnects) {
            self.report.skipped.truncate(skipped_before);
        }
        result
    }
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

    /// Whether the sockets were shut down (deadline or cancellation).
    fn fired(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
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
