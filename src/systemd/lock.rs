//! The single-instance lock: a non-blocking `flock(2)` on `<state>/lock`, so
//! a manual run during the timer's exits at once instead of racing it on the
//! same remote files. The kernel drops the lock when the process dies,
//! however it dies: no stale lock to clean up.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The file under the state directory that [`lock_instance`] locks.
pub const LOCK_FILE_NAME: &str = "lock";

/// Proof that this process is the only pass running. The lock is released
/// when this value is dropped or the process ends, whichever comes first.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why [`lock_instance`] did not get the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock. Not worth a retry in this run.
    #[error(
        "another pass is running{}; this one exits without touching anything. \
         Wait for it to finish (systemctl status v2x-data-sftp-client.service) \
         or stop it (systemctl stop v2x-data-sftp-client.service)",
        match pid { Some(pid) => format!(" (pid {pid})"), None => String::new() }
    )]
    Busy { pid: Option<u32> },
    /// The state directory or the lock file cannot be created, opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Takes the single-instance lock: a non-blocking exclusive `flock(2)` on
/// `<state_directory>/lock`, creating the directory and the file if needed.
///
/// On success the file holds this process's pid, which a second run quotes in
/// its [`LockError::Busy`] message. When run as root and the file is new, it
/// is given the state directory's owner, so a manual root run never leaves a
/// lock file the service user cannot open.
///
/// # Errors
/// [`LockError::Busy`] when another process holds the lock;
/// [`LockError::Io`] when the state directory or the lock file cannot be
/// created, opened or locked.
pub fn lock_instance(state_directory: &Path) -> Result<InstanceLock, LockError> {
    let path = state_directory.join(LOCK_FILE_NAME);
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_directory).map_err(|source| LockError::Io {
        path: state_directory.to_path_buf(),
        source,
    })?;
    let existed = path.exists();
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(file) => file,
        // A lock file someone else created and we may not write: locking
        // needs only a readable descriptor; we just cannot record our pid.
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            File::open(&path).map_err(io_err)?
        }
        Err(err) => return Err(io_err(err)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::Busy {
                pid: read_pid(&mut file),
            });
        }
        Err(TryLockError::Error(err)) => return Err(io_err(err)),
    }
    if !existed {
        give_to_directory_owner(&file, state_directory);
    }
    // Record who holds it; failure to do so is harmless.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    Ok(InstanceLock { _file: file, path })
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|&pid| pid != 0)
}

fn give_to_directory_owner(file: &File, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    // Only root can chown; for anyone else this fails harmlessly.
    let _ = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_instance(dir.path()).unwrap();
        let err = lock_instance(dir.path()).unwrap_err();
        match &err {
            LockError::Busy { pid } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "another pass is running (pid {})",
                std::process::id()
            )),
            "{message}"
        );
        drop(first);
        lock_instance(dir.path()).expect("lock is free again after drop");
    }

    #[test]
    fn lock_creates_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        let lock = lock_instance(&state).unwrap();
        assert_eq!(lock.path(), state.join("lock"));
    }

    #[test]
    fn lock_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "").unwrap();
        let err = lock_instance(&blocker).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
