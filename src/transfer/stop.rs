//! Why an intersection's transfer stopped early: the typed cause, kept as
//! it is from where it happened up to the pass (which logs it once) and the
//! report (which records its kind and message), and what it means for the
//! pass ([`Disposition`]): reconnect and go on, or stop this intersection
//! with its remote data kept.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::text::human_bytes;
use crate::error::Disposition;
use crate::landing::LandingError;
use crate::ledger::LedgerError;
use crate::ssh::session::RemoteError;
use crate::ssh::sftp::SftpError;

/// An early end of one intersection's transfer.
#[derive(Debug)]
pub struct Stop {
    pub cause: Cause,
    /// [`Disposition::Reconnect`] or [`Disposition::StopIntersection`];
    /// a file's own trouble never stops an intersection.
    pub disposition: Disposition,
}

/// What stopped it. Each message names what an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error("stopped by a signal")]
    Cancelled,
    #[error(
        "intersection deadline of {} passed (transfer.intersection_deadline)",
        humantime::format_duration(*.0)
    )]
    Deadline(Duration),
    /// Connecting, the host key, authentication.
    #[error(transparent)]
    Session(RemoteError),
    /// The SSH channel or the SFTP conversation broke.
    #[error(transparent)]
    Wire(#[from] SftpError),
    #[error("the server answered a {request} request with {answer} while listing")]
    Unexpected {
        request: &'static str,
        answer: String,
    },
    #[error(
        "cannot list {path}: {answer} (check v2x_data_location: it must hold an archive/ folder)"
    )]
    NoArchive { path: String, answer: String },
    #[error(
        "{path} lists more than {max} entries (transfer.max_listed_entries); stopped \
         before transferring anything, nothing was deleted. A server that never ends \
         a listing does this; so does an archive/ that was not pulled for years: then \
         raise transfer.max_listed_entries"
    )]
    TooManyEntries { path: String, max: u64 },
    /// The data directory itself (its folders) could not be made ready.
    #[error("{0}")]
    DataDirectory(LandingError),
    /// A local write, fsync or rename failed in a way that fails every
    /// further file too: the disk is full or failing.
    #[error("{path}: {source}")]
    Landing { path: String, source: LandingError },
    #[error(
        "{count} files in a row failed to land here, the last with: {last}; stopped this \
         intersection, its remote data is kept. Check the data directory {} (permissions, \
         the filesystem)",
        data_root.display()
    )]
    LocalFailures {
        count: u32,
        last: LandingError,
        data_root: PathBuf,
    },
    #[error(
        "not enough free disk space in {}: {} free, the next file and those in progress need {} \
         and transfer.min_free_space keeps {} free; stopped this intersection, its remote data \
         is kept. Free space or lower transfer.min_free_space",
        probe.display(), human_bytes(*free), human_bytes(*need), human_bytes(*min)
    )]
    DiskSpace {
        probe: PathBuf,
        free: u64,
        need: u64,
        min: u64,
    },
    #[error("cannot check free space of {}: {source}", probe.display())]
    FreeSpaceUnknown { probe: PathBuf, source: io::Error },
    #[error("{last} (gave up after {attempts} attempts; transfer.retries = {retries})")]
    GaveUp {
        last: Box<Cause>,
        attempts: u32,
        retries: u32,
    },
    /// `transfer.verify = "sha256"` and the account cannot hash files.
    #[error(
        "transfer.verify is \"sha256\" but the coprocessor account cannot hash files \
         (openssl dgst -sha256 or sha256sum): {0}; nothing was transferred or removed. Let \
         the account run commands, or set transfer.verify = \"auto\" to check sizes only \
         where hashing is not possible"
    )]
    VerifyUnavailable(String),
    /// The ledger could not be written: nothing more may be removed.
    #[error(transparent)]
    Ledger(LedgerError),
    /// A bug; see [`crate::error`].
    #[error("internal error (a bug, please report it): {0}")]
    Panic(String),
}

impl Cause {
    /// A short, stable name for the report and the metrics (`status
    /// --json`, alert rules), so a script need not parse messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::Cancelled => "cancelled",
            Cause::Deadline(_) => "deadline",
            Cause::Session(e) => e.kind(),
            Cause::Wire(_) | Cause::Unexpected { .. } => "connection",
            Cause::NoArchive { .. } => "no-archive",
            Cause::TooManyEntries { .. } => "listing-too-long",
            Cause::DataDirectory(_) | Cause::Landing { .. } | Cause::LocalFailures { .. } => {
                "local-disk"
            }
            Cause::DiskSpace { .. } | Cause::FreeSpaceUnknown { .. } => "disk-space",
            Cause::GaveUp { last, .. } => last.kind(),
            Cause::VerifyUnavailable(_) => "verify",
            Cause::Ledger(_) => "ledger",
            Cause::Panic(_) => "internal",
        }
    }

    fn disposition(&self) -> Disposition {
        match self {
            Cause::Session(e) if e.disposition() == Disposition::Reconnect => {
                Disposition::Reconnect
            }
            Cause::Wire(_) | Cause::Unexpected { .. } => Disposition::Reconnect,
            _ => Disposition::StopIntersection,
        }
    }
}

impl From<Cause> for Stop {
    fn from(cause: Cause) -> Stop {
        Stop {
            disposition: cause.disposition(),
            cause,
        }
    }
}

impl From<SftpError> for Stop {
    fn from(e: SftpError) -> Stop {
        Cause::Wire(e).into()
    }
}

impl Stop {
    /// Whether a new session may carry on where this one broke.
    pub fn reconnects(&self) -> bool {
        self.disposition == Disposition::Reconnect
    }

    pub fn cancelled() -> Stop {
        Cause::Cancelled.into()
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self.cause, Cause::Cancelled)
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_session_reconnects_and_everything_else_stops_the_intersection() {
        let broken: Stop = SftpError::Protocol("short packet".into()).into();
        assert!(broken.reconnects());
        assert_eq!(broken.cause.kind(), "connection");
        let late: Stop = Cause::Deadline(Duration::from_secs(3600)).into();
        assert!(!late.reconnects());
        assert_eq!(
            late.to_string(),
            "intersection deadline of 1h passed (transfer.intersection_deadline)"
        );
        let gave_up: Stop = Cause::GaveUp {
            last: Box::new(Cause::Wire(SftpError::Protocol("x".into()))),
            attempts: 4,
            retries: 3,
        }
        .into();
        // Retries are spent: a broken session no longer reconnects.
        assert!(!gave_up.reconnects());
        assert_eq!(gave_up.cause.kind(), "connection");
        assert!(Stop::cancelled().is_cancelled());
    }
}
