//! The local durable write: where data is won or lost.
//!
//! A file lands in four steps, and only a [`Landed`] value, which nothing
//! but [`Partial::commit`] can make, lets the pass delete the remote copy:
//!
//! 1. bytes go to a hidden temporary file in the target folder whose name
//!    is derived from the remote *path* and the file's size and mtime
//!    ([`temp_name`]), so a later pass resumes it only when the same remote
//!    file is unchanged, and two remote files that land under one name
//!    (`s1/x.csv`, `s2/x.csv`) never share one. While a download owns its
//!    temporary file (a [`Claim`]), nothing else opens, resumes or removes
//!    it. Big files skip the page cache (see `Direct`); the file on disk is
//!    a prefix of the remote one either way;
//! 2. the byte count is checked against the remote size, the file is fsynced;
//! 3. it is renamed into place without ever replacing an existing file
//!    (`renameat2(RENAME_NOREPLACE)`, or `link` where the filesystem lacks
//!    it): a same-named file with identical content counts as already landed
//!    (a rerun after a crash between rename and remote delete), a different
//!    one is kept and ours lands beside it as `<stem>.conflict-N.<ext>`;
//! 4. the folder is fsynced, so the rename itself survives a power cut.
//!
//! Names come from a remote server we do not trust: [`is_plain_name`] is the
//! gate every name passes before it is joined to a local path, so no name can
//! leave its folder (`Path::join` with an absolute path replaces the base).
//!
//! Here: names, the claim on a temporary file, [`Partial`] and its commit.
//! Beside it: `direct` (big files written around the page cache), `hash`
//! (the SHA-256 of what lands, on a thread of its own for big files) and
//! `commit` (the [`CommitPool`] that runs commits beside the transfer).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{RenameFlags, renameat2};
use sha2::{Digest, Sha256};

use crate::error::Disposition;

mod commit;
mod direct;
mod hash;

pub use commit::CommitPool;
use direct::{DIRECT_ALIGN, DIRECT_BUF, Direct, is_einval};
#[cfg(test)]
use direct::{DIRECT_BUFFERS, DIRECT_IN_USE, DIRECT_MIN, DirectSlot};
use hash::{Hashing, hash_prefix};
pub use hash::{hex_digest, sha256_file};

/// Longest file name Linux filesystems accept.
const NAME_MAX: usize = 255;
/// Bytes written between two hints to the kernel to start writing back.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// Conflict names tried before giving up on a file.
const MAX_CONFLICTS: u32 = 1000;
#[derive(Debug, thiserror::Error)]
pub enum LandingError {
    #[error(
        "local disk full while {op} {path:?}: free space in the data directory, then rerun; the remote copy is kept"
    )]
    DiskFull { op: &'static str, path: PathBuf },
    #[error("local I/O error while {op} {path:?}: {source}; the remote copy is kept")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path:?} has {got} bytes but the remote file has {expected}; not landed")]
    Incomplete {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error("{MAX_CONFLICTS} different files named like {path:?} already exist; not landed")]
    NoFreeName { path: PathBuf },
    #[error(
        "{path:?} is being written by another download of this pass (the server listed one file twice?); not landed this time"
    )]
    Busy { path: PathBuf },
    #[error(
        "internal error while committing {path:?}: {message} (a bug, please report it); the remote copy is kept"
    )]
    Internal { path: PathBuf, message: String },
}

impl LandingError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> LandingError {
        if source.raw_os_error() == Some(libc_enospc())
            || source.raw_os_error() == Some(libc::EDQUOT)
            || source.kind() == io::ErrorKind::StorageFull
        {
            LandingError::DiskFull {
                op,
                path: path.to_path_buf(),
            }
        } else {
            LandingError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// Whether going on with the next file can help. A full disk, a device
    /// that fails (EIO), a filesystem gone read-only or out of memory fail
    /// every further file the same way, after downloading it: they stop the
    /// intersection. Anything else (a rename refused, a name clash, a short
    /// file, a permission on one name) is that file's: it is reported, its
    /// remote copy stays for the next pass, and the other files go on.
    pub fn disposition(&self) -> Disposition {
        match self {
            LandingError::DiskFull { .. } | LandingError::Internal { .. } => {
                Disposition::StopIntersection
            }
            LandingError::Io { source, .. } => match source.raw_os_error() {
                Some(libc::EIO | libc::EROFS | libc::ENOMEM | libc::EUCLEAN) => {
                    Disposition::StopIntersection
                }
                _ => Disposition::SkipFile,
            },
            LandingError::Incomplete { .. }
            | LandingError::NoFreeName { .. }
            | LandingError::Busy { .. } => Disposition::SkipFile,
        }
    }
}

fn libc_enospc() -> i32 {
    Errno::ENOSPC as i32
}

/// Whether a remote name may become a local file or folder name: one
/// non-empty path component, not `.`/`..`, no `/`, no control characters,
/// not hidden (names starting with `.` are ours: temporary files), and short
/// enough to fit next to our temporary names.
pub fn is_plain_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= NAME_MAX
        && bytes[0] != b'.'
        && !bytes.iter().any(|&b| b == b'/' || b < 0x20 || b == 0x7f)
}

/// The remote file a partial download belongs to: if either changes, the
/// partial is not resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub size: u64,
    pub mtime: u64,
}

/// Proof that one remote file's local copy is complete and durable. Only
/// [`Partial::commit`] makes one (its fields are private), and it names the
/// remote path and identity it was made for: the pass's one REMOVE takes it
/// by value and checks with [`Landed::is_for`] that it proves *that* file.
#[derive(Debug)]
#[must_use = "a Landed file is what allows the remote copy to be deleted"]
pub struct Landed {
    remote: Vec<u8>,
    id: Identity,
    path: PathBuf,
    bytes: u64,
    already_present: bool,
    sha256: [u8; 32],
}

