//! The coprocessor hashes its own files: `sha256sum` over an SSH exec
//! channel, beside the SFTP channel of the same session.
//!
//! **No remote name ever reaches a shell.** The command line is one of two
//! constants ([`Tool::command`]); the names go to its standard input,
//! NUL-terminated, and `xargs -0` hands them to the hasher as arguments, so
//! quotes, `$()`, newlines and a leading `-` are bytes of a file name and
//! nothing else (the paths are absolute, and a relative one is given a
//! leading `./`, so none can be read as an option either). `sha256sum`
//! prints a name that holds a backslash or a newline in its escaped form (a
//! leading `\`), which [`parse_line`] undoes.
//!
//! **Which hasher**: coreutils' `sha256sum` uses no SHA instructions (about
//! 4 s of CPU per GiB on the build machine), while `openssl dgst -sha256`
//! uses them where the CPU has them (about 0.7 s per GiB): the coprocessor is
//! busy recording traffic, so OpenSSL is asked first and `sha256sum` is the
//! fallback. Both print the same `HASH  NAME` / `HASH *NAME` lines.
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
//! shell of `/bin/false`, no `sha256sum`) is found out by the first batch
//! ([`Choice`]): the caller then falls back to checking sizes
//! (`verify = "auto"`) or stops (`verify = "sha256"`).

use std::collections::HashMap;
use std::io::{Read, Write};

use ssh2::{Channel, Session};

use crate::ssh::sftp::SftpError;

/// What hashes files on the coprocessor; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    OpenSsl,
    Sha256sum,
}

impl Tool {
    /// The whole command line (`xargs -r`: nothing to hash, nothing run).
    /// `nice -n 19`: the coprocessor's own work (the MMITSS applications
    /// answering vehicles) comes before our check; `nice` is coreutils and
    /// BusyBox, wherever `xargs` is.
    pub fn command(self) -> &'static str {
        match self {
            Tool::OpenSsl => "nice -n 19 xargs -0 -r openssl dgst -sha256 -r",
            Tool::Sha256sum => "nice -n 19 xargs -0 -r sha256sum --",
        }
    }
}
/// SHA-256 of no bytes: what `/dev/null` hashes to, the first batch's check.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Most of a failing hasher's stderr kept for the message.
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
    /// This account cannot hash files at all (no hasher works: exec
    /// refused, a forced `internal-sftp`, no `openssl` nor `sha256sum`).
    #[error("this account cannot hash files on the coprocessor ({0})")]
    NoHasher(String),
}

/// The hashers tried, in order.
const TOOLS: [Tool; 2] = [Tool::OpenSsl, Tool::Sha256sum];

/// Which [`Tool`] this account may run, found out by the first batch itself
/// rather than by a probe of its own: that batch hashes `/dev/null` before
/// its files, and the hash of nothing coming back right confirms the tool.
/// A separate probe cost a slow link three round trips (channel open, exec,
/// answer) before the first file was even asked for; the first batch's
/// answer is read while the files' data is already on its way.
#[derive(Debug, Default)]
pub enum Choice {
    /// No batch started yet.
    #[default]
    Untried,
    /// Batch `batch` runs `TOOLS[tool]` with `/dev/null` first; `why`
    /// holds what the tools before it said.
    Trying {
        batch: u32,
        tool: usize,
        paths: Vec<Vec<u8>>,
        why: Vec<String>,
    },
    Chosen(Tool),
    /// Neither tool works for this account, and why.
    Unusable(String),
}

