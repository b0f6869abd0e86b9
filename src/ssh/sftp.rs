//! The SFTP version 3 wire protocol (draft-ietf-secsh-filexfer-02), spoken
//! over an SSH channel that libssh2 encrypts and carries.
//!
//! libssh2's own SFTP layer allows one request of each kind in flight per
//! channel, so every small file costs open, read, stat, close and remove
//! round trips one after another: on a 40 ms link that is the whole night.
//! Speaking the protocol ourselves lets [`crate::transfer::engine`] keep requests
//! for many files in flight at once, the way OpenSSH's `sftp` pipelines
//! reads, while libssh2 still does everything cryptographic.
//!
//! This module only frames requests and parses responses; it never decides
//! what to fetch or delete. Requests are queued with the `send_*` methods
//! (each returns its request id) and go out on [`SftpChannel::flush`];
//! [`SftpChannel::recv`] returns the next response. A server answers a
//! channel's requests in order, but callers match responses by id.
//!
//! A malformed answer is a [`SftpError::Protocol`] whose text names the
//! answer type, the request and what did not fit, with the numbers, because
//! the operator reading the journal has no packet capture to look at. Bytes
//! after a fully parsed answer are ignored, as OpenSSH's `sftp` ignores them:
//! the length prefix frames every packet, so they cannot desynchronise the
//! stream, and some servers pad or add fields we do not read.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};

use ssh2::{Channel, Session};

use crate::ssh::exec::{Choice, HashBatch, HashError, Tool};

#[cfg(any(test, feature = "fault-injection"))]
pub mod scripted;

/// Bulk reads are only fast with the vendored libssh2 that decrypts a
/// packet in one call rather than 16 bytes at a time (about 40% of the
/// client's CPU on a 1 GiB file; vendor/libssh2-sys/PATCHES.md). Naming its
/// marker here makes a build against the unpatched crate fail loudly, and
/// [`linked_libssh2_patches`] makes a binary linked against any other
/// libssh2 fail to link.
const _LIBSSH2_PATCHES: &str = libssh2_sys::V2X_PATCHES;

/// The patches the linked libssh2 carries (the vendored copy answers
/// [`libssh2_sys::V2X_PATCHES`]). Logged once per pass at debug level.
pub fn linked_libssh2_patches() -> &'static str {
    libssh2_sys::v2x_patches()
}

/// Packet types (section 3).
mod fxp {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const RMDIR: u8 = 15;
    pub const EXTENDED: u8 = 200;
    pub const EXTENDED_REPLY: u8 = 201;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
}

/// Status codes (section 7).
pub mod status {
    pub const OK: u32 = 0;
    pub const EOF: u32 = 1;
    pub const NO_SUCH_FILE: u32 = 2;
    pub const PERMISSION_DENIED: u32 = 3;
}

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;
const OPEN_READ: u32 = 0x1;

/// Largest response we accept: OpenSSH's limit is 256 KiB; anything much
/// larger is a broken or hostile server, not a reason to allocate.
const MAX_PACKET: usize = 1 << 20;
/// Receive window of the channel: how much response data the server may
/// send ahead of our reading. Bounds what callers may have in flight.
pub const WINDOW: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("SSH channel: {0}")]
    Channel(#[from] ssh2::Error),
    #[error("SSH connection: {0}")]
    Io(#[from] io::Error),
    /// No prefix: each text already says that the server's SFTP answer is
    /// at fault, and it goes to the journal as it is.
    #[error("{0}")]
    Protocol(String),
}

/// File attributes; absent fields are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub perm: Option<u32>,
    pub mtime: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    pub name: Vec<u8>,
    pub attrs: Attrs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Status {
        code: u32,
        message: String,
    },
    Handle(Vec<u8>),
    Data(Vec<u8>),
    Name(Vec<NameEntry>),
    Attrs(Attrs),
    /// EXTENDED_REPLY: the body after the id, read by the one extension
    /// we ask (`statvfs@openssh.com`, see [`Statvfs::parse`]).
    Extended(Vec<u8>),
}

/// The name and version of the free-space extension, as OpenSSH's
/// sftp-server advertises it in its VERSION answer (PROTOCOL in OpenSSH's
/// sources, section 4.4).
pub const STATVFS_EXTENSION: (&str, &str) = ("statvfs@openssh.com", "2");

/// A `statvfs@openssh.com` answer: the server's statvfs(3) of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statvfs {
    pub frsize: u64,
    pub blocks: u64,
    /// Free blocks for unprivileged users: what `df` shows as available.
    pub bavail: u64,
}

impl Statvfs {
    /// Parses the reply body: eleven uint64 (bsize, frsize, blocks, bfree,
    /// bavail, files, ffree, favail, fsid, flag, namemax); `None` if short.
    pub fn parse(body: &[u8]) -> Option<Statvfs> {
        let field = |i: usize| -> Option<u64> {
            let b = body.get(i * 8..i * 8 + 8)?;
            Some(u64::from_be_bytes(b.try_into().ok()?))
        };
        let bsize = field(0)?;
        // Some servers leave f_frsize 0; statvfs(3) then means f_bsize.
        let frsize = match field(1)? {
            0 => bsize,
            f => f,
        };
        let _ = field(10)?;
        Some(Statvfs {
            frsize,
            blocks: field(2)?,
            bavail: field(4)?,
        })
    }

    /// Bytes available to an unprivileged user (`df`'s "Avail").
    pub fn avail_bytes(&self) -> u64 {
        self.bavail.saturating_mul(self.frsize)
    }

    /// The filesystem's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.frsize)
    }
}

impl Response {
    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Response::Status { code, message } => format!("{} ({message})", status_name(*code)),
            Response::Handle(_) => "unexpected HANDLE".into(),
            Response::Data(_) => "unexpected DATA".into(),
            Response::Name(_) => "unexpected NAME".into(),
            Response::Attrs(_) => "unexpected ATTRS".into(),
            Response::Extended(_) => "unexpected EXTENDED_REPLY".into(),
        }
    }
}

