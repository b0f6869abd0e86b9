//! Living under systemd: progress notifications, the single-instance lock,
//! and what SIGTERM/SIGINT do.
//!
//! Nothing here knows about transfers. The pass calls:
//!
//! * [`Notifier`]: `STATUS=` lines for `systemctl status`, and
//!   `EXTEND_TIMEOUT_USEC=` whenever it makes progress. The unit sets
//!   `TimeoutStartSec=` (the window a pass has without proving it is alive) and
//!   `NotifyAccess=main`; a pass that keeps moving bytes keeps pushing its
//!   deadline out, a pass that stalls is stopped by systemd once the window
//!   and the last extension have both run out (`sd_notify(3)`).
//! * [`lock_instance`]: a non-blocking `flock(2)` on `<state>/lock`, so a manual
//!   run during the timer's exits at once instead of racing it on the same
//!   remote files. The kernel drops the lock when the process dies, however it
//!   dies: no stale lock to clean up.
//! * [`install_signal_handlers`]: the first SIGTERM/SIGINT sets a flag the pass
//!   polls between files (finish or abandon the current file, start no new
//!   one, delete nothing unverified, write the summary, exit non-zero); the
//!   second runs an optional hard-stop action and exits with status 1 at once.
//!   Exiting there is safe for the data: partial downloads live in
//!   dot-prefixed temporary files that the next pass resumes, and a remote
//!   file is deleted only after its local copy is durable.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// sd-notify

/// Sends state to the service manager over `$NOTIFY_SOCKET`.
///
/// A no-op when the variable is unset (a run from a shell) or the socket
/// cannot be reached: notifications are a courtesy, never a reason to fail a
/// pass. Cheap to call often: one `send(2)` per call, and
/// [`Notifier::extend_timeout`] sends at most once per second. `Sync`, so one
/// `Notifier` can be shared by every worker through `&` or an `Arc`.
pub struct Notifier {
    socket: Option<UnixDatagram>,
    /// When the first `Notifier` method could run; extension times are
    /// milliseconds since then, so the rate limit is one atomic.
    epoch: Instant,
    /// Milliseconds after `epoch` of the last extension sent, plus one (0 = never).
    last_extend_ms: AtomicU64,
    /// Hash of the last `STATUS=` text sent, so repeating it costs no send.
    last_status: AtomicU64,
}

/// Minimum gap between two `EXTEND_TIMEOUT_USEC=` messages actually sent.
const EXTEND_EVERY: Duration = Duration::from_secs(1);

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
    /// socket). Unset, empty or unreachable: a silent no-op notifier.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            match connect_notify_socket(&path) {
                Ok(sock) => Some(sock),
                Err(err) => {
                    tracing::debug!(
                        notify_socket = %path,
                        "cannot reach the service manager's notify socket ({err}); \
                         progress will not show in systemctl status"
                    );
                    None
                }
            }
        });
        Notifier {
            socket,
            epoch: Instant::now(),
            last_extend_ms: AtomicU64::new(0),
            last_status: AtomicU64::new(0),
        }
    }

    /// A notifier that never sends anything.
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            epoch: Instant::now(),
            last_extend_ms: AtomicU64::new(0),
            last_status: AtomicU64::new(0),
        }
    }

    /// True when messages actually go to a service manager.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// `STATUS=<text>`: the line `systemctl status` shows under the unit.
    /// Newlines become spaces (a status is one line). The same text twice in
    /// a row is sent once, so calling this on every progress event is cheap.
    pub fn status(&self, text: &str) {
        if self.socket.is_none() {
            return;
        }
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish() | 1
        };
        if self.last_status.swap(hash, Ordering::Relaxed) == hash {
            return;
        }
        let one_line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={one_line}"));
    }

    /// `EXTEND_TIMEOUT_USEC=`: "I am alive, give me `by` more from now".
    ///
    /// Call it whenever the pass makes real progress (bytes landed, a file
    /// finished), never from a timer: a heartbeat would keep a stalled pass
    /// alive forever. systemd only acts on it once the unit's
    /// `TimeoutStartSec=` has passed; from then on the pass is stopped if no
    /// extension arrives within the last `by`. Sent at most once per second;
    /// calls in between are dropped, so the effective deadline can be up to
    /// one second earlier than `now + by`.
    pub fn extend_timeout(&self, by: Duration) {
        if self.socket.is_none() {
            return;
        }
        let now_ms = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_extend_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < EXTEND_EVERY.as_millis() as u64 {
            return;
        }
        // One winner per second among concurrent workers.
        if self
            .last_extend_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let usec = by.as_micros().min(u64::MAX as u128) as u64;
        self.send(&format!("EXTEND_TIMEOUT_USEC={usec}"));
    }

    /// `STOPPING=1`: tells systemd the pass is winding down after a signal.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        if let Some(sock) = &self.socket {
            // Best effort: a full or gone socket must not disturb the pass.
            let _ = sock.send(message.as_bytes());
        }
    }
}

