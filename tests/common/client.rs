//! Runs the real `v2x-data-sftp-client` binary against fixture sshds: writes
//! a TOML config and a known_hosts file into a temp dir, runs a command,
//! and reads back the state file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::remote::RemoteTree;
use super::sshd::Sshd;
use super::user::TEST_PASSWORD;

/// How an intersection authenticates in a generated config.
#[derive(Clone, Debug)]
pub enum TestAuth {
    Password(String),
    PasswordFile(PathBuf),
    Key(PathBuf, Option<PathBuf>),
    /// `password_credential = NAME`.
    PasswordCredential(String),
    /// `private_key_credential = NAME`, `passphrase_credential = NAME`.
    KeyCredential(String, Option<String>),
}

/// One `[[intersections]]` table.
#[derive(Clone, Debug)]
pub struct Site {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub auth: TestAuth,
    pub location: PathBuf,
    /// `compression =`; `None` leaves it to the link. Tests default to
    /// `false` so that each pass makes exactly one connection (a fault that
    /// hits "the first connection" must hit the one that transfers).
    pub compression: Option<bool>,
    pub extra: Vec<String>,
}

impl Site {
    /// An intersection served by `sshd` with `tree`, password auth.
    pub fn new(name: &str, sshd: &Sshd, tree: &RemoteTree) -> Site {
        Site {
            name: name.into(),
            host: sshd.host(),
            port: sshd.port(),
            auth: TestAuth::Password(TEST_PASSWORD.into()),
            location: tree.v2x_data_location(),
            compression: Some(false),
            extra: Vec::new(),
        }
    }

    /// An intersection at an arbitrary address (for unreachable hosts).
    pub fn at(name: &str, addr: std::net::SocketAddr, location: &Path) -> Site {
        Site {
            name: name.into(),
            host: addr.ip().to_string(),
            port: addr.port(),
            auth: TestAuth::Password(TEST_PASSWORD.into()),
            location: location.into(),
            compression: Some(false),
            extra: Vec::new(),
        }
    }
}

/// A client installation in a temp dir: config, known_hosts, data, state.
pub struct Client {
    pub dir: tempfile::TempDir,
    pub sites: Vec<Site>,
    pub known_hosts: String,
    /// Lines for the `[transfer]` table.
    pub transfer: Vec<String>,
}

impl Client {
    pub fn new() -> Client {
        Client {
            dir: tempfile::Builder::new()
                .prefix("v2x-client-")
                .tempdir()
                .expect("tempdir"),
            sites: Vec::new(),
            known_hosts: String::new(),
            // Fixture files are an hour old; tests that care set min_age.
            transfer: vec![
                "connect_timeout = \"5s\"".into(),
                "io_timeout = \"5s\"".into(),
                "retry_backoff = \"100ms\"".into(),
                "min_free_space = \"1MiB\"".into(),
            ],
        }
    }

    /// Adds a site and trusts its sshd's host keys.
    pub fn add(&mut self, site: Site, sshd: &Sshd) -> &mut Self {
        self.known_hosts.push_str(&sshd.known_hosts_lines());
        self.sites.push(site);
        self
    }

    /// Adds a site reached through a relay listening at `via` (a proxy on
    /// loopback), trusting `sshd`'s host keys under the relay's address.
    pub fn add_through(
        &mut self,
        mut site: Site,
        sshd: &Sshd,
        via: std::net::SocketAddr,
    ) -> &mut Self {
        site.host = via.ip().to_string();
        site.port = via.port();
        self.known_hosts
            .push_str(&sshd.known_hosts_lines_for(&format!("[{}]:{}", site.host, site.port)));
        self.sites.push(site);
        self
    }

    /// Points every site straight at `sshd` again (a later pass without
    /// the proxy a fault went through), trusting its host keys there.
    pub fn bypass_proxies(&mut self, sshd: &Sshd) -> &mut Self {
        for site in &mut self.sites {
            site.host = sshd.host();
            site.port = sshd.port();
        }
        self.known_hosts.push_str(&sshd.known_hosts_lines());
        self
    }

