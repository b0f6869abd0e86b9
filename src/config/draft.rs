//! The intermediate form both file formats are converted into: every key
//! optional, each value with the key path and line it came from, so that
//! validation can report every problem of a file at once, each where it is.

use std::path::PathBuf;

use super::ConfigError;
use crate::common::secret::Secret;

/// Which file format a draft came from; decides how missing keys are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    LegacyJson,
}

impl Format {
    /// The key as this format spells it, for messages about missing keys.
    pub(crate) fn key(self, canonical: &'static str) -> &'static str {
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
    pub verify: Option<Item<String>>,
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
    pub password_credential: Option<Item<String>>,
    pub private_key_credential: Option<Item<String>>,
    pub passphrase_credential: Option<Item<String>>,
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
            password_credential: None,
            private_key_credential: None,
            passphrase_credential: None,
            v2x_data_location: None,
            compression: None,
        }
    }

    /// `intersections[N].FIELD`.
    pub(crate) fn field(&self, field: &str) -> String {
        format!("{}.{field}", self.key)
    }
}
