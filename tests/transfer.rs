//! The transfer pass against real OpenSSH servers on loopback: routing,
//! landing, deletion, and what must never happen.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn routes_every_element_of_every_session_and_zip_and_unclassified_file() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    // A coprocessor whose name spells elements: "SpatzAve-Ssmith".
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 2, 2_000..=20_000);
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 10), 1, 2_000..=20_000);
    tree.add_session("srmLog_Street", stamp(6, 11), 1, 1_000..=5_000);
    tree.add_zip_session(DEFAULT_COPROC_NAME, stamp(6, 12), 50_000);
    tree.add_file(
        &format!(
            "{}/notes.txt",
            session_name(DEFAULT_COPROC_NAME, stamp(6, 9))
        ),
        b"operator note\n",
    );
    tree.add_file(
        &format!(
            "{}/V_hostBsmLog_06092021_000000.csv",
            session_name(DEFAULT_COPROC_NAME, stamp(6, 10))
        ),
        b"hostBsm\n",
    );
    // A nested folder inside a session.
    tree.add_file(
        &format!(
            "{}/extra/X_ssmLog_06112021_010000.csv",
            session_name("srmLog_Street", stamp(6, 11))
        ),
        b"nested ssm\n",
    );
    let mut client = Client::new();
    client.add(Site::new("intersection-1", &sshd, &tree), &sshd);
    let out = client.run();
    assert_exit(&out, 0);

    let manifest = tree.manifest();
    assert!(manifest.len() >= 22, "{}", manifest.len());
    for el in ELEMENTS {
        assert!(
            manifest.iter().any(|m| m.element == Some(el)),
            "no {el} in the test data"
        );
    }
    assert_landed(&client.data_dir(), "intersection-1", &manifest);
    tree.assert_emptied("after the pass");
    tree.assert_current_session_untouched();

    let ix = client.ix_state("intersection-1");
    assert_eq!(ix["outcome"], "ok");
    assert_eq!(ix["files"], manifest.len() as u64);
    assert_eq!(ix["bytes"], tree.total_bytes());
    let status = client.cmd(&["status"]);
    assert_exit(&status, 0);
    assert!(
        stdout(&status).contains("intersection-1"),
        "{}",
        stdout(&status)
    );
}

#[test]
fn second_pass_finds_nothing_and_succeeds() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 1_000..=2_000);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    assert_exit(&client.run(), 0);
    let out = client.run();
    assert_exit(&out, 0);
    assert_eq!(client.ix_state("a")["files"], 0);
    assert_landed(&client.data_dir(), "a", &tree.manifest());
}

fn one_session(tree: &mut RemoteTree) {
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 1_000..=4_000);
}

#[test]
fn resumes_within_the_pass_after_a_cut_connection() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    let big = tree.add_log("X", "remoteBsm", stamp(6, 9), 12 << 20);
    // libssh2 keeps up to 4 MiB of reads in flight: cut well after that.
    let proxy = CutProxy::start(sshd.addr(), Some(6 << 20), None);
    let mut client = Client::new();
    client.add_through(Site::new("a", &sshd, &tree), &sshd, proxy.addr());
    let out = client.run();
    assert_exit(&out, 0);
    assert_eq!(proxy.faults_fired(), 1);
    assert!(proxy.connections() >= 2);
    let ix = client.ix_state("a");
    assert!(ix["resumed_bytes"].as_u64().unwrap() > 0, "{ix}");
    assert!(stderr(&out).contains("retrying"), "{}", stderr(&out));
    assert_landed(&client.data_dir(), "a", &tree.manifest());
    assert!(tree.remaining_files().is_empty());
    assert_eq!(big.element, Some("remoteBsm"));
}