impl Landed {
    /// Whether this proves the remote file at `remote` with identity `id`.
    pub fn is_for(&self, remote: &[u8], id: Identity) -> bool {
        self.remote == remote && self.id == id
    }

    /// Where the bytes are now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// An identical file was already there (a rerun after a crash between
    /// the rename and the remote delete, or the same bytes sent twice).
    pub fn already_present(&self) -> bool {
        self.already_present
    }

    /// SHA-256 of the landed bytes (for an already present file, of the
    /// bytes just downloaded, found identical to it byte for byte).
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// The remote path this proves.
    pub fn remote(&self) -> &[u8] {
        &self.remote
    }

    /// The remote file's identity this proves.
    pub fn identity(&self) -> Identity {
        self.id
    }
}

/// The temporary files downloads of this intersection own right now.
type Claims = Arc<Mutex<HashSet<PathBuf>>>;

/// A download's ownership of its temporary file, given up on drop (after
/// the commit renamed it, the discard removed it, or the pass stopped).
struct Claim {
    claims: Claims,
    temp: PathBuf,
}

impl Claim {
    /// `None` when another download owns `temp`.
    fn take(claims: &Claims, temp: &Path) -> Option<Claim> {
        let mut held = claims.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(temp.to_path_buf()).then(|| Claim {
            claims: claims.clone(),
            temp: temp.to_path_buf(),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut held = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.temp);
    }
}

/// The folders one intersection lands into, each created durably once and
/// listed once for leftover partial downloads.
#[derive(Default)]
pub struct Lander {
    /// Per folder: names of `.…part` files found there that no download of
    /// this pass has taken up (yet).
    folders: HashMap<PathBuf, HashSet<OsString>>,
    claims: Claims,
}

impl Lander {
    pub fn new() -> Lander {
        Lander::default()
    }

    /// Starts (or resumes) the download of the remote file at `remote`
    /// (its full path, as listed) with identity `id` into `dir` as `name`.
    ///
    /// # Errors
    /// [`LandingError::Busy`] when another download of this pass owns the
    /// same temporary file; an I/O error creating the folder or the file.
    pub fn open(
        &mut self,
        dir: &Path,
        name: &OsStr,
        remote: &[u8],
        id: Identity,
    ) -> Result<Partial, LandingError> {
        debug_assert!(is_plain_name(name));
        let claims = self.claims.clone();
        let partials = self.folder(dir)?;
        let temp_name = temp_name(name, remote, id);
        let temp = dir.join(&temp_name);
        let claim = Claim::take(&claims, &temp).ok_or_else(|| LandingError::Busy {
            path: dir.join(name),
        })?;
        // A partial of an earlier version of this same remote file can never
        // be resumed. Partials of other remote files are not ours to judge
        // here: one may belong to a download running right now.
        let prefix = temp_prefix(name, remote);
        let stale: Vec<OsString> = partials
            .iter()
            .filter(|p| p.as_bytes().starts_with(&prefix) && **p != temp_name)
            .cloned()
            .collect();
        for p in stale {
            if let Some(_owned) = Claim::take(&claims, &dir.join(&p)) {
                let _ = fs::remove_file(dir.join(&p));
            }
            partials.remove(&p);
        }
        partials.remove(&temp_name);

        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&temp)
            .map_err(|e| LandingError::io("creating", &temp, e))?;
        let mut have = file
            .metadata()
            .map_err(|e| LandingError::io("inspecting", &temp, e))?
            .len();
        if have > id.size {
            file.set_len(0)
                .map_err(|e| LandingError::io("truncating", &temp, e))?;
            have = 0;
        }
        // A resumed prefix is hashed from what the disk holds: the digest
        // must cover the bytes that land, not what an earlier pass meant
        // to write.
        let mut hasher = Sha256::new();
        if have > 0 {
            file.seek(SeekFrom::Start(0))
                .map_err(|e| LandingError::io("seeking", &temp, e))?;
            let hashed = hash_prefix(&mut file, have, &mut hasher)
                .map_err(|e| LandingError::io("reading back", &temp, e))?;
            if hashed != have {
                // Shorter than its length said (a concurrent truncation):
                // start over rather than trust it.
                file.set_len(0)
                    .map_err(|e| LandingError::io("truncating", &temp, e))?;
                have = 0;
                hasher = Sha256::new();
            }
        }
        file.seek(SeekFrom::Start(have))
            .map_err(|e| LandingError::io("seeking", &temp, e))?;
        let direct = Direct::open(&temp, have, id.size);
        let hasher = Hashing::start(hasher, id.size.saturating_sub(have));
        Ok(Partial {
            direct,
            file,
            dir: dir.to_path_buf(),
            name: name.to_os_string(),
            temp,
            written: have,
            resumed_from: have,
            remote: remote.to_vec(),
            id,
            hasher,
            _claim: claim,
        })
    }

