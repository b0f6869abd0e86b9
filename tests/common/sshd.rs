//! A real OpenSSH sshd on loopback, one per test, in its own temp dir.
//!
//! sshd runs as `unshare --pid --fork --kill-child -- /usr/sbin/sshd -D -e -E <log> -f <cfg>`:
//! inside its own PID namespace sshd is PID 1, so it reaps every process of
//! its connections, and killing it makes the kernel kill (and reap) all of
//! them. The machine's init does not reap orphans, so this is what keeps the
//! machine free of zombie sshds.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::user::{ClientKey, KeyType, TestUser, pub_path, ssh_keygen};

/// sshd binary (Debian openssh-server).
pub const SSHD_BIN: &str = "/usr/sbin/sshd";

/// How a test sshd is configured. `SshdOptions::default()` gives: 127.0.0.1,
/// a free port, one ed25519 host key, password and public-key auth on,
/// `LogLevel VERBOSE`, `MaxStartups 100:30:200`, `Subsystem sftp internal-sftp`.
#[derive(Clone, Debug)]
pub struct SshdOptions {
    /// Listen address; any 127.x.y.z works on Linux loopback.
    pub address: Ipv4Addr,
    /// Fixed port, or `None` to pick a free one (retried on collision).
    pub port: Option<u16>,
    /// Host key types to generate (one key each). Must not be empty.
    pub host_key_types: Vec<KeyType>,
    /// `MaxStartups` value, e.g. `"2"` or `"10:30:100"`.
    pub max_startups: String,
    /// `MaxSessions`.
    pub max_sessions: u32,
    /// `MaxAuthTries`.
    pub max_auth_tries: u32,
    /// `LoginGraceTime` in seconds.
    pub login_grace_time: u32,
    /// `LogLevel` (VERBOSE logs every password and public-key attempt;
    /// DEBUG1 also the negotiated cipher).
    pub log_level: String,
    /// `PasswordAuthentication`.
    pub password_authentication: bool,
    /// `PubkeyAuthentication`.
    pub pubkey_authentication: bool,
    /// Extra authorized_keys lines for v2xtest (the sshd's own
    /// [`Sshd::client_key`] is always authorised).
    pub authorized_keys: Vec<String>,
    /// `Ciphers`, when set.
    pub ciphers: Option<String>,
    /// `MACs`, when set.
    pub macs: Option<String>,
    /// `KexAlgorithms`, when set.
    pub kex_algorithms: Option<String>,
    /// `Subsystem sftp` command (`internal-sftp` or `/usr/lib/openssh/sftp-server`).
    pub sftp_subsystem: String,
    /// Raw lines appended to sshd_config.
    pub extra_config: Vec<String>,
    /// How long to wait for sshd to listen.
    pub start_timeout: Duration,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            address: Ipv4Addr::LOCALHOST,
            port: None,
            host_key_types: vec![KeyType::Ed25519],
            max_startups: "100:30:200".into(),
            max_sessions: 64,
            max_auth_tries: 6,
            login_grace_time: 30,
            log_level: "VERBOSE".into(),
            password_authentication: true,
            pubkey_authentication: true,
            authorized_keys: Vec::new(),
            ciphers: None,
            macs: None,
            kex_algorithms: None,
            sftp_subsystem: "internal-sftp".into(),
            extra_config: Vec::new(),
            start_timeout: Duration::from_secs(5),
        }
    }
}

impl SshdOptions {
    /// Listen on `addr` (must be 127.x.y.z).
    pub fn address(mut self, addr: &str) -> Self {
        self.address = addr.parse().expect("IPv4 address");
        assert_eq!(self.address.octets()[0], 127, "loopback addresses only");
        self
    }

    /// Listen on this fixed port (e.g. to take over another sshd's port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Set `LogLevel` (e.g. `"DEBUG1"`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// Turn `PasswordAuthentication` on or off.
    pub fn password_authentication(mut self, on: bool) -> Self {
        self.password_authentication = on;
        self
    }

    /// Turn `PubkeyAuthentication` on or off.
    pub fn pubkey_authentication(mut self, on: bool) -> Self {
        self.pubkey_authentication = on;
        self
    }

    /// Generate these host key types (in this order).
    pub fn host_keys(mut self, types: &[KeyType]) -> Self {
        self.host_key_types = types.to_vec();
        self
    }

