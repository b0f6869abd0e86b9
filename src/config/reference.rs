//! Every config key an operator can write, with its default and what goes
//! wrong at the extremes: the one list the man page's CONFIGURATION section
//! is generated from. A test holds it against the keys the TOML parser
//! accepts (both ways) and against docs/configuration.md, so a new key
//! cannot ship undocumented.

/// Which table of the TOML file a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Top,
    Status,
    Transfer,
    Intersections,
}

impl Table {
    /// The table's header as written in the file; `None` for the top level.
    pub fn heading(self) -> Option<&'static str> {
        match self {
            Table::Top => None,
            Table::Status => Some("[status]"),
            Table::Transfer => Some("[transfer]"),
            Table::Intersections => Some("[[intersections]]"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    pub table: Table,
    pub key: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

const fn key(table: Table, key: &'static str, default: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc {
        table,
        key,
        default,
        doc,
    }
}

use Table::*;

pub const KEYS: &[KeyDoc] = &[
    key(
        Top,
        "data_directory",
        "required",
        "Absolute path; files land in <data_directory>/<intersection>/<element>/. Nothing there is \
         ever pruned. Outside /var/lib/v2x-data-sftp-client it must exist, owned by \
         _v2x-data-sftp-client; systemctl daemon-reload makes it writable for the unit.",
    ),
    key(
        Top,
        "known_hosts",
        "required",
        "OpenSSH known_hosts file every host key is checked against before any password or key is \
         sent; must exist. Filled by the trust command.",
    ),
    key(
        Top,
        "start_time",
        "\"00:00\"",
        "Daily start, \"HH:MM\", in this server's local time; applied by systemctl daemon-reload. \
         The legacy data_transfer_start_24h works too.",
    ),
    key(
        Top,
        "state_directory",
        "/var/lib/v2x-data-sftp-client",
        "The lock and last-run.json, which status reads.",
    ),
    key(
        Top,
        "elements",
        "[\"spat\", \"remoteBsm\", \"srm\", \"ssm\", \"msgCount\"]",
        "Element folders file names are routed to; a file of no element still lands, in the \
         intersection's folder.",
    ),
    key(
        Top,
        "metrics_textfile",
        "unset",
        "A Prometheus node_exporter textfile (*.prom), rewritten after every pass but a dry run. \
         Its folder must exist; systemctl daemon-reload makes it writable for the unit.",
    ),
    key(
        Status,
        "stale_after",
        "\"36h\"",
        "status flags an intersection whose last success is older than this.",
    ),
    key(
        Status,
        "no_data_after",
        "\"36h\"",
        "status flags an intersection NO DATA (exit 1, like STALE) when its passes succeed but no \
         file has landed for longer than this: a collector that stopped.",
    ),
    key(
        Status,
        "remote_min_free",
        "\"10%\"",
        "A pass warns (status, metrics, alert rule) when the coprocessor's v2x_data_location \
         filesystem has less free than this share (\"10%\") or size (\"2GiB\"); asked with \
         statvfs@openssh.com. A full coprocessor stops recording.",
    ),
    key(
        Transfer,
        "end_time",
        "unset",
        "Transfer window: after this local time (\"HH:MM\") no new file is started; files being \
         read may finish for one more minute, then the session is shut and they resume next pass. \
         What is left is reported as deferred, not as an error.",
    ),
    key(
        Transfer,
        "max_rate",
        "unset",
        "Each intersection's bandwidth cap in file bytes per second (\"2MiB/s\", \"8Mbit/s\"); \
         requests are paced, never slowed into io_timeout. Too low and the backlog grows.",
    ),
    key(
        Transfer,
        "max_rate_total",
        "unset",
        "The whole pass's bandwidth cap, all intersections together, as max_rate.",
    ),
    key(
        Transfer,
        "parallel_intersections",
        "4",
        "Intersections worked on at once; more makes nights shorter and this server busier.",
    ),
    key(
        Transfer,
        "connect_timeout",
        "\"20s\"",
        "TCP connect, SSH handshake and authentication; too low fails slow links.",
    ),
    key(
        Transfer,
        "io_timeout",
        "\"60s\"",
        "Any single SSH or SFTP request; a silent peer is given up after this long.",
    ),
    key(
        Transfer,
        "intersection_deadline",
        "\"4h\"",
        "The whole intersection, retries included: stops a peer that trickles bytes.",
    ),
    key(
        Transfer,
        "retries",
        "3",
        "Reconnects after a connection failure, within the deadline.",
    ),
    key(
        Transfer,
        "retry_backoff",
        "\"5s\"",
        "Wait before the first retry; doubles after each.",
    ),
    key(
        Transfer,
        "min_age",
        "\"2min\"",
        "Files directly in archive/ (a zipped session a compressor may still be writing) changed \
         more recently wait for the next pass; session folders are taken at once.",
    ),
    key(
        Transfer,
        "min_free_space",
        "\"1GiB\"",
        "A file that would leave less free space in the data directory stops its intersection, \
         remote data kept.",
    ),
    key(
        Transfer,
        "max_listed_entries",
        "1000000",
        "Names listed per intersection and pass (about 150 bytes of memory each); past it the \
         intersection stops before anything is transferred or deleted.",
    ),
    key(
        Transfer,
        "verify",
        "\"auto\"",
        "What must agree before a remote file is removed: sha256 (the coprocessor hashes the file \
         over an SSH exec channel and it must match the bytes landed), size (size and mtime only), \
         auto (sha256 where the account may run a hasher, size elsewhere).",
    ),
    key(
        Transfer,
        "ciphers",
        "measured order",
        "SSH ciphers offered, most preferred first (AES-GCM, then AES-CTR, then \
         chacha20-poly1305); only names this client supports are accepted.",
    ),
    key(
        Transfer,
        "macs",
        "measured order",
        "SSH MACs offered for AES-CTR, most preferred first (encrypt-then-MAC \
         HMAC-SHA-256 first); AES-GCM carries its own.",
    ),
    key(
        Transfer,
        "kex_algorithms",
        "measured order",
        "SSH key exchanges offered, most preferred first (curve25519-sha256 first).",
    ),
    key(
        Intersections,
        "name",
        "required",
        "Unique; the folder under data_directory and the journal's INTERSECTION= field.",
    ),
    key(
        Intersections,
        "host",
        "required",
        "IP address or host name. With IP addresses only, the unit allows traffic to them and no \
         other.",
    ),
    key(
        Intersections,
        "ip_address",
        "unset",
        "The Python script's spelling of host.",
    ),
    key(Intersections, "port", "22", "The coprocessor's SSH port."),
    key(
        Intersections,
        "username",
        "required",
        "The coprocessor account; it must be able to read and delete under archive/.",
    ),
    key(
        Intersections,
        "v2x_data_location",
        "required",
        "The coprocessor's v2x-data folder; only archive/ below it is pulled and emptied.",
    ),
    key(
        Intersections,
        "v2x-data_location",
        "unset",
        "The Python script's spelling of v2x_data_location.",
    ),
    key(
        Intersections,
        "password_credential",
        "unset",
        "Name of a systemd credential holding the password (see CREDENTIALS). Exactly one of \
         password, password_file, password_credential, private_key, private_key_credential.",
    ),
    key(
        Intersections,
        "password_file",
        "unset",
        "A plain file holding the password on its first line, readable by the service's group and \
         not by others.",
    ),
    key(
        Intersections,
        "password",
        "unset",
        "The password itself; a config holding one that others can read gets a warning.",
    ),
    key(
        Intersections,
        "private_key_credential",
        "unset",
        "Name of a systemd credential holding an OpenSSH private key.",
    ),
    key(
        Intersections,
        "private_key",
        "unset",
        "An OpenSSH private key file, mode 0640, group _v2x-data-sftp-client.",
    ),
    key(
        Intersections,
        "passphrase_credential",
        "unset",
        "With a private key: name of a systemd credential holding its passphrase.",
    ),
    key(
        Intersections,
        "passphrase_file",
        "unset",
        "With a private key: a file holding its passphrase on its first line.",
    ),
    key(
        Intersections,
        "compression",
        "by latency",
        "SSH compression. Left out: on when the round trip is 10 ms or more, off on a LAN. It cuts \
         CSV bytes on the wire about 3.8 times but multiplies the coprocessor's CPU time; false \
         spares a busy coprocessor.",
    ),
    key(
        Intersections,
        "max_rate",
        "transfer.max_rate",
        "This intersection's bandwidth cap, as transfer.max_rate.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_file::{RawConfig, RawIntersection, RawStatus, RawTransfer};
    use serde::Deserialize;
    use serde::de::{self, Deserializer, Visitor};

    /// The field names serde accepts for `T`: a deserializer that records
    /// what `deserialize_struct` is asked for and stops there.
    fn fields<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
        struct Grab<'a>(&'a mut Vec<&'static str>);
        #[derive(Debug)]
        struct Stop;
        impl std::fmt::Display for Stop {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("stop")
            }
        }
        impl std::error::Error for Stop {}
        impl de::Error for Stop {
            fn custom<M: std::fmt::Display>(_: M) -> Self {
                Stop
            }
        }
        impl<'de> Deserializer<'de> for Grab<'_> {
            type Error = Stop;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                Err(Stop)
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Stop> {
                self.0.extend_from_slice(fields);
                Err(Stop)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }
        let mut out = Vec::new();
        let _ = T::deserialize(Grab(&mut out));
        out
    }

    #[test]
    fn every_key_the_parser_accepts_is_documented_and_no_other() {
        let tables: [(Table, Vec<&str>); 4] = [
            (Top, fields::<RawConfig>()),
            (Status, fields::<RawStatus>()),
            (Transfer, fields::<RawTransfer>()),
            (Intersections, fields::<RawIntersection>()),
        ];
        for (table, accepted) in &tables {
            assert!(!accepted.is_empty(), "{table:?}: no fields found");
            for key in accepted {
                // Tables themselves are documented by their keys.
                if *table == Top && matches!(*key, "transfer" | "status" | "intersections") {
                    continue;
                }
                assert!(
                    KEYS.iter().any(|k| k.table == *table && k.key == *key),
                    "{table:?}.{key} is accepted by the parser but missing from KEYS (the man page)"
                );
            }
            for k in KEYS.iter().filter(|k| k.table == *table) {
                assert!(
                    accepted.contains(&k.key),
                    "KEYS documents {table:?}.{} but the parser rejects it",
                    k.key
                );
            }
        }
    }

    #[test]
    fn docs_configuration_md_names_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for k in KEYS {
            assert!(
                text.contains(&format!("`{}`", k.key)),
                "docs/configuration.md does not document `{}`",
                k.key
            );
        }
    }
}