    /// Removes the partial downloads that earlier passes left in the folders
    /// this pass landed into and that no download of this pass took up: the
    /// remote file they belonged to was not listed again (it moved, or
    /// another version of this program named it), so nothing will resume
    /// them. Call only after a pass that listed `archive/` completely and
    /// finished every file; returns how many were removed.
    pub fn sweep_leftovers(&mut self) -> usize {
        let mut removed = 0;
        for (dir, partials) in &mut self.folders {
            for p in partials.drain() {
                let path = dir.join(&p);
                if let Some(_owned) = Claim::take(&self.claims, &path)
                    && fs::remove_file(&path).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    fn folder(&mut self, dir: &Path) -> Result<&mut HashSet<OsString>, LandingError> {
        if !self.folders.contains_key(dir) {
            create_dir_durably(dir)?;
            let mut partials = HashSet::new();
            let listing = fs::read_dir(dir).map_err(|e| LandingError::io("listing", dir, e))?;
            for entry in listing.flatten() {
                let n = entry.file_name();
                if n.as_bytes().starts_with(b".") && n.as_bytes().ends_with(b".part") {
                    partials.insert(n);
                }
            }
            self.folders.insert(dir.to_path_buf(), partials);
        }
        // Inserted just above when missing.
        self.folders
            .get_mut(dir)
            .ok_or_else(|| LandingError::io("listing", dir, io::Error::other("folder cache")))
    }
}

/// Bytes a temporary name adds to the landed name: ".", ".<16 hex>.",
/// "<size>-<mtime>" (at most 41) and ".part".
const TEMP_EXTRA: usize = 1 + 18 + 41 + 5;

/// `.<name>.<remote path hash>.`: what every temporary file of one remote
/// file starts with, whatever its identity.
fn temp_prefix(name: &OsStr, remote: &[u8]) -> Vec<u8> {
    let bytes = name.as_bytes();
    let mut out = vec![b'.'];
    if bytes.len() + TEMP_EXTRA <= NAME_MAX {
        out.extend_from_slice(bytes);
    } else {
        let digest = Sha256::digest(bytes);
        out.push(b'~');
        out.extend_from_slice(hex(&digest[..16]).as_bytes());
    }
    out.push(b'.');
    out.extend_from_slice(hex(&Sha256::digest(remote)[..8]).as_bytes());
    out.push(b'.');
    out
}

/// The temporary file of one remote file (path) in one version (size and
/// mtime): hidden, at most [`NAME_MAX`] bytes, the same on every pass so a
/// cut download resumes, and different for two remote files that land under
/// one name. A hash collision (a hostile server can make one) only makes the
/// second download wait for a later pass ([`LandingError::Busy`]).
fn temp_name(name: &OsStr, remote: &[u8], id: Identity) -> OsString {
    let mut out = temp_prefix(name, remote);
    out.extend_from_slice(format!("{}-{}.part", id.size, id.mtime).as_bytes());
    OsString::from_vec(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A download in progress into its temporary file.
pub struct Partial {
    /// Set for big files: see [`Direct`].
    direct: Option<Direct>,
    file: File,
    dir: PathBuf,
    name: OsString,
    temp: PathBuf,
    written: u64,
    resumed_from: u64,
    /// The remote file these bytes are of: what the [`Landed`] will name.
    remote: Vec<u8>,
    id: Identity,
    /// SHA-256 of every byte handed to [`Partial::write`] (and of a resumed
    /// prefix, read back at open), in order.
    hasher: Hashing,
    _claim: Claim,
}

impl Partial {
    /// Bytes handed to this partial so far: where the next data belongs.
    /// (A direct buffer may still hold the last of them; a resume starts
    /// from what the file holds.)
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Bytes that an earlier pass had already fetched.
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// SHA-256 of the bytes written so far (the resumed prefix included).
    pub fn sha256(&mut self) -> [u8; 32] {
        self.hasher.digest()
    }

    /// Appends `buf` to the file and to its hash, directly to the device in
    /// whole blocks while the filesystem takes that, through the page cache
    /// otherwise. The hash is of the bytes as they come in, the same buffer
    /// the write takes: what it checks against the coprocessor's own hash
    /// is the whole download (pipelined reads, their order, resume), not the
    /// kernel's copy to disk, which `v2x-data-sftp-client verify` re-reads
    /// later.
    ///
    /// # Errors
    /// [`LandingError::DiskFull`] when the disk or the quota is full;
    /// [`LandingError::Io`] for any other write error. The partial stays on
    /// disk for a later pass to resume.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), LandingError> {
        self.write_owned(buf.to_vec())
    }

    /// [`Partial::write`] of a buffer the caller gives up, so that a big
    /// file's hash is computed on a thread of its own without a copy.
    pub fn write_owned(&mut self, buf: Vec<u8>) -> Result<(), LandingError> {
        #[cfg(feature = "fault-injection")]
        let buf = flip_for_test(&self.remote, self.written, &buf).unwrap_or(buf);
        self.write_bytes(&buf)?;
        self.hasher.update(buf);
        Ok(())
    }

    fn write_bytes(&mut self, buf: &[u8]) -> Result<(), LandingError> {
        if let Some(d) = self.direct.as_mut() {
            let mut rest = buf;
            let mut refused = false;
            while !rest.is_empty() {
                let n = rest.len().min(DIRECT_BUF - d.len);
                d.buf.bytes()[d.len..d.len + n].copy_from_slice(&rest[..n]);
                d.len += n;
                // Kept in step with the buffer: on disk is `written - d.len`.
                self.written += n as u64;
                rest = &rest[n..];
                if d.len == DIRECT_BUF {
                    match d.file.write_all(&d.buf.bytes()[..DIRECT_BUF]) {
                        Ok(()) => d.len = 0,
                        Err(e) if is_einval(&e) => {
                            refused = true;
                            break;
                        }
                        Err(e) => return Err(LandingError::io("writing", &self.temp, e)),
                    }
                }
            }
            if !refused {
                return Ok(());
            }
            // The filesystem took the O_DIRECT open but not the writes:
            // what is buffered and the rest go through the page cache.
            self.leave_direct()
                .map_err(|e| LandingError::io("writing", &self.temp, e))?;
            return self.write_bytes(rest);
        }
        self.file
            .write_all(buf)
            .map_err(|e| LandingError::io("writing", &self.temp, e))?;
        let before = self.written;
        self.written += buf.len() as u64;
        if before / WRITEBACK_EVERY != self.written / WRITEBACK_EVERY {
            start_writeback(&self.file);
        }
        Ok(())
    }

    /// Throws the partial away (the remote file changed under us).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.temp);
    }

    /// Writes what a [`Direct`] still holds: whole blocks directly, the
    /// unaligned tail through the ordinary descriptor.
    fn flush_direct(&mut self) -> io::Result<()> {
        let Some(d) = self.direct.as_mut() else {
            return Ok(());
        };
        let aligned = d.len / DIRECT_ALIGN * DIRECT_ALIGN;
        match d.file.write_all(&d.buf.bytes()[..aligned]) {
            Ok(()) => {
                d.buf.bytes().copy_within(aligned..d.len, 0);
                d.len -= aligned;
            }
            Err(e) if is_einval(&e) => {}
            Err(e) => return Err(e),
        }
        self.leave_direct()
    }

    /// Ends direct writing: what the buffer holds goes through the ordinary
    /// descriptor, right after what is on disk, and so does all that follows.
    fn leave_direct(&mut self) -> io::Result<()> {
        let Some(mut d) = self.direct.take() else {
            return Ok(());
        };
        let pending = &d.buf.bytes()[..d.len];
        self.file
            .seek(SeekFrom::Start(self.written - pending.len() as u64))?;
        self.file.write_all(pending)
    }

    /// Verifies, fsyncs and renames the file into place; see the module docs.
    ///
    /// # Errors
    /// [`LandingError::Incomplete`] when the file does not hold exactly the
    /// remote size; [`LandingError::DiskFull`] or [`LandingError::Io`] when
    /// writing, fsyncing, comparing with an existing file or renaming
    /// fails; [`LandingError::NoFreeName`] when every conflict name is
    /// taken by other content. The partial is removed when its bytes cannot
    /// be trusted (a failed write or fsync, a wrong size); the remote copy
    /// is kept in every case.
    pub fn commit(mut self) -> Result<Landed, LandingError> {
        if let Err(e) = self.flush_direct() {
            let err = LandingError::io("writing", &self.temp, e);
            self.discard();
            return Err(err);
        }
        // What the file holds, not what was handed to it: the two
        // descriptors must have left no gap and nothing behind.
        let on_disk = self
            .file
            .metadata()
            .map_err(|e| LandingError::io("inspecting", &self.temp, e))?
            .len();
        if self.written != self.id.size || on_disk != self.written {
            let err = LandingError::Incomplete {
                path: self.temp.clone(),
                expected: self.id.size,
                got: on_disk,
            };
            self.discard();
            return Err(err);
        }
        let mtime = UNIX_EPOCH + Duration::from_secs(self.id.mtime);
        // Cosmetic (rsync -t style); a filesystem that refuses it loses nothing.
        let _ = self.file.set_modified(mtime);
        if let Err(e) = self.file.sync_all() {
            // After a failed fsync the kernel may have marked the dirty pages
            // clean without writing them: what reads back is not on disk. A
            // later pass must download the file again, never resume it.
            let err = LandingError::io("fsyncing", &self.temp, e);
            self.discard();
            return Err(err);
        }
        let dir_handle =
            File::open(&self.dir).map_err(|e| LandingError::io("opening folder", &self.dir, e))?;
        for n in 0..MAX_CONFLICTS {
            let target = self.dir.join(conflict_name(&self.name, n));
            let already_present = match place_no_replace(&dir_handle, &self.temp, &target) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !same_content(&self.temp, &target)
                        .map_err(|e| LandingError::io("comparing with", &target, e))?
                    {
                        continue;
                    }
                    fs::remove_file(&self.temp)
                        .map_err(|e| LandingError::io("removing", &self.temp, e))?;
                    // The existing copy may be from a crashed pass that
                    // never fsynced its folder; make sure it is durable
                    // before the caller deletes the remote copy.
                    File::open(&target)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| LandingError::io("fsyncing", &target, e))?;
                    true
                }
                Err(e) => return Err(LandingError::io("renaming into", &target, e)),
            };
            dir_handle
                .sync_all()
                .map_err(|e| LandingError::io("fsyncing folder", &self.dir, e))?;
            return Ok(Landed {
                remote: std::mem::take(&mut self.remote),
                id: self.id,
                path: target,
                bytes: self.written,
                already_present,
                sha256: self.sha256(),
            });
        }
        let path = self.dir.join(&self.name);
        self.discard();
        Err(LandingError::NoFreeName { path })
    }
}

