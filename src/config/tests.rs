use super::validate::parse_size;
use super::*;
use std::os::unix::fs::PermissionsExt;

/// Writes a config file `<dir>/<name>` with the mode the loader advises
/// (0640: it may hold a password, so not readable by every user).
pub(super) fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    path
}

/// A temp folder holding a known_hosts file, so `load` can run its checks.
struct Fixture {
    dir: tempfile::TempDir,
    known_hosts: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, "").expect("write known_hosts");
        Fixture { dir, known_hosts }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        write_config(self.dir.path(), name, text)
    }

    /// `body` with a `known_hosts` line pointing at the fixture's file.
    fn toml(&self, body: &str) -> PathBuf {
        let text = format!("known_hosts = {:?}\n{body}", self.known_hosts);
        self.write("config.toml", &text)
    }

    fn load(&self, body: &str) -> Loaded {
        match load(&self.toml(body)) {
            Ok(l) => l,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    fn errors(&self, body: &str) -> Vec<ConfigError> {
        match load(&self.toml(body)) {
            Ok(_) => panic!("expected errors for:\n{body}"),
            Err(e) => e.0,
        }
    }
}

const MINIMAL: &str = r#"data_directory = "/srv/v2x"

[[intersections]]
name = "intersection-1"
host = "10.12.6.250"
username = "ubuntu"
password = "secret"
v2x_data_location = "/home/ubuntu/intersection-1/bin/v2x_data"
"#;

/// The error about `key` in `errors`. (Line numbers in the tests below
/// count the fixture's extra first line, `known_hosts`.)
pub(super) fn find<'a>(errors: &'a [ConfigError], key: &str) -> &'a ConfigError {
    errors
        .iter()
        .find(|e| e.key.as_deref() == Some(key))
        .unwrap_or_else(|| panic!("no error for {key} in {}", ConfigErrors(errors.to_vec())))
}

#[test]
fn full_config_with_every_key() {
    let f = Fixture::new();
    let l = f.load(
        r#"data_directory = "/srv/v2x/data"
state_directory = "/srv/v2x/state"
elements = ["spat", "srm"]
start_time = "23:05"

[transfer]
parallel_intersections = 8
connect_timeout = "10s"
io_timeout = "30s"
intersection_deadline = "2h"
retries = 5
retry_backoff = "1m"
min_age = "0s"
min_free_space = "500MB"
max_listed_entries = 50000
ciphers = ["aes256-gcm@openssh.com", "aes128-ctr"]
macs = ["hmac-sha2-512-etm@openssh.com"]
kex_algorithms = ["ecdh-sha2-nistp256", "curve25519-sha256"]
verify = "sha256"

[[intersections]]
name = "a"
host = "10.0.0.1"
port = 2222
username = "u1"
password = "p"
v2x_data_location = "/v/a"
compression = true

[[intersections]]
name = "b"
host = "b.example"
username = "u2"
password_file = "/etc/v2x/b.pw"
v2x_data_location = "/v/b"

[[intersections]]
name = "c"
host = "10.0.0.3"
username = "u3"
private_key = "/etc/v2x/c.key"
passphrase_file = "/etc/v2x/c.pass"
v2x_data_location = "/v/c"
"#,
    );
    let c = &l.config;
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(c.data_directory, Path::new("/srv/v2x/data"));
    assert_eq!(c.state_directory, Path::new("/srv/v2x/state"));
    assert_eq!(c.known_hosts, f.known_hosts);
    assert_eq!(c.elements, ["spat", "srm"]);
    assert_eq!(
        c.start_time,
        Some(StartTime {
            hour: 23,
            minute: 5
        })
    );
    assert_eq!(
        c.transfer,
        Transfer {
            parallel_intersections: 8,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            intersection_deadline: Duration::from_secs(7200),
            retries: 5,
            retry_backoff: Duration::from_secs(60),
            min_age: Duration::ZERO,
            min_free_bytes: 500_000_000,
            max_listed_entries: 50_000,
            algorithms: Algorithms {
                ciphers: vec!["aes256-gcm@openssh.com".into(), "aes128-ctr".into()],
                macs: vec!["hmac-sha2-512-etm@openssh.com".into()],
                kex: vec!["ecdh-sha2-nistp256".into(), "curve25519-sha256".into()],
            },
            verify: Verify::Sha256,
        }
    );
    let [a, b, cc] = c.intersections.as_slice() else {
        panic!("three intersections")
    };
    assert_eq!(
        (
            a.name.as_str(),
            a.host.as_str(),
            a.port,
            a.username.as_str()
        ),
        ("a", "10.0.0.1", 2222, "u1")
    );
    assert!(matches!(&a.auth, Auth::Password(s) if s.expose() == "p"));
    assert_eq!(a.v2x_data_location, "/v/a");
    assert_eq!(a.compression, Some(true));
    assert_eq!((b.port, b.compression), (22, None));
    assert!(
        matches!(&b.auth, Auth::PasswordFrom(SecretSource::File(p)) if p == Path::new("/etc/v2x/b.pw"))
    );
    assert!(matches!(&cc.auth, Auth::PrivateKey {
            key: SecretSource::File(path),
            passphrase: Some(SecretSource::File(pp)),
        } if path == Path::new("/etc/v2x/c.key") && pp == Path::new("/etc/v2x/c.pass")));
}

