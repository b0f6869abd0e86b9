//! The TOML config exactly as serde reads it.
//!
//! Every key is optional here and every struct denies unknown fields: a typo
//! must be reported, never silently replaced by a default, and a missing
//! required key is reported by the shared validation together with every
//! other problem (serde would stop at the first). Values are wrapped in
//! [`Spanned`] so that validation can name the line of the offending key.
//! Numbers are read as `i64` so that range errors get our own message, and a
//! password as a [`toml::Value`] so that a mistyped one is never echoed back
//! in a serde error.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{
    ConfigError, Draft, Format, IntersectionDraft, Item, SizeInput, StartInput, TransferDraft,
    line_of,
};
use crate::common::secret::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_directory: Option<Spanned<String>>,
    pub known_hosts: Option<Spanned<String>>,
    pub state_directory: Option<Spanned<String>>,
    pub elements: Option<Spanned<Vec<Spanned<String>>>>,
    pub start_time: Option<Spanned<String>>,
    pub transfer: Option<Spanned<RawTransfer>>,
    pub intersections: Option<Spanned<Vec<Spanned<RawIntersection>>>>,
    pub metrics_textfile: Option<Spanned<String>>,
    pub status: Option<Spanned<RawStatus>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub stale_after: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransfer {
    pub parallel_intersections: Option<Spanned<i64>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub io_timeout: Option<Spanned<String>>,
    pub intersection_deadline: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub retry_backoff: Option<Spanned<String>>,
    pub min_age: Option<Spanned<String>>,
    pub min_free_space: Option<Spanned<RawSize>>,
    pub max_listed_entries: Option<Spanned<i64>>,
    pub ciphers: Option<Spanned<Vec<Spanned<String>>>>,
    pub macs: Option<Spanned<Vec<Spanned<String>>>>,
    pub kex_algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub verify: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a whole number of bytes or a string such as \"1GiB\""
)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

/// `ip_address` and `v2x-data_location` are the seed's spellings, accepted
/// so that a hand-converted legacy entry works; separate fields (not serde
/// aliases) let messages use the spelling the user wrote.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntersection {
    pub name: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub ip_address: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<toml::Value>>,
    pub password_file: Option<Spanned<String>>,
    pub private_key: Option<Spanned<String>>,
    pub passphrase_file: Option<Spanned<String>>,
    /// systemd credential names (`$CREDENTIALS_DIRECTORY/<name>`).
    pub password_credential: Option<Spanned<String>>,
    pub private_key_credential: Option<Spanned<String>>,
    pub passphrase_credential: Option<Spanned<String>>,
    pub v2x_data_location: Option<Spanned<String>>,
    #[serde(rename = "v2x-data_location")]
    pub v2x_data_location_legacy: Option<Spanned<String>>,
    pub compression: Option<Spanned<bool>>,
}

/// Parses TOML text into the shared draft; a syntax, type or unknown-key
/// error is returned alone (the parser cannot go on after it).
///
/// # Errors
/// That one error, naming file, line and (when it can) key, never quoting
/// the line (it may hold a password).
pub(crate) fn parse(file: &Path, text: &str) -> Result<Draft, Vec<ConfigError>> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
    Ok(Converter { file, text }.draft(raw))
}

/// Names file, line and (best effort) key of a toml error. Only the bare
/// message is used: toml's `Display` quotes the source line, which may hold
/// a password.
fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim_end();
    let advice = if message.starts_with("unknown field") {
        "fix its spelling or remove it (a misspelt key is never ignored)"
    } else if message.starts_with("invalid type")
        || message.starts_with("invalid value")
        || message.starts_with("invalid length")
        || message.starts_with("a whole number")
    {
        "fix the value"
    } else if message.starts_with("duplicate") {
        "keep only one"
    } else {
        "fix the TOML syntax"
    };
    let span = e.span();
    ConfigError::new(
        file,
        span.as_ref().and_then(|s| key_at(text, s.start)),
        span.map(|s| line_of(text, s.start)),
        format!("{message}; {advice}"),
    )
}

