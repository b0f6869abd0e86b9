//! Issue 11, the chain of custody, against real OpenSSH servers on
//! loopback: the coprocessor's own `sha256sum` before any delete, the
//! fallback where the account may not run it, hostile names that stay
//! names, the ledger and the commands that read it.

mod common;

use std::collections::HashSet;
use std::fs;
use std::process::Command;

use common::*;
use serde_json::Value;

use v2x_data_sftp_client::ssh::exec::Tool;
use v2x_data_sftp_client::ssh::sftp::Wire;

/// Two closed sessions, one with a file big enough for many READs.
fn coprocessor() -> RemoteTree {
    let mut tree = RemoteTree::new();
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 2_000..=20_000);
    tree.add_session("Second", stamp(6, 10), 1, 2_000..=20_000);
    tree.add_random_file(
        &format!(
            "{}/Second_spatLog_{}.csv",
            session_name("Second", stamp(6, 11)),
            stamp(6, 11).mmitss()
        ),
        3 << 20,
    );
    tree
}

/// The records of remote file `rel` (relative to `archive/`).
fn records_of<'a>(records: &'a [Value], tree: &RemoteTree, rel: &str) -> Vec<&'a Value> {
    let remote = tree.archive_dir().join(rel).display().to_string();
    records
        .iter()
        .filter(|r| r["remote_path"] == remote.as_str())
        .collect()
}

/// Every file of `tree` landed, removed, and recorded once with its hash
/// and `level`.
#[track_caller]
fn assert_custody(client: &Client, tree: &RemoteTree, ix: &str, level: &str) {
    let manifest = tree.manifest();
    assert_landed(&client.data_dir(), ix, &manifest);
    assert!(
        tree.remaining_files().is_empty(),
        "{:?}",
        tree.remaining_files()
    );
    let records = client.ledger();
    for m in &manifest {
        let mine = records_of(&records, tree, &m.rel);
        assert_eq!(mine.len(), 1, "{}: {mine:#?}", m.rel);
        assert_eq!(mine[0]["sha256"], m.sha256.as_str(), "{}", m.rel);
        assert_eq!(mine[0]["verified"], level, "{}", m.rel);
        assert_eq!(mine[0]["intersection"], ix);
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn sha256_with_a_byte_flipped_in_our_write_path_deletes_nothing_and_the_next_pass_lands_it_intact()
{
    let sshd = Sshd::start_default();
    let tree = coprocessor();
    let mut client = Client::new();
    client.set("verify = \"sha256\"");
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let victim = tree
        .manifest()
        .into_iter()
        .find(|m| m.size > 1 << 20)
        .expect("the big file");
    let f = run_with_env(
        &client,
        &[("V2X_FAULT_FLIP_BYTE", victim.file_name())],
        std::time::Duration::from_secs(120),
    );
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(f.stderr.contains("SHA-256 mismatch"), "{}", f.stderr);
    assert!(
        f.stderr.contains(&victim.sha256),
        "the remote hash is named: {}",
        f.stderr
    );
    // Kept remotely, nothing of it here (no partial to resume from either),
    // no record; the others went through.
    assert_eq!(tree.remaining_files(), vec![victim.rel.clone()]);
    let local: Vec<String> = walk_all(&client.data_dir());
    assert!(
        local.iter().all(|p| !p.contains(victim.file_name())),
        "{local:?}"
    );
    assert!(records_of(&client.ledger(), &tree, &victim.rel).is_empty());
    assert_eq!(client.ix_state("a")["verification"], "sha256");

    let out = client.run();
    assert_exit(&out, 0);
    assert_custody(&client, &tree, "a", "sha256");
    assert_exit(&client.cmd(&["verify"]), 0);
}

#[test]
fn auto_against_an_internal_sftp_only_account_falls_back_to_size_and_says_so() {
    let sshd = Sshd::start(SshdOptions::default().extra("ForceCommand internal-sftp"));
    let tree = coprocessor();
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let out = client.run();
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("files are checked by size and mtime only"),
        "{}",
        stderr(&out)
    );
    assert_eq!(client.ix_state("a")["verification"], "size");
    assert_custody(&client, &tree, "a", "size");

    // Asked for sha256 there: the intersection fails, nothing is touched.
    let tree = coprocessor();
    let mut client = Client::new();
    client.set("verify = \"sha256\"");
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let out = client.run();
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("cannot hash files"),
        "{}",
        stderr(&out)
    );
    assert_eq!(client.ix_state("a")["stopped_by"], "verify");
    assert_eq!(tree.remaining_files().len(), tree.manifest().len());
    assert!(client.ledger().is_empty());
}

