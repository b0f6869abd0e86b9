//! Crash points for the test suite's fault campaign.
//!
//! The moments where a crash could lose or duplicate data (a file landed but
//! not yet removed remotely, a folder emptied but not yet removed) are too
//! short to hit by timing a `kill -9` from outside. With the
//! `fault-injection` cargo feature, `V2X_FAULT_KILL_AT=<point>[:<n>]` makes
//! the process SIGKILL itself the n-th time (default the first) it reaches
//! that point. Without the feature, [`point`] compiles to nothing, so a
//! shipped binary has no such switch.

/// Marks a crash point; see the module docs.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static HITS: AtomicUsize = AtomicUsize::new(0);
    static LOCK: Mutex<()> = Mutex::new(());

    let Ok(spec) = std::env::var("V2X_FAULT_KILL_AT") else {
        return;
    };
    let (want, nth) = match spec.split_once(':') {
        Some((w, n)) => (w.to_string(), n.parse::<usize>().unwrap_or(1)),
        None => (spec.clone(), 1),
    };
    if want != name {
        return;
    }
    let _guard = LOCK.lock();
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