/// The dotted key path of the line holding `offset`, found by reading the
/// table headers above it. Best effort: it is only used to label a parse
/// error, the line number is what is certain.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let offset = offset.min(bytes.len());
    let start = bytes[..offset]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let end = bytes[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |i| start + i);
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut table: Option<String> = None;
    for line in text.get(..start)?.lines() {
        if let Some(header) = header_path(line.trim(), &mut counts) {
            table = Some(header);
        }
    }
    let line = text.get(start..end)?.trim();
    if line.starts_with('[') {
        return header_path(line, &mut counts);
    }
    let key = line.split_once('=')?.0.trim();
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !bare {
        return None;
    }
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

/// `[a]` → `a`; the n-th `[[a]]` → `a[n]` (0-based), counting in `counts`.
fn header_path(
    line: &str,
    counts: &mut std::collections::HashMap<String, usize>,
) -> Option<String> {
    if let Some(rest) = line.strip_prefix("[[") {
        let name = rest.split("]]").next()?.trim().to_string();
        let n = counts.entry(name.clone()).or_insert(0);
        let path = format!("{name}[{n}]");
        *n += 1;
        Some(path)
    } else if let Some(rest) = line.strip_prefix('[') {
        Some(rest.split(']').next()?.trim().to_string())
    } else {
        None
    }
}