#[test]
fn resumes_on_the_next_pass_after_a_cut_connection() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_log("X", "spat", stamp(6, 9), 12 << 20);
    // libssh2 keeps up to 4 MiB of reads in flight: cut well after that.
    let proxy = CutProxy::start(sshd.addr(), Some(6 << 20), None);
    let mut client = Client::new();
    client.set("retries = 0");
    client.add_through(Site::new("a", &sshd, &tree), &sshd, proxy.addr());
    let out = client.run();
    assert_exit(&out, 1);
    assert_eq!(tree.remaining_files().len(), 1, "nothing may be deleted");
    let partials = partial_files(&client.data_dir());
    assert_eq!(partials.len(), 1, "{partials:?}");
    let out = client.run();
    assert_exit(&out, 0);
    let ix = client.ix_state("a");
    assert!(ix["resumed_bytes"].as_u64().unwrap() >= 256 << 10, "{ix}");
    assert_landed(&client.data_dir(), "a", &tree.manifest());
    assert!(tree.remaining_files().is_empty());
}

#[test]
fn identical_local_file_counts_as_landed_and_a_different_one_is_kept() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    let same = tree.add_file(
        &format!(
            "{}/X_spatLog_06092021_000000.csv",
            session_name("X", stamp(6, 9))
        ),
        b"same bytes\n",
    );
    let diff = tree.add_file(
        &format!(
            "{}/X_srmLog_06092021_000000.csv",
            session_name("X", stamp(6, 9))
        ),
        b"remote version\n",
    );
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let ix_dir = client.data_dir().join("a");
    std::fs::create_dir_all(ix_dir.join("spat")).unwrap();
    std::fs::create_dir_all(ix_dir.join("srm")).unwrap();
    std::fs::write(ix_dir.join("spat").join(same.file_name()), b"same bytes\n").unwrap();
    std::fs::write(
        ix_dir.join("srm").join(diff.file_name()),
        b"local version\n",
    )
    .unwrap();
    let out = client.run();
    assert_exit(&out, 0);
    assert!(tree.remaining_files().is_empty());
    let ix = client.ix_state("a");
    assert_eq!(ix["already_present"], 1);
    assert_eq!(ix["files"], 2);
    assert_eq!(
        std::fs::read(ix_dir.join("srm").join(diff.file_name())).unwrap(),
        b"local version\n"
    );
    assert_eq!(
        std::fs::read(ix_dir.join("srm/X_srmLog_06092021_000000.conflict-1.csv")).unwrap(),
        b"remote version\n"
    );
    let visible: Vec<_> = walk_files(&ix_dir).into_iter().map(|(p, _)| p).collect();
    assert_eq!(visible.len(), 3, "{visible:?}");
}

#[test]
fn unknown_host_key_fails_before_any_password_is_sent() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    one_session(&mut tree);
    let mut client = Client::new();
    client.add_untrusted(Site::new("a", &sshd, &tree));
    let out = client.run();
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("not in the known_hosts file"), "{err}");
    assert!(
        err.contains(&sshd.host_key_fingerprint(KeyType::Ed25519)),
        "{err}"
    );
    assert_eq!(sshd.password_attempts(), 0, "{}", sshd.log());
    assert_eq!(tree.remaining_files().len(), tree.manifest().len());
}

#[test]
fn plain_host_entry_does_not_vouch_for_another_port() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    one_session(&mut tree);
    let mut client = Client::new();
    client.known_hosts = sshd.known_hosts_lines_for("127.0.0.1");
    client.add_untrusted(Site::new("a", &sshd, &tree));
    let out = client.run();
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("not in the known_hosts file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sshd.password_attempts(), 0);
}

#[test]
fn host_with_several_key_types_is_matched_on_the_type_known_for_it() {
    for known in [KeyType::Rsa, KeyType::Ecdsa, KeyType::Ed25519] {
        let sshd = Sshd::start(SshdOptions::default().host_keys(&[
            KeyType::Ed25519,
            KeyType::Ecdsa,
            KeyType::Rsa,
        ]));
        let mut tree = RemoteTree::new();
        one_session(&mut tree);
        let mut client = Client::new();
        client.known_hosts = format!(
            "{} {}\n",
            sshd.known_hosts_host(),
            sshd.host_key_public(known)
        );
        client.add_untrusted(Site::new("a", &sshd, &tree));
        let out = client.run();
        assert_exit(&out, 0);
        assert!(tree.remaining_files().is_empty(), "{known:?}");
    }
}

