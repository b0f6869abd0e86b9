//! One SSH/SFTP session to one coprocessor.
//!
//! The order of [`connect`] is the security argument: TCP with a connect
//! timeout, the SSH handshake restricted to the host-key types known_hosts
//! lists for this `host:port` (libssh2 would otherwise negotiate a type we
//! cannot check), the host key checked with OpenSSH's rules, and only then
//! authentication. No password or key signature ever reaches an unverified
//! host.
//!
//! Every blocking libssh2 call is bounded by `io_timeout`
//! (`Session::set_timeout`). A peer that trickles one byte per timeout
//! defeats that, so [`Remote::interrupter`] hands out a clone of the socket
//! that a watchdog can shut down at the intersection's deadline or on a hard
//! stop; every call then fails at once.
//!
//! Remote names are kept as raw bytes ([`Entry::name`]); whether a name is
//! safe to use is decided by the caller ([`crate::landing::is_plain_name`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ssh2::{HostKeyType, MethodType, Session};

use crate::common::credentials::CredentialError;
use crate::config::{Auth, Intersection, SecretSource, Transfer};
use crate::error::Disposition;
use crate::ssh::algorithms::{self, Negotiated};
use crate::ssh::known_hosts::{self, KnownHosts, Verdict};
use crate::ssh::sftp::{Attrs, Response, SftpChannel, SftpError, status};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot resolve host {host:?}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error(
        "cannot connect to {addr}: {source} (is the coprocessor up and reachable on this port?)"
    )]
    Connect { addr: String, source: io::Error },
    #[error("SSH handshake with {addr} failed: {source}{}", kex_hint(source))]
    Handshake { addr: String, source: ssh2::Error },
    #[error("{0}")]
    HostKey(String),
    #[error(
        "authentication as {user:?} on {addr} failed: {detail} (check the intersection's username and credentials)"
    )]
    Auth {
        user: String,
        addr: String,
        detail: String,
    },
    #[error("cannot read {path}: {source} (check its owner and mode)")]
    SecretFile { path: PathBuf, source: io::Error },
    /// A `*_credential` the unit does not hand to this process.
    #[error("{0}")]
    Credential(CredentialError),
    /// The server answered a request about `path` with an error status.
    #[error("SFTP {op} {path:?}: {detail}")]
    Refused {
        op: &'static str,
        path: PathBuf,
        code: Option<u32>,
        detail: String,
    },
    /// The SSH channel or connection broke.
    #[error("SFTP session: {0}")]
    Session(#[from] SftpError),
}

/// A failed key exchange is most often a server that shares no algorithm
/// with our offer (an old or hardened sshd).
fn kex_hint(e: &ssh2::Error) -> &'static str {
    if e.code() == ssh2::ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_KEX_FAILURE) {
        " (the server may share no algorithm with this client's offer: its sshd log names \
         what it wanted; transfer.ciphers, transfer.macs and transfer.kex_algorithms change \
         the offer)"
    } else {
        ""
    }
}

impl RemoteError {
    /// What this error means for the pass; see [`crate::error`].
    pub fn disposition(&self) -> Disposition {
        match self {
            RemoteError::Resolve { .. }
            | RemoteError::Connect { .. }
            | RemoteError::Handshake { .. }
            | RemoteError::Session(_) => Disposition::Reconnect,
            RemoteError::HostKey(_)
            | RemoteError::Auth { .. }
            | RemoteError::SecretFile { .. }
            | RemoteError::Credential(_) => Disposition::StopIntersection,
            // The server answered about this path: the session is fine, the file is not.
            RemoteError::Refused { .. } => Disposition::SkipFile,
        }
    }

    /// A short, stable name for reports and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RemoteError::Resolve { .. } | RemoteError::Connect { .. } => "unreachable",
            RemoteError::Handshake { .. } | RemoteError::Session(_) => "connection",
            RemoteError::HostKey(_) => "host-key",
            RemoteError::Auth { .. } => "authentication",
            RemoteError::SecretFile { .. } | RemoteError::Credential(_) => "credentials",
            RemoteError::Refused { .. } => "refused",
        }
    }
}

