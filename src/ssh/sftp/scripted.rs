//! A scripted SFTP server, in process, for the transfer engine's tests.
//!
//! Real OpenSSH stays the judge of what a real server does (`tests/`); this
//! plays what no real server does on purpose: answers out of order, short,
//! empty and oversized DATA, names after the end of a listing, a name listed
//! twice, a listing that never ends, a REMOVE or RMDIR that fails, a file
//! whose listed and FSTAT size understate what it holds. Every request is
//! logged, and at every REMOVE the server checks the engine's invariant
//! itself: the local data folder must already hold a file with exactly the
//! bytes of the remote file being removed.
//!
//! Compiled for unit tests and with the `fault-injection` feature that the
//! test suite builds with; never in a shipped binary.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::{Attrs, NameEntry, Response, SftpError, Wire, status};
use crate::ssh::exec::HashError;

const FILE: u32 = 0o100_644;
const DIR: u32 = 0o040_755;

/// One remote entry.
#[derive(Debug, Clone)]
pub enum Node {
    Dir { mtime: u32 },
    File { data: Vec<u8>, mtime: u32 },
}

/// What the server does wrong. Paths are full remote paths.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answers the queued requests in a shuffled order.
    pub reorder: bool,
    /// DATA answers carry at most this many bytes (short reads).
    pub max_data: Option<usize>,
    /// READs of these files answer one byte more than asked.
    pub oversized: HashSet<Vec<u8>>,
    /// READs of these files answer DATA with no bytes.
    pub empty_data: HashSet<Vec<u8>>,
    /// Folders keep answering READDIR with their names again after EOF.
    pub names_after_eof: bool,
    /// Every NAME answer lists each name twice.
    pub duplicate_names: bool,
    /// REMOVE of these files answers FAILURE (the file stays).
    pub fail_remove: HashSet<Vec<u8>>,
    /// Every RMDIR answers FAILURE.
    pub fail_rmdir: bool,
    /// Listing and FSTAT give this size instead of the true one.
    pub claimed_size: HashMap<Vec<u8>, u64>,
    /// Folders whose listing never ends: READDIR answers ever new names.
    pub endless: HashSet<Vec<u8>>,
    /// Set when the first file is opened (ends a test after the listing).
    pub cancel_on_open: Option<Arc<AtomicBool>>,
    /// The account may not run commands: no remote hashes.
    pub no_exec: bool,
    /// Commands run but the hasher prints nothing (a forced
    /// `internal-sftp` reading the names as SFTP packets): found out only
    /// when the first batch's answer is read.
    pub silent_hasher: bool,
    /// The remote hash of these files is wrong (as if the download were).
    pub wrong_hash: HashSet<Vec<u8>>,
}

/// Folders whose content is generated as it is listed: `folders` folders
/// named `s{n}`, each holding `files` one-byte files, none kept in memory.
#[derive(Debug, Clone)]
pub struct Generated {
    pub path: Vec<u8>,
    pub folders: u64,
    pub files: u64,
}

enum Handle {
    Dir(Listing),
    File { path: Vec<u8> },
}

/// What READDIR on one folder handle answers, decided at OPENDIR.
enum Listing {
    /// Names as stored; `ends` counts the EOFs sent.
    Stored {
        names: Vec<NameEntry>,
        next: usize,
        ends: u32,
    },
    /// `total` generated names (`s{n}` folders at the top, files below).
    Generated { top: bool, total: u64, next: u64 },
    /// New names forever.
    Endless { next: u64 },
}

enum Req {
    OpenDir(Vec<u8>),
    ReadDir(Vec<u8>),
    Close(Vec<u8>),
    Open(Vec<u8>),
    Read(Vec<u8>, u64, u32),
    Fstat(Vec<u8>),
    Remove(Vec<u8>),
    Rmdir(Vec<u8>),
    Statvfs(Vec<u8>),
}

