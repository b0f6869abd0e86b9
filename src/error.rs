//! Error policy.
//!
//! - Each layer defines its own typed errors with `thiserror`:
//!   [`crate::config::ConfigError`], [`crate::ssh::session::RemoteError`],
//!   [`crate::ssh::sftp::SftpError`], [`crate::landing::LandingError`]. An
//!   intersection's early end is a [`crate::transfer::stop::Stop`]: the typed
//!   cause (one of those errors, or the deadline, a signal, a full disk...)
//!   and its [`Disposition`], kept as they are up to the pass, which logs
//!   the stop once and records its kind (`stopped_by`) and message in the
//!   report. There is no `anyhow`: [`crate::commands::Exit`] is the one map
//!   to the exit status (0 all handled, 1 an intersection failed, 2 usage or
//!   config) and nothing else needs type erasure.
//! - Every error names what an operator needs to act: the config key and line,
//!   the host, the remote or local path. The intersection is carried by the
//!   tracing span `intersection` made per intersection (the journal's
//!   `INTERSECTION=` field on every record) and by the report, so messages
//!   do not repeat it.
//! - A failure is logged once, where it is handled (in `transfer::pass` for
//!   an intersection, in the engine for a file); lower layers return errors
//!   and do not log them.
//! - Every error says what it means for the pass, as a [`Disposition`]:
//!   that decides between "reconnect and go on", "skip this file", and "stop
//!   this intersection, keep its remote data".
//! - Secrets never appear in an error: they live in
//!   [`crate::common::secret::Secret`], whose `Display` and `Debug` print `***`.
//! - A panic is a bug, and a bug in one intersection must not cost the
//!   others their pass: the pass catches a panic per intersection and the
//!   commit threads per file, and either becomes an "internal error" that
//!   stops that intersection with its remote data kept. Panic messages are
//!   ours (format strings in this crate, never a secret's value), so they
//!   may go to the journal and the state file as they are.

/// What an error means for the intersection being worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The connection broke or timed out: reconnect (with backoff, within
    /// the intersection's deadline and retry budget) and carry on; a partial
    /// download resumes.
    Reconnect,
    /// Only this file is affected (vanished, unreadable, changed while being
    /// read): report it, keep the remote copy, go on with the next file.
    SkipFile,
    /// Going on cannot help this pass (host key, authentication, local disk
    /// full or failing): stop the intersection, keep its remote data.
    StopIntersection,
}

/// The message of a caught panic, for the report and the journal.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_of_literals_and_formatted_strings_and_others() {
        let caught = |f: fn()| std::panic::catch_unwind(f).unwrap_err();
        assert_eq!(panic_message(caught(|| panic!("plain")).as_ref()), "plain");
        assert_eq!(
            panic_message(caught(|| panic!("formatted {}", 42)).as_ref()),
            "formatted 42"
        );
        assert_eq!(
            panic_message(caught(|| std::panic::panic_any(7u8)).as_ref()),
            "unknown panic payload"
        );
    }
}
