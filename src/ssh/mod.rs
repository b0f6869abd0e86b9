//! Talking to a coprocessor: everything that knows SSH.
//!
//! | module | owns |
//! | --- | --- |
//! | [`session`] | one SSH session: timeouts, host-key check before auth, authentication, the SFTP channel |
//! | [`known_hosts`] | OpenSSH known_hosts parsing and matching |
//! | [`algorithms`] | the configured cipher, MAC and key-exchange order set on a session, and what it negotiated |
//! | [`exec`] | the coprocessor's own `sha256sum` over an exec channel, names never in a shell |
//! | [`sftp`] | the SFTP v3 wire: requests out, answers in any order, behind the [`sftp::Wire`] trait |
pub mod algorithms;
pub mod exec;
pub mod known_hosts;
pub mod session;
pub mod sftp;