pub struct Scripted {
    nodes: BTreeMap<Vec<u8>, Node>,
    generated: Option<Generated>,
    handles: HashMap<Vec<u8>, Handle>,
    next_handle: u64,
    queue: VecDeque<(u32, Req)>,
    /// Answers carried out and not yet delivered (with `reorder`).
    answers: Vec<(u32, Response)>,
    next_id: u32,
    rng: u64,
    pub faults: Faults,
    /// What `statvfs@openssh.com` answers (available and total bytes, in
    /// 4 KiB blocks); `None`: the server does not offer the extension.
    pub statvfs: Option<(u64, u64)>,
    /// Bytes of the files removed so far: what `statvfs` adds to the space
    /// available, as a filesystem would.
    pub freed: u64,
    /// Every request, in the order the server took it: "REMOVE /path".
    pub log: Vec<String>,
    /// Broken invariants seen at REMOVE time; a test asserts it is empty.
    pub violations: Vec<String>,
    /// Where landed files are looked for at REMOVE time.
    landed_root: Option<PathBuf>,
    /// Where ledger records are looked for at REMOVE time.
    ledger_dir: Option<PathBuf>,
    /// Hash batches: each file's hash as it was when the batch started.
    batches: HashMap<u32, HashMap<Vec<u8>, [u8; 32]>>,
}

impl Default for Scripted {
    fn default() -> Self {
        Scripted::new()
    }
}

impl Scripted {
    pub fn new() -> Scripted {
        Scripted {
            nodes: BTreeMap::new(),
            generated: None,
            handles: HashMap::new(),
            next_handle: 1,
            queue: VecDeque::new(),
            answers: Vec::new(),
            next_id: 1,
            rng: 0x9e37_79b9_7f4a_7c15,
            faults: Faults::default(),
            statvfs: Some((1 << 30, 4 << 30)),
            freed: 0,
            log: Vec::new(),
            violations: Vec::new(),
            landed_root: None,
            batches: HashMap::new(),
            ledger_dir: None,
        }
    }

