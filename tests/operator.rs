//! The operator's day against real OpenSSH servers on loopback: `trust`,
//! `run --dry-run`, `check-config --connect`, `status` with staleness, the
//! metrics textfile, `--only`, the progress bar under a pseudo-terminal
//! (`script`), and shell completions.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// Writes the client's files, with extra top-level keys (before any table)
/// and extra tables (at the end).
fn write_with(client: &Client, top: &str, tables: &str) {
    client.write();
    let text = format!("{top}\n{}\n{tables}\n", client.config_text());
    std::fs::write(client.config_path(), text).unwrap();
}

/// Runs the binary against the files as they are now (no rewrite, unlike
/// `Client::cmd`, which rewrites known_hosts).
fn bin_cmd(client: &Client, args: &[&str]) -> Output {
    run_bin(&client.config_path(), args)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Runs `args` under a pseudo-terminal (util-linux `script`), feeding
/// `input` to it; returns what the terminal showed and the exit status.
fn in_pty(client: &Client, args: &[&str], input: &str) -> (String, Option<i32>) {
    // `script`'s terminal has no size unless told.
    let mut cmdline = format!(
        "stty cols 150 rows 50; exec '{}' --config '{}'",
        bin(),
        client.config_path().display()
    );
    for a in args {
        cmdline.push_str(&format!(" '{a}'"));
    }
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmdline, "/dev/null"])
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        if !input.is_empty() {
            // Typed once the question is on the screen, as a person would.
            std::thread::sleep(std::time::Duration::from_millis(1500));
            stdin.write_all(input.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

// ---------------------------------------------------------------------------
// trust
// ---------------------------------------------------------------------------

#[test]
fn trust_yes_adds_the_key_then_says_already_trusted_and_the_pass_works() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 1_000..=2_000);
    let mut client = Client::new();
    client.add_untrusted(Site::new("a", &sshd, &tree));
    client.write();
    std::fs::set_permissions(
        client.known_hosts_path(),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();

    let out = bin_cmd(&client, &["trust", "a", "--yes"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let fp = sshd.host_key_fingerprint(KeyType::Ed25519);
    assert!(text.contains(&fp), "{text}");
    assert!(
        text.contains(&format!("a ({})", sshd.known_hosts_host())),
        "{text}"
    );
    let kh = read(&client.known_hosts_path());
    let line = sshd.known_hosts_lines();
    assert!(kh.contains(&line), "{kh}\nwanted {line}");
    assert_eq!(
        std::fs::metadata(client.known_hosts_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640,
        "mode kept"
    );
    // Handshake only: no authentication was ever attempted.
    assert_eq!(sshd.log_count("password for"), 0, "{}", sshd.log());
    assert_eq!(sshd.log_count("Accepted"), 0, "{}", sshd.log());

    let again = bin_cmd(&client, &["trust", "a", "--yes"]);
    assert_exit(&again, 0);
    assert!(
        stdout(&again).contains("already trusted"),
        "{}",
        stdout(&again)
    );
    assert_eq!(read(&client.known_hosts_path()), kh, "nothing changed");

    assert_exit(&bin_cmd(&client, &["run"]), 0);
    assert_landed(&client.data_dir(), "a", &tree.manifest());
}

#[test]
fn trust_refuses_a_changed_key_even_with_yes_and_its_advice_works() {
    let mut sshd = Sshd::start_default();
    let tree = RemoteTree::new();
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    client.write();
    sshd.restart_with_new_host_keys();
    let before = read(&client.known_hosts_path());

    let out = bin_cmd(&client, &["trust", "a", "--yes"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("HAS CHANGED"), "{text}");
    assert!(
        text.contains(&sshd.host_key_fingerprint(KeyType::Ed25519)),
        "{text}"
    );
    let advice = format!(
        "ssh-keygen -R '{}' -f '{}'",
        sshd.known_hosts_host(),
        client.known_hosts_path().display()
    );
    assert!(text.contains(&advice), "{text}");
    assert_eq!(read(&client.known_hosts_path()), before, "file untouched");

    // What the message says to do, done: the new key can then be trusted.
    let status = Command::new("sh")
        .arg("-c")
        .arg(&advice)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let out = bin_cmd(&client, &["trust", "a", "--yes"]);
    assert_exit(&out, 0);
    assert!(read(&client.known_hosts_path()).contains(&sshd.known_hosts_lines()));
}

#[test]
fn trust_without_a_terminal_or_yes_shows_the_key_and_changes_nothing() {
    let sshd = Sshd::start_default();
    let tree = RemoteTree::new();
    let mut client = Client::new();
    client.add_untrusted(Site::new("a", &sshd, &tree));
    client.write();
    let out = bin_cmd(&client, &["trust", "a"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains(&sshd.host_key_fingerprint(KeyType::Ed25519)),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("--yes"), "{}", stdout(&out));
    assert_eq!(read(&client.known_hosts_path()), "");
}

#[test]
fn trust_asks_on_a_terminal_and_only_yes_adds() {
    let sshd = Sshd::start_default();
    let tree = RemoteTree::new();
    let mut client = Client::new();
    client.add_untrusted(Site::new("a", &sshd, &tree));
    client.write();

    let (screen, code) = in_pty(&client, &["trust", "a"], "n\n");
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("Trust this key for a"), "{screen}");
    assert!(screen.contains("[y/N]"), "{screen}");
    assert_eq!(read(&client.known_hosts_path()), "");

    let (screen, code) = in_pty(&client, &["trust", "a"], "y\n");
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("added to"), "{screen}");
    assert!(read(&client.known_hosts_path()).contains(&sshd.known_hosts_lines()));
}

#[test]
fn trust_all_adds_what_it_reaches_and_fails_for_the_rest() {
    let s1 = Sshd::start_default();
    let s2 = Sshd::start(SshdOptions::default().host_keys(&[KeyType::Ecdsa]));
    let tree = RemoteTree::new();
    let mut client = Client::new();
    client.add_untrusted(Site::new("a", &s1, &tree));
    client.add_untrusted(Site::new("b", &s2, &tree));
    client.add_untrusted(Site::at("down", closed_port(), &tree.v2x_data_location()));
    client.write();
    let out = bin_cmd(&client, &["trust", "--all", "--yes"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("down: cannot fetch the host key"), "{text}");
    let kh = read(&client.known_hosts_path());
    assert!(kh.contains(&s1.known_hosts_lines()), "{kh}");
    assert!(kh.contains(&s2.known_hosts_lines()), "{kh}");
    assert!(kh.contains("ecdsa-sha2-nistp256"), "{kh}");

    let out = bin_cmd(&client, &["trust", "nosuch"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// run --dry-run
// ---------------------------------------------------------------------------

#[test]
fn dry_run_lists_what_would_land_and_touches_nothing_on_either_side() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 1_000..=4_000);
    tree.add_zip_session(DEFAULT_COPROC_NAME, stamp(6, 10), 5_000);
    // A compressor still writing a zip directly in archive/ (issue 10: the
    // only kind of file `min_age` holds back), and a session closed a
    // moment ago, taken at once.
    let young = tree.add_zip_session("Y", stamp(6, 11), 3_000);
    tree.make_fresh(&young.rel);
    let closed_now = tree.add_file(
        &format!(
            "{}/X_spatLog_06122021_000000.csv",
            session_name("Z", stamp(6, 12))
        ),
        b"closed a moment ago\n",
    );
    tree.make_fresh(&closed_now.rel);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    let metrics = client.dir.path().join("v2x.prom");
    write_with(
        &client,
        &format!("metrics_textfile = {:?}", metrics.display().to_string()),
        "",
    );
    let before = tree.remaining_files();

    let out = bin_cmd(&client, &["run", "--dry-run"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let local_root = client.data_dir().join("a");
    for m in tree.manifest() {
        if m.rel == young.rel {
            continue;
        }
        let line = format!(
            "pull   {} -> {}",
            tree.archive_dir().join(&m.rel).display(),
            local_root.join(m.landing_rel()).display()
        );
        assert!(text.contains(&line), "{line:?} not in:\n{text}");
    }
    assert!(
        text.contains(&format!(
            "leave  {}: directly in archive/ and modified",
            young.rel
        )),
        "{text}"
    );
    let session = tree
        .archive_dir()
        .join(session_name(DEFAULT_COPROC_NAME, stamp(6, 9)));
    assert!(
        text.contains(&format!("rmdir  {} (once emptied)", session.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "rmdir  {} (once emptied)",
            tree.archive_dir()
                .join(session_name("Z", stamp(6, 12)))
                .display()
        )),
        "{text}"
    );
    assert!(text.contains("would pull"), "{text}");
    assert!(
        text.contains("to pull") && text.contains(": fits"),
        "{text}"
    );

    assert_eq!(tree.remaining_files(), before, "nothing removed remotely");
    assert!(!client.data_dir().exists(), "no local folder created");
    assert!(!client.state_dir().join("last-run.json").exists());
    assert!(!metrics.exists(), "no metrics from a dry run");

    // The real pass then does what the dry run said.
    assert_exit(&bin_cmd(&client, &["run"]), 0);
    let landed: Vec<String> = walk_files(&local_root)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(landed.len(), tree.manifest().len() - 1);
    for rel in landed {
        assert!(
            text.contains(&local_root.join(&rel).display().to_string()),
            "{rel} landed but was not announced"
        );
    }
}

#[test]
fn dry_run_of_an_unreachable_intersection_fails() {
    let tree = RemoteTree::new();
    let mut client = Client::new();
    client.set("retries = 0");
    client.add_untrusted(Site::at("down", closed_port(), &tree.v2x_data_location()));
    client.write();
    let out = bin_cmd(&client, &["run", "--dry-run"]);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("down ("), "{}", stdout(&out));
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
    assert!(!client.state_dir().join("last-run.json").exists());
}

// ---------------------------------------------------------------------------
// check-config --connect
// ---------------------------------------------------------------------------

#[test]
fn check_config_connect_says_per_intersection_what_to_fix() {
    let sshd = Sshd::start_default();
    let other = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 1_000..=2_000);
    tree.add_zip_session(DEFAULT_COPROC_NAME, stamp(6, 10), 1_000);
    let mut client = Client::new();
    client.add(Site::new("good", &sshd, &tree), &sshd);
    client.add_untrusted(Site::at("down", closed_port(), &tree.v2x_data_location()));
    client.add_untrusted(Site::new("untrusted", &other, &tree));
    let mut bad_pw = Site::new("badpw", &sshd, &tree);
    bad_pw.auth = TestAuth::Password("wrong".into());
    client.add_untrusted(bad_pw);
    let mut no_archive = Site::new("noarchive", &sshd, &tree);
    no_archive.location = "/nonexistent/v2x_data".into();
    client.add_untrusted(no_archive);
    client.write();
    let remote_before = tree.remaining_files();

    let out = bin_cmd(&client, &["check-config", "--connect"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    let line = |name: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
            .to_string()
    };
    let good = line("good");
    assert!(good.contains(" ok "), "{good}");
    assert!(good.contains("1 folder(s) and 1 file(s)"), "{good}");
    // The suite a stock sshd negotiates with the measured default order.
    assert!(
        good.contains("aes128-gcm@openssh.com, kex curve25519-sha256"),
        "{good}"
    );
    let down = line("down");
    assert!(down.contains("FAILED  reachability"), "{down}");
    let untrusted = line("untrusted");
    assert!(untrusted.contains("FAILED  host key"), "{untrusted}");
    assert!(
        untrusted.contains("v2x-data-sftp-client trust untrusted"),
        "{untrusted}"
    );
    let badpw = line("badpw");
    assert!(badpw.contains("FAILED  authentication"), "{badpw}");
    let noarchive = line("noarchive");
    assert!(noarchive.contains("FAILED  archive folder"), "{noarchive}");
    assert!(noarchive.contains("v2x_data_location"), "{noarchive}");
    assert_eq!(
        tree.remaining_files(),
        remote_before,
        "nothing read or removed"
    );
    assert!(!client.data_dir().exists());
    // The untrusted host never saw a password.
    assert_eq!(other.log_count("password for"), 0, "{}", other.log());

    let out = bin_cmd(&client, &["check-config", "--connect", "--only", "good"]);
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("down"), "{}", stdout(&out));
    let out = bin_cmd(&client, &["check-config", "--connect", "--only", "nosuch"]);
    assert_exit(&out, 2);
}

// ---------------------------------------------------------------------------
// status, metrics, --only
// ---------------------------------------------------------------------------

#[test]
fn status_flags_failed_and_stale_intersections_and_only_keeps_the_others() {
    let sshd = Sshd::start_default();
    let mut tree_a = RemoteTree::new();
    tree_a.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 1_000..=2_000);
    let mut tree_b = RemoteTree::with_options("B-coproc", 7);
    tree_b.add_session("B-coproc", stamp(6, 9), 1, 1_000..=2_000);
    let mut client = Client::new();
    client.set("retries = 0");
    client.add(Site::new("a", &sshd, &tree_a), &sshd);
    client.add(Site::new("b", &sshd, &tree_b), &sshd);
    client.add_untrusted(Site::at("down", closed_port(), &tree_a.v2x_data_location()));
    let metrics = client.dir.path().join("v2x.prom");
    let top = format!("metrics_textfile = {:?}", metrics.display().to_string());
    write_with(&client, &top, "[status]\nstale_after = \"1h\"");

    // Before any pass: every intersection never ran.
    let out = bin_cmd(&client, &["status"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("no pass has run yet"),
        "{}",
        stdout(&out)
    );

    let out = bin_cmd(&client, &["run"]);
    assert_exit(&out, 1);
    let out = bin_cmd(&client, &["status"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    let row = |name: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}:\n{text}"))
            .to_string()
    };
    assert!(row("a").contains(" ok "), "{text}");
    assert!(!row("a").contains("STALE"), "{text}");
    assert!(row("down").contains("failed"), "{text}");
    assert!(
        row("down").contains("never") && row("down").ends_with("STALE (no success for over 1h)"),
        "{text}"
    );

    let json = bin_cmd(&client, &["status", "--json"]);
    assert_exit(&json, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["stale_after_seconds"], 3600);
    let ix = |name: &str| {
        v["intersections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(ix("a")["stale"], false);
    assert_eq!(ix("down")["stale"], true);
    assert!(ix("a")["seconds_since_success"].as_u64().unwrap() < 60);

    let prom = read(&metrics);
    assert!(
        prom.contains("v2x_data_sftp_client_last_pass_success{intersection=\"down\"} 0"),
        "{prom}"
    );
    assert!(
        prom.contains(
            "v2x_data_sftp_client_last_success_timestamp_seconds{intersection=\"down\"} 0"
        ),
        "{prom}"
    );
    assert!(
        prom.contains(&format!(
            "v2x_data_sftp_client_last_pass_bytes{{intersection=\"a\"}} {}",
            tree_a.total_bytes()
        )),
        "{prom}"
    );
    assert!(
        prom.contains("# TYPE v2x_data_sftp_client_last_pass_files gauge"),
        "{prom}"
    );
    let a_success = ix("a")["last_success"].as_u64().unwrap();

    // `run --only b` keeps a and down in the state file and the metrics.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    tree_b.add_session("B-coproc", stamp(6, 10), 1, 1_000..=2_000);
    let out = bin_cmd(&client, &["run", "--only", "b"]);
    assert_exit(&out, 0);
    let state = client.state();
    let names: Vec<&str> = state["intersections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "down"]);
    assert_eq!(client.ix_state("a")["last_success"], a_success);
    assert_eq!(client.ix_state("b")["files"], 5);
    assert!(read(&metrics).contains("intersection=\"down\""));

    // With a tiny stale_after every intersection is stale.
    write_with(&client, &top, "[status]\nstale_after = \"1s\"");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let text = stdout(&bin_cmd(&client, &["status"]));
    assert_eq!(text.matches("STALE").count(), 3, "{text}");
}

#[test]
fn new_config_keys_are_validated_with_key_and_line() {
    let mut client = Client::new();
    let tree = RemoteTree::new();
    client.add_untrusted(Site::at("a", closed_port(), &tree.v2x_data_location()));
    for (top, tables, needle) in [
        ("", "[status]\nstale_after = \"soon\"", "status.stale_after"),
        ("", "[status]\nstale_after = \"0s\"", "status.stale_after"),
        ("", "[status]\nstale = \"1h\"", "status.stale"),
        ("metrics_textfile = \"v2x.prom\"", "", "metrics_textfile"),
        ("metrics_textfile = \"/tmp/v2x.txt\"", "", ".prom"),
    ] {
        write_with(&client, top, tables);
        let out = bin_cmd(&client, &["check-config"]);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(err.contains("config.toml:"), "{err}");
    }
    write_with(
        &client,
        "metrics_textfile = \"/tmp/v2x.prom\"",
        "[status]\nstale_after = \"2d\"",
    );
    assert_exit(&bin_cmd(&client, &["check-config"]), 0);
}

// ---------------------------------------------------------------------------
// The progress bar
// ---------------------------------------------------------------------------

#[test]
fn progress_bar_on_a_terminal_only() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_log("X", "remoteBsm", stamp(6, 9), 24 << 20);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    client.write();
    let (screen, code) = in_pty(&client, &["run"], "");
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("to go"), "{screen}");
    assert!(screen.contains("/s"), "{screen}");
    assert!(screen.contains("24.00 MiB/24.00 MiB"), "{screen}");
    assert!(screen.contains("1/1 intersection(s) done"), "{screen}");

    // Not a terminal (a pipe, as under cron or in a log file): no bar.
    tree.add_log("X", "remoteBsm", stamp(6, 10), 4 << 20);
    let out = bin_cmd(&client, &["run"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(!err.contains("to go"), "{err}");
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
}

// ---------------------------------------------------------------------------
// Shell completions
// ---------------------------------------------------------------------------

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let text = stdout(&out);
        for word in ["trust", "check-config", "dry-run", "only", "status"] {
            assert!(text.contains(word), "{shell}: no {word}");
        }
    }
    let bash = stdout(
        &Command::new(bin())
            .args(["completions", "bash"])
            .output()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v2x.bash");
    std::fs::write(&p, bash).unwrap();
    let ok = Command::new("bash").arg("-n").arg(&p).status().unwrap();
    assert!(ok.success(), "bash completion script does not parse");
    // Hidden from help: the package installs the scripts.
    let help = stdout(&Command::new(bin()).arg("--help").output().unwrap());
    assert!(!help.contains("completions"), "{help}");
    assert!(help.contains("trust"), "{help}");
}

// ---------------------------------------------------------------------------
// docs/operator-examples.md: real output, printed by
// `cargo test --test operator -- --ignored --nocapture operator_day`.
// ---------------------------------------------------------------------------

/// Terminal output with escape sequences removed and each redrawn line
/// reduced to what was last drawn on it.
fn screen_text(raw: &str) -> String {
    let mut clean = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        clean.push(c);
    }
    clean
        .split('\n')
        .filter_map(|l| l.rsplit('\r').find(|s| !s.trim().is_empty()))
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "prints docs/operator-examples.md's output"]
fn operator_day() {
    let show = |title: &str, out: &Output| {
        println!("\n$ {title}");
        print!("{}", stdout(out));
        let err = stderr(out);
        if !err.is_empty() {
            print!("{err}");
        }
        println!("[exit status {}]", out.status.code().unwrap_or(-1));
    };
    let mut servers = Vec::new();
    let mut trees = Vec::new();
    let mut client = Client::new();
    for (i, coproc) in ["MainSt-SpatzAve", "Broadway-5th"].iter().enumerate() {
        let sshd = Sshd::start(SshdOptions::default().address(&format!("127.0.0.{}", 11 + i)));
        let mut tree = RemoteTree::with_options(coproc, i as u64);
        tree.add_session(
            coproc,
            Stamp::new(2026, 11, 24, 0, 0, 0),
            1,
            20_000..=60_000,
        );
        tree.add_zip_session(coproc, Stamp::new(2026, 11, 25, 0, 0, 0), 9_000_000);
        client.add_untrusted(Site::new(&format!("intersection-{}", i + 1), &sshd, &tree));
        servers.push(sshd);
        trees.push(tree);
    }
    client.set("retries = 0");
    client.add_untrusted(Site::at(
        "intersection-3",
        "127.0.0.13:22".parse().unwrap(),
        &trees[0].v2x_data_location(),
    ));
    let metrics = client.dir.path().join("v2x_data_sftp_client.prom");
    let top = format!("metrics_textfile = {:?}", metrics.display().to_string());
    write_with(&client, &top, "[status]\nstale_after = \"36h\"");
    let cfg = client.config_path();
    println!("config: {}\n{}", cfg.display(), read(&cfg));
    let c = |args: &[&str]| bin_cmd(&client, args);

    show(
        "v2x-data-sftp-client check-config --connect",
        &c(&["check-config", "--connect"]),
    );
    let (screen, code) = in_pty(&client, &["trust", "intersection-1"], "y\n");
    println!("\n$ v2x-data-sftp-client trust intersection-1   (on a terminal, answered y)");
    println!(
        "{}\n[exit status {}]",
        screen_text(&screen),
        code.unwrap_or(-1)
    );
    show(
        "v2x-data-sftp-client trust --all --yes",
        &c(&["trust", "--all", "--yes"]),
    );
    show(
        "v2x-data-sftp-client check-config --connect --only intersection-1 --only intersection-2",
        &c(&[
            "check-config",
            "--connect",
            "--only",
            "intersection-1",
            "--only",
            "intersection-2",
        ]),
    );
    show(
        "v2x-data-sftp-client run --dry-run --only intersection-1",
        &c(&["run", "--dry-run", "--only", "intersection-1"]),
    );
    let (screen, code) = in_pty(&client, &["run"], "");
    let frames: Vec<&str> = screen
        .split(['\r', '\n'])
        .filter(|f| f.contains("to go") && !f.contains(" 0 B to go"))
        .collect();
    if let Some(frame) = frames.get(frames.len() / 2) {
        println!(
            "\n(a frame of the bar during the pass below)\n{}",
            screen_text(frame)
        );
    }
    println!("\n$ v2x-data-sftp-client run   (on a terminal)");
    println!(
        "{}\n[exit status {}]",
        screen_text(&screen),
        code.unwrap_or(-1)
    );
    show("v2x-data-sftp-client status", &c(&["status"]));
    show(
        "v2x-data-sftp-client status --json",
        &c(&["status", "--json"]),
    );
    println!("\n$ cat {}", metrics.display());
    print!("{}", read(&metrics));
    servers[1].restart_with_new_host_keys();
    show(
        "v2x-data-sftp-client trust intersection-2 --yes   (after the coprocessor got new host keys)",
        &c(&["trust", "intersection-2", "--yes"]),
    );
}

#[test]
fn a_key_of_another_type_than_the_trusted_one_counts_as_changed() {
    // known_hosts has an RSA key for the host; the coprocessor now only has
    // an Ed25519 key (reinstalled): refused as changed, not "handshake failed".
    let sshd = Sshd::start_default();
    let rsa = Sshd::start(SshdOptions::default().host_keys(&[KeyType::Rsa]));
    let tree = RemoteTree::new();
    let mut client = Client::new();
    client.add_untrusted(Site::new("a", &sshd, &tree));
    client.known_hosts = rsa.known_hosts_lines_for(&sshd.known_hosts_host());
    client.write();
    let before = read(&client.known_hosts_path());
    let out = bin_cmd(&client, &["trust", "a", "--yes"]);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("HAS CHANGED"), "{}", stdout(&out));
    assert!(stdout(&out).contains("lists ssh-rsa"), "{}", stdout(&out));
    assert_eq!(read(&client.known_hosts_path()), before);
    let out = bin_cmd(&client, &["check-config", "--connect"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("FAILED  host key: CHANGED"),
        "{}",
        stdout(&out)
    );
    assert_eq!(sshd.log_count("password for"), 0, "{}", sshd.log());
}

#[test]
fn dry_run_leaves_exactly_what_the_pass_then_skips() {
    // The dry run is a walk of its own: pin that it applies the pass's rules
    // (odd names, symlinks, FIFOs, min_age) to the same entries.
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    let session = session_name(DEFAULT_COPROC_NAME, stamp(6, 9));
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 1_000..=2_000);
    tree.add_hostile_entries(&session);
    let young = tree.add_file(
        &format!(
            "{}/X_spatLog_06112021_000000.csv",
            session_name("Y", stamp(6, 11))
        ),
        b"young\n",
    );
    tree.make_fresh(&young.rel);
    let mut client = Client::new();
    client.add(Site::new("a", &sshd, &tree), &sshd);
    client.write();

    let out = bin_cmd(&client, &["run", "--dry-run"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let mut announced: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  leave  "))
        .map(|l| l.split(": ").next().unwrap_or("").to_string())
        .collect();
    announced.sort();
    let pulled = text.lines().filter(|l| l.starts_with("  pull ")).count();

    assert_exit(&bin_cmd(&client, &["run"]), 0);
    let state = client.ix_state("a");
    let mut skipped: Vec<String> = state["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect();
    skipped.sort();
    assert!(!skipped.is_empty());
    assert_eq!(announced, skipped, "dry run:\n{text}");
    assert_eq!(state["files"], pulled as u64, "dry run:\n{text}");
}
