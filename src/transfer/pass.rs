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
use crate::transfer::stop::{Cause, Stop};

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
    let shared = Shared {
        ledger: &ledger,
        pass: &pass,
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
        IntersectionReport {
            name: ix.name.clone(),
            host: ix.host.clone(),
            outcome: Outcome::Ok,
            started: unix_now(),
            seconds: 0.0,
            files: 0,
            bytes: 0,
            already_present: 0,
            resumed_bytes: 0,
            skipped: Vec::new(),
            errors: Vec::new(),
            last_success: None,
            rtt_ms: None,
            stopped_by: None,
            recorded: 0,
            verification: None,
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
            watchdog: Watchdog::start(
                Instant::now() + config.transfer.intersection_deadline,
                control.cancel.clone(),
            ),
            clock: Instant::now(),
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
                        if result.as_ref().is_err_and(Stop::reconnects) {
                            remote.abandon();
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
        if let Err(stop) = outcome {
            self.report.stopped_by = Some(stop.cause.kind().to_string());
            if stop.is_cancelled() {
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

    /// A signal or the deadline, if either has come.
    fn interrupted(&self) -> Option<Stop> {
        if self.control.cancel.load(Ordering::SeqCst) {
            return Some(Stop::cancelled());
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
