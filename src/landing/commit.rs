//! The commit pool: fsyncs and renames on worker threads, beside the
//! transfer of the next files. What comes back is the same
//! [`Landed`] proof a delete needs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use super::{Landed, LandingError, Partial};

/// Commits ([`Partial::commit`]) on worker threads, so the fsyncs of one
/// file overlap the network transfer of the next ones. What a worker returns
/// is the same [`Landed`] proof; the caller still deletes nothing before it
/// has one. Dropping the pool waits for commits under way.
///
/// A commit that panics (a bug) comes back as [`LandingError::Internal`]
/// for its file, which stops the intersection with the remote copy kept. A
/// worker that dies all the same (a panic outside the catch, say in
/// dropping the panic's payload) sends nothing, so [`CommitPool::wait_done`]
/// does not wait on the channel alone: see there.
pub struct CommitPool {
    jobs: Option<mpsc::Sender<(usize, Partial)>>,
    done: mpsc::Receiver<(usize, Result<Landed, LandingError>)>,
    workers: Vec<Worker>,
    /// Results of commits done on the caller's thread (no worker available).
    inline: Vec<(usize, Result<Landed, LandingError>)>,
    /// Submitted and not yet collected, with each file's landing path (to
    /// name it should its worker die).
    pending: HashMap<usize, PathBuf>,
    /// How often `wait_done` looks for dead workers; see there.
    check_every: Duration,
    /// The commit itself: [`Partial::commit`] but in tests.
    commit: fn(Partial) -> Result<Landed, LandingError>,
}

struct Worker {
    thread: thread::JoinHandle<()>,
    /// The key of the commit it works on, [`IDLE`] between two.
    busy: Arc<AtomicUsize>,
}

/// No key: keys are job numbers, far below.
const IDLE: usize = usize::MAX;
/// The longest `wait_done` waits before looking at the workers again.
const DEATH_CHECK: Duration = Duration::from_millis(100);

impl CommitPool {
    /// `threads` workers (at least one). A worker that dies with a commit
    /// pending is noticed by [`CommitPool::wait_done`] within `death_bound`
    /// (and within 100 ms at most).
    pub fn new(threads: usize, death_bound: Duration) -> CommitPool {
        CommitPool::with_commit(threads, death_bound, Partial::commit)
    }