    /// Adds a folder and any missing parents.
    pub fn dir(&mut self, path: &str) -> &mut Self {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            self.nodes
                .entry(at.clone().into_bytes())
                .or_insert(Node::Dir {
                    mtime: 1_600_000_000,
                });
        }
        self
    }

    /// Adds a file (and its folders) with an mtime a day ago.
    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.file_at(path, data, a_day_ago())
    }

    pub fn file_at(&mut self, path: &str, data: &[u8], mtime: u32) -> &mut Self {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.nodes.insert(
            path.as_bytes().to_vec(),
            Node::File {
                data: data.to_vec(),
                mtime,
            },
        );
        self
    }

    pub fn generate(&mut self, g: Generated) -> &mut Self {
        let path = String::from_utf8_lossy(&g.path).into_owned();
        self.dir(&path);
        self.generated = Some(g);
        self
    }

    /// Checks at every REMOVE that the ledger under `dir` has a record of
    /// the file.
    pub fn check_recorded_in(&mut self, dir: &Path) -> &mut Self {
        self.ledger_dir = Some(dir.to_path_buf());
        self
    }

    /// Checks the invariant at every REMOVE against files under `root`.
    pub fn check_landed_under(&mut self, root: &Path) -> &mut Self {
        self.landed_root = Some(root.to_path_buf());
        self
    }

    /// The files left on the server, by path.
    pub fn remaining_files(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| !matches!(n, Node::Dir { .. }))
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    pub fn exists(&self, path: &str) -> bool {
        self.nodes.contains_key(path.as_bytes())
    }

    /// Requests of one kind in the log, e.g. "REMOVE".
    pub fn requests(&self, kind: &str) -> Vec<&str> {
        self.log
            .iter()
            .filter_map(|l| l.strip_prefix(kind).and_then(|r| r.strip_prefix(' ')))
            .collect()
    }

    fn push(&mut self, req: Req) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.queue.push_back((id, req));
        id
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: deterministic, so a failing order reproduces.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn new_handle(&mut self, h: Handle) -> Vec<u8> {
        let name = format!("h{}", self.next_handle).into_bytes();
        self.next_handle += 1;
        self.handles.insert(name.clone(), h);
        name
    }

    fn attrs(&self, path: &[u8], node: &Node) -> Attrs {
        match node {
            Node::Dir { mtime } => Attrs {
                size: Some(4096),
                perm: Some(DIR),
                mtime: Some(*mtime),
            },
            Node::File { data, mtime } => Attrs {
                size: Some(
                    self.faults
                        .claimed_size
                        .get(path)
                        .copied()
                        .unwrap_or(data.len() as u64),
                ),
                perm: Some(FILE),
                mtime: Some(*mtime),
            },
        }
    }

    /// REMOVE (`dir` false) or RMDIR (`dir` true) of `path`, once the
    /// faults and the emptiness check have had their say: gone if it is a
    /// node of that kind, "no such file" otherwise.
    fn unlink(&mut self, path: &[u8], dir: bool) -> Response {
        match self.nodes.get(path) {
            Some(Node::Dir { .. }) if dir => {}
            Some(Node::File { data, .. }) if !dir => self.freed += data.len() as u64,
            _ => return status_answer(status::NO_SUCH_FILE, "No such file"),
        }
        self.nodes.remove(path);
        ok()
    }

    fn children(&self, dir: &[u8]) -> Vec<NameEntry> {
        let mut prefix = dir.to_vec();
        prefix.push(b'/');
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| !p[prefix.len()..].contains(&b'/'))
            .map(|(p, n)| NameEntry {
                name: p[prefix.len()..].to_vec(),
                attrs: self.attrs(p, n),
            })
            .collect()
    }

    /// Whether `path` is the generated folder (`Some(true)`) or one of the
    /// folders generated in it (`Some(false)`).
    fn generated_at(&self, path: &[u8]) -> Option<bool> {
        let g = self.generated.as_ref()?;
        if path == g.path.as_slice() {
            return Some(true);
        }
        let rest = path.strip_prefix(g.path.as_slice())?.strip_prefix(b"/s")?;
        let n: u64 = std::str::from_utf8(rest).ok()?.parse().ok()?;
        (n < g.folders).then_some(false)
    }

    /// The listing a folder handle will give, or `None` for no folder.
    fn listing(&self, path: &[u8]) -> Option<Listing> {
        if self.faults.endless.contains(path) {
            return Some(Listing::Endless { next: 0 });
        }
        if let (Some(g), Some(top)) = (&self.generated, self.generated_at(path)) {
            let total = if top { g.folders } else { g.files };
            return Some(Listing::Generated {
                top,
                total,
                next: 0,
            });
        }
        matches!(self.nodes.get(path), Some(Node::Dir { .. })).then(|| Listing::Stored {
            names: self.children(path),
            next: 0,
            ends: 0,
        })
    }

    fn next_names(&mut self, handle: &[u8]) -> Response {
        let (dup, after_eof) = (self.faults.duplicate_names, self.faults.names_after_eof);
        let Some(Handle::Dir(listing)) = self.handles.get_mut(handle) else {
            return bad_handle();
        };
        let generated = |name: String, perm: u32| NameEntry {
            name: name.into_bytes(),
            attrs: Attrs {
                size: Some(1),
                perm: Some(perm),
                mtime: Some(a_day_ago()),
            },
        };
        match listing {
            Listing::Endless { next } => Response::Name(
                (0..100)
                    .map(|_| {
                        *next += 1;
                        generated(format!("never-ending-{:012}.csv", *next), FILE)
                    })
                    .collect(),
            ),
            Listing::Generated { top, total, next } => {
                if *next >= *total {
                    return eof();
                }
                let end = (*next + 100).min(*total);
                let out = (*next..end)
                    .map(|n| match top {
                        true => generated(format!("s{n}"), DIR),
                        false => generated(format!("X_spatLog_{n:08}.csv"), FILE),
                    })
                    .collect();
                *next = end;
                Response::Name(out)
            }
            Listing::Stored { names, next, ends } => {
                if *next >= names.len() {
                    // With `names_after_eof` the answer after the first end
                    // lists the folder once more.
                    *ends += 1;
                    if after_eof && *ends == 2 {
                        return Response::Name(names.clone());
                    }
                    return eof();
                }
                let end = (*next + 3).min(names.len());
                let mut out = Vec::new();
                for e in &names[*next..end] {
                    out.push(e.clone());
                    if dup {
                        out.push(e.clone());
                    }
                }
                *next = end;
                Response::Name(out)
            }
        }
    }

    fn answer(&mut self, req: Req) -> Response {
        match req {
            Req::OpenDir(path) => {
                self.log.push(format!("OPENDIR {}", show(&path)));
                match self.listing(&path) {
                    Some(l) => Response::Handle(self.new_handle(Handle::Dir(l))),
                    None => status_answer(status::NO_SUCH_FILE, "No such file"),
                }
            }
            Req::ReadDir(h) => {
                self.log.push("READDIR".into());
                self.next_names(&h)
            }
            Req::Close(h) => {
                self.log.push("CLOSE".into());
                match self.handles.remove(&h) {
                    Some(_) => ok(),
                    None => bad_handle(),
                }
            }
            Req::Open(path) => {
                self.log.push(format!("OPEN {}", show(&path)));
                if let Some(c) = &self.faults.cancel_on_open {
                    c.store(true, Ordering::SeqCst);
                }
                let parent = &path[..path.iter().rposition(|&b| b == b'/').unwrap_or(0)];
                let generated = self.generated_at(parent) == Some(false);
                match self.nodes.get(&path) {
                    Some(Node::File { .. }) => {
                        Response::Handle(self.new_handle(Handle::File { path }))
                    }
                    _ if generated => Response::Handle(self.new_handle(Handle::File { path })),
                    _ => status_answer(status::NO_SUCH_FILE, "No such file"),
                }
            }
            Req::Read(h, offset, len) => {
                let Some(Handle::File { path }) = self.handles.get(&h) else {
                    return bad_handle();
                };
                let path = path.clone();
                let data: &[u8] = match self.nodes.get(&path) {
                    Some(Node::File { data, .. }) => data,
                    _ => b"x",
                };
                if self.faults.empty_data.contains(&path) {
                    return Response::Data(Vec::new());
                }
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                if start >= data.len() {
                    return status_answer(status::EOF, "EOF");
                }
                let mut n = (len as usize).min(data.len() - start);
                if let Some(max) = self.faults.max_data {
                    n = n.min(max);
                }
                let mut out = data[start..start + n].to_vec();
                if self.faults.oversized.contains(&path) {
                    out.push(b'!');
                }
                Response::Data(out)
            }
            Req::Fstat(h) => {
                let Some(Handle::File { path }) = self.handles.get(&h) else {
                    return bad_handle();
                };
                let path = path.clone();
                match self.nodes.get(&path) {
                    Some(n) => Response::Attrs(self.attrs(&path, n)),
                    None => Response::Attrs(Attrs {
                        size: Some(1),
                        perm: Some(FILE),
                        mtime: Some(a_day_ago()),
                    }),
                }
            }
            Req::Remove(path) => {
                self.log.push(format!("REMOVE {}", show(&path)));
                self.check_invariant(&path);
                if self.faults.fail_remove.contains(&path) {
                    return status_answer(4, "Failure");
                }
                self.unlink(&path, false)
            }
            Req::Statvfs(path) => {
                self.log.push(format!("STATVFS {}", show(&path)));
                let (avail, size) = self.statvfs.unwrap_or_default();
                let avail = avail + self.freed;
                let fields: [u64; 11] = [
                    4096,
                    4096,
                    size / 4096,
                    avail / 4096,
                    avail / 4096,
                    0,
                    0,
                    0,
                    0,
                    0,
                    255,
                ];
                Response::Extended(fields.iter().flat_map(|f| f.to_be_bytes()).collect())
            }
            Req::Rmdir(path) => {
                self.log.push(format!("RMDIR {}", show(&path)));
                if self.faults.fail_rmdir || !self.children(&path).is_empty() {
                    return status_answer(4, "Failure");
                }
                self.unlink(&path, true)
            }
        }
    }

    /// At a REMOVE: some file under the landed root holds exactly the
    /// bytes of the remote file.
    fn check_invariant(&mut self, path: &[u8]) {
        let Some(root) = self.landed_root.clone() else {
            return;
        };
        let Some(Node::File { data, .. }) = self.nodes.get(path) else {
            return;
        };
        if !holds_file_with(&root, data) {
            self.violations.push(format!(
                "REMOVE {} before its bytes were landed under {}",
                show(path),
                root.display()
            ));
        }
        if let Some(ledger) = self.ledger_dir.clone() {
            // Read as text: a JSON line names the remote path as a string.
            let needle = format!("\"remote_path\":{:?}", show(path));
            let recorded = std::fs::read_dir(&ledger).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle)))
            });
            if !recorded {
                self.violations.push(format!(
                    "REMOVE {} before its ledger record under {}",
                    show(path),
                    ledger.display()
                ));
            }
        }
    }
}

