//! The configuration: what serde reads, and the validated value the program
//! runs on.
//!
//! Two layers, as in ripgrep's low/high args: [`raw`] holds the serde types
//! read from TOML (with spans and `deny_unknown_fields`, so a typo is an
//! error and never a silent default) and [`legacy`] the seed's JSON; both are
//! validated into [`Config`] by the same code, so `check-config` and `run`
//! can never disagree. Validation collects every problem it can find rather
//! than stopping at the first, each naming file, key and line.

pub mod legacy;
pub mod raw;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::algorithms::{self, Algorithms};
use crate::secret::Secret;

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
    /// left for the next pass (see [`crate::pipeline::too_young`]).
    pub min_age: Duration,
    /// An intersection stops cleanly when a file would leave less than this free.
    pub min_free_bytes: u64,
    /// Names one pass lists in one intersection's `archive/` at most: a
    /// listing that never ends must not grow the process without bound.
    pub max_listed_entries: u64,
    /// SSH algorithms offered, in order ([`crate::algorithms`]).
    pub algorithms: Algorithms,
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
    /// connection from the link's latency ([`crate::remote`]).
    pub compression: Option<bool>,
}

/// Exactly one way to authenticate. Files are read when connecting, so an
/// unreadable one fails only its intersection.
#[derive(Debug, Clone)]
pub enum Auth {
    Password(Secret),
    PasswordFile(PathBuf),
    PrivateKey {
        path: PathBuf,
        passphrase_file: Option<PathBuf>,
    },
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

/// One problem in a config file. `Display` prints `FILE:LINE: KEY: MESSAGE`,
/// leaving out the parts that are unknown; the message says what to do.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Key path as the user wrote it, e.g. `intersections[2].password_file`.
    pub key: Option<String>,
    /// 1-based.
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(
        file: &Path,
        key: Option<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key,
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one config file, in file order where known.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads `path`; a legacy JSON file is recognised by its content (first
/// non-whitespace char is '{'), otherwise TOML.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_with(
        path,
        Checks {
            known_hosts_exists: true,
        },
    )
}

/// Checks done by `check-config` but not by `load`: files referenced by auth
/// settings exist and are readable by this process. `run` reads those files
/// at connect time instead, so an unreadable one fails only its intersection.
pub fn check_secret_files(config: &Config) -> Vec<ConfigError> {
    let lines = secret_file_lines(&config.source);
    let mut errors = Vec::new();
    for (i, intersection) in config.intersections.iter().enumerate() {
        let files: Vec<(&str, &Path)> = match &intersection.auth {
            Auth::Password(_) => Vec::new(),
            Auth::PasswordFile(p) => vec![("password_file", p.as_path())],
            Auth::PrivateKey {
                path,
                passphrase_file,
            } => {
                let mut v = vec![("private_key", path.as_path())];
                if let Some(p) = passphrase_file {
                    v.push(("passphrase_file", p.as_path()));
                }
                v
            }
        };
        for (field, file) in files {
            if let Err(why) = check_readable_file(file) {
                let key = format!("intersections[{i}].{field}");
                let line = lines.get(&key).copied();
                errors.push(ConfigError::new(
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
    errors
}

/// Opens the file for reading, the way the connect code will.
fn check_readable_file(path: &Path) -> Result<(), String> {
    use std::io::ErrorKind;
    match crate::secret::open_secret_file(path) {
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
        raw::parse(path, body)
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

// ---------------------------------------------------------------------------
// The intermediate representation both formats are converted into
// ---------------------------------------------------------------------------

/// Which file format a draft came from; decides how missing keys are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    LegacyJson,
}

impl Format {
    /// The key as this format spells it, for messages about missing keys.
    fn key(self, canonical: &'static str) -> &'static str {
        match (self, canonical) {
            (Format::LegacyJson, "data_directory") => "local_data_directory",
            (Format::LegacyJson, "host") => "ip_address",
            (Format::LegacyJson, "v2x_data_location") => "v2x-data_location",
            (Format::LegacyJson, "start_time") => "data_transfer_start_24h",
            _ => canonical,
        }
    }
}

/// A value with the key path and line it was read from.
pub(crate) struct Item<T> {
    pub value: T,
    pub key: String,
    pub line: Option<usize>,
}

impl<T> Item<T> {
    pub(crate) fn new(value: T, key: impl Into<String>, line: Option<usize>) -> Self {
        Item {
            value,
            key: key.into(),
            line,
        }
    }
}

pub(crate) enum StartInput {
    /// TOML: `"HH:MM"`.
    Text(String),
    /// Legacy JSON: `{ "hour": H, "minute": M }`.
    HourMinute {
        hour: Option<Item<i64>>,
        minute: Option<Item<i64>>,
    },
}

pub(crate) enum SizeInput {
    Bytes(i64),
    Text(String),
}

/// Both formats become this; [`validate`] turns it into a [`Config`].
pub(crate) struct Draft {
    pub format: Format,
    /// Problems found while converting (e.g. a key given twice under two spellings).
    pub errors: Vec<ConfigError>,
    pub data_directory: Option<Item<PathBuf>>,
    pub known_hosts: Option<Item<PathBuf>>,
    pub state_directory: Option<Item<PathBuf>>,
    pub elements: Option<Item<Vec<Item<String>>>>,
    pub start_time: Option<Item<StartInput>>,
    pub transfer: TransferDraft,
    pub intersections: Option<Item<Vec<IntersectionDraft>>>,
    pub stale_after: Option<Item<String>>,
    pub metrics_textfile: Option<Item<PathBuf>>,
}

impl Draft {
    pub(crate) fn new(format: Format) -> Self {
        Draft {
            format,
            errors: Vec::new(),
            data_directory: None,
            known_hosts: None,
            state_directory: None,
            elements: None,
            start_time: None,
            transfer: TransferDraft::default(),
            intersections: None,
            stale_after: None,
            metrics_textfile: None,
        }
    }
}

#[derive(Default)]
pub(crate) struct TransferDraft {
    pub parallel_intersections: Option<Item<i64>>,
    pub connect_timeout: Option<Item<String>>,
    pub io_timeout: Option<Item<String>>,
    pub intersection_deadline: Option<Item<String>>,
    pub retries: Option<Item<i64>>,
    pub retry_backoff: Option<Item<String>>,
    pub min_age: Option<Item<String>>,
    pub min_free_space: Option<Item<SizeInput>>,
    pub max_listed_entries: Option<Item<i64>>,
    pub ciphers: Option<Item<Vec<Item<String>>>>,
    pub macs: Option<Item<Vec<Item<String>>>>,
    pub kex_algorithms: Option<Item<Vec<Item<String>>>>,
}

pub(crate) struct IntersectionDraft {
    /// `intersections[N]`.
    pub key: String,
    /// Where the entry starts, for problems that belong to no single key.
    pub line: Option<usize>,
    pub name: Option<Item<String>>,
    pub host: Option<Item<String>>,
    pub port: Option<Item<i64>>,
    pub username: Option<Item<String>>,
    pub password: Option<Item<Secret>>,
    pub password_file: Option<Item<PathBuf>>,
    pub private_key: Option<Item<PathBuf>>,
    pub passphrase_file: Option<Item<PathBuf>>,
    pub v2x_data_location: Option<Item<String>>,
    pub compression: Option<Item<bool>>,
}

impl IntersectionDraft {
    pub(crate) fn new(index: usize, line: Option<usize>) -> Self {
        IntersectionDraft {
            key: format!("intersections[{index}]"),
            line,
            name: None,
            host: None,
            port: None,
            username: None,
            password: None,
            password_file: None,
            private_key: None,
            passphrase_file: None,
            v2x_data_location: None,
            compression: None,
        }
    }

    /// `intersections[N].FIELD`.
    pub(crate) fn field(&self, field: &str) -> String {
        format!("{}.{field}", self.key)
    }
}

// ---------------------------------------------------------------------------
// Validation, shared by both formats
// ---------------------------------------------------------------------------

/// Upper bounds keep later `Instant + Duration` arithmetic from overflowing
/// and catch unit slips ("60h" for "60s").
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_MIN_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
const MAX_NAME_BYTES: usize = 128;

/// Collects problems instead of stopping at the first.
struct Report<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    fn at<T>(&mut self, item: &Item<T>, message: impl Into<String>) {
        self.key(&item.key, item.line, message);
    }

    fn key(&mut self, key: &str, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(
            self.file,
            Some(key.to_string()),
            line,
            message,
        ));
    }
}

/// Turns a draft into a [`Config`], reporting every problem found.
pub(crate) fn validate(
    file: &Path,
    draft: Draft,
    checks: Checks,
) -> Result<Config, Vec<ConfigError>> {
    let mut draft = draft;
    let format = draft.format;
    let mut r = Report {
        file,
        errors: std::mem::take(&mut draft.errors),
    };

    let data_directory = match &draft.data_directory {
        None => {
            r.key(
                format.key("data_directory"),
                None,
                "missing; add `data_directory = \"/var/lib/v2x-data-sftp-client/data\"`, \
                 the absolute folder pulled files land in",
            );
            None
        }
        Some(item) => absolute_path(&mut r, item),
    };
    let state_directory = match &draft.state_directory {
        None => Some(PathBuf::from(DEFAULT_STATE_DIRECTORY)),
        Some(item) => absolute_path(&mut r, item),
    };
    let elements = match &draft.elements {
        None => Some(DEFAULT_ELEMENTS.iter().map(|e| e.to_string()).collect()),
        Some(item) => elements(&mut r, item),
    };
    let start_time = match &draft.start_time {
        None => Some(None),
        Some(item) => start_time(&mut r, item).map(Some),
    };
    let transfer = transfer(&mut r, &draft.transfer);
    let intersections = intersections(&mut r, format, &draft.intersections);
    let known_hosts = known_hosts(&mut r, &draft, checks);
    let stale_after = match &draft.stale_after {
        None => Some(DEFAULT_STALE_AFTER),
        Some(item) => duration(
            &mut r,
            item,
            false,
            MAX_MIN_AGE,
            "every intersection would always be stale",
        ),
    };
    let metrics_textfile = match &draft.metrics_textfile {
        None => Some(None),
        Some(item) => metrics_textfile(&mut r, item).map(Some),
    };

    if !r.errors.is_empty() {
        // File order; errors without a line (a missing key) go last.
        r.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        return Err(r.errors);
    }
    match (
        data_directory,
        state_directory,
        known_hosts,
        elements,
        start_time,
        intersections,
        stale_after,
        metrics_textfile,
    ) {
        (
            Some(data_directory),
            Some(state_directory),
            Some(known_hosts),
            Some(elements),
            Some(start_time),
            Some(intersections),
            Some(stale_after),
            Some(metrics_textfile),
        ) => Ok(Config {
            source: file.to_path_buf(),
            data_directory,
            state_directory,
            known_hosts,
            elements,
            start_time,
            transfer,
            intersections,
            stale_after,
            metrics_textfile,
        }),
        // Every `None` above comes with an error, so this is unreachable;
        // still, never hand out a half-validated config.
        _ => Err(vec![ConfigError::new(
            file,
            None,
            None,
            "could not be validated (internal error); please report it",
        )]),
    }
}

/// Rejects what could not be used as an absolute local path.
fn absolute_path(r: &mut Report<'_>, item: &Item<PathBuf>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let path = &item.value;
    if path.as_os_str().is_empty() {
        r.at(item, "is empty; give an absolute path");
        None
    } else if path.as_os_str().as_bytes().contains(&0) {
        r.at(item, "contains a NUL character; give an absolute path");
        None
    } else if !path.is_absolute() {
        r.at(
            item,
            format!(
                "{path:?} is relative; give an absolute path (a relative one would depend on \
                 the service's working directory)"
            ),
        );
        None
    } else {
        Some(path.clone())
    }
}

/// node_exporter's textfile collector reads only `*.prom` files, and only
/// from its one folder: a typo here would silence monitoring quietly.
fn metrics_textfile(r: &mut Report<'_>, item: &Item<PathBuf>) -> Option<PathBuf> {
    let path = absolute_path(r, item)?;
    if path.extension().and_then(|e| e.to_str()) != Some("prom") {
        r.at(
            item,
            format!(
                "{path:?} does not end in .prom, so node_exporter's textfile collector would \
                 never read it; e.g. \"/var/lib/prometheus/node-exporter/v2x_data_sftp_client.prom\""
            ),
        );
        return None;
    }
    Some(path)
}

fn known_hosts(r: &mut Report<'_>, draft: &Draft, checks: Checks) -> Option<PathBuf> {
    let (path, key, line) = match &draft.known_hosts {
        None => (PathBuf::from(DEFAULT_KNOWN_HOSTS), "known_hosts", None),
        Some(item) => (absolute_path(r, item)?, item.key.as_str(), item.line),
    };
    if !checks.known_hosts_exists {
        return Some(path);
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {
            r.key(
                key,
                line,
                format!(
                    "{} is a directory; point known_hosts at an OpenSSH known_hosts file",
                    path.display()
                ),
            );
            None
        }
        Ok(_) => Some(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Taken from the draft so the advice is complete even when an
            // intersection has other problems.
            let mut hosts: Vec<&str> = Vec::new();
            for i in draft.intersections.iter().flat_map(|l| &l.value) {
                if let Some(h) = &i.host
                    && !h.value.is_empty()
                    && !h.value.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !hosts.contains(&h.value.as_str())
                {
                    hosts.push(&h.value);
                }
            }
            let hosts = if hosts.is_empty() {
                "HOST...".to_string()
            } else {
                hosts.join(" ")
            };
            r.key(
                key,
                line,
                format!(
                    "{} does not exist; every host key is checked against it, so create it with \
                     `ssh-keyscan {hosts} > {}` (add `-p PORT` for hosts not on port 22) and \
                     compare the fingerprints with the coprocessors' own",
                    path.display(),
                    path.display()
                ),
            );
            None
        }
        Err(e) => {
            r.key(
                key,
                line,
                format!(
                    "{} cannot be checked ({e}); make it readable by the service user",
                    path.display()
                ),
            );
            None
        }
    }
}

/// Why `name` cannot be a folder of its own under the data directory, if it cannot.
fn unsafe_component(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".into())
    } else if name.len() > MAX_NAME_BYTES {
        Some(format!("is longer than {MAX_NAME_BYTES} bytes"))
    } else if name.contains('/') {
        Some(format!("{name:?} contains '/'"))
    } else if name.chars().any(char::is_control) {
        Some(format!("{name:?} contains a control character"))
    } else if name.starts_with('.') {
        Some(format!(
            "{name:?} starts with '.' (such names are reserved for temporary files, and \
             \".\" or \"..\" would leave the data folder)"
        ))
    } else {
        None
    }
}

fn elements(r: &mut Report<'_>, item: &Item<Vec<Item<String>>>) -> Option<Vec<String>> {
    if item.value.is_empty() {
        r.at(
            item,
            "is empty; list at least one element, or remove the key to use the five defaults",
        );
        return None;
    }
    let mut ok = true;
    let mut seen: HashMap<&str, Option<usize>> = HashMap::new();
    for e in &item.value {
        if let Some(why) = unsafe_component(&e.value) {
            r.at(
                e,
                format!("{why}; an element name must be a plain folder name such as \"spat\""),
            );
            ok = false;
        } else if let Some(first) = seen.get(e.value.as_str()) {
            r.at(
                e,
                format!(
                    "{:?} is listed twice{}; remove one",
                    e.value,
                    first
                        .map(|l| format!(" (first on line {l})"))
                        .unwrap_or_default()
                ),
            );
            ok = false;
        } else {
            seen.insert(&e.value, e.line);
        }
    }
    ok.then(|| item.value.iter().map(|e| e.value.clone()).collect())
}

fn start_time(r: &mut Report<'_>, item: &Item<StartInput>) -> Option<StartTime> {
    match &item.value {
        StartInput::Text(text) => {
            let parsed = text.split_once(':').and_then(|(h, m)| {
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if !(digits(h) && h.len() <= 2 && digits(m) && m.len() == 2) {
                    return None;
                }
                let hour: u8 = h.parse().ok()?;
                let minute: u8 = m.parse().ok()?;
                (hour <= 23 && minute <= 59).then_some(StartTime { hour, minute })
            });
            if parsed.is_none() {
                r.at(
                    item,
                    format!(
                        "{text:?} is not a time of day; write \"HH:MM\" on the 24-hour clock, \
                         e.g. \"00:00\" or \"23:30\""
                    ),
                );
            }
            parsed
        }
        StartInput::HourMinute { hour, minute } => {
            let mut part = |part: &Option<Item<i64>>, name: &str, max: i64| match part {
                None => {
                    r.key(
                        &format!("{}.{name}", item.key),
                        item.line,
                        format!("missing; add \"{name}\": a number from 0 to {max}"),
                    );
                    None
                }
                Some(p) if !(0..=max).contains(&p.value) => {
                    r.at(
                        p,
                        format!("{} is out of range; give a number from 0 to {max}", p.value),
                    );
                    None
                }
                Some(p) => u8::try_from(p.value).ok(),
            };
            let hour = part(hour, "hour", 23);
            let minute = part(minute, "minute", 59);
            Some(StartTime {
                hour: hour?,
                minute: minute?,
            })
        }
    }
}

fn int_in(r: &mut Report<'_>, item: &Item<i64>, min: i64, max: i64, why: &str) -> Option<i64> {
    if (min..=max).contains(&item.value) {
        Some(item.value)
    } else {
        r.at(
            item,
            format!(
                "{} is out of range; give a number from {min} to {max} ({why})",
                item.value
            ),
        );
        None
    }
}

/// Parses a humantime duration, at most `max`; zero only when `zero_allowed`.
fn duration(
    r: &mut Report<'_>,
    item: &Item<String>,
    zero_allowed: bool,
    max: Duration,
    why_zero: &str,
) -> Option<Duration> {
    let d = match humantime::parse_duration(item.value.trim()) {
        Ok(d) => d,
        Err(e) => {
            r.at(
                item,
                format!(
                    "{:?} is not a duration ({e}); write a number with a unit, e.g. \"30s\", \
                     \"2m\" or \"4h\"",
                    item.value
                ),
            );
            return None;
        }
    };
    if d.is_zero() && !zero_allowed {
        r.at(item, format!("must be longer than 0s ({why_zero})"));
        None
    } else if d > max {
        r.at(
            item,
            format!(
                "{:?} is too long; give at most {}",
                item.value,
                humantime::format_duration(max)
            ),
        );
        None
    } else {
        Some(d)
    }
}

/// Bytes from an integer or a string such as `"1GiB"` or `"500 MB"`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}")),
    };
    if number.is_empty() {
        return Err("no number".into());
    }
    if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{number:?} is not a number"))?;
        let bytes = (value * multiplier as f64).round();
        // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast in range.
        if bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64 {
            Ok(bytes as u64)
        } else {
            Err("too large".into())
        }
    } else {
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{number:?} is not a whole number"))?;
        value
            .checked_mul(multiplier)
            .ok_or_else(|| "too large".to_string())
    }
}

fn transfer(r: &mut Report<'_>, t: &TransferDraft) -> Transfer {
    let mut out = Transfer::default();
    if let Some(item) = &t.parallel_intersections
        && let Some(v) = int_in(
            r,
            item,
            1,
            64,
            "each worker holds an SSH session and a share of the disk bandwidth",
        )
    {
        out.parallel_intersections = v as usize;
    }
    if let Some(item) = &t.connect_timeout
        && let Some(d) = duration(
            r,
            item,
            false,
            MAX_TIMEOUT,
            "a zero timeout would fail every connection",
        )
    {
        out.connect_timeout = d;
    }
    let mut io_ok = true;
    if let Some(item) = &t.io_timeout {
        match duration(
            r,
            item,
            false,
            MAX_TIMEOUT,
            "a zero timeout would fail every call",
        ) {
            Some(d) => out.io_timeout = d,
            None => io_ok = false,
        }
    }
    if let Some(item) = &t.intersection_deadline
        && let Some(d) = duration(
            r,
            item,
            false,
            MAX_DEADLINE,
            "a zero deadline would fail every intersection",
        )
    {
        out.intersection_deadline = d;
    }
    if io_ok && out.intersection_deadline <= out.io_timeout {
        let key = t
            .intersection_deadline
            .as_ref()
            .map(|i| (i.key.clone(), i.line))
            .or_else(|| t.io_timeout.as_ref().map(|i| (i.key.clone(), i.line)));
        let (key, line) = key.unwrap_or_else(|| ("transfer.intersection_deadline".into(), None));
        r.key(
            &key,
            line,
            format!(
                "transfer.intersection_deadline ({}) must be longer than transfer.io_timeout \
                 ({}), or a single slow call would use it up; raise the deadline or lower \
                 the timeout",
                humantime::format_duration(out.intersection_deadline),
                humantime::format_duration(out.io_timeout)
            ),
        );
    }
    if let Some(item) = &t.retries
        && let Some(v) = int_in(
            r,
            item,
            0,
            20,
            "retries beyond that only wait out the intersection deadline",
        )
    {
        out.retries = v as u32;
    }
    if let Some(item) = &t.retry_backoff
        && let Some(d) = duration(
            r,
            item,
            false,
            MAX_TIMEOUT,
            "retrying at once gives a rebooting coprocessor no time to come back",
        )
    {
        out.retry_backoff = d;
    }
    if let Some(item) = &t.min_age
        && let Some(d) = duration(r, item, true, MAX_MIN_AGE, "")
    {
        out.min_age = d;
    }
    if let Some(item) = &t.max_listed_entries
        && let Some(v) = int_in(
            r,
            item,
            1_000,
            20_000_000,
            "a listing is held in memory, about 150 bytes a name",
        )
    {
        out.max_listed_entries = v as u64;
    }
    if let Some(item) = &t.min_free_space {
        let parsed = match &item.value {
            SizeInput::Bytes(n) => u64::try_from(*n).map_err(|_| "negative".to_string()),
            SizeInput::Text(s) => parse_size(s),
        };
        match parsed {
            Ok(v) => out.min_free_bytes = v,
            Err(why) => r.at(
                item,
                format!(
                    "is not a size ({why}); give a whole number of bytes or a string such as \
                     \"1GiB\" or \"500MB\" (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
                ),
            ),
        }
    }
    for (kind, item, slot) in [
        (
            algorithms::Kind::Cipher,
            &t.ciphers,
            &mut out.algorithms.ciphers,
        ),
        (algorithms::Kind::Mac, &t.macs, &mut out.algorithms.macs),
        (
            algorithms::Kind::Kex,
            &t.kex_algorithms,
            &mut out.algorithms.kex,
        ),
    ] {
        if let Some(item) = item
            && let Some(list) = algorithm_list(r, kind, item)
        {
            *slot = list;
        }
    }
    out
}

/// An ordered list of SSH algorithm names, each one this build supports.
fn algorithm_list(
    r: &mut Report<'_>,
    kind: algorithms::Kind,
    item: &Item<Vec<Item<String>>>,
) -> Option<Vec<String>> {
    let defaults = match kind {
        algorithms::Kind::Cipher => algorithms::DEFAULT_CIPHERS,
        algorithms::Kind::Mac => algorithms::DEFAULT_MACS,
        algorithms::Kind::Kex => algorithms::DEFAULT_KEX,
    };
    if item.value.is_empty() {
        r.at(
            item,
            format!(
                "is empty; list at least one, most preferred first, or remove the key to use \
                 the measured default ({})",
                defaults.join(", ")
            ),
        );
        return None;
    }
    let supported = algorithms::supported(kind);
    let mut ok = true;
    let mut seen: HashMap<&str, Option<usize>> = HashMap::new();
    for e in &item.value {
        if let Some(supported) = &supported
            && !supported.contains(&e.value.as_str())
        {
            r.at(
                e,
                format!(
                    "{:?} is not an algorithm this client supports; it supports: {}",
                    e.value,
                    supported.join(", ")
                ),
            );
            ok = false;
        } else if let Some(first) = seen.get(e.value.as_str()) {
            r.at(
                e,
                format!(
                    "{:?} is listed twice{}; remove one",
                    e.value,
                    first
                        .map(|l| format!(" (first on line {l})"))
                        .unwrap_or_default()
                ),
            );
            ok = false;
        } else {
            seen.insert(&e.value, e.line);
        }
    }
    ok.then(|| item.value.iter().map(|e| e.value.clone()).collect())
}

/// A required key of an intersection, or an error naming it.
fn required<'a, T>(
    r: &mut Report<'_>,
    format: Format,
    d: &IntersectionDraft,
    item: &'a Option<Item<T>>,
    field: &'static str,
    what: &str,
) -> Option<&'a Item<T>> {
    if item.is_none() {
        r.key(
            &d.field(format.key(field)),
            d.line,
            format!("missing; add {}, {what}", format.key(field)),
        );
    }
    item.as_ref()
}

