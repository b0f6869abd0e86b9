//! The system user the test sshds accept (`v2xtest`) and client key pairs.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::User;
use tempfile::TempDir;

use super::run_cmd;

/// Login name of the test user every test sshd accepts (`AllowUsers`).
pub const TEST_USER: &str = "v2xtest";
/// Password of [`TEST_USER`], set with chpasswd by [`TestUser::ensure`].
pub const TEST_PASSWORD: &str = "v2xtest-Pw.7319";
/// Lock file serialising user creation across threads and test processes.
pub const USER_LOCK_FILE: &str = "/tmp/v2xtest-user.lock";

/// The `v2xtest` system user (created on first use, password reset once per
/// test process).
#[derive(Clone, Debug)]
pub struct TestUser {
    /// Login name ([`TEST_USER`]).
    pub name: &'static str,
    /// Password ([`TEST_PASSWORD`]).
    pub password: &'static str,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
    /// Home directory (created by `useradd -m`).
    pub home: PathBuf,
}

impl TestUser {
    /// Make sure `v2xtest` exists with [`TEST_PASSWORD`]. Idempotent and safe
    /// from parallel threads and processes (flock on [`USER_LOCK_FILE`]); the
    /// work is done once per process, later calls return the cached value.
    pub fn ensure() -> TestUser {
        static USER: OnceLock<TestUser> = OnceLock::new();
        USER.get_or_init(create_user).clone()
    }
}

fn lock_user_db() -> Flock<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o666)
        .open(USER_LOCK_FILE)
        .expect("open user lock file");
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock user lock file")
}

fn create_user() -> TestUser {
    let _lock = lock_user_db();
    let existing = User::from_name(TEST_USER).expect("getpwnam");
    if existing.is_none() {
        run_cmd(
            Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", "-c", "v2x-data-sftp-client tests"])
                .arg(TEST_USER),
        );
    }
    let u = User::from_name(TEST_USER)
        .expect("getpwnam")
        .expect("v2xtest exists after useradd");
    run_cmd_input(
        &mut Command::new("chpasswd"),
        &format!("{TEST_USER}:{TEST_PASSWORD}\n"),
    );
    // sshd chdirs there; useradd -m made it, but a half-created user may lack it.
    if !u.dir.is_dir() {
        std::fs::create_dir_all(&u.dir).expect("create v2xtest home");
        std::os::unix::fs::chown(&u.dir, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
            .expect("chown v2xtest home");
    }
    TestUser {
        name: TEST_USER,
        password: TEST_PASSWORD,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    }
}

fn run_cmd_input(cmd: &mut Command, input: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SSH key algorithm families, for host keys and client keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ssh-ed25519 (the default).
    Ed25519,
    /// ssh-rsa, 2048 bits (small to keep key generation fast).
    Rsa,
    /// ecdsa-sha2-nistp256.
    Ecdsa,
}

impl KeyType {
    /// All three types.
    pub const ALL: [KeyType; 3] = [KeyType::Ed25519, KeyType::Rsa, KeyType::Ecdsa];

    /// `-t` argument of ssh-keygen.
    pub fn keygen_name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa => "rsa",
            KeyType::Ecdsa => "ecdsa",
        }
    }

    /// Key type name as in known_hosts / authorized_keys lines
    /// (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`).
    pub fn ssh_name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ssh-ed25519",
            KeyType::Rsa => "ssh-rsa",
            KeyType::Ecdsa => "ecdsa-sha2-nistp256",
        }
    }

    fn keygen_extra(self) -> &'static [&'static str] {
        match self {
            KeyType::Ed25519 => &[],
            KeyType::Rsa => &["-b", "2048"],
            KeyType::Ecdsa => &["-b", "256"],
        }
    }
}

/// Run ssh-keygen to create `path` and `path.pub` (mode 0600 private key).
pub fn ssh_keygen(kind: KeyType, path: &Path, passphrase: &str, comment: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(pub_path(path));
    run_cmd(
        Command::new("ssh-keygen")
            .args(["-q", "-t", kind.keygen_name()])
            .args(kind.keygen_extra())
            .args(["-N", passphrase, "-C", comment, "-f"])
            .arg(path),
    );
}

/// `<path>.pub`.
pub fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// A client key pair made with ssh-keygen, usable for public-key auth against
/// a test sshd once its public line is in the sshd's authorized_keys (each
/// [`super::Sshd`] authorises its own [`super::Sshd::client_key`]; others via
/// [`super::SshdOptions::authorize`]).
#[derive(Debug)]
pub struct ClientKey {
    _dir: Option<TempDir>,
    kind: KeyType,
    private: PathBuf,
    public: PathBuf,
    passphrase: Option<String>,
}

impl ClientKey {
    /// New ed25519 key pair in its own temp dir (removed on drop), optionally
    /// encrypted with `passphrase`.
    pub fn generate(passphrase: Option<&str>) -> ClientKey {
        ClientKey::generate_typed(KeyType::Ed25519, passphrase)
    }

    /// Like [`ClientKey::generate`] with a chosen key type.
    pub fn generate_typed(kind: KeyType, passphrase: Option<&str>) -> ClientKey {
        let dir = tempfile::Builder::new()
            .prefix("v2xtest-key.")
            .tempdir()
            .expect("key temp dir");
        let mut k = ClientKey::generate_in(dir.path(), "id_client", kind, passphrase);
        k._dir = Some(dir);
        k
    }

    /// Key pair `<dir>/<name>` and `<dir>/<name>.pub` (the files live as long as `dir`).
    pub fn generate_in(
        dir: &Path,
        name: &str,
        kind: KeyType,
        passphrase: Option<&str>,
    ) -> ClientKey {
        let private = dir.join(name);
        ssh_keygen(kind, &private, passphrase.unwrap_or(""), "v2xtest-client");
        let public = dir.join(format!("{name}.pub"));
        // readable by anyone: sshd is not the reader, but tests may copy it around
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644))
            .expect("chmod pub key");
        ClientKey {
            _dir: None,
            kind,
            private,
            public,
            passphrase: passphrase.map(str::to_owned),
        }
    }

    /// Path of the private key file (OpenSSH format, mode 0600).
    pub fn private_path(&self) -> &Path {
        &self.private
    }

    /// Path of the `.pub` file.
    pub fn public_path(&self) -> &Path {
        &self.public
    }

    /// Passphrase the private key is encrypted with, if any.
    pub fn passphrase(&self) -> Option<&str> {
        self.passphrase.as_deref()
    }

    /// Key type.
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// The authorized_keys line (`ssh-ed25519 AAAA... v2xtest-client`), no newline.
    pub fn public_line(&self) -> String {
        std::fs::read_to_string(&self.public)
            .expect("read pub key")
            .trim()
            .to_owned()
    }
}
