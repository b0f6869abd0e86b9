//! `trust`: fetch a coprocessor's host key (TCP and SSH handshake only, no
//! authentication), show its fingerprint, and on confirmation add it to the
//! known_hosts file.
//!
//! The rules, because this is the whole trust decision for a roadside
//! computer:
//!
//! - Nothing is ever sent to the host but the handshake: no user name, no
//!   password, no key signature ([`session::fetch_host_key`]).
//! - A key that is already trusted changes nothing.
//! - A key that differs from what the file already lists for that
//!   `host:port` (a reinstalled coprocessor, or a man-in-the-middle) is
//!   never added or replaced, not even with `--yes`: the operator removes the
//!   old line by hand (`ssh-keygen -R`) after finding out why it changed.
//!   The same goes for a key marked `@revoked`.
//! - The file is rewritten atomically (temporary file in the same folder,
//!   fsync, rename, folder fsync), keeping its mode and owner, so a crash or
//!   a concurrent pass never sees half a file. A symlinked file is written
//!   through to its target.

use std::fmt;
use std::fs::{self};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::commands::Exit;
use crate::common::durable::{self, Ownership};
use crate::common::scoped::each_intersection;
use crate::config::{Config, Intersection};
use crate::ssh::known_hosts::{self, KnownHosts, Verdict};
use crate::ssh::session::{self, HostKey, RemoteError};

/// How many hosts are asked for their key at once.
const FETCH_PARALLEL: usize = 16;

/// How an unknown key gets confirmed.
pub enum Confirm<'a> {
    /// `--yes`: the operator compared the fingerprints beforehand.
    Yes,
    /// Ask; the function gets the question and returns the answer.
    Ask(&'a mut dyn FnMut(&str) -> io::Result<bool>),
    /// No terminal and no `--yes`: show the key, add nothing.
    No,
}

/// What happened to one intersection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    AlreadyTrusted,
    Added,
    Declined,
    /// Changed or revoked key: refused whatever the confirmation.
    Refused,
    /// Unreachable, no SSH, or the file could not be written.
    Failed,
}

impl Outcome {
    /// Whether the intersection's key is trusted now.
    pub fn trusted(&self) -> bool {
        matches!(self, Outcome::AlreadyTrusted | Outcome::Added)
    }
}

/// Fetches every intersection's key (in parallel), then decides one by one,
/// in config order, writing the known_hosts file after each key added.
/// Messages go to `out`; the result is one outcome per intersection.
pub fn trust(
    config: &Config,
    intersections: &[Intersection],
    mut confirm: Confirm<'_>,
    out: &mut dyn Write,
) -> Vec<(String, Outcome)> {
    let keys = fetch_all(config, intersections);
    let mut results = Vec::new();
    for (ix, key) in intersections.iter().zip(keys) {
        let outcome = match key {
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{}: cannot fetch the host key: {e}\n  nothing changed",
                    ix.name
                );
                Outcome::Failed
            }
            Ok(key) => decide(config, ix, &key, &mut confirm, out),
        };
        results.push((ix.name.clone(), outcome));
    }
    results
}

fn fetch_all(config: &Config, intersections: &[Intersection]) -> Vec<Result<HostKey, FetchError>> {
    // Read once for the restriction of host-key types; decisions re-read
    // the file, since an earlier decision may have added to it.
    let known = KnownHosts::load(&config.known_hosts).map(|(k, _)| k);
    each_intersection(
        intersections,
        FETCH_PARALLEL,
        |ix| &ix.name,
        |ix| {
            let types = match &known {
                Ok(k) => k.key_types_for(&ix.host, ix.port),
                Err(_) => Vec::new(),
            };
            session::fetch_host_key(ix, &types, &config.transfer).map_err(FetchError::Remote)
        },
        |_| Err(FetchError::Panicked),
    )
}

#[derive(Debug)]
enum FetchError {
    Remote(RemoteError),
    Panicked,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Remote(e) => e.fmt(f),
            FetchError::Panicked => f.write_str("the fetching thread panicked (a bug)"),
        }
    }
}

/// The command that removes every line for `host:port` from `file`.
pub fn removal_command(host: &str, port: u16, file: &Path) -> String {
    format!(
        "ssh-keygen -R '{}' -f '{}'",
        known_hosts::host_port_name(host, port),
        file.display()
    )
}