#[test]
fn key_and_password_file_authentication() {
    let key = ClientKey::generate(Some("key pass phrase"));
    let sshd = Sshd::start(SshdOptions::default().authorize(&key));
    let mut tree = RemoteTree::new();
    one_session(&mut tree);
    let mut client = Client::new();
    let pass_file = client.dir.path().join("passphrase");
    std::fs::write(&pass_file, "key pass phrase\n").unwrap();
    let mut site = Site::new("key", &sshd, &tree);
    site.auth = TestAuth::Key(key.private_path().to_path_buf(), Some(pass_file));
    client.add(site, &sshd);
    let mut tree2 = RemoteTree::new();
    one_session(&mut tree2);
    let pw_file = client.dir.path().join("password");
    std::fs::write(&pw_file, format!("{TEST_PASSWORD}\n")).unwrap();
    let mut site2 = Site::new("pwfile", &sshd, &tree2);
    site2.auth = TestAuth::PasswordFile(pw_file);
    client.add_untrusted(site2);
    let out = client.run();
    assert_exit(&out, 0);
    assert_landed(&client.data_dir(), "key", &tree.manifest());
    assert_landed(&client.data_dir(), "pwfile", &tree2.manifest());
}

/// systemd credentials: what a unit with `LoadCredentialEncrypted=` gives
/// the pass is a folder named by `$CREDENTIALS_DIRECTORY` holding one file
/// per credential. A password, and a private key with its passphrase, come
/// from there; the same config run without the variable fails both
/// intersections, naming the credential, and lands nothing.
#[test]
fn password_and_key_from_systemd_credentials() {
    let key = ClientKey::generate(Some("key pass phrase"));
    let sshd = Sshd::start(SshdOptions::default().authorize(&key));
    let (mut t1, mut t2) = (RemoteTree::new(), RemoteTree::new());
    one_session(&mut t1);
    one_session(&mut t2);
    let mut client = Client::new();
    let mut pw = Site::new("pw", &sshd, &t1);
    pw.auth = TestAuth::PasswordCredential("pw-password".into());
    client.add(pw, &sshd);
    let mut k = Site::new("key", &sshd, &t2);
    k.auth = TestAuth::KeyCredential("key-key".into(), Some("key-pass".into()));
    client.add_untrusted(k);
    client.write();

    let without = std::process::Command::new(bin())
        .arg("--config")
        .arg(client.config_path())
        .arg("run")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run");
    assert_exit(&without, 1);
    let err = stderr(&without);
    for name in ["pw-password", "key-key"] {
        assert!(
            err.contains(&format!("credential \"{name}\" is not available")),
            "{err}"
        );
    }
    assert_eq!(t1.remaining_files().len(), t1.manifest().len());

    let creds = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        creds.path().join("pw-password"),
        format!("{TEST_PASSWORD}\n"),
    )
    .unwrap();
    std::fs::copy(key.private_path(), creds.path().join("key-key")).unwrap();
    std::fs::write(creds.path().join("key-pass"), "key pass phrase\n").unwrap();
    let with = std::process::Command::new(bin())
        .arg("--config")
        .arg(client.config_path())
        .arg("run")
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run");
    assert_exit(&with, 0);
    assert_landed(&client.data_dir(), "pw", &t1.manifest());
    assert_landed(&client.data_dir(), "key", &t2.manifest());
    assert!(!stderr(&with).contains(TEST_PASSWORD), "{}", stderr(&with));
}