pub fn status_name(code: u32) -> &'static str {
    match code {
        0 => "ok",
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        _ => "unknown status",
    }
}

/// One SFTP subsystem channel.
pub struct SftpChannel {
    channel: Channel,
    next_id: u32,
    out: Vec<u8>,
    /// Requests sent and not yet answered.
    outstanding: usize,
    /// The server advertised `statvfs@openssh.com` in its VERSION answer.
    statvfs: bool,
    /// The session, for the exec channels that hash files remotely.
    session: Session,
    /// What hashes files remotely ([`crate::ssh::exec::Choice`]).
    hasher: Choice,
    /// Hash batches by number.
    batches: HashMap<u32, HashBatch>,
    /// Their numbers in the order they were started.
    batch_order: Vec<u32>,
    next_batch: u32,
}

/// Exec channels open at once beside the SFTP one: OpenSSH allows ten
/// sessions per connection (`MaxSessions`), and two batches already cover
/// every file the engine has open.
const MAX_HASH_CHANNELS: usize = 4;

impl SftpChannel {
    /// Opens the `sftp` subsystem and negotiates version 3.
    ///
    /// # Errors
    /// [`SftpError::Channel`] when libssh2 cannot open the channel or the
    /// server refuses the subsystem; [`SftpError::Io`] when the connection
    /// fails or the server closes the channel before its VERSION;
    /// [`SftpError::Protocol`] when its first answer is not a VERSION.
    pub fn start(session: &Session) -> Result<SftpChannel, SftpError> {
        let mut channel = session.channel_open("session", WINDOW, 32_768, None)?;
        channel.subsystem("sftp")?;
        let mut me = SftpChannel {
            channel,
            next_id: 1,
            out: Vec::with_capacity(64 << 10),
            outstanding: 0,
            statvfs: false,
            session: session.clone(),
            hasher: Choice::Untried,
            batches: HashMap::new(),
            batch_order: Vec::new(),
            next_batch: 1,
        };
        // INIT carries a version, not an id.
        me.out.extend_from_slice(&5u32.to_be_bytes());
        me.out.push(fxp::INIT);
        me.out.extend_from_slice(&3u32.to_be_bytes());
        me.flush()?;
        let (_, extensions) = read_version(&mut me.channel).map_err(closed)?;
        me.statvfs = extensions.iter().any(|(n, v)| {
            (n.as_slice(), v.as_slice())
                == (
                    STATVFS_EXTENSION.0.as_bytes(),
                    STATVFS_EXTENSION.1.as_bytes(),
                )
        });
        Ok(me)
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    fn begin(&mut self, kind: u8) -> (u32, usize) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let start = self.out.len();
        self.out.extend_from_slice(&[0, 0, 0, 0, kind]);
        self.out.extend_from_slice(&id.to_be_bytes());
        (id, start)
    }

    fn finish(&mut self, start: usize) {
        let len = (self.out.len() - start - 4) as u32;
        self.out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        self.outstanding += 1;
    }