impl Choice {
    /// Starts batch number `batch` over `paths`: with the chosen tool, or,
    /// when none is chosen yet, with the first tool whose exec is accepted,
    /// `/dev/null` first ([`Choice::settle`] then reads that answer).
    ///
    /// # Errors
    /// [`HashError::NoHasher`] when no tool can be started (or none worked
    /// before); a refused exec of a chosen tool and a broken session as for
    /// [`HashBatch::start`].
    pub fn start(
        &mut self,
        session: &Session,
        batch: u32,
        paths: &[&[u8]],
    ) -> Result<HashBatch, HashError> {
        match self {
            Choice::Chosen(tool) => HashBatch::start(session, *tool, paths),
            Choice::Unusable(why) => Err(HashError::NoHasher(why.clone())),
            Choice::Trying { .. } => Err(HashError::Unavailable(
                "a hash batch was started before the hasher was settled (a bug, please report it)"
                    .into(),
            )),
            Choice::Untried => {
                let paths: Vec<Vec<u8>> = paths.iter().map(|p| p.to_vec()).collect();
                self.try_from(session, batch, 0, paths, Vec::new())
            }
        }
    }

    /// The batch whose `/dev/null` answer is still to be read.
    pub fn trying(&self) -> Option<u32> {
        match self {
            Choice::Trying { batch, .. } => Some(*batch),
            _ => None,
        }
    }

    /// Reads the `/dev/null` answer of the batch being tried (`current`),
    /// replacing it with the next tool's run over the same files while the
    /// answer is wrong. Does nothing once a tool is chosen.
    ///
    /// # Errors
    /// [`HashError::NoHasher`] when no tool works for this account; a
    /// broken session.
    pub fn settle(&mut self, session: &Session, current: &mut HashBatch) -> Result<(), HashError> {
        loop {
            let (batch, tool, paths, mut why) = match std::mem::take(self) {
                Choice::Trying {
                    batch,
                    tool,
                    paths,
                    why,
                } => (batch, tool, paths, why),
                Choice::Unusable(why) => {
                    *self = Choice::Unusable(why.clone());
                    return Err(HashError::NoHasher(why));
                }
                other => {
                    *self = other;
                    return Ok(());
                }
            };
            let cmd = TOOLS[tool].command();
            match current.hash_of(b"/dev/null") {
                Ok(h) if hex(&h) == EMPTY_SHA256 => {
                    tracing::debug!(command = cmd, "the coprocessor hashes files");
                    *self = Choice::Chosen(TOOLS[tool]);
                    return Ok(());
                }
                Ok(h) => why.push(format!(
                    "`{cmd}` hashed /dev/null as {} instead of {EMPTY_SHA256}",
                    hex(&h)
                )),
                Err(HashError::Session(e)) => return Err(HashError::Session(e)),
                Err(e) => why.push(format!("`{cmd}` does not work for this account: {e}")),
            }
            *current = self.try_from(session, batch, tool + 1, paths, why)?;
        }
    }

    /// Starts `paths` with `TOOLS[first..]` in turn until an exec is
    /// accepted.
    fn try_from(
        &mut self,
        session: &Session,
        batch: u32,
        first: usize,
        paths: Vec<Vec<u8>>,
        mut why: Vec<String>,
    ) -> Result<HashBatch, HashError> {
        for (tool, t) in TOOLS.iter().enumerate().skip(first) {
            let names: Vec<&[u8]> = std::iter::once(b"/dev/null".as_slice())
                .chain(paths.iter().map(Vec::as_slice))
                .collect();
            match HashBatch::start(session, *t, &names) {
                Ok(b) => {
                    *self = Choice::Trying {
                        batch,
                        tool,
                        paths,
                        why,
                    };
                    return Ok(b);
                }
                Err(HashError::Unavailable(e)) => {
                    why.push(format!("cannot run `{}`: {e}", t.command()));
                }
                // A broken session: this connection is done with.
                Err(e) => return Err(e),
            }
        }
        let why = why.join("; ");
        *self = Choice::Unusable(why.clone());
        Err(HashError::NoHasher(why))
    }
}