#[test]
fn secrets_can_be_systemd_credentials() {
    let f = Fixture::new();
    let dkey = f.write("d.key", "key");
    let body = format!(
        "{MINIMAL}\n[[intersections]]\nname = \"b\"\nhost = \"h\"\nusername = \"u\"\n\
         password_credential = \"b-password\"\nv2x_data_location = \"/v\"\n\n\
         [[intersections]]\nname = \"c\"\nhost = \"h\"\nusername = \"u\"\n\
         private_key_credential = \"c-key\"\npassphrase_credential = \"c-pass\"\n\
         v2x_data_location = \"/v\"\n\n\
         [[intersections]]\nname = \"d\"\nhost = \"h\"\nusername = \"u\"\n\
         private_key = {dkey:?}\npassphrase_credential = \"d-pass\"\n\
         v2x_data_location = \"/v\"\n"
    );
    let c = f.load(&body).config;
    let credential = |n: &str| SecretSource::Credential(n.into());
    assert!(
        matches!(&c.intersections[1].auth, Auth::PasswordFrom(s) if *s == credential("b-password"))
    );
    assert!(
        matches!(&c.intersections[2].auth, Auth::PrivateKey { key, passphrase: Some(p) }
        if *key == credential("c-key") && *p == credential("c-pass"))
    );
    assert!(
        matches!(&c.intersections[3].auth, Auth::PrivateKey { key: SecretSource::File(_), passphrase: Some(p) }
        if *p == credential("d-pass"))
    );

    // Outside a unit (the test's own environment) they are notes, not
    // errors: systemd hands credentials to the unit only.
    if std::env::var_os(credentials::DIRECTORY_VARIABLE).is_none() {
        let check = check_secret_files(&c);
        assert!(
            check.errors.is_empty(),
            "{}",
            ConfigErrors(check.errors.clone())
        );
        assert_eq!(
            check.unseen_credentials.len(),
            4,
            "{:?}",
            check.unseen_credentials
        );
        let note = &check.unseen_credentials[0];
        assert!(
            note.contains("intersections[1].password_credential"),
            "{note}"
        );
        assert!(note.contains(":15:"), "names the line: {note}");
        assert!(
            note.contains("\"b-password\" cannot be seen here"),
            "{note}"
        );
        assert!(note.contains("That is expected outside the unit"), "{note}");
        assert!(
            note.contains("LoadCredentialEncrypted=b-password:PATH"),
            "{note}"
        );
    }
}

