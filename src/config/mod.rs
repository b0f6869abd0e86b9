//! The configuration: what serde reads, and the validated value the program
//! runs on.
//!
//! Two layers, as in ripgrep's low/high args: a file is read into a
//! [`Draft`] (every key optional, with its key path and line) and the draft
//! is validated into the [`Config`] the program runs on, by the same code
//! for both formats, so `check-config` and `run` can never disagree.
//! Validation collects every problem it can find rather than stopping at
//! the first, each naming file, key and line.
//!
//! | module | owns |
//! | --- | --- |
//! | this file | the model ([`Config`] and its parts), defaults, `load` |
//! | [`toml_file`] | the TOML file as serde reads it (spans, `deny_unknown_fields`: a typo is an error, never a silent default) → draft |
//! | [`legacy`] | the seed's JSON → draft, and `import-legacy-config` |
//! | [`draft`] | the intermediate form both formats become |
//! | [`validate`] | draft → [`Config`], every problem with file, key and line |
//! | [`diagnostics`] | [`ConfigError`]: `FILE:LINE: KEY: MESSAGE` |
//! | [`algorithms`] | the SSH ciphers, MACs and key exchanges offered by default (measured order), and what this libssh2 supports |

pub mod algorithms;
mod diagnostics;
mod draft;
pub mod legacy;
pub mod reference;
mod toml_file;
mod validate;

pub use diagnostics::{ConfigError, ConfigErrors};
pub(crate) use draft::{
    Draft, Format, IntersectionDraft, Item, SizeInput, StartInput, TransferDraft,
};
use validate::validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::credentials::{self, CredentialError};
use crate::common::secret::Secret;
pub use algorithms::Algorithms;

/// Where the package puts the config; `--config` overrides it.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/v2x-data-sftp-client/config.toml";
/// Where the package puts the known_hosts file; the `known_hosts` key overrides it.
pub const DEFAULT_KNOWN_HOSTS: &str = "/etc/v2x-data-sftp-client/known_hosts";
/// Where the last run's summary and the single-instance lock live.
pub const DEFAULT_STATE_DIRECTORY: &str = "/var/lib/v2x-data-sftp-client";
/// The five MMITSS data elements, in the order the contract names them.
pub const DEFAULT_ELEMENTS: [&str; 5] = ["spat", "remoteBsm", "srm", "ssm", "msgCount"];

/// The validated configuration a pass runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    /// Absolute; pulled data lands under `<data_directory>/<intersection>/`.
    pub data_directory: PathBuf,
    /// Absolute; holds `last-run.json` and the lock file.
    pub state_directory: PathBuf,
    /// OpenSSH known_hosts file every host key is checked against. Exists.
    pub known_hosts: PathBuf,
    /// Element names files are routed to, e.g. `spat`.
    pub elements: Vec<String>,
    /// Daily start time for the timer (the generator reads it); `None` means the default 00:00.
    pub start_time: Option<StartTime>,
    pub transfer: Transfer,
    /// At least one; names unique.
    pub intersections: Vec<Intersection>,
    /// `status` flags an intersection whose last success is older than this.
    pub stale_after: Duration,
    /// Prometheus node_exporter textfile written after every pass, if set.
    pub metrics_textfile: Option<PathBuf>,
}

/// Default of `status.stale_after`: a nightly pass that failed once is not
/// stale yet, one that failed twice in a row is.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(36 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartTime {
    pub hour: u8,
    pub minute: u8,
}

/// How a pass behaves; every field has a default (see [`Transfer::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// Intersections worked on at once.
    pub parallel_intersections: usize,
    /// TCP connect plus SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Any single SSH/SFTP call.
    pub io_timeout: Duration,
    /// Whole-intersection bound: a trickling peer defeats per-call timeouts.
    pub intersection_deadline: Duration,
    /// Extra attempts after a connection failure, within the deadline.
    pub retries: u32,
    /// Wait before the first retry; doubles each time.
    pub retry_backoff: Duration,
    /// Files directly in `archive/` modified more recently than this are
    /// left for the next pass (see [`crate::transfer::rules::too_young`]).
    pub min_age: Duration,
    /// An intersection stops cleanly when a file would leave less than this free.
    pub min_free_bytes: u64,
    /// Names one pass lists in one intersection's `archive/` at most: a
    /// listing that never ends must not grow the process without bound.
    pub max_listed_entries: u64,
    /// SSH algorithms offered, in order ([`algorithms`]).
    pub algorithms: Algorithms,
    /// How a file is checked before its remote copy is removed.
    pub verify: Verify,
}

/// `transfer.verify`: what must agree before a remote file is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// `sha256` where the account may run `sha256sum` (probed once per
    /// connection), `size` elsewhere.
    #[default]
    Auto,
    /// The coprocessor's `sha256sum` must match the bytes landed; an account
    /// that cannot run it stops the intersection, nothing removed.
    Sha256,
    /// Byte count, size and mtime before and after the download only.
    Size,
}

impl Verify {
    pub fn as_str(self) -> &'static str {
        match self {
            Verify::Auto => "auto",
            Verify::Sha256 => "sha256",
            Verify::Size => "size",
        }
    }
}

