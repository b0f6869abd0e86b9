//! The window, the caps, the backlog and the coprocessor's free space,
//! against the scripted server (see `tests.rs` for the harness).

use std::time::{Duration, Instant};

use crate::ssh::sftp::scripted::Scripted;
use crate::transfer::harness::{ARCHIVE, Harness};
use crate::transfer::pace::Pacer;
use crate::transfer::window::Window;

/// Two sessions: 300 KB and 4 KB in the older, 1 MB in the newer; mtimes
/// a day and a half and a day ago.
fn archive(server: &mut Scripted, now: u32) -> Vec<(String, usize, u32)> {
    let files = vec![
        (
            "S1_06092021_000000/S1_spatLog_06092021_000000.csv".to_string(),
            300_000,
            now - 36 * 3600,
        ),
        (
            "S1_06092021_000000/S1_srmLog_06092021_000000.csv".to_string(),
            4_000,
            now - 36 * 3600,
        ),
        (
            "S2_06102021_000000/S2_ssmLog_06102021_000000.csv".to_string(),
            1_000_000,
            now - 24 * 3600,
        ),
    ];
    for (rel, size, mtime) in &files {
        let data: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
        server.file_at(&format!("{ARCHIVE}/{rel}"), &data, *mtime);
    }
    files
}

fn now() -> u32 {
    u32::try_from(crate::common::clock::unix_now()).unwrap_or(u32::MAX)
}

#[test]
fn a_window_closed_before_the_first_file_defers_everything_and_opens_nothing() {
    let mut h = Harness::new();
    let mut server = Scripted::new();
    let t = now();
    let files = archive(&mut server, t);
    let start = Instant::now();
    h.window = Some(Window {
        end: start - Duration::from_secs(1),
        hard_end: start + Duration::from_secs(60),
        end_unix: 0,
    });
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()), "deferring is no failure");
    assert!(o.report.errors.is_empty(), "{:?}", o.report.errors);
    assert!(server.requests("OPEN").is_empty(), "{:?}", server.log);
    assert!(server.requests("REMOVE").is_empty());
    let d = o.report.deferred.expect("deferred");
    assert_eq!(d.files, 3);
    assert_eq!(d.bytes, 1_304_000);
    let b = o.report.backlog.expect("backlog");
    assert_eq!((b.files, b.bytes, b.complete), (3, 1_304_000, true));
    assert_eq!(b.oldest_mtime, Some(u64::from(t - 36 * 3600)));
    assert_eq!(server.remaining_files().len(), files.len());
    assert_eq!(o.report.read_bytes, 0);
}

#[test]
fn without_a_window_nothing_is_deferred_and_the_backlog_is_what_could_not_be_removed() {
    let mut h = Harness::new();
    let mut server = Scripted::new();
    let files = archive(&mut server, now());
    let stuck = format!("{ARCHIVE}/{}", files[1].0);
    server.faults.fail_remove.insert(stuck.clone().into_bytes());
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()));
    assert_eq!(o.report.deferred, None);
    let b = o.report.backlog.expect("backlog");
    assert_eq!(
        (b.files, b.bytes),
        (1, 4_000),
        "only the file whose REMOVE failed"
    );
    assert_eq!(o.report.read_bytes, 1_304_000, "each byte read once");
    assert_eq!(server.remaining_files(), vec![stuck]);
}

#[test]
fn the_coprocessor_free_space_is_asked_before_and_after_or_said_to_be_unknown() {
    // In order, and with the answers shuffled: the free space reported is
    // the one after the deletes (the scripted filesystem frees what is
    // removed), and the second question goes out with the last REMOVE,
    // before the emptied folders' RMDIRs.
    for reorder in [false, true] {
        let mut h = Harness::new();
        let mut server = Scripted::new();
        server.faults.reorder = reorder;
        let files = archive(&mut server, now());
        server.statvfs = Some((3 << 30, 16 << 30));
        let o = h.run(&mut server);
        assert_eq!(o.result, Ok(()));
        assert_eq!(server.requests("STATVFS"), ["/v2x", "/v2x"]);
        let removed: u64 = files.iter().map(|(_, size, _)| *size as u64).sum();
        let s = o.report.remote_space.expect("measured");
        assert_eq!(
            (s.free_bytes, s.size_bytes),
            (Some(((3 << 30) + removed) / 4096 * 4096), Some(16 << 30)),
            "reorder: {reorder}"
        );
        assert!(s.unknown.is_none());
        if !reorder {
            let at = |what: &str| server.log.iter().rposition(|l| l.starts_with(what));
            let (space, rmdir) = (at("STATVFS"), at("RMDIR"));
            assert!(
                space.is_some() && rmdir.is_some() && space < rmdir,
                "{:?}",
                server.log
            );
        }
    }

    let mut h = Harness::new();

    let mut server = Scripted::new();
    archive(&mut server, now());
    server.statvfs = None;
    let o = h.run(&mut server);
    assert_eq!(o.result, Ok(()), "no extension is no failure");
    let s = o.report.remote_space.expect("said why");
    assert_eq!(s.free_bytes, None);
    let why = s.unknown.unwrap_or_default();
    assert!(why.contains("does not offer statvfs@openssh.com"), "{why}");
}

#[test]
fn a_capped_engine_takes_as_long_as_its_cap_says() {
    let mut h = Harness::new();
    let mut server = Scripted::new();
    archive(&mut server, now());
    // 1.3 MB at 4 MiB/s: about 0.31 s; unpaced the scripted server takes
    // a few milliseconds.
    h.pacer = Pacer::new(Some(4 << 20), None);
    let start = Instant::now();
    let o = h.run(&mut server);
    let took = start.elapsed().as_secs_f64();
    assert_eq!(o.result, Ok(()));
    assert_eq!(o.report.files, 3);
    let want = 1_304_000.0 / f64::from(4u32 << 20);
    // The first READ goes at once (one chunk, 255 KiB, ahead of the rate);
    // above, only a sanity bound: a loaded test machine is slower.
    let first = f64::from(255u32 << 10) / f64::from(4u32 << 20);
    assert!(took > (want - first) * 0.95, "{took} s for {want} s");
    assert!(took < want * 3.0 + 2.0, "{took} s for {want} s");
}
