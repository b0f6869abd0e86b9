//! Bounded resources: many intersections, big files. Issue 4's limits,
//! checked on the real binary (figures, not timings: timings are for the
//! benchmark, not for CI).

mod common;

use std::time::Duration;

use common::*;

/// Highest thread count and peak RSS (VmHWM, KiB) of the process seen
/// until it exits. Read from /proc rather than `ru_maxrss`, which also
/// counts the forked test process's memory before the exec.
fn watch(r: &Running) -> (usize, u64) {
    let (mut threads, mut hwm) = (0, 0);
    while !r.exited() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", r.pid())) {
            // Only once the binary runs: before the exec it is still a test fork.
            if s.lines()
                .any(|l| l.starts_with("Name:") && l.contains("v2x-data-sftp"))
            {
                threads = threads.max(status_field(&s, "Threads:").unwrap_or(0) as usize);
                hwm = hwm.max(status_field(&s, "VmHWM:").unwrap_or(0));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (threads, hwm)
}

#[test]
fn sixty_four_intersections_with_bounded_threads_memory_and_connections() {
    // sshd's default MaxStartups: beyond 10 unauthenticated connections it
    // starts dropping them. A client that opened them all at once would see
    // refusals; ours keeps parallel_intersections (4) at a time.
    let sshd = Sshd::start(SshdOptions::default().max_startups("10:30:100"));
    let mut client = Client::new();
    let mut trees = Vec::new();
    for i in 0..64u64 {
        let mut t = RemoteTree::with_options(&format!("Coproc{i}"), i);
        t.add_session(&format!("Coproc{i}"), stamp(6, 9), 1, 500..=4_000);
        client.add_untrusted(Site::new(&format!("ix-{i:02}"), &sshd, &t));
        trees.push(t);
    }
    client.known_hosts = sshd.known_hosts_lines();
    let r = Running::start(&client, &["run"], &[]);
    let (threads, rss_kib) = watch(&r);
    let f = r.wait(Duration::from_secs(120));
    assert_eq!(f.code(), Some(0), "{}", f.stderr);
    for (i, t) in trees.iter().enumerate() {
        assert_landed(&client.data_dir(), &format!("ix-{i:02}"), &t.manifest());
        assert!(t.remaining_files().is_empty());
    }
    // main, the signal thread, and per worker (parallel_intersections = 4)
    // the worker, its watchdog and its commit threads: nothing grows with
    // the number of intersections. (The bound was 24 until a run sampled
    // every worker mid-commit at once: 26.)
    let bound = 2 + 4 * (2 + v2x_data_sftp_client::transfer::engine::COMMIT_THREADS);
    assert!(threads <= bound, "{threads} threads (bound {bound})");
    assert!(rss_kib > 0 && rss_kib < 64 * 1024, "{rss_kib} KiB");
    // One connection per intersection: none was dropped and retried.
    assert_eq!(sshd.log_count("Accepted password"), 64, "{}", f.stderr);
    println!(
        "64 intersections: peak {threads} threads, {} MiB RSS, 64 connections",
        rss_kib / 1024
    );
}

#[test]
fn a_big_file_lands_in_bounded_memory() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_log("X", "remoteBsm", stamp(6, 9), 192 << 20);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let r = Running::start(&client, &["run"], &[]);
    let (_, rss_kib) = watch(&r);
    let f = r.wait(Duration::from_secs(120));
    assert_eq!(f.code(), Some(0), "{}", f.stderr);
    assert_landed(&client.data_dir(), "a", &tree.manifest());
    assert!(rss_kib > 0 && rss_kib < 64 * 1024, "{rss_kib} KiB");
    println!("192 MiB file: {} MiB RSS", rss_kib / 1024);
}
