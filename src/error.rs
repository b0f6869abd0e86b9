//! Error policy.
//!
//! - Each layer defines its own typed errors with `thiserror`:
//!   [`crate::config::ConfigError`], [`crate::remote::RemoteError`],
//!   [`crate::landing::LandingError`]. There is no `anyhow`: `main` maps one
//!   result to the exit status (0 all handled, 1 an intersection failed, 2
//!   usage or config) and nothing else needs type erasure.
//! - Every error names what an operator needs to act: the config key and line,
//!   the host, the remote or local path. The intersection is carried by the
//!   tracing span (field `intersection`) and by the report, so messages do not
//!   repeat it.
//! - A failure is logged once, where it is handled (in `pass`), with
//!   structured fields; lower layers return errors and do not log them.
//! - Every error says what it means for the pass, as a [`Disposition`]:
//!   that decides between "reconnect and go on", "skip this file", and "stop
//!   this intersection, keep its remote data".
//! - Secrets never appear in an error: they live in
//!   [`crate::secret::Secret`], whose `Display` and `Debug` print `***`.

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
