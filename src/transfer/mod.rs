//! One pass, from a listing to a delete.
//!
//! | module | owns |
//! | --- | --- |
//! | [`classify`] | file name → element folder |
//! | [`rules`] | what a listing may give us, and what waits for a later pass |
//! | [`engine`] | one connected intersection: listing, pipelined reads, landing, the one remote delete |
//! | [`pass`] | workers, one intersection each: connect, retries with backoff, the deadline, panics caught |
//! | [`plan`] | `run --dry-run`: the same rules over a listing, nothing changed |

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::report::progress::Progress;

pub mod classify;
pub mod engine;
#[cfg(any(test, feature = "fault-injection"))]
pub mod harness;
pub mod pass;
pub mod plan;
pub mod rules;
pub mod stop;

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