fn decide(
    config: &Config,
    ix: &Intersection,
    key: &HostKey,
    confirm: &mut Confirm<'_>,
    out: &mut dyn Write,
) -> Outcome {
    let file = &config.known_hosts;
    let addr = known_hosts::host_port_name(&ix.host, ix.port);
    let fingerprint = known_hosts::fingerprint_sha256(&key.blob);
    let _ = writeln!(
        out,
        "{} ({addr}) offers {} {fingerprint}",
        ix.name, key.key_type
    );
    let known = match KnownHosts::load(file) {
        Ok((k, _)) => k,
        Err(e) => {
            let _ = writeln!(out, "  {e}");
            return Outcome::Failed;
        }
    };
    match known.check(&ix.host, ix.port, key.key_type, &key.blob) {
        Verdict::Match => {
            let _ = writeln!(
                out,
                "  already trusted in {}; nothing changed",
                file.display()
            );
            Outcome::AlreadyTrusted
        }
        Verdict::Revoked => {
            let _ = writeln!(
                out,
                "  REFUSED: this key is marked @revoked in {}; it is not added. Find out why it \
                 was revoked before doing anything else; nothing changed",
                file.display()
            );
            Outcome::Refused
        }
        Verdict::Mismatch { known_types } => {
            let _ = writeln!(
                out,
                "  REFUSED: THE HOST KEY OF {addr} HAS CHANGED.\n  \
                 {} lists {} for it, but not this key: a man-in-the-middle attack, or the\n  \
                 coprocessor was reinstalled. Nothing changed, and --yes does not change that.\n  \
                 Once you have confirmed on the coprocessor itself (`ssh-keygen -lf \
                 /etc/ssh/ssh_host_{}_key.pub`)\n  that {fingerprint} is its key, remove the old \
                 entry and trust again:\n    {}\n    v2x-data-sftp-client trust {}",
                file.display(),
                known_types.join(", "),
                short_type(key.key_type),
                removal_command(&ix.host, ix.port, file),
                ix.name,
            );
            Outcome::Refused
        }
        Verdict::Unknown => {
            let line = known_hosts::known_hosts_line(&ix.host, ix.port, key.key_type, &key.blob);
            let yes = match confirm {
                Confirm::Yes => true,
                Confirm::No => {
                    let _ = writeln!(
                        out,
                        "  not trusted yet, nothing changed: compare the fingerprint with \
                         `ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub` on the coprocessor, then \
                         confirm on a terminal or pass --yes",
                        short_type(key.key_type)
                    );
                    return Outcome::Declined;
                }
                Confirm::Ask(ask) => {
                    let _ = writeln!(
                        out,
                        "  compare with `ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub` on the coprocessor",
                        short_type(key.key_type)
                    );
                    let _ = out.flush();
                    match ask(&format!("Trust this key for {} ({addr})? [y/N] ", ix.name)) {
                        Ok(answer) => answer,
                        Err(e) => {
                            let _ =
                                writeln!(out, "  cannot read the answer ({e}); nothing changed");
                            false
                        }
                    }
                }
            };
            if !yes {
                let _ = writeln!(out, "  not trusted; nothing changed");
                return Outcome::Declined;
            }
            let comment = format!(
                "# {} ({addr}), added by v2x-data-sftp-client trust on {} UTC",
                ix.name,
                crate::common::clock::utc(crate::common::clock::unix_now())
            );
            match append_lines(file, &[&comment, &line]) {
                Ok(()) => {
                    let _ = writeln!(out, "  added to {}: {line}", file.display());
                    Outcome::Added
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "  cannot update {}: {e}; nothing changed",
                        file.display()
                    );
                    Outcome::Failed
                }
            }
        }
    }
}

/// `ssh-ed25519` → `ed25519`, as in the coprocessor's key file names.
fn short_type(key_type: &str) -> &str {
    match key_type {
        "ssh-ed25519" => "ed25519",
        "ssh-rsa" => "rsa",
        "ssh-dss" => "dsa",
        t if t.starts_with("ecdsa-") => "ecdsa",
        t => t,
    }
}

/// Appends `lines` to the file atomically: the old content plus the new
/// lines go to a temporary file beside it (same mode and owner), which is
/// fsynced and renamed over it, then the folder is fsynced.
///
/// # Errors
/// The file (or the one a symlink names) cannot be resolved, stat'ed or
/// read, or the replacement cannot be written, synced, given the file's
/// owner, or renamed over it; the file is then left as it was.
pub fn append_lines(path: &Path, lines: &[&str]) -> io::Result<()> {
    // Write through a symlink to the file it names, keeping the link.
    let target: PathBuf = fs::canonicalize(path)?;
    let _dir = target
        .parent()
        .ok_or_else(|| io::Error::other("the file has no parent folder"))?;
    let meta = fs::metadata(&target)?;
    let mut text = fs::read(&target)?;
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    for l in lines {
        text.extend_from_slice(l.as_bytes());
        text.push(b'\n');
    }
    let own = Ownership {
        mode: meta.mode() & 0o7777,
        owner: Some((meta.uid(), meta.gid())),
    };
    durable::replace_file(&target, &text, own)
}

/// `trust`: asks on a terminal, adds with `--yes`, else only shows. Exit 0
/// when every selected intersection's key is trusted afterwards.
pub fn command(config: &Config, selected: &[Intersection], yes: bool) -> Exit {
    let mut ask = |question: &str| -> io::Result<bool> {
        let mut stdout = io::stdout();
        write!(stdout, "{question}")?;
        stdout.flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        let answer = answer.trim().to_ascii_lowercase();
        Ok(answer == "y" || answer == "yes")
    };
    let confirm = if yes {
        Confirm::Yes
    } else if io::stdin().is_terminal() {
        Confirm::Ask(&mut ask)
    } else {
        Confirm::No
    };
    let results = trust(config, selected, confirm, &mut io::stdout());
    if results.iter().all(|(_, o)| o.trusted()) {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn append_keeps_content_mode_and_adds_missing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("known_hosts");
        fs::write(&p, "a ssh-ed25519 AAAA").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        append_lines(&p, &["# c", "b ssh-ed25519 BBBB"]).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "a ssh-ed25519 AAAA\n# c\nb ssh-ed25519 BBBB\n"
        );
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn append_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, "").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        append_lines(&link, &["x ssh-ed25519 AAAA"]).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "x ssh-ed25519 AAAA\n");
    }

    #[test]
    fn removal_command_names_port_form() {
        assert_eq!(
            removal_command("10.0.0.1", 2222, Path::new("/k")),
            "ssh-keygen -R '[10.0.0.1]:2222' -f '/k'"
        );
        assert_eq!(
            removal_command("10.0.0.1", 22, Path::new("/k")),
            "ssh-keygen -R '10.0.0.1' -f '/k'"
        );
    }
}