/// The server refused the channel or the command (`MaxSessions` reached, a
/// forced command, a policy): this batch's trouble. Anything else (a
/// timeout, a socket error) is the session's: the pass reconnects rather
/// than wait out every further call.
fn refused_or_broken(e: ssh2::Error) -> HashError {
    // libssh2: LIBSSH2_ERROR_CHANNEL_FAILURE, LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED.
    const CHANNEL_FAILURE: i32 = -21;
    const REQUEST_DENIED: i32 = -22;
    match e.code() {
        ssh2::ErrorCode::Session(CHANNEL_FAILURE | REQUEST_DENIED) => {
            HashError::Unavailable(format!("the coprocessor refused to run it: {e}"))
        }
        _ => HashError::Session(SftpError::from(e)),
    }
}

/// A name as a hasher printed it, and whether its line said it is escaped.
pub type Printed = (bool, Vec<u8>);

/// One `sha256sum` run over a batch of remote files.
pub struct HashBatch {
    /// `None` once its output ended.
    channel: Option<Channel>,
    /// Output read and not yet a whole line.
    partial: Vec<u8>,
    results: HashMap<Vec<u8>, [u8; 32]>,
    /// Each name asked for, by the ways the hasher may print it
    /// ([`printed_forms`]); `None` where two names print alike.
    expected: Expected,
    stderr: String,
}

impl HashBatch {
    /// Opens an exec channel, runs `tool` and sends it `paths`.
    ///
    /// # Errors
    /// The channel or the exec was refused, or the session broke.
    pub fn start(session: &Session, tool: Tool, paths: &[&[u8]]) -> Result<HashBatch, HashError> {
        let mut channel = session.channel_session().map_err(refused_or_broken)?;
        channel.exec(tool.command()).map_err(refused_or_broken)?;
        let mut input = Vec::new();
        let mut expected = HashMap::new();
        for &p in paths {
            // Never an option: a relative path gets a leading `./`.
            let given = if p.starts_with(b"/") {
                p.to_vec()
            } else {
                [b"./".as_slice(), p].concat()
            };
            input.extend_from_slice(&given);
            input.push(0);
            expect(&mut expected, p, &given);
        }
        channel
            .write_all(&input)
            .map_err(|e| HashError::Session(SftpError::from(e)))?;
        channel.send_eof().map_err(refused_or_broken)?;
        Ok(HashBatch {
            channel: Some(channel),
            partial: Vec::new(),
            results: HashMap::new(),
            expected,
            stderr: String::new(),
        })
    }

