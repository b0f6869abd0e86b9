//! Integration-test fixtures: real OpenSSH sshds on loopback, MMITSS-shaped
//! remote trees served by them, local landing checks and network faults.
//!
//! Needs root and Debian's openssh-server/openssh-client (`.ci/install-deps`).
//! Everything cleans up on drop: sshds (with every process of their
//! connections) are killed and reaped, temp dirs removed, proxy threads joined.
//!
//! ```ignore
//! mod common;
//! use common::*;
//! let sshd = Sshd::start(SshdOptions::default());
//! let mut tree = RemoteTree::new();
//! tree.add_session("SpatzAve-Ssmith", stamp(6, 9), 1, 2_000..=8_000);
//! // ... run the product against sshd.addr(), tree.v2x_data_location(),
//! //     sshd.known_hosts_file(), TEST_USER / TEST_PASSWORD or sshd.client_key() ...
//! assert_landed(&data_dir, "intersection-1", &tree.manifest());
//! assert!(tree.remaining_files().is_empty());
//! tree.assert_current_session_untouched();
//! ```
#![allow(dead_code)]
// the re-exports below are used by some test files and not others
#![allow(unused_imports)]

pub mod client;
pub mod data;
pub mod faults;
pub mod local;
pub mod net;
pub mod remote;
pub mod sshd;
pub mod user;

pub use client::{Client, Site, TestAuth, assert_exit, bin, run_bin, stderr, stdout};
pub use data::{
    ELEMENTS, Rng, Stamp, csv_bytes, csv_header, element_file_name, element_file_token,
    expected_element, pseudo_random_bytes, session_name, stamp,
};
pub use faults::{
    Finished, Row, Running, Tally, Tmpfs, campaign_seed, campaign_table_path, failwrite_shim,
    partial_files, record, run_with_env, status_field, tally_gone, tally_landed, trials,
};
pub use local::{
    assert_landed, conflict_variant, empty_known_hosts, holds_copy, landing_places, sha256_bytes,
    sha256_file, walk_all, walk_files, write_file,
};
pub use net::{BlackHole, CutProxy, ProxyOptions, Trickle, closed_port, shut_down_proxy};
pub use remote::{DEFAULT_AGE, DEFAULT_COPROC_NAME, HostileEntries, ManifestEntry, RemoteTree};
pub use sshd::{SSHD_BIN, Sshd, SshdOptions, free_port};
pub use user::{ClientKey, KeyType, TEST_PASSWORD, TEST_USER, TestUser};

use std::process::Command;

/// Run a command to completion; panic with its output if it fails.
pub fn run_cmd(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
