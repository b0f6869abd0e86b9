//! The engine against a scripted server (`crate::ssh::sftp::scripted`): what
//! OpenSSH never does, in milliseconds, without root or sshd. Every test
//! lets the server check at each REMOVE that the file's bytes are already
//! landed, so a change that sends a REMOVE before the commit fails them.

use std::fs;

use sha2::Digest;

use crate::ssh::sftp::scripted::{Generated, Scripted};
use crate::transfer::harness::{ARCHIVE, Harness, Outcome};

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// A coprocessor's archive: two closed sessions of a few files, one big
/// enough for several READs, and the live session outside `archive/`.
fn coprocessor(server: &mut Scripted) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        (
            "S1_06092021_000000/S1_spatLog_06092021_000000.csv",
            data(1, 700_000),
        ),
        (
            "S1_06092021_000000/S1_remoteBsmLog_06092021_000000.csv",
            data(2, 3_000),
        ),
        (
            "S1_06092021_000000/S1_srmLog_06092021_000000.csv",
            data(3, 0),
        ),
        (
            "S2_06102021_000000/S2_ssmLog_06102021_000000.csv",
            data(4, 261_121),
        ),
        (
            "S2_06102021_000000/S2_msgCountLog_06102021_000000.csv",
            data(5, 9),
        ),
        ("S2_06102021_000000/notes.txt", data(6, 17)),
    ];
    for (rel, bytes) in &files {
        server.file(&format!("{ARCHIVE}/{rel}"), bytes);
    }
    server.file(
        "/v2x/S3_06112021_000000/S3_spatLog_06112021_000000.csv",
        b"live",
    );
    files
        .into_iter()
        .map(|(rel, bytes)| (rel.to_string(), bytes))
        .collect()
}

fn landed_as(h: &Harness, rel: &str) -> Vec<u8> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let element = crate::transfer::classify::classify(name, &h.config.elements);
    let path = match element {
        Some(el) => h.data_root().join(el).join(name),
        None => h.data_root().join(name),
    };
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_all_landed(h: &Harness, server: &Scripted, files: &[(String, Vec<u8>)], o: &Outcome) {
    assert_eq!(o.result, Ok(()), "{:?}", o.report.errors);
    assert!(o.report.errors.is_empty(), "{:?}", o.report.errors);
    for (rel, bytes) in files {
        assert!(landed_as(h, rel) == *bytes, "{rel}: other bytes landed");
    }
    assert_eq!(
        server.remaining_files(),
        vec!["/v2x/S3_06112021_000000/S3_spatLog_06112021_000000.csv"]
    );
    assert_eq!(o.report.files, files.len() as u64);
    assert!(server.violations.is_empty(), "{:?}", server.violations);
}

fn scripted(h: &Harness) -> Scripted {
    let mut s = Scripted::new();
    s.check_landed_under(&h.data_root());
    s.check_recorded_in(&h.config.state_directory.join("ledger"));
    s
}

#[test]
fn a_well_behaved_server_gets_everything_landed_then_removed() {
    let mut h = Harness::new();
    let mut server = scripted(&h);
    let files = coprocessor(&mut server);
    let o = h.run(&mut server);
    assert_all_landed(&h, &server, &files, &o);
    assert!(!server.exists("/v2x/archive/S1_06092021_000000"));
    assert!(server.exists(ARCHIVE), "archive/ itself is never removed");
    // Each REMOVE came after that file's OPEN, once.
    let removes = server.requests("REMOVE");
    assert_eq!(removes.len(), files.len());
    for r in removes {
        let open = server.log.iter().position(|l| *l == format!("OPEN {r}"));
        let remove = server.log.iter().position(|l| *l == format!("REMOVE {r}"));
        assert!(open < remove, "{r}");
    }
}

#[test]
fn answers_out_of_order_and_short_reads_land_the_same_bytes() {
    for (reorder, max_data) in [(true, None), (false, Some(1_000)), (true, Some(4_097))] {
        let mut h = Harness::new();
        let mut server = scripted(&h);
        server.faults.reorder = reorder;
        server.faults.max_data = max_data;
        let files = coprocessor(&mut server);
        let o = h.run(&mut server);
        assert_all_landed(&h, &server, &files, &o);
    }
}