fn intersections(
    r: &mut Report<'_>,
    format: Format,
    list: &Option<Item<Vec<IntersectionDraft>>>,
) -> Option<Vec<Intersection>> {
    let how = match format {
        Format::Toml => {
            "add at least one [[intersections]] table with name, host, username, one of \
             password/password_file/private_key, and v2x_data_location"
        }
        Format::LegacyJson => "add at least one entry to \"intersections\"",
    };
    let list = match list {
        None => {
            r.key(
                "intersections",
                None,
                format!("no intersection is configured; {how}"),
            );
            return None;
        }
        Some(list) if list.value.is_empty() => {
            r.at(list, format!("is empty; {how}"));
            return None;
        }
        Some(list) => list,
    };
    let mut out = Vec::new();
    let mut all_ok = true;
    let mut names: HashMap<&str, (String, Option<usize>)> = HashMap::new();
    for d in &list.value {
        let name = match required(
            r,
            format,
            d,
            &d.name,
            "name",
            "the folder its data lands in",
        ) {
            None => None,
            Some(item) => {
                if let Some(why) = unsafe_component(&item.value) {
                    r.at(
                        item,
                        format!(
                            "{why}; use a plain folder name such as \"intersection-1\" (at most \
                             {MAX_NAME_BYTES} bytes, no '/', not starting with '.'), since \
                             its data lands in that folder"
                        ),
                    );
                    None
                } else if let Some((first, line)) = names.get(item.value.as_str()) {
                    r.at(
                        item,
                        format!(
                            "{:?} is already the name of {first}{}; names must be unique, \
                             since each is the folder that intersection's data lands in",
                            item.value,
                            line.map(|l| format!(" (line {l})")).unwrap_or_default()
                        ),
                    );
                    None
                } else {
                    names.insert(&item.value, (d.key.clone(), item.line));
                    Some(item.value.clone())
                }
            }
        };
        let host = match required(r, format, d, &d.host, "host", "the coprocessor's address") {
            None => None,
            Some(item) if item.value.is_empty() => {
                r.at(
                    item,
                    "is empty; give the coprocessor's IP address or host name",
                );
                None
            }
            Some(item)
                if item
                    .value
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control()) =>
            {
                r.at(
                    item,
                    format!(
                        "{:?} contains whitespace; give only the IP address or host name",
                        item.value
                    ),
                );
                None
            }
            Some(item) => Some(item.value.clone()),
        };
        let port = match &d.port {
            None => Some(22),
            Some(item) => int_in(
                r,
                item,
                1,
                65535,
                "a TCP port; SSH listens on 22 by default",
            )
            .and_then(|p| u16::try_from(p).ok()),
        };
        let username = match required(
            r,
            format,
            d,
            &d.username,
            "username",
            "the account that may read and delete the archive",
        ) {
            None => None,
            Some(item) if item.value.is_empty() || item.value.chars().any(char::is_control) => {
                r.at(
                    item,
                    "is empty or contains control characters; give the SSH user name",
                );
                None
            }
            Some(item) => Some(item.value.clone()),
        };
        let auth = auth(r, d);
        let location = match required(
            r,
            format,
            d,
            &d.v2x_data_location,
            "v2x_data_location",
            "the coprocessor's v2x-data folder (its archive/ is pulled)",
        ) {
            None => None,
            Some(item) if item.value.trim().is_empty() => {
                r.at(
                    item,
                    "is empty; give the coprocessor's v2x-data folder, e.g. \
                     \"/home/ubuntu/intersection-1/bin/v2x_data\"",
                );
                None
            }
            Some(item) if item.value.chars().any(char::is_control) => {
                r.at(item, "contains a control character; fix the path");
                None
            }
            Some(item) => Some(item.value.clone()),
        };
        let compression = d.compression.as_ref().map(|c| c.value);
        match (name, host, port, username, auth, location) {
            (Some(name), Some(host), Some(port), Some(username), Some(auth), Some(location)) => out
                .push(Intersection {
                    name,
                    host,
                    port,
                    username,
                    auth,
                    v2x_data_location: location,
                    compression,
                }),
            _ => all_ok = false,
        }
    }
    all_ok.then_some(out)
}

