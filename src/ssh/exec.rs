//! The coprocessor hashes its own files: `sha256sum` over an SSH exec
//! channel, beside the SFTP channel of the same session.
//!
//! **No remote name ever reaches a shell.** The command line is the constant
//! [`HASH_COMMAND`]; the names go to its standard input, NUL-terminated,
//! and `xargs -0` hands them to `sha256sum` as arguments after `--`, so
//! quotes, `$()`, newlines and a leading `-` are bytes of a file name and
//! nothing else. `sha256sum` prints a name that holds a backslash or a
//! newline in its escaped form (a leading `\`), which [`parse_line`] undoes.
//!
//! One exec channel hashes a batch of files (the caller sends the files it
//! is about to read, a folder's worth or more, in the order it reads them),
//! so the coprocessor hashes while SFTP carries the data, and the hash of a
//! file is usually there by the time its last byte is: reading it
//! ([`HashBatch::hash_of`]) then costs nothing. Opening the channel costs two
//! round trips (open, exec), during which the SFTP requests in flight keep
//! coming.
//!
//! An account that may not run commands (`ForceCommand internal-sftp`, a
//! shell of `/bin/false`, no `sha256sum`) fails [`probe`]: the caller then
//! falls back to checking sizes (`verify = "auto"`) or stops
//! (`verify = "sha256"`).

use std::collections::HashMap;
use std::io::{Read, Write};

use ssh2::{Channel, Session};

use crate::ssh::sftp::SftpError;

/// The one command run on the coprocessor. `-r`: nothing to hash, nothing run.
pub const HASH_COMMAND: &str = "xargs -0 -r sha256sum --";
/// SHA-256 of no bytes: what `/dev/null` hashes to, the probe's answer.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Most of a failing `sha256sum`'s stderr kept for the message.
const MAX_STDERR: usize = 2048;

/// Why a file has no remote hash.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The coprocessor did not hash it (it vanished, it is unreadable, the
    /// command failed): that file's trouble.
    #[error("the coprocessor could not hash it: {0}")]
    Unavailable(String),
    /// The SSH session broke.
    #[error(transparent)]
    Session(#[from] SftpError),
}

/// Whether the account may run [`HASH_COMMAND`]: it hashes `/dev/null` and
/// must print the hash of nothing. `Err` says why not, for the log.
///
/// # Errors
/// The text of what failed, for the operator: the exec was refused, the
/// command printed something else (a forced `internal-sftp` reads the
/// names as SFTP packets and prints nothing).
pub fn probe(session: &Session) -> Result<(), String> {
    let mut batch = HashBatch::start(session, &[b"/dev/null".as_slice()])
        .map_err(|e| format!("cannot run `{HASH_COMMAND}`: {e}"))?;
    match batch.hash_of(b"/dev/null") {
        Ok(h) if hex(&h) == EMPTY_SHA256 => Ok(()),
        Ok(h) => Err(format!(
            "`{HASH_COMMAND}` hashed /dev/null as {} instead of {EMPTY_SHA256}",
            hex(&h)
        )),
        Err(e) => Err(format!(
            "`{HASH_COMMAND}` does not work for this account: {e}"
        )),
    }
}

/// One `sha256sum` run over a batch of remote files.
pub struct HashBatch {
    /// `None` once its output ended.
    channel: Option<Channel>,
    /// Output read and not yet a whole line.
    partial: Vec<u8>,
    results: HashMap<Vec<u8>, [u8; 32]>,
    stderr: String,
}

impl HashBatch {
    /// Opens an exec channel, runs [`HASH_COMMAND`] and sends it `paths`.
    ///
    /// # Errors
    /// The channel or the exec was refused, or the session broke.
    pub fn start(session: &Session, paths: &[&[u8]]) -> Result<HashBatch, HashError> {
        // A refusal here is this batch's: if the session itself broke, the
        // next SFTP request says so.
        let refused =
            |e: &dyn std::fmt::Display| HashError::Unavailable(format!("exec refused: {e}"));
        let mut channel = session.channel_session().map_err(|e| refused(&e))?;
        channel.exec(HASH_COMMAND).map_err(|e| refused(&e))?;
        let mut input = Vec::new();
        for p in paths {
            input.extend_from_slice(p);
            input.push(0);
        }
        channel.write_all(&input).map_err(|e| refused(&e))?;
        channel.send_eof().map_err(|e| refused(&e))?;
        Ok(HashBatch {
            channel: Some(channel),
            partial: Vec::new(),
            results: HashMap::new(),
            stderr: String::new(),
        })
    }

