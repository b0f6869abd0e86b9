//! The seed's JSON config (`v2x-data-sftp-client-config.json`).
//!
//! Sites upgrading from the Python seed keep working: `--config` accepts the
//! JSON file as it is, and `import-legacy-config` turns it into the TOML
//! config the package expects. The JSON is read into the same draft as TOML
//! and validated by the same code, so both formats obey the same rules. Two
//! things differ, both because the seed worked that way: a relative
//! `local_data_directory` is resolved against the JSON file's folder (the
//! seed ran from that folder), and known_hosts takes its default path.
//!
//! serde_json gives no positions for values, so a small locator re-reads the
//! text to find the line of each key for validation messages.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::{
    Auth, Checks, Config, ConfigError, ConfigErrors, DEFAULT_CONFIG_PATH, Draft, Format,
    IntersectionDraft, Item, SecretSource, StartInput, utf8_text, validate,
};
use crate::common::secret::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyFile {
    local_data_directory: Option<String>,
    intersections: Option<Vec<LegacyIntersection>>,
    data_transfer_start_24h: Option<LegacyStart>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyIntersection {
    name: Option<String>,
    ip_address: Option<String>,
    username: Option<String>,
    /// A `Value` so that a mistyped password is never echoed in a serde error.
    password: Option<serde_json::Value>,
    #[serde(rename = "v2x-data_location")]
    v2x_data_location: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyStart {
    hour: Option<i64>,
    minute: Option<i64>,
}

/// What the import must tell the reader that the draft does not carry.
pub(crate) struct Notes {
    /// The relative `local_data_directory` as written, when it was resolved.
    pub relative_data_directory: Option<String>,
}

/// TOML text equivalent to the legacy JSON at `path` (for
/// `import-legacy-config`). Does not require known_hosts to exist: the
/// operator imports first and creates it afterwards.
///
/// # Errors
/// As [`crate::config::load`] for a legacy file: it cannot be read, is not
/// UTF-8 or not JSON of the seed's shape, or holds invalid values.
pub fn import(path: &Path) -> Result<String, ConfigErrors> {
    let one = |e: ConfigError| ConfigErrors(vec![e]);
    let bytes = std::fs::read(path).map_err(|e| {
        one(ConfigError::new(
            path,
            None,
            None,
            format!("cannot read the legacy config ({e}); check the path"),
        ))
    })?;
    let text = utf8_text(path, bytes).map_err(one)?;
    let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if !super::is_legacy_json(body) {
        return Err(one(ConfigError::new(
            path,
            None,
            None,
            "is not a legacy JSON config (it does not start with '{'); a TOML config needs \
             no import, check it with `check-config` instead",
        )));
    }
    let (draft, notes) = parse(path, body).map_err(ConfigErrors)?;
    let config = validate(
        path,
        draft,
        Checks {
            known_hosts_exists: false,
        },
    )
    .map_err(ConfigErrors)?;
    render(path, &config, &notes).map_err(one)
}

fn render(path: &Path, config: &Config, notes: &Notes) -> Result<String, ConfigError> {
    let file = comment_safe(&path.display().to_string());
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored below for that reason.
    let _ = writeln!(
        out,
        "# Imported from {file} by `v2x-data-sftp-client import-legacy-config`.\n\
         # It holds passwords: install it as {DEFAULT_CONFIG_PATH} with mode 640.\n"
    );
    if let Some(original) = &notes.relative_data_directory {
        let _ = writeln!(
            out,
            "# {} in {file}, resolved against its folder",
            comment_safe(&format!("{original:?}"))
        );
    }
    let _ = writeln!(
        out,
        "data_directory = {}",
        toml_path(path, "data_directory", &config.data_directory)?
    );
    let _ = writeln!(
        out,
        "# Every host key is checked against this file; it must exist before `run`\n\
         # (`check-config` says how to create it with ssh-keyscan).\n\
         known_hosts = {}",
        toml_path(path, "known_hosts", &config.known_hosts)?
    );
    if let Some(t) = config.start_time {
        let _ = writeln!(out, "start_time = \"{:02}:{:02}\"", t.hour, t.minute);
    }
    for (i, x) in config.intersections.iter().enumerate() {
        let _ = writeln!(out, "\n[[intersections]]");
        let _ = writeln!(out, "name = {}", toml_str(&x.name));
        let _ = writeln!(out, "host = {}", toml_str(&x.host));
        if x.port != 22 {
            let _ = writeln!(out, "port = {}", x.port);
        }
        let _ = writeln!(out, "username = {}", toml_str(&x.username));
        let key = |field: &str| format!("intersections[{i}].{field}");
        match &x.auth {
            Auth::Password(secret) => {
                let _ = writeln!(out, "password = {}", toml_str(secret.expose()));
            }
            Auth::PasswordFrom(source) => {
                let line = secret_line(path, &key, source, "password_file", "password_credential")?;
                let _ = writeln!(out, "{line}");
            }
            Auth::PrivateKey { key: k, passphrase } => {
                let line = secret_line(path, &key, k, "private_key", "private_key_credential")?;
                let _ = writeln!(out, "{line}");
                if let Some(p) = passphrase {
                    let line =
                        secret_line(path, &key, p, "passphrase_file", "passphrase_credential")?;
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let _ = writeln!(
            out,
            "v2x_data_location = {}",
            toml_str(&x.v2x_data_location)
        );
        if let Some(c) = x.compression {
            let _ = writeln!(out, "compression = {c}");
        }
    }
    Ok(out)
}

/// A TOML string literal (quoted and escaped by the toml crate).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `password_file = "..."` or `password_credential = "..."`, as the source is.
fn secret_line(
    file: &Path,
    key: &dyn Fn(&str) -> String,
    source: &SecretSource,
    file_key: &str,
    credential_key: &str,
) -> Result<String, ConfigError> {
    Ok(match source {
        SecretSource::File(p) => format!("{file_key} = {}", toml_path(file, &key(file_key), p)?),
        SecretSource::Credential(name) => format!("{credential_key} = {}", toml_str(name)),
    })
}

fn toml_path(file: &Path, key: &str, p: &Path) -> Result<String, ConfigError> {
    p.to_str().map(toml_str).ok_or_else(|| {
        ConfigError::new(
            file,
            Some(key.to_string()),
            None,
            format!(
                "{} is not valid UTF-8 and cannot be written to TOML; move the data to a \
                 folder with a UTF-8 name",
                p.display()
            ),
        )
    })
}

/// Keeps a comment on one line whatever the file name holds.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Reads the legacy JSON text into the shared draft.
///
/// # Errors
/// A JSON syntax error, a value of the wrong type or an unknown key, alone
/// and with its line.
pub(crate) fn parse(path: &Path, text: &str) -> Result<(Draft, Notes), Vec<ConfigError>> {
    let raw: LegacyFile =
        serde_json::from_str(text).map_err(|e| vec![json_error(path, text, &e)])?;
    let lines = Locator::lines(text);
    let line = |key: &str| lines.get(key).copied();
    let mut d = Draft::new(Format::LegacyJson);
    let mut notes = Notes {
        relative_data_directory: None,
    };

    if let Some(dir) = raw.local_data_directory {
        let key = "local_data_directory";
        let given = PathBuf::from(&dir);
        let resolved = if dir.is_empty() || given.is_absolute() {
            given
        } else {
            match resolve_against_folder(path, &given) {
                Ok(p) => {
                    notes.relative_data_directory = Some(dir.clone());
                    p
                }
                Err(e) => {
                    d.errors.push(ConfigError::new(
                        path,
                        Some(key.into()),
                        line(key),
                        format!(
                            "{dir:?} is relative and the config file's folder cannot be found \
                             ({e}); give an absolute path"
                        ),
                    ));
                    given
                }
            }
        };
        d.data_directory = Some(Item::new(resolved, key, line(key)));
    }

    if let Some(start) = raw.data_transfer_start_24h {
        let key = "data_transfer_start_24h";
        let part = |v: Option<i64>, name: &str| {
            let k = format!("{key}.{name}");
            let l = line(&k);
            v.map(|v| Item::new(v, k, l))
        };
        let value = StartInput::HourMinute {
            hour: part(start.hour, "hour"),
            minute: part(start.minute, "minute"),
        };
        d.start_time = Some(Item::new(value, key, line(key)));
    }

    if let Some(list) = raw.intersections {
        let items = list
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                let prefix = format!("intersections[{i}]");
                let mut n = IntersectionDraft::new(i, line(&prefix));
                let item = |v: Option<String>, field: &str| {
                    let key = format!("{prefix}.{field}");
                    let l = line(&key);
                    v.map(|v| Item::new(v, key, l))
                };
                n.name = item(x.name, "name");
                n.host = item(x.ip_address, "ip_address");
                n.username = item(x.username, "username");
                n.v2x_data_location = item(x.v2x_data_location, "v2x-data_location");
                n.password = x.password.map(|v| {
                    let key = n.field("password");
                    let l = line(&key);
                    let secret = match v {
                        serde_json::Value::String(s) => Secret::new(s),
                        // Never echo the value: it may be the password.
                        _ => {
                            d.errors.push(ConfigError::new(
                                path,
                                Some(key.clone()),
                                l,
                                "must be a string; put the password in double quotes",
                            ));
                            Secret::new("(invalid)".into())
                        }
                    };
                    Item::new(secret, key, l)
                });
                n
            })
            .collect();
        d.intersections = Some(Item::new(items, "intersections", line("intersections")));
    }
    Ok((d, notes))
}

/// `rel` against the folder holding `file`: the seed ran from that folder.
/// The folder is canonicalized when possible so the result does not depend
/// on the working directory; `..` in `rel` is then resolved lexically.
fn resolve_against_folder(file: &Path, rel: &Path) -> std::io::Result<PathBuf> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let folder = match folder.canonicalize() {
        Ok(p) => p,
        Err(_) => std::path::absolute(&folder)?,
    };
    let mut out = PathBuf::new();
    for c in folder.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Converts a serde_json error; its `Display` appends the position, which
/// goes into `line` instead.
fn json_error(file: &Path, text: &str, e: &serde_json::Error) -> ConfigError {
    let shown = e.to_string();
    let message = match shown.rsplit_once(" at line ") {
        Some((m, _)) if e.line() > 0 => m.to_string(),
        _ => shown,
    };
    let line = (e.line() > 0).then(|| e.line());
    let advice = match e.classify() {
        serde_json::error::Category::Data if message.starts_with("unknown field") => {
            "fix its spelling or remove it (a misspelt key is never ignored)"
        }
        serde_json::error::Category::Data => "fix the value",
        _ => "fix the JSON syntax",
    };
    let key = line.and_then(|l| key_on_line(text, l, &message));
    ConfigError::new(file, key, line, format!("{message}; {advice}"))
}

/// The key path on `line`: the one named in the message (`` `foo` ``) if
/// several keys share the line, else the only one there.
fn key_on_line(text: &str, line: usize, message: &str) -> Option<String> {
    let named = message.split('`').nth(1);
    let entries = Locator::entries(text);
    let candidates: Vec<&str> = entries
        .iter()
        .filter(|(_, l)| *l == line)
        .map(|(k, _)| k.as_str())
        .filter(|k| !k.ends_with(']'))
        .collect();
    if let Some(name) = named
        && let Some(k) = candidates
            .iter()
            .find(|k| **k == name || k.ends_with(&format!(".{name}")))
    {
        return Some((*k).to_string());
    }
    match candidates.as_slice() {
        [only] => Some((*only).to_string()),
        _ => None,
    }
}

/// Finds the line of every key path (`intersections[0].name`) and array
/// element (`intersections[0]`) in JSON text. Tolerant: on text it cannot
/// follow it stops and returns what it found, and it never panics.
struct Locator<'a> {
    bytes: &'a [u8],
    pos: usize,
    newlines: Vec<usize>,
    found: Vec<(String, usize)>,
}

impl<'a> Locator<'a> {
    const MAX_DEPTH: usize = 64;

    fn entries(text: &'a str) -> Vec<(String, usize)> {
        let bytes = text.as_bytes();
        let mut l = Locator {
            bytes,
            pos: 0,
            newlines: bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i)
                .collect(),
            found: Vec::new(),
        };
        l.value("", 0);
        l.found
    }

    /// First occurrence of each path.
    fn lines(text: &'a str) -> HashMap<String, usize> {
        let mut map = HashMap::new();
        for (k, l) in Self::entries(text) {
            map.entry(k).or_insert(l);
        }
        map
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn record(&mut self, path: String, at: usize) {
        let line = 1 + self.newlines.partition_point(|nl| *nl < at);
        self.found.push((path, line));
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, path: &str, depth: usize) {
        if depth > Self::MAX_DEPTH {
            self.pos = self.bytes.len();
            return;
        }
        self.skip_ws();
        match self.peek() {
            None => {}
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b'}') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => self.pos += 1,
                        Some(b'"') => {
                            let at = self.pos;
                            let key = self.string();
                            let child = if path.is_empty() {
                                key
                            } else {
                                format!("{path}.{key}")
                            };
                            self.record(child.clone(), at);
                            self.skip_ws();
                            if self.peek() != Some(b':') {
                                return;
                            }
                            self.pos += 1;
                            self.value(&child, depth + 1);
                        }
                        _ => return,
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut index = 0;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        None => return,
                        Some(b']') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => self.pos += 1,
                        Some(_) => {
                            let child = format!("{path}[{index}]");
                            let before = self.pos;
                            self.record(child.clone(), before);
                            self.value(&child, depth + 1);
                            if self.pos == before {
                                return;
                            }
                            index += 1;
                        }
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    self.pos += 1;
                }
            }
        }
    }

    /// Skips a string starting at `"`, returning its raw content.
    fn string(&mut self) -> String {
        self.pos += 1;
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b'\\' => self.pos += 2,
                b'"' => break,
                _ => self.pos += 1,
            }
        }
        let end = self.pos.min(self.bytes.len());
        self.pos = end + 1;
        String::from_utf8_lossy(&self.bytes[start.min(end)..end]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{find, write_config as write};
    use crate::config::{
        DEFAULT_ELEMENTS, DEFAULT_KNOWN_HOSTS, Loaded, StartTime, Transfer, load_with,
    };
    use std::os::unix::fs::PermissionsExt;

    /// Exactly what the seed's README documents.
    const SEED: &str = r#"{
  "local_data_directory": "./data",
  "intersections": [
    { "name": "intersection-1", "ip_address": "10.12.6.250", "username": "ubuntu",
      "password": "secret", "v2x-data_location": "/home/ubuntu/intersection-1/bin/v2x_data" }
  ],
  "data_transfer_start_24h": { "hour": 0, "minute": 0 }
}
"#;

    const NO_KNOWN_HOSTS_CHECK: Checks = Checks {
        known_hosts_exists: false,
    };

    fn load_json(path: &Path) -> Result<Loaded, ConfigErrors> {
        load_with(path, NO_KNOWN_HOSTS_CHECK)
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "c.json", text);
        match load_json(&path) {
            Ok(_) => panic!("expected errors for {text}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn seed_file_is_accepted_as_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "v2x-data-sftp-client-config.json", SEED);
        let c = load_json(&path).expect("seed config is valid").config;
        let folder = dir.path().canonicalize().expect("canonical");
        assert_eq!(c.data_directory, folder.join("data"));
        assert_eq!(c.known_hosts, Path::new(DEFAULT_KNOWN_HOSTS));
        assert_eq!(c.elements, DEFAULT_ELEMENTS);
        assert_eq!(c.start_time, Some(StartTime { hour: 0, minute: 0 }));
        assert_eq!(c.transfer, Transfer::default());
        let [i] = c.intersections.as_slice() else {
            panic!("one intersection")
        };
        assert_eq!(i.name, "intersection-1");
        assert_eq!(i.host, "10.12.6.250");
        assert_eq!(i.port, 22);
        assert_eq!(i.username, "ubuntu");
        assert!(matches!(&i.auth, Auth::Password(s) if s.expose() == "secret"));
        assert_eq!(
            i.v2x_data_location,
            "/home/ubuntu/intersection-1/bin/v2x_data"
        );
        assert_eq!(i.compression, None);
    }

    #[test]
    fn seed_file_needs_the_default_known_hosts_when_loaded() {
        if Path::new(DEFAULT_KNOWN_HOSTS).exists() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "c.json", SEED);
        let e = crate::config::load(&path)
            .expect_err("known_hosts missing")
            .0;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key.as_deref(), Some("known_hosts"));
        assert!(e[0].message.contains("ssh-keyscan 10.12.6.250"), "{}", e[0]);
    }

    #[test]
    fn relative_data_directory_is_resolved_against_the_file_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("etc");
        std::fs::create_dir(&sub).expect("mkdir");
        let folder = sub.canonicalize().expect("canonical");
        for (given, expected) in [
            ("data", folder.join("data")),
            ("./a/./b", folder.join("a/b")),
            ("../data", folder.parent().expect("parent").join("data")),
            ("/abs/data", PathBuf::from("/abs/data")),
        ] {
            let path = write(&sub, "c.json", &SEED.replace("./data", given));
            let c = load_json(&path).expect("valid").config;
            assert_eq!(c.data_directory, expected, "{given}");
        }
        // A folder that cannot be canonicalized is joined lexically.
        let gone = Path::new("/nonexistent-v2x-test/dir/c.json");
        assert_eq!(
            resolve_against_folder(gone, Path::new("./x/../data")).expect("lexical"),
            Path::new("/nonexistent-v2x-test/dir/data")
        );
    }

    #[test]
    fn empty_data_directory_is_an_error() {
        let e = errors(&SEED.replace("./data", ""));
        assert!(find(&e, "local_data_directory").message.contains("empty"));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let e = errors(&SEED.replace("\"username\"", "\"user\""));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, Some(4));
        assert_eq!(e[0].key.as_deref(), Some("intersections[0].user"));
        assert!(e[0].message.contains("unknown field `user`"), "{}", e[0]);

        let e = errors(&SEED.replace("\"local_data_directory\"", "\"local_data_dir\""));
        assert_eq!(
            (e[0].line, e[0].key.as_deref()),
            (Some(2), Some("local_data_dir"))
        );
        let e = errors(&SEED.replace("\"minute\"", "\"minutes\""));
        assert_eq!(e[0].line, Some(7));
    }

    #[test]
    fn syntax_and_type_errors_have_lines() {
        let e = errors(&SEED.replace("\"ubuntu\",", "\"ubuntu\""));
        assert_eq!(e[0].line, Some(5));
        assert!(e[0].message.contains("JSON syntax"), "{}", e[0]);
        assert!(!e[0].message.contains(" at line "), "{}", e[0]);

        let e = errors(&SEED.replace("\"hour\": 0", "\"hour\": \"0\""));
        assert_eq!(e[0].line, Some(7));
        assert!(e[0].message.contains("invalid type"), "{}", e[0]);
    }

    #[test]
    fn semantic_errors_name_the_line_of_the_key() {
        let text = r#"{
  "local_data_directory": "./data",
  "intersections": [
    { "name": "a", "ip_address": "h", "username": "u", "password": "p", "v2x-data_location": "/v" },
    {
      "name": "a",
      "ip_address": "h 2",
      "username": "u",
      "v2x-data_location": "/v"
    },
    { "name": "..", "ip_address": "h", "password": "p", "v2x-data_location": "/v" }
  ],
  "data_transfer_start_24h": {
    "hour": 24,
    "minute": 0
  }
}"#;
        let e = errors(text);
        assert_eq!(find(&e, "intersections[1].name").line, Some(6));
        assert_eq!(find(&e, "intersections[1].ip_address").line, Some(7));
        assert_eq!(find(&e, "intersections[1]").line, Some(5));
        assert_eq!(find(&e, "intersections[2].name").line, Some(11));
        assert_eq!(find(&e, "intersections[2].username").line, Some(11));
        assert_eq!(find(&e, "data_transfer_start_24h.hour").line, Some(14));
        assert_eq!(e.len(), 6, "{}", ConfigErrors(e.clone()));
    }

    #[test]
    fn empty_intersections_and_missing_start_parts_are_errors() {
        let e = errors(
            r#"{ "local_data_directory": "/d", "intersections": [], "data_transfer_start_24h": { "hour": 3 } }"#,
        );
        assert!(find(&e, "intersections").message.contains("is empty"));
        assert!(
            find(&e, "data_transfer_start_24h.minute")
                .message
                .contains("missing")
        );
    }

    #[test]
    fn mistyped_password_is_not_echoed() {
        let e = errors(&SEED.replace("\"secret\"", "918273645"));
        let shown = ConfigErrors(e).to_string();
        assert!(shown.contains("intersections[0].password"), "{shown}");
        assert!(!shown.contains("918273645"), "{shown}");
    }

    #[test]
    fn world_readable_legacy_file_with_password_is_warned_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "c.json", SEED);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).expect("chmod");
        let l = load_json(&path).expect("valid");
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].contains("chmod 640"));
    }

    #[test]
    fn import_round_trips_to_an_equivalent_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = SEED
            .replace("\"minute\": 0", "\"minute\": 30")
            .replace("\"secret\"", r#""p\"a's\\s w""#);
        let json = write(dir.path(), "legacy.json", &text);
        let toml = import(&json).expect("imports");

        let before = load_json(&json).expect("json valid").config;
        let other = tempfile::tempdir().expect("tempdir");
        let toml_path = write(other.path(), "config.toml", &toml);
        let after = load_json(&toml_path)
            .unwrap_or_else(|e| panic!("imported TOML does not load:\n{e}\n{toml}"))
            .config;
        let strip = |c: &Config| {
            format!(
                "{:?}",
                Config {
                    source: PathBuf::new(),
                    ..c.clone()
                }
            )
        };
        assert_eq!(strip(&before), strip(&after));
        let pw = |c: &Config| match &c.intersections[0].auth {
            Auth::Password(s) => s.expose().to_string(),
            _ => String::new(),
        };
        assert_eq!(pw(&after), "p\"a's\\s w");
        assert_eq!(pw(&before), pw(&after));
    }

    #[test]
    fn import_output_is_commented_and_ordered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = write(dir.path(), "legacy.json", SEED);
        let toml = import(&json).expect("imports");
        let lines: Vec<&str> = toml.lines().collect();
        assert!(
            lines[0].starts_with('#') && lines[0].contains(&json.display().to_string()),
            "{toml}"
        );
        let dd = lines
            .iter()
            .position(|l| l.starts_with("data_directory = "))
            .expect("data_directory");
        assert_eq!(
            lines[dd - 1],
            format!(
                "# \"./data\" in {}, resolved against its folder",
                json.display()
            )
        );
        let first_table = lines
            .iter()
            .position(|l| l.starts_with('['))
            .expect("a table");
        for key in ["data_directory", "known_hosts", "start_time"] {
            let at = lines
                .iter()
                .position(|l| l.starts_with(&format!("{key} = ")))
                .expect(key);
            assert!(at < first_table, "{key} after a table:\n{toml}");
        }
        assert!(toml.contains("start_time = \"00:00\""), "{toml}");
        assert!(toml.contains("password = \"secret\""), "{toml}");
        assert!(toml.contains("host = \"10.12.6.250\""), "{toml}");
        // An absolute directory needs no note.
        let json = write(dir.path(), "abs.json", &SEED.replace("./data", "/srv/data"));
        let toml = import(&json).expect("imports");
        assert!(!toml.contains("resolved against"), "{toml}");
    }

    #[test]
    fn import_needs_no_known_hosts_but_reports_other_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = write(
            dir.path(),
            "bad.json",
            &SEED.replace("intersection-1", "a/b"),
        );
        let e = import(&json).expect_err("bad name").0;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key.as_deref(), Some("intersections[0].name"));
        assert_eq!(e[0].line, Some(4));

        let toml = write(dir.path(), "c.toml", "data_directory = \"/d\"\n");
        let e = import(&toml).expect_err("not json").0;
        assert!(e[0].message.contains("not a legacy JSON"));
    }

    #[test]
    fn comment_text_stays_on_one_line() {
        assert_eq!(comment_safe("a\nb\rc"), "a\\nb\\rc");
    }

    #[test]
    fn locator_finds_paths_and_survives_garbage() {
        let lines = Locator::lines(SEED);
        assert_eq!(lines.get("local_data_directory"), Some(&2));
        assert_eq!(lines.get("intersections[0]"), Some(&4));
        assert_eq!(lines.get("intersections[0].password"), Some(&5));
        assert_eq!(lines.get("data_transfer_start_24h.minute"), Some(&7));
        for text in [
            "{\"a\":",
            "[[[[",
            "{\"a\\",
            "\"",
            "{,,,}",
            "{\"x\" 1}",
            "]]]}}}",
            "{\"a\":[1,{\"b\":\"\\\"",
        ] {
            let _ = Locator::lines(text);
        }
        let deep = "[".repeat(10_000);
        let _ = Locator::lines(&deep);
    }
}