    /// Set `MaxStartups`.
    pub fn max_startups(mut self, v: &str) -> Self {
        self.max_startups = v.into();
        self
    }

    /// Also accept this client key for v2xtest.
    pub fn authorize(mut self, key: &ClientKey) -> Self {
        self.authorized_keys.push(key.public_line());
        self
    }

    /// Append a raw sshd_config line.
    pub fn extra(mut self, line: &str) -> Self {
        self.extra_config.push(line.into());
        self
    }
}

/// A running sshd (killed with everything it spawned on drop; temp dir removed).
pub struct Sshd {
    opts: SshdOptions,
    dir: TempDir,
    user: TestUser,
    client_key: ClientKey,
    host_keys: Vec<(KeyType, PathBuf)>,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Sshd {
    /// Start an sshd as described by `opts`; panics (with sshd's log) if it
    /// does not listen within `opts.start_timeout`.
    pub fn start(opts: SshdOptions) -> Sshd {
        assert!(
            !opts.host_key_types.is_empty(),
            "need at least one host key"
        );
        assert!(
            Path::new(SSHD_BIN).exists(),
            "{SSHD_BIN} missing: run .ci/install-deps"
        );
        let user = TestUser::ensure();
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("v2xtest-sshd.")
            .tempdir()
            .expect("sshd temp dir");
        // sshd reads authorized_keys as v2xtest: the dir must be traversable
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let cdir = dir.path().join("client");
        fs::create_dir(&cdir).expect("mkdir client");
        let client_key = ClientKey::generate_in(&cdir, "id_ed25519", KeyType::Ed25519, None);
        fs::create_dir(dir.path().join("hostkeys")).expect("mkdir hostkeys");
        let akdir = dir.path().join("authorized_keys");
        fs::create_dir(&akdir).expect("mkdir authorized_keys");
        fs::set_permissions(&akdir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut ak = client_key.public_line() + "\n";
        for l in &opts.authorized_keys {
            ak.push_str(l.trim());
            ak.push('\n');
        }
        let akfile = akdir.join(user.name);
        fs::write(&akfile, ak).expect("write authorized_keys");
        fs::set_permissions(&akfile, fs::Permissions::from_mode(0o644)).expect("chmod");

        let mut sshd = Sshd {
            addr: SocketAddr::from((opts.address, opts.port.unwrap_or(0))),
            opts,
            dir,
            user,
            client_key,
            host_keys: Vec::new(),
            child: None,
        };
        sshd.generate_host_keys();
        let fixed = sshd.opts.port.is_some();
        sshd.launch(if fixed { 1 } else { 10 }, !fixed);
        sshd
    }

    /// `Sshd::start(SshdOptions::default())`.
    pub fn start_default() -> Sshd {
        Sshd::start(SshdOptions::default())
    }

    fn generate_host_keys(&mut self) {
        self.host_keys.clear();
        for &t in &self.opts.host_key_types {
            let p = self
                .dir
                .path()
                .join("hostkeys")
                .join(format!("ssh_host_{}_key", t.keygen_name()));
            ssh_keygen(t, &p, "", "v2xtest-host");
            self.host_keys.push((t, p));
        }
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let o = &self.opts;
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut c = String::new();
        writeln!(c, "# generated by tests/common/sshd.rs").unwrap();
        writeln!(c, "ListenAddress {}", self.addr).unwrap();
        writeln!(c, "AddressFamily inet").unwrap();
        for (_, k) in &self.host_keys {
            writeln!(c, "HostKey {}", k.display()).unwrap();
        }
        // holds "1" (sshd's PID inside its namespace): use Sshd::sshd_pid()
        writeln!(c, "PidFile {}", d.join("sshd.pid").display()).unwrap();
        writeln!(c, "LogLevel {}", o.log_level).unwrap();
        writeln!(c, "AllowUsers {}", self.user.name).unwrap();
        writeln!(c, "PermitRootLogin no").unwrap();
        writeln!(c, "UsePAM no").unwrap();
        writeln!(
            c,
            "PasswordAuthentication {}",
            yn(o.password_authentication)
        )
        .unwrap();
        writeln!(c, "PermitEmptyPasswords no").unwrap();
        writeln!(c, "KbdInteractiveAuthentication no").unwrap();
        writeln!(c, "PubkeyAuthentication {}", yn(o.pubkey_authentication)).unwrap();
        writeln!(c, "AuthorizedKeysFile {}/authorized_keys/%u", d.display()).unwrap();
        writeln!(c, "StrictModes no").unwrap();
        writeln!(c, "UseDNS no").unwrap();
        writeln!(c, "PrintMotd no").unwrap();
        writeln!(c, "PrintLastLog no").unwrap();
        writeln!(c, "X11Forwarding no").unwrap();
        writeln!(c, "AllowTcpForwarding no").unwrap();
        writeln!(c, "AllowAgentForwarding no").unwrap();
        writeln!(c, "PermitTunnel no").unwrap();
        writeln!(c, "MaxStartups {}", o.max_startups).unwrap();
        writeln!(c, "MaxSessions {}", o.max_sessions).unwrap();
        writeln!(c, "MaxAuthTries {}", o.max_auth_tries).unwrap();
        writeln!(c, "LoginGraceTime {}", o.login_grace_time).unwrap();
        if let Some(v) = &o.ciphers {
            writeln!(c, "Ciphers {v}").unwrap();
        }
        if let Some(v) = &o.macs {
            writeln!(c, "MACs {v}").unwrap();
        }
        if let Some(v) = &o.kex_algorithms {
            writeln!(c, "KexAlgorithms {v}").unwrap();
        }
        writeln!(c, "Subsystem sftp {}", o.sftp_subsystem).unwrap();
        for l in &o.extra_config {
            writeln!(c, "{l}").unwrap();
        }
        fs::write(self.config_path(), c).expect("write sshd_config");
    }

    /// Spawn sshd and wait for it to listen. With `new_port`, pick a free
    /// port per attempt; otherwise retry the same port (a restart).
    fn launch(&mut self, attempts: u32, new_port: bool) {
        let mut last_err = String::new();
        for attempt in 0..attempts {
            if new_port {
                self.addr.set_port(free_port(self.opts.address));
            }
            self.write_config();
            let log_start = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
            self.spawn();
            match self.wait_listening(log_start) {
                Ok(()) => return,
                Err(e) => {
                    self.stop();
                    let addr_in_use = e.contains("Address already in use")
                        || e.contains("Cannot bind any address");
                    last_err = e;
                    if !addr_in_use {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt.min(3) + 1)));
                }
            }
        }
        panic!(
            "sshd did not start on {} (config {}):\n{last_err}",
            self.addr,
            self.config_path().display()
        );
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open sshd log");
        let child = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--",
                SSHD_BIN,
                "-D",
                "-e",
                "-E",
            ])
            .arg(self.log_path())
            .arg("-f")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn unshare/sshd");
        self.child = Some(child);
    }

    fn wait_listening(&mut self, log_start: u64) -> Result<(), String> {
        let needle = format!(
            "Server listening on {} port {}",
            self.addr.ip(),
            self.addr.port()
        );
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            let log = self.log();
            let new = log.get(log_start as usize..).unwrap_or("");
            if new.contains(&needle) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("try_wait")
                .map(|s| format!("sshd exited ({s})"));
            if let Some(why) = exited {
                return Err(format!("{why}; log:\n{new}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not listening after {:?}; log:\n{new}",
                    self.opts.start_timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kill sshd and every process of its connections (idempotent). The port
    /// then refuses connections; [`Sshd::restart`] brings it back.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().expect("try_wait").is_none() {
            // sshd is PID 1 of the namespace: killing it kills the namespace;
            // unshare (still alive) reaps it and exits.
            for pid in children_of(child.id()) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().expect("try_wait").is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = child.wait();
    }

    /// Stop and start again on the same address, port and host keys.
    pub fn restart(&mut self) {
        self.stop();
        self.launch(40, false);
    }

    /// Stop, generate NEW host keys (same types), start on the same address
    /// and port: a client holding the old known_hosts sees a changed host key.
    pub fn restart_with_new_host_keys(&mut self) {
        self.stop();
        self.generate_host_keys();
        self.launch(40, false);
    }

    /// Whether sshd is running (not stopped, not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Host PID of the listening sshd, while running.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.child
            .as_ref()
            .and_then(|c| children_of(c.id()).into_iter().next())
    }

    /// Host PIDs of sshd and all processes it spawned (listener first).
    pub fn pids(&self) -> Vec<u32> {
        match &self.child {
            Some(c) => descendants_of(c.id()),
            None => Vec::new(),
        }
    }

    /// Listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Listen port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Listen IP as a string (`"127.0.0.1"`).
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The test user the sshd accepts.
    pub fn user(&self) -> &TestUser {
        &self.user
    }

    /// Unencrypted ed25519 client key authorised for v2xtest on this sshd.
    pub fn client_key(&self) -> &ClientKey {
        &self.client_key
    }

    /// This sshd's temp dir (config, keys, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of sshd_config.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// Path of the log file (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// Whole log so far (all starts).
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Number of log lines containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// How many times a client got as far as offering a password (a host
    /// key check must come first).
    pub fn password_attempts(&self) -> usize {
        self.log_count("password for")
    }

    /// Poll the log until it contains `needle` (sshd may log a moment after
    /// the client saw the result); false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Host key types this sshd has.
    pub fn host_key_types(&self) -> Vec<KeyType> {
        self.host_keys.iter().map(|(t, _)| *t).collect()
    }

    /// Public host key as `"<type> <base64>"` (no comment). Panics if the
    /// sshd has no key of that type.
    pub fn host_key_public(&self, kind: KeyType) -> String {
        let (_, p) = self
            .host_keys
            .iter()
            .find(|(t, _)| *t == kind)
            .unwrap_or_else(|| panic!("sshd has no {kind:?} host key"));
        let line = fs::read_to_string(pub_path(p)).expect("read host pub key");
        let mut it = line.split_whitespace();
        format!("{} {}", it.next().expect("type"), it.next().expect("blob"))
    }

    /// Raw public host key blob (what `ssh2::Session::host_key()` returns).
    pub fn host_key_blob(&self, kind: KeyType) -> Vec<u8> {
        let line = self.host_key_public(kind);
        let b64 = line.split(' ').nth(1).expect("blob");
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64 host key")
    }

    /// `SHA256:...` fingerprint as ssh-keygen -l / ssh print it.
    pub fn host_key_fingerprint(&self, kind: KeyType) -> String {
        let digest = Sha256::digest(self.host_key_blob(kind));
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    /// known_hosts host field: `127.0.0.1` on port 22, else `[127.0.0.1]:PORT`.
    pub fn known_hosts_host(&self) -> String {
        if self.port() == 22 {
            self.host()
        } else {
            format!("[{}]:{}", self.host(), self.port())
        }
    }

    /// known_hosts lines as ssh-keyscan prints them, one per host key
    /// (`[127.0.0.1]:PORT ssh-ed25519 AAAA...\n`).
    pub fn known_hosts_lines(&self) -> String {
        self.known_hosts_lines_for(&self.known_hosts_host())
    }

    /// Same with another host field (e.g. a name, or `[other]:port`).
    pub fn known_hosts_lines_for(&self, host_field: &str) -> String {
        self.host_keys
            .iter()
            .map(|(t, _)| format!("{host_field} {}\n", self.host_key_public(*t)))
            .collect()
    }

    /// Write [`Sshd::known_hosts_lines`] to `<dir>/known_hosts` (rewritten on
    /// each call, so call again after a host key change if you want the new
    /// keys) and return its path.
    pub fn known_hosts_file(&self) -> PathBuf {
        let p = self.dir.path().join("known_hosts");
        fs::write(&p, self.known_hosts_lines()).expect("write known_hosts");
        p
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "---- sshd {} log (last {} lines) ----\n{}\n---- end sshd log ----",
                self.addr,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// A port on `ip` that was free a moment ago (bound to port 0, then released).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    let l = TcpListener::bind((ip, 0)).expect("bind port 0");
    l.local_addr().expect("local_addr").port()
}

/// (pid, ppid) of every process, from /proc.
fn process_table() -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..." — comm may contain spaces and parens
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            out.push((pid, ppid));
        }
    }
    out
}

fn children_of(pid: u32) -> Vec<u32> {
    process_table()
        .into_iter()
        .filter(|&(_, pp)| pp == pid)
        .map(|(p, _)| p)
        .collect()
}

fn descendants_of(root: u32) -> Vec<u32> {
    let table = process_table();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &table {
            if pp == p {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}
