//! The fault campaign (issue 5): break things on purpose and check, after
//! every trial, that each original file ends up exactly once, byte-identical,
//! at its landing path, and that nothing is left remotely once a pass
//! succeeds. Every test adds a row to the figures in
//! `target/fault-campaign.md` (docs/reliability.md).
//!
//! Needs the `fault-injection` feature (crash points) and root (tmpfs).
//! `V2X_CAMPAIGN=long` runs ten times the trials, `V2X_TRIALS=N` exactly N,
//! `V2X_SEED=N` replays the random choices of a run (printed at its start).

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// No pass of these tests may take longer (a hang is a failure).
const LIMIT: Duration = Duration::from_secs(120);

/// A coprocessor's archive with big and small files: two sessions of small
/// CSVs, a session holding one big file and a nested folder, and a zipped
/// session directly in `archive/`. Sizes vary with `seed`.
fn mixed_tree(seed: u64) -> RemoteTree {
    let mut rng = Rng::new(seed);
    let mut t = RemoteTree::with_options("Trial", seed);
    let day = 1 + (seed % 27) as u32;
    t.add_session(DEFAULT_COPROC_NAME, stamp(4, day), 2, 200..=40_000);
    t.add_session("srmLog_Street", stamp(5, day), 1, 1_000..=8_000);
    let big = session_name("Big", stamp(3, day));
    t.add_random_file(
        &format!("{big}/Big_spatLog_{}.csv", stamp(3, day).mmitss()),
        rng.range(1 << 20, 6 << 20) as usize,
    );
    t.add_file(
        &format!("{big}/nested/Big_ssmLog_{}.csv", stamp(3, day).mmitss()),
        b"nested ssm row\n",
    );
    t.add_zip_session("Zip", stamp(2, day), rng.range(64 << 10, 1 << 20) as usize);
    // Issue 16: a session sent again under another folder name, its file
    // of one name, size and mtime holding other bytes.
    let twin = session_name("Twin", stamp(1, day));
    t.add_twins(
        &twin,
        &format!("Twin_spatLog_{}.csv", stamp(1, day).mmitss()),
        rng.range(10_000, 300_000) as usize,
    );
    t
}

/// A client for `trees` (intersections "a", "b", ...) on `sshd`.
fn client_for(sshd: &Sshd, trees: &[RemoteTree]) -> Client {
    let mut c = Client::new();
    for (i, t) in trees.iter().enumerate() {
        c.add_untrusted(Site::new(&ix_name(i), sshd, t));
    }
    c.known_hosts = sshd.known_hosts_lines();
    c
}

/// The name of the `i`-th intersection of [`client_for`]: "a", "b", ...
fn ix_name(i: usize) -> String {
    ((b'a' + i as u8) as char).to_string()
}

/// After a successful pass: every file landed exactly once, nothing left
/// remotely (files or session folders), the current session untouched, no
/// temporary file left. Returns the figures.
#[track_caller]
fn check_complete(client: &Client, trees: &[RemoteTree], context: &str) -> Tally {
    let mut tally = Tally::default();
    for (i, t) in trees.iter().enumerate() {
        let name = ix_name(i);
        let got = tally_landed(&client.data_dir(), &name, &t.manifest());
        assert_eq!(
            (got.lost, got.duplicated),
            (0, 0),
            "{context}: intersection {name}: {got:?}"
        );
        assert_landed(&client.data_dir(), &name, &t.manifest());
        t.assert_emptied(context);
        t.assert_current_session_untouched();
        tally += got;
    }
    let partials = partial_files(&client.data_dir());
    assert!(
        partials.is_empty(),
        "{context}: temporary files left after a successful pass: {partials:?}"
    );
    check_ledger(client, trees, context);
    tally
}