    /// The coprocessor's SHA-256 of `path` (one of the batch's), reading
    /// its output as far as needed.
    ///
    /// # Errors
    /// [`HashError::Unavailable`] when the output ended without it (with
    /// what `sha256sum` said), a broken session.
    pub fn hash_of(&mut self, path: &[u8]) -> Result<[u8; 32], HashError> {
        loop {
            if let Some(h) = self.results.get(path) {
                return Ok(*h);
            }
            if !self.read_more()? {
                let said = self.stderr.trim();
                return Err(HashError::Unavailable(if said.is_empty() {
                    "no hash in the output of sha256sum".into()
                } else {
                    said.to_string()
                }));
            }
        }
    }

    /// Reads the rest of the output, so the channel closes.
    ///
    /// # Errors
    /// The session broke.
    pub fn finish(&mut self) -> Result<(), HashError> {
        while self.read_more()? {}
        Ok(())
    }

    /// Whether the channel is still open.
    pub fn open(&self) -> bool {
        self.channel.is_some()
    }

    /// Reads one block of output; false at its end.
    fn read_more(&mut self) -> Result<bool, HashError> {
        let Some(channel) = self.channel.as_mut() else {
            return Ok(false);
        };
        let mut buf = [0u8; 16 << 10];
        let n = channel
            .read(&mut buf)
            .map_err(|e| HashError::Session(SftpError::from(e)))?;
        if n == 0 {
            let mut err = Vec::new();
            let _ = channel
                .stderr()
                .take(MAX_STDERR as u64)
                .read_to_end(&mut err);
            self.stderr = String::from_utf8_lossy(&err).into_owned();
            // Dropping the channel closes it (the remote side has ended).
            self.channel = None;
            return Ok(false);
        }
        self.partial.extend_from_slice(&buf[..n]);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            if let Some((name, hash)) = parse_line(&line[..line.len() - 1]) {
                self.results.insert(name, hash);
            }
        }
        Ok(true)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line of `sha256sum` output (without its newline): `HASH  NAME`, or
/// `\HASH  NAME` with `\\`, `\n` and `\r` escaped in NAME. `None` for
/// anything else.
pub fn parse_line(line: &[u8]) -> Option<(Vec<u8>, [u8; 32])> {
    let (escaped, line) = match line.strip_prefix(b"\\") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let hex = line.get(..64)?;
    let sep = line.get(64..66)?;
    if sep != b"  " && sep != b" *" {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        hash[i] = u8::from_str_radix(text, 16).ok()?;
    }
    let raw = &line[66..];
    if !escaped {
        return Some((raw.to_vec(), hash));
    }
    let mut name = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            name.push(b);
            continue;
        }
        match bytes.next()? {
            b'\\' => name.push(b'\\'),
            b'n' => name.push(b'\n'),
            b'r' => name.push(b'\r'),
            _ => return None,
        }
    }
    Some((name, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_escaped_lines_parse_to_the_exact_name() {
        let h = EMPTY_SHA256;
        let (n, d) = parse_line(format!("{h}  /a/b c.csv").as_bytes()).unwrap();
        assert_eq!(n, b"/a/b c.csv");
        assert_eq!(hex(&d), h);
        let (n, _) = parse_line(format!("\\{h}  /a/x\\ny\\\\z\\r").as_bytes()).unwrap();
        assert_eq!(n, b"/a/x\ny\\z\r");
        let (n, _) = parse_line(format!("{h} */-x").as_bytes()).unwrap();
        assert_eq!(n, b"/-x");
        assert!(parse_line(b"sha256sum: /a: No such file or directory").is_none());
        assert!(parse_line(format!("\\{h}  /a\\q").as_bytes()).is_none());
        assert!(parse_line(format!("{h}_ /a").as_bytes()).is_none());
    }
}