/// What a listing entry is. Only `File` and `Dir` are ever acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    /// From the file-type bits of an SFTP permissions field.
    pub fn of(perm: Option<u32>) -> Kind {
        match perm.map(|p| p & 0o170000) {
            Some(0o100000) => Kind::File,
            Some(0o040000) => Kind::Dir,
            Some(0o120000) => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// One entry of a remote folder, as the server's `lstat` describes it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Raw bytes of the name, unvalidated.
    pub name: OsString,
    pub kind: Kind,
    pub size: u64,
    /// Seconds since the epoch (SFTP v3 has whole seconds).
    pub mtime: u64,
}

impl Entry {
    fn from_attrs(name: OsString, stat: &Attrs) -> Entry {
        Entry {
            name,
            kind: Kind::of(stat.perm),
            size: stat.size.unwrap_or(0),
            mtime: u64::from(stat.mtime.unwrap_or(0)),
        }
    }
}

/// An authenticated SFTP session.
pub struct Remote {
    // Field order matters for drop: the SFTP channel closes before the session.
    sftp: SftpChannel,
    _session: Session,
    socket: TcpStream,
    negotiated: Negotiated,
}

/// Shuts a session's socket down from another thread, so that whatever call
/// is blocked in libssh2 returns at once.
#[derive(Debug)]
pub struct Interrupter(TcpStream);

impl Interrupter {
    pub fn interrupt(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// Connects, checks the host key, authenticates and opens SFTP, with SSH
/// compression as the intersection's `compression` says (off when unset;
/// see [`connect_adaptive`]).
///
/// # Errors
/// [`RemoteError::Resolve`] or [`RemoteError::Connect`] when the host
/// cannot be found or reached within `connect_timeout`;
/// [`RemoteError::Handshake`] when SSH negotiation fails;
/// [`RemoteError::HostKey`] when the key is unknown to `known` or has
/// changed; [`RemoteError::SecretFile`] when a password, key or passphrase
/// file cannot be read; [`RemoteError::Auth`] when the server refuses the
/// credentials; [`RemoteError::Session`] when the SFTP channel cannot be
/// opened.
pub fn connect(
    ix: &Intersection,
    known: &KnownHosts,
    transfer: &Transfer,
    on_socket: &dyn Fn(Interrupter),
) -> Result<Remote, RemoteError> {
    connect_with(
        ix,
        known,
        transfer,
        on_socket,
        ix.compression.unwrap_or(false),
    )
}

/// [`connect`] for a pass. When `compression` is unset, the link decides:
/// what earlier sessions of this pass measured for the same `host:port`
/// (the shortest round trip, see [`LINKS`]) decides outright; else the
/// server's KEXINIT, timed from our banner before ours goes out
/// ([`kexinit_round_trip`]), and where that times nothing the TCP connect
/// and SSH banner ([`link_looks_slow`]), make a guess. A KEXINIT under
/// [`COMPRESS_ABOVE_RTT`] is a fast link for certain; any other guess is
/// checked by the answer to the `none` authentication request
/// ([`auth_round_trip`]), or where that is not clear by SFTP round trips
/// after login ([`sftp_round_trip`]); if guess and check disagree the
/// session is dropped there and opened once more the other way. Returns
/// the round trip the decision used: the shortest measured for this
/// address.
///
/// # Errors
/// As [`connect`], for whichever session is kept.
pub fn connect_adaptive(
    ix: &Intersection,
    known: &KnownHosts,
    transfer: &Transfer,
    on_socket: &dyn Fn(Interrupter),
) -> Result<(Remote, Option<Duration>), RemoteError> {
    if let Some(fixed) = ix.compression {
        return Ok((connect_with(ix, known, transfer, on_socket, fixed)?, None));
    }
    let link = display_addr(&ix.host, ix.port);
    match open(ix, known, transfer, on_socket, None)? {
        Opened::Ready(remote) => {
            let rtt = LINKS.lock().ok().and_then(|l| l.get(&link).copied());
            Ok((*remote, rtt))
        }
        Opened::Misjudged(rtt) => {
            let slow = rtt >= COMPRESS_ABOVE_RTT;
            // Compressing a fast link wastes the coprocessor's CPU; not
            // compressing a slow one wastes the night.
            tracing::info!(
                rtt_ms = rtt.as_millis() as u64,
                compression = slow,
                "the link's round trip contradicts the first guess: reconnecting"
            );
            let remote = connect_with(ix, known, transfer, on_socket, slow)?;
            Ok((remote, Some(rtt)))
        }
    }
}

/// The shortest round trip measured so far in this process, by
/// `host:port`. Load only ever lengthens a round trip: on a busy pass a
/// loopback or LAN answer can take 20 ms, so one measurement may call a
/// fast link slow, but the shortest of several cannot. Several
/// intersections behind one address (one coprocessor serving several, a
/// relay, the benchmark's few sshds) then share the measurement instead of
/// each guessing, and guessing wrong costs a second handshake.
static LINKS: LazyLock<Mutex<HashMap<String, Duration>>> = LazyLock::new(Default::default);

/// Whether `link` measured slow so far, if it was measured.
fn known_link(link: &str) -> Option<bool> {
    let links = LINKS.lock().ok()?;
    links.get(link).map(|rtt| *rtt >= COMPRESS_ABOVE_RTT)
}

/// Records a round trip of `link`; returns the shortest seen.
fn remember_rtt(link: &str, rtt: Duration) -> Duration {
    let Ok(mut links) = LINKS.lock() else {
        return rtt;
    };
    let best = links.entry(link.to_string()).or_insert(rtt);
    *best = (*best).min(rtt);
    *best
}

/// Connections to one `host:port` that may be between TCP connect and
/// authentication at once. A stock sshd (`MaxStartups 10:30:100`) starts
/// refusing a random 30% of new connections once 10 are unauthenticated, so
/// a pass with many intersections behind one address (one coprocessor
/// serving several, a NAT gateway, the benchmark's few sshds) stays below
/// that; further connections wait their turn, never past `connect_timeout`.
pub const HANDSHAKES_PER_HOST: usize = 8;

static HANDSHAKES: LazyLock<(Mutex<HashMap<String, usize>>, Condvar)> =
    LazyLock::new(Default::default);

/// One of the [`HANDSHAKES_PER_HOST`] places for `host:port`, given back on drop.
struct HandshakeSlot(Option<String>);

impl HandshakeSlot {
    /// Waits for a place, at most `patience`; past that it goes ahead
    /// anyway (the server decides), so the limit never fails a connection.
    fn take(link: &str, patience: Duration) -> HandshakeSlot {
        let (lock, freed) = &*HANDSHAKES;
        let Ok(mut busy) = lock.lock() else {
            return HandshakeSlot(None);
        };
        let until = Instant::now() + patience;
        while busy.get(link).copied().unwrap_or(0) >= HANDSHAKES_PER_HOST {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            busy = match freed.wait_timeout(busy, left) {
                Ok((b, _)) => b,
                Err(_) => return HandshakeSlot(None),
            };
        }
        *busy.entry(link.to_string()).or_insert(0) += 1;
        HandshakeSlot(Some(link.to_string()))
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let Some(link) = self.0.take() else { return };
        let (lock, freed) = &*HANDSHAKES;
        if let Ok(mut busy) = lock.lock() {
            if let Some(n) = busy.get_mut(&link) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    busy.remove(&link);
                }
            }
            freed.notify_all();
        }
    }
}

/// What the server sent before we said anything.
struct Banner {
    /// From the end of the TCP connect to the banner's first byte: one
    /// one-way delay (more behind a relay) plus sshd's start-up.
    latency: Duration,
    /// The whole identification line came.
    seen: bool,
    /// Bytes after the identification line too: a server that sends its
    /// KEXINIT without waiting for ours, whose answer times nothing.
    kexinit_too: bool,
}

/// Waits for the server's whole banner, at most `timeout`, leaving it for
/// libssh2 to read (MSG_PEEK). Sending ours only then keeps sshd's start-up
/// out of [`kexinit_round_trip`], and a banner still arriving cannot pass
/// for the answer to ours.
fn await_banner(socket: &TcpStream, timeout: Duration) -> Banner {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut latency = None;
    let mut identified = None;
    while identified.is_none() {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            break;
        }
        let n = match socket.peek(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        latency.get_or_insert_with(|| started.elapsed());
        identified = identification_end(&buf[..n]).map(|end| end < n);
        if identified.is_none() {
            if n == buf.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = socket.set_read_timeout(None);
    Banner {
        latency: latency.unwrap_or_else(|| started.elapsed()),
        seen: identified.is_some(),
        kexinit_too: identified.unwrap_or(false),
    }
}

/// Where the server's identification line ends in `bytes` (the start of
/// what it sent): past the first line starting `SSH-` (RFC 4253 4.2: a
/// server may send other lines before it); `None` while incomplete.
fn identification_end(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(len) = bytes[start..].iter().position(|b| *b == b'\n') {
        let end = start + len + 1;
        if bytes[start..].starts_with(b"SSH-") {
            return Some(end);
        }
        start = end;
    }
    None
}

/// How long a server gets to answer our banner with its KEXINIT before we
/// send ours anyway: a link slower than this is slow whatever it is, and a
/// server that waits for the client's KEXINIT (not OpenSSH) costs this once
/// per address and pass.
const KEXINIT_PATIENCE: Duration = Duration::from_secs(1);

/// Times the server's KEXINIT from our banner: with the vendored libssh2's
/// `kexinit-after-peer` patch (PATCHES.md) the first key exchange reads
/// the server's KEXINIT before building ours, and in non-blocking mode the
/// handshake stops there. OpenSSH sends its KEXINIT once it has read our
/// banner, and ours goes after its banner arrived, so the time is one
/// network round trip, relays included, without sshd's start-up that
/// stretches the banner on a busy or small server. `None` where it times
/// nothing: no banner, a server that sent its KEXINIT unasked, or no answer
/// within [`KEXINIT_PATIENCE`]. On return the session is blocking again and
/// our KEXINIT not yet sent (the next `handshake` sends it), unless the
/// server answered within microseconds: then it went with compression off,
/// which such a link wants.
///
/// # Errors
/// The handshake's, when the server breaks it off.
fn kexinit_round_trip(
    session: &mut Session,
    socket: &TcpStream,
    banner: &Banner,
) -> Result<Option<Duration>, ssh2::Error> {
    if !banner.seen || banner.kexinit_too {
        return Ok(None);
    }
    kexinit_after_peer(session, true);
    session.set_compress(false);
    session.set_blocking(false);
    let sent = Instant::now();
    let eagain = ssh2::ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_EAGAIN);
    let waiting = match session.handshake() {
        Ok(()) => Ok(false),
        Err(e) if e.code() == eagain => Ok(true),
        Err(e) => Err(e),
    };
    // Unless libssh2 read the answer already, it is what wakes this peek.
    // libssh2 made the socket non-blocking (O_NONBLOCK is shared by the
    // clones), and expects it so again.
    let answered = waiting.as_ref().is_ok_and(|waiting| {
        !waiting || {
            let _ = socket.set_nonblocking(false);
            let _ = socket.set_read_timeout(Some(KEXINIT_PATIENCE));
            let seen = socket.peek(&mut [0u8; 1]).is_ok();
            let _ = socket.set_read_timeout(None);
            let _ = socket.set_nonblocking(true);
            seen
        }
    });
    let rtt = sent.elapsed();
    session.set_blocking(true);
    kexinit_after_peer(session, false);
    waiting?;
    tracing::debug!(
        banner_ms = banner.latency.as_secs_f64() * 1000.0,
        kexinit_ms = answered.then_some(rtt.as_secs_f64() * 1000.0),
        "SSH banner and KEXINIT round trip"
    );
    Ok(answered.then_some(rtt))
}

/// Sets the vendored libssh2's `LIBSSH2_FLAG_V2X_KEXINIT_AFTER_PEER`.
fn kexinit_after_peer(session: &Session, on: bool) {
    let mut raw = session.raw();
    // SAFETY: `raw` is the session's live handle, held under its lock for
    // the call; the flag only sets an int in the session (session.c).
    unsafe {
        libssh2_sys::libssh2_session_flag(
            &mut *raw,
            libssh2_sys::LIBSSH2_FLAG_V2X_KEXINIT_AFTER_PEER,
            i32::from(on),
        );
    }
}

/// The first guess at whether a link is slow where its KEXINIT timed
/// nothing ([`kexinit_round_trip`]). A TCP connect that took
/// [`COMPRESS_ABOVE_RTT`] or more is a slow link for certain: the kernel
/// answers the SYN, so the time is one network round trip whatever the
/// server's load. A fast connect may still hide a slow link behind a relay
/// (a VPN concentrator, a proxy), which only the SSH banner shows: it
/// arrives one relayed round trip plus sshd's own start-up after the
/// connect ([`BANNER_SLOW`]).
fn link_looks_slow(connect: Duration, banner: &Banner) -> bool {
    tracing::debug!(
        connect_ms = connect.as_secs_f64() * 1000.0,
        banner_ms = banner.latency.as_secs_f64() * 1000.0,
        "no KEXINIT round trip: first guess from the TCP connect and SSH banner"
    );
    connect >= COMPRESS_ABOVE_RTT || (banner.seen && banner.latency >= BANNER_SLOW)
}

/// A banner this late makes the fallback guess "slow". It arrives one
/// relayed one-way delay plus sshd's start-up (fork, re-exec, host keys:
/// 8-13 ms on an idle server here, 25-30 ms with four starting at once on
/// a busy machine) after the connect, so the guess is often wrong, and
/// costs a handshake: the `none` answer checks it ([`auth_round_trip`]).
const BANNER_SLOW: Duration = Duration::from_millis(20);

/// A session opened with compression decided by the caller.
fn connect_with(
    ix: &Intersection,
    known: &KnownHosts,
    transfer: &Transfer,
    on_socket: &dyn Fn(Interrupter),
    compress: bool,
) -> Result<Remote, RemoteError> {
    match open(ix, known, transfer, on_socket, Some(compress))? {
        Opened::Ready(remote) => Ok(*remote),
        // Only a guess is checked, and a caller that decides guesses nothing.
        Opened::Misjudged(_) => Err(RemoteError::Session(SftpError::Io(io::Error::other(
            "the compression guess was checked on a session that decided it (a bug, please \
             report it)",
        )))),
    }
}

/// What [`open`] got to.
enum Opened {
    Ready(Box<Remote>),
    /// The guess at compression was wrong: the link measured this round
    /// trip, and the session was dropped before authenticating.
    Misjudged(Duration),
}

fn open(
    ix: &Intersection,
    known: &KnownHosts,
    transfer: &Transfer,
    on_socket: &dyn Fn(Interrupter),
    compress: Option<bool>,
) -> Result<Opened, RemoteError> {
    let display = display_addr(&ix.host, ix.port);
    // Held until authenticated: what sshd's MaxStartups counts.
    let slot = HandshakeSlot::take(&display, transfer.connect_timeout);
    let connecting = Instant::now();
    let socket = tcp_connect(&ix.host, ix.port, transfer.connect_timeout)?;
    let connect_time = connecting.elapsed();
    // Registered before the handshake: a server that accepts TCP and then
    // says nothing must be interruptible too.
    if let Ok(clone) = socket.try_clone() {
        on_socket(Interrupter(clone));
    }
    let _ = socket.set_nodelay(true);
    // Asked after waiting for a handshake place: an earlier session to this
    // address may have measured the link by now.
    let decided = compress.or_else(|| known_link(&display));
    let handshake_err = |source| RemoteError::Handshake {
        addr: display.clone(),
        source,
    };
    let mut session = Session::new().map_err(handshake_err)?;
    session.set_timeout(millis(transfer.connect_timeout));
    algorithms::apply(&transfer.algorithms, &session).map_err(handshake_err)?;
    let known_types = known.key_types_for(&ix.host, ix.port);
    if let Some(algorithms) = known_hosts::host_key_algorithms(&known_types) {
        session
            .method_pref(MethodType::HostKey, &algorithms)
            .map_err(handshake_err)?;
    }
    let socket_for_session = socket.try_clone().map_err(|source| RemoteError::Connect {
        addr: display.clone(),
        source,
    })?;
    session.set_tcp_stream(socket_for_session);
    let started = Instant::now();
    // Undecided, the server's KEXINIT is timed before ours goes out with
    // the compression it implies.
    let kex_rtt = match decided {
        Some(compress) => {
            session.set_compress(compress);
            None
        }
        None => {
            let banner = await_banner(&socket, transfer.connect_timeout);
            let rtt = kexinit_round_trip(&mut session, &socket, &banner).map_err(handshake_err)?;
            session.set_compress(match rtt {
                Some(rtt) => rtt >= COMPRESS_ABOVE_RTT,
                None => link_looks_slow(connect_time, &banner),
            });
            rtt
        }
    };
    session.handshake().map_err(handshake_err)?;
    let handshake = started.elapsed();
    let negotiated = Negotiated::of(&session);
    let compress = negotiated.compression;

    verify_host_key(&session, known, ix, &display)?;
    // The guess checked. A KEXINIT answered within COMPRESS_ABOVE_RTT
    // proves a fast link (load only lengthens a round trip); anything else
    // takes the `none` answer as a second sample, at once, and where the
    // two are not clear SFTP round trips after login.
    let mut unsure = false;
    if decided.is_none() {
        let fast = kex_rtt.filter(|rtt| *rtt < COMPRESS_ABOVE_RTT);
        let rtt = match fast {
            Some(rtt) => rtt,
            None => {
                let auth = auth_round_trip(&session, ix, &display)?;
                kex_rtt.map_or(auth, |kex| kex.min(auth))
            }
        };
        let slow = if rtt < COMPRESS_ABOVE_RTT {
            Some(false)
        } else if rtt >= 3 * COMPRESS_ABOVE_RTT {
            Some(true)
        } else {
            None
        };
        match slow {
            Some(slow) => {
                let rtt = remember_rtt(&display, rtt);
                if slow != compress {
                    let _ = session.disconnect(None, "reconnecting with other compression", None);
                    let _ = socket.shutdown(Shutdown::Both);
                    return Ok(Opened::Misjudged(rtt));
                }
            }
            None => unsure = true,
        }
    }
    // A server that lets the account in without credentials did so when
    // the round trip was measured.
    if !session.authenticated() {
        authenticate(&session, ix, &display)?;
    }
    let authenticated = started.elapsed();

    drop(slot);
    session.set_timeout(millis(transfer.io_timeout));
    let mut sftp = SftpChannel::start(&session)?;
    if unsure {
        let rtt = match sftp_round_trip(&mut sftp) {
            Ok(rtt) => remember_rtt(&display, rtt),
            Err(e) => {
                let _ = socket.shutdown(Shutdown::Both);
                return Err(e);
            }
        };
        if (rtt >= COMPRESS_ABOVE_RTT) != compress {
            let _ = socket.shutdown(Shutdown::Both);
            return Ok(Opened::Misjudged(rtt));
        }
    }
    // Where a slow start goes, for whoever reads the debug log of a link.
    tracing::debug!(
        compression = compress,
        kex = %negotiated.kex,
        cipher = %negotiated.cipher,
        mac = negotiated.mac.as_deref().unwrap_or("(part of the cipher)"),
        handshake_ms = handshake.as_millis() as u64,
        authenticated_ms = authenticated.as_millis() as u64,
        sftp_ready_ms = started.elapsed().as_millis() as u64,
        "session open"
    );
    Ok(Opened::Ready(Box::new(Remote {
        sftp,
        _session: session,
        socket,
        negotiated,
    })))
}

/// How long the server takes to answer the `none` authentication request,
/// right after the key exchange: one round trip, relays included, plus
/// sshd's own handling of an authentication request (5-10 ms measured on
/// the build machine, for the user lookup and PAM), so an upper bound of the
/// round trip. Under [`COMPRESS_ABOVE_RTT`] the link is fast for certain; at
/// three times that it is slow (a relayed 20 ms each way answers in 46-55
/// ms); in between, a busy server or a short WAN, [`sftp_round_trip`]
/// decides after login. Asked before authenticating, it makes a wrong first
/// guess cost a handshake, not also a password check and an SFTP server
/// started for nothing, and it asks nothing of the server but the list of
/// methods. (OpenSSH does not count a first `none` request against
/// `MaxAuthTries`.)
///
/// # Errors
/// [`RemoteError::Handshake`] when the server breaks the session instead
/// of answering.
fn auth_round_trip(
    session: &Session,
    ix: &Intersection,
    display: &str,
) -> Result<Duration, RemoteError> {
    let started = Instant::now();
    let answer = session.auth_methods(&ix.username);
    let rtt = started.elapsed();
    tracing::debug!(
        rtt_ms = rtt.as_secs_f64() * 1000.0,
        "round trip of the 'none' authentication request"
    );
    match answer {
        // A server that lets the account in without credentials.
        Err(_) if session.authenticated() => Ok(rtt),
        Err(source) => Err(RemoteError::Handshake {
            addr: display.to_string(),
            source,
        }),
        Ok(_) => Ok(rtt),
    }
}

/// The link's latency as the transfer will see it, relays included: the
/// fastest of up to three SFTP round trips (an lstat of the login folder),
/// stopping at the first under [`COMPRESS_ABOVE_RTT`] (fast) or of three
/// times that (a WAN: a busy loopback server was seen to take 25 ms, a
/// relayed 20 ms each way takes 40). One answer delayed by a busy server
/// does not make a fast link slow, and a slow link pays one round trip, not
/// three.
///
/// # Errors
/// [`RemoteError::Session`] when the channel breaks or the answer is
/// malformed; a refusal of the lstat still measures the round trip.
fn sftp_round_trip(sftp: &mut SftpChannel) -> Result<Duration, RemoteError> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let id = sftp.send_lstat(b".");
        sftp.call(id)?;
        let rtt = started.elapsed();
        best = best.min(rtt);
        if best < COMPRESS_ABOVE_RTT || rtt >= 3 * COMPRESS_ABOVE_RTT {
            break;
        }
    }
    Ok(best)
}

