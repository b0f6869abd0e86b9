//! The command line as an operator meets it: config errors (exit 2, naming
//! file, key and line, never a panic), the legacy JSON file, `status`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[track_caller]
fn assert_config_error(config: &std::path::Path, needles: &[&str]) {
    let out = run_bin(config, &["check-config"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in:\n{err}");
    }
    // `run` refuses the same config before touching anything.
    let out = run_bin(config, &["run"]);
    assert_exit(&out, 2);
}

fn valid(kh: &Path, extra_top: &str, extra_transfer: &str, extra_ix: &str) -> String {
    format!(
        "data_directory = \"/tmp/v2x-cli-test-data\"\nknown_hosts = {kh:?}\n{extra_top}\n[transfer]\n{extra_transfer}\n\n\
         [[intersections]]\nname = \"a\"\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword = \"pw\"\n\
         v2x_data_location = \"/x\"\n{extra_ix}\n"
    )
}

#[test]
fn unknown_keys_are_errors_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let kh = empty_known_hosts(dir.path());
    let c = write_file(
        dir.path(),
        "typo-top.toml",
        valid(&kh, "data_dir = \"/x\"", "", ""),
    );
    assert_config_error(&c, &["typo-top.toml:3: data_dir"]);
    let c = write_file(
        dir.path(),
        "typo-transfer.toml",
        valid(&kh, "", "retry = 3", ""),
    );
    assert_config_error(&c, &["typo-transfer.toml:5: transfer.retry"]);
    let c = write_file(
        dir.path(),
        "typo-ix.toml",
        valid(&kh, "", "", "pasword = \"x\""),
    );
    assert_config_error(&c, &["typo-ix.toml:13: intersections[0].pasword"]);
}

#[test]
fn contract_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kh = empty_known_hosts(dir.path());
    let rel = valid(&kh, "", "", "").replace("\"/tmp/v2x-cli-test-data\"", "\"data\"");
    assert_config_error(
        &write_file(dir.path(), "rel.toml", &rel),
        &["data_directory", "absolute", ":1"],
    );
    let empty = format!("data_directory = \"/d\"\nknown_hosts = {kh:?}\nintersections = []\n");
    assert_config_error(
        &write_file(dir.path(), "empty.toml", &empty),
        &["intersections"],
    );
    let missing_kh = valid(Path::new("/nonexistent/known_hosts"), "", "", "");
    assert_config_error(
        &write_file(dir.path(), "kh.toml", &missing_kh),
        &["known_hosts", "ssh-keyscan"],
    );
    let two_auth = valid(&kh, "", "", "password_file = \"/etc/pw\"");
    assert_config_error(
        &write_file(dir.path(), "auth.toml", &two_auth),
        &["intersections[0]", "password"],
    );
    let bad_name = valid(&kh, "", "", "").replace("name = \"a\"", "name = \"../up\"");
    assert_config_error(
        &write_file(dir.path(), "name.toml", &bad_name),
        &["intersections[0].name"],
    );
    let bad_duration = valid(&kh, "", "io_timeout = \"soon\"", "");
    assert_config_error(
        &write_file(dir.path(), "dur.toml", &bad_duration),
        &["transfer.io_timeout"],
    );
}