struct Converter<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Converter<'_> {
    fn line(&self, span: Range<usize>) -> Option<usize> {
        Some(line_of(self.text, span.start))
    }

    fn item<T>(&self, s: Spanned<T>, key: impl Into<String>) -> Item<T> {
        let line = self.line(s.span());
        Item::new(s.into_inner(), key, line)
    }

    /// A list of strings, each item keyed `KEY[N]`.
    fn list(&self, list: Spanned<Vec<Spanned<String>>>, key: &str) -> Item<Vec<Item<String>>> {
        let line = self.line(list.span());
        let items = list
            .into_inner()
            .into_iter()
            .enumerate()
            .map(|(i, e)| self.item(e, format!("{key}[{i}]")))
            .collect();
        Item::new(items, key, line)
    }

    fn path(&self, s: Spanned<String>, key: impl Into<String>) -> Item<PathBuf> {
        let item = self.item(s, key);
        Item::new(PathBuf::from(item.value), item.key, item.line)
    }

    fn draft(&self, raw: RawConfig) -> Draft {
        let mut d = Draft::new(Format::Toml);
        d.data_directory = raw.data_directory.map(|s| self.path(s, "data_directory"));
        d.known_hosts = raw.known_hosts.map(|s| self.path(s, "known_hosts"));
        d.state_directory = raw.state_directory.map(|s| self.path(s, "state_directory"));
        d.elements = raw.elements.map(|list| self.list(list, "elements"));
        d.start_time = raw.start_time.map(|s| {
            let item = self.item(s, "start_time");
            Item::new(StartInput::Text(item.value), item.key, item.line)
        });
        d.metrics_textfile = raw
            .metrics_textfile
            .map(|s| self.path(s, "metrics_textfile"));
        if let Some(st) = raw.status {
            d.stale_after = st
                .into_inner()
                .stale_after
                .map(|s| self.item(s, "status.stale_after"));
        }
        if let Some(t) = raw.transfer {
            let t = t.into_inner();
            let key = |k: &str| format!("transfer.{k}");
            d.transfer = TransferDraft {
                parallel_intersections: t
                    .parallel_intersections
                    .map(|s| self.item(s, key("parallel_intersections"))),
                connect_timeout: t
                    .connect_timeout
                    .map(|s| self.item(s, key("connect_timeout"))),
                io_timeout: t.io_timeout.map(|s| self.item(s, key("io_timeout"))),
                intersection_deadline: t
                    .intersection_deadline
                    .map(|s| self.item(s, key("intersection_deadline"))),
                retries: t.retries.map(|s| self.item(s, key("retries"))),
                retry_backoff: t.retry_backoff.map(|s| self.item(s, key("retry_backoff"))),
                min_age: t.min_age.map(|s| self.item(s, key("min_age"))),
                max_listed_entries: t
                    .max_listed_entries
                    .map(|s| self.item(s, key("max_listed_entries"))),
                verify: t.verify.map(|s| self.item(s, key("verify"))),
                min_free_space: t.min_free_space.map(|s| {
                    let item = self.item(s, key("min_free_space"));
                    let value = match item.value {
                        RawSize::Bytes(n) => SizeInput::Bytes(n),
                        RawSize::Text(s) => SizeInput::Text(s),
                    };
                    Item::new(value, item.key, item.line)
                }),
                ciphers: t.ciphers.map(|l| self.list(l, &key("ciphers"))),
                macs: t.macs.map(|l| self.list(l, &key("macs"))),
                kex_algorithms: t
                    .kex_algorithms
                    .map(|l| self.list(l, &key("kex_algorithms"))),
            };
        }
        d.intersections = raw.intersections.map(|list| {
            let line = self.line(list.span());
            let items = list
                .into_inner()
                .into_iter()
                .enumerate()
                .map(|(i, s)| self.intersection(i, s, &mut d.errors))
                .collect();
            Item::new(items, "intersections", line)
        });
        d
    }

    fn intersection(
        &self,
        index: usize,
        raw: Spanned<RawIntersection>,
        errors: &mut Vec<ConfigError>,
    ) -> IntersectionDraft {
        let mut d = IntersectionDraft::new(index, self.line(raw.span()));
        let raw = raw.into_inner();
        d.name = raw.name.map(|s| self.item(s, d.field("name")));
        d.host = self.one_of(&d, raw.host, "host", raw.ip_address, "ip_address", errors);
        d.port = raw.port.map(|s| self.item(s, d.field("port")));
        d.username = raw.username.map(|s| self.item(s, d.field("username")));
        d.password = raw.password.map(|s| {
            let item = self.item(s, d.field("password"));
            let secret = match item.value {
                toml::Value::String(s) => Secret::new(s),
                // Never echo the value: it may be the password.
                _ => {
                    errors.push(ConfigError::new(
                        self.file,
                        Some(item.key.clone()),
                        item.line,
                        "must be a string; put the password in double quotes",
                    ));
                    Secret::new("(invalid)".into())
                }
            };
            Item::new(secret, item.key, item.line)
        });
        d.password_file = raw
            .password_file
            .map(|s| self.path(s, d.field("password_file")));
        d.private_key = raw
            .private_key
            .map(|s| self.path(s, d.field("private_key")));
        d.passphrase_file = raw
            .passphrase_file
            .map(|s| self.path(s, d.field("passphrase_file")));
        d.password_credential = raw
            .password_credential
            .map(|s| self.item(s, d.field("password_credential")));
        d.private_key_credential = raw
            .private_key_credential
            .map(|s| self.item(s, d.field("private_key_credential")));
        d.passphrase_credential = raw
            .passphrase_credential
            .map(|s| self.item(s, d.field("passphrase_credential")));
        d.v2x_data_location = self.one_of(
            &d,
            raw.v2x_data_location,
            "v2x_data_location",
            raw.v2x_data_location_legacy,
            "v2x-data_location",
            errors,
        );
        d.compression = raw
            .compression
            .map(|s| self.item(s, d.field("compression")));
        d
    }

    /// A key that may also be given under the seed's spelling, but not twice.
    fn one_of(
        &self,
        d: &IntersectionDraft,
        key: Option<Spanned<String>>,
        name: &str,
        alias: Option<Spanned<String>>,
        alias_name: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Item<String>> {
        match (key, alias) {
            (Some(k), Some(a)) => {
                errors.push(ConfigError::new(
                    self.file,
                    Some(d.field(alias_name)),
                    self.line(a.span()),
                    format!(
                        "is the legacy spelling of {name}, which is also set; keep only {name}"
                    ),
                ));
                Some(self.item(k, d.field(name)))
            }
            (Some(k), None) => Some(self.item(k, d.field(name))),
            (None, Some(a)) => Some(self.item(a, d.field(alias_name))),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        match parse(Path::new("/c.toml"), text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(mut e) => {
                assert_eq!(e.len(), 1);
                e.remove(0)
            }
        }
    }

    #[test]
    fn unknown_top_level_key_names_key_and_line() {
        let e = err("data_directory = \"/d\"\n\ndata_directroy = \"/x\"\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("data_directroy"));
        assert!(e.message.contains("unknown field `data_directroy`"), "{e}");
        assert!(e.message.contains("spelling"), "{e}");
    }

    #[test]
    fn unknown_transfer_key_names_table() {
        let e = err("data_directory = \"/d\"\n[transfer]\nretries = 2\nretry = 1\n");
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key.as_deref(), Some("transfer.retry"));
    }

    #[test]
    fn unknown_intersection_key_names_index() {
        let text = "[[intersections]]\nname = \"a\"\n\n[[intersections]]\nname = \"b\"\npasword = \"s3cret\"\n";
        let e = err(text);
        assert_eq!(e.line, Some(6));
        assert_eq!(e.key.as_deref(), Some("intersections[1].pasword"));
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn unknown_table_is_reported_at_its_header() {
        let e = err("data_directory = \"/d\"\n[transfers]\nretries = 2\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("transfers"));
    }

    #[test]
    fn type_error_names_key_and_line() {
        let e = err("[transfer]\nretries = \"three\"\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("transfer.retries"));
        assert!(e.message.contains("fix the value"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = err("data_directory = \"/d\"\nknown_hosts = \"/k\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("TOML syntax"), "{e}");
    }

    #[test]
    fn mistyped_password_is_not_echoed() {
        let d = parse(
            Path::new("/c.toml"),
            "[[intersections]]\nname = \"a\"\npassword = 987654321\n",
        );
        let Ok(d) = d else {
            panic!("a non-string password is a validation error, not a parse error")
        };
        assert_eq!(d.errors.len(), 1);
        let shown = d.errors[0].to_string();
        assert!(shown.contains("intersections[0].password"), "{shown}");
        assert!(!shown.contains("987654321"), "{shown}");
    }

    #[test]
    fn syntax_error_on_password_line_does_not_echo_it() {
        for text in [
            "password = \"hunter2\" x\n",
            "password = \"hunter2\n",
            "password = hunter2\n",
            "[[intersections]]\npassword = 'hunter2' 'more'\n",
        ] {
            let e = err(text);
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn legacy_spellings_are_accepted_but_not_twice() {
        let text = "[[intersections]]\nip_address = \"h\"\n\"v2x-data_location\" = \"/v\"\n";
        let Ok(d) = parse(Path::new("/c.toml"), text) else {
            panic!("legacy spellings accepted")
        };
        let list = d.intersections.as_ref().map(|l| &l.value);
        let i = &list.map(|l| &l[0]).expect("one intersection");
        assert_eq!(
            i.host.as_ref().map(|h| h.key.as_str()),
            Some("intersections[0].ip_address")
        );
        assert_eq!(
            i.v2x_data_location.as_ref().map(|h| h.value.as_str()),
            Some("/v")
        );

        let text = "[[intersections]]\nhost = \"h\"\nip_address = \"h\"\n";
        let Ok(d) = parse(Path::new("/c.toml"), text) else {
            panic!("reported by validation")
        };
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].line, Some(3));
        assert_eq!(
            d.errors[0].key.as_deref(),
            Some("intersections[0].ip_address")
        );
    }

    #[test]
    fn key_at_handles_headers_and_odd_lines() {
        let text = "a = 1\n[t]\nb = 2\n[[x]]\n[[x]]\nc = 3\nnot a key\n";
        assert_eq!(key_at(text, 0).as_deref(), Some("a"));
        assert_eq!(key_at(text, 12).as_deref(), Some("t.b"));
        assert_eq!(
            key_at(text, text.find("c =").unwrap_or(0)).as_deref(),
            Some("x[1].c")
        );
        assert_eq!(key_at(text, text.find("not").unwrap_or(0)), None);
        assert_eq!(key_at(text, 10_000), None);
        assert_eq!(key_at("é = 1", 1).as_deref(), None);
    }
}
