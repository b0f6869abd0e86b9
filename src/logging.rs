//! Where log records go: the journal when systemd connected stderr to it,
//! readable text on stderr otherwise.
//!
//! Under the shipped unit, stderr is a journal stream and systemd says so in
//! `JOURNAL_STREAM=<dev>:<inode>` (`systemd.exec(5)`). The variable is
//! inherited by children whose stderr may point elsewhere (a shell pipe, a
//! file), so it is trusted only when it names the very file stderr is: then
//! records go to journald natively, with their fields as journal fields. The
//! choices made for the journal:
//!
//! * plain field names: `tracing-journald` prefixes every field with `F_`
//!   unless told not to, and the contract promises `INTERSECTION=<name>`;
//!   a span field counts too, so `info_span!("intersection", intersection = %name)`
//!   tags every record inside it;
//! * INFO at priority 6 (informational), DEBUG and TRACE at 7: the crate's
//!   default maps INFO to 5 (notice), which would make a routine pass look
//!   noteworthy in `journalctl -p notice`;
//! * `SYSLOG_IDENTIFIER=v2x-data-sftp-client`, so `journalctl -t` works for a
//!   run started by hand too.
//!
//! Everything else (a terminal, a pipe, a file, a journal that refused the
//! connection) gets the `fmt` layer on stderr, with colour only on a terminal.
//!
//! The filter is `info` (`debug` for this crate with `verbose`); `RUST_LOG`,
//! when set, replaces it. It takes a comma-separated list of `level` and
//! `target=level` (`debug`, `info,v2x_data_sftp_client=trace`): the
//! [`Targets`] syntax, which is what an operator needs from it, without the
//! span and field-value matching (and the regex engine) of `EnvFilter`. An
//! empty or unparsable `RUST_LOG` is ignored. Nothing here panics: a second
//! `init` is ignored.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The journal's `SYSLOG_IDENTIFIER`, equal to the binary's and the unit's name.
pub const SYSLOG_IDENTIFIER: &str = "v2x-data-sftp-client";

/// Installs the global subscriber. Call once, first thing in `main`.
///
/// `verbose` adds DEBUG records from this crate. Never panics; if journald is
/// detected but cannot be reached, falls back to text on stderr and says so.
pub fn init(verbose: bool) {
    let filter = filter(verbose);
    if stderr_is_journal() {
        match journald_layer() {
            Ok(layer) => {
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init();
                return;
            }
            Err(err) => {
                init_fmt(filter);
                tracing::warn!(
                    "stderr is the journal but journald's socket refused a record ({err}); \
                     logging as text on stderr instead"
                );
                return;
            }
        }
    }
    init_fmt(filter);
}

fn filter(verbose: bool) -> Targets {
    filter_from(std::env::var("RUST_LOG").ok().as_deref(), verbose)
}

/// The filter for a `RUST_LOG` value, if any; see the module docs.
fn filter_from(rust_log: Option<&str>, verbose: bool) -> Targets {
    if let Some(text) = rust_log.filter(|t| !t.trim().is_empty())
        && let Ok(targets) = text.parse::<Targets>()
    {
        return targets;
    }
    if verbose {
        Targets::new()
            .with_default(tracing::Level::INFO)
            .with_target("v2x_data_sftp_client", tracing::Level::DEBUG)
    } else {
        Targets::new().with_default(tracing::Level::INFO)
    }
}

fn journald_layer() -> std::io::Result<tracing_journald::Layer> {
    use tracing_journald::{Priority, PriorityMappings};
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
        .with_priority_mappings(PriorityMappings {
            error: Priority::Error,
            warn: Priority::Warning,
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
        }))
}

fn init_fmt(filter: Targets) {
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(LogWriter)
                .with_ansi(ansi)
                .with_target(false),
        )
        .try_init();
}

/// True when stderr is the journal stream systemd set up for this process:
/// `JOURNAL_STREAM` holds `<device>:<inode>` of that stream, and they match
/// stderr's own (`systemd.exec(5)`, "$JOURNAL_STREAM").
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    // fstat(2) of a duplicate of fd 2, so stderr itself is never closed.
    let Ok(dup) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    stream_matches(&value.to_string_lossy(), &std::fs::File::from(dup))
}

/// True when `journal_stream` (`<device>:<inode>`) names the file `fd` is open on.
fn stream_matches(journal_stream: &str, fd: &std::fs::File) -> bool {
    let Some((dev, ino)) = parse_journal_stream(journal_stream) else {
        return false;
    };
    match fd.metadata() {
        Ok(meta) => meta.dev() == dev && meta.ino() == ino,
        Err(_) => false,
    }
}

/// Parses `JOURNAL_STREAM`'s `<device>:<inode>`, both decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.trim().parse().ok()?, ino.trim().parse().ok()?))
}

/// The progress bar being shown, if any ([`crate::report::progress`]):
/// text records are printed above it.
pub static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// stderr for log records, hiding the bar while one is printed.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = ACTIVE_BAR.lock().ok().and_then(|a| a.clone());
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_takes_levels_and_targets_and_falls_back_when_unset_or_bad() {
        use tracing::Level;
        const CRATE: &str = "v2x_data_sftp_client";
        let on = |f: &Targets, target: &str, level: Level| f.would_enable(target, &level);

        let quiet = filter_from(None, false);
        assert!(on(&quiet, CRATE, Level::INFO) && !on(&quiet, CRATE, Level::DEBUG));
        let verbose = filter_from(None, true);
        assert!(on(&verbose, CRATE, Level::DEBUG) && !on(&verbose, "ssh2", Level::DEBUG));

        let debug = filter_from(Some("debug"), false);
        assert!(on(&debug, "ssh2", Level::DEBUG) && !on(&debug, CRATE, Level::TRACE));
        let mixed = filter_from(Some("warn,v2x_data_sftp_client=trace"), false);
        assert!(on(&mixed, CRATE, Level::TRACE));
        assert!(on(&mixed, "other", Level::WARN) && !on(&mixed, "other", Level::INFO));

        // Unset, empty or unparsable: the default (with -v's addition).
        for bad in ["", "  ", "info,x=loud"] {
            let f = filter_from(Some(bad), true);
            assert!(on(&f, CRATE, Level::DEBUG), "{bad:?}");
            assert!(!on(&f, "other", Level::DEBUG), "{bad:?}");
        }
    }

    #[test]
    fn journal_stream_parses_device_and_inode() {
        assert_eq!(parse_journal_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_journal_stream("8123456"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }

    #[test]
    fn stream_matching_is_by_device_and_inode_not_presence() {
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        assert!(stream_matches(
            &format!("{}:{}", meta.dev(), meta.ino()),
            &file
        ));
        assert!(!stream_matches(
            &format!("{}:{}", meta.dev(), meta.ino() + 1),
            &file
        ));
        assert!(!stream_matches("garbage", &file));
    }
}
