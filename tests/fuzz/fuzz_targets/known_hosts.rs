//! Any text as a known_hosts file, then lookups built from its own tokens:
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use v2x_data_sftp_client::ssh::known_hosts::{self, KnownHosts};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (known, _warnings) = KnownHosts::parse(&text, "fuzz");
    let _ = known.len();
    for line in text.lines().take(8) {
        let mut it = line.split_whitespace();
        let (Some(host), Some(kind), blob) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let blob = blob.unwrap_or("").as_bytes();
        let host = host.trim_start_matches(['[', '@']);
        let (host, port) = match host.rsplit_once("]:") {
            Some((h, p)) => (h, p.parse().unwrap_or(22)),
            None => (host, 22),
        };
        let types = known.key_types_for(host, port);
        let _ = known_hosts::host_key_algorithms(&types);
        let _ = known.check(host, port, kind, blob);
        let _ = known_hosts::known_hosts_line(host, port, kind, blob);
        let _ = known_hosts::fingerprint_sha256(blob);
    }
});