fn auth(r: &mut Report<'_>, d: &IntersectionDraft) -> Option<Auth> {
    let mut given = Vec::new();
    if d.password.is_some() {
        given.push("password");
    }
    if d.password_file.is_some() {
        given.push("password_file");
    }
    if d.private_key.is_some() {
        given.push("private_key");
    }
    let mut ok = true;
    if let Some(item) = &d.passphrase_file
        && d.private_key.is_none()
    {
        r.at(
            item,
            "is set without private_key; it only unlocks a private key, so add private_key \
             or remove it",
        );
        ok = false;
    }
    let mut path = |item: &Option<Item<PathBuf>>| match item {
        None => Some(None),
        Some(item) => match absolute_path(r, item) {
            Some(p) => Some(Some(p)),
            None => {
                ok = false;
                None
            }
        },
    };
    let password_file = path(&d.password_file);
    let private_key = path(&d.private_key);
    let passphrase_file = path(&d.passphrase_file);
    if given.len() != 1 {
        let found = if given.is_empty() {
            "none is set".to_string()
        } else {
            format!("found {}", given.join(" and "))
        };
        r.key(
            &d.key,
            d.line,
            format!(
                "needs exactly one way to authenticate: set one of password, password_file or \
                 private_key ({found})"
            ),
        );
        return None;
    }
    if let Some(item) = &d.password
        && item.value.expose().is_empty()
    {
        r.at(
            item,
            "is empty; give the password, or use password_file or private_key",
        );
        return None;
    }
    if !ok {
        return None;
    }
    match (&d.password, password_file, private_key, passphrase_file) {
        (Some(item), _, _, _) => Some(Auth::Password(item.value.clone())),
        (None, Some(Some(p)), _, _) => Some(Auth::PasswordFile(p)),
        (None, _, Some(Some(path)), Some(passphrase_file)) => Some(Auth::PrivateKey {
            path,
            passphrase_file,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write config");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
            path
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

    /// Line numbers below count the fixture's extra first line (`known_hosts`).
    fn find<'a>(errors: &'a [ConfigError], key: &str) -> &'a ConfigError {
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
        assert!(matches!(&b.auth, Auth::PasswordFile(p) if p == Path::new("/etc/v2x/b.pw")));
        assert!(
            matches!(&cc.auth, Auth::PrivateKey { path, passphrase_file: Some(pp) }
            if path == Path::new("/etc/v2x/c.key") && pp == Path::new("/etc/v2x/c.pass"))
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
        let e = check_secret_files(&c);
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
            let e = check_secret_files(&c);
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
}
