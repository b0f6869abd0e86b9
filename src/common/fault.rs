//! Crash points for the test suite's fault campaign.
//!
//! The moments where a crash could lose or duplicate data (a file landed but
//! not yet removed remotely, a folder emptied but not yet removed) are too
//! short to hit by timing a `kill -9` from outside. With the
//! `fault-injection` cargo feature, `V2X_FAULT_KILL_AT=<point>[:<n>]` makes
//! the process SIGKILL itself the n-th time (default the first) it reaches
//! that point, and `V2X_FAULT_PANIC_AT=<point>[:<n>]` makes the thread that
//! reaches it panic instead (a bug, as far as the rest of the program can
//! tell). `V2X_FAULT_INTERSECTION=<name>` restricts both to the threads
//! working for that intersection, so one intersection of a pass can be hit
//! while the others run on: `pass` tags its worker with a [`Tag`] for each
//! intersection, and the commit threads it starts inherit that tag. The
//! n-th hit is counted over those threads only.
//!
//! Without the feature, [`point`] and [`Tag`] compile to nothing, so a
//! shipped binary has no such switch.

/// Marks a crash point; see the module docs.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    static KILLS: AtomicUsize = AtomicUsize::new(0);
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static LOCK: Mutex<()> = Mutex::new(());

    if let Ok(only) = std::env::var("V2X_FAULT_INTERSECTION")
        && TAG.with_borrow(|t| t.as_deref() != Some(only.as_str()))
    {
        return;
    }
    {
        // Held while raising: no other thread gets past a later hit first.
        let _guard = LOCK.lock();
        if armed("V2X_FAULT_KILL_AT", name, &KILLS) {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
    if armed("V2X_FAULT_PANIC_AT", name, &PANICS) {
        panic!("fault injection: panic at crash point {name:?}");
    }
}

/// Whether `var` names point `name` and this is its n-th hit (counted in
/// `hits`).
#[cfg(feature = "fault-injection")]
fn armed(var: &str, name: &str, hits: &std::sync::atomic::AtomicUsize) -> bool {
    let Ok(spec) = std::env::var(var) else {
        return false;
    };
    let (want, nth) = match spec.split_once(':') {
        Some((w, n)) => (w, n.parse::<usize>().unwrap_or(1)),
        None => (spec.as_str(), 1),
    };
    want == name && hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == nth
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

#[cfg(feature = "fault-injection")]
thread_local! {
    static TAG: std::cell::RefCell<Option<std::sync::Arc<str>>> =
        const { std::cell::RefCell::new(None) };
}

/// The intersection a thread works for, as `V2X_FAULT_INTERSECTION` sees
/// it; see the module docs.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Default)]
pub struct Tag(Option<std::sync::Arc<str>>);

#[cfg(feature = "fault-injection")]
impl Tag {
    /// Marks the calling thread as working for `intersection`.
    pub fn set(intersection: &str) {
        Tag(Some(intersection.into())).adopt();
    }

    /// The calling thread's tag, for the threads it starts.
    pub fn current() -> Tag {
        Tag(TAG.with_borrow(Clone::clone))
    }

    /// Makes this the calling thread's tag.
    pub fn adopt(self) {
        TAG.set(self.0);
    }
}

#[cfg(not(feature = "fault-injection"))]
#[derive(Debug, Clone, Default)]
pub struct Tag;

#[cfg(not(feature = "fault-injection"))]
impl Tag {
    #[inline(always)]
    pub fn set(_intersection: &str) {}

    #[inline(always)]
    pub fn current() -> Tag {
        Tag
    }

    #[inline(always)]
    pub fn adopt(self) {}
}
