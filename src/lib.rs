//! v2x-data-sftp-client: pulls closed MMITSS V2X archives from roadside
//! coprocessors over SFTP, lands them durably, and only then deletes them.
//!
//! Data flow of one pass (each arrow a plain function call with typed
//! values):
//!
//! ```text
//! commands::run ──> config ──> transfer::pass ──> transfer::engine ──> landing ──> report
//!                              (intersection)     (file: classify,
//!                                                  read, delete)
//! ```
//!
//! Where a newcomer finds the three places that decide about data:
//! a file is **classified** in `transfer/classify.rs` (and `transfer/rules.rs`
//! says whether it is taken tonight), it is **landed** in `landing/` (and
//! hashed as it is written), **recorded** in `ledger/` before anything is
//! removed, and the one **remote delete** is `transfer/engine/commit.rs`.
//!
//! **The layer rule** (checked by `tests/layers.rs`): the folders below are
//! layers, lowest first. A module uses its own layer and the layers above
//! it in this table, never one below it, so nothing reaches back up the
//! flow: landing knows nothing of SSH or of the pass, the report nothing of
//! how the run went wrong, the engine nothing of the pass that drives it.
//!
//! | layer | modules | own |
//! | --- | --- | --- |
//! | 0 | [`common`], [`error`], [`logging`] | the clock, escaping and human units, durable file replacement, secrets, crash points for tests; the error policy; where log records go |
//! | 1 | [`config`] | the TOML schema and defaults, validation with file/key/line, the legacy JSON import |
//! | 2 | [`cli`], [`systemd`] | the command line; sd-notify, the single-instance lock, signals, the timer generator |
//! | 3 | [`ssh`] | one SSH session (timeouts, host-key check before auth, authentication), known_hosts, the SFTP wire |
//! | 4 | [`landing`], [`ledger`] | the local durable write and the proof ([`landing::Landed`]) a delete needs; the record of every landed file, durable before its remote copy goes |
//! | 5 | [`report`] | the run summary: the state file, the `status` table, metrics, progress |
//! | 6 | [`transfer`] | classify and rules → engine (listing, reads, commit and delete) → pass (workers, retries, deadline) |
//! | 7 | [`commands`] | one file per command, and the one map to exit statuses |
//!
//! Outside `src/`: `vendor/libssh2-sys` is the libssh2 the `ssh2` crate links,
//! with one patch that decrypts a packet in one call instead of per 16-byte
//! block (`vendor/libssh2-sys/PATCHES.md`); [`ssh::sftp`] refuses to build
//! without it.

pub mod cli;
pub mod commands;
pub mod common;
pub mod config;
pub mod error;
pub mod landing;
pub mod ledger;
pub mod logging;
pub mod report;
pub mod ssh;
pub mod systemd;
pub mod transfer;