/// Names a shell would act on. None may hold `/`; the commands they would
/// run create files named `pwned*` in the account's working folder.
const HOSTILE: [&str; 10] = [
    "it's \"quoted\"_spatLog_06092021_000000.csv",
    "$(touch pwned1)_spatLog_06092021_000000.csv",
    "`touch pwned2`_srmLog_06092021_000000.csv",
    "a;touch pwned3;b_ssmLog_06092021_000000.csv",
    "-n.csv",
    "--help",
    "back\\slash\\n_remoteBsmLog_06092021_000000.csv",
    " lead space and * glob ?.csv",
    "x' ; touch pwned4 ; '.csv",
    "$HOME|touch pwned5&.csv",
];

fn pwned(tree: &RemoteTree, sshd: &Sshd) -> Vec<String> {
    let mut found = Vec::new();
    for root in [tree.root().to_path_buf(), sshd.user().home.clone()] {
        for p in walk_all(&root) {
            if p.rsplit('/').next().is_some_and(|n| n.starts_with("pwned")) {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn hostile_remote_names_hash_correctly_and_run_nothing() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    let session = session_name("Hostile", stamp(6, 9));
    for (i, name) in HOSTILE.iter().enumerate() {
        tree.add_file(
            &format!("{session}/{name}"),
            format!("row {i}\n").as_bytes(),
        );
    }
    let mut client = Client::new();
    client.set("verify = \"sha256\"");
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let out = client.run();
    assert_exit(&out, 0);
    assert_custody(&client, &tree, "a", "sha256");
    assert_eq!(pwned(&tree, &sshd), Vec::<String>::new());

    // Below the engine, names it never takes (a newline) are hashed exactly
    // too, straight through the exec channel of a real session.
    let mut tree = RemoteTree::new();
    let mut names: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    names.push("new\nline\\n.csv".into());
    names.push("\\".into());
    for (i, name) in names.iter().enumerate() {
        tree.add_file(
            &format!("{session}/{name}"),
            format!("other row {i}\n").as_bytes(),
        );
    }
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    client.write();
    let config = v2x_data_sftp_client::config::load(&client.config_path())
        .expect("config")
        .config;
    let (known, _) = v2x_data_sftp_client::ssh::known_hosts::KnownHosts::load(&config.known_hosts)
        .expect("known_hosts");
    let mut remote = v2x_data_sftp_client::ssh::session::connect(
        &config.intersections[0],
        &known,
        &config.transfer,
        &|_| {},
    )
    .expect("a session");
    let wire = remote.channel();
    let paths: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            tree.archive_dir()
                .join(&session)
                .join(n)
                .into_os_string()
                .into_encoded_bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    // The first batch, which finds out the hasher (OpenSSL here) with
    // `/dev/null` among the hostile names; then each hasher by name.
    for tool in [None, Some(Tool::OpenSsl), Some(Tool::Sha256sum)] {
        if let Some(tool) = tool {
            wire.hash_with(tool);
        }
        let batch = wire.hash_start(&refs).expect("the hasher started");
        wire.hash_settle().expect("this account may hash files");
        for (name, path) in names.iter().zip(&paths) {
            let got = wire.hash_of(batch, path).expect("a hash");
            let want = tree
                .entry(&format!("{session}/{name}"))
                .expect("entry")
                .sha256
                .clone();
            let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, want, "{tool:?} {name:?}");
        }
        wire.hash_end(batch);
    }
    // A file that is not there: that file's trouble, with sha256sum's words.
    let missing = tree
        .archive_dir()
        .join("nope.csv")
        .into_os_string()
        .into_encoded_bytes();
    let batch = wire.hash_start(&[missing.as_slice()]).expect("started");
    let err = wire.hash_of(batch, &missing).expect_err("no hash");
    assert!(err.to_string().contains("No such file"), "{err}");
    assert_eq!(pwned(&tree, &sshd), Vec::<String>::new());
}

#[test]
fn verify_finds_a_landed_file_changed_truncated_or_deleted_afterwards_and_one_unrecorded() {
    let sshd = Sshd::start_default();
    let tree = coprocessor();
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    assert_exit(&client.run(), 0);
    let ok = client.cmd(&["verify"]);
    assert_exit(&ok, 0);
    assert!(
        stdout(&ok).contains(": 0 missing, 0 changed, 0 unrecorded"),
        "{}",
        stdout(&ok)
    );

    let records = client.ledger();
    let path = |i: usize| records[i]["path"].as_str().expect("path").to_string();
    let data = client.data_dir();
    // Changed: one byte, same size.
    let changed = path(0);
    let mut bytes = fs::read(data.join(&changed)).expect("landed");
    bytes[0] ^= 0x20;
    fs::write(data.join(&changed), &bytes).expect("rewrite");
    // Truncated.
    let truncated = path(1);
    fs::OpenOptions::new()
        .write(true)
        .open(data.join(&truncated))
        .and_then(|f| f.set_len(10))
        .expect("truncate");
    // Deleted.
    let deleted = path(2);
    fs::remove_file(data.join(&deleted)).expect("delete");
    // Put there by hand.
    fs::write(data.join("a/spat/by-hand.csv"), b"x\n").expect("write");

    let out = client.cmd(&["verify"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains(&format!("changed     {changed}")), "{text}");
    assert!(
        text.contains(&format!("changed     {truncated}  (10 bytes")),
        "{text}"
    );
    assert!(text.contains(&format!("missing     {deleted}")), "{text}");
    assert!(text.contains("unrecorded  a/spat/by-hand.csv"), "{text}");
    let json: Value =
        serde_json::from_str(&stdout(&client.cmd(&["verify", "--json"]))).expect("verify --json");
    assert_eq!(json["changed"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["missing"][0]["path"], deleted.as_str());
    assert_eq!(json["unrecorded"][0], "a/spat/by-hand.csv");
    // --only another intersection, --since a day after: nothing of it checked.
    assert_exit(
        &client.cmd(&["verify", "--since", "2999-01-01", "--only", "a"]),
        1,
    );
    assert_exit(&client.cmd(&["verify", "--since", "yesterday"]), 2);
}

#[test]
fn ledger_sha256sum_output_passes_sha256sum_c_and_pass_last_names_exactly_that_pass() {
    let sshd = Sshd::start_default();
    let mut tree = coprocessor();
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    assert_exit(&client.run(), 0);
    let first: HashSet<String> = tree.manifest().iter().map(|m| m.rel.clone()).collect();

    let out = client.cmd(&["ledger", "--format", "sha256sum"]);
    assert_exit(&out, 0);
    let sums = client.dir.path().join("sums");
    fs::write(&sums, &out.stdout).expect("sums");
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(&sums)
        .current_dir(client.data_dir())
        .output()
        .expect("sha256sum");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let oks = String::from_utf8_lossy(&check.stdout)
        .matches(": OK")
        .count();
    assert_eq!(oks, first.len());

    // A second pass with new files: `--pass last` gives those only.
    tree.add_session("Third", stamp(6, 12), 1, 1_000..=3_000);
    assert_exit(&client.run(), 0);
    let state = client.state();
    let pass = state["pass"].as_str().expect("pass id").to_string();
    assert!(!state["ledger"].as_array().expect("ledger files").is_empty());
    let out = client.cmd(&["ledger", "--pass", "last"]);
    assert_exit(&out, 0);
    let last: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let archive = tree.archive_dir().display().to_string();
    let got: HashSet<String> = last
        .iter()
        .map(|r| {
            let remote = r["remote_path"].as_str().expect("remote_path");
            remote[archive.len() + 1..].to_string()
        })
        .collect();
    let want: HashSet<String> = tree
        .manifest()
        .iter()
        .map(|m| m.rel.clone())
        .filter(|r| !first.contains(r))
        .collect();
    assert_eq!(got, want);
    assert!(last.iter().all(|r| r["pass"] == pass.as_str()));
    assert_eq!(client.ix_state("a")["recorded"], want.len() as u64);
    // The same by pass id; every record with no filter.
    let by_id = client.cmd(&["ledger", "--pass", &pass]);
    assert_eq!(stdout(&by_id), stdout(&out));
    let all = stdout(&client.cmd(&["ledger"])).lines().count();
    assert_eq!(all, tree.manifest().len());
    assert_exit(&client.cmd(&["ledger", "--only", "nope"]), 2);
}