/// Issue 11: every file removed remotely has exactly one ledger record,
/// whose hash is the landed file's, and `verify` finds nothing amiss.
#[track_caller]
fn check_ledger(client: &Client, trees: &[RemoteTree], context: &str) {
    let records = client.ledger();
    for (i, t) in trees.iter().enumerate() {
        let name = ix_name(i);
        let remaining = t.remaining_files();
        for m in t.manifest().iter().filter(|m| !remaining.contains(&m.rel)) {
            let remote = t.archive_dir().join(&m.rel).display().to_string();
            let mine: Vec<&serde_json::Value> = records
                .iter()
                .filter(|r| {
                    r["intersection"] == name.as_str() && r["remote_path"] == remote.as_str()
                })
                .collect();
            assert_eq!(mine.len(), 1, "{context}: records of {remote}: {mine:#?}");
            let r = mine[0];
            assert_eq!(r["sha256"], m.sha256.as_str(), "{context}: {remote}");
            let local = client.data_dir().join(r["path"].as_str().unwrap_or(""));
            assert_eq!(
                sha256_file(&local),
                m.sha256,
                "{context}: {}",
                local.display()
            );
        }
    }
    let out = client.cmd(&["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{context}: verify:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// After a failed or killed pass: every file gone from the remote side is
/// landed, byte-identical (nothing deleted that did not land).
#[track_caller]
fn check_nothing_lost(client: &Client, trees: &[RemoteTree], context: &str) {
    for (i, t) in trees.iter().enumerate() {
        let manifest = t.manifest();
        let gone: Vec<String> = t.taken().into_iter().map(|m| m.rel).collect();
        let got = tally_gone(&client.data_dir(), &ix_name(i), &manifest, &gone);
        assert_eq!(
            got.lost,
            0,
            "{context}: deleted remotely but not landed: {got:?}\nremaining {:?}\nlocal {:?}",
            t.remaining_files(),
            walk_files(&client.data_dir())
        );
        t.assert_current_session_untouched();
    }
}

/// Reruns passes until one succeeds (at most `max`); returns how many ran.
#[track_caller]
fn rerun_until_ok(client: &Client, max: usize, context: &str) -> usize {
    let mut last = String::new();
    for n in 1..=max {
        let f = run_with_env(client, &[], LIMIT);
        if f.code() == Some(0) {
            return n;
        }
        last = f.stderr;
    }
    panic!("{context}: no pass succeeded in {max} reruns; last stderr:\n{last}");
}

/// One rerun succeeds and completes everything; returns its figures.
#[track_caller]
fn rerun_completes(client: &Client, trees: &[RemoteTree], context: &str) -> Tally {
    assert_eq!(rerun_until_ok(client, 1, context), 1);
    check_complete(client, trees, context)
}

#[derive(Debug, Clone)]
enum Kill {
    /// SIGKILL this long after the start.
    After(Duration),
    /// The binary kills itself the n-th time it reaches a crash point.
    At(&'static str, usize),
}

const CRASH_POINTS: [&str; 6] = [
    "before-commit",
    "after-commit",
    "before-record",
    "after-record",
    "after-delete",
    "before-rmdir",
];

/// Runs one pass that is killed as `kill` says; returns whether it died.
fn killed_pass(client: &Client, kill: &Kill) -> bool {
    let f = match kill {
        Kill::After(d) => {
            let r = Running::start(client, &["run"], &[]);
            std::thread::sleep(*d);
            r.signal(Signal::SIGKILL);
            r.wait(LIMIT)
        }
        Kill::At(point, n) => {
            let spec = format!("{point}:{n}");
            run_with_env(client, &[("V2X_FAULT_KILL_AT", spec.as_str())], LIMIT)
        }
    };
    if !f.killed() {
        assert!(
            matches!(f.code(), Some(0) | Some(1)),
            "{kill:?}: {:?}\n{}",
            f.status,
            f.stderr
        );
    }
    f.killed()
}

/// How long a clean pass over a fresh mixed tree takes here, to spread the
/// random kills over a whole pass.
fn calibrate(sshd: &Sshd, seed: u64) -> (Duration, Tally) {
    let trees = vec![mixed_tree(seed), mixed_tree(seed + 1)];
    let client = client_for(sshd, &trees);
    let f = run_with_env(&client, &[], LIMIT);
    assert_eq!(f.code(), Some(0), "{}", f.stderr);
    let tally = check_complete(&client, &trees, "calibration");
    (f.elapsed, tally)
}

/// Issue 5.1: SIGKILL at random moments (and at random crash points), one to
/// three times in a row, then passes rerun until one succeeds.
#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let sshd = Sshd::start_default();
    let seed = campaign_seed();
    println!("sigkill campaign: V2X_SEED={seed}");
    let mut rng = Rng::new(seed);
    let (pass_time, mut tally) = calibrate(&sshd, seed);
    let span_ms = (pass_time.as_millis() as u64 * 12 / 10).max(50);
    let n = trials(50);
    let (mut kills, mut died, mut reruns) = (0u64, 0u64, 0usize);
    for trial in 0..n {
        let tseed = seed.wrapping_add(1000 + trial * 2);
        let trees = vec![mixed_tree(tseed), mixed_tree(tseed + 1)];
        let client = client_for(&sshd, &trees);
        let files = trees.iter().map(|t| t.manifest().len()).sum::<usize>() as u64;
        for _ in 0..rng.range(1, 3) {
            let kill = if rng.below(3) == 0 {
                let point = *rng.pick(&CRASH_POINTS);
                let max = if point == "before-rmdir" { 6 } else { files };
                Kill::At(point, rng.range(1, max) as usize)
            } else {
                Kill::After(Duration::from_millis(rng.below(span_ms)))
            };
            kills += 1;
            let context = format!("trial {trial} (V2X_SEED={seed}) {kill:?}");
            if killed_pass(&client, &kill) {
                died += 1;
            }
            check_nothing_lost(&client, &trees, &context);
        }
        let context = format!("trial {trial} (V2X_SEED={seed})");
        reruns += rerun_until_ok(&client, 3, &context);
        tally += check_complete(&client, &trees, &context);
    }
    record(Row {
        fault: "1. SIGKILL at a random moment or crash point, 1-3 times, then rerun".into(),
        trials: n,
        tally,
        note: format!(
            "{kills} kills ({died} mid-pass, the rest after the pass ended), {reruns} reruns; a clean pass takes {} ms",
            pass_time.as_millis()
        ),
    });
}

/// Issue 5.5: killed exactly between the local rename and the remote delete
/// (the file is landed, the remote copy still there), at every file in turn.
#[test]
fn killed_between_rename_and_remote_delete_rerun_has_no_duplicate_and_no_loss() {
    let sshd = Sshd::start_default();
    let mut tally = Tally::default();
    let mut trials = 0;
    let mut seen_already_present = 0;
    for n in 1..=8 {
        let trees = vec![mixed_tree(500 + n)];
        let client = client_for(&sshd, &trees);
        assert!(killed_pass(&client, &Kill::At("after-commit", n as usize)));
        check_nothing_lost(&client, &trees, &format!("after-commit:{n}"));
        assert_eq!(rerun_until_ok(&client, 1, "after-commit rerun"), 1);
        seen_already_present += client.ix_state("a")["already_present"].as_u64().unwrap();
        tally += check_complete(&client, &trees, &format!("after-commit:{n}"));
        trials += 1;
    }
    // Each rerun found at least the file landed just before the kill (more
    // when several commits were in flight), and took each of them once.
    assert!(seen_already_present >= trials, "{seen_already_present}");
    record(Row {
        fault: "5a. killed between local rename and remote delete (after-commit, files 1-8)".into(),
        trials,
        tally,
        note: format!(
            "{seen_already_present} files found already landed by the reruns, none twice"
        ),
    });
}

/// Issue 11: killed after the ledger record of a batch of files and before
/// their REMOVEs, at every batch in turn: the rerun finds the files landed,
/// records none of them again, and removes them.
#[test]
fn killed_between_ledger_record_and_remote_delete_rerun_records_nothing_twice() {
    let sshd = Sshd::start_default();
    let mut tally = Tally::default();
    let mut trials = 0;
    let mut repaired = 0;
    for n in 1..=6 {
        let trees = vec![mixed_tree(700 + n)];
        let client = client_for(&sshd, &trees);
        if !killed_pass(&client, &Kill::At("after-record", n as usize)) {
            // Fewer record batches than n in this tree.
            continue;
        }
        check_nothing_lost(&client, &trees, &format!("after-record:{n}"));
        let before = client.ledger().len();
        assert!(before > 0);
        assert_eq!(rerun_until_ok(&client, 1, "after-record rerun"), 1);
        let ix = client.ix_state("a");
        let present = ix["already_present"].as_u64().unwrap_or(0);
        assert!(present >= 1, "the recorded files are found landed: {ix}");
        assert_eq!(
            client.ledger().len() as u64,
            before as u64 + ix["recorded"].as_u64().unwrap_or(0)
        );
        repaired += present;
        tally += check_complete(&client, &trees, &format!("after-record:{n}"));
        trials += 1;
    }
    assert!(trials >= 2, "{trials}");
    record(Row {
        fault:
            "11. killed between the ledger record and the remote delete (after-record, batches 1-6)"
                .into(),
        trials,
        tally,
        note: format!(
            "{repaired} files found landed and recorded by the reruns, none recorded twice"
        ),
    });
}

/// Issue 5.5: killed between the last file of a folder and the folder's
/// removal, for every folder in turn.
#[test]
fn killed_between_last_file_and_folder_removal_rerun_removes_it_and_loses_nothing() {
    let sshd = Sshd::start_default();
    let mut tally = Tally::default();
    let mut trials = 0;
    // mixed_tree has 4 folders: two sessions, the big session and its nested folder.
    for n in 1..=4 {
        let trees = vec![mixed_tree(600 + n)];
        let client = client_for(&sshd, &trees);
        assert!(
            killed_pass(&client, &Kill::At("before-rmdir", n as usize)),
            "n={n}"
        );
        check_nothing_lost(&client, &trees, &format!("before-rmdir:{n}"));
        assert!(!trees[0].remaining_dirs().is_empty());
        tally += rerun_completes(&client, &trees, &format!("before-rmdir:{n}"));
        trials += 1;
    }
    record(Row {
        fault:
            "5b. killed between a folder's last file and its removal (before-rmdir, folders 1-4)"
                .into(),
        trials,
        tally,
        note: "the emptied folder is removed by the rerun".into(),
    });
}

/// A pass over three intersections in which intersection "b" panics the
/// `n`-th time one of its threads reaches crash point `point`
/// (`V2X_FAULT_PANIC_AT`, `V2X_FAULT_INTERSECTION`), checked, then rerun
/// without the fault. `said` is what b's report must say. Returns the
/// figures and the longest panicking pass.
fn panic_trials(
    sshd: &Sshd,
    point: &str,
    said: &str,
    seed: u64,
    nths: &[usize],
) -> (Tally, Duration) {
    let mut tally = Tally::default();
    let mut longest = Duration::ZERO;
    for (k, &n) in nths.iter().enumerate() {
        let base = seed + 10 * k as u64;
        let trees = vec![mixed_tree(base), mixed_tree(base + 1), mixed_tree(base + 2)];
        let mut client = client_for(sshd, &trees);
        client.set("io_timeout = \"5s\"");
        let spec = format!("{point}:{n}");
        let context = format!("V2X_FAULT_PANIC_AT={spec} in b");
        let env = [
            ("V2X_FAULT_PANIC_AT", spec.as_str()),
            ("V2X_FAULT_INTERSECTION", "b"),
        ];
        let f = run_with_env(&client, &env, LIMIT);
        assert_eq!(f.code(), Some(1), "{context}\n{}", f.stderr);
        // No timeout is waited out: a hang would show here (or as LIMIT).
        assert!(
            f.elapsed < Duration::from_secs(20),
            "{context}: {:?}",
            f.elapsed
        );
        longest = longest.max(f.elapsed);
        // The panic hook's line and ours, in the journal.
        assert!(
            f.stderr
                .contains(&format!("fault injection: panic at crash point {point:?}")),
            "{context}\n{}",
            f.stderr
        );
        assert!(f.stderr.contains(said), "{context}\n{}", f.stderr);
        // The state file was written and names b as failed, by a bug.
        let b = client.ix_state("b");
        assert_eq!(b["outcome"], "failed", "{context}: {b}");
        assert!(
            b["errors"].as_array().is_some_and(|e| e
                .iter()
                .any(|e| e.as_str().is_some_and(|e| e.contains(said)))),
            "{context}: {b}"
        );
        // The others landed everything in the same pass.
        for i in [0, 2] {
            let name = ix_name(i);
            assert_eq!(client.ix_state(&name)["outcome"], "ok", "{context}: {name}");
            let got = tally_landed(&client.data_dir(), &name, &trees[i].manifest());
            assert_eq!((got.lost, got.duplicated), (0, 0), "{context}: {name}");
            assert_landed(&client.data_dir(), &name, &trees[i].manifest());
            assert!(trees[i].remaining_files().is_empty(), "{context}: {name}");
        }
        // b deleted nothing that did not land, and kept the rest.
        check_nothing_lost(&client, &trees, &context);
        let removed = trees[1].manifest().len() - trees[1].remaining_files().len();
        assert!(removed < trees[1].manifest().len(), "{context}");
        assert!(
            b["files"].as_u64().unwrap() <= removed as u64,
            "{context}: {b}"
        );
        if point == "before-commit" {
            // Only files past the crash point before the panic can be gone.
            assert!(removed < n, "{context}: {removed} removed");
        }
        tally += rerun_completes(&client, &trees, &context);
    }
    (tally, longest)
}

/// Issue 10.2: a panic (a bug) on the thread working for one intersection
/// fails that intersection alone: the others land everything, the state
/// file is written, the exit status is 1, and nothing of it is lost.
/// Regression: the panic went through `thread::scope` and took the whole
/// pass with it (no summary, no state file, no metrics).
#[test]
fn a_panic_in_one_intersections_worker_fails_only_that_intersection() {
    let sshd = Sshd::start_default();
    let nths = [1, 4];
    let (tally, longest) = panic_trials(
        &sshd,
        "before-commit",
        "internal error (a bug, please report it)",
        1100,
        &nths,
    );
    record(Row {
        fault: "10.2a. panic on one intersection's worker (before-commit, files 1 and 4), 3 intersections".into(),
        trials: nths.len() as u64,
        tally,
        note: format!(
            "only that intersection failed (internal error), state file written, exit 1, each pass within {:.1} s; the rerun landed all",
            longest.as_secs_f64()
        ),
    });
}

/// Issue 10.2: a panic in a commit thread fails its file's intersection
/// alone, at once. Regression: the pipeline waited for that commit's
/// result forever.
#[test]
fn a_panic_in_a_commit_thread_fails_only_its_intersection_and_does_not_hang() {
    let sshd = Sshd::start_default();
    let nths = [1, 4];
    let (tally, longest) = panic_trials(
        &sshd,
        "commit",
        "internal error while committing",
        1200,
        &nths,
    );
    record(Row {
        fault: "10.2b. panic in a commit thread (commits 1 and 4), 3 intersections".into(),
        trials: nths.len() as u64,
        tally,
        note: format!(
            "only that intersection failed (internal error), state file written, exit 1, each pass within {:.1} s; the rerun landed all",
            longest.as_secs_f64()
        ),
    });
}

/// A site reached through a proxy at `port` (host keys of `sshd` trusted there).
fn proxied(client: &mut Client, name: &str, sshd: &Sshd, tree: &RemoteTree, port: u16) {
    let via = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    client.add_through(Site::new(name, sshd, tree), sshd, via);
}

/// One big file and a few small ones: cuts and stalls mostly land mid-file.
fn big_file_tree(seed: u64) -> RemoteTree {
    let mut t = RemoteTree::with_options("Cut", seed);
    t.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 500..=4_000);
    t.add_log("X", "spat", stamp(6, 8), 8 << 20);
    t
}

/// Issue 5.2: the TCP connection cut at a random byte of the download, with
/// no retry (the pass fails, the next completes) or with retries (the same
/// pass reconnects and completes).
#[test]
fn connection_cut_mid_file_deletes_nothing_unlanded_and_the_next_pass_completes() {
    let sshd = Sshd::start_default();
    let seed = campaign_seed();
    println!("cut campaign: V2X_SEED={seed}");
    let mut rng = Rng::new(seed ^ 0xc07);
    let mut tally = Tally::default();
    let n = trials(12);
    let (mut failed_passes, mut same_pass) = (0, 0);
    for trial in 0..n {
        let tree = big_file_tree(seed.wrapping_add(trial));
        let cut_at = rng.range(2_000, tree.total_bytes() + 200_000);
        let retries = if trial % 2 == 0 { 0 } else { 2 };
        let proxy = CutProxy::start(sshd.addr(), Some(cut_at), None);
        let mut client = Client::new();
        client.set(&format!("retries = {retries}"));
        client
            .set("connect_timeout = \"3s\"")
            .set("io_timeout = \"3s\"");
        proxied(&mut client, "a", &sshd, &tree, proxy.addr().port());
        let trees = vec![tree];
        let context = format!("cut at byte {cut_at}, retries {retries} (V2X_SEED={seed})");
        let f = run_with_env(&client, &[], LIMIT);
        assert!(
            f.elapsed < Duration::from_secs(15),
            "{context}: {:?}",
            f.elapsed
        );
        check_nothing_lost(&client, &trees, &context);
        match f.code() {
            Some(0) => {
                if proxy.faults_fired() > 0 {
                    same_pass += 1;
                }
            }
            Some(1) => {
                assert_eq!(retries, 0, "{context}: retries must recover\n{}", f.stderr);
                failed_passes += 1;
                assert_eq!(rerun_until_ok(&client, 1, &context), 1);
            }
            other => panic!("{context}: exit {other:?}\n{}", f.stderr),
        }
        tally += check_complete(&client, &trees, &context);
    }
    record(Row {
        fault: "2a. TCP connection cut at a random byte".into(),
        trials: n,
        tally,
        note: format!(
            "{failed_passes} passes failed and the next completed; {same_pass} recovered in the same pass by reconnecting"
        ),
    });
}

/// Issue 5.2: the server stops answering mid-file (a proxy that stalls):
/// the pass ends within its I/O timeout, the next completes.
#[test]
fn server_that_stalls_mid_file_is_given_up_within_the_timeout_and_the_next_pass_completes() {
    let sshd = Sshd::start_default();
    let seed = campaign_seed();
    let mut rng = Rng::new(seed ^ 0x57a11);
    let mut tally = Tally::default();
    let n = trials(4);
    let mut longest = Duration::ZERO;
    for trial in 0..n {
        let tree = big_file_tree(seed.wrapping_add(100 + trial));
        let stall_at = rng.range(64 << 10, 6 << 20);
        let proxy = CutProxy::start(sshd.addr(), None, Some(stall_at));
        let mut client = Client::new();
        client
            .set("retries = 0")
            .set("connect_timeout = \"2s\"")
            .set("io_timeout = \"2s\"");
        proxied(&mut client, "a", &sshd, &tree, proxy.addr().port());
        let trees = vec![tree];
        let context = format!("stall at byte {stall_at} (V2X_SEED={seed})");
        let f = run_with_env(&client, &[], LIMIT);
        assert_eq!(f.code(), Some(1), "{context}\n{}", f.stderr);
        assert_eq!(proxy.faults_fired(), 1, "{context}");
        // One io_timeout for the stalled read, then the failed link is
        // abandoned (socket shut down) rather than closed politely, which
        // cost an io_timeout per step (about 6 s in all) before.
        assert!(
            f.elapsed < Duration::from_secs(5),
            "{context}: {:?}",
            f.elapsed
        );
        longest = longest.max(f.elapsed);
        check_nothing_lost(&client, &trees, &context);
        assert!(!trees[0].remaining_files().is_empty(), "{context}");
        tally += rerun_completes(&client, &trees, &context);
    }
    record(Row {
        fault: "2b. server stalls mid-file (io_timeout 2 s)".into(),
        trials: n,
        tally,
        note: format!(
            "each stalled pass failed within {:.1} s ({:.1}x io_timeout); the next completed",
            longest.as_secs_f64(),
            longest.as_secs_f64() / 2.0
        ),
    });
}

/// Files of about 1.5 MiB each and a few small ones: ~10 MiB in all.
fn disk_tree(seed: u64) -> RemoteTree {
    let mut t = RemoteTree::with_options("Disk", seed);
    for k in 0..6u32 {
        t.add_random_file(
            &format!(
                "{}/D_spatLog_{}.csv",
                session_name("D", stamp(6, 9)),
                stamp(6, 9).plus_secs(600 * i64::from(k)).mmitss()
            ),
            1_500_000 + k as usize * 1000,
        );
    }
    t.add_session(DEFAULT_COPROC_NAME, stamp(6, 10), 1, 500..=4_000);
    t
}

/// Fills the filesystem of `dir` with `<dir>/filler` until ENOSPC.
fn fill_disk(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", p.display()),
        }
    }
    let _ = f.sync_all();
    p
}