#[test]
fn oversized_or_empty_data_fails_that_file_alone_with_its_own_message() {
    let big = "/v2x/archive/S1_06092021_000000/S1_spatLog_06092021_000000.csv";
    let small = "/v2x/archive/S2_06102021_000000/S2_msgCountLog_06102021_000000.csv";
    let mut h = Harness::new();
    let mut server = scripted(&h);
    server.faults.oversized.insert(big.as_bytes().to_vec());
    server.faults.empty_data.insert(small.as_bytes().to_vec());
    let files = coprocessor(&mut server);
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    let errors = o.report.errors.join("\n");
    assert!(
        errors.contains(
            "S1_06092021_000000/S1_spatLog_06092021_000000.csv: the server answered the READ of \
             261120 bytes at offset 0 with 261121 bytes, more than was asked for; left on the coprocessor"
        ),
        "{errors}"
    );
    assert!(
        errors.contains(
            "S2_06102021_000000/S2_msgCountLog_06102021_000000.csv: the server answered the READ of \
             9 bytes at offset 0 with no data (SFTP says end of file must be a status); left on the coprocessor"
        ),
        "{errors}"
    );
    assert_eq!(o.report.errors.len(), 2, "{errors}");
    assert!(server.exists(big) && server.exists(small));
    assert_eq!(o.report.files, files.len() as u64 - 2);
    assert!(
        server.exists("/v2x/archive/S1_06092021_000000"),
        "a folder with a file left stays"
    );
    assert!(server.violations.is_empty(), "{:?}", server.violations);
}

#[test]
fn names_listed_twice_or_after_the_end_are_taken_once() {
    for (dup, after_eof) in [(true, false), (false, true), (true, true)] {
        let mut h = Harness::new();
        let mut server = scripted(&h);
        server.faults.duplicate_names = dup;
        server.faults.names_after_eof = after_eof;
        let files = coprocessor(&mut server);
        let o = h.run(&mut server);
        assert_all_landed(&h, &server, &files, &o);
        assert_eq!(server.requests("REMOVE").len(), files.len());
        assert_eq!(server.requests("OPEN").len(), files.len());
        assert!(
            o.report
                .skipped
                .iter()
                .all(|s| s.reason == "listed more than once by the server; taken once"),
            "{:?}",
            o.report.skipped
        );
        assert!(!o.report.skipped.is_empty());
    }
}

#[test]
fn a_failed_remove_keeps_the_folder_and_the_next_pass_finds_the_landed_copy() {
    let victim = "/v2x/archive/S2_06102021_000000/notes.txt";
    let mut h = Harness::new();
    let mut server = scripted(&h);
    server.faults.fail_remove.insert(victim.as_bytes().to_vec());
    let files = coprocessor(&mut server);
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    assert_eq!(
        o.report.errors,
        vec![
            "S2_06102021_000000/notes.txt: landed here but could not be removed remotely: failure \
             (Failure); a later pass finds the identical copy here and removes it then"
        ]
    );
    assert!(server.exists(victim));
    assert!(server.exists("/v2x/archive/S2_06102021_000000"));
    assert!(!server.exists("/v2x/archive/S1_06092021_000000"));

    server.faults.fail_remove.clear();
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    assert!(o.report.errors.is_empty(), "{:?}", o.report.errors);
    assert_eq!((o.report.files, o.report.already_present), (1, 1));
    assert!(!server.exists("/v2x/archive/S2_06102021_000000"));
    assert_eq!(landed_as(&h, "notes.txt"), files[5].1);
    assert!(server.violations.is_empty(), "{:?}", server.violations);
}

#[test]
fn a_failed_rmdir_is_a_warning_and_the_files_are_gone() {
    let mut h = Harness::new();
    let mut server = scripted(&h);
    server.faults.fail_rmdir = true;
    let files = coprocessor(&mut server);
    let o = h.run(&mut server);
    assert_all_landed(&h, &server, &files, &o);
    assert!(server.exists("/v2x/archive/S1_06092021_000000"));
    assert_eq!(server.requests("RMDIR").len(), 2);
}