#[test]
fn unreadable_password_file_fails_only_its_intersection() {
    let sshd = Sshd::start_default();
    let (mut t1, mut t2) = (RemoteTree::new(), RemoteTree::new());
    one_session(&mut t1);
    one_session(&mut t2);
    let mut client = Client::new();
    let mut bad = Site::new("bad", &sshd, &t1);
    bad.auth = TestAuth::PasswordFile(client.dir.path().join("missing-password"));
    client.add(bad, &sshd);
    client.add_untrusted(Site::new("good", &sshd, &t2));
    let out = client.run();
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("missing-password"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t1.remaining_files().len(), t1.manifest().len());
    assert_landed(&client.data_dir(), "good", &t2.manifest());
    // check-config reports it as a config problem.
    let out = client.cmd(&["check-config"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("password_file"), "{}", stderr(&out));
}

/// A FIFO where a secret file should be would block `open` until someone
/// writes to it, out of reach of every timeout: the pass would hang.
#[test]
fn a_fifo_as_password_or_key_file_fails_its_intersection_at_once() {
    let sshd = Sshd::start_default();
    let (mut t1, mut t2, mut t3) = (RemoteTree::new(), RemoteTree::new(), RemoteTree::new());
    one_session(&mut t1);
    one_session(&mut t2);
    one_session(&mut t3);
    let mut client = Client::new();
    let fifo = client.dir.path().join("secret-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let mut pw = Site::new("pw-fifo", &sshd, &t1);
    pw.auth = TestAuth::PasswordFile(fifo.clone());
    client.add(pw, &sshd);
    let mut key = Site::new("key-fifo", &sshd, &t2);
    key.auth = TestAuth::Key(fifo.clone(), None);
    client.add_untrusted(key);
    client.add_untrusted(Site::new("good", &sshd, &t3));

    // Killed and failed after 30 s if it hangs.
    let f = run_with_env(&client, &[], Duration::from_secs(30));
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.matches("a FIFO").count(), 2, "{}", f.stderr);
    assert_eq!(t1.remaining_files().len(), t1.manifest().len());
    assert_eq!(t2.remaining_files().len(), t2.manifest().len());
    assert_landed(&client.data_dir(), "good", &t3.manifest());

    let out = client.cmd(&["check-config"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("password_file") && err.contains("private_key"),
        "{err}"
    );
    assert!(err.contains("a FIFO"), "{err}");
}

#[test]
fn unreachable_and_silent_hosts_fail_within_the_timeout_while_others_succeed() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 2, 1_000..=50_000);
    let hole = BlackHole::start();
    let refused = closed_port();
    let mut client = Client::new();
    client.set("connect_timeout = \"2s\"").set("retries = 1");
    client.add(Site::new("good", &sshd, &tree), &sshd);
    client.add_untrusted(Site::at("silent", hole.addr(), &tree.v2x_data_location()));
    client.add_untrusted(Site::at("refused", refused, &tree.v2x_data_location()));
    let t0 = Instant::now();
    let out = client.run();
    let took = t0.elapsed();
    assert_exit(&out, 1);
    // Two attempts of at most 2 s each plus 100 ms of backoff, with slack.
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(client.ix_state("silent")["outcome"], "failed");
    assert_eq!(client.ix_state("refused")["outcome"], "failed");
    assert_eq!(client.ix_state("good")["outcome"], "ok");
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    assert_landed(&client.data_dir(), "good", &tree.manifest());
    let status = client.cmd(&["status"]);
    assert_exit(&status, 1);
    assert!(stdout(&status).contains("failed"));
}

/// Issue 10, with the shipped `[transfer]` defaults (no keys at all): the
/// collector closes the day's session at midnight by renaming its folder
/// into `archive/`, its files last written a second before the timer's
/// pass. That session lands in that pass; only a zip a compressor is still
/// writing directly in `archive/` waits for `min_age`, and lands in the
/// pass after it has aged.
#[test]
fn a_session_closed_a_second_ago_lands_tonight_and_only_a_zip_being_written_waits() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    let session = tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 10), 2, 1_000..=4_000);
    for e in &session {
        tree.make_fresh(&e.rel);
    }
    tree.make_fresh(&session_name(DEFAULT_COPROC_NAME, stamp(6, 10)));
    let zip = tree.add_zip_session(DEFAULT_COPROC_NAME, stamp(6, 9), 20_000);
    tree.make_fresh(&zip.rel);
    std::thread::sleep(Duration::from_secs(1));
    let mut client = Client::new();
    // The shipped defaults; only the free-space floor (1 GiB) is lowered,
    // as a test machine's disk may hold less.
    client.transfer.clear();
    client.set("min_free_space = \"1MiB\"");
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let out = client.run();
    assert_exit(&out, 0);
    assert_landed(&client.data_dir(), "a", &session);
    assert_eq!(tree.remaining_files(), vec![zip.rel.clone()]);
    let skipped = client.ix_state("a")["skipped"].clone();
    assert_eq!(skipped.as_array().map(Vec::len), Some(1), "{skipped}");
    assert_eq!(skipped[0]["path"], zip.rel.as_str());
    let reason = skipped[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("directly in archive/ and modified")
            && reason.contains("younger than transfer.min_age (2m)"),
        "{reason}"
    );
    tree.assert_current_session_untouched();

    // Three minutes on (its mtime set back as the clock would move), the
    // compressor is done: the next pass takes it.
    tree.set_age(&zip.rel, Duration::from_secs(180));
    assert_exit(&client.run(), 0);
    assert!(tree.remaining_files().is_empty());
    assert_eq!(
        sha256_file(&client.data_dir().join("a").join(zip.file_name())),
        zip.sha256
    );
}