/// A host key as a server presented it, before anything was sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// As known_hosts names it, e.g. `ssh-ed25519`.
    pub key_type: &'static str,
    /// The SSH wire-format public key blob.
    pub blob: Vec<u8>,
}

/// Host-key algorithms offered when known_hosts lists none for a host:
/// Ed25519 first, as `ssh-keyscan` users expect, SHA-1 `ssh-rsa` last.
const PREFERRED_HOST_KEY_ALGORITHMS: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,\
    ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa";

/// TCP and the SSH handshake only, never authentication: the host key the
/// server presents, for `trust` and `check-config --connect`.
///
/// Negotiation is first restricted to `known_types` (what known_hosts lists
/// for this host:port), exactly as [`connect`] does, so the key returned is
/// the one a pass would check. A server that offers none of those types any
/// more (reinstalled with other keys) fails that handshake; it is then asked
/// again without the restriction, so the caller sees the new key and can
/// call it changed instead of "handshake failed".
///
/// # Errors
/// [`RemoteError::Resolve`] or [`RemoteError::Connect`] when the host
/// cannot be found or reached; [`RemoteError::Handshake`] when even the
/// unrestricted handshake fails; [`RemoteError::HostKey`] when the server
/// presents no key libssh2 can read.
pub fn fetch_host_key(
    ix: &Intersection,
    known_types: &[String],
    transfer: &Transfer,
) -> Result<HostKey, RemoteError> {
    let restricted = known_hosts::host_key_algorithms(known_types);
    match handshake_for_key(ix, restricted.as_deref(), transfer) {
        Err(RemoteError::Handshake { .. }) if restricted.is_some() => {
            handshake_for_key(ix, None, transfer)
        }
        other => other,
    }
}