    fn put_bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.out.extend_from_slice(b);
    }

    fn with_path(&mut self, kind: u8, path: &[u8]) -> u32 {
        let (id, start) = self.begin(kind);
        self.put_bytes(path);
        self.finish(start);
        id
    }

    fn with_handle(&mut self, kind: u8, handle: &[u8]) -> u32 {
        self.with_path(kind, handle)
    }

    pub fn send_open_read(&mut self, path: &[u8]) -> u32 {
        let (id, start) = self.begin(fxp::OPEN);
        self.put_bytes(path);
        self.out.extend_from_slice(&OPEN_READ.to_be_bytes());
        self.out.extend_from_slice(&0u32.to_be_bytes()); // no attrs
        self.finish(start);
        id
    }

    pub fn send_read(&mut self, handle: &[u8], offset: u64, len: u32) -> u32 {
        let (id, start) = self.begin(fxp::READ);
        self.put_bytes(handle);
        self.out.extend_from_slice(&offset.to_be_bytes());
        self.out.extend_from_slice(&len.to_be_bytes());
        self.finish(start);
        id
    }

    pub fn send_fstat(&mut self, handle: &[u8]) -> u32 {
        self.with_handle(fxp::FSTAT, handle)
    }

    pub fn send_close(&mut self, handle: &[u8]) -> u32 {
        self.with_handle(fxp::CLOSE, handle)
    }

    pub fn send_readdir(&mut self, handle: &[u8]) -> u32 {
        self.with_handle(fxp::READDIR, handle)
    }

    pub fn send_opendir(&mut self, path: &[u8]) -> u32 {
        self.with_path(fxp::OPENDIR, path)
    }

    pub fn send_lstat(&mut self, path: &[u8]) -> u32 {
        self.with_path(fxp::LSTAT, path)
    }

    pub fn send_remove(&mut self, path: &[u8]) -> u32 {
        self.with_path(fxp::REMOVE, path)
    }

    pub fn send_rmdir(&mut self, path: &[u8]) -> u32 {
        self.with_path(fxp::RMDIR, path)
    }

    /// `statvfs@openssh.com` of `path`, if the server offered it.
    pub fn send_statvfs(&mut self, path: &[u8]) -> Option<u32> {
        if !self.statvfs {
            return None;
        }
        let (id, start) = self.begin(fxp::EXTENDED);
        self.put_bytes(STATVFS_EXTENSION.0.as_bytes());
        self.put_bytes(path);
        self.finish(start);
        Some(id)
    }

    /// Sends every queued request.
    ///
    /// # Errors
    /// [`SftpError::Io`] when the connection fails while writing (the
    /// queued requests are then lost with it).
    pub fn flush(&mut self) -> Result<(), SftpError> {
        if !self.out.is_empty() {
            // No `Channel::flush` here: in libssh2 that *discards* received
            // data. `write_all` hands every byte to the transport.
            self.channel.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends what is queued, then waits for the next response.
    ///
    /// # Errors
    /// [`SftpError::Io`] when the connection fails, times out or the server
    /// closes the channel; [`SftpError::Protocol`] when the answer is
    /// malformed (an unknown type, a length out of range, fields that do not
    /// fit its packet).
    pub fn recv(&mut self) -> Result<(u32, Response), SftpError> {
        self.flush()?;
        let answer = read_response(&mut self.channel).map_err(closed)?;
        self.outstanding = self.outstanding.saturating_sub(1);
        Ok(answer)
    }

    /// One request, waiting for its answer; only when nothing else is in flight.
    ///
    /// # Errors
    /// As [`SftpChannel::recv`]. A `Status` answer, failure or not, is
    /// returned as `Ok` for the caller to judge.
    pub fn call(&mut self, id: u32) -> Result<Response, SftpError> {
        loop {
            let (got, response) = self.recv()?;
            if got == id {
                return Ok(response);
            }
        }
    }
}

impl SftpChannel {
    /// Hashes remotely with `tool` from now on, untried (the tests run both
    /// tools over the same names).
    pub fn hash_with(&mut self, tool: Tool) {
        self.hasher = Choice::Chosen(tool);
    }

    fn hash_start(&mut self, paths: &[&[u8]]) -> Result<u32, HashError> {
        // Queued SFTP requests go first: they are what the night waits on.
        self.flush()?;
        // A second batch waits until the first has told which tool works.
        self.hash_settle()?;
        // The oldest still-open batches are read to their end (their
        // results stay) so their channels close first.
        let mut open: Vec<u32> = self
            .batch_order
            .iter()
            .copied()
            .filter(|b| self.batches.get(b).is_some_and(HashBatch::open))
            .collect();
        while open.len() >= MAX_HASH_CHANNELS {
            let oldest = open.remove(0);
            if let Some(b) = self.batches.get_mut(&oldest) {
                b.finish()?;
            }
        }
        let n = self.next_batch;
        let batch = self.hasher.start(&self.session, n, paths)?;
        self.next_batch = self.next_batch.wrapping_add(1);
        self.batches.insert(n, batch);
        self.batch_order.push(n);
        Ok(n)
    }

    fn hash_settle(&mut self) -> Result<(), HashError> {
        let Some(n) = self.hasher.trying() else {
            return match &self.hasher {
                Choice::Unusable(why) => Err(HashError::NoHasher(why.clone())),
                _ => Ok(()),
            };
        };
        self.flush()?;
        match self.batches.get_mut(&n) {
            Some(b) => self.hasher.settle(&self.session, b),
            None => Err(HashError::Unavailable(format!(
                "no hash batch {n} (a bug, please report it)"
            ))),
        }
    }

    fn hash_of(&mut self, batch: u32, path: &[u8]) -> Result<[u8; 32], HashError> {
        self.flush()?;
        if self.hasher.trying() == Some(batch) {
            self.hash_settle()?;
        }
        match self.batches.get_mut(&batch) {
            Some(b) => b.hash_of(path),
            None => Err(HashError::Unavailable(format!(
                "no hash batch {batch} (a bug, please report it)"
            ))),
        }
    }

    fn hash_end(&mut self, batch: u32) {
        self.batches.remove(&batch);
        self.batch_order.retain(|&b| b != batch);
    }
}

/// The requests the transfer engine sends and the answers it reads: what
/// [`SftpChannel`] does over SSH, and what a scripted server does in the
/// engine's unit tests to play the hostile or buggy server OpenSSH never is.
/// `send_*` queue a request and return its id; [`Wire::recv`] sends what
/// is queued and returns the next answer, with the id it answers.
pub trait Wire {
    fn send_opendir(&mut self, path: &[u8]) -> u32;
    fn send_readdir(&mut self, handle: &[u8]) -> u32;
    fn send_close(&mut self, handle: &[u8]) -> u32;
    fn send_open_read(&mut self, path: &[u8]) -> u32;
    fn send_read(&mut self, handle: &[u8], offset: u64, len: u32) -> u32;
    fn send_fstat(&mut self, handle: &[u8]) -> u32;
    fn send_remove(&mut self, path: &[u8]) -> u32;
    fn send_rmdir(&mut self, path: &[u8]) -> u32;
    /// Asks for the free space of the filesystem holding `path`
    /// (`statvfs@openssh.com`); `None` when the server did not offer
    /// that extension (OpenSSH's sftp-server does; others may not).
    fn send_statvfs(&mut self, path: &[u8]) -> Option<u32>;
    /// # Errors
    /// The session broke, or the server sent a malformed answer.
    fn recv(&mut self) -> Result<(u32, Response), SftpError>;
    /// Requests sent and not yet answered.
    fn outstanding(&self) -> usize;
    /// Starts hashing `paths` (full remote paths) on the server; the batch's
    /// number comes back. The first batch of a connection also finds out
    /// which hasher the account may run (see [`crate::ssh::exec::Choice`]).
    ///
    /// # Errors
    /// [`HashError::NoHasher`] when the account cannot hash files at all;
    /// the exec was refused; the session broke.
    fn hash_start(&mut self, paths: &[&[u8]]) -> Result<u32, HashError>;
    /// Waits until the first batch has shown whether the account can hash
    /// files (nothing to wait for once it has).
    ///
    /// # Errors
    /// [`HashError::NoHasher`] when it cannot; the session broke.
    fn hash_settle(&mut self) -> Result<(), HashError>;
    /// The server's SHA-256 of `path`, one of batch `batch`'s.
    ///
    /// # Errors
    /// The server did not hash that file, or the session broke.
    fn hash_of(&mut self, batch: u32, path: &[u8]) -> Result<[u8; 32], HashError>;
    /// Nothing more is wanted of batch `batch`.
    fn hash_end(&mut self, batch: u32);
}

impl Wire for SftpChannel {
    fn send_opendir(&mut self, path: &[u8]) -> u32 {
        SftpChannel::send_opendir(self, path)
    }
    fn send_readdir(&mut self, handle: &[u8]) -> u32 {
        SftpChannel::send_readdir(self, handle)
    }
    fn send_close(&mut self, handle: &[u8]) -> u32 {
        SftpChannel::send_close(self, handle)
    }
    fn send_open_read(&mut self, path: &[u8]) -> u32 {
        SftpChannel::send_open_read(self, path)
    }
    fn send_read(&mut self, handle: &[u8], offset: u64, len: u32) -> u32 {
        SftpChannel::send_read(self, handle, offset, len)
    }
    fn send_fstat(&mut self, handle: &[u8]) -> u32 {
        SftpChannel::send_fstat(self, handle)
    }
    fn send_remove(&mut self, path: &[u8]) -> u32 {
        SftpChannel::send_remove(self, path)
    }
    fn send_rmdir(&mut self, path: &[u8]) -> u32 {
        SftpChannel::send_rmdir(self, path)
    }
    fn send_statvfs(&mut self, path: &[u8]) -> Option<u32> {
        SftpChannel::send_statvfs(self, path)
    }
    fn recv(&mut self) -> Result<(u32, Response), SftpError> {
        SftpChannel::recv(self)
    }
    fn outstanding(&self) -> usize {
        SftpChannel::outstanding(self)
    }
    fn hash_start(&mut self, paths: &[&[u8]]) -> Result<u32, HashError> {
        SftpChannel::hash_start(self, paths)
    }
    fn hash_settle(&mut self) -> Result<(), HashError> {
        SftpChannel::hash_settle(self)
    }
    fn hash_of(&mut self, batch: u32, path: &[u8]) -> Result<[u8; 32], HashError> {
        SftpChannel::hash_of(self, batch, path)
    }
    fn hash_end(&mut self, batch: u32) {
        SftpChannel::hash_end(self, batch);
    }
}

/// Parses one whole answer packet: length, type, request id, body, and
/// nothing after it.
///
/// It is [`SftpChannel::recv`]'s own reader run over a slice, so the fuzz
/// target (`tests/fuzz/fuzz_targets/sftp_response.rs`) reaches every check a
/// live server's answer goes through. It allocates no more than
/// `packet.len()`, whatever counts the packet claims. The texts of its
/// errors are pinned by this module's tests; the three that say "SFTP packet
/// truncated" or "followed by ... stray bytes" come only from here, where a
/// slice rather than a stream delimits the packet.
///
/// # Errors
/// [`SftpError::Protocol`] for a packet that is truncated, of a length out
/// of range, malformed, or followed by stray bytes.
pub fn parse_packet(packet: &[u8]) -> Result<(u32, Response), SftpError> {
    let Some((prefix, rest)) = packet.split_first_chunk::<4>() else {
        return Err(protocol(format!(
            "SFTP packet truncated: needed 4 bytes for its length, {} left",
            packet.len()
        )));
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    // An out-of-range length is left to `read_response`, so it reads the
    // same as from a live channel.
    if PACKET_LEN.contains(&len) && rest.len() < len {
        return Err(protocol(format!(
            "SFTP packet truncated: its length says {}, {} follow",
            n_bytes(len),
            rest.len()
        )));
    }
    let mut stream = packet;
    let answer = read_response(&mut stream)?;
    if !stream.is_empty() {
        return Err(protocol(format!(
            "SFTP packet of {} is followed by {} stray {}",
            n_bytes(len),
            stream.len(),
            if stream.len() == 1 { "byte" } else { "bytes" }
        )));
    }
    Ok(answer)
}

/// Lengths a packet may claim: room for the type and the id (VERSION: the
/// version), and no more than [`MAX_PACKET`].
const PACKET_LEN: std::ops::RangeInclusive<usize> = 5..=MAX_PACKET;

fn protocol(message: String) -> SftpError {
    SftpError::Protocol(message)
}

/// "1 byte", "12 bytes".
fn n_bytes(n: usize) -> String {
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

/// A channel that ends mid-packet was closed by the server; io's own text
/// ("failed to fill whole buffer") would not tell the operator that.
fn closed(e: SftpError) -> SftpError {
    match e {
        SftpError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => SftpError::Io(
            io::Error::new(e.kind(), "the server closed the SFTP channel"),
        ),
        e => e,
    }
}

/// The packet's length, checked before anything is allocated for it.
fn packet_length(prefix: [u8; 4]) -> Result<usize, SftpError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if !PACKET_LEN.contains(&len) {
        return Err(protocol(format!(
            "SFTP packet length {len} is out of range ({}..={} bytes)",
            PACKET_LEN.start(),
            PACKET_LEN.end()
        )));
    }
    Ok(len)
}

/// An extension a server advertises: name and version data.
type Extension = (Vec<u8>, Vec<u8>);

/// Reads the server's VERSION packet; returns the version it speaks and
/// the extensions it offers (name, data), of which we use
/// [`STATVFS_EXTENSION`]. A malformed extension list is ignored: it only
/// means no extension is used.
fn read_version<R: Read>(r: &mut R) -> Result<(u32, Vec<Extension>), SftpError> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix)?;
    let len = packet_length(prefix)?;
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let [kind, version @ ..] = head;
    if kind != fxp::VERSION {
        return Err(protocol(format!(
            "SFTP VERSION answer expected, got type {kind}"
        )));
    }
    let mut rest = vec![0u8; len - head.len()];
    r.read_exact(&mut rest)?;
    let mut extensions = Vec::new();
    let mut reader = Reader::new(&rest, "VERSION", 0);
    while !reader.rest.is_empty() {
        let (Ok(name), Ok(data)) = (
            reader.bytes("extension name"),
            reader.bytes("extension data"),
        ) else {
            break;
        };
        extensions.push((name.to_vec(), data.to_vec()));
    }
    Ok((u32::from_be_bytes(version), extensions))
}