/// Issue 16: two folders in `archive/` hold a file of one name, size and
/// mtime with different bytes (a session sent again under another folder
/// name). Both land, once each, with their own bytes; both remote copies
/// go; the rest of the coprocessor lands in the same pass.
#[test]
fn two_files_of_one_name_size_and_mtime_in_two_folders_both_land() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    one_session(&mut tree);
    let name = format!("{DEFAULT_COPROC_NAME}_spatLog_06082021_000000.csv");
    let twins = tree.add_twins(
        &session_name(DEFAULT_COPROC_NAME, stamp(6, 8)),
        &name,
        700_000,
    );
    assert_eq!(twins[0].size, twins[1].size);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let out = client.run();
    assert_exit(&out, 0);
    assert_landed(&client.data_dir(), "a", &tree.manifest());
    let spat = client.data_dir().join("a/spat");
    let mut got = [
        sha256_file(&spat.join(&name)),
        sha256_file(&spat.join(conflict_variant(&name, 1))),
    ];
    got.sort();
    let mut want = [twins[0].sha256.clone(), twins[1].sha256.clone()];
    want.sort();
    assert_eq!(got, want);
    tree.assert_emptied("after the pass");
    // A second pass finds nothing to do and changes nothing.
    assert_exit(&client.run(), 0);
    assert_landed(&client.data_dir(), "a", &tree.manifest());
}

#[test]
fn not_enough_disk_space_stops_the_intersection_and_keeps_remote_data() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    one_session(&mut tree);
    let mut client = Client::new();
    client.set("min_free_space = \"1000TiB\"");
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let out = client.run();
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("not enough free disk space"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree.remaining_files().len(), tree.manifest().len());
}

#[test]
fn several_intersections_in_parallel_each_land_in_their_folder() {
    let sshd = Sshd::start_default();
    let mut trees: Vec<RemoteTree> = (0..5)
        .map(|i| RemoteTree::with_options(&format!("Coproc{i}"), i))
        .collect();
    let mut client = Client::new();
    client.set("parallel_intersections = 2");
    for (i, t) in trees.iter_mut().enumerate() {
        t.add_session(&format!("Coproc{i}"), stamp(6, 9), 1, 1_000..=8_000);
        client.add_untrusted(Site::new(&format!("ix-{i}"), &sshd, t));
    }
    client.known_hosts = sshd.known_hosts_lines();
    assert_exit(&client.run(), 0);
    for (i, t) in trees.iter().enumerate() {
        assert_landed(&client.data_dir(), &format!("ix-{i}"), &t.manifest());
        assert!(t.remaining_files().is_empty());
    }
}

/// A relay on loopback that holds every chunk for `delay` in each direction
/// (a WAN round trip of about twice that, as the bench's delay proxy) except
/// the first `prompt_bytes` from the server: a banner that arrives at once.
fn delay_relay(
    target: std::net::SocketAddr,
    delay: Duration,
    prompt_bytes: usize,
) -> std::net::SocketAddr {
    relay(target, move || {
        let up = move |chunk: &[u8]| {
            if !chunk.is_empty() {
                std::thread::sleep(delay);
            }
            RELAY_BUF
        };
        let mut prompt = prompt_bytes;
        let down = move |chunk: &[u8]| {
            if prompt > 0 {
                prompt = prompt.saturating_sub(chunk.len());
            } else if !chunk.is_empty() {
                std::thread::sleep(delay);
            }
            // The prompt is read on its own so it is not held back.
            if prompt > 0 { prompt } else { RELAY_BUF }
        };
        (up, down)
    })
}