#[test]
fn a_server_that_lies_about_sizes_never_gets_a_file_deleted() {
    let under = "/v2x/archive/S1_06092021_000000/S1_remoteBsmLog_06092021_000000.csv";
    let over = "/v2x/archive/S2_06102021_000000/notes.txt";
    let mut h = Harness::new();
    let mut server = scripted(&h);
    // Listing and FSTAT agree with each other, not with the file: only the
    // READ at the listed end can tell.
    server
        .faults
        .claimed_size
        .insert(under.as_bytes().to_vec(), 2_000);
    server
        .faults
        .claimed_size
        .insert(over.as_bytes().to_vec(), 40);
    coprocessor(&mut server);
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    assert!(server.exists(under) && server.exists(over));
    let skipped: Vec<_> = o.report.skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        skipped,
        vec![
            "S1_06092021_000000/S1_remoteBsmLog_06092021_000000.csv",
            "S2_06102021_000000/notes.txt"
        ]
    );
    assert!(
        o.report
            .skipped
            .iter()
            .all(|s| s.reason.starts_with("changed while being read"))
    );
    assert_eq!(o.report.files, 4);
    assert!(server.violations.is_empty(), "{:?}", server.violations);
}

/// Issue 16: a session re-sent under another folder name: two remote files
/// of one name, size and mtime, different bytes.
#[test]
fn two_files_of_one_name_size_and_mtime_land_apart_and_both_go() {
    let mut h = Harness::new();
    let mut server = scripted(&h);
    let a = data(7, 400_000);
    let mut b = a.clone();
    b[123_456] ^= 0xff;
    let name = "S1_spatLog_06092021_000000.csv";
    server.file_at(
        &format!("{ARCHIVE}/S1_06092021_000000/{name}"),
        &a,
        1_623_196_800,
    );
    server.file_at(
        &format!("{ARCHIVE}/S1_06092021_000000-resent/{name}"),
        &b,
        1_623_196_800,
    );
    server.faults.reorder = true;
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    assert!(o.report.errors.is_empty(), "{:?}", o.report.errors);
    let spat = h.data_root().join("spat");
    let first = fs::read(spat.join(name)).unwrap();
    let second = fs::read(spat.join("S1_spatLog_06092021_000000.conflict-1.csv")).unwrap();
    assert!((first == a && second == b) || (first == b && second == a));
    assert!(server.remaining_files().is_empty());
    assert!(server.violations.is_empty(), "{:?}", server.violations);
}

#[test]
fn a_listing_that_never_ends_stops_the_intersection_before_anything_is_touched() {
    let mut h = Harness::new();
    h.config.transfer.max_listed_entries = 5_000;
    let mut server = scripted(&h);
    coprocessor(&mut server);
    server
        .faults
        .endless
        .insert(b"/v2x/archive/S2_06102021_000000".to_vec());
    let o = h.run(&mut server);
    assert_eq!(
        o.result,
        Err(
            "fatal: /v2x/archive lists more than 5000 entries (transfer.max_listed_entries); \
             stopped before transferring anything, nothing was deleted. A server that never \
             ends a listing does this; so does an archive/ that was not pulled for years: \
             then raise transfer.max_listed_entries"
                .into()
        )
    );
    assert!(server.requests("OPEN").is_empty());
    assert!(server.requests("REMOVE").is_empty());
    assert!(server.requests("RMDIR").is_empty());
}

#[test]
fn min_age_holds_back_only_files_directly_in_archive() {
    let now = crate::common::clock::unix_now() as u32;
    let mut h = Harness::new();
    let mut server = scripted(&h);
    // The collector renamed tonight's session into archive/ a second ago.
    server.file_at(
        &format!("{ARCHIVE}/S1_06092021_000000/S1_spatLog_06092021_000000.csv"),
        b"closed at midnight",
        now - 1,
    );
    server.file_at(
        &format!("{ARCHIVE}/S1_06092021_000000.zip"),
        b"zip being written",
        now - 1,
    );
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    assert_eq!(o.report.files, 1);
    assert_eq!(
        server.remaining_files(),
        vec!["/v2x/archive/S1_06092021_000000.zip"]
    );
    assert_eq!(o.report.skipped.len(), 1);
    assert!(
        o.report.skipped[0].reason.starts_with(
            "directly in archive/ and modified 1 s ago, younger than transfer.min_age (2m)"
        ),
        "{}",
        o.report.skipped[0].reason
    );
}