/// Reads one answer, consuming exactly its packet and never more, so the
/// next answer starts where this one ends.
fn read_response<R: Read>(r: &mut R) -> Result<(u32, Response), SftpError> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix)?;
    let len = packet_length(prefix)?;
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let [kind, id @ ..] = head;
    let id = u32::from_be_bytes(id);
    let Some(name) = answer_name(kind) else {
        return Err(unknown_type(kind, id));
    };
    let room = len - head.len();
    if kind != fxp::DATA {
        let mut body = vec![0u8; room];
        r.read_exact(&mut body)?;
        return Ok((id, parse_body(kind, name, id, &body)?));
    }
    // The bulk of every transfer: the payload goes straight into its own
    // buffer, no second copy.
    let mut count = [0u8; 4];
    let have = room.min(count.len());
    r.read_exact(&mut count[..have])?;
    let n = Reader::new(&count[..have], name, id).u32("data length")? as usize;
    let room = room - have;
    if n > room {
        return Err(protocol(format!(
            "SFTP DATA answer (request {id}) carries {} but its packet has room for {room}",
            n_bytes(n)
        )));
    }
    let mut data = vec![0u8; n];
    r.read_exact(&mut data)?;
    skip(r, room - n)?;
    Ok((id, Response::Data(data)))
}