fn compressed_sessions(sshd: &Sshd) -> (usize, usize) {
    (
        sshd.log_count("compression: zlib@openssh.com") / 2,
        sshd.log_count("compression: none") / 2,
    )
}

fn via_relay(
    client: &mut Client,
    sshd: &Sshd,
    tree: &RemoteTree,
    name: &str,
    relay: std::net::SocketAddr,
) {
    let mut site = Site::new(name, sshd, tree);
    site.compression = None;
    client.add_through(site, sshd, relay);
}

#[test]
fn compression_left_unset_follows_the_link_round_trip() {
    let sshd = Sshd::start(SshdOptions::default().log_level("DEBUG1"));
    let mut tree = RemoteTree::new();
    // The guess comes from the server's KEXINIT, timed from our banner
    // (one round trip); on a fast link a loaded machine can stretch it past
    // 10 ms, and then the `none` answer corrects it with one reconnection.
    // What must hold is that the session that transfers is compressed
    // exactly when the measured round trip is 10 ms or more.
    let mut seen = (0, 0);
    let mut pass = |client: &Client, name: &str| -> (bool, bool) {
        let out = client.run();
        assert_exit(&out, 0);
        let now = compressed_sessions(&sshd);
        let (zlib, plain) = (now.0 - seen.0, now.1 - seen.1);
        seen = now;
        let err = stderr(&out);
        let reconnected = err.contains("reconnecting");
        assert_eq!(zlib + plain, 1 + usize::from(reconnected), "{err}");
        let compressed = if reconnected {
            assert_eq!((zlib, plain), (1, 1), "{err}");
            err.contains("compression=true")
        } else {
            zlib == 1
        };
        let rtt = client.ix_state(name)["rtt_ms"].as_f64();
        if let Some(rtt) = rtt {
            assert_eq!(compressed, rtt >= 10.0, "rtt {rtt} ms: {err}");
        }
        (compressed, reconnected)
    };

    // Fast link (loopback).
    one_session(&mut tree);
    let mut client = Client::new();
    let mut fast = Site::new("fast", &sshd, &tree);
    fast.compression = None;
    client.add(fast, &sshd);
    pass(&client, "fast");

    // Slow link (about 30 ms round trip): compressed at once.
    one_session(&mut tree);
    let mut slow = Client::new();
    via_relay(
        &mut slow,
        &sshd,
        &tree,
        "slow",
        delay_relay(sshd.addr(), Duration::from_millis(15), 0),
    );
    assert_eq!(pass(&slow, "slow"), (true, false));
    assert!(tree.remaining_files().is_empty());

    // A banner that comes at once over a slow link: compressed at once all
    // the same (the round trip is timed after the banner).
    one_session(&mut tree);
    let mut tricky = Client::new();
    via_relay(
        &mut tricky,
        &sshd,
        &tree,
        "tricky",
        delay_relay(sshd.addr(), Duration::from_millis(15), 64),
    );
    assert_eq!(pass(&tricky, "tricky"), (true, false));
    assert!(tree.remaining_files().is_empty());

    // An explicit setting is obeyed whatever the link: one plain session.
    slow.sites[0].compression = Some(false);
    one_session(&mut tree);
    assert_eq!(pass(&slow, "slow"), (false, false));
}

/// A relay that passes everything at once except what the server sends in
/// its first `hold` after accepting, which waits until then: a server
/// slow to start (a loaded machine, a small coprocessor) on a fast link.
fn late_banner_relay(target: std::net::SocketAddr, hold: Duration) -> std::net::SocketAddr {
    relay(target, move || {
        let accepted = Instant::now();
        let down = move |chunk: &[u8]| {
            if !chunk.is_empty() {
                std::thread::sleep(hold.saturating_sub(accepted.elapsed()));
            }
            RELAY_BUF
        };
        (|_: &[u8]| RELAY_BUF, down)
    })
}