/// Bytes under `dir`, temporary files included.
fn bytes_under(dir: &std::path::Path) -> u64 {
    walk_files(dir).iter().map(|(_, s)| *s).sum()
}

/// Issue 5.3: the data directory's disk fills up for real while a file is
/// being written (another writer takes the space after the free-space
/// check; min_free_space 0): the pass stops and says so, what did not land
/// stays remotely, and once space is freed the next pass completes.
#[test]
fn local_disk_full_mid_write_stops_cleanly_and_the_pass_after_freeing_space_completes() {
    let sshd = Sshd::start_default();
    let mut tally = Tally::default();
    let mut trials = 0;
    for (k, fill_after) in [(0u64, 200u64 << 10), (1, 2_000 << 10), (2, 5_000 << 10)] {
        let tree = disk_tree(k);
        let proxy = CutProxy::throttled(sshd.addr(), 3 << 20);
        let mut client = Client::new();
        client.set("min_free_space = \"0\"");
        proxied(&mut client, "a", &sshd, &tree, proxy.addr().port());
        let disk = Tmpfs::mount_at(&client.data_dir(), "32m");
        let context = format!("disk filled after {fill_after} bytes");
        let r = Running::start(&client, &["run"], &[]);
        let t0 = Instant::now();
        while bytes_under(&client.data_dir().join("a")) < fill_after {
            assert!(!r.exited(), "{context}: the pass ended first");
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{context}: no progress"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let filler = fill_disk(disk.path());
        let f = r.wait(LIMIT);
        assert_eq!(f.code(), Some(1), "{context}: {}", f.stderr);
        assert!(
            f.stderr.contains("local disk full while writing"),
            "{context}: {}",
            f.stderr
        );
        assert_eq!(client.ix_state("a")["outcome"], "failed");
        let trees = vec![tree];
        check_nothing_lost(&client, &trees, &context);
        assert!(!trees[0].remaining_files().is_empty(), "{context}");
        std::fs::remove_file(filler).unwrap();
        client.bypass_proxies(&sshd);
        tally += rerun_completes(&client, &trees, &context);
        trials += 1;
    }
    record(Row {
        fault: "3a. local disk full mid-write (tmpfs filled by another writer, ENOSPC)".into(),
        trials,
        tally,
        note: "stopped with 'local disk full', remote kept; the pass after freeing space completed"
            .into(),
    });
}

/// Issue 5.3: the free-space pre-check (transfer.min_free_space) stops the
/// intersection before the disk is full, and keeps that much free.
/// Regression: with many files in flight at once, each was checked against
/// the free space as if it were the only one, so a pass filled a 10 MiB disk
/// to 1 MiB although min_free_space was 6 MiB.
#[test]
fn free_space_precheck_counts_files_in_progress_and_keeps_min_free_space() {
    let sshd = Sshd::start_default();
    let trees = vec![disk_tree(4)];
    let mut client = client_for(&sshd, &trees);
    client.set("min_free_space = \"6MiB\"");
    let disk = Tmpfs::mount_at(&client.data_dir(), "10m");
    let f = run_with_env(&client, &[], LIMIT);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(
        f.stderr.contains("not enough free disk space"),
        "{}",
        f.stderr
    );
    assert!(
        !f.stderr.contains("disk full"),
        "the pre-check must act first: {}",
        f.stderr
    );
    check_nothing_lost(&client, &trees, "pre-check");
    assert!(!trees[0].remaining_files().is_empty());
    let st = nix::sys::statvfs::statvfs(disk.path()).unwrap();
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    assert!(
        free >= 6 << 20,
        "min_free_space not kept: {free} bytes free"
    );
    disk.resize("64m");
    let tally = rerun_completes(&client, &trees, "pre-check");
    record(Row {
        fault: "3b. free space below transfer.min_free_space (pre-check)".into(),
        trials: 1,
        tally,
        note: "stopped with 'not enough free disk space' before any ENOSPC".into(),
    });
}

/// One session holding one file of `size` random bytes (an spat log of
/// coprocessor `coproc`).
fn one_file_tree(coproc: &str, seed: u64, size: usize) -> (RemoteTree, ManifestEntry) {
    let mut t = RemoteTree::with_options(coproc, seed);
    let e = t.add_log(coproc, "spat", stamp(6, 9), size);
    (t, e)
}

/// A pass with the failwrite shim (tests/common/failwrite.c) failing `op`
/// with `errno` under the client's data folder, after `after` matching
/// calls, `times` times (all of them when `None`).
fn run_with_failing(
    client: &Client,
    op: &str,
    errno: &str,
    after: &str,
    times: Option<&str>,
) -> Finished {
    let shim = failwrite_shim();
    let prefix = client.data_dir().display().to_string();
    let mut env = vec![
        ("LD_PRELOAD", shim.to_str().expect("utf-8 path")),
        ("V2X_FAIL_PREFIX", prefix.as_str()),
        ("V2X_FAIL_OP", op),
        ("V2X_FAIL_ERRNO", errno),
        ("V2X_FAIL_AFTER", after),
    ];
    if let Some(t) = times {
        env.push(("V2X_FAIL_TIMES", t));
    }
    run_with_env(client, &env, LIMIT)
}

/// Issue 5.4: local writes, fsyncs and renames that fail with ENOSPC or EIO
/// (an LD_PRELOAD shim): the pass stops, the remote copy of the file being
/// landed stays, the next pass lands everything exactly once.
#[test]
fn failing_local_write_fsync_or_rename_keeps_the_remote_copy() {
    let sshd = Sshd::start_default();
    let mut tally = Tally::default();
    let mut trials = 0;
    let mut cases: Vec<(&str, &str, &str, bool)> = Vec::new();
    for op in ["write", "fsync", "dirfsync", "rename"] {
        cases.push((op, "EIO", "0", false));
        cases.push((op, "ENOSPC", "3", false));
    }
    // One 8 MiB file, written around the page cache (O_DIRECT, 1 MiB at a
    // time): the third write fails mid-file.
    cases.push(("write", "EIO", "2", true));
    cases.push(("write", "ENOSPC", "2", true));
    for (op, errno, after, big_only) in cases {
        let seed = 700 + trials;
        let trees = vec![if big_only {
            one_file_tree("D", seed, 8 << 20).0
        } else {
            mixed_tree(seed)
        }];
        let client = client_for(&sshd, &trees);
        let context = format!("{op} fails with {errno} after {after}");
        let f = run_with_failing(&client, op, errno, after, None);
        assert_eq!(
            f.code(),
            Some(1),
            "{context}: the shim did not bite?\n{}",
            f.stderr
        );
        let said = if errno == "ENOSPC" {
            "disk full"
        } else {
            "I/O error"
        };
        assert!(f.stderr.contains(said), "{context}: {}", f.stderr);
        check_nothing_lost(&client, &trees, &context);
        assert!(!trees[0].remaining_files().is_empty(), "{context}");
        tally += rerun_completes(&client, &trees, &context);
        trials += 1;
    }
    record(Row {
        fault:
            "4b. local write / fsync / folder fsync / rename fails (EIO, ENOSPC; LD_PRELOAD shim)"
                .into(),
        trials,
        tally,
        note: "each pass stopped with the error named, remote copy kept; rerun landed all".into(),
    });
}

/// Issue 16.2: a rename refused for one file (EACCES or EPERM, once) fails
/// that file alone: every other file of the intersection lands in the same
/// pass, the refused one stays on the coprocessor and lands in the next.
#[test]
fn a_rename_refused_for_one_file_fails_that_file_alone_and_the_next_pass_lands_it() {
    let sshd = Sshd::start_default();
    let mut tally = Tally::default();
    let mut trials = 0;
    for (errno, after) in [("EACCES", "0"), ("EPERM", "3")] {
        let trees = vec![mixed_tree(1_100 + trials)];
        let client = client_for(&sshd, &trees);
        let context = format!("rename fails once with {errno} after {after}");
        let f = run_with_failing(&client, "rename", errno, after, Some("1"));
        assert_eq!(f.code(), Some(1), "{context}\n{}", f.stderr);
        assert!(
            f.stderr
                .contains("left on the coprocessor, retried next pass"),
            "{context}: {}",
            f.stderr
        );
        let errors = client.ix_state("a")["errors"].clone();
        assert_eq!(
            errors.as_array().map(Vec::len),
            Some(1),
            "{context}: {errors}"
        );
        assert!(
            errors[0]
                .as_str()
                .unwrap_or_default()
                .contains("renaming into"),
            "{errors}"
        );
        assert_eq!(
            trees[0].remaining_files().len(),
            1,
            "{context}: only the refused file stays: {:?}",
            trees[0].remaining_files()
        );
        check_nothing_lost(&client, &trees, &context);
        tally += rerun_completes(&client, &trees, &context);
        trials += 1;
    }
    record(Row {
        fault: "4d. one file's rename refused (EACCES, EPERM; LD_PRELOAD shim, once)".into(),
        trials,
        tally,
        note: "the other files landed in the same pass; the refused one in the next".into(),
    });
}

/// A filesystem may take an O_DIRECT open and then refuse the writes
/// (EINVAL: another alignment, or no direct I/O at all). The file being
/// written goes on through the page cache and lands whole in the same pass.
#[test]
fn direct_writes_refused_with_einval_fall_back_to_the_page_cache() {
    let sshd = Sshd::start_default();
    let mut tally = Tally::default();
    let mut trials = 0;
    // Writes 0-7 are the eight whole blocks, write 8 the aligned part of the
    // tail at commit.
    for after in ["0", "1", "7", "8"] {
        let trees = vec![one_file_tree("E", 900 + trials, (8 << 20) + 12_345).0];
        let client = client_for(&sshd, &trees);
        let context = format!("EINVAL on direct write {after}");
        let f = run_with_failing(&client, "write", "EINVAL", after, Some("1"));
        assert_eq!(f.code(), Some(0), "{context}\n{}", f.stderr);
        tally += check_complete(&client, &trees, &context);
        trials += 1;
    }
    record(Row {
        fault: "4c. direct (O_DIRECT) writes refused with EINVAL".into(),
        trials,
        tally,
        note: "the file went on through the page cache and landed in the same pass".into(),
    });
}

/// Regression: a temporary file whose fsync failed was resumed by the next
/// pass as if complete. After a failed fsync the kernel may have dropped
/// the dirty pages (marked clean, never written): the bytes read back later
/// come from nowhere durable, so the next pass must download the file again.
#[test]
fn a_partial_whose_fsync_failed_is_downloaded_again_not_resumed() {
    let sshd = Sshd::start_default();
    let (tree, big) = one_file_tree("F", 9, 3 << 20);
    let trees = vec![tree];
    let client = client_for(&sshd, &trees);
    let f = run_with_failing(&client, "fsync", "EIO", "0", None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(
        partial_files(&client.data_dir()).is_empty(),
        "a partial that failed fsync must not be kept for resuming: {:?}",
        partial_files(&client.data_dir())
    );
    assert_eq!(trees[0].remaining_files().len(), 1);
    assert_eq!(rerun_until_ok(&client, 1, "rerun"), 1);
    let ix = client.ix_state("a");
    assert_eq!(ix["resumed_bytes"], 0, "{ix}");
    assert_eq!(ix["bytes"], big.size, "{ix}");
    check_complete(&client, &trees, "fsync regression");
}

/// What a test does to a remote file while it is being pulled.
#[derive(Clone, Copy, Debug)]
enum Change {
    Grow,
    Shrink,
    Rewrite,
}

/// Issue 5.4 and 5.7: a remote file that grows, shrinks or changes while it
/// is pulled (so it delivers another size than the listing claimed): not
/// deleted, its partial thrown away, taken whole by a later pass.
#[test]
fn remote_file_changing_while_pulled_is_kept_and_taken_whole_later() {
    let sshd = Sshd::start_default();
    let mut tally = Tally::default();
    let mut trials = 0;
    for change in [Change::Grow, Change::Shrink, Change::Rewrite] {
        let mut tree = RemoteTree::with_options("Change", 40 + trials);
        let original = tree.add_log("C", "spat", stamp(6, 9), 2 << 20);
        let rel = original.rel.clone();
        tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 10), 1, 500..=2_000);
        // 512 KiB/s: the 2 MiB file takes about four seconds.
        let proxy = CutProxy::throttled(sshd.addr(), 512 << 10);
        let mut client = Client::new();
        proxied(&mut client, "a", &sshd, &tree, proxy.addr().port());
        let r = Running::start(&client, &["run"], &[]);
        // Wait until the file is being downloaded.
        let t0 = Instant::now();
        let part_dir = client.data_dir().join("a/spat");
        loop {
            let landed: u64 = walk_files(&part_dir)
                .iter()
                .filter(|(p, _)| p.ends_with(".part"))
                .map(|(_, s)| *s)
                .sum();
            if landed >= 256 << 10 {
                break;
            }
            assert!(!r.exited(), "{change:?}: the pass ended before the change");
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{change:?}: no download"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut bytes = std::fs::read(tree.path(&rel)).unwrap();
        match change {
            Change::Grow => bytes.extend_from_slice(b"one more row\n"),
            Change::Shrink => bytes.truncate(bytes.len() / 2),
            Change::Rewrite => bytes[100] ^= 0xff,
        }
        // Rewritten in place (same inode, as a logger would) with a new
        // mtime: now. Under the default min_age a file in a session folder
        // is taken however fresh (issue 10); the size and mtime check after
        // the read is what keeps it.
        let changed = tree.add_file(&rel, &bytes);
        tree.make_fresh(&rel);
        let f = r.wait(LIMIT);
        let context = format!("{change:?}");
        assert_eq!(f.code(), Some(0), "{context}: {}", f.stderr);
        assert!(
            f.stderr.contains("changed while being read"),
            "{context}: {}",
            f.stderr
        );
        assert_eq!(tree.remaining_files(), vec![rel.clone()], "{context}");
        assert!(partial_files(&client.data_dir()).is_empty(), "{context}");
        assert!(
            !client
                .data_dir()
                .join("a/spat")
                .join(original.file_name())
                .exists()
        );
        // A later pass (direct, full speed) takes the new version whole.
        client.bypass_proxies(&sshd);
        assert_eq!(rerun_until_ok(&client, 1, &context), 1);
        assert_eq!(
            sha256_file(&client.data_dir().join("a/spat").join(changed.file_name())),
            changed.sha256
        );
        let trees = vec![tree];
        tally += check_complete(&client, &trees, &context);
        trials += 1;
    }
    record(Row {
        fault: "4a/7. remote file grows, shrinks or is rewritten while pulled".into(),
        trials,
        tally,
        note: "never deleted on that pass; the new version landed whole on the next".into(),
    });
}

/// Issue 5.6: a peer that trickles bytes is ended by the intersection's
/// deadline, deletes nothing, and the next pass (a healthy link) completes.
#[test]
fn trickling_peer_is_ended_by_the_deadline_and_the_next_pass_completes() {
    let sshd = Sshd::start_default();
    let tree = big_file_tree(77);
    let proxy = CutProxy::start_with(
        sshd.addr(),
        ProxyOptions {
            trickle: Some(Trickle {
                after_bytes_down: 256 << 10,
                byte_delay: Duration::from_millis(20),
            }),
            affected_connections: 100,
            ..ProxyOptions::default()
        },
    );
    let mut client = Client::new();
    client
        .set("intersection_deadline = \"3s\"")
        .set("io_timeout = \"2s\"");
    proxied(&mut client, "a", &sshd, &tree, proxy.addr().port());
    let trees = vec![tree];
    let f = run_with_env(&client, &[], LIMIT);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(f.elapsed < Duration::from_secs(8), "{:?}", f.elapsed);
    assert!(f.stderr.contains("deadline"), "{}", f.stderr);
    check_nothing_lost(&client, &trees, "trickle");
    client.bypass_proxies(&sshd);
    // The next night is a normal one: the 3 s deadline was part of the
    // fault, and a loaded machine (or the sha256 check of every file) may
    // need longer than that for the rest of the tree.
    client.set("intersection_deadline = \"10min\"");
    let tally = rerun_completes(&client, &trees, "after trickle");
    record(Row {
        fault: "6c. peer trickles bytes (deadline 3 s)".into(),
        trials: 1,
        tally,
        note: format!(
            "ended after {:.1} s by the deadline",
            f.elapsed.as_secs_f64()
        ),
    });
}

/// Issue 5.6: two passes at once: the second refuses at once and touches
/// nothing; the first completes.
#[test]
fn a_second_pass_while_one_runs_refuses_and_touches_nothing() {
    let sshd = Sshd::start_default();
    let tree = big_file_tree(88);
    let proxy = CutProxy::throttled(sshd.addr(), 2 << 20);
    let mut client = Client::new();
    proxied(&mut client, "a", &sshd, &tree, proxy.addr().port());
    let first = Running::start(&client, &["run"], &[]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !first.exited(),
        "the first pass ended too soon for this test"
    );
    let second = run_with_env(&client, &[], LIMIT);
    assert!(
        second.elapsed < Duration::from_secs(2),
        "{:?}",
        second.elapsed
    );
    assert_ne!(second.code(), Some(0), "{}", second.stderr);
    assert!(
        second.stderr.contains("another pass is running"),
        "{}",
        second.stderr
    );
    let f = first.wait(LIMIT);
    assert_eq!(f.code(), Some(0), "{}", f.stderr);
    let trees = vec![tree];
    check_complete(&client, &trees, "two passes");
}

/// Issue 5.6: SIGTERM during a pass: a clean stop well within the unit's
/// TimeoutStopSec (90 s), "cancelled" in the state file, nothing lost, and
/// the next pass completes.
#[test]
fn sigterm_during_a_pass_stops_cleanly_and_the_next_pass_completes() {
    let sshd = Sshd::start_default();
    let tree = big_file_tree(99);
    let proxy = CutProxy::throttled(sshd.addr(), 1 << 20);
    let mut client = Client::new();
    proxied(&mut client, "a", &sshd, &tree, proxy.addr().port());
    let r = Running::start(&client, &["run"], &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!r.exited(), "the pass ended too soon for this test");
    let t0 = Instant::now();
    r.signal(Signal::SIGTERM);
    let f = r.wait(LIMIT);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(!f.killed(), "SIGTERM must be handled: {:?}", f.status);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(client.ix_state("a")["outcome"], "cancelled");
    let trees = vec![tree];
    check_nothing_lost(&client, &trees, "sigterm");
    client.bypass_proxies(&sshd);
    rerun_completes(&client, &trees, "after SIGTERM");
}

/// Issue 5.9: wrong password, changed host key, unreadable password file
/// (a folder; a file of invalid UTF-8): each fails alone, no secret in
/// stderr, stdout or the state file (even with -v), nothing deleted there,
/// while a healthy intersection in the same pass lands everything.
#[test]
fn bad_credentials_or_host_key_fail_alone_leak_no_secret_and_delete_nothing() {
    let sshd = Sshd::start_default();
    let mut moved = Sshd::start_default();
    let mk = |seed| {
        let mut t = RemoteTree::with_options("Cred", seed);
        t.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 500..=3_000);
        t
    };
    let trees: Vec<RemoteTree> = (0..5).map(mk).collect();
    let mut client = Client::new();
    client.known_hosts = sshd.known_hosts_lines() + &moved.known_hosts_lines();
    let wrong = "Wr0ng-Pa55-Never-Logged";
    let dir_as_file = client.dir.path().join("pw-dir");
    std::fs::create_dir(&dir_as_file).unwrap();
    let not_utf8 = client.dir.path().join("pw-binary");
    std::fs::write(&not_utf8, b"\xffS3cret-In-Binary\xfe\n").unwrap();
    let mut sites = vec![Site::new("good", &sshd, &trees[0])];
    let mut s = Site::new("wrong-password", &sshd, &trees[1]);
    s.auth = TestAuth::Password(wrong.into());
    sites.push(s);
    sites.push(Site::new("changed-host-key", &moved, &trees[2]));
    let mut s = Site::new("password-file-is-a-folder", &sshd, &trees[3]);
    s.auth = TestAuth::PasswordFile(dir_as_file);
    sites.push(s);
    let mut s = Site::new("password-file-not-text", &sshd, &trees[4]);
    s.auth = TestAuth::PasswordFile(not_utf8);
    sites.push(s);
    client.sites = sites;
    moved.restart_with_new_host_keys();
    let f = Running::start(&client, &["-v", "run"], &[]).wait(LIMIT);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(client.ix_state("good")["outcome"], "ok");
    assert_landed(&client.data_dir(), "good", &trees[0].manifest());
    let state = std::fs::read_to_string(client.state_dir().join("last-run.json")).unwrap();
    for (i, name) in [
        "wrong-password",
        "changed-host-key",
        "password-file-is-a-folder",
        "password-file-not-text",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(client.ix_state(name)["outcome"], "failed", "{name}");
        assert_eq!(
            trees[i + 1].remaining_files().len(),
            trees[i + 1].manifest().len(),
            "{name}: nothing may be deleted"
        );
        assert!(
            walk_files(&client.data_dir().join(name)).is_empty(),
            "{name}"
        );
    }
    // The wrong password was tried and refused, and said to be the reason.
    assert!(sshd.log_count("Failed password") >= 1, "{}", sshd.log());
    assert!(f.stderr.contains("authentication"), "{}", f.stderr);
    // The changed key is shown (its fingerprint) and no password reached
    // the server that presented it.
    assert!(f.stderr.contains("HAS CHANGED"), "{}", f.stderr);
    assert!(
        f.stderr
            .contains(&moved.host_key_fingerprint(KeyType::Ed25519)),
        "{}",
        f.stderr
    );
    assert_eq!(moved.password_attempts(), 0, "{}", moved.log());
    for secret in [wrong, TEST_PASSWORD, "S3cret-In-Binary"] {
        for (what, text) in [
            ("stderr", &f.stderr),
            ("stdout", &f.stdout),
            ("state", &state),
        ] {
            assert!(!text.contains(secret), "{secret:?} in {what}:\n{text}");
        }
    }
    let mut tally = Tally::default();
    for (i, t) in trees.iter().enumerate().skip(1) {
        tally.checked += t.manifest().len() as u64;
        assert_eq!(t.remaining_files().len(), t.manifest().len(), "tree {i}");
    }
    tally += tally_landed(&client.data_dir(), "good", &trees[0].manifest());
    record(Row {
        fault: "9. wrong password, changed host key, unreadable password file".into(),
        trials: 4,
        tally,
        note:
            "each failed alone with its remote data kept; no secret in stderr (-v), stdout or state"
                .into(),
    });
}