fn handshake_for_key(
    ix: &Intersection,
    algorithms: Option<&str>,
    transfer: &Transfer,
) -> Result<HostKey, RemoteError> {
    let display = display_addr(&ix.host, ix.port);
    let socket = tcp_connect(&ix.host, ix.port, transfer.connect_timeout)?;
    let handshake_err = |source| RemoteError::Handshake {
        addr: display.clone(),
        source,
    };
    let mut session = Session::new().map_err(handshake_err)?;
    session.set_timeout(millis(transfer.connect_timeout));
    algorithms::apply(&transfer.algorithms, &session).map_err(handshake_err)?;
    session
        .method_pref(
            MethodType::HostKey,
            algorithms.unwrap_or(PREFERRED_HOST_KEY_ALGORITHMS),
        )
        .map_err(handshake_err)?;
    session.set_tcp_stream(socket);
    session.handshake().map_err(handshake_err)?;
    let key = match session.host_key() {
        Some((blob, kind)) => Ok(HostKey {
            key_type: key_type_name(kind),
            blob: blob.to_vec(),
        }),
        None => Err(RemoteError::HostKey(format!(
            "{display} presented no host key"
        ))),
    };
    let _ = session.disconnect(None, "host key fetched", None);
    key
}

/// Round trips longer than this mean a WAN link to the coprocessor, where
/// bytes cost more than the coprocessor's CPU, so `compression` left unset
/// turns SSH compression on. Loopback and LAN answer in well under a
/// millisecond.
pub const COMPRESS_ABOVE_RTT: Duration = Duration::from_millis(10);

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