/// A generous bound: a year of MMITSS sessions is some ten thousand files,
/// and a million listed names cost about 150 MiB here.
pub const DEFAULT_MAX_LISTED_ENTRIES: u64 = 1_000_000;

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            parallel_intersections: 4,
            connect_timeout: Duration::from_secs(20),
            io_timeout: Duration::from_secs(60),
            intersection_deadline: Duration::from_secs(4 * 3600),
            retries: 3,
            retry_backoff: Duration::from_secs(5),
            min_age: Duration::from_secs(120),
            min_free_bytes: 1 << 30,
            max_listed_entries: DEFAULT_MAX_LISTED_ENTRIES,
            algorithms: Algorithms::default(),
            verify: Verify::Auto,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Intersection {
    /// A single safe path component, unique in the config.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: Auth,
    /// The coprocessor's `v2x-data` folder; `archive/` below it is pulled.
    pub v2x_data_location: String,
    /// SSH zlib compression: `Some` as configured, `None` to decide per
    /// connection from the link's latency ([`crate::ssh::session`]).
    pub compression: Option<bool>,
}

/// Exactly one way to authenticate. Files and credentials are read when
/// connecting, so an unreadable one fails only its intersection.
#[derive(Debug, Clone)]
pub enum Auth {
    Password(Secret),
    /// `password_file` or `password_credential`.
    PasswordFrom(SecretSource),
    /// `private_key` or `private_key_credential`, with `passphrase_file` or
    /// `passphrase_credential` when the key has one.
    PrivateKey {
        key: SecretSource,
        passphrase: Option<SecretSource>,
    },
}

/// Where a password, passphrase or private key is read from at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file the config names (`*_file`, `private_key`).
    File(PathBuf),
    /// A systemd credential the unit loads (`*_credential`): a file in
    /// `$CREDENTIALS_DIRECTORY`, there only while the unit runs.
    Credential(String),
}

impl SecretSource {
    /// The file to read: the configured path, or where systemd put the
    /// credential for this process.
    ///
    /// # Errors
    /// A credential this process cannot see, with what to do about it.
    pub fn path(&self) -> Result<PathBuf, CredentialError> {
        match self {
            SecretSource::File(p) => Ok(p.clone()),
            SecretSource::Credential(name) => credentials::path(name),
        }
    }

    /// The config key it came from, for messages: `password_file`,
    /// `private_key_credential`, …
    pub fn key(&self, file_key: &'static str, credential_key: &'static str) -> &'static str {
        match self {
            SecretSource::File(_) => file_key,
            SecretSource::Credential(_) => credential_key,
        }
    }
}

// ---------------------------------------------------------------------------
// Loading and validation
// ---------------------------------------------------------------------------

/// A validated config plus what the operator should hear about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Problems that do not stop a pass (e.g. a world-readable password file).
    pub warnings: Vec<String>,
}

/// Reads `path`; a legacy JSON file is recognised by its content (first
/// non-whitespace char is '{'), otherwise TOML.
///
/// # Errors
/// Every problem found, each naming file, key and line where it can: the
/// file cannot be read or is not UTF-8; a syntax error, a value of the
/// wrong type or an unknown key (alone: the parser stops there); then
/// every invalid or missing value, and a known_hosts file that does not
/// exist.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_with(
        path,
        Checks {
            known_hosts_exists: true,
        },
    )
}

/// What `check-config` finds about the secrets the config points to.
#[derive(Debug, Default)]
pub struct SecretCheck {
    /// Files (and credentials this process can see) that exist but cannot
    /// be used: config errors.
    pub errors: Vec<ConfigError>,
    /// Credentials this process cannot see, each with why that is expected
    /// (outside the unit) or what to add to the unit. Not errors: systemd
    /// hands credentials to the unit only.
    pub unseen_credentials: Vec<String>,
}