/// Issue 5.7: a hostile server: symlinks out of the archive (in a session
/// folder and directly in `archive/`), names with `..`, newlines,
/// backslashes, 255 bytes, names of the element folders, FIFOs, beside a
/// plain session. Nothing followed, pulled or deleted but regular files,
/// nothing written outside the intersection's folder, every skip reported,
/// the plain files landed.
#[test]
fn hostile_names_and_links_are_reported_never_followed_and_nothing_escapes() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::with_options("Hostile", 3);
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 10), 1, 500..=2_000);
    let s = session_name("H", stamp(6, 9));
    let hostile = tree.add_hostile_entries(&s);
    // Directly in archive/ too (names distinct from the session's).
    let top_level = [
        "top_link_spatLog_06092021_000000.csv".to_string(),
        "top_link_dir".to_string(),
        "top_fifo_srmLog_06092021_000000.csv".to_string(),
    ];
    tree.add_symlink_to_outside_file(&top_level[0]);
    tree.add_symlink_to_outside_dir(&top_level[1]);
    tree.add_fifo(&top_level[2]);
    // Names made of dots: `..x` and `...` are hidden (skipped); `a..b` is
    // a plain name; `x..` too. A name containing '/' cannot exist on a
    // Linux server's disk at all, so no real sshd can send one.
    tree.add_file(&format!("{s}/..x_spatLog_06092021_000000.csv"), b"dots\n");
    let plain_dots = [
        tree.add_file(&format!("{s}/a..b_srmLog_06092021_000000.csv"), b"a..b\n"),
        tree.add_file(&format!("{s}/x.."), b"x..\n"),
    ];
    tree.add_file(
        "..._dir/inner_spatLog_06092021_000000.csv",
        b"in a dot folder\n",
    );
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let f = run_with_env(&client, &[], LIMIT);
    assert_eq!(f.code(), Some(0), "{}", f.stderr);
    assert!(
        tree.outside_untouched(),
        "a symlink target outside archive/ changed"
    );
    let remaining = tree.remaining_files();
    for kept in [
        &hostile.symlink_to_file,
        &hostile.symlink_to_dir,
        &hostile.dangling_symlink,
        &hostile.fifo,
    ]
    .into_iter()
    .chain(&top_level)
    {
        assert!(remaining.contains(kept), "{kept} must stay: {remaining:?}");
    }
    let landed = tree.taken();
    for p in &plain_dots {
        assert!(landed.contains(p), "{} must land", p.rel);
    }
    // Plain odd names land; `...` (hidden) and a name with a newline stay.
    assert!(
        landed.iter().any(|m| m.file_name().len() == 255),
        "the 255-byte name must land"
    );
    assert!(remaining.iter().any(|r| r.ends_with("new\nline.csv")));
    assert!(remaining.iter().any(|r| r.ends_with("/...")));
    let tally = tally_landed(&client.data_dir(), "a", &landed);
    assert_eq!((tally.lost, tally.duplicated), (0, 0), "{tally:?}");
    assert_landed(&client.data_dir(), "a", &landed);
    // Every entry left behind is in the report, by its escaped name.
    let skipped = client.ix_state("a")["skipped"].as_array().unwrap().clone();
    assert!(
        skipped.len() >= remaining.len(),
        "{skipped:?}\n{remaining:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s["path"].as_str().unwrap().contains("new\\nline")),
        "{skipped:?}"
    );
    assert!(
        !f.stderr.contains("new\nline"),
        "a raw newline reached the log"
    );
    // Nothing written anywhere but the data folder of "a" and the state.
    for p in walk_all(client.dir.path()) {
        assert!(
            p.starts_with("data/a/")
                || p.starts_with("state/")
                || p.starts_with(".run-")
                || p == "config.toml"
                || p == "known_hosts",
            "written outside the intersection's folder: {p:?}"
        );
    }
    record(Row {
        fault: "7a. hostile names and symlinks (.., newline, 255 bytes, links out, FIFO)".into(),
        trials: 1,
        tally,
        note: format!(
            "{} entries skipped and reported, none followed",
            skipped.len()
        ),
    });
}