/// A file no name can be found for fails alone; the rest of the
/// intersection lands in the same pass.
#[test]
fn a_file_that_cannot_be_landed_fails_alone() {
    let mut h = Harness::new();
    let mut server = scripted(&h);
    let files = coprocessor(&mut server);
    let rel = "S2_06102021_000000/notes.txt";
    let root = h.data_root();
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("notes.txt"), b"other").unwrap();
    for n in 1..1000 {
        fs::write(root.join(format!("notes.conflict-{n}.txt")), b"other").unwrap();
    }
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    assert_eq!(o.report.errors.len(), 1, "{:?}", o.report.errors);
    assert!(o.report.errors[0].starts_with(&format!("{rel}: 1000 different files named like")));
    assert!(o.report.errors[0].ends_with("left on the coprocessor, retried next pass"));
    assert_eq!(o.report.files, files.len() as u64 - 1);
    assert!(server.exists(&format!("{ARCHIVE}/{rel}")));
    assert!(server.violations.is_empty(), "{:?}", server.violations);
}

#[test]
fn many_files_in_a_row_that_cannot_land_stop_the_intersection() {
    let mut h = Harness::new();
    let mut server = scripted(&h);
    let root = h.data_root();
    fs::create_dir_all(&root).unwrap();
    // The element folder is a file: every SPaT file fails to land
    // (ENOTDIR), each a failure of its own, none a full disk.
    fs::write(root.join("spat"), b"not a folder").unwrap();
    for i in 0..12 {
        server.file_at(
            &format!("{ARCHIVE}/S/S1_spatLog_{i:02}.csv"),
            b"remote",
            1_600_000_000 + i,
        );
    }
    let o = h.run(&mut server);
    let err = o.result.unwrap_err();
    assert!(
        err.starts_with("fatal: 10 files in a row failed to land here"),
        "{err}"
    );
    assert_eq!(server.remaining_files().len(), 12);
}

/// The listing of a large archive costs a bounded amount per name; a
/// generated tree of 20,000 folders keeps every file once.
#[test]
fn a_generated_tree_is_listed_once_per_name() {
    let mut h = Harness::new();
    let cancel = h.control.cancel.clone();
    let mut server = scripted(&h);
    server.faults.cancel_on_open = Some(cancel);
    server.generate(Generated {
        path: ARCHIVE.as_bytes().to_vec(),
        folders: 200,
        files: 100,
    });
    let o = h.run(&mut server);
    assert_eq!(o.result, Err("cancelled".into()));
    assert_eq!(server.requests("OPENDIR").len(), 201);
}

/// Every record of the harness's ledger.
fn records(h: &Harness) -> Vec<crate::ledger::Record> {
    crate::ledger::day_files(&h.config.state_directory, None)
        .unwrap()
        .iter()
        .flat_map(|f| crate::ledger::Scan::read(f).unwrap().records)
        .collect()
}

#[test]
fn every_removed_file_has_one_record_with_its_hash_and_level() {
    let mut h = Harness::new();
    let mut server = scripted(&h);
    let files = coprocessor(&mut server);
    let o = h.run(&mut server);
    assert_all_landed(&h, &server, &files, &o);
    assert_eq!(o.report.verification.as_deref(), Some("sha256"));
    let recs = records(&h);
    assert_eq!(recs.len(), files.len());
    assert_eq!(o.report.recorded, files.len() as u64);
    for (rel, bytes) in &files {
        let remote = format!("{ARCHIVE}/{rel}");
        let r = recs
            .iter()
            .find(|r| r.remote_path == remote)
            .unwrap_or_else(|| panic!("no record of {remote}"));
        let (sha, n) =
            crate::landing::sha256_file(&h.config.data_directory.join(r.local_path())).unwrap();
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(r.sha256, crate::ledger::hex(&sha));
        assert_eq!(r.size, bytes.len() as u64);
        assert_eq!(r.verified, crate::ledger::Level::Sha256);
        assert_eq!(
            (r.intersection.as_str(), r.pass.as_str()),
            ("ix", "test-pass-1")
        );
    }
}

