//! What may be taken from a listing, and when: the rules that `run` and
//! `run --dry-run` share, so the plan says what the pass will do.

use std::ffi::OsStr;
use std::time::Duration;

use crate::landing::is_plain_name;
use crate::ssh::session::Kind;

/// How deep folders are followed below `archive/`.
pub const MAX_DEPTH: usize = 8;

/// The one rule, shared by `run` and `run --dry-run`, for what may be
/// taken from a listing: a plain file or a folder within [`MAX_DEPTH`].
/// Anything else is left where it is, for the reason returned.
///
/// # Errors
/// The reason an entry is left alone, as the report and the dry run show
/// it: a name that is not plain, a symlink, a device, FIFO or socket, or a
/// folder deeper than [`MAX_DEPTH`].
pub fn entry_rule(name: &OsStr, kind: Kind, depth: usize) -> Result<(), String> {
    if !is_plain_name(name) {
        return Err("not a plain file name (empty, dot, hidden, too long, or with control characters); left alone".into());
    }
    match kind {
        Kind::File => Ok(()),
        Kind::Dir if depth >= MAX_DEPTH => Err(format!(
            "folder nested deeper than {MAX_DEPTH} levels; left alone"
        )),
        Kind::Dir => Ok(()),
        Kind::Symlink => Err("symbolic link; never followed, pulled or deleted".into()),
        Kind::Other => {
            Err("not a regular file or folder (device, FIFO, socket); left alone".into())
        }
    }
}

/// The one rule, shared by `run` and `run --dry-run`, for files that wait
/// for a later pass: `transfer.min_age` guards only what can still be
/// written in place. The collector closes a session by renaming its whole
/// folder into `archive/`, so a file inside a folder there (`depth` > 0) is
/// final however fresh its mtime, and waiting would hold the night's data
/// back a whole day. A file directly in `archive/` (`depth` 0) may be a
/// compressor's `<session>.zip` being written: it waits until it is
/// `min_age` old. For every file, the size and mtime check after the read
/// still keeps a file that changed from being deleted.
pub fn too_young(depth: usize, mtime: u64, now: u64, min_age: Duration) -> Option<String> {
    let age = now.saturating_sub(mtime);
    (depth == 0 && age < min_age.as_secs()).then(|| {
        format!(
            "directly in archive/ and modified {age} s ago, younger than transfer.min_age ({}): \
             it may still be being written; taken by a later pass",
            humantime::format_duration(min_age)
        )
    })
}