#[test]
fn several_problems_are_reported_at_once_and_secrets_never() {
    let dir = tempfile::tempdir().unwrap();
    let kh = empty_known_hosts(dir.path());
    let text = valid(&kh, "", "parallel_intersections = 0", "port = 0")
        .replace("password = \"pw\"", "password = \"Sup3r-Secret\"")
        .replace("\"/tmp/v2x-cli-test-data\"", "\"rel\"");
    let c = write_file(dir.path(), "many.toml", &text);
    let out = run_bin(&c, &["check-config"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    for n in ["data_directory", "parallel_intersections", "port"] {
        assert!(err.contains(n), "{n} not in {err}");
    }
    assert!(!err.contains("Sup3r-Secret"), "{err}");
}

#[test]
fn garbage_configs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: [&[u8]; 8] = [
        b"",
        b"{",
        b"\xff\xfe\x00garbage",
        b"[[intersections]]\n",
        b"{\"intersections\": 5}",
        b"data_directory = 5",
        b"[transfer\n",
        b"{\"local_data_directory\": \"./d\", \"intersections\": [{}]}",
    ];
    for (i, input) in inputs.iter().enumerate() {
        let p = write_file(dir.path(), &format!("g{i}"), input);
        let out = run_bin(&p, &["check-config"]);
        assert_exit(&out, 2);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    let out = run_bin(&dir.path().join("does-not-exist.toml"), &["check-config"]);
    assert_exit(&out, 2);
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(bin()).arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin())
        .args(["run", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn legacy_json_runs_as_is_and_imports_to_equivalent_toml() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 1_000..=3_000);
    let dir = tempfile::tempdir().unwrap();
    // The seed's file as it is, with a relative data directory.
    let json = format!(
        "{{\n  \"local_data_directory\": \"./data\",\n  \"intersections\": [\n    {{ \"name\": \"intersection-1\", \"ip_address\": \"127.0.0.1\", \"username\": \"{TEST_USER}\",\n      \"password\": \"{TEST_PASSWORD}\", \"v2x-data_location\": {:?} }}\n  ],\n  \"data_transfer_start_24h\": {{ \"hour\": 0, \"minute\": 0 }}\n}}\n",
        tree.v2x_data_location().display().to_string()
    );
    let legacy = write_file(dir.path(), "v2x-data-sftp-client-config.json", &json);
    let out = Command::new(bin())
        .arg("import-legacy-config")
        .arg(&legacy)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let toml = stdout(&out);
    let data = dir.path().canonicalize().unwrap().join("data");
    assert!(
        toml.contains(&format!(
            "data_directory = {:?}",
            data.display().to_string()
        )),
        "{toml}"
    );
    assert!(toml.contains("resolved against"), "{toml}");
    // The legacy file has no port: point the TOML at the fixture's port,
    // and at a known_hosts file (the legacy file cannot name one).
    let kh = write_file(dir.path(), "known_hosts", sshd.known_hosts_lines());
    let toml = toml
        .replace(
            "host = \"127.0.0.1\"",
            &format!("host = \"127.0.0.1\"\nport = {}", sshd.port()),
        )
        .lines()
        .filter(|l| !l.starts_with("known_hosts"))
        .collect::<Vec<_>>()
        .join("\n");
    let toml = format!(
        "known_hosts = {:?}\nstate_directory = {:?}\n{toml}\n",
        kh.display().to_string(),
        dir.path().join("state").display().to_string()
    );
    let cfg = write_file(dir.path(), "config.toml", &toml);
    let out = run_bin(&cfg, &["run"]);
    assert_exit(&out, 0);
    assert_landed(&data, "intersection-1", &tree.manifest());
    // A legacy file names no port or known_hosts, so it is loaded as is but
    // fails on the missing default known_hosts unless the package made one.
    let out = run_bin(&legacy, &["check-config"]);
    if Path::new("/etc/v2x-data-sftp-client/known_hosts").exists() {
        assert_exit(&out, 0);
    } else {
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("known_hosts"), "{}", stderr(&out));
    }
}

#[test]
fn status_without_a_pass_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let kh = empty_known_hosts(dir.path());
    let text = format!(
        "state_directory = {:?}\n{}",
        dir.path().join("state").display().to_string(),
        valid(&kh, "", "", "")
    );
    let c = write_file(dir.path(), "c.toml", &text);
    let out = run_bin(&c, &["status"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("no pass has run yet"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shipped_config_example_is_valid_when_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/config.example.toml"
    ))
    .unwrap();
    let kh = empty_known_hosts(dir.path());
    let mut text = String::new();
    for line in shipped.lines() {
        // "#key = value" and "#[table]" lines are the commented-out settings.
        let uncommented = line.strip_prefix('#').filter(|l| {
            l.starts_with('[')
                || l.split_once(" = ")
                    .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' '))
        });
        let line = uncommented.unwrap_or(line);
        let line = match line.split_once(" = ").map(|(k, _)| k) {
            Some("data_directory") => format!(
                "data_directory = {:?}",
                dir.path().join("data").display().to_string()
            ),
            Some("known_hosts") => format!("known_hosts = {kh:?}"),
            Some("password_file") => "password = \"x\"".to_string(),
            Some("metrics_textfile") => format!(
                "metrics_textfile = {:?}",
                dir.path().join("m.prom").display().to_string()
            ),
            _ => line.to_string(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    let c = write_file(dir.path(), "shipped.toml", &text);
    let out = run_bin(&c, &["check-config"]);
    assert_exit(&out, 0);
}

/// The flags and subcommands `--help` shows, the way an operator reads them.
fn help_words(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_v2x-data-sftp-client"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `-v`, `--dry-run`, … as written in a help text: a word that starts with
/// one or two hyphens and a letter.
fn flags_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '(')
        .map(|w| w.trim_end_matches([',', ':', ')', ']', '.', '=']))
        .filter(|w| {
            let rest = w.trim_start_matches('-');
            (w.starts_with('-') && w.len() - rest.len() <= 2)
                && rest.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The man page cannot go stale: it is generated from the clap definition
/// at package build time, and this holds it against what `--help` shows
/// (the booted-systemd test does the same on `man v2x-data-sftp-client`).
#[test]
fn man_page_shows_every_subcommand_and_flag_of_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_v2x-data-sftp-client"))
        .arg("man")
        .output()
        .expect("run man");
    assert_exit(&out, 0);
    let roff = String::from_utf8(out.stdout).expect("the man page is UTF-8");
    // As the reader sees it: roff escapes and font switches removed.
    let page = roff
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "");
    assert!(
        page.contains("\n.TH v2x-data-sftp-client 8 "),
        "{}",
        &page[..200]
    );

    let top = help_words(&[]);
    let subcommands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .collect();
    assert!(subcommands.len() >= 5, "{top}");
    let mut missing = Vec::new();
    for flag in flags_in(&top) {
        if !page.contains(&flag) {
            missing.push(format!("(global) {flag}"));
        }
    }
    for sub in &subcommands {
        if !page.contains(&format!("\n{sub} ")) {
            missing.push((*sub).to_string());
        }
        for flag in flags_in(&help_words(&[sub])) {
            if !page.contains(&flag) {
                missing.push(format!("{sub} {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "missing from the man page: {missing:?}");
    for section in [
        ".SH COMMANDS",
        ".SH CONFIGURATION",
        ".SH CREDENTIALS",
        ".SH EXIT STATUS",
        ".SH FILES",
        "password_credential",
        "LoadCredentialEncrypted=",
    ] {
        assert!(page.contains(section), "the man page lacks {section}");
    }
    // The exit statuses it promises are the contract's.
    for code in [
        ".B 0\nEvery intersection",
        ".B 1\nAt least one",
        ".B 2\nA usage or config",
    ] {
        assert!(page.contains(code), "EXIT STATUS lacks {code:?}");
    }
}

#[test]
fn man_page_flags_found_in_help_include_the_ones_operators_use() {
    // Guards the help parser above: were it to find nothing, the man page
    // check would pass vacuously.
    let run = flags_in(&help_words(&["run"]));
    for f in [
        "--only",
        "--dry-run",
        "--config",
        "-v",
        "--verbose",
        "-h",
        "--help",
    ] {
        assert!(
            run.iter().any(|x| x == f),
            "{f} not parsed from run --help: {run:?}"
        );
    }
    let trust = flags_in(&help_words(&["trust"]));
    assert!(trust.iter().any(|x| x == "-y"), "{trust:?}");
}
