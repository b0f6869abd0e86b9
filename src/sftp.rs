//! The SFTP version 3 wire protocol (draft-ietf-secsh-filexfer-02), spoken
//! over an SSH channel that libssh2 encrypts and carries.
//!
//! libssh2's own SFTP layer allows one request of each kind in flight per
//! channel, so every small file costs open, read, stat, close and remove
//! round trips one after another: on a 40 ms link that is the whole night.
//! Speaking the protocol ourselves lets [`crate::pipeline`] keep requests
//! for many files in flight at once, the way OpenSSH's `sftp` pipelines
//! reads, while libssh2 still does everything cryptographic.
//!
//! This module only frames requests and parses responses; it never decides
//! what to fetch or delete. Requests are queued with the `send_*` methods
//! (each returns its request id) and go out on [`SftpChannel::flush`];
//! [`SftpChannel::recv`] returns the next response. A server answers a
//! channel's requests in order, but callers match responses by id.

use std::io::{self, Read, Write};

use ssh2::{Channel, Session};

#[cfg(any(test, feature = "fault-injection"))]
pub mod scripted;

/// Bulk reads are only fast with the vendored libssh2 that decrypts a
/// packet in one call rather than 16 bytes at a time (about 40% of the
/// client's CPU on a 1 GiB file; vendor/libssh2-sys/PATCHES.md). Naming its
/// marker here makes a build against the unpatched crate fail loudly.
const _LIBSSH2_PATCHES: &str = libssh2_sys::V2X_PATCHES;

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
    #[error("malformed SFTP packet from the server: {0}")]
    Protocol(&'static str),
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
    Status { code: u32, message: String },
    Handle(Vec<u8>),
    Data(Vec<u8>),
    Name(Vec<NameEntry>),
    Attrs(Attrs),
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
}

impl SftpChannel {
    /// Opens the `sftp` subsystem and negotiates version 3.
    pub fn start(session: &Session) -> Result<SftpChannel, SftpError> {
        let mut channel = session.channel_open("session", WINDOW, 32_768, None)?;
        channel.subsystem("sftp")?;
        let mut me = SftpChannel {
            channel,
            next_id: 1,
            out: Vec::with_capacity(64 << 10),
            outstanding: 0,
        };
        // INIT carries a version, not an id.
        me.out.extend_from_slice(&5u32.to_be_bytes());
        me.out.push(fxp::INIT);
        me.out.extend_from_slice(&3u32.to_be_bytes());
        me.flush()?;
        let (kind, body) = me.read_packet()?;
        if kind != fxp::VERSION || body.len() < 4 {
            return Err(SftpError::Protocol("expected VERSION"));
        }
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

    /// Sends every queued request.
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
    pub fn recv(&mut self) -> Result<(u32, Response), SftpError> {
        self.flush()?;
        let mut head = [0u8; 9];
        self.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = head[4];
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        if !(5..=MAX_PACKET).contains(&len) {
            return Err(SftpError::Protocol("packet length out of range"));
        }
        let rest = len - 5;
        let response = if kind == fxp::DATA {
            // The bulk of every transfer: read the payload straight into
            // its own buffer, no second copy.
            let mut n = [0u8; 4];
            if rest < 4 {
                return Err(SftpError::Protocol("truncated packet"));
            }
            self.read_exact(&mut n)?;
            let n = u32::from_be_bytes(n) as usize;
            if n != rest - 4 {
                return Err(SftpError::Protocol(
                    "DATA length disagrees with packet length",
                ));
            }
            let mut data = vec![0u8; n];
            self.read_exact(&mut data)?;
            Response::Data(data)
        } else {
            let mut body = vec![0u8; rest];
            self.read_exact(&mut body)?;
            parse_response(kind, &body)?
        };
        self.outstanding = self.outstanding.saturating_sub(1);
        Ok((id, response))
    }

    fn read_packet(&mut self) -> Result<(u8, Vec<u8>), SftpError> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(SftpError::Protocol("packet length out of range"));
        }
        let mut kind = [0u8; 1];
        self.read_exact(&mut kind)?;
        let mut body = vec![0u8; len - 1];
        self.read_exact(&mut body)?;
        Ok((kind[0], body))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SftpError> {
        match self.channel.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(SftpError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the SFTP channel",
                )))
            }
            Err(e) => Err(SftpError::Io(e)),
        }
    }

    /// One request, waiting for its answer; only when nothing else is in flight.
    pub fn call(&mut self, id: u32) -> Result<Response, SftpError> {
        loop {
            let (got, response) = self.recv()?;
            if got == id {
                return Ok(response);
            }
        }
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
    /// # Errors
    /// The session broke, or the server sent a malformed answer.
    fn recv(&mut self) -> Result<(u32, Response), SftpError>;
    /// Requests sent and not yet answered.
    fn outstanding(&self) -> usize;
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
    fn recv(&mut self) -> Result<(u32, Response), SftpError> {
        SftpChannel::recv(self)
    }
    fn outstanding(&self) -> usize {
        SftpChannel::outstanding(self)
    }
}

/// Parses a response body after its id.
fn parse_response(kind: u8, body: &[u8]) -> Result<Response, SftpError> {
    let mut r = Reader(body);
    Ok(match kind {
        fxp::STATUS => {
            let code = r.u32()?;
            // Old servers may omit the message and language tag.
            let message = r
                .bytes()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_default();
            Response::Status { code, message }
        }
        fxp::HANDLE => Response::Handle(r.bytes()?.to_vec()),
        fxp::DATA => Response::Data(r.bytes()?.to_vec()),
        fxp::ATTRS => Response::Attrs(r.attrs()?),
        fxp::NAME => {
            let count = r.u32()? as usize;
            // Each entry takes at least 12 bytes: never trust the count.
            let mut entries = Vec::with_capacity(count.min(body.len() / 12));
            for _ in 0..count {
                let name = r.bytes()?.to_vec();
                let _long = r.bytes()?;
                let attrs = r.attrs()?;
                entries.push(NameEntry { name, attrs });
            }
            Response::Name(entries)
        }
        _ => return Err(SftpError::Protocol("unknown response type")),
    })
}

/// Bounds-checked big-endian reader: a short or lying packet is an error,
/// never a panic.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SftpError> {
        if self.0.len() < n {
            return Err(SftpError::Protocol("truncated packet"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, SftpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, SftpError> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], SftpError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn attrs(&mut self) -> Result<Attrs, SftpError> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.perm = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            let _atime = self.u32()?;
            a.mtime = Some(self.u32()?);
        }
        if flags & ATTR_EXTENDED != 0 {
            let n = self.u32()?;
            for _ in 0..n {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn parses_attrs() {
        let b = attrs_bytes(1234, 0o100644, 99);
        let a = Reader(&b).attrs().unwrap();
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
    fn truncated_input_is_an_error_not_a_panic() {
        let b = attrs_bytes(1, 2, 3);
        for cut in 0..b.len() {
            assert!(Reader(&b[..cut]).attrs().is_err(), "{cut}");
        }
        let mut r = Reader(&[0, 0, 0, 9, 1]);
        assert!(r.bytes().is_err());
        let mut r = Reader(&[0xff, 0xff, 0xff, 0xff]);
        assert!(r.bytes().is_err());
    }
}
