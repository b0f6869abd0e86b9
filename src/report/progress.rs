//! The progress bar of `run` on a terminal: bytes pulled, rate, and what is
//! left of what has been listed so far.
//!
//! Only when stderr is a terminal that is not the journal (and `TERM` is not
//! `dumb`): under systemd, in a pipe or in a file there is no bar, no
//! spinner and no escape sequence, only the log records. Each intersection
//! adds to the total once it has listed its `archive/`, so the total can grow
//! during a pass; "to go" is what has been listed and not yet pulled.
//!
//! Log records on a terminal go through [`crate::logging`], which hides the bar
//! while a record is printed, so records and bar never share a line.

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Whether a bar may be drawn: stderr is a terminal, not the journal, and
/// the terminal can move its cursor.
pub fn wanted() -> bool {
    io::stderr().is_terminal()
        && !crate::logging::stderr_is_journal()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// A progress bar on stderr; hidden again when dropped.
pub struct Bar {
    bar: ProgressBar,
    /// Files and intersections done when the message was last set: the
    /// callback runs for every read, the message changes once per file.
    shown: Arc<AtomicU64>,
}

impl Bar {
    /// Shows a bar when [`wanted`], else `None`.
    pub fn start() -> Option<Bar> {
        if !wanted() {
            return None;
        }
        let style = ProgressStyle::with_template(
            "{spinner} {elapsed:>4} [{wide_bar}] {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec}, {to_go} to go, {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("to_go", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let left = s.len().unwrap_or(0).saturating_sub(s.pos());
            let _ = write!(w, "{}", HumanBytes(left));
        })
        .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(4))
            .with_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        if let Ok(mut active) = crate::logging::ACTIVE_BAR.lock() {
            *active = Some(bar.clone());
        }
        Some(Bar {
            bar,
            shown: Arc::new(AtomicU64::new(u64::MAX)),
        })
    }

    /// Updates the bar from the pass's running totals; for
    /// [`crate::transfer::Control::on_progress`].
    pub fn update(&self, p: &Progress) {
        let listed = p.listed_bytes.load(Ordering::Relaxed);
        let pulled = p.transferred_bytes.load(Ordering::Relaxed);
        self.bar.set_length(listed.max(pulled));
        self.bar.set_position(pulled);
        let files = p.files.load(Ordering::Relaxed);
        let done = p.intersections_done.load(Ordering::Relaxed) as u64;
        let key = (files << 20) | (done & 0xF_FFFF);
        if self.shown.swap(key, Ordering::Relaxed) != key {
            self.bar.set_message(format!(
                "{files} file(s), {done}/{} intersection(s) done",
                p.intersections_total
            ));
        }
    }

    /// A handle for the progress callback (which must be `'static`).
    pub fn handle(&self) -> Bar {
        Bar {
            bar: self.bar.clone(),
            shown: self.shown.clone(),
        }
    }

    /// Leaves the final state on the screen.
    pub fn finish(self) {
        if let Ok(mut active) = crate::logging::ACTIVE_BAR.lock() {
            *active = None;
        }
        self.bar.finish();
        // The final frame stays on its line; what follows starts below it.
        let _ = writeln!(io::stderr());
    }
}

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