/// `name`, then `stem.conflict-1.ext`, `stem.conflict-2.ext`, …
pub fn conflict_name(name: &OsStr, n: u32) -> OsString {
    if n == 0 {
        return name.to_os_string();
    }
    let bytes = name.as_bytes();
    let (stem, ext) = match bytes.iter().rposition(|&b| b == b'.') {
        Some(i) if i > 0 => (&bytes[..i], &bytes[i..]),
        _ => (bytes, &b""[..]),
    };
    let suffix = format!(".conflict-{n}");
    // A name near NAME_MAX would not fit with the suffix (ENAMETOOLONG would
    // stop the intersection at this file every pass): shorten the stem.
    let room = NAME_MAX.saturating_sub(suffix.len() + ext.len());
    let (stem, ext) = if room == 0 {
        (&bytes[..NAME_MAX - suffix.len()], &b""[..])
    } else {
        (&stem[..stem.len().min(room)], ext)
    };
    let mut out = stem.to_vec();
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(ext);
    OsString::from_vec(out)
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then).
fn place_no_replace(dir: &File, from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(dir, from, dir, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => Err(io::ErrorKind::AlreadyExists.into()),
        // The filesystem has no RENAME_NOREPLACE: link(2) never replaces either.
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// The crash campaign's byte flip: with `V2X_FAULT_FLIP_BYTE=<remote path
/// suffix>`, the first byte handed to the partial of the first remote file
/// whose path ends so is flipped before it is hashed and written, as a bug
/// in our reads or buffers would. Once per process.
#[cfg(feature = "fault-injection")]
fn flip_for_test(remote: &[u8], offset: u64, buf: &[u8]) -> Option<Vec<u8>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    let want = std::env::var("V2X_FAULT_FLIP_BYTE").ok()?;
    if offset != 0 || buf.is_empty() || !remote.ends_with(want.as_bytes()) {
        return None;
    }
    if DONE.swap(true, Ordering::SeqCst) {
        return None;
    }
    let mut out = buf.to_vec();
    out[0] ^= 0x01;
    Some(out)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Asks the kernel to start writing the file's dirty pages now, without
/// waiting: the fsync before the remote delete then finds little left to do,
/// and a large file streams to disk while it downloads instead of after.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only initiates writeback
    // and reads no memory of ours. Failure only loses the optimisation.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained
/// an entry, so a new folder survives a power cut together with its files.
///
/// # Errors
/// [`LandingError::DiskFull`] or [`LandingError::Io`] naming the folder
/// that could not be created or fsynced (a path component that is a file,
/// permission denied, disk full).
pub fn create_dir_durably(dir: &Path) -> Result<(), LandingError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(LandingError::io("creating folder", dir, e)),
    }
    if let Some(parent) = dir.parent() {
        File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(|e| LandingError::io("fsyncing folder", parent, e))?;
    }
    Ok(())
}