/// Checks done by `check-config` but not by `load`: files referenced by auth
/// settings exist and are readable by this process, and which credentials
/// it can see. `run` reads them at connect time instead, so an unreadable
/// one fails only its intersection.
pub fn check_secret_files(config: &Config) -> SecretCheck {
    let lines = secret_file_lines(&config.source);
    let mut out = SecretCheck::default();
    for (i, intersection) in config.intersections.iter().enumerate() {
        let sources: Vec<(&str, &SecretSource)> = match &intersection.auth {
            Auth::Password(_) => Vec::new(),
            Auth::PasswordFrom(s) => vec![(s.key("password_file", "password_credential"), s)],
            Auth::PrivateKey { key, passphrase } => {
                let mut v = vec![(key.key("private_key", "private_key_credential"), key)];
                if let Some(p) = passphrase {
                    v.push((p.key("passphrase_file", "passphrase_credential"), p));
                }
                v
            }
        };
        for (field, source) in sources {
            let key = format!("intersections[{i}].{field}");
            let file = match source.path() {
                Ok(file) => file,
                Err(e) => {
                    let line = lines.get(&key).copied();
                    match e.why {
                        // Outside any unit: expected, a note, not an error.
                        credentials::Unavailable::NoDirectory => {
                            let note = ConfigError::new(
                                &config.source,
                                Some(key),
                                line,
                                format!(
                                    "credential {name:?} cannot be seen here: ${var} is not \
                                     set. That is expected outside the unit: systemd hands \
                                     credentials only to v2x-data-sftp-client.service, which \
                                     must load it (LoadCredentialEncrypted={name}:PATH in a \
                                     drop-in), and a pass it starts reads it there",
                                    name = e.name,
                                    var = credentials::DIRECTORY_VARIABLE,
                                ),
                            );
                            out.unseen_credentials.push(note.to_string());
                        }
                        // Inside a unit that loads credentials, but not this
                        // one: a real mistake.
                        credentials::Unavailable::NotLoaded { .. } => {
                            out.errors.push(ConfigError::new(
                                &config.source,
                                Some(key),
                                line,
                                format!(
                                    "{e}; intersection {:?} cannot authenticate until this is \
                                     fixed",
                                    intersection.name
                                ),
                            ));
                        }
                    }
                    continue;
                }
            };
            let file = file.as_path();
            if let Err(why) = check_readable_file(file) {
                let key = format!("intersections[{i}].{field}");
                let line = lines.get(&key).copied();
                out.errors.push(ConfigError::new(
                    &config.source,
                    Some(key),
                    line,
                    format!(
                        "{}: {why}; intersection {:?} cannot authenticate until this is fixed",
                        file.display(),
                        intersection.name
                    ),
                ));
            }
        }
    }
    out
}

/// Opens the file for reading, the way the connect code will.
fn check_readable_file(path: &Path) -> Result<(), String> {
    use std::io::ErrorKind;
    match crate::common::secret::open_secret_file(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::InvalidInput => Err(e.to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err("does not exist; create it or fix the path".into())
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(format!(
            "cannot be read by this process ({e}); make it readable by the user the service \
             runs as (e.g. owner root, that user's group, mode 640)"
        )),
        Err(e) => Err(format!("cannot be opened ({e})")),
    }
}

/// Lines of the secret-file keys, found by reading the config again: the
/// validated [`Config`] carries no positions.
fn secret_file_lines(source: &Path) -> HashMap<String, usize> {
    let mut lines = HashMap::new();
    let Ok(bytes) = std::fs::read(source) else {
        return lines;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return lines;
    };
    let Ok(draft) = parse_text(source, &text) else {
        return lines;
    };
    if let Some(list) = &draft.intersections {
        for i in &list.value {
            for item in [&i.password_file, &i.private_key, &i.passphrase_file]
                .into_iter()
                .flatten()
            {
                if let Some(line) = item.line {
                    lines.insert(item.key.clone(), line);
                }
            }
            for item in [
                &i.password_credential,
                &i.private_key_credential,
                &i.passphrase_credential,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(line) = item.line {
                    lines.insert(item.key.clone(), line);
                }
            }
        }
    }
    lines
}

/// Which checks touch the file system beyond the config file itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checks {
    /// The contract makes a missing known_hosts file a config error; the
    /// legacy import must work before that file is created.
    pub known_hosts_exists: bool,
}

/// [`load`], with only the file-system `checks` asked for.
///
/// # Errors
/// As [`load`].
pub(crate) fn load_with(path: &Path, checks: Checks) -> Result<Loaded, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            path,
            None,
            None,
            format!(
                "cannot read the config file ({e}); check the path, or give another with --config"
            ),
        )])
    })?;
    let text = utf8_text(path, bytes).map_err(|e| ConfigErrors(vec![e]))?;
    let draft = parse_text(path, &text).map_err(ConfigErrors)?;
    let config = validate(path, draft, checks).map_err(ConfigErrors)?;
    let warnings = warnings(&config);
    Ok(Loaded { config, warnings })
}

/// The file as text, with a line number when it is not UTF-8.
///
/// # Errors
/// The bytes are not UTF-8: the error names the line of the first bad byte.
pub(crate) fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        ConfigError::new(
            path,
            None,
            Some(line),
            "is not UTF-8 text; a config file is TOML (or the legacy JSON), save it as UTF-8",
        )
    })
}

/// Picks the format by content, so `--config` accepts either file.
fn parse_text(path: &Path, text: &str) -> Result<Draft, Vec<ConfigError>> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if is_legacy_json(body) {
        legacy::parse(path, body).map(|(draft, _)| draft)
    } else {
        toml_file::parse(path, body)
    }
}

/// The seed's JSON starts with `{`; a TOML document never does.
pub(crate) fn is_legacy_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// 1-based line of a byte offset (clamped to the text).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

fn warnings(config: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut warnings = Vec::new();
    let holds_password = config
        .intersections
        .iter()
        .any(|i| matches!(i.auth, Auth::Password(_)));
    if holds_password && let Ok(meta) = std::fs::metadata(&config.source) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o004 != 0 {
            warnings.push(format!(
                "{} holds a password and every user on this machine can read it (mode {mode:04o}); \
                 run `chmod 640 {}` (owner root, group of the service user), or move the \
                 password to a password_file",
                config.source.display(),
                config.source.display()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests;
