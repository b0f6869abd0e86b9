//! SHA-256 of what lands: on the writer's thread for small files, on a
//! thread of its own beside the one that decrypts for big ones, and of
//! whole files on disk (a resumed prefix, `verify`).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use sha2::{Digest, Sha256};

use super::{hex, read_full};

/// Big files (from where they resume) are hashed on a thread of their own:
/// on the engine's thread, which also decrypts, hashing a GiB would add its
/// half second to the transfer instead of running beside it.
pub(super) const HASH_THREAD_MIN: u64 = 4 << 20;
/// Buffers waiting for a hash thread at most (about 1 MiB): past that the
/// writer waits, so a slow hash cannot grow memory (64 big files at once
/// hold 64 MiB at the very worst, and the reads in flight are far fewer).
pub(super) const HASH_QUEUE: usize = 4;

/// A partial's SHA-256, in the writer's thread or on one of its own.
pub(super) enum Hashing {
    Inline(Sha256),
    Thread {
        tx: Option<mpsc::SyncSender<Vec<u8>>>,
        handle: Option<thread::JoinHandle<Sha256>>,
    },
}

impl Hashing {
    /// Continues `prefix` (what a resumed partial holds), on a thread if
    /// `rest` bytes are still to come and a thread can be had.
    pub(super) fn start(prefix: Sha256, rest: u64) -> Hashing {
        if rest < HASH_THREAD_MIN {
            return Hashing::Inline(prefix);
        }
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let mut hasher = prefix.clone();
        let spawned = thread::Builder::new().name("hash".into()).spawn(move || {
            for buf in rx {
                hasher.update(&buf);
            }
            hasher
        });
        match spawned {
            Ok(handle) => Hashing::Thread {
                tx: Some(tx),
                handle: Some(handle),
            },
            Err(_) => Hashing::Inline(prefix),
        }
    }

    pub(super) fn update(&mut self, buf: Vec<u8>) {
        match self {
            Hashing::Inline(h) => h.update(&buf),
            Hashing::Thread { tx, .. } => {
                // A hash thread that is gone (it cannot panic on bytes)
                // leaves the digest to `digest`, which then fails safe.
                if let Some(t) = tx
                    && t.send(buf).is_err()
                {
                    *tx = None;
                }
            }
        }
    }

    /// The digest so far; a thread is joined and its hasher taken back.
    pub(super) fn digest(&mut self) -> [u8; 32] {
        if let Hashing::Thread { tx, handle } = self {
            drop(tx.take());
            let joined = handle.take().map(thread::JoinHandle::join);
            *self = match joined {
                Some(Ok(h)) => Hashing::Inline(h),
                // Never expected; a digest of nothing matches no remote hash
                // of a non-empty file, and the ledger records what was
                // computed: a wrong hash never lets a remote file go unseen.
                _ => Hashing::Inline(Sha256::new_with_prefix(b"hash thread lost")),
            };
        }
        match self {
            Hashing::Inline(h) => h.clone().finalize().into(),
            Hashing::Thread { .. } => [0; 32],
        }
    }
}

/// Feeds the first `len` bytes of `file` (read from its current offset)
/// to `hasher`; returns how many there were.
pub(super) fn hash_prefix(file: &mut File, len: u64, hasher: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(buf.len())
            .min(buf.len());
        let n = read_full(file, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(done)
}

/// SHA-256 of a whole file, read in 1 MiB blocks.
///
/// # Errors
/// Opening or reading `path` failed.
pub fn sha256_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let n = hash_prefix(&mut f, u64::MAX, &mut hasher)?;
    Ok((hasher.finalize().into(), n))
}

/// Lower-case hex, as `sha256sum` prints a digest.
pub fn hex_digest(digest: &[u8; 32]) -> String {
    hex(digest)
}
