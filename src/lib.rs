//! v2x-data-sftp-client: pulls closed MMITSS V2X archives from roadside
//! coprocessors over SFTP, lands them durably, and only then deletes them.
//!
//! Data flow of one pass (each arrow a plain function call, nothing reaches
//! back up):
//!
//! ```text
//! config ──> pass ──> intersection ──> file ──> landing ──> report
//! ```
//!
//! | module | owns |
//! | --- | --- |
//! | [`cli`] | the command-line definition |
//! | [`config`] | the TOML schema, defaults, validation with file/key/line, the legacy JSON import |
//! | [`known_hosts`] | OpenSSH known_hosts parsing and matching |
//! | [`remote`] | one SSH session: timeouts, host-key check before auth, authentication |
//! | [`algorithms`] | the SSH ciphers, MACs and key exchanges offered (measured order), and what a session negotiated |
//! | [`classify`] | file name → element |
//! | [`landing`] | the local durable write and the rules that decide when a remote file may go |
//! | [`pass`] | workers, retries, deadline, cancellation, the per-intersection outcome |
//! | [`pipeline`] | one connected intersection: listing, pipelined reads, landing, the delete path |
//! | [`sftp`] | the SFTP v3 wire protocol over a libssh2 channel |
//! | [`report`] | the run summary: JSON state file and the `status` table (stale flags) |
//! | [`metrics`] | the Prometheus node_exporter textfile |
//! | [`logging`] | where log records go: journald under systemd, text on a terminal |
//! | [`service`] | systemd: sd-notify STATUS and timeout extension, the single-instance lock, signals |
//! | [`generator`] | the systemd generator: configured start time → timer drop-in, sandbox paths |
//! | [`progress`] | the progress bar of `run` on a terminal |
//! | [`ops`] | `run --dry-run`, `status` and `trust` as text and exit status |
//! | [`trust`] | `trust`: fetch a host key, confirm, add it to known_hosts |
//! | [`plan`] | `run --dry-run`: a listing walk that says what a pass would do |
//! | [`probe`] | `check-config --connect`: try every intersection, say what to fix |
//!
//! Outside `src/`: `vendor/libssh2-sys` is the libssh2 the `ssh2` crate links,
//! with one patch that decrypts a packet in one call instead of per 16-byte
//! block (`vendor/libssh2-sys/PATCHES.md`); [`sftp`] refuses to build
//! without it.

pub mod algorithms;
pub mod classify;
pub mod cli;
pub mod config;
pub mod error;
pub mod fault;
pub mod generator;
pub mod known_hosts;
pub mod landing;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod pass;
pub mod pipeline;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod remote;
pub mod report;
pub mod secret;
pub mod service;
pub mod sftp;
pub mod trust;