#[test]
fn credential_names_and_combinations_are_checked() {
    let f = Fixture::new();
    for (auth, key, needle) in [
        (
            "password_credential = \"a/b\"",
            "password_credential",
            "plain file name",
        ),
        (
            "password_credential = \"\"",
            "password_credential",
            "is empty",
        ),
        (
            "password_credential = \"p\"\npassphrase_credential = \"x\"",
            "passphrase_credential",
            "without private_key",
        ),
        (
            "private_key_credential = \"k\"\npassphrase_credential = \"x\"\npassphrase_file = \"/x\"",
            "passphrase_credential",
            "not both",
        ),
    ] {
        let e = f.errors(&MINIMAL.replace("password = \"secret\"", auth));
        let e = find(&e, &format!("intersections[0].{key}"));
        assert!(e.message.contains(needle), "{auth}: {e}");
    }
    let e = f.errors(&MINIMAL.replace(
        "password = \"secret\"",
        "password_credential = \"p\"\nprivate_key_credential = \"k\"",
    ));
    let e = find(&e, "intersections[0]");
    assert!(
        e.message
            .contains("found password_credential and private_key_credential"),
        "{e}"
    );
}

#[test]
fn defaults_apply_when_keys_are_left_out() {
    let f = Fixture::new();
    let c = f.load(MINIMAL).config;
    assert_eq!(c.state_directory, Path::new(DEFAULT_STATE_DIRECTORY));
    assert_eq!(c.elements, DEFAULT_ELEMENTS);
    assert_eq!(c.start_time, None);
    assert_eq!(c.transfer, Transfer::default());
    assert_eq!(c.intersections[0].port, 22);
    assert_eq!(c.intersections[0].compression, None);

    // An empty [transfer] table is the defaults too.
    let c = f.load(&format!("{MINIMAL}\n[transfer]\n")).config;
    assert_eq!(c.transfer, Transfer::default());
}

#[test]
fn default_known_hosts_path_is_used_and_must_exist() {
    let f = Fixture::new();
    let path = f.write("config.toml", MINIMAL);
    let draft = parse_text(&path, MINIMAL).expect("parses");
    let c = validate(
        &path,
        draft,
        Checks {
            known_hosts_exists: false,
        },
    )
    .expect("valid without the existence check");
    assert_eq!(c.known_hosts, Path::new(DEFAULT_KNOWN_HOSTS));
    if !Path::new(DEFAULT_KNOWN_HOSTS).exists() {
        let e = load(&path).expect_err("missing default known_hosts");
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].key.as_deref(), Some("known_hosts"));
    }
}

#[test]
fn unknown_keys_are_errors_with_line_at_every_level() {
    let f = Fixture::new();
    let e = f.errors(&format!("data_dir = \"/x\"\n{MINIMAL}"));
    assert_eq!(
        (e[0].key.as_deref(), e[0].line),
        (Some("data_dir"), Some(2))
    );

    let e = f.errors(&format!("{MINIMAL}\n[transfer]\nio_timout = \"5s\"\n"));
    assert_eq!(
        (e[0].key.as_deref(), e[0].line),
        (Some("transfer.io_timout"), Some(12))
    );

    let e = f.errors(&format!("{MINIMAL}compresion = true\n"));
    assert_eq!(
        (e[0].key.as_deref(), e[0].line),
        (Some("intersections[0].compresion"), Some(10))
    );
    let shown = e[0].to_string();
    assert!(
        shown.starts_with(&format!(
            "{}:10: intersections[0].compresion: unknown field `compresion`",
            f.dir.path().join("config.toml").display()
        )),
        "{shown}"
    );
}

#[test]
fn relative_data_directory_is_an_error() {
    let f = Fixture::new();
    let e = f.errors(&MINIMAL.replace("\"/srv/v2x\"", "\"./data\""));
    let e = find(&e, "data_directory");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("absolute"), "{e}");
}