    /// The coprocessor's SHA-256 of `path` (one of the batch's), reading
    /// its output as far as needed.
    ///
    /// # Errors
    /// [`HashError::Unavailable`] when the output ended without it (with
    /// what the hasher said), a broken session.
    pub fn hash_of(&mut self, path: &[u8]) -> Result<[u8; 32], HashError> {
        loop {
            if let Some(h) = self.results.get(path) {
                return Ok(*h);
            }
            if !self.read_more()? {
                let said = self.stderr.trim();
                return Err(HashError::Unavailable(if said.is_empty() {
                    "no hash for it in the hasher's output".into()
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
            if let Some((printed, hash)) = parse_line(&line[..line.len() - 1])
                && let Some(Some(name)) = self.expected.get(&printed)
            {
                self.results.insert(name.clone(), hash);
            }
        }
        Ok(true)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Names a hasher's output may print, and the name each stands for.
type Expected = HashMap<Printed, Option<Vec<u8>>>;

/// Records the ways the hasher may print `given` (how `name` was passed to
/// it) as standing for `name`; a form two names share stands for neither.
fn expect(expected: &mut Expected, name: &[u8], given: &[u8]) {
    for printed in printed_forms(given) {
        expected
            .entry(printed)
            .and_modify(|n| {
                if n.as_deref() != Some(name) {
                    *n = None;
                }
            })
            .or_insert_with(|| Some(name.to_vec()));
    }
}

/// How a hasher may print `name`: as it is, or, when it holds a newline,
/// a carriage return or a backslash, after a leading `\` with `\n`, `\r`
/// and `\\` escaped (GNU `sha256sum`; 8.x leaves `\r` as it is) or with
/// only the newline escaped (OpenSSL 3's `dgst -r`). The output is matched
/// against these forms of the names asked for, never unescaped, so a
/// printed name that two names could give is trusted for neither.
fn printed_forms(name: &[u8]) -> Vec<Printed> {
    let special = |b: &u8| matches!(b, b'\n' | b'\r' | b'\\');
    if !name.iter().any(special) {
        return vec![(false, name.to_vec())];
    }
    let escape = |set: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(name.len() + 4);
        for &b in name {
            match b {
                b'\n' if set.contains(&b) => out.extend_from_slice(b"\\n"),
                b'\r' if set.contains(&b) => out.extend_from_slice(b"\\r"),
                b'\\' if set.contains(&b) => out.extend_from_slice(b"\\\\"),
                b => out.push(b),
            }
        }
        out
    };
    let mut forms = vec![
        (true, escape(b"\n\r\\")),
        (true, escape(b"\n\\")),
        (true, escape(b"\n")),
    ];
    if !name.contains(&b'\n') {
        // No newline: OpenSSL prints it as it is.
        forms.push((false, name.to_vec()));
    }
    forms.sort();
    forms.dedup();
    forms
}

/// One line of hasher output (without its newline): `HASH  NAME` or
/// `HASH *NAME`, either after a `\` that says NAME is escaped. Gives NAME as
/// printed, whether it was marked escaped, and the hash; `None` for
/// anything else.
pub fn parse_line(line: &[u8]) -> Option<(Printed, [u8; 32])> {
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
    Some(((escaped, line[66..].to_vec()), hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `line` leads among the names asked for.
    fn resolve(names: &[&[u8]], line: &str) -> Option<Vec<u8>> {
        let mut expected = Expected::new();
        for &n in names {
            expect(&mut expected, n, n);
        }
        let (printed, _) = parse_line(line.as_bytes())?;
        expected.get(&printed).cloned().flatten()
    }

    #[test]
    fn lines_of_both_hashers_lead_to_the_exact_name_and_ambiguity_to_none() {
        let h = EMPTY_SHA256;
        let names: [&[u8]; 4] = [b"/a/b c.csv", b"/a/x\ny\\z", b"/a/back\\slash", b"/-x"];
        // sha256sum
        assert_eq!(
            resolve(&names, &format!("{h}  /a/b c.csv")).unwrap(),
            names[0]
        );
        assert_eq!(
            resolve(&names, &format!("\\{h}  /a/x\\ny\\\\z")).unwrap(),
            names[1]
        );
        assert_eq!(
            resolve(&names, &format!("\\{h}  /a/back\\\\slash")).unwrap(),
            names[2]
        );
        // openssl dgst -r: a newline escaped, a backslash not.
        assert_eq!(
            resolve(&names, &format!("\\{h} */a/x\\ny\\z")).unwrap(),
            names[1]
        );
        assert_eq!(
            resolve(&names, &format!("{h} */a/back\\slash")).unwrap(),
            names[2]
        );
        assert_eq!(resolve(&names, &format!("{h} */-x")).unwrap(), names[3]);
        // Not output lines.
        assert!(parse_line(b"sha256sum: /a: No such file or directory").is_none());
        assert!(parse_line(format!("{h}_ /a").as_bytes()).is_none());
        // "x<newline>\n" and "x\\n<newline>"... two names OpenSSL prints
        // alike: neither is trusted.
        let twins: [&[u8]; 2] = [b"/a/p\nq\\nr", b"/a/p\\nq\nr"];
        assert_eq!(resolve(&twins, &format!("\\{h} */a/p\\nq\\nr")), None);
        // A name nobody asked for.
        assert_eq!(resolve(&names, &format!("{h}  /etc/passwd")), None);
    }
}