fn display_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, RemoteError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| RemoteError::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(RemoteError::Connect {
        addr: display_addr(host, port),
        source: last,
    })
}

/// The name known_hosts uses for a libssh2 host-key type.
fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

fn verify_host_key(
    session: &Session,
    known: &KnownHosts,
    ix: &Intersection,
    display: &str,
) -> Result<(), RemoteError> {
    let Some((blob, kind)) = session.host_key() else {
        return Err(RemoteError::HostKey(format!(
            "{display} presented no host key; refusing to authenticate"
        )));
    };
    let key_type = key_type_name(kind);
    let fingerprint = known_hosts::fingerprint_sha256(blob);
    let line = known_hosts::known_hosts_line(&ix.host, ix.port, key_type, blob);
    match known.check(&ix.host, ix.port, key_type, blob) {
        Verdict::Match => Ok(()),
        Verdict::Unknown => Err(RemoteError::HostKey(format!(
            "host key of {display} is not in the known_hosts file: it offered {key_type} {fingerprint}. \
             If that is the coprocessor's key (compare with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on it), \
             trust it by adding this line to the known_hosts file: {line}"
        ))),
        Verdict::Mismatch { known_types } => Err(RemoteError::HostKey(format!(
            "HOST KEY OF {display} HAS CHANGED: it offered {key_type} {fingerprint}, which does not match the \
             known_hosts entry ({}). This may be a man-in-the-middle attack, or the coprocessor was reinstalled. \
             Nothing was sent to it. If the change is expected, replace the old entry with: {line}",
            known_types.join(", ")
        ))),
        Verdict::Revoked => Err(RemoteError::HostKey(format!(
            "host key of {display} ({key_type} {fingerprint}) is marked @revoked in the known_hosts file; refusing to connect"
        ))),
    }
}