#[test]
fn missing_data_directory_is_an_error() {
    let f = Fixture::new();
    let e = f.errors(&MINIMAL.replace("data_directory = \"/srv/v2x\"", ""));
    assert!(find(&e, "data_directory").message.contains("missing"));
}

#[test]
fn empty_or_missing_intersections_is_an_error() {
    let f = Fixture::new();
    let e = f.errors("data_directory = \"/d\"\nintersections = []\n");
    let e = find(&e, "intersections");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("[[intersections]]"), "{e}");

    let e = f.errors("data_directory = \"/d\"\n");
    assert!(
        find(&e, "intersections")
            .message
            .contains("no intersection")
    );
}

#[test]
fn missing_known_hosts_file_is_an_error_that_says_how_to_create_it() {
    let f = Fixture::new();
    std::fs::remove_file(&f.known_hosts).expect("rm");
    let e = f.errors(MINIMAL);
    let e = find(&e, "known_hosts");
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("does not exist"), "{e}");
    assert!(e.message.contains("ssh-keyscan 10.12.6.250"), "{e}");

    let e = f.errors(&MINIMAL.replace("\"/srv/v2x\"", "\"/srv/v2x\"\nknown_hosts = \"kh\""));
    // Given twice: toml reports the duplicate key.
    assert!(e[0].message.contains("duplicate"), "{}", e[0]);
}

#[test]
fn relative_known_hosts_is_an_error() {
    let f = Fixture::new();
    let path = f.write("config.toml", &format!("known_hosts = \"kh\"\n{MINIMAL}"));
    let e = load(&path).expect_err("relative known_hosts").0;
    assert!(find(&e, "known_hosts").message.contains("relative"));
}

#[test]
fn duplicate_names_are_errors() {
    let f = Fixture::new();
    let second = MINIMAL.split_once("[[intersections]]").map(|(_, b)| b);
    let e = f.errors(&format!(
        "{MINIMAL}\n[[intersections]]{}",
        second.unwrap_or_default()
    ));
    let e = find(&e, "intersections[1].name");
    assert_eq!(e.line, Some(12));
    assert!(e.message.contains("intersections[0] (line 5)"), "{e}");
}

#[test]
fn unsafe_names_are_errors() {
    let f = Fixture::new();
    let long = "x".repeat(129);
    for name in ["..", ".", "a/b", ".hidden", "", "tab\there", long.as_str()] {
        let e = f.errors(&MINIMAL.replace("intersection-1\"", &format!("{name}\"")));
        let e = find(&e, "intersections[0].name");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("plain folder name"), "{e}");
    }
    // The longest allowed name and ordinary punctuation are fine.
    let ok = "y".repeat(128);
    f.load(&MINIMAL.replace("intersection-1\"", &format!("{ok}\"")));
    f.load(&MINIMAL.replace("intersection-1\"", "Main St & 5th_Ave (N)\""));
}

#[test]
fn exactly_one_auth_method_is_required() {
    let f = Fixture::new();
    let e = f.errors(&MINIMAL.replace("password = \"secret\"\n", ""));
    let e = find(&e, "intersections[0]");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("none is set"), "{e}");

    let e = f.errors(&MINIMAL.replace(
        "password = \"secret\"",
        "password = \"secret\"\nprivate_key = \"/k\"",
    ));
    let e = find(&e, "intersections[0]");
    assert!(e.message.contains("found password and private_key"), "{e}");
    assert!(!e.message.contains("\"secret\""), "{e}");
}

#[test]
fn passphrase_file_needs_private_key() {
    let f = Fixture::new();
    let e = f.errors(&MINIMAL.replace(
        "password = \"secret\"",
        "password = \"secret\"\npassphrase_file = \"/p\"",
    ));
    let e = find(&e, "intersections[0].passphrase_file");
    assert_eq!(e.line, Some(9));
    assert!(e.message.contains("without private_key"), "{e}");
}