/// Issue 5.7: a listing of 100,000 entries: the pass ends, the files among
/// them land, memory stays bounded (peak RSS measured with wait4).
#[test]
fn a_listing_of_100_000_entries_keeps_memory_bounded() {
    const ENTRIES: usize = 100_000;
    /// Peak RSS allowed for the whole pass, in KiB.
    const BOUND_KIB: u64 = 128 << 10;
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::with_options("Many", 5);
    let s = session_name("M", stamp(6, 9));
    let real = tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 8), 1, 500..=2_000);
    // Symlinks: listed and reported, never pulled, so the pass stays quick
    // while the listing, the walk and the report see every entry.
    tree.add_dir(&s);
    let dir = tree.path(&s);
    let t0 = Instant::now();
    for i in 0..ENTRIES {
        std::os::unix::fs::symlink(
            "/etc/passwd",
            dir.join(format!("link-{i:06}_spatLog_06092021_000000.csv")),
        )
        .unwrap();
    }
    println!("made {ENTRIES} entries in {:?}", t0.elapsed());
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let f = run_with_env(&client, &[], Duration::from_secs(600));
    assert_eq!(
        f.code(),
        Some(0),
        "{}",
        &f.stderr[..f.stderr.len().min(4000)]
    );
    assert_landed(&client.data_dir(), "a", &real);
    let skipped = client.ix_state("a")["skipped"].as_array().unwrap().len();
    assert_eq!(skipped, ENTRIES);
    let state_bytes = std::fs::metadata(client.state_dir().join("last-run.json"))
        .unwrap()
        .len();
    println!(
        "100,000 entries: pass {:.1} s, peak RSS {} KiB, state file {} bytes",
        f.elapsed.as_secs_f64(),
        f.max_rss_kib,
        state_bytes
    );
    assert!(
        f.max_rss_kib < BOUND_KIB,
        "peak RSS {} KiB over the bound {BOUND_KIB} KiB",
        f.max_rss_kib
    );
    let tally = tally_landed(&client.data_dir(), "a", &real);
    record(Row {
        fault: "7b. listing of 100,000 entries".into(),
        trials: 1,
        tally,
        note: format!(
            "pass {:.1} s, peak RSS {} MiB (bound {} MiB)",
            f.elapsed.as_secs_f64(),
            f.max_rss_kib >> 10,
            BOUND_KIB >> 10
        ),
    });
}