fn authenticate(session: &Session, ix: &Intersection, display: &str) -> Result<(), RemoteError> {
    let auth_err = |detail: String| RemoteError::Auth {
        user: ix.username.clone(),
        addr: display.to_string(),
        detail,
    };
    // libssh2 messages name the method, never the secret.
    let result = match &ix.auth {
        Auth::Password(secret) => session.userauth_password(&ix.username, secret.expose()),
        Auth::PasswordFrom(source) => {
            let password = read_secret_file(&secret_path(source)?)?;
            session.userauth_password(&ix.username, &password)
        }
        Auth::PrivateKey { key, passphrase } => {
            // The key first: its credential is the one to name when none is there.
            let path = secret_path(key)?;
            let passphrase = passphrase
                .as_ref()
                .map(|p| read_secret_file(&secret_path(p)?))
                .transpose()?;
            // libssh2 opens the key itself, and would block on a FIFO.
            crate::common::secret::open_secret_file(&path).map_err(|source| {
                RemoteError::SecretFile {
                    path: path.clone(),
                    source,
                }
            })?;
            session.userauth_pubkey_file(&ix.username, None, &path, passphrase.as_deref())
        }
    };
    result.map_err(|e| auth_err(e.message().to_string()))?;
    if !session.authenticated() {
        return Err(auth_err("the server did not accept the credentials".into()));
    }
    Ok(())
}