/// Reads and drops `n` bytes: what a packet carries after the fields we use.
fn skip<R: Read>(r: &mut R, n: usize) -> Result<(), SftpError> {
    if n == 0 {
        return Ok(());
    }
    let want = n as u64;
    if io::copy(&mut r.take(want), &mut io::sink())? < want {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

/// The name of an answer type, as the draft spells it; `None` for any type
/// that is no answer to a request of ours.
fn answer_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        fxp::STATUS => "STATUS",
        fxp::HANDLE => "HANDLE",
        fxp::DATA => "DATA",
        fxp::NAME => "NAME",
        fxp::ATTRS => "ATTRS",
        fxp::EXTENDED_REPLY => "EXTENDED_REPLY",
        _ => return None,
    })
}

fn unknown_type(kind: u8, id: u32) -> SftpError {
    protocol(format!("unknown SFTP answer type {kind} (request {id})"))
}

/// Parses the body (after the id) of any answer but DATA, which
/// [`read_response`] frames itself.
fn parse_body(kind: u8, name: &'static str, id: u32, body: &[u8]) -> Result<Response, SftpError> {
    let mut r = Reader::new(body, name, id);
    Ok(match kind {
        fxp::STATUS => {
            let code = r.u32("status code")?;
            // Old servers omit the message and language tag, and the code
            // alone decides what happens: a missing or cut message is empty.
            let message = r
                .bytes("status message")
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_default();
            Response::Status { code, message }
        }
        fxp::HANDLE => Response::Handle(r.bytes("handle")?.to_vec()),
        fxp::ATTRS => Response::Attrs(r.attrs()?),
        fxp::EXTENDED_REPLY => Response::Extended(r.rest.to_vec()),
        fxp::NAME => {
            let count = r.u32("entry count")?;
            // Each entry takes at least 12 bytes: never trust the count.
            let mut entries = Vec::with_capacity((count as usize).min(body.len() / 12));
            for i in 0..count {
                if r.rest.is_empty() {
                    return Err(protocol(format!(
                        "SFTP NAME answer (request {id}) claims {count} {} but ends after {i}",
                        if count == 1 { "entry" } else { "entries" }
                    )));
                }
                r.entry = Some((i + 1, count));
                let name = r.bytes("file name")?.to_vec();
                let _long = r.bytes("long name")?;
                let attrs = r.attrs()?;
                entries.push(NameEntry { name, attrs });
            }
            Response::Name(entries)
        }
        _ => return Err(unknown_type(kind, id)),
    })
}

