//! The transfer pass against real OpenSSH servers on loopback: routing,
//! landing, deletion, and what must never happen.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn stamp(day: u32) -> Stamp {
    Stamp::new(2021, 6, day, 0, 0, 0)
}

#[test]
fn routes_every_element_of_every_session_and_zip_and_unclassified_file() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    // A coprocessor whose name spells elements: "SpatzAve-Ssmith".
    tree.add_session(DEFAULT_COPROC_NAME, stamp(9), 2, 2_000..=20_000);
    tree.add_session(DEFAULT_COPROC_NAME, stamp(10), 1, 2_000..=20_000);
    tree.add_session("srmLog_Street", stamp(11), 1, 1_000..=5_000);
    tree.add_zip_session(DEFAULT_COPROC_NAME, stamp(12), 50_000);
    tree.add_file(&format!("{}/notes.txt", session_name(DEFAULT_COPROC_NAME, stamp(9))), b"operator note\n");
    tree.add_file(
        &format!("{}/V_hostBsmLog_06092021_000000.csv", session_name(DEFAULT_COPROC_NAME, stamp(10))),
        b"hostBsm\n",
    );
    // A nested folder inside a session.
    tree.add_file(
        &format!("{}/extra/X_ssmLog_06112021_010000.csv", session_name("srmLog_Street", stamp(11))),
        b"nested ssm\n",
    );
    let mut client = Client::new();
    client.add(Site::new("intersection-1", &sshd, &tree), &sshd);
    let out = client.run();
    assert_exit(&out, 0);

    let manifest = tree.manifest();
    assert!(manifest.len() >= 22, "{}", manifest.len());
    for el in ELEMENTS {
        assert!(manifest.iter().any(|m| m.element == Some(el)), "no {el} in the test data");
    }
    assert_landed(&client.data_dir(), "intersection-1", &manifest);
    assert!(tree.remaining_files().is_empty(), "left: {:?}", tree.remaining_files());
    assert!(tree.remaining_dirs().is_empty(), "left: {:?}", tree.remaining_dirs());
    assert!(tree.archive_dir().is_dir(), "archive/ itself must stay");
    tree.assert_current_session_untouched();

    let ix = client.ix_state("intersection-1");
    assert_eq!(ix["outcome"], "ok");
    assert_eq!(ix["files"], manifest.len() as u64);
    assert_eq!(ix["bytes"], tree.total_bytes());
    let status = client.cmd(&["status"]);
    assert_exit(&status, 0);
    assert!(stdout(&status).contains("intersection-1"), "{}", stdout(&status));
}

#[test]
fn second_pass_finds_nothing_and_succeeds() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_session(DEFAULT_COPROC_NAME, stamp(9), 1, 1_000..=2_000);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    assert_exit(&client.run(), 0);
    let out = client.run();
    assert_exit(&out, 0);
    assert_eq!(client.ix_state("a")["files"], 0);
    assert_landed(&client.data_dir(), "a", &tree.manifest());
}