/// Bytes an unprivileged writer may still use on the filesystem of `path`.
///
/// # Errors
/// `statvfs(2)` fails: `path` does not exist or cannot be reached.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::thread;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn plain_names_only() {
        for good in ["a.csv", "X_spatLog_1_2.csv", "with space", "ü.csv", "a..b"] {
            assert!(is_plain_name(os(good)), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            "...",
            ".hidden",
            "a/b",
            "/abs",
            "a\nb",
            "a\rb",
            "tab\t",
            "del\u{7f}",
            long.as_str(),
        ] {
            assert!(!is_plain_name(os(bad)), "{bad:?}");
        }
    }

    #[test]
    fn conflict_names_are_predictable() {
        assert_eq!(conflict_name(os("a.csv"), 0), "a.csv");
        assert_eq!(conflict_name(os("a.csv"), 1), "a.conflict-1.csv");
        assert_eq!(conflict_name(os("a.b.zip"), 2), "a.b.conflict-2.zip");
        assert_eq!(conflict_name(os("noext"), 3), "noext.conflict-3");
    }

    #[test]
    fn conflict_names_of_a_255_byte_name_still_fit() {
        let long = format!("{}.csv", "x".repeat(251));
        let long_ext = format!("a.{}", "e".repeat(253));
        for name in [long.as_str(), long_ext.as_str(), &"y".repeat(255)] {
            for n in [1, 999] {
                let c = conflict_name(os(name), n);
                assert!(c.len() <= NAME_MAX, "{} bytes", c.len());
                assert!(is_plain_name(&c), "{c:?}");
                assert!(
                    c.as_bytes()
                        .ends_with(if name == long { b".csv" } else { b"" })
                );
            }
        }
    }

    #[test]
    fn a_255_byte_name_that_conflicts_lands_beside_the_other() {
        let tmp = tempfile::tempdir().unwrap();
        let name = format!("{}.csv", "x".repeat(251));
        fs::write(tmp.path().join(&name), b"local").unwrap();
        let r = land(&mut Lander::new(), tmp.path(), &name, b"remote", 1).unwrap();
        assert_eq!(fs::read(&r.path).unwrap(), b"remote");
        assert_eq!(fs::read(tmp.path().join(&name)).unwrap(), b"local");
    }

    #[test]
    fn temp_names_are_hidden_bounded_and_bound_to_path_and_identity() {
        let id = Identity {
            size: 10,
            mtime: 20,
        };
        let t = temp_name(os("a.csv"), b"/v/archive/s1/a.csv", id);
        let h = hex(&Sha256::digest(b"/v/archive/s1/a.csv")[..8]);
        assert_eq!(t, OsString::from(format!(".a.csv.{h}.10-20.part")));
        assert!(is_plain_name(OsStr::new(&t.to_string_lossy()[1..])));
        let long = "x".repeat(255);
        let t = temp_name(
            os(&long),
            &[b'/'; 4096],
            Identity {
                size: u64::MAX,
                mtime: u64::MAX,
            },
        );
        assert!(t.len() <= NAME_MAX, "{}", t.len());
        assert!(t.as_bytes().starts_with(b".~"));
        // The longest name that keeps itself in its temporary name.
        let edge = "y".repeat(NAME_MAX - TEMP_EXTRA);
        let t = temp_name(
            os(&edge),
            b"/p",
            Identity {
                size: u64::MAX,
                mtime: u64::MAX,
            },
        );
        assert!(t.len() <= NAME_MAX && t.as_bytes().starts_with(b".yyy"));
        let other = Identity {
            size: 10,
            mtime: 21,
        };
        assert_ne!(
            temp_name(os("a.csv"), b"/p/a.csv", other),
            temp_name(os("a.csv"), b"/p/a.csv", id)
        );
        // Two remote files that land under one name: two temporary files.
        assert_ne!(
            temp_name(os("a.csv"), b"/v/archive/s1/a.csv", id),
            temp_name(os("a.csv"), b"/v/archive/s2/a.csv", id)
        );
    }

    /// Issue 16: two remote files of one name, size and mtime in two
    /// folders, downloaded at once, each land with their own bytes.
    #[test]
    fn two_remote_files_of_one_name_download_at_once_and_land_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let id = Identity { size: 4, mtime: 7 };
        let mut l = Lander::new();
        let mut a = l.open(dir, os("x.csv"), b"/r/s1/x.csv", id).unwrap();
        let mut b = l.open(dir, os("x.csv"), b"/r/s2/x.csv", id).unwrap();
        a.write(b"aa").unwrap();
        b.write(b"bbbb").unwrap();
        a.write(b"aa").unwrap();
        let lb = b.commit().unwrap();
        let la = a.commit().unwrap();
        assert!(lb.is_for(b"/r/s2/x.csv", id) && !lb.is_for(b"/r/s1/x.csv", id));
        assert!(la.is_for(b"/r/s1/x.csv", id));
        assert!(!la.is_for(b"/r/s1/x.csv", Identity { size: 4, mtime: 8 }));
        assert_eq!(fs::read(lb.path()).unwrap(), b"bbbb");
        assert_eq!(fs::read(la.path()).unwrap(), b"aaaa");
        assert_eq!(lb.path(), dir.join("x.csv"));
        assert_eq!(la.path(), dir.join("x.conflict-1.csv"));
        assert!(!la.already_present() && !lb.already_present());
    }

    #[test]
    fn another_remote_file_of_the_same_name_never_removes_or_shares_a_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let id = Identity { size: 6, mtime: 1 };
        // An earlier pass was cut in the middle of /r/s1/f.
        let mut p = Lander::new().open(dir, os("f"), b"/r/s1/f", id).unwrap();
        p.write(b"abc").unwrap();
        drop(p);

        let mut l = Lander::new();
        // /r/s2/f, another size: not an older version of /r/s1/f.
        let other = l
            .open(dir, os("f"), b"/r/s2/f", Identity { size: 9, mtime: 1 })
            .unwrap();
        assert_eq!(other.offset(), 0);
        let mut a = l.open(dir, os("f"), b"/r/s1/f", id).unwrap();
        assert_eq!(a.offset(), 3, "the partial of /r/s1/f was lost");
        // The same remote file twice at once (a server listing it twice).
        let err = l.open(dir, os("f"), b"/r/s1/f", id).err().unwrap();
        assert!(matches!(err, LandingError::Busy { .. }), "{err}");
        assert_eq!(err.disposition(), Disposition::SkipFile);
        a.write(b"def").unwrap();
        assert_eq!(fs::read(a.commit().unwrap().path()).unwrap(), b"abcdef");
        // Given up with the commit: the path can be opened again.
        assert!(l.open(dir, os("f"), b"/r/s1/f", id).is_ok());
        other.discard();
    }

    #[test]
    fn leftovers_of_files_not_listed_again_are_swept_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let id = Identity { size: 6, mtime: 1 };
        let mut p = Lander::new()
            .open(dir, os("gone"), b"/r/old/gone", id)
            .unwrap();
        p.write(b"abc").unwrap();
        drop(p);
        fs::write(dir.join(".legacy.6-1.part"), b"ab").unwrap();
        let mut p = Lander::new().open(dir, os("kept"), b"/r/kept", id).unwrap();
        p.write(b"abc").unwrap();
        drop(p);

        let mut l = Lander::new();
        let mut kept = l.open(dir, os("kept"), b"/r/kept", id).unwrap();
        assert_eq!(kept.offset(), 3);
        assert_eq!(l.sweep_leftovers(), 2);
        kept.write(b"def").unwrap();
        assert_eq!(fs::read(kept.commit().unwrap().path()).unwrap(), b"abcdef");
        let names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("kept")]);
    }

    #[test]
    fn errors_that_fail_every_file_stop_the_intersection_and_the_rest_skip_the_file() {
        let e = |errno| {
            LandingError::io(
                "renaming into",
                Path::new("/x"),
                io::Error::from_raw_os_error(errno),
            )
        };
        for errno in [libc::ENOSPC, libc::EDQUOT, libc::EIO, libc::EROFS] {
            assert_eq!(
                e(errno).disposition(),
                Disposition::StopIntersection,
                "{errno}"
            );
        }
        for errno in [
            libc::EACCES,
            libc::EPERM,
            libc::EISDIR,
            libc::ENAMETOOLONG,
            libc::ENOENT,
        ] {
            assert_eq!(e(errno).disposition(), Disposition::SkipFile, "{errno}");
        }
        assert!(matches!(e(libc::EDQUOT), LandingError::DiskFull { .. }));
    }

    fn land(
        lander: &mut Lander,
        dir: &Path,
        name: &str,
        data: &[u8],
        mtime: u64,
    ) -> Result<Landed, LandingError> {
        let mut p = lander.open(
            dir,
            os(name),
            format!("/r/{name}").as_bytes(),
            Identity {
                size: data.len() as u64,
                mtime,
            },
        )?;
        let off = p.offset() as usize;
        p.write(&data[off..])?;
        p.commit()
    }

    #[test]
    fn lands_creates_folders_and_keeps_nothing_visible_but_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ix/spat");
        let mut l = Lander::new();
        let landed = land(&mut l, &dir, "f.csv", b"hello", 1_700_000_000).unwrap();
        assert!(!landed.already_present);
        assert_eq!(fs::read(dir.join("f.csv")).unwrap(), b"hello");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("f.csv")]);
        let mtime = fs::metadata(dir.join("f.csv")).unwrap().modified().unwrap();
        assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }

    #[test]
    fn identical_existing_file_counts_as_landed_and_different_one_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        fs::write(dir.join("f.csv"), b"same").unwrap();
        let mut l = Lander::new();
        let r = land(&mut l, &dir, "f.csv", b"same", 1).unwrap();
        assert!(r.already_present);
        assert_eq!(r.path, dir.join("f.csv"));

        let r = land(&mut l, &dir, "f.csv", b"other", 1).unwrap();
        assert!(!r.already_present);
        assert_eq!(r.path, dir.join("f.conflict-1.csv"));
        assert_eq!(fs::read(dir.join("f.csv")).unwrap(), b"same");
        assert_eq!(fs::read(dir.join("f.conflict-1.csv")).unwrap(), b"other");

        // A rerun of the conflicting file finds its earlier copy.
        let r = land(&mut l, &dir, "f.csv", b"other", 1).unwrap();
        assert!(r.already_present);
        assert_eq!(r.path, dir.join("f.conflict-1.csv"));
        // A third version goes to the next free name.
        let r = land(&mut l, &dir, "f.csv", b"third", 1).unwrap();
        assert_eq!(r.path, dir.join("f.conflict-2.csv"));
    }

    #[test]
    fn same_size_different_content_is_a_conflict() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("f"), b"aaaa").unwrap();
        let r = land(&mut Lander::new(), tmp.path(), "f", b"aaab", 1).unwrap();
        assert_eq!(r.path, tmp.path().join("f.conflict-1"));
    }

    /// The direct-buffer count is process-wide: tests that count it take turns.
    static DIRECT_TESTS: Mutex<()> = Mutex::new(());

    #[test]
    fn big_files_bypass_the_page_cache_and_stay_a_resumable_prefix() {
        // Under the target folder, not /tmp: the test must run where the
        // landed files would (an ext4 or xfs disk takes O_DIRECT, tmpfs not).
        let _serial = DIRECT_TESTS.lock().unwrap();
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        fs::create_dir_all(&target).unwrap();
        let tmp = tempfile::tempdir_in(target).unwrap();
        let dir = tmp.path();
        let size = DIRECT_MIN as usize + 3 * DIRECT_BUF + 4321;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4099) as u8).collect();
        let id = Identity {
            size: size as u64,
            mtime: 9,
        };
        let mut p = Lander::new().open(dir, os("big"), b"/r/big", id).unwrap();
        assert!(
            p.direct.is_some(),
            "this filesystem refused O_DIRECT; run the tests on a disk-backed one"
        );
        // Odd piece sizes, as SFTP answers arrive.
        let cut = DIRECT_BUF * 2 + 777;
        for piece in data[..cut].chunks(65_437) {
            p.write(piece).unwrap();
        }
        assert_eq!(p.offset(), cut as u64);
        drop(p); // killed: what is on disk is whole blocks, a prefix
        let temp = dir.join(temp_name(os("big"), b"/r/big", id));
        let on_disk = fs::read(&temp).unwrap();
        assert_eq!(on_disk.len(), 2 * DIRECT_BUF);
        assert!(data.starts_with(&on_disk));

        let mut p = Lander::new().open(dir, os("big"), b"/r/big", id).unwrap();
        assert_eq!(p.resumed_from(), 2 * DIRECT_BUF as u64);
        assert!(p.direct.is_some());
        for piece in data[2 * DIRECT_BUF..].chunks(100_003) {
            p.write(piece).unwrap();
        }
        let landed = p.commit().unwrap();
        assert_eq!(fs::read(&landed.path).unwrap(), data);
        assert_eq!(DIRECT_IN_USE.load(Ordering::SeqCst), 0);

        // A resume that does not start on a block boundary is written
        // through the page cache, and lands the same.
        let mut p = Lander::new().open(dir, os("odd"), b"/r/odd", id).unwrap();
        p.write(&data[..DIRECT_BUF]).unwrap();
        drop(p);
        let temp = dir.join(temp_name(os("odd"), b"/r/odd", id));
        fs::OpenOptions::new()
            .append(true)
            .open(&temp)
            .unwrap()
            .write_all(&data[DIRECT_BUF..DIRECT_BUF + 5])
            .unwrap();
        let mut p = Lander::new().open(dir, os("odd"), b"/r/odd", id).unwrap();
        assert!(p.direct.is_none());
        let off = p.offset() as usize;
        p.write(&data[off..]).unwrap();
        assert_eq!(fs::read(p.commit().unwrap().path).unwrap(), data);
    }

    #[test]
    fn direct_buffers_are_bounded() {
        let _serial = DIRECT_TESTS.lock().unwrap();
        let slots: Vec<DirectSlot> = std::iter::from_fn(DirectSlot::take).take(100).collect();
        assert_eq!(slots.len(), DIRECT_BUFFERS);
        drop(slots);
        assert!(DirectSlot::take().is_some());
    }

    #[test]
    fn resumes_an_unchanged_file_and_restarts_a_changed_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let id = Identity { size: 6, mtime: 5 };
        let mut p = Lander::new().open(dir, os("f"), b"/r/f", id).unwrap();
        p.write(b"abc").unwrap();
        drop(p); // interrupted

        let mut l = Lander::new();
        let mut p = l.open(dir, os("f"), b"/r/f", id).unwrap();
        assert_eq!(p.offset(), 3);
        assert_eq!(p.resumed_from(), 3);
        p.write(b"def").unwrap();
        let _ = p.commit().unwrap();
        assert_eq!(fs::read(dir.join("f")).unwrap(), b"abcdef");

        // Changed remote (other mtime): the old partial is not used and is removed.
        let mut p = Lander::new().open(dir, os("g"), b"/r/g", id).unwrap();
        p.write(b"abc").unwrap();
        drop(p);
        let p = Lander::new()
            .open(dir, os("g"), b"/r/g", Identity { size: 6, mtime: 6 })
            .unwrap();
        assert_eq!(p.offset(), 0);
        assert!(!dir.join(temp_name(os("g"), b"/r/g", id)).exists());
    }

    #[test]
    fn the_hash_covers_every_byte_landed_a_resumed_prefix_and_direct_writes_included() {
        // Direct buffers are counted process-wide: not beside the tests that count them.
        let _serial = DIRECT_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // Big enough for direct writes, resumed at an unaligned offset.
        let data: Vec<u8> = (0..(DIRECT_MIN as usize + 5000))
            .map(|i| (i % 251) as u8)
            .collect();
        let id = Identity {
            size: data.len() as u64,
            mtime: 9,
        };
        let mut p = Lander::new().open(dir, os("h"), b"/r/h", id).unwrap();
        // Only whole direct blocks reach the disk before the cut.
        p.write(&data[..2 * DIRECT_BUF + 12_345]).unwrap();
        drop(p); // interrupted
        let mut p = Lander::new().open(dir, os("h"), b"/r/h", id).unwrap();
        let resumed = p.offset() as usize;
        assert_eq!(resumed, 2 * DIRECT_BUF);
        for chunk in data[resumed..].chunks(70_000) {
            p.write(chunk).unwrap();
        }
        let landed = p.commit().unwrap();
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(landed.sha256(), want);
        assert_eq!(
            sha256_file(landed.path()).unwrap(),
            (want, data.len() as u64)
        );
        assert_eq!(
            hex_digest(&want),
            hex(&want),
            "the ledger's hex is sha256sum's"
        );
        // An identical file already there: the same hash, already present.
        let again = land(&mut Lander::new(), dir, "h", &data, 9);
        let again = again.unwrap();
        assert!(again.already_present() || again.path() != landed.path());
    }

    #[test]
    fn short_file_is_not_landed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = Lander::new()
            .open(tmp.path(), os("f"), b"/r/f", Identity { size: 6, mtime: 1 })
            .unwrap();
        p.write(b"abc").unwrap();
        let err = p.commit().unwrap_err();
        assert!(matches!(
            err,
            LandingError::Incomplete {
                expected: 6,
                got: 3,
                ..
            }
        ));
        assert!(!tmp.path().join("f").exists());
        assert_eq!(err.disposition(), Disposition::SkipFile);
    }

    /// A partial of `name` holding all of `data`, ready to commit.
    fn ready(dir: &Path, name: &str, data: &[u8]) -> Partial {
        let id = Identity {
            size: data.len() as u64,
            mtime: 1,
        };
        let mut p = Lander::new()
            .open(dir, os(name), format!("/r/{name}").as_bytes(), id)
            .unwrap();
        p.write(data).unwrap();
        p
    }

    /// Runs `f` on a thread of its own; fails the test if it takes longer
    /// than `limit` (a hang would otherwise hang the whole test run).
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(f()));
        rx.recv_timeout(limit)
            .unwrap_or_else(|e| panic!("not done within {limit:?} ({e}; a panic is shown above)"))
    }

    /// Lets a `die*` commit go: until then it waits, so what the test
    /// submits after it is queued behind it, not committed inline because
    /// the worker is already gone.
    static DIE_NOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Panics for files named `panic*`, dies for good for `die*` (its panic
    /// payload panics again when the worker drops it), commits the others.
    fn faulty_commit(p: Partial) -> Result<Landed, LandingError> {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("the payload's drop panics too");
            }
        }
        let name = p.name.to_string_lossy().into_owned();
        if name.starts_with("panic") {
            panic!("injected panic in {name}");
        }
        if name.starts_with("die") {
            let t0 = std::time::Instant::now();
            while !DIE_NOW.load(std::sync::atomic::Ordering::SeqCst)
                && t0.elapsed() < Duration::from_secs(5)
            {
                thread::sleep(Duration::from_millis(1));
            }
            std::panic::panic_any(Bomb);
        }
        if name.starts_with("slow") {
            thread::sleep(Duration::from_millis(300));
        }
        p.commit()
    }

    #[test]
    fn a_commit_that_panics_is_an_internal_error_for_its_file_and_the_others_land() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let results = within(Duration::from_secs(10), move || {
            let mut pool = CommitPool::with_commit(2, Duration::from_secs(60), faulty_commit);
            pool.submit(0, ready(&dir, "a.csv", b"a"));
            pool.submit(1, ready(&dir, "panic.csv", b"p"));
            pool.submit(2, ready(&dir, "b.csv", b"b"));
            let mut out: Vec<_> = std::iter::from_fn(|| pool.wait_done()).collect();
            out.sort_by_key(|(k, _)| *k);
            (out, dir)
        });
        let (results, dir) = results;
        assert_eq!(results.len(), 3);
        assert!(results[0].1.is_ok() && results[2].1.is_ok(), "{results:?}");
        let err = results[1].1.as_ref().unwrap_err();
        assert!(
            matches!(err, LandingError::Internal { path, .. } if *path == dir.join("panic.csv")),
            "{err:?}"
        );
        assert_eq!(err.disposition(), Disposition::StopIntersection);
        let text = err.to_string();
        assert!(text.contains("injected panic in panic.csv"), "{text}");
        assert!(text.contains("a bug, please report it"), "{text}");
        assert!(!dir.join("panic.csv").exists());
        assert_eq!(fs::read(dir.join("b.csv")).unwrap(), b"b");
    }

    #[test]
    fn a_commit_thread_that_dies_anyway_fails_its_file_and_those_queued_behind_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (results, elapsed) = within(Duration::from_secs(10), move || {
            let mut pool = CommitPool::with_commit(1, Duration::from_millis(50), faulty_commit);
            pool.submit(7, ready(&dir, "die.csv", b"d"));
            pool.submit(8, ready(&dir, "queued.csv", b"q"));
            DIE_NOW.store(true, std::sync::atomic::Ordering::SeqCst);
            let t0 = std::time::Instant::now();
            let out: Vec<_> = std::iter::from_fn(|| pool.wait_done()).collect();
            assert_eq!(pool.pending(), 0);
            (out, t0.elapsed())
        });
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        // Both fail; which is reported first is the scheduler's choice.
        let mut keys: Vec<usize> = results.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        assert_eq!(keys, [7, 8]);
        for (_, r) in &results {
            let err = r.as_ref().unwrap_err();
            assert!(matches!(err, LandingError::Internal { .. }), "{err:?}");
            assert!(err.to_string().contains("ended without a result"), "{err}");
        }
    }

    #[test]
    fn a_commit_slower_than_the_death_bound_is_waited_for() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let r = within(Duration::from_secs(10), move || {
            let mut pool = CommitPool::with_commit(1, Duration::from_millis(10), faulty_commit);
            pool.submit(0, ready(&dir, "slow.csv", b"s"));
            pool.wait_done()
        });
        let (key, landed) = r.unwrap();
        assert_eq!(key, 0);
        assert_eq!(landed.unwrap().bytes, 1);
    }

    #[test]
    fn enospc_is_disk_full() {
        let e = LandingError::io(
            "writing",
            Path::new("/x"),
            io::Error::from_raw_os_error(libc_enospc()),
        );
        assert!(matches!(e, LandingError::DiskFull { .. }));
        assert_eq!(e.disposition(), Disposition::StopIntersection);
    }
}