#[test]
fn auth_file_paths_must_be_absolute() {
    let f = Fixture::new();
    let e = f.errors(&MINIMAL.replace("password = \"secret\"", "password_file = \"pw\""));
    assert!(
        find(&e, "intersections[0].password_file")
            .message
            .contains("relative")
    );
}

#[test]
fn bad_durations_are_errors() {
    let f = Fixture::new();
    let cases = [
        (
            "connect_timeout = \"soon\"",
            "transfer.connect_timeout",
            "not a duration",
        ),
        (
            "connect_timeout = \"0s\"",
            "transfer.connect_timeout",
            "longer than 0s",
        ),
        (
            "io_timeout = \"10\"",
            "transfer.io_timeout",
            "not a duration",
        ),
        (
            "retry_backoff = \"0s\"",
            "transfer.retry_backoff",
            "longer than 0s",
        ),
        ("io_timeout = \"2h\"", "transfer.io_timeout", "too long"),
        (
            "intersection_deadline = \"30s\"",
            "transfer.intersection_deadline",
            "longer than transfer.io_timeout",
        ),
        (
            "intersection_deadline = \"9999999999y\"",
            "transfer.intersection_deadline",
            "",
        ),
        ("min_age = \"-1s\"", "transfer.min_age", "not a duration"),
    ];
    for (line, key, text) in cases {
        let e = f.errors(&format!("{MINIMAL}\n[transfer]\n{line}\n"));
        let e = find(&e, key);
        assert_eq!(e.line, Some(12), "{e}");
        assert!(e.message.contains(text), "{e}");
    }
    // Both valid on their own, but the deadline must exceed the timeout.
    let e = f.errors(&format!(
        "{MINIMAL}\n[transfer]\nio_timeout = \"1h\"\nintersection_deadline = \"1h\"\n"
    ));
    assert!(
        find(&e, "transfer.intersection_deadline")
            .message
            .contains("(1h)")
    );
}

#[test]
fn integer_ranges_are_checked() {
    let f = Fixture::new();
    for (line, key) in [
        (
            "[transfer]\nparallel_intersections = 0",
            "transfer.parallel_intersections",
        ),
        (
            "[transfer]\nparallel_intersections = 65",
            "transfer.parallel_intersections",
        ),
        ("[transfer]\nretries = -1", "transfer.retries"),
        ("[transfer]\nretries = 21", "transfer.retries"),
        (
            "[transfer]\nmax_listed_entries = 999",
            "transfer.max_listed_entries",
        ),
    ] {
        let e = f.errors(&format!("{MINIMAL}\n{line}\n"));
        assert!(find(&e, key).message.contains("out of range"));
    }
    for port in ["0", "65536", "-22"] {
        let e = f.errors(&MINIMAL.replace("username", &format!("port = {port}\nusername")));
        assert!(
            find(&e, "intersections[0].port")
                .message
                .contains("out of range")
        );
    }
}

#[test]
fn min_free_space_accepts_bytes_and_units() {
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("1 GB"), Ok(1_000_000_000));
    assert_eq!(parse_size("2kib"), Ok(2048));
    assert_eq!(parse_size("1.5KB"), Ok(1500));
    assert_eq!(parse_size("0"), Ok(0));
    assert_eq!(parse_size("7B"), Ok(7));
    assert_eq!(parse_size("3TiB"), Ok(3 << 40));
    for bad in [
        "",
        "GiB",
        "1 XB",
        "1.2.3MB",
        "-1GB",
        "99999999999999999999",
        "20000000TiB",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
    let f = Fixture::new();
    let c = f
        .load(&format!("{MINIMAL}\n[transfer]\nmin_free_space = 4096\n"))
        .config;
    assert_eq!(c.transfer.min_free_bytes, 4096);
    for bad in ["\"lots\"", "-1", "\"1 XB\"", "true"] {
        let e = f.errors(&format!("{MINIMAL}\n[transfer]\nmin_free_space = {bad}\n"));
        let e = find(&e, "transfer.min_free_space");
        assert_eq!(e.line, Some(12), "{e}");
    }
}