fn connect_notify_socket(path: &str) -> io::Result<UnixDatagram> {
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else if path.starts_with('/') {
        SocketAddr::from_pathname(path)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract name",
        ));
    };
    let sock = UnixDatagram::unbound()?;
    sock.connect_addr(&addr)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

// ---------------------------------------------------------------------------
// Single-instance lock

/// The file under the state directory that [`lock_instance`] locks.
pub const LOCK_FILE_NAME: &str = "lock";

/// Proof that this process is the only pass running. The lock is released
/// when this value is dropped or the process ends, whichever comes first.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why [`lock_instance`] did not get the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock. Not worth a retry in this run.
    #[error(
        "another pass is running{}; this one exits without touching anything. \
         Wait for it to finish (systemctl status v2x-data-sftp-client.service) \
         or stop it (systemctl stop v2x-data-sftp-client.service)",
        match pid { Some(pid) => format!(" (pid {pid})"), None => String::new() }
    )]
    Busy { pid: Option<u32> },
    /// The state directory or the lock file cannot be created, opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Takes the single-instance lock: a non-blocking exclusive `flock(2)` on
/// `<state_directory>/lock`, creating the directory and the file if needed.
///
/// On success the file holds this process's pid, which a second run quotes in
/// its [`LockError::Busy`] message. When run as root and the file is new, it
/// is given the state directory's owner, so a manual root run never leaves a
/// lock file the service user cannot open.
pub fn lock_instance(state_directory: &Path) -> Result<InstanceLock, LockError> {
    let path = state_directory.join(LOCK_FILE_NAME);
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_directory).map_err(|source| LockError::Io {
        path: state_directory.to_path_buf(),
        source,
    })?;
    let existed = path.exists();
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(file) => file,
        // A lock file someone else created and we may not write: locking
        // needs only a readable descriptor; we just cannot record our pid.
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            File::open(&path).map_err(io_err)?
        }
        Err(err) => return Err(io_err(err)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::Busy {
                pid: read_pid(&mut file),
            });
        }
        Err(TryLockError::Error(err)) => return Err(io_err(err)),
    }
    if !existed {
        give_to_directory_owner(&file, state_directory);
    }
    // Record who holds it; failure to do so is harmless.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    Ok(InstanceLock { _file: file, path })
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|&pid| pid != 0)
}

fn give_to_directory_owner(file: &File, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    // Only root can chown; for anyone else this fails harmlessly.
    let _ = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()));
}

// ---------------------------------------------------------------------------
// Signals

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_instance(dir.path()).unwrap();
        let err = lock_instance(dir.path()).unwrap_err();
        match &err {
            LockError::Busy { pid } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "another pass is running (pid {})",
                std::process::id()
            )),
            "{message}"
        );
        drop(first);
        lock_instance(dir.path()).expect("lock is free again after drop");
    }

    #[test]
    fn lock_creates_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        let lock = lock_instance(&state).unwrap();
        assert_eq!(lock.path(), state.join("lock"));
    }

    #[test]
    fn lock_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "").unwrap();
        let err = lock_instance(&blocker).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[test]
    fn notifier_sends_status_and_rate_limits_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let sock = connect_notify_socket(path.to_str().unwrap()).unwrap();
        let notifier = Notifier {
            socket: Some(sock),
            epoch: Instant::now(),
            last_extend_ms: AtomicU64::new(0),
            last_status: AtomicU64::new(0),
        };
        notifier.status("intersection 1 of 2\nsecond line");
        notifier.status("intersection 1 of 2\nsecond line");
        for _ in 0..100 {
            notifier.extend_timeout(Duration::from_secs(90));
        }
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while let Ok(n) = server.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            got,
            [
                "STATUS=intersection 1 of 2 second line",
                "EXTEND_TIMEOUT_USEC=90000000"
            ]
        );
    }

    #[test]
    fn notifier_without_socket_is_a_no_op() {
        let n = Notifier::disabled();
        assert!(!n.is_active());
        n.status("x");
        n.extend_timeout(Duration::from_secs(1));
    }

    #[test]
    fn abstract_notify_socket_is_supported() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("v2x-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let sock = connect_notify_socket(&format!("@{name}")).unwrap();
        sock.send(b"STATUS=x").unwrap();
        let mut buf = [0u8; 16];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=x");
    }
}
