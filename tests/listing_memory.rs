//! Issue 16.3: what a listing costs, as this process's peak resident
//! memory (VmHWM, reset between the two cases through clear_refs). It is
//! the only test in this binary, so nothing else is counted. The engine
//! runs against the scripted server (`sftp::scripted`), which generates
//! the names as they are listed and holds none of them: what is measured
//! is the engine's own bookkeeping, with the shipped
//! `transfer.max_listed_entries`.

mod common;

use std::time::Instant;

use common::status_field;

use v2x_data_sftp_client::config::DEFAULT_MAX_LISTED_ENTRIES;
use v2x_data_sftp_client::ssh::sftp::scripted::{Generated, Scripted};
use v2x_data_sftp_client::transfer::harness::{ARCHIVE, Harness};

/// The bound the issue sets for a listing of a million names.
const BOUND_KIB: u64 = 256 << 10;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status_field(&status, field).unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    assert!(status_kib("VmHWM:") <= status_kib("VmRSS:") + 1024);
}

#[test]
fn a_million_listed_names_and_a_listing_that_never_ends_stay_under_256_mib() {
    assert_eq!(DEFAULT_MAX_LISTED_ENTRIES, 1_000_000);

    // 10,000 session folders of 99 files: 1,000,000 names, all taken.
    reset_peak();
    let before = status_kib("VmRSS:");
    let t0 = Instant::now();
    let mut h = Harness::new();
    let mut server = Scripted::new();
    server.faults.cancel_on_open = Some(h.control.cancel.clone());
    server.generate(Generated {
        path: ARCHIVE.as_bytes().to_vec(),
        folders: 10_000,
        files: 99,
    });
    let o = h.run(&mut server);
    // Cancelled at the first OPEN: listed, ordered, nothing transferred.
    assert_eq!(o.result, Err("cancelled".to_string()));
    assert_eq!(server.requests("OPENDIR").len(), 10_001);
    let million = status_kib("VmHWM:");
    println!(
        "1,000,000 names: {:.1} s, peak RSS {} MiB ({} MiB before)",
        t0.elapsed().as_secs_f64(),
        million >> 10,
        before >> 10
    );
    assert!(million < BOUND_KIB, "peak RSS {million} KiB");
    drop(o);
    drop(server);
    drop(h);

    // A folder whose listing never ends: stopped at the bound, nothing
    // opened or removed, memory bounded the same way.
    reset_peak();
    let t0 = Instant::now();
    let mut h = Harness::new();
    let mut server = Scripted::new();
    server.file(
        &format!("{ARCHIVE}/S1/S1_spatLog_06092021_000000.csv"),
        b"row\n",
    );
    server.dir(&format!("{ARCHIVE}/S2"));
    server
        .faults
        .endless
        .insert(format!("{ARCHIVE}/S2").into_bytes());
    let o = h.run(&mut server);
    let err = o
        .result
        .expect_err("an endless listing must stop the intersection");
    assert!(
        err.starts_with(
            "fatal: /v2x/archive lists more than 1000000 entries (transfer.max_listed_entries)"
        ),
        "{err}"
    );
    assert!(server.requests("OPEN").is_empty() && server.requests("REMOVE").is_empty());
    let endless = status_kib("VmHWM:");
    println!(
        "endless listing: stopped after {:.1} s, peak RSS {} MiB",
        t0.elapsed().as_secs_f64(),
        endless >> 10
    );
    assert!(endless < BOUND_KIB, "peak RSS {endless} KiB");
}