#[test]
fn verify_defaults_to_auto_and_takes_three_words_only() {
    let f = Fixture::new();
    assert_eq!(f.load(MINIMAL).config.transfer.verify, Verify::Auto);
    for (word, want) in [
        ("auto", Verify::Auto),
        ("sha256", Verify::Sha256),
        ("size", Verify::Size),
    ] {
        let c = f
            .load(&format!("{MINIMAL}\n[transfer]\nverify = \"{word}\"\n"))
            .config;
        assert_eq!(c.transfer.verify, want);
    }
    for bad in ["\"md5\"", "\"SHA256\"", "true"] {
        let e = f.errors(&format!("{MINIMAL}\n[transfer]\nverify = {bad}\n"));
        let e = find(&e, "transfer.verify");
        assert_eq!(e.line, Some(12), "{e}");
    }
}

#[test]
fn bad_start_times_are_errors() {
    let f = Fixture::new();
    for bad in [
        "24:00", "12:60", "7", "12:5", "-1:00", "12:00:00", "noon", ":30", "1:2:3",
    ] {
        let e = f.errors(&format!("start_time = \"{bad}\"\n{MINIMAL}"));
        let e = find(&e, "start_time");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("HH:MM"), "{e}");
    }
    let c = f.load(&format!("start_time = \"7:30\"\n{MINIMAL}")).config;
    assert_eq!(
        c.start_time,
        Some(StartTime {
            hour: 7,
            minute: 30
        })
    );
}

#[test]
fn algorithm_lists_are_checked_against_what_the_client_supports() {
    let f = Fixture::new();
    let e = f.errors(&format!(
        "{MINIMAL}\n[transfer]\nciphers = [\"aes128-ctr\", \"aes128-cbc-typo\", \"aes128-ctr\"]\n\
         macs = []\nkex_algorithms = [\"sntrup761x25519-sha512@openssh.com\"]\n"
    ));
    let typo = find(&e, "transfer.ciphers[1]");
    assert!(
        typo.message
            .contains("not an algorithm this client supports"),
        "{typo}"
    );
    assert!(
        typo.message.contains("aes256-ctr"),
        "lists what is supported: {typo}"
    );
    assert!(typo.line.is_some());
    assert!(find(&e, "transfer.ciphers[2]").message.contains("twice"));
    assert!(find(&e, "transfer.macs").message.contains("is empty"));
    assert!(
        find(&e, "transfer.kex_algorithms[0]")
            .message
            .contains("not an algorithm")
    );
}

#[test]
fn elements_are_checked() {
    let f = Fixture::new();
    let e = f.errors(&format!("elements = []\n{MINIMAL}"));
    assert!(find(&e, "elements").message.contains("is empty"));
    let e = f.errors(&format!(
        "elements = [\"spat\", \"spat\", \"../x\"]\n{MINIMAL}"
    ));
    assert!(find(&e, "elements[1]").message.contains("twice"));
    assert!(find(&e, "elements[2]").message.contains("'/'"));
}

#[test]
fn host_and_username_are_checked() {
    let f = Fixture::new();
    let e = f.errors(
        &MINIMAL
            .replace("10.12.6.250", "10.12.6.250 extra")
            .replace("\"ubuntu\"", "\"\""),
    );
    assert!(
        find(&e, "intersections[0].host")
            .message
            .contains("whitespace")
    );
    assert!(
        find(&e, "intersections[0].username")
            .message
            .contains("empty")
    );
}

#[test]
fn missing_intersection_keys_are_named_at_the_table_line() {
    let f = Fixture::new();
    let e = f.errors("data_directory = \"/d\"\n\n[[intersections]]\npassword = \"p\"\n");
    for key in ["name", "host", "username", "v2x_data_location"] {
        let e = find(&e, &format!("intersections[0].{key}"));
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.starts_with("missing"), "{e}");
    }
}