/// A relay in front of a server that sends its KEXINIT only after the
/// client's (OpenSSH does not wait; other servers may): after its banner
/// line, nothing more comes down until the client has sent more than its
/// own banner line. Banners are read a byte at a time to find their ends.
fn kexinit_waits_for_client_relay(target: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    relay(target, || {
        let spoke = Arc::new(AtomicBool::new(false));
        let heard = spoke.clone();
        let mut up_past_banner = false;
        let up = move |chunk: &[u8]| {
            if up_past_banner && !chunk.is_empty() {
                heard.store(true, Ordering::SeqCst);
            }
            up_past_banner |= chunk.contains(&b'\n');
            if up_past_banner { RELAY_BUF } else { 1 }
        };
        let mut down_past_banner = false;
        let down = move |chunk: &[u8]| {
            if down_past_banner && !chunk.is_empty() {
                while !spoke.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            down_past_banner |= chunk.contains(&b'\n');
            if down_past_banner { RELAY_BUF } else { 1 }
        };
        (up, down)
    })
}

/// The most a relay reads at once.
const RELAY_BUF: usize = 1 << 16;

/// A loopback relay to `target`. `make` gives each connection a tap per
/// direction (client to server, server to client), called with each chunk
/// read before it is passed on (first with none): it waits or counts as
/// the test wants, and returns how many bytes to read next.
fn relay<F, U, D>(target: std::net::SocketAddr, make: F) -> std::net::SocketAddr
where
    F: Fn() -> (U, D) + Send + 'static,
    U: FnMut(&[u8]) -> usize + Send + 'static,
    D: FnMut(&[u8]) -> usize + Send + 'static,
{
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    fn pipe(mut from: TcpStream, mut to: TcpStream, mut tap: impl FnMut(&[u8]) -> usize) {
        let mut buf = vec![0u8; RELAY_BUF];
        let mut want = tap(&[]);
        loop {
            let n = match from.read(&mut buf[..want.clamp(1, RELAY_BUF)]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            want = tap(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(target) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (up, down) = make();
            let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(c, s, up));
            std::thread::spawn(move || pipe(server, client, down));
        }
    });
    addr
}

/// An sshd logging its compression (see [`compressed_sessions`]), one
/// closed MMITSS session on it, and a client whose intersection `name`
/// reaches it through the relay `relay` makes, compression left to the link.
fn one_session_through(
    name: &str,
    relay: impl FnOnce(std::net::SocketAddr) -> std::net::SocketAddr,
) -> (Sshd, RemoteTree, Client) {
    let sshd = Sshd::start(SshdOptions::default().log_level("DEBUG1"));
    let mut tree = RemoteTree::new();
    one_session(&mut tree);
    let mut client = Client::new();
    let through = relay(sshd.addr());
    via_relay(&mut client, &sshd, &tree, name, through);
    (sshd, tree, client)
}

/// The compression decision is timed from the server's answer to our
/// banner, not from the banner: a server slow to start on a fast link (the
/// benchmark's eight sshds starting at once showed 20-33 ms banners) gets
/// one uncompressed session, no second handshake.
#[test]
fn a_late_banner_on_a_fast_link_costs_no_second_handshake() {
    let (sshd, tree, client) = one_session_through("late", |server| {
        late_banner_relay(server, Duration::from_millis(60))
    });
    let out = client.run();
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert_eq!(compressed_sessions(&sshd), (0, 1), "{err}");
    assert!(!err.contains("reconnecting"), "{err}");
    let rtt = client.ix_state("late")["rtt_ms"].as_f64().unwrap();
    assert!(rtt < 10.0, "rtt {rtt} ms: {err}");
    assert!(tree.remaining_files().is_empty());
}

/// A server that waits for the client's KEXINIT before sending its own
/// gets ours after a second instead of the session hanging until
/// `connect_timeout`; its link is then judged as before, from the banner
/// and checked by the `none` answer.
#[test]
fn a_server_that_waits_for_our_kexinit_still_gets_it() {
    let (sshd, tree, client) = one_session_through("waits", kexinit_waits_for_client_relay);
    let started = Instant::now();
    let out = client.run();
    let took = started.elapsed();
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(tree.remaining_files().is_empty(), "{err}");
    // One second of patience, far from connect_timeout (5 s here).
    assert!(took >= Duration::from_secs(1), "{took:?}: {err}");
    assert!(took < Duration::from_secs(4), "{took:?}: {err}");
    let (zlib, plain) = compressed_sessions(&sshd);
    assert_eq!(plain, 1, "the session that transferred is plain: {err}");
    assert!(zlib <= 1, "{err}");
}

/// Every cipher family a coprocessor's OpenSSH may offer decrypts to the
/// same bytes. The stream and block ciphers (CTR, CBC) run through the
/// bulk-decryption patch in `vendor/libssh2-sys` (PATCHES.md); the AEAD ones
/// through libssh2's own per-block path. With an encrypt-then-MAC the MAC
/// covers the ciphertext, so only the landed checksum would catch a wrong
/// decryption: the sizes straddle the cipher block, the SSH packet and our
/// read size.
#[test]
fn every_cipher_and_mac_family_lands_byte_identical_files() {
    let sizes: [usize; 10] = [
        0,
        1,
        15,
        16,
        17,
        32_767,
        32_768,
        255 * 1024 + 1,
        1024 * 1024 + 7,
        3 * 1024 * 1024 + 13,
    ];
    let suites = [
        ("aes128-ctr", "hmac-sha2-256", false),
        ("aes256-ctr", "hmac-sha2-512-etm@openssh.com", false),
        ("aes192-ctr", "hmac-sha2-256-etm@openssh.com", true),
        ("aes128-cbc", "hmac-sha2-512", false),
        ("aes256-cbc", "hmac-sha2-256-etm@openssh.com", false),
        ("aes256-gcm@openssh.com", "hmac-sha2-256", false),
        ("aes128-gcm@openssh.com", "hmac-sha2-512", true),
        ("chacha20-poly1305@openssh.com", "hmac-sha2-256", false),
    ];
    for (i, (cipher, mac, compression)) in suites.into_iter().enumerate() {
        if i == 0 {
            // Without the override, a CBC-only server shares no cipher with
            // us, and the error says where to look.
            let sshd = Sshd::start(SshdOptions {
                ciphers: Some("aes256-cbc".into()),
                ..SshdOptions::default()
            });
            let mut tree = RemoteTree::with_options(DEFAULT_COPROC_NAME, 99);
            tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 10..=20);
            let mut client = Client::new();
            client.set("retries = 0");
            client.add(Site::new("a", &sshd, &tree), &sshd);
            let out = client.run();
            assert_exit(&out, 1);
            assert!(
                stderr(&out).contains("transfer.ciphers"),
                "{}",
                stderr(&out)
            );
        }
        let mut opts = SshdOptions::default().log_level("DEBUG1");
        opts.ciphers = Some(cipher.into());
        opts.macs = Some(mac.into());
        let sshd = Sshd::start(opts);
        let mut tree = RemoteTree::with_options(DEFAULT_COPROC_NAME, i as u64);
        let sess = session_name(DEFAULT_COPROC_NAME, stamp(6, 9));
        for (k, size) in sizes.iter().enumerate() {
            let name = element_file_name(
                DEFAULT_COPROC_NAME,
                "spat",
                stamp(6, 9).plus_secs(600 * k as i64),
            );
            tree.add_random_file(&format!("{sess}/{name}"), *size);
        }
        let mut site = Site::new("a", &sshd, &tree);
        site.compression = Some(compression);
        let mut client = Client::new();
        // CBC is left out of the offer by default: an operator allows it.
        if cipher.contains("-cbc") {
            client.set(&format!("ciphers = [\"aes128-ctr\", \"{cipher}\"]"));
        }
        client.add(site, &sshd);
        let out = client.run();
        assert_exit(&out, 0);
        assert_landed(&client.data_dir(), "a", &tree.manifest());
        assert!(tree.remaining_files().is_empty(), "{cipher}");
        // The suite under test is the one that was negotiated.
        let wanted = format!("server->client cipher: {cipher}");
        assert!(
            sshd.log_count(&wanted) > 0,
            "{cipher} {mac} not negotiated:\n{}",
            sshd.log()
        );
    }
}