    /// Adds a site without trusting anything for it.
    pub fn add_untrusted(&mut self, site: Site) -> &mut Self {
        self.sites.push(site);
        self
    }

    pub fn set(&mut self, transfer_line: &str) -> &mut Self {
        let key = transfer_line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        self.transfer
            .retain(|l| l.split('=').next().unwrap_or("").trim() != key);
        self.transfer.push(transfer_line.into());
        self
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The TOML text of the config.
    pub fn config_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "data_directory = {:?}",
            self.data_dir().display().to_string()
        );
        let _ = writeln!(
            s,
            "state_directory = {:?}",
            self.state_dir().display().to_string()
        );
        let _ = writeln!(
            s,
            "known_hosts = {:?}",
            self.known_hosts_path().display().to_string()
        );
        let _ = writeln!(s, "\n[transfer]");
        for l in &self.transfer {
            let _ = writeln!(s, "{l}");
        }
        for site in &self.sites {
            let _ = writeln!(s, "\n[[intersections]]");
            let _ = writeln!(s, "name = {:?}", site.name);
            let _ = writeln!(s, "host = {:?}", site.host);
            let _ = writeln!(s, "port = {}", site.port);
            let _ = writeln!(s, "username = {:?}", super::user::TEST_USER);
            match &site.auth {
                TestAuth::Password(p) => {
                    let _ = writeln!(s, "password = {p:?}");
                }
                TestAuth::PasswordFile(p) => {
                    let _ = writeln!(s, "password_file = {:?}", p.display().to_string());
                }
                TestAuth::Key(k, pass) => {
                    let _ = writeln!(s, "private_key = {:?}", k.display().to_string());
                    if let Some(p) = pass {
                        let _ = writeln!(s, "passphrase_file = {:?}", p.display().to_string());
                    }
                }
                TestAuth::PasswordCredential(name) => {
                    let _ = writeln!(s, "password_credential = {name:?}");
                }
                TestAuth::KeyCredential(name, pass) => {
                    let _ = writeln!(s, "private_key_credential = {name:?}");
                    if let Some(p) = pass {
                        let _ = writeln!(s, "passphrase_credential = {p:?}");
                    }
                }
            }
            let _ = writeln!(
                s,
                "v2x_data_location = {:?}",
                site.location.display().to_string()
            );
            if let Some(c) = site.compression {
                let _ = writeln!(s, "compression = {c}");
            }
            for l in &site.extra {
                let _ = writeln!(s, "{l}");
            }
        }
        s
    }

    /// Writes config and known_hosts (mode 0600: they hold passwords).
    pub fn write(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(self.config_path(), self.config_text()).expect("write config");
        std::fs::set_permissions(self.config_path(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::fs::write(self.known_hosts_path(), &self.known_hosts).expect("write known_hosts");
    }

    /// Writes the files and runs `v2x-data-sftp-client --config C <args>`.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.write();
        run_bin(&self.config_path(), args)
    }

    pub fn run(&self) -> Output {
        self.cmd(&["run"])
    }

    /// The state file's JSON after a run.
    pub fn state(&self) -> Value {
        let text =
            std::fs::read_to_string(self.state_dir().join("last-run.json")).expect("state file");
        serde_json::from_str(&text).expect("state JSON")
    }

    /// Every record of the ledger (`<state>/ledger/*.jsonl`), oldest day
    /// first; a line that is not JSON fails the test.
    pub fn ledger(&self) -> Vec<Value> {
        let dir = self.state_dir().join("ledger");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|l| l.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).expect("ledger file");
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                out.push(
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("{}: not a record: {e}: {line}", f.display())),
                );
            }
        }
        out
    }

    /// The state file's report for one intersection.
    pub fn ix_state(&self, name: &str) -> Value {
        self.state()["intersections"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no intersection {name} in state"))
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_v2x-data-sftp-client")
}

pub fn run_bin(config: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run the binary")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The exit status, with the output shown when it is not the expected one.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}