#[test]
fn legacy_spellings_work_in_toml() {
    let f = Fixture::new();
    let c = f
        .load(
            &MINIMAL
                .replace("host =", "ip_address =")
                .replace("v2x_data_location", "\"v2x-data_location\""),
        )
        .config;
    assert_eq!(c.intersections[0].host, "10.12.6.250");
}

#[test]
fn several_errors_are_reported_at_once() {
    let f = Fixture::new();
    let e = f.errors(
        r#"data_directory = "data"
start_time = "25:00"

[transfer]
io_timeout = "0s"
min_free_space = "big"

[[intersections]]
name = ".."
host = "h"
username = "u"
v2x_data_location = "/v"

[[intersections]]
name = "b"
host = "h2"
username = "u"
password = "p"
password_file = "/p"
v2x_data_location = "/v"
"#,
    );
    let keys: Vec<_> = e.iter().filter_map(|e| e.key.as_deref()).collect();
    for key in [
        "data_directory",
        "start_time",
        "transfer.io_timeout",
        "transfer.min_free_space",
        "intersections[0].name",
        "intersections[0]",
        "intersections[1]",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    // One error per line in Display.
    assert_eq!(ConfigErrors(e.clone()).to_string().lines().count(), e.len());
}

#[test]
fn password_never_appears_in_errors_or_debug() {
    let f = Fixture::new();
    let secret = "hunter2-Very-Secret";
    let body = MINIMAL
        .replace("\"secret\"", &format!("\"{secret}\""))
        .replace("/srv/v2x", "relative");
    let e = load(&f.toml(&body)).expect_err("relative data_directory");
    assert!(!e.to_string().contains(secret), "{e}");
    assert!(!format!("{e:?}").contains(secret));

    // Two auth methods: the error names the keys, not the value.
    let body = MINIMAL.replace(
        "password = \"secret\"",
        &format!("password = \"{secret}\"\nprivate_key = \"/k\""),
    );
    let e = load(&f.toml(&body)).expect_err("two methods");
    assert!(!e.to_string().contains(secret), "{e}");

    // A wrongly typed or misplaced password is not echoed either.
    for body in [
        MINIMAL.replace("\"secret\"", "12345678"),
        format!("password = \"{secret}\"\n{MINIMAL}"),
        format!("{MINIMAL}\n[transfer]\npassword = \"{secret}\"\n"),
    ] {
        let e = load(&f.toml(&body)).expect_err("bad password");
        assert!(
            !e.to_string().contains(secret) && !e.to_string().contains("12345678"),
            "{e}"
        );
    }

    let l = f.load(&MINIMAL.replace("\"secret\"", &format!("\"{secret}\"")));
    assert!(!format!("{:?}", l.config).contains(secret));
    assert!(!format!("{:?}", l).contains(secret));
}

#[test]
fn world_readable_password_file_is_warned_about() {
    let f = Fixture::new();
    let path = f.toml(MINIMAL);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let l = load(&path).expect("valid");
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains(&format!("chmod 640 {}", path.display())));
    assert!(!l.warnings[0].contains("secret"));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    assert!(load(&path).expect("valid").warnings.is_empty());

    // No password in the file: nothing to protect.
    let path = f.toml(&MINIMAL.replace("password = \"secret\"", "private_key = \"/k\""));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(load(&path).expect("valid").warnings.is_empty());
}

#[test]
fn unreadable_or_missing_config_file_is_an_error() {
    let f = Fixture::new();
    let e = load(&f.dir.path().join("nope.toml")).expect_err("missing");
    assert_eq!(e.0.len(), 1);
    assert!(e.0[0].message.contains("cannot read"), "{e}");

    let path = f.dir.path().join("latin1.toml");
    std::fs::write(&path, b"data_directory = \"/d\"\nname = \"caf\xe9\"\n").expect("write");
    let e = load(&path).expect_err("not utf-8");
    assert_eq!(e.0[0].line, Some(2));
    assert!(e.0[0].message.contains("UTF-8"));
}