/// The file a secret is read from; a credential this process cannot see
/// (no `$CREDENTIALS_DIRECTORY`, or the unit does not load it) stops the
/// intersection with what to add to the unit.
fn secret_path(source: &SecretSource) -> Result<PathBuf, RemoteError> {
    source.path().map_err(RemoteError::Credential)
}

/// A password or passphrase file's first line, without its line ending.
fn read_secret_file(path: &Path) -> Result<String, RemoteError> {
    crate::common::secret::read_secret_line(path).map_err(|source| RemoteError::SecretFile {
        path: path.to_path_buf(),
        source,
    })
}

impl Remote {
    /// A handle that can shut this session's socket from another thread,
    /// as the pass's watchdog does at the deadline or on SIGTERM.
    ///
    /// # Errors
    /// The socket cannot be duplicated (out of file descriptors).
    pub fn interrupter(&self) -> io::Result<Interrupter> {
        Ok(Interrupter(self.socket.try_clone()?))
    }

    /// Gives up on a link that failed (a stall, a cut, a timeout): shuts the
    /// socket down before the drop, so libssh2's polite channel close and
    /// disconnect fail at once instead of each waiting `io_timeout` on a
    /// peer that no longer answers.
    pub fn abandon(self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Ends a session whose work is done: says goodbye (an SSH disconnect,
    /// which awaits no answer) and shuts the socket, so that the drop's
    /// channel close does not wait a round trip for the server's own close
    /// (50 ms at the end of every intersection on a 50 ms link). Nothing is
    /// outstanding by then: every answer the pass needed has come.
    pub fn close(self) {
        let _ = self
            ._session
            .disconnect(None, "transfer pass finished", None);
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// The key exchange, cipher and MAC this session negotiated.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The SFTP channel, for pipelined use ([`crate::transfer::engine`]).
    pub fn channel(&mut self) -> &mut SftpChannel {
        &mut self.sftp
    }

    /// Every entry of `dir` but `.` and `..`, with lstat attributes (OpenSSH's
    /// sftp-server does not follow symlinks in READDIR). One request at a
    /// time: for tools, not for the pass.
    ///
    /// # Errors
    /// [`RemoteError::Refused`] when the server will not open or read `dir`
    /// (missing, not a folder, permission denied); [`RemoteError::Session`]
    /// when the channel breaks or an answer is malformed.
    pub fn list(&mut self, dir: &Path) -> Result<Vec<Entry>, RemoteError> {
        let id = self.sftp.send_opendir(dir.as_os_str().as_bytes());
        let handle = match self.sftp.call(id)? {
            Response::Handle(h) => h,
            r => return Err(refused("opendir", dir, &r)),
        };
        let mut entries = Vec::new();
        loop {
            let id = self.sftp.send_readdir(&handle);
            match self.sftp.call(id)? {
                Response::Name(names) => {
                    for n in names {
                        if n.name != b"." && n.name != b".." {
                            entries.push(Entry::from_attrs(OsString::from_vec(n.name), &n.attrs));
                        }
                    }
                }
                Response::Status {
                    code: status::EOF, ..
                } => break,
                r => return Err(refused("readdir", dir, &r)),
            }
        }
        let id = self.sftp.send_close(&handle);
        self.sftp.call(id)?;
        Ok(entries)
    }
}

fn refused(op: &'static str, path: &Path, r: &Response) -> RemoteError {
    RemoteError::Refused {
        op,
        path: path.to_path_buf(),
        code: match r {
            Response::Status { code, .. } => Some(*code),
            _ => None,
        },
        detail: r.describe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identification_line_ends_where_its_newline_does() {
        assert_eq!(identification_end(b"SSH-2.0-OpenSSH_9.2\r\n"), Some(21));
        // Lines before it (a server may send them), and what follows it.
        let sent = b"hello\r\nSSH-2.0-x\r\n\0\0\x01";
        assert_eq!(identification_end(sent), Some(18));
        assert!(identification_end(sent).is_some_and(|end| end < sent.len()));
        // Still arriving, or not SSH at all.
        assert_eq!(identification_end(b"SSH-2.0-Open"), None);
        assert_eq!(identification_end(b"hello\r\n"), None);
        assert_eq!(identification_end(b""), None);
    }
}
