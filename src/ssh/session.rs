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

use std::ffi::OsString;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ssh2::{HostKeyType, MethodType, Session};

use crate::config::{Auth, Intersection, Transfer};
use crate::error::Disposition;
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
    #[error("SSH handshake with {addr} failed: {source}")]
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

impl RemoteError {
    /// What this error means for the pass; see [`crate::error`].
    pub fn disposition(&self) -> Disposition {
        match self {
            RemoteError::Resolve { .. }
            | RemoteError::Connect { .. }
            | RemoteError::Handshake { .. }
            | RemoteError::Session(_) => Disposition::Reconnect,
            RemoteError::HostKey(_) | RemoteError::Auth { .. } | RemoteError::SecretFile { .. } => {
                Disposition::StopIntersection
            }
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
            RemoteError::SecretFile { .. } => "credentials",
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
    /// SSH compression was negotiated for this session.
    compressed: bool,
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
        Some(ix.compression.unwrap_or(false)),
    )
}

/// [`connect`] for a pass. When `compression` is unset, the link decides:
/// the first guess comes from how long the server's SSH banner takes to
/// arrive (sent as soon as the connection is accepted, so about one round
/// trip, relays included), and an SFTP request on the new session checks
/// it; if the two disagree the session is reopened once the other way.
/// Returns the round trip measured, if it was.
///
/// # Errors
/// As [`connect`], for whichever session is kept; also
/// [`RemoteError::Session`] when the checking request fails.
pub fn connect_adaptive(
    ix: &Intersection,
    known: &KnownHosts,
    transfer: &Transfer,
    on_socket: &dyn Fn(Interrupter),
) -> Result<(Remote, Option<Duration>), RemoteError> {
    if let Some(fixed) = ix.compression {
        return Ok((
            connect_with(ix, known, transfer, on_socket, Some(fixed))?,
            None,
        ));
    }
    let mut remote = connect_with(ix, known, transfer, on_socket, None)?;
    let rtt = match remote.round_trip() {
        Ok(rtt) => rtt,
        Err(e) => {
            remote.abandon();
            return Err(e);
        }
    };
    let slow = rtt >= COMPRESS_ABOVE_RTT;
    if slow != remote.compressed {
        // Compressing a fast link wastes the coprocessor's CPU; not
        // compressing a slow one wastes the night.
        tracing::info!(
            rtt_ms = rtt.as_millis() as u64,
            compression = slow,
            "the link's round trip contradicts the first guess: reconnecting"
        );
        remote = connect_with(ix, known, transfer, on_socket, Some(slow))?;
    }
    Ok((remote, Some(rtt)))
}

/// Whether the server's banner took [`COMPRESS_ABOVE_RTT`] or more to
/// arrive. MSG_PEEK leaves it for libssh2 to read.
fn banner_is_slow(socket: &TcpStream, timeout: Duration) -> bool {
    let started = Instant::now();
    let _ = socket.set_read_timeout(Some(timeout));
    let seen = socket.peek(&mut [0u8; 1]).is_ok();
    let _ = socket.set_read_timeout(None);
    let latency = started.elapsed();
    tracing::debug!(
        banner_ms = latency.as_secs_f64() * 1000.0,
        "SSH banner latency"
    );
    seen && latency >= COMPRESS_ABOVE_RTT
}

fn connect_with(
    ix: &Intersection,
    known: &KnownHosts,
    transfer: &Transfer,
    on_socket: &dyn Fn(Interrupter),
    compress: Option<bool>,
) -> Result<Remote, RemoteError> {
    let display = display_addr(&ix.host, ix.port);
    let socket = tcp_connect(&ix.host, ix.port, transfer.connect_timeout)?;
    // Registered before the handshake: a server that accepts TCP and then
    // says nothing must be interruptible too.
    if let Ok(clone) = socket.try_clone() {
        on_socket(Interrupter(clone));
    }
    let _ = socket.set_nodelay(true);
    let compress = compress.unwrap_or_else(|| banner_is_slow(&socket, transfer.connect_timeout));
    let handshake_err = |source| RemoteError::Handshake {
        addr: display.clone(),
        source,
    };
    let mut session = Session::new().map_err(handshake_err)?;
    session.set_timeout(millis(transfer.connect_timeout));
    session.set_compress(compress);
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
    session.handshake().map_err(handshake_err)?;
    let handshake = started.elapsed();

    verify_host_key(&session, known, ix, &display)?;
    authenticate(&session, ix, &display)?;
    let authenticated = started.elapsed();

    session.set_timeout(millis(transfer.io_timeout));
    let sftp = SftpChannel::start(&session)?;
    // Where a slow start goes, for whoever reads the debug log of a link.
    tracing::debug!(
        compression = compress,
        handshake_ms = handshake.as_millis() as u64,
        authenticated_ms = authenticated.as_millis() as u64,
        sftp_ready_ms = started.elapsed().as_millis() as u64,
        "session open"
    );
    Ok(Remote {
        sftp,
        _session: session,
        socket,
        compressed: compress,
    })
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
        Auth::PasswordFile(path) => {
            let password = read_secret_file(path)?;
            session.userauth_password(&ix.username, &password)
        }
        Auth::PrivateKey {
            path,
            passphrase_file,
        } => {
            let passphrase = passphrase_file
                .as_deref()
                .map(read_secret_file)
                .transpose()?;
            // libssh2 opens the key itself, and would block on a FIFO.
            crate::common::secret::open_secret_file(path).map_err(|source| {
                RemoteError::SecretFile {
                    path: path.clone(),
                    source,
                }
            })?;
            session.userauth_pubkey_file(&ix.username, None, path, passphrase.as_deref())
        }
    };
    result.map_err(|e| auth_err(e.message().to_string()))?;
    if !session.authenticated() {
        return Err(auth_err("the server did not accept the credentials".into()));
    }
    Ok(())
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

    /// One SFTP request's round trip (an lstat of the login folder): the
    /// link's latency as the transfer will see it, relays included.
    ///
    /// # Errors
    /// [`RemoteError::Session`] when the channel breaks or the answer is
    /// malformed; a refusal of the lstat still measures the round trip.
    pub fn round_trip(&mut self) -> Result<Duration, RemoteError> {
        let started = Instant::now();
        let id = self.sftp.send_lstat(b".");
        self.sftp.call(id)?;
        Ok(started.elapsed())
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