#[test]
fn a_file_recorded_but_not_removed_is_removed_next_pass_without_a_second_record() {
    // A REMOVE that fails stands for a crash between the record and the
    // REMOVE: the file is here, recorded, and still on the coprocessor.
    let victim = "/v2x/archive/S2_06102021_000000/notes.txt";
    let mut h = Harness::new();
    let mut server = scripted(&h);
    server.faults.fail_remove.insert(victim.as_bytes().to_vec());
    let files = coprocessor(&mut server);
    h.run(&mut server);
    assert!(server.exists(victim));
    assert_eq!(records(&h).len(), files.len());
    server.faults.fail_remove.clear();
    h.pass = "test-pass-2".into();
    let o = h.run(&mut server);
    assert_eq!((o.report.files, o.report.already_present), (1, 1));
    assert_eq!(o.report.recorded, 0);
    assert!(!server.exists(victim));
    let recs = records(&h);
    assert_eq!(recs.len(), files.len(), "{recs:#?}");
    assert_eq!(recs.iter().filter(|r| r.remote_path == victim).count(), 1);
    assert!(server.violations.is_empty(), "{:?}", server.violations);
}

#[test]
fn a_hash_mismatch_keeps_the_remote_file_lands_nothing_and_names_both_hashes() {
    let victim = "/v2x/archive/S1_06092021_000000/S1_spatLog_06092021_000000.csv";
    let mut h = Harness::new();
    let mut server = scripted(&h);
    server.faults.wrong_hash.insert(victim.as_bytes().to_vec());
    let files = coprocessor(&mut server);
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    assert_eq!(o.report.errors.len(), 1, "{:?}", o.report.errors);
    let e = &o.report.errors[0];
    assert!(e.contains("SHA-256 mismatch"), "{e}");
    let good = crate::ledger::hex(&sha2::Sha256::digest(&files[0].1));
    assert!(e.contains(&good), "the local hash is named: {e}");
    assert!(server.exists(victim));
    // Nothing of it landed, no partial is kept to resume from.
    let spat = h.data_root().join("spat");
    assert_eq!(fs::read_dir(&spat).unwrap().count(), 0);
    assert!(records(&h).iter().all(|r| r.remote_path != victim));
    // The next pass, with the hashes agreeing, lands it.
    server.faults.wrong_hash.clear();
    let o = h.run(&mut server);
    assert!(o.report.errors.is_empty(), "{:?}", o.report.errors);
    assert!(!server.exists(victim));
    assert_eq!(landed_as(&h, &files[0].0), files[0].1);
    assert!(server.violations.is_empty(), "{:?}", server.violations);
}

#[test]
fn an_account_that_cannot_hash_falls_back_to_size_under_auto_and_stops_under_sha256() {
    // Refused at the exec, or found out only from the first batch's
    // answer, after (under auto) the first files were opened and read.
    for silent in [false, true] {
        let mut h = Harness::new();
        h.config.transfer.verify = crate::config::Verify::Sha256;
        let mut server = scripted(&h);
        server.faults.no_exec = !silent;
        server.faults.silent_hasher = silent;
        coprocessor(&mut server);
        let o = h.run(&mut server);
        let err = o.result.unwrap_err();
        assert!(err.contains("cannot hash files"), "{err}");
        assert_eq!(server.requests("REMOVE").len(), 0);
        assert_eq!(server.requests("OPEN").len(), 0, "silent: {silent}");

        h.config.transfer.verify = crate::config::Verify::Auto;
        let mut server = scripted(&h);
        server.faults.no_exec = !silent;
        server.faults.silent_hasher = silent;
        let files = coprocessor(&mut server);
        let o = h.run(&mut server);
        assert_all_landed(&h, &server, &files, &o);
        assert_eq!(o.report.verification.as_deref(), Some("size"));
        if silent {
            // Files were opened before the first batch's answer said so.
            let at = |what: &str| server.log.iter().position(|l| l.starts_with(what));
            let (opened, said) = (at("OPEN "), at("EXEC printed nothing"));
            assert!(
                opened.is_some() && said.is_some() && opened < said,
                "{:?}",
                server.log
            );
        }
        assert!(
            records(&h)
                .iter()
                .all(|r| r.verified == crate::ledger::Level::Size)
        );
    }
}

#[test]
fn size_asks_the_coprocessor_for_nothing() {
    let mut h = Harness::new();
    h.config.transfer.verify = crate::config::Verify::Size;
    let mut server = scripted(&h);
    let files = coprocessor(&mut server);
    let o = h.run(&mut server);
    assert_all_landed(&h, &server, &files, &o);
    assert!(server.log.iter().all(|l| !l.starts_with("EXEC")));
}