/// Bounds-checked big-endian reader over one answer's body: a short or lying
/// packet is an error that names the field it cut, never a panic.
struct Reader<'a> {
    rest: &'a [u8],
    /// The answer type's name and request id, for the message.
    answer: &'static str,
    id: u32,
    /// Inside a NAME answer: the entry being read (from 1) and the count.
    entry: Option<(u32, u32)>,
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8], answer: &'static str, id: u32) -> Reader<'a> {
        Reader {
            rest,
            answer,
            id,
            entry: None,
        }
    }

    fn truncated(&self, need: usize, field: impl fmt::Display) -> SftpError {
        let place = match self.entry {
            Some((i, count)) => format!(" in entry {i} of {count}"),
            None => String::new(),
        };
        protocol(format!(
            "SFTP {} answer (request {}) truncated{place}: needed {} for the {field}, {} left",
            self.answer,
            self.id,
            n_bytes(need),
            self.rest.len()
        ))
    }

    fn take(&mut self, n: usize, field: impl fmt::Display) -> Result<&'a [u8], SftpError> {
        match self.rest.split_at_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(head)
            }
            None => Err(self.truncated(n, field)),
        }
    }

    fn array<const N: usize>(&mut self, field: impl fmt::Display) -> Result<[u8; N], SftpError> {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(*head)
            }
            None => Err(self.truncated(N, field)),
        }
    }

    fn u32(&mut self, field: impl fmt::Display) -> Result<u32, SftpError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: impl fmt::Display) -> Result<u64, SftpError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A length-prefixed string; a cut length is reported as the
    /// "`field` length", a cut string as the `field`.
    fn bytes(&mut self, field: &str) -> Result<&'a [u8], SftpError> {
        let n = self.u32(format_args!("{field} length"))? as usize;
        self.take(n, field)
    }

    fn attrs(&mut self) -> Result<Attrs, SftpError> {
        let flags = self.u32("attribute flags")?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64("size")?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8, "owner and group")?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.perm = Some(self.u32("permissions")?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            let _atime = self.u32("access time")?;
            a.mtime = Some(self.u32("modification time")?);
        }
        if flags & ATTR_EXTENDED != 0 {
            // Each pair takes at least 8 bytes, so a lying count ends the
            // loop at the end of the packet.
            let n = self.u32("extended attribute count")?;
            for _ in 0..n {
                self.bytes("extended attribute name")?;
                self.bytes("extended attribute value")?;
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    /// The binary runs the vendored, patched libssh2 and no other: the C
    /// side of the patch answers, and with the marker the Rust side expects.
    #[test]
    fn the_linked_libssh2_is_the_patched_vendored_copy() {
        assert_eq!(super::linked_libssh2_patches(), libssh2_sys::V2X_PATCHES);
    }

    use super::*;

    fn attrs_bytes(size: u64, perm: u32, mtime: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(
            &(ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME).to_be_bytes(),
        );
        v.extend_from_slice(&size.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&perm.to_be_bytes());
        v.extend_from_slice(&1u32.to_be_bytes());
        v.extend_from_slice(&mtime.to_be_bytes());
        v
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    /// A whole packet: length, type, id, body.
    fn packet(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 5) as u32).to_be_bytes().to_vec();
        v.push(kind);
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn name_body(count: u32, entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
        let mut v = count.to_be_bytes().to_vec();
        for (name, attrs) in entries {
            v.extend(string(name));
            v.extend(string(b"-rw-r--r-- 1 v2x v2x 1234 Jan 1 00:00 x"));
            v.extend_from_slice(attrs);
        }
        v
    }

    /// The text of the error `parse_packet` gives for `packet`.
    fn error(packet: &[u8]) -> String {
        match parse_packet(packet) {
            Ok(answer) => panic!("parsed: {answer:?}"),
            Err(e @ SftpError::Protocol(_)) => e.to_string(),
            Err(e) => panic!("not a protocol error: {e}"),
        }
    }

    #[test]
    fn parses_attrs() {
        let b = attrs_bytes(1234, 0o100644, 99);
        let a = Reader::new(&b, "ATTRS", 1).attrs().unwrap();
        assert_eq!(
            a,
            Attrs {
                size: Some(1234),
                perm: Some(0o100644),
                mtime: Some(99)
            }
        );
    }

    #[test]
    fn parses_every_answer_type() {
        let mut status = 2u32.to_be_bytes().to_vec();
        status.extend(string(b"No such file"));
        status.extend(string(b"en"));
        assert_eq!(
            parse_packet(&packet(fxp::STATUS, 3, &status)).unwrap(),
            (
                3,
                Response::Status {
                    code: 2,
                    message: "No such file".into()
                }
            )
        );
        assert_eq!(
            parse_packet(&packet(fxp::HANDLE, 4, &string(b"h1"))).unwrap(),
            (4, Response::Handle(b"h1".to_vec()))
        );
        assert_eq!(
            parse_packet(&packet(fxp::DATA, 5, &string(b"csv,1\n"))).unwrap(),
            (5, Response::Data(b"csv,1\n".to_vec()))
        );
        let body = name_body(
            2,
            &[
                (b"a.csv", attrs_bytes(1, 0o100644, 7)),
                (b"b", 0u32.to_be_bytes().to_vec()),
            ],
        );
        assert_eq!(
            parse_packet(&packet(fxp::NAME, 6, &body)).unwrap(),
            (
                6,
                Response::Name(vec![
                    NameEntry {
                        name: b"a.csv".to_vec(),
                        attrs: Attrs {
                            size: Some(1),
                            perm: Some(0o100644),
                            mtime: Some(7)
                        }
                    },
                    NameEntry {
                        name: b"b".to_vec(),
                        attrs: Attrs::default()
                    },
                ])
            )
        );
        assert_eq!(
            parse_packet(&packet(fxp::ATTRS, 7, &attrs_bytes(9, 0o40755, 1))).unwrap(),
            (
                7,
                Response::Attrs(Attrs {
                    size: Some(9),
                    perm: Some(0o40755),
                    mtime: Some(1)
                })
            )
        );
    }

    #[test]
    fn a_status_without_its_message_is_accepted() {
        for body in [
            &[0, 0, 0, 1][..],
            &[0, 0, 0, 1, 0, 0],
            &[0, 0, 0, 1, 0, 0, 0, 9, b'x'],
        ] {
            assert_eq!(
                parse_packet(&packet(fxp::STATUS, 1, body)).unwrap(),
                (
                    1,
                    Response::Status {
                        code: 1,
                        message: String::new()
                    }
                )
            );
        }
    }

    #[test]
    fn bytes_after_a_whole_answer_are_ignored() {
        let mut attrs = attrs_bytes(5, 0o100600, 2);
        attrs.extend_from_slice(b"pad");
        assert!(matches!(
            parse_packet(&packet(fxp::ATTRS, 1, &attrs)),
            Ok((1, Response::Attrs(_)))
        ));
        let mut data = string(b"abc");
        data.extend_from_slice(b"trailer");
        assert_eq!(
            parse_packet(&packet(fxp::DATA, 2, &data)).unwrap(),
            (2, Response::Data(b"abc".to_vec()))
        );
        let mut ext = (ATTR_EXTENDED | ATTR_SIZE).to_be_bytes().to_vec();
        ext.extend_from_slice(&3u64.to_be_bytes());
        ext.extend_from_slice(&1u32.to_be_bytes());
        ext.extend(string(b"name@example.com"));
        ext.extend(string(b"value"));
        ext.push(0);
        assert_eq!(
            parse_packet(&packet(fxp::ATTRS, 3, &ext)).unwrap(),
            (
                3,
                Response::Attrs(Attrs {
                    size: Some(3),
                    ..Attrs::default()
                })
            )
        );
    }

    #[test]
    fn the_stream_reader_takes_exactly_one_packet_each_time() {
        // What `recv` does on a channel: a DATA answer with trailing bytes
        // must not eat into the answer after it.
        let mut data = string(b"abc");
        data.extend_from_slice(b"xy");
        let mut stream = packet(fxp::DATA, 1, &data);
        stream.extend(packet(fxp::HANDLE, 2, &string(b"h")));
        stream.extend(packet(fxp::STATUS, 3, &0u32.to_be_bytes()));
        let mut r = &stream[..];
        assert_eq!(
            read_response(&mut r).unwrap(),
            (1, Response::Data(b"abc".to_vec()))
        );
        assert_eq!(
            read_response(&mut r).unwrap(),
            (2, Response::Handle(b"h".to_vec()))
        );
        assert!(matches!(
            read_response(&mut r),
            Ok((3, Response::Status { code: 0, .. }))
        ));
        assert!(r.is_empty());
    }

    #[test]
    fn a_channel_that_ends_mid_packet_was_closed_by_the_server() {
        let p = packet(fxp::DATA, 1, &string(b"abcdef"));
        let mut r = &p[..p.len() - 2];
        let e = closed(read_response(&mut r).unwrap_err());
        assert_eq!(
            e.to_string(),
            "SSH connection: the server closed the SFTP channel"
        );
    }

    #[test]
    fn packet_length_out_of_range() {
        assert_eq!(
            error(&[0, 0, 0, 0]),
            "SFTP packet length 0 is out of range (5..=1048576 bytes)"
        );
        assert_eq!(
            error(&[0, 0, 0, 4, 101, 0, 0, 0]),
            "SFTP packet length 4 is out of range (5..=1048576 bytes)"
        );
        // Judged before the packet is read, so before anything is allocated.
        assert_eq!(
            error(&[0, 0x10, 0, 1, 103]),
            "SFTP packet length 1048577 is out of range (5..=1048576 bytes)"
        );
        assert_eq!(
            error(&[0xff, 0xff, 0xff, 0xff]),
            "SFTP packet length 4294967295 is out of range (5..=1048576 bytes)"
        );
    }

    #[test]
    fn packet_cut_or_followed_by_more() {
        assert_eq!(
            error(&[0, 0]),
            "SFTP packet truncated: needed 4 bytes for its length, 2 left"
        );
        assert_eq!(
            error(&[0, 0, 1, 44, 103, 0, 0, 0, 9, 0, 0, 0]),
            "SFTP packet truncated: its length says 300 bytes, 8 follow"
        );
        let mut p = packet(fxp::STATUS, 1, &0u32.to_be_bytes());
        p.extend_from_slice(&[1, 2, 3, 4, 5]);
        assert_eq!(
            error(&p),
            "SFTP packet of 9 bytes is followed by 5 stray bytes"
        );
        p.truncate(p.len() - 4);
        assert_eq!(
            error(&p),
            "SFTP packet of 9 bytes is followed by 1 stray byte"
        );
    }

    #[test]
    fn unknown_answer_type() {
        assert_eq!(
            error(&packet(77, 5, b"whatever")),
            "unknown SFTP answer type 77 (request 5)"
        );
        assert_eq!(
            error(&packet(fxp::VERSION, 6, &3u32.to_be_bytes())),
            "unknown SFTP answer type 2 (request 6)"
        );
    }

    #[test]
    fn statvfs_reply_gives_df_avail_and_size() {
        let fields: [u64; 11] = [4096, 1024, 1000, 600, 500, 10, 9, 8, 7, 0, 255];
        let body: Vec<u8> = fields.iter().flat_map(|f| f.to_be_bytes()).collect();
        let mut p = packet(fxp::EXTENDED_REPLY, 9, &body);
        let (id, r) = read_response(&mut &p[..]).unwrap();
        assert_eq!(id, 9);
        let Response::Extended(b) = r else {
            panic!("{r:?}")
        };
        let s = Statvfs::parse(&b).unwrap();
        assert_eq!((s.avail_bytes(), s.size_bytes()), (500 * 1024, 1000 * 1024));
        assert_eq!(Statvfs::parse(&b[..80]), None, "cut short");
        // f_frsize 0 means f_bsize.
        p = fields
            .iter()
            .enumerate()
            .flat_map(|(i, f)| if i == 1 { 0 } else { *f }.to_be_bytes())
            .collect();
        assert_eq!(Statvfs::parse(&p).unwrap().avail_bytes(), 500 * 4096);
    }

    #[test]
    fn version_answer() {
        let mut body = vec![fxp::VERSION];
        body.extend_from_slice(&3u32.to_be_bytes());
        body.extend(string(b"ext"));
        body.extend(string(b"1"));
        body.extend(string(b"statvfs@openssh.com"));
        body.extend(string(b"2"));
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend(body);
        p.extend(packet(fxp::STATUS, 1, &0u32.to_be_bytes()));
        let mut r = &p[..];
        let (version, extensions) = read_version(&mut r).unwrap();
        assert_eq!(version, 3);
        assert_eq!(
            extensions,
            [
                (b"ext".to_vec(), b"1".to_vec()),
                (b"statvfs@openssh.com".to_vec(), b"2".to_vec())
            ]
        );
        assert!(matches!(read_response(&mut r), Ok((1, _))));

        let p = packet(fxp::STATUS, 0, &[0, 0, 0, 8]);
        let e = read_version(&mut &p[..]).unwrap_err();
        assert_eq!(e.to_string(), "SFTP VERSION answer expected, got type 101");
        let e = read_version(&mut &[0u8, 0, 0, 1, fxp::VERSION][..]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SFTP packet length 1 is out of range (5..=1048576 bytes)"
        );
    }

    #[test]
    fn status_too_short_for_its_code() {
        assert_eq!(
            error(&packet(fxp::STATUS, 3, &[0, 0])),
            "SFTP STATUS answer (request 3) truncated: needed 4 bytes for the status code, 2 left"
        );
    }

    #[test]
    fn handle_cut() {
        assert_eq!(
            error(&packet(fxp::HANDLE, 2, &[0])),
            "SFTP HANDLE answer (request 2) truncated: needed 4 bytes for the handle length, 1 left"
        );
        assert_eq!(
            error(&packet(fxp::HANDLE, 2, &[0, 0, 1, 44, 1, 2, 3])),
            "SFTP HANDLE answer (request 2) truncated: needed 300 bytes for the handle, 3 left"
        );
    }

    #[test]
    fn data_longer_than_its_packet() {
        let mut body = 300_000u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0; 12]);
        assert_eq!(
            error(&packet(fxp::DATA, 9, &body)),
            "SFTP DATA answer (request 9) carries 300000 bytes but its packet has room for 12"
        );
        assert_eq!(
            error(&packet(fxp::DATA, 9, &[0, 0, 0, 1])),
            "SFTP DATA answer (request 9) carries 1 byte but its packet has room for 0"
        );
        assert_eq!(
            error(&packet(fxp::DATA, 9, &[0, 0])),
            "SFTP DATA answer (request 9) truncated: needed 4 bytes for the data length, 2 left"
        );
        assert_eq!(
            error(&packet(fxp::DATA, 9, &[])),
            "SFTP DATA answer (request 9) truncated: needed 4 bytes for the data length, 0 left"
        );
    }

    #[test]
    fn attrs_cut() {
        let b = attrs_bytes(1, 2, 3);
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &b[..7])),
            "SFTP ATTRS answer (request 4) truncated: needed 8 bytes for the size, 3 left"
        );
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &b[..1])),
            "SFTP ATTRS answer (request 4) truncated: needed 4 bytes for the attribute flags, 1 left"
        );
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &b[..14])),
            "SFTP ATTRS answer (request 4) truncated: needed 8 bytes for the owner and group, 2 left"
        );
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &b[..20])),
            "SFTP ATTRS answer (request 4) truncated: needed 4 bytes for the permissions, 0 left"
        );
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &b[..26])),
            "SFTP ATTRS answer (request 4) truncated: needed 4 bytes for the access time, 2 left"
        );
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &b[..31])),
            "SFTP ATTRS answer (request 4) truncated: needed 4 bytes for the modification time, 3 left"
        );
        let mut ext = ATTR_EXTENDED.to_be_bytes().to_vec();
        ext.extend_from_slice(&[0, 0, 0, 2]);
        ext.extend(string(b"a"));
        ext.extend(string(b"b"));
        ext.extend_from_slice(&[0, 0, 0, 5, b'x']);
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &ext)),
            "SFTP ATTRS answer (request 4) truncated: needed 5 bytes for the extended attribute name, 1 left"
        );
        ext.truncate(8);
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &ext)),
            "SFTP ATTRS answer (request 4) truncated: needed 4 bytes for the extended attribute name length, 0 left"
        );
        assert_eq!(
            error(&packet(fxp::ATTRS, 4, &ext[..6])),
            "SFTP ATTRS answer (request 4) truncated: needed 4 bytes for the extended attribute count, 2 left"
        );
    }

    #[test]
    fn name_with_fewer_entries_than_it_claims() {
        let entry = (&b"f"[..], attrs_bytes(1, 0o100644, 1));
        let body = name_body(100, &[entry.clone(), entry.clone(), entry]);
        assert_eq!(
            error(&packet(fxp::NAME, 17, &body)),
            "SFTP NAME answer (request 17) claims 100 entries but ends after 3"
        );
        assert_eq!(
            error(&packet(fxp::NAME, 17, &[0, 0, 0, 1])),
            "SFTP NAME answer (request 17) claims 1 entry but ends after 0"
        );
        assert_eq!(
            error(&packet(fxp::NAME, 17, &[0, 0, 1])),
            "SFTP NAME answer (request 17) truncated: needed 4 bytes for the entry count, 3 left"
        );
    }

    #[test]
    fn name_cut_inside_an_entry() {
        let body = name_body(
            2,
            &[
                (b"a", attrs_bytes(1, 0o100644, 1)),
                (b"b", attrs_bytes(1, 0o100644, 1)),
            ],
        );
        let second = body.len() - (body.len() - 4) / 2;
        assert_eq!(
            error(&packet(fxp::NAME, 17, &body[..second + 2])),
            "SFTP NAME answer (request 17) truncated in entry 2 of 2: needed 4 bytes for the file name length, 2 left"
        );
        assert_eq!(
            error(&packet(fxp::NAME, 17, &body[..second + 4])),
            "SFTP NAME answer (request 17) truncated in entry 2 of 2: needed 1 byte for the file name, 0 left"
        );
        assert_eq!(
            error(&packet(fxp::NAME, 17, &body[..second + 7])),
            "SFTP NAME answer (request 17) truncated in entry 2 of 2: needed 4 bytes for the long name length, 2 left"
        );
        assert_eq!(
            error(&packet(fxp::NAME, 17, &body[..second + 20])),
            "SFTP NAME answer (request 17) truncated in entry 2 of 2: needed 39 bytes for the long name, 11 left"
        );
        assert_eq!(
            error(&packet(fxp::NAME, 17, &body[..body.len() - 1])),
            "SFTP NAME answer (request 17) truncated in entry 2 of 2: needed 4 bytes for the modification time, 3 left"
        );
    }

    #[test]
    fn the_fuzz_seeds_are_valid_answers() {
        // Seeds that fail to parse would start the fuzzer outside the body
        // parsers (tests/fuzz/make-sftp-seeds writes them).
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz/seeds/sftp_response"
        );
        let mut kinds = std::collections::HashSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let (_, answer) = parse_packet(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            kinds.insert(std::mem::discriminant(&answer));
        }
        assert_eq!(kinds.len(), 5, "one seed of each answer type");
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let b = attrs_bytes(1, 2, 3);
        for cut in 0..b.len() {
            assert!(Reader::new(&b[..cut], "ATTRS", 1).attrs().is_err(), "{cut}");
        }
        let mut r = Reader::new(&[0, 0, 0, 9, 1], "HANDLE", 1);
        assert!(r.bytes("handle").is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff], "HANDLE", 1);
        assert!(r.bytes("handle").is_err());
        // Every cut of every answer type: a protocol error, never a read
        // past the slice.
        let name = name_body(1, &[(b"a", attrs_bytes(1, 2, 3))]);
        for p in [
            packet(fxp::HANDLE, 1, &string(b"handle")),
            packet(fxp::DATA, 1, &string(b"data")),
            packet(fxp::NAME, 1, &name),
            packet(fxp::ATTRS, 1, &b),
        ] {
            for cut in 0..p.len() {
                error(&p[..cut]);
            }
        }
    }
}