    pub(super) fn with_commit(
        threads: usize,
        death_bound: Duration,
        commit: fn(Partial) -> Result<Landed, LandingError>,
    ) -> CommitPool {
        let (jobs_tx, jobs_rx) = mpsc::channel::<(usize, Partial)>();
        let (done_tx, done) = mpsc::channel();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let tag = crate::common::fault::Tag::current();
        // The caller's span (the intersection's): what a commit thread logs
        // carries the same INTERSECTION= as the rest of its records.
        let span = tracing::Span::current();
        let mut workers = Vec::new();
        for _ in 0..threads.max(1) {
            let (rx, tx, tag, span) = (jobs_rx.clone(), done_tx.clone(), tag.clone(), span.clone());
            let busy = Arc::new(AtomicUsize::new(IDLE));
            let mark = busy.clone();
            let spawned = thread::Builder::new().name("commit".into()).spawn(move || {
                tag.adopt();
                let _entered = span.enter();
                loop {
                    // Marked busy before the queue is unlocked: from then on
                    // the job is this worker's, and so is its death.
                    let next = match rx.lock() {
                        Ok(guard) => guard
                            .recv()
                            .inspect(|(key, _)| mark.store(*key, Ordering::SeqCst)),
                        Err(_) => return,
                    };
                    let Ok((key, partial)) = next else { return };
                    let path = partial.dir.join(&partial.name);
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        crate::common::fault::point("commit");
                        commit(partial)
                    }))
                    .unwrap_or_else(|payload| {
                        Err(LandingError::Internal {
                            path,
                            message: crate::error::panic_message(payload.as_ref()).to_string(),
                        })
                    });
                    let sent = tx.send((key, result));
                    mark.store(IDLE, Ordering::SeqCst);
                    if sent.is_err() {
                        return;
                    }
                }
            });
            if let Ok(thread) = spawned {
                workers.push(Worker { thread, busy });
            }
        }
        CommitPool {
            jobs: Some(jobs_tx),
            done,
            workers,
            inline: Vec::new(),
            pending: HashMap::new(),
            check_every: death_bound.clamp(Duration::from_millis(1), DEATH_CHECK),
            commit,
        }
    }

    /// Queues `partial` for commit; its result comes back with `key`.
    pub fn submit(&mut self, key: usize, partial: Partial) {
        self.pending.insert(key, partial.dir.join(&partial.name));
        let Some(jobs) = self.jobs.as_ref().filter(|_| !self.workers.is_empty()) else {
            // No worker could be started: commit here and now.
            self.inline.push((key, (self.commit)(partial)));
            return;
        };
        if let Err(mpsc::SendError((key, partial))) = jobs.send((key, partial)) {
            self.inline.push((key, (self.commit)(partial)));
        }
    }

    /// Commits submitted and not yet collected.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A finished commit, if there is one.
    pub fn try_done(&mut self) -> Option<(usize, Result<Landed, LandingError>)> {
        loop {
            let r = match self.inline.pop() {
                Some(r) => r,
                None => self.done.try_recv().ok()?,
            };
            if let Some(r) = self.collect(r) {
                return Some(r);
            }
        }
    }

    /// Waits for the next finished commit; `None` when none is pending.
    ///
    /// Not bounded by a timeout: a healthy commit of a big file to a slow
    /// disk (the fsync of a GiB) may take longer than any `io_timeout`, and
    /// failing it would stop a healthy intersection. What cannot finish is
    /// a commit whose worker is dead, so that is what ends the wait: every
    /// `check_every` (the death bound given to [`CommitPool::new`], at most
    /// 100 ms) the workers are looked at, and a dead one that held a commit,
    /// or all of them dead with commits still queued, turns into an
    /// [`LandingError::Internal`] for that file. A commit that finishes
    /// after all is then ignored (the intersection has stopped by then).
    pub fn wait_done(&mut self) -> Option<(usize, Result<Landed, LandingError>)> {
        loop {
            if self.pending.is_empty() {
                return None;
            }
            if let Some(r) = self.try_done() {
                return Some(r);
            }
            let all_gone = match self.done.recv_timeout(self.check_every) {
                Ok(r) => match self.collect(r) {
                    Some(r) => return Some(r),
                    None => continue,
                },
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                // No sender left: nothing will ever arrive.
                Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            if let Some(key) = self.lost(all_gone) {
                // What a worker sent just before it died comes first.
                if let Some(r) = self.try_done() {
                    return Some(r);
                }
                let path = self.pending.get(&key).cloned().unwrap_or_default();
                let err = LandingError::Internal {
                    path,
                    message: "its commit thread ended without a result".into(),
                };
                return self.collect((key, Err(err)));
            }
        }
    }

    /// A pending commit that no worker will finish, if there is one.
    fn lost(&self, all_gone: bool) -> Option<usize> {
        let dead = || self.workers.iter().filter(|w| w.thread.is_finished());
        if let Some(key) = dead()
            .map(|w| w.busy.load(Ordering::SeqCst))
            .find(|k| self.pending.contains_key(k))
        {
            return Some(key);
        }
        let all_dead = all_gone || dead().count() == self.workers.len();
        if all_dead {
            // Queued behind them: nobody is left to take them.
            return self.pending.keys().min().copied();
        }
        None
    }

    /// Takes a result off the pending list; `None` for one already given
    /// up on in [`CommitPool::wait_done`].
    fn collect(
        &mut self,
        (key, result): (usize, Result<Landed, LandingError>),
    ) -> Option<(usize, Result<Landed, LandingError>)> {
        self.pending.remove(&key).map(|_| (key, result))
    }
}

impl Drop for CommitPool {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.thread.join();
        }
    }
}
