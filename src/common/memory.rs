//! How much memory the process keeps: glibc's malloc gives every thread
//! that finds the heap busy an arena of its own, up to eight per core, and
//! keeps what each arena freed for its next use. A pass runs a worker, a
//! watchdog and a commit thread per intersection at once (64 of each at
//! the most), so the arenas, not the data in flight, made most of the peak:
//! W5 (1,000 intersections, 64 at a time, two cores) peaked at 57-65 MiB
//! with glibc's default and at 45 MiB with two arenas, at the same speed
//! (`docs/performance.md`).

/// Arenas the process may use.
const ARENAS: libc::c_int = 2;

/// Caps glibc's malloc arenas for this process, unless the operator chose
/// a number with `MALLOC_ARENA_MAX`. Called first thing in `main`, before
/// any thread starts; does nothing with another C library.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets a malloc tunable; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}