/// Regression: a remote file named like an element folder (`spat`, no
/// element of its own, so it lands directly under the intersection's
/// folder) that came first took the folder's name; from then on every spat
/// file of that intersection failed with "File exists" on every pass.
#[test]
fn a_remote_file_named_like_an_element_folder_does_not_block_that_element() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::with_options("Names", 3);
    let blocker = tree.add_file_as("spat", b"a file named like the spat folder\n", None);
    tree.set_age("spat", Duration::from_secs(7200)); // oldest: taken first
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 500..=2_000);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let f = run_with_env(&client, &[], LIMIT);
    assert_eq!(f.code(), Some(0), "{}", f.stderr);
    assert!(
        tree.remaining_files().is_empty(),
        "{:?}",
        tree.remaining_files()
    );
    let beside = client.data_dir().join("a/spat.conflict-1");
    assert_eq!(sha256_file(&beside), blocker.sha256);
    let rest: Vec<ManifestEntry> = tree
        .manifest()
        .into_iter()
        .filter(|m| m.rel != "spat")
        .collect();
    let t = tally_landed(&client.data_dir(), "a", &rest);
    assert_eq!((t.lost, t.duplicated), (0, 0), "{t:?}");
}

/// Regression: a 255-byte file name whose local twin differs could not get
/// a conflict name (ENAMETOOLONG), which stopped the intersection at that
/// file on every pass.
#[test]
fn a_255_byte_name_that_conflicts_lands_beside_and_the_pass_goes_on() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::with_options("Long", 4);
    let name = format!("{}_spatLog_06092021_000000.csv", "L".repeat(255 - 28));
    assert_eq!(name.len(), 255);
    let a = tree.add_file(
        &format!("{}/{name}", session_name("A", stamp(6, 8))),
        b"first\n",
    );
    let b = tree.add_file(
        &format!("{}/{name}", session_name("B", stamp(6, 9))),
        b"second\n",
    );
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 10), 1, 500..=2_000);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let f = run_with_env(&client, &[], LIMIT);
    assert_eq!(f.code(), Some(0), "{}", f.stderr);
    assert!(
        tree.remaining_files().is_empty(),
        "{:?}",
        tree.remaining_files()
    );
    let spat = client.data_dir().join("a/spat");
    let mut got: Vec<String> = walk_files(&spat)
        .into_iter()
        .filter(|(p, _)| p.starts_with('L'))
        .map(|(p, _)| sha256_file(&spat.join(p)))
        .collect();
    got.sort();
    let mut want = vec![a.sha256.clone(), b.sha256.clone()];
    want.sort();
    assert_eq!(got, want);
}