/// The mtime of a closed session: a day before now.
fn a_day_ago() -> u32 {
    crate::common::clock::unix_now().saturating_sub(86_400) as u32
}

fn holds_file_with(dir: &Path, data: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        let hidden = e.file_name().as_encoded_bytes().starts_with(b".");
        if p.is_dir() {
            holds_file_with(&p, data)
        } else {
            !hidden && std::fs::read(&p).is_ok_and(|d| d == data)
        }
    })
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn status_answer(code: u32, message: &str) -> Response {
    Response::Status {
        code,
        message: message.into(),
    }
}

fn ok() -> Response {
    status_answer(status::OK, "Success")
}

fn eof() -> Response {
    status_answer(status::EOF, "End of file")
}

fn bad_handle() -> Response {
    status_answer(4, "bad handle")
}

impl Wire for Scripted {
    fn send_opendir(&mut self, path: &[u8]) -> u32 {
        self.push(Req::OpenDir(path.to_vec()))
    }
    fn send_readdir(&mut self, handle: &[u8]) -> u32 {
        self.push(Req::ReadDir(handle.to_vec()))
    }
    fn send_close(&mut self, handle: &[u8]) -> u32 {
        self.push(Req::Close(handle.to_vec()))
    }
    fn send_open_read(&mut self, path: &[u8]) -> u32 {
        self.push(Req::Open(path.to_vec()))
    }
    fn send_read(&mut self, handle: &[u8], offset: u64, len: u32) -> u32 {
        self.push(Req::Read(handle.to_vec(), offset, len))
    }
    fn send_fstat(&mut self, handle: &[u8]) -> u32 {
        self.push(Req::Fstat(handle.to_vec()))
    }
    fn send_remove(&mut self, path: &[u8]) -> u32 {
        self.push(Req::Remove(path.to_vec()))
    }
    fn send_rmdir(&mut self, path: &[u8]) -> u32 {
        self.push(Req::Rmdir(path.to_vec()))
    }
    fn send_statvfs(&mut self, path: &[u8]) -> Option<u32> {
        self.statvfs?;
        Some(self.push(Req::Statvfs(path.to_vec())))
    }
    /// Requests are carried out in the order sent, as sftp-server does;
    /// with `reorder`, the answers come back in another order.
    fn recv(&mut self) -> Result<(u32, Response), SftpError> {
        if !self.faults.reorder
            && let Some((id, req)) = self.queue.pop_front()
        {
            return Ok((id, self.answer(req)));
        }
        while let Some((id, req)) = self.queue.pop_front() {
            let answer = self.answer(req);
            self.answers.push((id, answer));
        }
        if self.answers.is_empty() {
            return Err(SftpError::Io(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "the scripted server was asked for an answer with no request outstanding",
            )));
        }
        let pick = (self.random() % self.answers.len() as u64) as usize;
        Ok(self.answers.swap_remove(pick))
    }
    fn hash_start(&mut self, paths: &[&[u8]]) -> Result<u32, HashError> {
        self.hash_settle()?;
        self.log.push(format!("EXEC sha256sum {}", paths.len()));
        let mut hashes = HashMap::new();
        for &p in paths {
            if let Some(Node::File { data, .. }) = self.nodes.get(p) {
                let mut h: [u8; 32] = Sha256::digest(data).into();
                if self.faults.wrong_hash.contains(p) {
                    h[0] ^= 0xff;
                }
                hashes.insert(p.to_vec(), h);
            }
        }
        let n = self.batches.len() as u32 + 1;
        self.batches.insert(n, hashes);
        Ok(n)
    }
    fn hash_of(&mut self, batch: u32, path: &[u8]) -> Result<[u8; 32], HashError> {
        self.hash_settle()?;
        self.batches
            .get(&batch)
            .and_then(|b| b.get(path).copied())
            .ok_or_else(|| HashError::Unavailable(format!("{}: No such file", show(path))))
    }
    fn hash_settle(&mut self) -> Result<(), HashError> {
        if self.faults.no_exec {
            self.log.push("EXEC refused".into());
            return Err(HashError::NoHasher("this account may only use SFTP".into()));
        }
        if self.faults.silent_hasher && !self.batches.is_empty() {
            self.log.push("EXEC printed nothing".into());
            return Err(HashError::NoHasher("the hasher printed nothing".into()));
        }
        Ok(())
    }
    fn hash_end(&mut self, _batch: u32) {}
    fn outstanding(&self) -> usize {
        self.queue.len() + self.answers.len()
    }
}
