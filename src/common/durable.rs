//! Durable replacement of a small file (the state file, the metrics
//! textfile, known_hosts): a reader sees the old content or the new, never
//! a torn one, and after a crash or power loss the new content is there
//! once this returned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Who the new file belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Ownership {
    /// Permission bits (the umask does not apply).
    pub mode: u32,
    /// `Some((uid, gid))` to keep a file's owner when root rewrites it.
    pub owner: Option<(u32, u32)>,
}

/// Writes `bytes` to a hidden temporary file beside `path`, fsyncs it,
/// renames it over `path` and fsyncs the folder. The temporary name starts
/// with a dot and ends in `.tmp`, so a folder watcher that matches on the
/// extension (node_exporter's `*.prom`) never reads it half written. On any
/// failure the temporary file is removed and `path` is left as it was.
///
/// # Errors
/// The I/O error of the first step that failed: `path` has no parent
/// folder, the folder is not writable, the disk is full, the rename is
/// refused.
pub fn replace_file(path: &Path, bytes: &[u8], own: Ownership) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        Some(_) => Path::new("."),
        None => return Err(io::Error::other("the file has no parent folder")),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(own.mode)
            .open(&tmp)?;
        if let Some((uid, gid)) = own.owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        // A temporary file left by an earlier crash keeps its old mode.
        f.set_permissions(fs::Permissions::from_mode(own.mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Ownership = Ownership {
        mode: 0o640,
        owner: None,
    };

    #[test]
    fn replaces_with_the_mode_asked_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();
        // A leftover of a crash, read-only: replaced all the same.
        let stale = dir.path().join(".state.json.tmp");
        fs::write(&stale, b"torn").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o400)).unwrap();
        replace_file(&path, b"new", PLAIN).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_failed_replacement_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: the target is a non-empty folder.
        let path = dir.path().join("metrics.prom");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"x").unwrap();
        assert!(replace_file(&path, b"new", PLAIN).is_err());
        assert!(path.join("keep").exists());
        assert!(!dir.path().join(".metrics.prom.tmp").exists());
    }
}
