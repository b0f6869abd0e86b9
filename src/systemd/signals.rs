//! What SIGTERM/SIGINT do: the first sets a flag the pass polls between
//! files (finish or abandon the current file, start no new one, delete
//! nothing unverified, write the summary, exit non-zero); the second runs an
//! optional hard-stop action and exits with status 1 at once. Exiting there
//! is safe for the data: partial downloads live in dot-prefixed temporary
//! files that the next pass resumes, and a remote file is deleted only after
//! its local copy is durable.

use std::io::{self};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What SIGTERM and SIGINT do to this process, once installed.
///
/// * First signal: [`Signals::cancel_flag`] becomes `true` and a WARN record
///   says so. The pass polls the flag between files and between chunks.
/// * Second signal: the action given to [`Signals::on_second`] runs (for
///   example writing an "interrupted" summary; keep it short), then the process
///   exits with status 1 right away, without unwinding the workers.
///
/// The handlers live on a small background thread for the rest of the process
/// (signal-hook's iterator), so they may log and take locks.
pub struct Signals {
    cancel: Arc<AtomicBool>,
    on_second: HardStop,
}

/// The action [`Signals::on_second`] registers, shared with the signal thread.
type HardStop = Arc<Mutex<Option<Box<dyn Fn() + Send + Sync>>>>;

/// Installs the SIGTERM/SIGINT handlers described on [`Signals`].
///
/// # Errors
/// The handlers cannot be registered (the self-pipe signal-hook needs
/// cannot be made) or the signal thread cannot be started.
pub fn install_signal_handlers() -> io::Result<Signals> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let cancel = Arc::new(AtomicBool::new(false));
    let on_second: HardStop = Arc::new(Mutex::new(None));
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let flag = Arc::clone(&cancel);
    let action = Arc::clone(&on_second);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                if !flag.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        signal = name,
                        "stopping: no new file is started, partial downloads are kept \
                         for the next pass to resume, nothing unverified is deleted; \
                         a second signal stops at once"
                    );
                    continue;
                }
                tracing::warn!(signal = name, "second signal: exiting now");
                if let Ok(guard) = action.lock()
                    && let Some(action) = guard.as_ref()
                {
                    action();
                }
                std::process::exit(1);
            }
        })?;
    Ok(Signals { cancel, on_second })
}

impl Signals {
    /// The flag set by the first SIGTERM/SIGINT. Clone it into every worker.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// True once a first signal has arrived.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Registers what the second signal runs just before `exit(1)`.
    /// A later call replaces an earlier one.
    pub fn on_second(&self, action: Box<dyn Fn() + Send + Sync>) {
        if let Ok(mut guard) = self.on_second.lock() {
            *guard = Some(action);
        }
    }
}
