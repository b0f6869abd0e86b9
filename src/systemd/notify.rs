//! `sd_notify(3)`: `STATUS=` lines for `systemctl status`, and
//! `EXTEND_TIMEOUT_USEC=` whenever the pass makes progress. The unit sets
//! `TimeoutStartSec=` (the window a pass has without proving it is alive) and
//! `NotifyAccess=main`; a pass that keeps moving bytes keeps pushing its
//! deadline out, a pass that stalls is stopped by systemd once the window
//! and the last extension have both run out.
//!
//! Spoken here rather than through the `sd-notify` crate (0.5), whose
//! `notify()` opens a new blocking socket for every message: a notify socket
//! that fills up while PID 1 is busy would then stall a worker mid-transfer,
//! and an abstract `@name` socket cannot be reached at all. This keeps one
//! non-blocking socket, so a message that cannot go is dropped, never waited
//! on.

use std::io::{self};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
    use super::*;

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