#[test]
fn garbage_input_never_panics() {
    let f = Fixture::new();
    let path = f.dir.path().join("garbage");
    // xorshift: deterministic noise without another dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..300 {
        let len = (round * 7) % 400;
        let mut bytes = Vec::with_capacity(len + 1);
        if round % 3 == 0 {
            bytes.push(b'{');
        }
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = (x & 0xff) as u8;
            // Half the rounds use only TOML/JSON-ish characters to get deeper.
            let alphabet = b"[]{}\"'=:,.\n #ab1_-\\tfn";
            let b = if round % 2 == 0 {
                alphabet[usize::from(b) % alphabet.len()]
            } else {
                b
            };
            bytes.push(b);
        }
        std::fs::write(&path, &bytes).expect("write");
        assert!(load(&path).is_err());
        let _ = legacy::import(&path);
    }
    // Every truncation of a valid TOML and a valid JSON config.
    let full = format!(
        "known_hosts = {:?}\n{MINIMAL}\n[transfer]\nretries = 2\n",
        f.known_hosts
    );
    let json = r#"{ "local_data_directory": "./data", "intersections": [ { "name": "i", "ip_address": "h", "username": "u", "password": "p", "v2x-data_location": "/v" } ], "data_transfer_start_24h": { "hour": 0, "minute": 0 } }"#;
    for text in [full.as_str(), json] {
        for cut in 0..text.len() {
            std::fs::write(&path, &text.as_bytes()[..cut]).expect("write");
            let _ = load(&path);
            let _ = legacy::import(&path);
        }
    }
}

#[test]
fn check_secret_files_reports_missing_and_unusable_files() {
    let f = Fixture::new();
    let key = f.write("id_ed25519", "key");
    let missing = f.dir.path().join("missing.pass");
    let body = format!(
        "{MINIMAL}\n[[intersections]]\nname = \"b\"\nhost = \"h\"\nusername = \"u\"\n\
         private_key = {key:?}\npassphrase_file = {missing:?}\nv2x_data_location = \"/v\"\n\n\
         [[intersections]]\nname = \"c\"\nhost = \"h\"\nusername = \"u\"\n\
         password_file = {:?}\nv2x_data_location = \"/v\"\n",
        f.dir.path()
    );
    let c = f.load(&body).config;
    let e = check_secret_files(&c).errors;
    assert_eq!(e.len(), 2, "{}", ConfigErrors(e.clone()));
    assert_eq!(
        e[0].key.as_deref(),
        Some("intersections[1].passphrase_file")
    );
    assert_eq!(e[0].line, Some(16));
    assert!(e[0].message.contains("does not exist"), "{}", e[0]);
    assert_eq!(e[1].key.as_deref(), Some("intersections[2].password_file"));
    assert!(e[1].message.contains("directory"), "{}", e[1]);

    // A key file nobody may read (root reads anything, so only check otherwise).
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::File::open(&key).is_err() {
        let e = check_secret_files(&c).errors;
        assert!(
            e.iter()
                .any(|e| e.key.as_deref() == Some("intersections[1].private_key")
                    && e.message.contains("cannot be read"))
        );
    }
}

#[test]
fn error_display_leaves_out_unknown_parts() {
    let file = Path::new("/etc/x.toml");
    let all = ConfigError::new(file, Some("k".into()), Some(3), "do this");
    assert_eq!(all.to_string(), "/etc/x.toml:3: k: do this");
    let no_line = ConfigError::new(file, Some("k".into()), None, "do this");
    assert_eq!(no_line.to_string(), "/etc/x.toml: k: do this");
    let bare = ConfigError::new(file, None, None, "do this");
    assert_eq!(bare.to_string(), "/etc/x.toml: do this");
    assert_eq!(
        ConfigErrors(vec![all, bare]).to_string(),
        "/etc/x.toml:3: k: do this\n/etc/x.toml: do this"
    );
}
